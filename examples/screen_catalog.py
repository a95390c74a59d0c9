"""Screen a product catalog with the library: ``screen_many`` and a progress callback.

Reads ``examples/catalog.csv`` (or the CSV given as the first argument), builds one
``ImageSearchRequest`` per row (rows that break a rule are reported and skipped, never
sent), screens them all at the account's QPS and prints the high-risk products.

Try it against the local emulator::

    fto-async emulator --port 8765 --time-scale 0.05          # in one terminal
    export PATSNAP_BASE_URL=http://127.0.0.1:8765 PATSNAP_API_KEY=sk-demo PATSNAP_QPS=10
    python examples/screen_catalog.py --time-scale 0.05       # in another

``--time-scale`` scales the poll schedule to the emulator's (leave it out against the
real platform). Credentials come from the environment (``FtoClient.from_env``).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import fto_async
from fto_async import FtoClient, ImageSearchRequest, InvalidRequestError, PollConfig
from fto_async.batch import Progress

CATALOG = Path(__file__).with_name("catalog.csv")


def requests(path: Path) -> Iterator[tuple[str, ImageSearchRequest]]:
    """Yield ``(sku, request)`` per good row, lazily; report bad rows on stderr."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            try:
                request = ImageSearchRequest(
                    url=row["image_url"],
                    country=[c.strip() for c in row["country"].split(",") if c.strip()],
                    lang="en",
                    loc_items=[row["loc"]] if row.get("loc") else None,
                    apply_start_time=row.get("since") or None,
                    main_field=row.get("main_field") or None,
                )
            except InvalidRequestError as exc:
                print(f"line {line}: {row['sku']}: skipped ({exc})", file=sys.stderr)
                continue
            yield row["sku"], request


def show_progress(p: Progress) -> None:
    """The ``on_progress`` callback: one status line on stderr."""
    print(
        f"\r{p.finished} done ({p.failed} failed), {p.running} running, "
        f"{p.rate:.1f} calls/s, {p.calls} calls",
        end="", file=sys.stderr, flush=True,
    )


async def screen(path: Path = CATALOG, time_scale: float = 1.0) -> Counter[str]:
    """Screen the catalog at ``path``; return how many rows ended at each risk level."""
    levels: Counter[str] = Counter()
    high: list[str] = []
    poll = PollConfig().scaled(time_scale)
    async with FtoClient.from_env(poll=poll) as client:
        async for outcome in client.screen_many(requests(path), on_progress=show_progress):
            if outcome.error is not None:
                levels["failed"] += 1
                continue
            risk = outcome.highest_risk
            levels[risk.value if risk is not None else "none"] += 1
            if risk is fto_async.RiskLevel.HIGH and outcome.report and outcome.report.report:
                countries = ", ".join(outcome.report.report.high_risk_country)
                high.append(f"  {outcome.key}: high risk in {countries or '?'}")
    print(file=sys.stderr)
    print("Rows by highest risk:", dict(sorted(levels.items())))
    print("High-risk products:", *high, sep="\n")
    return levels


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and screen; 0 when every row got a report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("catalog", nargs="?", type=Path, default=CATALOG)
    parser.add_argument("--time-scale", type=float, default=1.0)
    args = parser.parse_args(argv)
    levels = asyncio.run(screen(args.catalog, args.time_scale))
    return 1 if levels["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
