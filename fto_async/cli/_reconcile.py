"""``fto-async usage JOURNAL --reconcile``: the ledger against the platform's statement.

See :mod:`fto_async.cli._usage` for the rule. Strictly private.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from .._journal_ledger import CallCount, platform_day
from .._statement import COLLECTED_AT, STATEMENT_PATH, UsageStatement, check_days
from ..client import FtoClient
from ..errors import ConfigurationError, FtoError, InvalidRequestError
from ..transport import TOKEN_PATH
from ._common import EXIT_FATAL, EXIT_OK, EXIT_ROWS, EXIT_USAGE, open_journal, say_error

__all__ = ["NOTE", "compare", "reconcile"]

NOTE = (f"The platform collects its detailed records daily at {COLLECTED_AT} (China "
        "Standard Time): the latest calls may show in its statement only a day later.")
_UNBILLED = frozenset({TOKEN_PATH, STATEMENT_PATH})


def compare(lines: list[CallCount], statement: UsageStatement) -> dict[str, dict[str, int]]:
    """Per path: the ledger's ``reached``/``answered`` and the statement's
    ``usage_times``/``fee_times``, with their differences (statement minus ledger)."""
    reached: Counter[str] = Counter()
    answered: Counter[str] = Counter()
    for line in lines:
        if line.path in _UNBILLED or line.result == "unanswered":
            continue
        reached[line.path] += line.n
        if line.result == "answered":
            answered[line.path] += line.n
    usage = {u.request_path: u for u in statement.usage if u.request_path not in _UNBILLED}
    out = {}
    for path in sorted(set(reached) | set(usage)):
        times = usage[path].usage_times if path in usage else 0
        fees = usage[path].fee_times if path in usage else 0
        out[path] = {
            "ledger_reached": reached[path], "usage_times": times,
            "usage_diff": times - reached[path],
            "ledger_answered": answered[path], "fee_times": fees,
            "fee_diff": fees - answered[path],
        }  # fmt: skip
    return out


def reconcile(args: argparse.Namespace) -> int:
    start = args.time_start or platform_day()
    end = args.time_end or start
    try:
        check_days(start, end)
    except InvalidRequestError as exc:
        say_error(f"--from/--to: {exc}")
        return EXIT_USAGE
    lines = asyncio.run(_read(args.journal, start, end))
    if lines is None:
        return EXIT_USAGE
    try:
        client = FtoClient.from_env(**({"base_url": args.base_url} if args.base_url else {}))
    except ConfigurationError as exc:
        say_error(str(exc))
        return EXIT_USAGE
    try:
        statement = asyncio.run(_ask(client, start, end))
    except FtoError as exc:
        say_error(f"the statement call failed: {type(exc).__name__}: {exc}")
        return EXIT_FATAL
    table = compare(lines, statement)
    differences = sum(1 for row in table.values() if row["usage_diff"] or row["fee_diff"])
    if args.json:
        sys.stdout.write(json.dumps({"from": start, "to": end, "paths": table,
                                     "differences": differences, "note": NOTE},
                                    indent=2) + "\n")  # fmt: skip
    else:
        sys.stdout.write(_render(start, end, table, differences))
    return EXIT_ROWS if differences else EXIT_OK


async def _ask(client: FtoClient, start: str, end: str) -> UsageStatement:
    async with client:
        return await client.usage_statement(start, end)


async def _read(path: Path, start: str, end: str) -> list[CallCount] | None:
    journal = await open_journal(path, readonly=True)
    if journal is None:
        return None
    try:
        return [line for line in journal.calls() if start <= line.day <= end]
    finally:
        await journal.aclose()


def _render(start: str, end: str, table: dict[str, Any], differences: int) -> str:
    out = [f"statement {start}..{end} against the journal's call ledger\n",
           f"  {'path':<40} {'reached':>8} {'usage':>8} {'answered':>9} {'fee':>8}\n"]
    for path, row in table.items():
        mark = "  <- differs" if row["usage_diff"] or row["fee_diff"] else ""
        out.append(f"  {path:<40} {row['ledger_reached']:>8} {row['usage_times']:>8} "
                   f"{row['ledger_answered']:>9} {row['fee_times']:>8}{mark}\n")
    out.append("no difference\n" if not differences else f"{differences} paths differ\n")
    out.append(NOTE + "\n")
    return "".join(out)
