"""A pipeline step: JSONL rows in (stdin or a file), screening outcomes out (stdout, JSONL).

Each input line is ``{"id": ..., "url": ..., "country": [...], "lang": "en"}``
(``country`` may also be ``"US,EU"``; ``lang`` defaults to ``en``). Each output line is
``{"id", "ok", "task_id", "highest_risk", "high_risk_countries", "error"}``, written as
soon as the task completes (not in input order). Input is read lazily, so the step can
sit in a stream of any length: ``screen_step`` is an async generator that takes an
async iterable of dicts and yields dicts.

Try it against the local emulator::

    fto-async emulator --port 8765 --time-scale 0.05
    export PATSNAP_BASE_URL=http://127.0.0.1:8765 PATSNAP_API_KEY=sk-demo PATSNAP_QPS=10
    printf '%s\\n' '{"id": 1, "url": "https://example.com/a.png", "country": ["US"]}' \\
        | python examples/pipeline_step.py --time-scale 0.05 | jq .
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Any, TextIO

from fto_async import FtoClient, ImageSearchRequest, InvalidRequestError, PollConfig
from fto_async.batch import Outcome


async def read_lines(handle: TextIO) -> AsyncIterator[dict[str, Any]]:
    """Yield one dict per non-blank JSON line, reading in a thread (stdin may block)."""
    while line := await asyncio.to_thread(handle.readline):
        if line.strip():
            yield json.loads(line)


def _record(outcome: Outcome) -> dict[str, Any]:
    report = outcome.report.report if outcome.report is not None else None
    risk = outcome.highest_risk
    return {
        "id": outcome.key,
        "ok": outcome.ok,
        "task_id": outcome.task_id,
        "highest_risk": risk.value if risk is not None else None,
        "high_risk_countries": list(report.high_risk_country) if report else [],
        "error": None if outcome.error is None else str(outcome.error),
    }


async def screen_step(
    rows: AsyncIterable[dict[str, Any]], client: FtoClient
) -> AsyncIterator[dict[str, Any]]:
    """The step: screen every row, yield one result dict per row as it completes."""
    refused: list[dict[str, Any]] = []

    async def requests() -> AsyncIterator[tuple[Any, ImageSearchRequest]]:
        async for row in rows:
            country = row.get("country", ["US"])
            if isinstance(country, str):
                country = [c.strip() for c in country.split(",")]
            try:
                yield row.get("id"), ImageSearchRequest(row.get("url"), country,
                                                        row.get("lang", "en"))
            except InvalidRequestError as exc:
                refused.append({"id": row.get("id"), "ok": False, "task_id": None,
                                "highest_risk": None, "high_risk_countries": [],
                                "error": str(exc)})

    async for outcome in client.screen_many(requests()):
        while refused:
            yield refused.pop(0)
        yield _record(outcome)
    while refused:
        yield refused.pop(0)


async def run(source: TextIO, sink: TextIO, time_scale: float = 1.0) -> int:
    """Screen every line of ``source`` into ``sink``; return how many rows failed."""
    failed = 0
    async with FtoClient.from_env(poll=PollConfig().scaled(time_scale)) as client:
        async for record in screen_step(read_lines(source), client):
            failed += not record["ok"]
            sink.write(json.dumps(record) + "\n")
            sink.flush()
    return failed


def main(argv: list[str] | None = None) -> int:
    """Read the input file (default stdin), write JSONL to stdout; 1 if any row failed."""
    parser = argparse.ArgumentParser(description="FTO screening pipeline step (JSONL)")
    parser.add_argument("input", nargs="?", type=Path, help="JSONL file (default stdin)")
    parser.add_argument("--time-scale", type=float, default=1.0)
    args = parser.parse_args(argv)
    if args.input is None:
        failed = asyncio.run(run(sys.stdin, sys.stdout, args.time_scale))
    else:
        with args.input.open(encoding="utf-8") as handle:
            failed = asyncio.run(run(handle, sys.stdout, args.time_scale))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
