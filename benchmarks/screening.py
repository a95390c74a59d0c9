"""Batch screening benchmark: screen_many against two naive designs, one emulator run each.

Run:  python benchmarks/screening.py [--items 1000] [--qps 50] [--scale 0.1]
      python benchmarks/screening.py --memory [--memory-items 100000]

Every scenario screens the same ``--items`` requests against a fresh emulator process
whose QPS limit is ``--qps`` and whose latencies and task durations are the platform's
scaled by ``--scale`` (submit 5 s; tasks lognormal with median ``--task-median`` s of
platform time, 60 by default, and sigma 0.5; the platform publishes no figure).

* fto_async: ``client.screen_many(generator)`` with ``PollConfig().scaled(scale)``.
* naive asyncio: ``asyncio.gather`` over every item of "submit, then poll every 2 s
  until done", all calls through ``AsyncLimiter(Q, 1)`` with ``backoff`` on 67200002.
* thread pool: 64 threads of blocking urllib calls (requests-style), same per-item
  logic, paced by a shared lock at Q calls/s, sleeping 1 s on 67200002.

Lower bound: every item needs at least a submit and a poll, so ``2N / Q`` seconds of
calls, plus the median task time for the last task. Goals: wall <= 1.1x the bound,
<= 2.2 calls per task, >= 3x faster than the naive asyncio design.

``--memory`` screens ``--memory-items`` requests from a generator against instant
tasks and reports the peak RSS growth (goal: <= 50 MB for 100,000 items).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import backoff
from aiolimiter import AsyncLimiter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import admin, emulator_process, table

from fto_async import FtoClient, ImageSearchRequest, PollConfig, RateLimitedError

KEY = "sk-demo"
MEDIAN_TASK = 60.0
POLL_EVERY = 2.0


def body(i: int) -> dict[str, Any]:
    return {"url": f"https://example.com/sku-{i}.png", "country": ["US", "EU"], "lang": "en"}


def emulator_args(qps: float, scale: float, median: float) -> list[str]:
    return [
        "--qps", str(qps), "--time-scale", str(scale), "--task-duration", str(median),
        "--task-duration-sigma", "0.5", "--seed", "7",
    ]


def business_calls(url: str) -> tuple[int, int]:
    stats = admin(url, "/_emulator/stats")
    calls = sum(sum(codes.values()) for codes in stats["calls"].values())
    rejects = sum(codes.get("67200002", 0) for codes in stats["calls"].values())
    return calls, rejects


async def run_sdk(url: str, n: int, qps: float, scale: float) -> float:
    requests = (ImageSearchRequest(**body(i)) for i in range(n))
    poll = PollConfig().scaled(scale)
    async with FtoClient(api_key=KEY, base_url=url, qps=qps, poll=poll) as client:
        t0 = time.monotonic()
        done = 0
        async for outcome in client.screen_many(requests):
            done += outcome.ok
        wall = time.monotonic() - t0
    assert done == n, f"only {done} of {n} succeeded"
    return wall


async def run_naive(url: str, n: int, qps: float, scale: float) -> float:
    limiter = AsyncLimiter(qps, 1)
    params, headers = {"apikey": KEY}, {"Authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        @backoff.on_exception(backoff.expo, RateLimitedError, max_tries=30, logger=None)
        async def call(path: str, payload: dict[str, Any]) -> dict[str, Any]:
            async with limiter, session.post(url + path, params=params, headers=headers,
                                    json=payload) as resp:
                answer: dict[str, Any] = await resp.json()
            if answer.get("error_code") == 67200002:
                raise RateLimitedError(67200002, "rate")
            return answer

        async def screen(i: int) -> None:
            task_id = (await call("/ai/image-search/submit", body(i)))["data"]["task_id"]
            while True:
                report = await call("/ai/image-search/report", {"task_id": task_id})
                if report["data"]["task_status"] != 1:
                    return
                await asyncio.sleep(POLL_EVERY * scale)

        t0 = time.monotonic()
        await asyncio.gather(*(screen(i) for i in range(n)))
        return time.monotonic() - t0


def run_threads(url: str, n: int, qps: float, scale: float, workers: int = 64) -> float:
    lock = threading.Lock()
    next_slot = [time.monotonic()]

    def call(path: str, payload: dict[str, Any]) -> dict[str, Any]:
        while True:
            with lock:  # pace: one call every 1/Q seconds
                now = time.monotonic()
                wait = next_slot[0] - now
                next_slot[0] = max(now, next_slot[0]) + 1 / qps
            if wait > 0:
                time.sleep(wait)
            req = urllib.request.Request(
                f"{url}{path}?apikey={KEY}", data=json.dumps(payload).encode(), method="POST",
                headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=60) as resp:  # loopback only
                answer: dict[str, Any] = json.loads(resp.read())
            if answer.get("error_code") != 67200002:
                return answer
            time.sleep(1.0)

    def screen(i: int) -> None:
        task_id = call("/ai/image-search/submit", body(i))["data"]["task_id"]
        while call("/ai/image-search/report", {"task_id": task_id})["data"]["task_status"] == 1:
            time.sleep(POLL_EVERY * scale)

    t0 = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(screen, range(n)))
    return time.monotonic() - t0


def compare(n: int, qps: float, scale: float, median: float) -> None:
    bound = 2 * n / qps + median * scale
    rows = []
    sdk_wall = None
    for name, runner in (
        ("fto_async screen_many", lambda u: asyncio.run(run_sdk(u, n, qps, scale))),
        ("naive asyncio (gather + AsyncLimiter)",
         lambda u: asyncio.run(run_naive(u, n, qps, scale))),
        ("thread pool, 64 sync workers", lambda u: run_threads(u, n, qps, scale)),
    ):
        with emulator_process(*emulator_args(qps, scale, median)) as url:
            wall = runner(url)
            calls, rejects = business_calls(url)
        sdk_wall = sdk_wall or wall
        rows.append([name, wall, wall / bound, calls / n, rejects, wall / sdk_wall])
        print(f"  {name}: {wall:.1f} s", file=sys.stderr)
    print(table(
        f"Screening {n} items at Q={qps:g}/s, time scale {scale:g} "
        f"(median task {median * scale:g} s); lower bound 2N/Q + median = {bound:.1f} s",
        ["design", "wall s", "wall / bound", "calls / task", "67200002", "wall / fto_async"],
        rows,
    ))


async def run_memory(url: str, n: int) -> tuple[float, float, int]:
    requests = (ImageSearchRequest(**body(i)) for i in range(n))
    poll = PollConfig(min_interval=0.0, initial_estimate=0.001, interval=0.01)
    async with FtoClient(api_key=KEY, base_url=url, qps=4000, poll=poll) as client:
        warm = (ImageSearchRequest(**body(i)) for i in range(2000))
        async for _ in client.screen_many(warm):
            pass
        base = rss_mb()
        t0 = time.monotonic()
        done = 0
        async for outcome in client.screen_many(requests):
            done += outcome.ok
        return rss_mb() - base, time.monotonic() - t0, done


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--qps", type=float, default=50)
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--task-median", type=float, default=MEDIAN_TASK,
                        help="median task duration in platform seconds (default 60)")
    parser.add_argument("--memory", action="store_true", help="run the memory benchmark only")
    parser.add_argument("--memory-items", type=int, default=100_000)
    args = parser.parse_args()
    if args.memory:
        with emulator_process("--qps", "none", "--time-scale", "0.00001") as url:
            growth, wall, done = asyncio.run(run_memory(url, args.memory_items))
        print(table(
            f"Memory: {args.memory_items} items from a generator, instant tasks",
            ["items done", "wall s", "peak RSS growth MB"],
            [[done, wall, growth]],
        ))
        return
    compare(args.items, args.qps, args.scale, args.task_median)


if __name__ == "__main__":
    main()
