"""``fto-async export JOURNAL``: the journal's records as JSONL, CSV or XLSX. Strictly private.

Every format writes the same records (:mod:`fto_async.outputs`) over the same row set:
the last run's rows, or every row with ``--all``; ``--changed`` keeps the rows whose
result changed since their previous screening, ``--live-only`` leaves out invalid
rights, ``--catalog`` adds product titles and local image paths, ``--patent-link`` (or
``FTO_PATENT_LINK``) sets the patent links. The journal is opened read-only and
``--out`` never names one of its files.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

import attrs

from ..journal import Journal
from ..outputs import (
    atomic_write,
    records_from_journal,
    run_filter,
    write_csv,
    write_jsonl,
    write_xlsx,
)
from ..outputs._record import is_changed, live_only
from ._args import patent_link
from ._catalog import CatalogError
from ._common import EXIT_OK, EXIT_USAGE, open_journal, say_error
from ._paths import clash, sqlite_files
from ._results import CATALOG_META

__all__ = ["cmd_export"]


def cmd_export(args: argparse.Namespace) -> int:
    if not args.journal.is_file():
        say_error(f"no journal at {args.journal}")
        return EXIT_USAGE
    if args.out is not None:
        journal_files = (("the journal", path) for path in sqlite_files(args.journal))
        refused = clash(("--out", args.out), journal_files)
        if refused is not None:
            say_error(refused)
            return EXIT_USAGE
    if args.format == "xlsx" and args.out is None:
        say_error("--format xlsx needs --out FILE.xlsx")
        return EXIT_USAGE
    try:
        template = patent_link(args)
        products = _products(args.catalog) if args.catalog is not None else None
    except (ValueError, CatalogError) as exc:
        say_error(str(exc))
        return EXIT_USAGE
    pick = _Pick(template, products, args.live_only, args.changed)
    return asyncio.run(_export(args.journal, args.format, args.out, pick, everything=args.all))


@attrs.frozen
class _Pick:
    """Private: which records, and how (``--patent-link``, ``--catalog``, ``--live-only``,
    ``--changed``)."""

    template: str | None = None
    products: Mapping[str, tuple[str | None, str | None]] | None = None
    live: bool = False
    changed: bool = False

    def records(self, journal: Journal, since: int | None) -> Iterator[dict[str, Any]]:
        for rec in records_from_journal(journal, since_run=since, template=self.template,
                                        products=self.products):  # fmt: skip
            if self.changed and not is_changed(rec):
                continue
            yield live_only(rec, self.template) if self.live else rec


def _products(path: Path) -> dict[str, tuple[str | None, str | None]]:
    """Titles and images (URL or local path) by journal key, from the catalog."""
    from ._report import catalog_products

    return catalog_products(path)


async def _export(
    path: Path, fmt: str, out: Path | None, pick: _Pick | None = None, *,
    everything: bool = False,
) -> int:  # fmt: skip
    pick = pick or _Pick()
    journal = await open_journal(path, readonly=True)
    if journal is None:
        return EXIT_USAGE
    if pick.products is None and (named := journal.get_meta(CATALOG_META)):
        with contextlib.suppress(CatalogError, OSError):  # the last run's catalog, if there
            pick = attrs.evolve(pick, products=_products(Path(named)))
    try:
        since = run_filter(journal, everything=everything)  # the row set of every output
        if fmt == "xlsx":
            assert out is not None
            try:
                write_xlsx(pick.records(journal, since), out, template=pick.template)
            except OSError as exc:
                say_error(f"cannot write {out}: {exc.strerror or exc}")
                return EXIT_USAGE
        elif out is None:
            _write_records(pick.records(journal, since), fmt, sys.stdout)
        else:
            try:
                with atomic_write(out) as handle:
                    _write_records(pick.records(journal, since), fmt, handle)
            except OSError as exc:
                say_error(f"cannot write {out}: {exc.strerror or exc}")
                return EXIT_USAGE
        outside = journal.count_before_run(since) if since else 0
    finally:
        await journal.aclose()
    if outside:
        say_error(f"{outside} rows in the journal were not in the last run's catalog; "
                  "left out (use --all to include)")
    return EXIT_OK


def _write_records(records: Iterator[dict[str, Any]], fmt: str, handle: TextIO) -> None:
    (write_csv if fmt == "csv" else write_jsonl)(records, handle)
