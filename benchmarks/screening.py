"""Batch screening benchmark: screen_many against two naive designs, same emulator.

Run:  python benchmarks/screening.py            # both regimes, about 6 minutes
      python benchmarks/screening.py --memory   # 100,000 items, peak RSS growth

Time is scaled consistently by ``--scale`` (0.2): the emulator's latencies and task
durations shrink by it and its QPS limit grows by its inverse, so a run at Q=50/s of
platform time takes a fifth of the wall time (at 0.1 the emulator process itself
saturates near 420 calls/s on a 2-core machine). Platform figures: submit 5 s, tasks
lognormal (sigma 0.3) around a median the platform does not publish (see regimes),
the naive designs poll every 2 s as the docs recommend.

* fto_async: ``client.screen_many(generator)`` with ``PollConfig().scaled(scale)``.
* naive asyncio: ``asyncio.gather`` over every item of "submit, then poll every 2 s
  until done", all calls through ``AsyncLimiter(Q, 1)`` with ``backoff`` on 67200002.
* thread pool: 64 threads of blocking urllib calls (requests-style), same per-item
  logic, paced by a shared lock at Q calls/s, sleeping 1 s on 67200002.

Two regimes, because the designs differ in different places:

* catalog: many items, tasks short next to the batch (N=5000, median task 30 s). The
  lower bound ``2N/Q + median task`` is tight here; goal wall <= 1.1x it, <= 2.2 calls
  per task. (A FIFO limiter makes the naive design queue its polls behind every
  submit, so it ends up near 2 calls per task too; the thread pool is not run: it
  would take ~5 minutes at 64 workers.)
* long tasks: tasks longer than the submission phase (N=800, median task 60 s). The
  naive designs poll running tasks every 2 s; goal: fto_async >= 3x faster than the
  naive asyncio design. The bound is loose here (the slowest of 800 tasks dominates).
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

from fto_async import (
    ClientConfig,
    FtoClient,
    ImageSearchRequest,
    PollConfig,
    RateConfig,
    RateLimitedError,
)

KEY = "sk-demo"
POLL_EVERY = 2.0


def body(i: int) -> dict[str, Any]:
    return {"url": f"https://example.com/sku-{i}.png", "country": ["US", "EU"], "lang": "en"}


def emulator_args(qps: float, scale: float, median: float) -> list[str]:
    return [
        "--qps", str(qps), "--time-scale", str(scale), "--task-duration", str(median),
        "--task-duration-sigma", "0.3", "--seed", "7",
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


def compare(regime: str, n: int, qps: float, scale: float, median: float, threads: bool) -> None:
    rate = qps / scale  # platform QPS in scaled time
    bound = 2 * n / rate + median * scale
    designs: list[tuple[str, Any]] = [
        ("fto_async screen_many", lambda u: asyncio.run(run_sdk(u, n, rate, scale))),
        ("naive asyncio (gather + AsyncLimiter)",
         lambda u: asyncio.run(run_naive(u, n, rate, scale))),
    ]
    if threads:
        designs.append(("thread pool, 64 sync workers", lambda u: run_threads(u, n, rate, scale)))
    rows = []
    sdk_wall = None
    for name, runner in designs:
        with emulator_process(*emulator_args(rate, scale, median)) as url:
            wall = runner(url)
            calls, rejects = business_calls(url)
        sdk_wall = sdk_wall or wall
        rows.append([name, wall, wall / bound, calls / n, rejects, wall / sdk_wall])
        print(f"  {regime}/{name}: {wall:.1f} s", file=sys.stderr)
    print(table(
        f"{regime}: {n} items, Q={qps:g}/s, median task {median:g} s, time scale {scale:g} "
        f"(bound 2N/Q + median = {bound:.1f} s scaled)",
        ["design", "wall s", "wall / bound", "calls / task", "67200002", "wall / fto_async"],
        rows,
    ))
    print()


async def run_memory(url: str, n: int) -> tuple[float, float, int]:
    requests = (ImageSearchRequest(**body(i)) for i in range(n))
    poll = PollConfig(min_interval=0.0, initial_estimate=0.001, interval=0.01)
    # Instant tasks and a local emulator: tell the gate submits take 20 ms, so its
    # Little's-law in-flight bound (and so the read-ahead) fits this setting.
    config = ClientConfig(base_url=url, poll=poll,
                          rate=RateConfig(qps=2000, submit_latency=0.02))
    async with FtoClient(api_key=KEY, config=config) as client:
        warm = (ImageSearchRequest(**body(i)) for i in range(5000))
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
    parser.add_argument("--qps", type=float, default=50, help="platform QPS limit")
    parser.add_argument("--scale", type=float, default=0.2)
    parser.add_argument("--regime", choices=["catalog", "long", "both"], default="both")
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
    if args.regime in ("catalog", "both"):
        compare("catalog", 5000, args.qps, args.scale, 30.0, threads=False)
    if args.regime in ("long", "both"):
        compare("long tasks", 800, args.qps, args.scale, 60.0, threads=True)


if __name__ == "__main__":
    main()
