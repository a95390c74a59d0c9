"""The ``fto-async`` command's reports: ``report``, the HTML beside ``screen --out``, xlsx.

Strictly private, and part of the command only (the core never imports it): it joins
catalog rows (product names and images) to results and hands plain data to
:func:`fto_async.outputs.write_html`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..outputs import Product, write_html
from ..outputs._thumbs import cache_path
from ._catalog import Catalog, CatalogError, Defaults, Row
from ._common import EXIT_OK, EXIT_USAGE, say_error
from ._paths import clash, is_sqlite, sqlite_files

__all__ = ["add_report_command", "html_path", "product_of", "screen_report"]

# Only titles and images are read from a catalog here; a country makes every row parse.
_READ_ONLY_DEFAULTS = Defaults(country=("US",))


def html_path(out: Path) -> Path:
    """Where ``screen --out OUT`` writes its report: ``OUT.html`` (as ``OUT.journal.db``)."""
    return out.with_name(out.name + ".html")


def product_of(row: Row) -> Product:
    """What the report shows of a catalog row: its title and image."""
    url = getattr(row.request, "url", None) if row.request is not None else None
    return Product(title=row.title, image_url=url, image_path=row.image_path)


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


def screen_report(catalog: Catalog, results: Path, calls: int | None) -> Path | None:
    """Write ``results``' HTML report beside it; say why not (and return ``None``).

    Local images' thumbnails are kept in ``OUT.thumbs.db``, so a rerun's report (or a
    resumed run's) encodes only new or changed images.
    """
    out = html_path(results)
    try:
        write_html(_joined(catalog, results), out, calls=calls, thumb_cache=cache_path(results))
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
    report.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    if not args.journal.is_file():
        say_error(f"no journal at {args.journal}")
        return EXIT_USAGE
    thumbs = cache_path(args.journal)
    catalog = None if args.catalog is None else Catalog(args.catalog, _READ_ONLY_DEFAULTS)
    try:
        refused = _out_clash(args.out, args.journal, thumbs, catalog)
    except CatalogError as exc:
        say_error(str(exc))
        return EXIT_USAGE
    if refused is not None:
        say_error(refused)
        return EXIT_USAGE
    products = None
    try:
        if catalog is not None:
            products = {row.jkey: product_of(row) for row in catalog.rows()}
        written = write_html(args.journal, args.out, title=args.title, products=products,
                             thumb_cache=thumbs, all_rows=args.all)
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
