"""The ``fto-async`` command's reports: ``report``, the HTML beside ``screen --out``, xlsx.

Strictly private, and part of the command only (the core never imports it): it joins
catalog rows (product names and images) to results and hands plain data to
:func:`fto_async.outputs.write_html`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..outputs import Product, write_html
from ..outputs._thumbs import cache_path
from ._args import patent_link, patent_link_arg
from ._catalog import Catalog, CatalogError, Defaults, Row
from ._common import EXIT_OK, EXIT_USAGE, say_error
from ._results import CALLS_META

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
    report.add_argument("--all", action="store_true",
                        help="also rows that were not in the last run's catalog")
    report.add_argument("--patent-link", type=patent_link_arg, metavar="TEMPLATE",
                        help="link each patent to TEMPLATE, an http(s) URL with {pn} "
                             "(default: FTO_PATENT_LINK, else per authority)")
    report.set_defaults(func=_cmd_report)


def _journal_calls(path: Path) -> int | None:
    """The platform calls a journal's runs recorded (``None``: a JSONL file, or none)."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro",
                                                uri=True)) as db:  # fmt: skip
            found = db.execute("SELECT value FROM meta WHERE key = ?", (CALLS_META,)).fetchone()
    except sqlite3.Error:
        return None
    try:
        return int(found[0]) if found else None
    except ValueError:
        return None


def _cmd_report(args: argparse.Namespace) -> int:
    if not args.journal.is_file():
        say_error(f"no journal at {args.journal}")
        return EXIT_USAGE
    thumbs = cache_path(args.journal)
    if args.out.resolve() in {args.journal.resolve(), thumbs.resolve(), *(
            [args.catalog.resolve()] if args.catalog else [])}:  # fmt: skip
        say_error("--out must not be the journal, its thumbnail cache or the catalog")
        return EXIT_USAGE
    products = None
    try:
        template = patent_link(args)
        if args.catalog is not None:
            catalog = Catalog(args.catalog, _READ_ONLY_DEFAULTS)
            products = {row.jkey: product_of(row) for row in catalog.rows()}
        written = write_html(args.journal, args.out, title=args.title, products=products,
                             thumb_cache=thumbs, all_rows=args.all, patent_link=template,
                             calls=_journal_calls(args.journal))  # fmt: skip
    except (CatalogError, OSError, ValueError, RuntimeError) as exc:
        say_error(str(exc))
        return EXIT_USAGE
    sys.stdout.write(f"{written.path} ({written.rows} rows, {written.bytes / 1e6:.1f} MB)\n")
    return EXIT_OK
