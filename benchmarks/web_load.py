"""Web load: N concurrent single ``screen`` calls, a share of them duplicates.

Run:  nice -n 10 python benchmarks/web_load.py          # about a minute on 2 cores
      python benchmarks/web_load.py --calls 500 --duplicates 0.5 --max-waiting 100

What a web app behind ``examples/fastapi_app.py`` sees when ``--calls`` requests arrive
at once (``--arrival-rate`` spreads them as a Poisson stream instead), each asking one
product image, ``--duplicates`` of them an image another request also asks. Every
request is a ``client.screen(request)`` on one shared client, against an emulator
subprocess time-scaled by ``--scale`` (0.1: a 5 s submit takes 0.5 s, a 30 s task 3 s,
the QPS limit is 10x). Latencies are quoted in platform seconds (measured / scale).

Three runs, each on a fresh emulator and a fresh client:

* ``screen``: single flight across callers (duplicates share one task) and the client's
  report cache (a duplicate arriving after its twin's task ended is answered from it;
  ``--no-cache`` leaves it out), no bound;
* ``screen, max_waiting=M``: the same, and new questions beyond M in flight are refused at once with
  ``OverloadedError`` (a web app's 429); the refused calls are not retried here;
* ``naive``: what an app without ``screen`` does, one ``begin_screening`` +
  ``poller.result()`` per request: no sharing, every duplicate pays its task.

Columns: calls made, distinct questions, answered, refused (and how fast, p95), latency
p50/p95 of the answered calls, submits per distinct question, platform calls in all.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import admin, emulator_process, image_sequence, table

from fto_async import FtoClient, ImageSearchRequest, OverloadedError, PollConfig, ReportCache

KEY = "sk-demo"
SUBMIT = "/ai/image-search/submit"


def requests(calls: int, duplicate_share: float, seed: int = 22) -> list[ImageSearchRequest]:
    """``calls`` requests; ``duplicate_share`` of them repeat another request's image."""
    return [ImageSearchRequest(url=f"https://example.com/web-{image}.png",
                               country=["US", "EU"], lang="en")
            for image in image_sequence(calls, duplicate_share, seed)]  # fmt: skip


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


async def load(
    url: str, asks: list[ImageSearchRequest], mode: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Fire the calls (at once, or at ``arrival_rate``); time each one."""
    rate = args.qps / args.scale
    max_waiting = args.max_waiting if mode == "bounded" else None
    latencies: list[float] = []
    refusals: list[float] = []
    errors = 0
    rng = random.Random(5)
    folder = tempfile.TemporaryDirectory()
    cache = None if mode == "naive" or args.no_cache else ReportCache(
        Path(folder.name) / "reports.db")
    async with FtoClient(api_key=KEY, base_url=url, qps=rate, max_waiting=max_waiting,
                         poll=PollConfig(initial_estimate=args.seed).scaled(args.scale),
                         cache=cache) as client:  # fmt: skip

        async def one(request: ImageSearchRequest, delay: float) -> None:
            nonlocal errors
            await asyncio.sleep(delay)
            started = time.monotonic()
            try:
                if mode == "naive":
                    poller = await client.begin_screening(request)
                    await poller.result()
                    ok = True
                else:
                    ok = (await client.screen(request)).ok
            except OverloadedError:
                refusals.append(time.monotonic() - started)
                return
            except Exception:  # counted, the load goes on
                ok = False
            if ok:
                latencies.append(time.monotonic() - started)
            else:
                errors += 1

        at = 0.0
        delays = []
        for _ in asks:
            delays.append(at)
            if args.arrival_rate:
                at += rng.expovariate(args.arrival_rate / args.scale)
        t0 = time.monotonic()
        await asyncio.gather(*(one(r, d) for r, d in zip(asks, delays, strict=True)))
        wall = time.monotonic() - t0
    if cache is not None:
        await cache.aclose()
    folder.cleanup()
    return {"latencies": latencies, "refusals": refusals, "errors": errors, "wall": wall}


def calls_by_path(url: str) -> dict[str, int]:
    stats = admin(url, "/_emulator/stats")
    return {path: sum(codes.values()) for path, codes in stats["calls"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--duplicates", type=float, default=0.3)
    parser.add_argument("--qps", type=float, default=10, help="platform QPS limit")
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--max-waiting", type=int, default=50)
    parser.add_argument("--arrival-rate", type=float, default=0.0,
                        help="requests per platform second (0: all at once)")
    parser.add_argument("--seed", type=float, default=None, metavar="SECONDS",
                        help="seed the client's task durations (PollConfig.initial_estimate"
                             ", no scouting), as a client already running for a while")
    parser.add_argument("--no-cache", action="store_true",
                        help="screen runs without a report cache")
    args = parser.parse_args()
    asks = requests(args.calls, args.duplicates)
    distinct = len({r.url for r in asks})
    emu = ["--qps", str(args.qps / args.scale), "--time-scale", str(args.scale),
           "--task-duration", "30", "--task-duration-sigma", "0.3", "--seed", "7"]
    runs = [("screen", "shared"), (f"screen, max_waiting={args.max_waiting}", "bounded"),
            ("naive: begin_screening per call", "naive")]  # fmt: skip
    rows = []
    for name, mode in runs:
        with emulator_process(*emu) as url:
            result = asyncio.run(load(url, asks, mode, args))
            spent = calls_by_path(url)
        lat = sorted(x / args.scale for x in result["latencies"])
        refused = sorted(result["refusals"])
        submits = spent.get(SUBMIT, 0)
        rows.append([
            name, args.calls, distinct, len(lat), len(refused),
            f"{quantile(refused, 0.95) * 1000:.1f}" if refused else "-",
            f"{quantile(lat, 0.5):.1f}", f"{quantile(lat, 0.95):.1f}",
            submits, f"{submits / distinct:.2f}", sum(spent.values()),
            f"{sum(spent.values()) / distinct:.2f}",
            f"{result['wall'] / args.scale:.1f}",
        ])  # fmt: skip
        print(f"  {name}: {result['wall']:.1f} s wall, {result['errors']} errors",
              file=sys.stderr)
    arrival = (f"Poisson arrivals at {args.arrival_rate:g}/s" if args.arrival_rate
               else "all at once")
    arrival += f", durations seeded at {args.seed:g} s" if args.seed else ", cold client"
    print(table(
        f"Web load: {args.calls} screen calls ({arrival}), {args.duplicates:.0%} "
        f"duplicates, Q={args.qps:g}/s, tasks ~30 s, time scale {args.scale:g}",
        ["run", "calls", "distinct", "answered", "refused", "refusal p95 ms (wall)",
         "p50 s", "p95 s", "submits", "submits / distinct", "platform calls",
         "calls / distinct", "wall s"],
        rows,
    ))  # fmt: skip


if __name__ == "__main__":
    main()
