"""``fto-async usage JOURNAL [--json] [--reconcile [--from yyyyMMdd] [--to yyyyMMdd]]``.

The calls each run spent, from the call ledger; with ``--reconcile``, compared with the
platform's usage statement (:mod:`fto_async._statement`).

The ledger (:mod:`fto_async._journal_ledger`) counts every call by run, endpoint path and
result: ``answered``, ``refused`` (an answer carrying an error, by code) or
``unanswered``. This command reads it (read-only) and prints calls per run and per path,
and the totals. ``reached`` is answered + refused: the calls the platform saw.

``--reconcile`` asks the platform for its statement over ``--from``..``--to`` (default:
today, in the platform's time zone) and compares, per path, the statement's
``usage_times`` with the ledger's ``reached`` and its ``fee_times`` with ``answered``
(of the ledger lines recorded on those days; the token and statement calls are not
billed). Exit 0: no difference; 1: differences (listed); 2: usage error; 3: the platform
refused. The platform collects its records daily at 08:00, so a difference on the
current day may only be the lag. Strictly private.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .._journal_ledger import CallCount
from ._common import EXIT_OK, EXIT_USAGE, open_journal, say_error
from ._reconcile import reconcile

__all__ = ["add_usage_command", "summarize"]

_DESCRIPTION = """\
Print the calls each run spent, per endpoint path, and the totals, from the journal's
call ledger. A call is "answered", "refused" (an answer carrying an error code, listed by
code) or "unanswered" (no answer came); "reached" = answered + refused, the calls the
platform saw. With --reconcile, compare them with the platform's usage statement.
"""


def add_usage_command(commands: Any) -> None:
    """Add ``fto-async usage JOURNAL [--json]``."""
    usage = commands.add_parser(
        "usage", help="calls spent per run and per path (the call ledger)",
        description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    usage.add_argument("journal", metavar="JOURNAL", type=Path)
    usage.add_argument("--json", action="store_true", help="print one JSON object")
    usage.add_argument("--reconcile", action="store_true",
                       help="compare with the platform's usage statement (one call; uses "
                            "PATSNAP_* credentials)")
    usage.add_argument("--from", dest="time_start", metavar="yyyyMMdd",
                       help="first day of the statement (default today, UTC+8)")
    usage.add_argument("--to", dest="time_end", metavar="yyyyMMdd",
                       help="last day of the statement (default --from)")
    usage.add_argument("--base-url", help="platform URL (default PATSNAP_BASE_URL)")
    usage.set_defaults(func=cmd_usage)


def cmd_usage(args: argparse.Namespace) -> int:
    if not args.journal.is_file():
        say_error(f"no journal at {args.journal}")
        return EXIT_USAGE
    if args.reconcile:
        return reconcile(args)
    lines = asyncio.run(_read(args.journal))
    if lines is None:
        return EXIT_USAGE
    summary = summarize(lines)
    if args.json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        sys.stdout.write(render(summary))
    return EXIT_OK


async def _read(path: Path) -> list[CallCount] | None:
    journal = await open_journal(path, readonly=True)
    if journal is None:
        return None
    try:
        return journal.calls()
    finally:
        await journal.aclose()


def _tally(lines: Iterable[CallCount]) -> dict[str, Any]:
    answered = refused = unanswered = 0
    codes: Counter[int] = Counter()
    for line in lines:
        if line.result == "answered":
            answered += line.n
        elif line.result == "refused":
            refused += line.n
            codes[line.code] += line.n
        else:
            unanswered += line.n
    return {
        "calls": answered + refused + unanswered, "reached": answered + refused,
        "answered": answered, "refused": refused, "unanswered": unanswered,
        "refused_by_code": {str(code): n for code, n in sorted(codes.items())},
    }  # fmt: skip


def _by_path(lines: list[CallCount]) -> dict[str, dict[str, Any]]:
    paths = sorted({line.path for line in lines})
    return {path: _tally(line for line in lines if line.path == path) for path in paths}


def summarize(lines: list[CallCount]) -> dict[str, Any]:
    """``{"runs": [{"run", "paths", "total"}], "paths": {...}, "total": {...}}``."""
    runs = sorted({line.run for line in lines})
    return {
        "runs": [
            {"run": run, "paths": _by_path(mine), "total": _tally(mine)}
            for run in runs
            for mine in [[line for line in lines if line.run == run]]
        ],
        "paths": _by_path(lines),
        "total": _tally(lines),
    }


def _row(name: str, t: dict[str, Any]) -> str:
    codes = ", ".join(f"{code}: {n}" for code, n in t["refused_by_code"].items())
    refused = f"{t['refused']}" + (f" ({codes})" if codes else "")
    return (f"  {name:<36} {t['calls']:>6} calls  {t['answered']:>6} answered  "
            f"{refused} refused  {t['unanswered']} unanswered\n")  # fmt: skip


def render(summary: dict[str, Any]) -> str:
    """The text form of :func:`summarize`."""
    if not summary["runs"]:
        return "no calls recorded in this journal\n"
    out = []
    for run in summary["runs"]:
        out.append(f"run {run['run']}\n")
        out.extend(_row(path, t) for path, t in run["paths"].items())
        out.append(_row("all paths", run["total"]))
    out.append("all runs\n")
    out.extend(_row(path, t) for path, t in summary["paths"].items())
    out.append(_row("total", summary["total"]))
    return "".join(out)
