"""``fto-async export JOURNAL``: the journal's records as JSONL, CSV or XLSX. Strictly private.

Every format writes the same records (:mod:`fto_async.outputs`) over the same row set:
the last run's rows, or every row with ``--all``. The journal is opened read-only and
``--out`` never names one of its files.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TextIO

from ..journal import Journal
from ..outputs import (
    atomic_write,
    records_from_journal,
    run_filter,
    write_csv,
    write_jsonl,
    write_xlsx,
)
from ._common import EXIT_OK, EXIT_USAGE, open_journal, say_error
from ._paths import clash, sqlite_files

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
    return asyncio.run(_export(args.journal, args.format, args.out, everything=args.all))


async def _export(path: Path, fmt: str, out: Path | None, *, everything: bool = False) -> int:
    journal = await open_journal(path, readonly=True)
    if journal is None:
        return EXIT_USAGE
    try:
        since = run_filter(journal, everything=everything)  # the row set of every output
        if fmt == "xlsx":
            assert out is not None
            try:
                write_xlsx(records_from_journal(journal, since_run=since), out)
            except OSError as exc:
                say_error(f"cannot write {out}: {exc.strerror or exc}")
                return EXIT_USAGE
        elif out is None:
            _write_records(journal, fmt, sys.stdout, since)
        else:
            try:
                with atomic_write(out) as handle:
                    _write_records(journal, fmt, handle, since)
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


def _write_records(journal: Journal, fmt: str, handle: TextIO, since_run: int | None) -> None:
    records = records_from_journal(journal, since_run=since_run)
    (write_csv if fmt == "csv" else write_jsonl)(records, handle)
