"""Batch screening benchmark: screen_many against naive designs, same emulator.

Run:  python benchmarks/screening.py            # every regime, about 8 minutes
      python benchmarks/screening.py --regime catalog --virtual   # both poll orders,
                                                   # virtual clock: exact, load-proof
      python benchmarks/screening.py --regime catalog|long|small|ten
      python benchmarks/screening.py --threads    # also the thread pool (long regime)
      python benchmarks/screening.py --memory     # 100,000 items, peak RSS growth

The SDK always starts cold: ``PollConfig()`` has no seed, nothing is restored, so
every run pays its own scouting. Time is scaled by ``--scale`` (0.2) in the catalog and
long regimes: the emulator's latencies and task durations shrink by it and its QPS limit
grows by its inverse (at 0.1 the emulator process itself saturates near 420 calls/s on a
2-core machine). Tasks are lognormal (sigma 0.3) around a median the platform does not
publish (see regimes). Columns: calls per task as the emulator counted them, rejected
calls (67200002) apart in every design (the "equal calls" interval matches the SDK's
accepted calls); wall / makespan bound: max(C / (0.96 Q), N / (0.96 Q) + q0.95(D)), C
the design's accepted calls, Q the scaled QPS, D the task durations; overshoot
= from a task's end to the first poll that saw it done (emulator clock), p50 and p90 over
all tasks, divided by the median duration; tail = from the last task's end to the poll
that saw it; client CPU = the benchmark process's CPU time (the emulator runs in another
process) per 1,000 items.

* fto_async: ``client.screen_many(generator)`` with ``PollConfig().scaled(scale)``.
* naive asyncio: ``asyncio.gather`` over every item of "submit, then poll every 2 s
  until done", all calls through ``AsyncLimiter(Q, 1)`` with ``backoff`` on 67200002.
* fair naive (the 10 s regime): the same, but sleeping before its first poll too, with
  the interval at which it spends the SDK's measured polls per task (equal calls), and
  with the interval at which it finishes soonest (its fastest).
* thread pool (``--threads``): 64 threads of blocking urllib calls, paced by a lock.

Regimes:

* small: 1, 20 and 300 items, Q=40, 2 s tasks, 0.3 s submits, no scaling (cold start:
  first outcome against the first task's end; 300 items: wall <= 1.15x bound).
* 300 items, 10 s tasks, Q=40: overshoot p50 <= 0.5x, p90 <= 1x the median, tail <=
  0.5x median + 3 s, <= 2.3 calls per task; and the fair naive comparisons.
* catalog: N=5000, median task 30 s, Q=50: wall <= 1.1x ``2N/Q + median``, <= 2.2 calls.
* long tasks: N=800, median task 60 s, Q=50: overshoot and tail as above.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
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
SIGMA = 0.3


def body(i: int) -> dict[str, Any]:
    return {"url": f"https://example.com/sku-{i}.png", "country": ["US", "EU"], "lang": "en"}


def emulator_args(qps: float, scale: float, median: float, submit: float = 5.0) -> list[str]:
    return [
        "--qps", str(qps), "--time-scale", str(scale), "--task-duration", str(median),
        "--task-duration-sigma", str(SIGMA), "--seed", "7", "--submit-latency", str(submit),
    ]


def emulator_stats(url: str) -> dict[str, Any]:
    stats: dict[str, Any] = admin(url, "/_emulator/stats")
    stats["business_calls"] = sum(sum(codes.values()) for codes in stats["calls"].values())
    stats["rejects"] = sum(codes.get("67200002", 0) for codes in stats["calls"].values())
    return stats


async def run_sdk(url: str, n: int, qps: float, scale: float) -> dict[str, Any]:
    requests = (ImageSearchRequest(**body(i)) for i in range(n))
    poll = PollConfig().scaled(scale)
    async with FtoClient(api_key=KEY, base_url=url, qps=qps, poll=poll) as client:
        cpu0, t0 = time.process_time(), time.monotonic()
        done, first, raw = 0, None, None
        async for outcome in client.screen_many(requests):
            done += outcome.ok
            if first is None:
                first = time.monotonic()
            if raw is None and outcome.report is not None:
                raw = outcome.report.raw
        wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
        decode_us = size = None
        if raw is not None:  # one ~30 KB report, decoded as the client does
            size = len(json.dumps(raw))
            c0 = time.perf_counter()
            for _ in range(200):
                client.decode_report(raw)
            decode_us = (time.perf_counter() - c0) / 200 * 1e6
    assert done == n, f"only {done} of {n} succeeded"
    return {"wall": wall, "first": first, "cpu": cpu, "decode_us": decode_us, "size": size}


async def run_naive(url: str, n: int, qps: float, scale: float, every: float = POLL_EVERY,
                    sleep_first: bool = False) -> dict[str, Any]:
    """``every`` in platform seconds; ``sleep_first``: wait before the first poll too."""
    limiter = AsyncLimiter(qps, 1)
    params, headers = {"apikey": KEY}, {"Authorization": f"Bearer {KEY}"}
    first: list[float] = []
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
            if sleep_first:
                await asyncio.sleep(every * scale)
            while True:
                report = await call("/ai/image-search/report", {"task_id": task_id})
                if report["data"]["task_status"] != 1:
                    first.append(time.monotonic())
                    return
                await asyncio.sleep(every * scale)

        t0 = time.monotonic()
        await asyncio.gather(*(screen(i) for i in range(n)))
        return {"wall": time.monotonic() - t0, "first": min(first), "cpu": None}


def run_threads(url: str, n: int, qps: float, scale: float, workers: int = 64) -> dict[str, Any]:
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
    return {"wall": time.monotonic() - t0, "first": None, "cpu": None}


def _durations(median: float, k: int = 20000) -> list[float]:
    rng = random.Random(11)
    return [median * math.exp(rng.gauss(0.0, SIGMA)) for _ in range(k)]


def interval_for_polls(median: float, polls: float) -> float:
    """The poll interval (platform s) at which the sleep-first naive design spends
    ``polls`` polls per task on lognormal tasks: E[ceil(d / I)] = polls."""
    ds = _durations(median)
    lo, hi = median * 0.05, median * 20
    for _ in range(50):
        mid = math.sqrt(lo * hi)
        spent = sum(math.ceil(d / mid) for d in ds) / len(ds)
        lo, hi = (mid, hi) if spent > polls else (lo, mid)
    return hi


def fastest_interval(n: int, qps: float, median: float) -> float:
    """The interval (platform s) at which the sleep-first naive design ends soonest, by
    a simple model: each task ends at its submit slot plus ``ceil(d / I) * I``, and all
    its calls must fit the QPS limit. Shorter intervals only add calls."""
    ds = _durations(median, n)
    best, best_end = median, math.inf
    for k in range(200):
        every = median * 0.02 * 1.03 ** k
        polls = sum(math.ceil(d / every) for d in ds)
        end = max(max(i / qps + math.ceil(d / every) * every for i, d in enumerate(ds)),
                  (n + polls) / qps)
        if end < best_end:
            best, best_end = every, end
    return best


def makespan_bound(calls: float, n: int, rate: float, median_s: float) -> float:
    """The least wall any design can reach: max(C / (0.96 Q), N / (0.96 Q) + q0.95(D)),
    C the calls it spent (rejected ones apart), Q the gate's rate, D the durations."""
    q95 = median_s * math.exp(1.645 * SIGMA)
    return max(calls / (0.96 * rate), n / (0.96 * rate) + q95)


def row(name: str, result: dict[str, Any], stats: dict[str, Any], n: int, bound: float,
        median_s: float, ref: float | None, rate: float) -> list[object]:
    over = stats["overshoot"]
    accepted = stats["business_calls"] - stats["rejects"]
    makespan = makespan_bound(accepted, n, rate, median_s)
    p50 = over["p50"] / median_s if over["p50"] is not None else float("nan")
    p90 = over["p90"] / median_s if over["p90"] is not None else float("nan")
    tail = over["tail"] if over["tail"] is not None else float("nan")
    cpu = "" if result["cpu"] is None else f"{result['cpu'] / n * 1000:.2f}"
    return [name, result["wall"], result["wall"] / bound, result["wall"] / makespan,
            accepted / n, stats["rejects"] / n, stats["rejects"], p50, p90, tail, tail / median_s,
            result["wall"] / ref if ref else 1.0, cpu]


HEADER = ["design", "wall s", "wall / bound", "wall / makespan bound", "calls / task",
          "rejected / task", "67200002",
          "overshoot p50 / median", "overshoot p90 / median", "tail s", "tail / median",
          "wall / fto_async", "client CPU s / 1000 items"]


def compare(regime: str, n: int, qps: float, scale: float, median: float, *,
            threads: bool = False, submit: float = 5.0, fair: bool = False) -> None:
    rate = qps / scale  # platform QPS in scaled time
    med = median * scale
    bound = 2 * n / rate + med
    rows = []
    with emulator_process(*emulator_args(rate, scale, median, submit)) as url:
        sdk = asyncio.run(run_sdk(url, n, rate, scale))
        sdk_stats = emulator_stats(url)
    rows.append(row("fto_async screen_many", sdk, sdk_stats, n, bound, med, None, rate))
    print(f"  {regime}/sdk: {sdk['wall']:.1f} s", file=sys.stderr)
    designs: list[tuple[str, Any]] = [
        ("naive asyncio (gather + AsyncLimiter), 2 s polls",
         lambda u: asyncio.run(run_naive(u, n, rate, scale))),
    ]
    if fair:
        sdk_polls = (sdk_stats["business_calls"] - sdk_stats["rejects"]) / n - 1
        eq_calls = interval_for_polls(median, sdk_polls)
        fastest = fastest_interval(n, qps, median)
        designs = [
            (f"naive, sleep-first, every {eq_calls:.1f} s (equal calls)",
             lambda u: asyncio.run(run_naive(u, n, rate, scale, eq_calls, True))),
            (f"naive, sleep-first, every {fastest:.1f} s (its fastest)",
             lambda u: asyncio.run(run_naive(u, n, rate, scale, fastest, True))),
        ]
    if threads:
        designs.append(("thread pool, 64 sync workers", lambda u: run_threads(u, n, rate, scale)))
    for name, runner in designs:
        with emulator_process(*emulator_args(rate, scale, median, submit)) as url:
            result = runner(url)
            stats = emulator_stats(url)
        rows.append(row(name, result, stats, n, bound, med, sdk["wall"], rate))
        print(f"  {regime}/{name}: {result['wall']:.1f} s", file=sys.stderr)
    print(table(
        f"{regime}: {n} items, Q={qps:g}/s, median task {median:g} s, submit {submit:g} s, "
        f"time scale {scale:g} (bound 2N/Q + median = {bound:.1f} s scaled)",
        HEADER, rows,
    ))
    if sdk["decode_us"] is not None:
        print(f"\nfto_async: decode of one {sdk['size'] / 1024:.0f} KB report "
              f"{sdk['decode_us']:.0f} us; client CPU {sdk['cpu']:.2f} s in all "
              f"({sdk['cpu'] / sdk['wall'] * 100:.0f}% of one core over the wall)")
    print()


def virtual_orders(regime: str, n: int, qps: float, median: float, submit: float = 5.0,
                   seed: int = 7) -> None:
    """The SDK alone, both poll orders, on a virtual clock (``tests/_vtime.py``): the
    emulator runs in this process at time scale 1, so every timestamp is exact and the
    machine's load changes nothing (CPU time is not measured: it takes no virtual time)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from fto_async.emulator import Emulator, EmulatorConfig
    from tests._vtime import run_virtual

    async def one(order: str) -> tuple[dict[str, Any], dict[str, Any]]:
        config = EmulatorConfig(qps=qps, time_scale=1.0, task_duration=median,
                                task_duration_sigma=SIGMA, seed=seed, submit_latency=submit)
        async with Emulator(config) as emu, FtoClient(
            api_key=KEY, base_url=emu.base_url, qps=qps, poll=PollConfig(order=order)
        ) as client:
            loop = asyncio.get_running_loop()
            t0, first, done = loop.time(), None, 0
            async for outcome in client.screen_many(
                ImageSearchRequest(**body(i)) for i in range(n)
            ):
                done += outcome.ok
                first = loop.time() - t0 if first is None else first
            wall = loop.time() - t0
            stats = emu.stats.snapshot()
        assert done == n, f"only {done} of {n} succeeded"
        stats["business_calls"] = sum(sum(c.values()) for c in stats["calls"].values())
        stats["rejects"] = sum(c.get("67200002", 0) for c in stats["calls"].values())
        return {"wall": wall, "first": first, "cpu": None}, stats

    bound = 2 * n / qps + median
    rows = []
    for order in ("results", "makespan"):
        t0 = time.monotonic()
        result, stats = run_virtual(lambda order=order: one(order))  # type: ignore[misc]
        rows.append(row(f"fto_async, order={order!r}", result, stats, n, bound, median, None,
                        qps))
        print(f"  {regime}/{order}: {result['wall']:.1f} s virtual "
              f"({time.monotonic() - t0:.0f} s real)", file=sys.stderr)
    print(table(
        f"{regime} on a virtual clock: {n} items, Q={qps:g}/s, median task {median:g} s, "
        f"submit {submit:g} s, emulator seed {seed} (bound 2N/Q + median = {bound:.1f} s)",
        HEADER[:-2], [r[:-2] for r in rows],
    ))


def small_batches(qps: float = 40.0, median: float = 2.0) -> None:
    """Cold start: batches of 1, 20 and 300, 2 s tasks, submit 0.3 s, no time scaling."""
    rows = []
    for n in (1, 20, 300):
        with emulator_process(*emulator_args(qps, 1.0, median, 0.3)) as url:
            sdk = asyncio.run(run_sdk(url, n, qps, 1.0))
            stats = emulator_stats(url)
        ends = _task_ends(stats)
        first_end = min(ends)
        bound = 2 * n / qps + median
        over = stats["overshoot"]
        rows.append([n, sdk["first"] - first_end, sdk["wall"], bound, sdk["wall"] / bound,
                     stats["business_calls"] / n, over["p50"], over["tail"]])
        print(f"  small/{n}: {sdk['wall']:.1f} s", file=sys.stderr)
    print(table(
        f"small batches (cold start, nothing known): Q={qps:g}/s, median task {median:g} s, "
        "submit 0.3 s, no time scaling",
        ["items", "first outcome - first task end s", "wall s", "bound 2N/Q + median s",
         "wall / bound", "calls / task", "overshoot p50 s", "tail s"],
        rows,
    ))
    print()


def _task_ends(stats: dict[str, Any]) -> list[float]:
    return list(stats["task_ends"].values())


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
    parser.add_argument("--regime", choices=["small", "ten", "catalog", "long", "all"],
                        default="all")
    parser.add_argument("--threads", action="store_true", help="also run the thread pool")
    parser.add_argument("--virtual", action="store_true",
                        help="catalog or long: the SDK's two poll orders on a virtual clock")
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
    if args.regime in ("small", "all"):
        small_batches()
    if args.regime in ("ten", "all"):
        compare("300 items, 10 s tasks", 300, 40, 1.0, 10.0, submit=0.3)
        compare("300 items, 10 s tasks, fair naive", 300, 40, 1.0, 10.0, submit=0.3, fair=True)
    if args.virtual:
        if args.regime in ("catalog", "all"):
            virtual_orders("catalog", 5000, args.qps, 30.0)
        if args.regime in ("long", "all"):
            virtual_orders("long tasks", 800, args.qps, 60.0)
        return
    if args.regime in ("catalog", "all"):
        compare("catalog", 5000, args.qps, args.scale, 30.0)
    if args.regime in ("long", "all"):
        compare("long tasks", 800, args.qps, args.scale, 60.0, threads=args.threads)


if __name__ == "__main__":
    main()
