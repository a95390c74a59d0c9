"""Rate-gate benchmark: the SDK against a naive baseline, at a strict platform QPS.

Run:  python benchmarks/rate.py [--qps 50] [--calls 600]

Every scenario fires all its submits at once against a fresh in-process emulator whose
QPS limit is ``--qps`` (submit latency scaled to 100 ms), and reads the emulator's own
record of admitted calls:

* sdk @ Q: ``FtoClient(qps=Q)`` + ``asyncio.gather`` of every submit.
* sdk @ 2Q: the same client told twice the real limit (adaptive mode must cope).
* naive: ``asyncio.gather`` + ``AsyncLimiter(Q, 1)`` + ``backoff`` on 67200002.

Then CPU time per call: the SDK vs a bare aiohttp POST loop, same concurrency, against
one emulator in a subprocess (so only the client's CPU is measured).

Goals: admitted rate >= 0.95 Q, 0 rejects at the limit, CPU per call <= 1.5x bare.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import backoff
from aiolimiter import AsyncLimiter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emulator_process, table

from fto_async import FtoClient, ImageSearchRequest, RateLimitedError
from fto_async.emulator import Emulator, EmulatorConfig

KEY = "sk-demo"
SCALE = 0.02  # 5 s submits take 100 ms


def requests(n: int) -> list[ImageSearchRequest]:
    return [
        ImageSearchRequest(f"https://example.com/p{i}.png", ["US", "EU"], "en") for i in range(n)
    ]


def measure(emu: Emulator, qps: float, wall: float) -> dict[str, Any]:
    stamps = sorted(emu.stats.admitted_times.get(KEY, []))
    span = stamps[-1] - stamps[0] if len(stamps) > 1 else float("nan")
    return {
        "admitted/s / Q": (len(stamps) - 1) / span / qps,
        "67200002": emu.stats.count(code=67200002),
        "calls": sum(emu.stats.calls.values()),
        "max in 1 s": emu.stats.max_calls_in_window(KEY),
        "wall s": wall,
    }


async def sdk(qps: float, told: float, n: int) -> dict[str, Any]:
    async with (
        Emulator(EmulatorConfig(qps=qps, time_scale=SCALE)) as emu,
        FtoClient(api_key=KEY, base_url=emu.base_url, qps=told) as client,
    ):
        reqs = requests(n)
        t0 = time.monotonic()
        await asyncio.gather(*(client.submit_image_search(r) for r in reqs))
        return measure(emu, qps, time.monotonic() - t0)


async def naive(qps: float, n: int) -> dict[str, Any]:
    async with Emulator(EmulatorConfig(qps=qps, time_scale=SCALE)) as emu:
        limiter = AsyncLimiter(qps, 1)
        url = emu.base_url + "/ai/image-search/submit"
        async with aiohttp.ClientSession() as session:

            @backoff.on_exception(backoff.expo, RateLimitedError, max_tries=20, logger=None)
            async def submit(i: int) -> str:
                async with limiter, session.post(
                    url, params={"apikey": KEY}, headers={"Authorization": f"Bearer {KEY}"},
                    json={"url": f"https://e.com/p{i}.png", "country": ["US"], "lang": "en"},
                ) as resp:
                    body = await resp.json()
                if body.get("error_code") == 67200002:
                    raise RateLimitedError(67200002, "rate")
                return str(body["data"]["task_id"])

            t0 = time.monotonic()
            await asyncio.gather(*(submit(i) for i in range(n)))
            return measure(emu, qps, time.monotonic() - t0)


async def cpu_per_call(url: str, n: int, concurrency: int = 32) -> tuple[float, float]:
    body = {"url": "https://example.com/p.png", "country": ["US"], "lang": "en"}

    async def bare() -> float:
        sem = asyncio.Semaphore(concurrency)
        async with aiohttp.ClientSession() as session:
            async def one() -> None:
                async with sem, session.post(
                    url + "/ai/image-search/submit", params={"apikey": KEY},
                    headers={"Authorization": f"Bearer {KEY}"}, json=body,
                ) as resp:
                    data = await resp.json()
                    assert data["status"] is True
            await asyncio.gather(*(one() for _ in range(200)))  # warm-up
            t0 = time.process_time()
            await asyncio.gather(*(one() for _ in range(n)))
            return (time.process_time() - t0) / n

    async def ours() -> float:
        request = ImageSearchRequest(**body)
        async with FtoClient(api_key=KEY, base_url=url, qps=1e6, max_in_flight=concurrency) as c:
            await asyncio.gather(*(c.submit_image_search(request) for _ in range(200)))
            t0 = time.process_time()
            await asyncio.gather(*(c.submit_image_search(request) for _ in range(n)))
            return (time.process_time() - t0) / n

    bare_runs, sdk_runs = [], []
    for _ in range(3):  # interleaved, medians
        bare_runs.append(await bare())
        sdk_runs.append(await ours())
    return statistics.median(bare_runs), statistics.median(sdk_runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qps", type=float, default=50)
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--cpu-calls", type=int, default=3000)
    args = parser.parse_args()
    q, n = args.qps, args.calls

    rows = []
    for name, coro in (
        (f"sdk @ Q={q:g}", sdk(q, q, n)),
        (f"sdk told 2Q={2 * q:g}", sdk(q, 2 * q, n)),
        (f"naive gather+AsyncLimiter({q:g},1)+backoff", naive(q, n)),
    ):
        result = asyncio.run(coro)
        rows.append([name, *result.values()])
        header = ["scenario", *result.keys()]
    print(table(f"Rate gate: {n} submits fired at once, platform limit Q={q:g}/s", header, rows))

    with emulator_process("--qps", "none", "--time-scale", "0.0001") as url:
        bare, ours = asyncio.run(cpu_per_call(url, args.cpu_calls))
    print()
    print(table(
        f"CPU per call ({args.cpu_calls} submits, 32 concurrent, median of 3)",
        ["client", "CPU us/call", "ratio to bare"],
        [["bare aiohttp POST", bare * 1e6, 1.0], ["fto_async FtoClient", ours * 1e6, ours / bare]],
    ))


if __name__ == "__main__":
    main()
