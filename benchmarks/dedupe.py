"""Never paying twice: a catalog that repeats itself, against the emulator.

Run:  python benchmarks/dedupe.py               # about a minute on a 2-core machine
      python benchmarks/dedupe.py --baseline    # also dedupe=False, for the saving

A catalog of 10,000 rows in which 30% of the rows repeat an earlier row's image (a
variant, another SKU; the earlier row is drawn uniformly from all before it, so many
duplicates come long after their first row finished). Everything runs through
``client.screen_many(rows, cache=ReportCache(tmp))`` against an emulator subprocess,
time-scaled by ``--scale`` (0.1: a 5 s submit takes 0.5 s, the QPS limit is 10x), with
tasks lognormal (sigma 0.3) around 30 s, as benchmarks/screening.py's catalog regime.

Goals (issue 12):

* run 1 (cold cache): business calls <= 2.05 x the distinct requests (one submit and
  about one poll per distinct request; duplicates cost nothing);
* run 2 (same catalog, warm cache): 0 submits (and 0 calls);
* the CPU that fingerprinting adds per row, measured with ``time.perf_counter`` over
  every row of the catalog (quoted in microseconds).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import admin, emulator_process, image_sequence, table

from fto_async import FtoClient, ImageSearchRequest, PollConfig, ReportCache
from fto_async.fingerprint import request_fingerprint

KEY = "sk-demo"


def catalog(
    rows: int, duplicate_share: float, seed: int = 12
) -> list[tuple[str, ImageSearchRequest]]:
    """``rows`` keyed requests; ``duplicate_share`` of them repeat an earlier image."""
    return [(f"SKU-{r:05d}", ImageSearchRequest(url=f"https://example.com/img-{image}.png",
                                                country=["US", "EU"], lang="en"))
            for r, image in enumerate(image_sequence(rows, duplicate_share, seed))]  # fmt: skip


def calls_by_path(url: str) -> dict[str, int]:
    stats = admin(url, "/_emulator/stats")
    return {path: sum(codes.values()) for path, codes in stats["calls"].items()}


async def screen(url: str, rows: list[tuple[str, ImageSearchRequest]], qps: float, scale: float,
                 cache: ReportCache | None, dedupe: bool = True) -> tuple[float, int, int, int]:
    poll = PollConfig().scaled(scale)
    async with FtoClient(api_key=KEY, base_url=url, qps=qps, poll=poll) as client:
        t0 = time.monotonic()
        ok = shared = cached = 0
        async for outcome in client.screen_many(rows, cache=cache, dedupe=dedupe):
            ok += outcome.ok
            shared += outcome.shared_with is not None
            cached += outcome.from_cache
        return time.monotonic() - t0, ok, shared, cached


def fingerprint_cost(rows: list[tuple[str, ImageSearchRequest]], rounds: int = 3) -> float:
    """Microseconds per row of request_fingerprint (best of ``rounds`` passes)."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _key, request in rows:
            request_fingerprint(request)
        best = min(best, time.perf_counter() - t0)
    return best / len(rows) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--duplicates", type=float, default=0.3)
    parser.add_argument("--qps", type=float, default=40, help="platform QPS limit")
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--baseline", action="store_true", help="also run with dedupe=False")
    args = parser.parse_args()
    rows = catalog(args.rows, args.duplicates)
    distinct = len({request.url for _key, request in rows})
    rate = args.qps / args.scale
    emu = ["--qps", str(rate), "--time-scale", str(args.scale), "--task-duration", "30",
           "--task-duration-sigma", "0.3", "--seed", "7"]
    results = []
    with tempfile.TemporaryDirectory() as folder, emulator_process(*emu) as url:
        cache_path = Path(folder) / "reports.db"
        for name in ("run 1: cold cache", "run 2: same catalog, warm cache"):
            before = calls_by_path(url)
            cache = ReportCache(cache_path)
            wall, ok, shared, cached = asyncio.run(screen(url, rows, rate, args.scale, cache))
            cache.close()
            after = calls_by_path(url)
            spent = {p: after.get(p, 0) - before.get(p, 0) for p in after}
            calls = sum(spent.values())
            submits = spent.get("/ai/image-search/submit", 0)
            results.append([name, args.rows, distinct, ok, shared, cached, submits, calls,
                            f"{calls / distinct:.3f}", wall])
            print(f"  {name}: {wall:.1f} s, {calls} calls", file=sys.stderr)
    if args.baseline:
        with emulator_process(*emu) as url:
            wall, ok, shared, cached = asyncio.run(
                screen(url, rows, rate, args.scale, None, dedupe=False))
            spent = calls_by_path(url)
            calls = sum(spent.values())
            results.append(["dedupe=False, no cache", args.rows, distinct, ok, shared, cached,
                            spent.get("/ai/image-search/submit", 0), calls,
                            f"{calls / distinct:.3f}", wall])
    micro = fingerprint_cost(rows)
    print(table(
        f"Dedupe and cache: {args.rows} rows, {args.duplicates:.0%} duplicate images, "
        f"Q={args.qps:g}/s, time scale {args.scale:g}",
        ["run", "rows", "distinct", "ok", "shared", "from cache", "submits", "calls",
         "calls / distinct", "wall s"],
        results,
    ))
    print()
    first, second = results[0], results[1]
    ratio = float(first[8])
    print(table("Goals", ["measure", "measured", "goal", "met"], [
        ["run 1 calls / distinct requests", f"{ratio:.3f}", "<= 2.05", ratio <= 2.05],
        ["run 2 submits (warm cache)", second[6], "0", second[6] == 0],
        ["fingerprint CPU per row (us)", f"{micro:.1f}", "quoted", "-"],
    ]))


if __name__ == "__main__":
    main()
