"""The ``fto-async`` command's reports: ``report``, the HTML beside ``screen --out``, xlsx.

Strictly private, and part of the command only (the core never imports it): it joins
catalog rows (product names and images) to results and hands plain data to
:func:`fto_async.outputs.write_html`.

What a report shows is what was screened: ``report --out`` never names an input (see
``_paths.py``); with ``--catalog``, a row whose image changed since the journal screened
it shows the journal's image and a note; a results file's local images are embedded only
from inside the image root, as ``screen`` confines them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from ..fingerprint import image_digest, wire_fingerprint
from ..journal import ItemState, Journal, JournalRow
from ..outputs import HtmlReport, Product, last_run, write_html
from ..outputs._thumbs import cache_path
from ._args import patent_link, patent_link_arg
from ._catalog import Catalog, CatalogError, Defaults, Row
from ._common import EXIT_OK, EXIT_USAGE, open_journal, say_error
from ._paths import clash, is_sqlite, sqlite_files
from ._results import screening_calls

__all__ = ["add_report_command", "catalog_products", "html_path", "product_of", "screen_report"]

# Only titles and images are read from a catalog here; a country makes every row parse.
_READ_ONLY_DEFAULTS = Defaults(country=("US",))


def html_path(out: Path) -> Path:
    """Where ``screen --out OUT`` writes its report: ``OUT.html`` (as ``OUT.journal.db``)."""
    return out.with_name(out.name + ".html")


def product_of(row: Row) -> Product:
    """What the report shows of a catalog row: its title and image."""
    url = getattr(row.request, "url", None) if row.request is not None else None
    return Product(title=row.title, image_url=url, image_path=row.image_path)


def catalog_products(path: Path) -> dict[str, tuple[str | None, str | None]]:
    """Each catalog row's title and image (its URL, else its local path), by journal key."""
    catalog = Catalog(path, _READ_ONLY_DEFAULTS)
    return {row.jkey: (row.title, image_of(product_of(row))) for row in catalog.rows()}


def image_of(product: Product) -> str | None:
    """What the record's ``image`` field shows of a product: its URL, else its file."""
    return product.image_url or (None if product.image_path is None else str(product.image_path))


def _joined(catalog: Catalog, results: Path) -> Iterator[dict[str, Any]]:
    """The records of ``results`` (one per catalog row, in order) with their products."""
    rows = catalog.rows()
    with results.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            record: dict[str, Any] = json.loads(line)
            if isinstance(record, dict):  # a local image only from the catalog (confined)
                record.pop("image_path", None)
            row = next(rows, None)
            if row is not None and row.key == record.get("key"):
                product = product_of(row)
                record.update(title=product.title, image_url=product.image_url,
                              image_path=None if product.image_path is None
                              else str(product.image_path))  # fmt: skip
            yield record


def screen_report(
    catalog: Catalog, results: Path, calls: int | None, *, calls_run: int | None = None,
    template: str | None = None,
) -> Path | None:  # fmt: skip
    """Write ``results``' HTML report beside it; say why not (and return ``None``).

    ``calls`` counts the screening's platform calls over every run, ``calls_run`` the
    last run's; ``template`` is the patent link template.

    Local images' thumbnails are kept in ``OUT.thumbs.db``, so a rerun's report (or a
    resumed run's) encodes only new or changed images.
    """
    out = html_path(results)
    try:
        write_html(_joined(catalog, results), out, calls=calls, calls_run=calls_run,
                   thumb_cache=cache_path(results), patent_link=template)
    except (OSError, ValueError, CatalogError) as exc:
        say_error(f"the HTML report {out} was not written: {exc}")
        return None
    return out


def add_report_command(commands: Any) -> None:
    """Add ``fto-async report JOURNAL --out report.html [--catalog C] [--title T]``."""
    report = commands.add_parser(
        "report", help="write the HTML risk report of a journal (or a results JSONL)")
    report.add_argument("journal", metavar="JOURNAL", type=Path,
                        help="a journal file, or the JSONL results of a run")  # fmt: skip
    report.add_argument("--out", required=True, type=Path, help="the HTML file to write")
    report.add_argument("--catalog", type=Path,
                        help="the catalog, for product names and local images")
    report.add_argument("--title", help="the report's heading")
    report.add_argument("--image-root", type=Path, metavar="DIR",
                        help="folder local images may come from, as for screen (default: "
                             "the catalog's folder, else the results file's)")
    report.add_argument("--all", action="store_true",
                        help="also rows that were not in the last run's catalog")
    report.add_argument("--patent-link", type=patent_link_arg, metavar="TEMPLATE",
                        help="link each patent to TEMPLATE, an http(s) URL with {pn} "
                             "(default: FTO_PATENT_LINK, else per authority)")
    report.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    if not args.journal.is_file():
        say_error(f"no journal at {args.journal}")
        return EXIT_USAGE
    thumbs = cache_path(args.journal)
    catalog = None if args.catalog is None else Catalog(
        args.catalog, _READ_ONLY_DEFAULTS, image_root=args.image_root)
    try:
        refused = _out_clash(args.out, args.journal, thumbs, catalog)
        template = patent_link(args)
    except (CatalogError, ValueError) as exc:
        say_error(str(exc))
        return EXIT_USAGE
    if refused is not None:
        say_error(refused)
        return EXIT_USAGE
    try:
        if is_sqlite(args.journal):
            written = asyncio.run(_from_journal(args, catalog, thumbs, template))
            if written is None:
                return EXIT_USAGE
        else:  # a results JSONL: its image paths are confined as screen's are
            root = args.image_root or (args.catalog or args.journal).parent
            products = None if catalog is None else {
                row.jkey: product_of(row) for row in catalog.rows()}
            written = write_html(_confined(args.journal, root), args.out, title=args.title,
                                 products=products, thumb_cache=thumbs,
                                 patent_link=template)  # fmt: skip
    except (CatalogError, OSError, ValueError, RuntimeError) as exc:
        say_error(str(exc))
        return EXIT_USAGE
    sys.stdout.write(f"{written.path} ({written.rows} rows, {written.bytes / 1e6:.1f} MB)\n")
    return EXIT_OK


def _out_clash(out: Path, journal: Path, thumbs: Path, catalog: Catalog | None) -> str | None:
    """Why ``report --out`` would overwrite an input (``None``: it would not): the journal
    (or its ``-wal``/``-shm``), the results beside it, its thumbnails, the catalog, a
    catalog image, or any SQLite file (see ``_paths.py``)."""

    def inputs() -> Iterator[tuple[str, Path]]:
        for path in sqlite_files(journal):
            yield "the journal", path
        if journal.name.endswith(".journal.db"):
            yield "the results", journal.with_name(journal.name.removesuffix(".journal.db"))
        yield "the thumbnail cache", thumbs
        if catalog is not None:
            yield "the catalog", catalog.path
            if out.exists():  # a file that does not exist yet is no image
                for image in catalog.image_paths():
                    yield "an image of the catalog", image

    refused = clash(("--out", out), inputs())
    if refused is None and is_sqlite(out):
        refused = (f"--out {out} is a SQLite database (a journal?): an output never "
                   "overwrites one; choose another --out")
    return refused


#: What a card says when its catalog row no longer asks what the journal screened.
CHANGED_NOTE: Final = ("The catalog entry changed since this row was screened: "
                       "the card shows the image that was screened, not the catalog's.")


async def _from_journal(
    args: argparse.Namespace, catalog: Catalog | None, thumbs: Path, template: str | None
) -> HtmlReport | None:
    """The report of a journal; with a catalog, each row's product as it was screened.
    The header counts the platform calls every run of the journal recorded."""
    journal = await open_journal(args.journal, readonly=True)
    if journal is None:
        return None
    try:
        products = None if catalog is None else await _screened_products(catalog, journal)
        return write_html(journal, args.out, title=args.title, products=products,
                          thumb_cache=thumbs, all_rows=args.all, patent_link=template,
                          calls=screening_calls(journal),
                          calls_run=screening_calls(journal, last_run(journal)))  # fmt: skip
    finally:
        await journal.aclose()


async def _screened_products(catalog: Catalog, journal: Journal) -> dict[str, Product]:
    """Each catalog row's product; a row whose image is not the one the journal screened
    gets none of the catalog's (its card shows the journal's request) and a note."""
    products = {}
    for row in catalog.rows():
        jrow = journal.get(row.jkey)
        changed = jrow is not None and row.ok and await _image_changed(row, jrow)
        products[row.jkey] = Product(note=CHANGED_NOTE) if changed else product_of(row)
    return products


async def _image_changed(row: Row, jrow: JournalRow) -> bool:
    """Whether ``row``'s image is not what ``jrow`` screened (``False``: same, or cannot tell).

    A URL is compared as it is; a local file by its bytes: with the journal's own body and
    the file's digest, the fingerprint must be the one the journal stored (an image search),
    or the journal's base64 image must be the file's bytes (a workflow).
    """
    request = jrow.request
    if request.get("invalid") is True or jrow.state is ItemState.PENDING:
        return False
    if row.image_path is None:
        url = getattr(row.request, "url", None)
        return url is not None and request.get("url") not in (None, url)
    try:
        digest = image_digest(await asyncio.to_thread(row.image_path.read_bytes))
    except OSError:
        return False
    encoded = request.get("target_image_base64")
    if isinstance(encoded, str):
        try:
            return image_digest(base64.b64decode(encoded)) != digest
        except ValueError:
            return False
    if jrow.fingerprint is None or jrow.kind != "image_search":
        return False  # an older journal: what was screened is not known
    return wire_fingerprint("image_search", request, image_sha256=digest) != jrow.fingerprint


def _confined(results: Path, root: Path) -> Iterator[Any]:
    """The records of a results JSONL, each ``image_path`` kept only if it leads to a
    regular file inside ``root`` (relative paths from the results file's folder)."""
    top = root.resolve()
    with results.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            record = json.loads(line)
            if isinstance(record, dict) and "image_path" in record:
                record["image_path"] = _inside(record["image_path"], results.parent, top)
            yield record


def _inside(value: object, base: Path, top: Path) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        resolved = (base / Path(value).expanduser()).resolve()
        if resolved.is_relative_to(top) and stat.S_ISREG(resolved.stat().st_mode):
            return str(resolved)
    except (OSError, RuntimeError, ValueError):
        pass
    return None
