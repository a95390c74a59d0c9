"""Shared rate gate benchmark: 4 processes on one account, with and without Redis.

Run:  python benchmarks/shared_gate.py [--qps 40] [--calls 1000] [--processes 4]

Needs redis-server on PATH (started here on a free port, no persistence) and the
``redis`` extra. Every scenario starts a fresh in-process emulator whose QPS limit is
``--qps`` (submit latency scaled to 100 ms) and ``--processes`` real client processes
(tests/redis/_worker.py) that fire ``--calls / --processes`` submits each at once:

* local, qps=Q each: today's behaviour, every process paces itself at the full Q.
* local, qps=Q/N each: the static split people use instead (no sharing, no spare).
* redis, qps=Q: ``FtoClient(qps=Q, redis_url=...)`` in every process.

The emulator's record of every attempt (refused ones included) gives the 67200002
count, the fullest 1-s window and the admitted rate. Then the cost of the shared gate
for one call, against the local gate in the same run: client CPU per call (32
concurrent, unpaced), Redis server CPU per call, and latency per call (one at a time).

Goals with Redis: 0 rejects, aggregate >= 0.93 Q.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import redis
from _common import emulator_process, table

from fto_async import FtoClient, ImageSearchRequest
from fto_async.emulator import Emulator, EmulatorConfig

KEY = "sk-demo"
SCALE = 0.02  # 5 s submits take 100 ms
WORKER = Path(__file__).resolve().parents[1] / "tests" / "redis" / "_worker.py"


def start_redis() -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not on PATH")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.02)
    return proc, f"redis://127.0.0.1:{port}/0"


async def scenario(
    q: float, n: int, procs: int, told: float, redis_url: str | None
) -> dict[str, Any]:
    if redis_url:
        with redis.Redis.from_url(redis_url) as r:
            r.flushall()
    async with Emulator(EmulatorConfig(qps=q, time_scale=SCALE)) as emu:
        args = ["--base-url", emu.base_url, "--redis-url", redis_url or "none", "--qps",
                str(told), "--calls", str(n // procs), "--start-at", str(time.time() + 1.5)]
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable, str(WORKER), *args, "--name", f"w{i}",
                stdout=asyncio.subprocess.PIPE,
            )
            for i in range(procs)
        ]
        outs = await asyncio.gather(*(w.communicate() for w in workers))
        results = [json.loads(out.splitlines()[-1]) for out, _ in outs]
        stats = emu.stats
        admitted = sorted(stats.admitted_times.get(KEY, []))
        span = admitted[-1] - admitted[0]
        return {
            "67200002": stats.count(code=67200002),
            "attempts": len(stats.attempt_times.get(KEY, [])),
            "max attempts in 1 s": stats.max_attempts_in_window(KEY),
            "admitted/s / Q": (len(admitted) - 1) / span / q,
            "wall s": max(r["wall"] for r in results),
            "ok": sum(r["ok"] for r in results),
            "CPU ms/call": sum(r["cpu"] for r in results) / max(1, sum(r["ok"] for r in results))
            * 1e3,
        }


async def call_cost(url: str, redis_url: str, n: int) -> dict[str, dict[str, float]]:
    request = ImageSearchRequest("https://example.com/p.png", ["US"], "en")
    out: dict[str, dict[str, list[float]]] = {"local": {}, "redis": {}}

    def redis_cpu() -> float:
        with redis.Redis.from_url(redis_url) as r:
            info = r.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    for _ in range(3):  # interleaved, medians
        for name in ("local", "redis"):
            shared = redis_url if name == "redis" else None
            async with FtoClient(api_key=KEY, base_url=url, qps=1e6, max_in_flight=32,
                                 redis_url=shared) as c:
                await asyncio.gather(*(c.submit_image_search(request) for _ in range(200)))
                cpu0, rcpu0 = time.process_time(), redis_cpu()
                await asyncio.gather(*(c.submit_image_search(request) for _ in range(n)))
                cpu, rcpu = time.process_time() - cpu0, redis_cpu() - rcpu0
                t0 = time.perf_counter()
                for _ in range(200):
                    await c.submit_image_search(request)
                latency = (time.perf_counter() - t0) / 200
            row = out[name]
            row.setdefault("cpu", []).append(cpu / n)
            row.setdefault("redis_cpu", []).append(rcpu / n if shared else 0.0)
            row.setdefault("latency", []).append(latency)
    return {k: {m: statistics.median(v) for m, v in row.items()} for k, row in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qps", type=float, default=40)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--cost-calls", type=int, default=2000)
    args = parser.parse_args()
    q, n, p = args.qps, args.calls, args.processes
    server, redis_url = start_redis()
    try:
        rows, header = [], ["scenario"]
        for name, told, shared in (
            (f"local gate, qps={q:g} in each", q, None),
            (f"local gate, qps={q / p:g} in each (static split)", q / p, None),
            (f"redis gate, qps={q:g} shared", q, redis_url),
        ):
            result = asyncio.run(scenario(q, n, p, told, shared))
            rows.append([name, *result.values()])
            header = ["scenario", *result.keys()]
        print(table(
            f"{p} processes, one account, {n} submits, platform limit Q={q:g}/s "
            "(goal with Redis: 0 rejects, admitted >= 0.93 Q)", header, rows,
        ))
        with emulator_process("--qps", "none", "--time-scale", "0.0001") as url:
            cost = asyncio.run(call_cost(url, redis_url, args.cost_calls))
        local, shared = cost["local"], cost["redis"]
        print()
        print(table(
            f"Cost of one call ({args.cost_calls} submits 32 concurrent for CPU; 200 one at a "
            "time for latency; medians of 3)",
            ["gate", "client CPU us/call", "redis-server CPU us/call", "latency ms/call",
             "added latency ms/call"],
            [
                ["local RateGate", local["cpu"] * 1e6, 0.0, local["latency"] * 1e3, 0.0],
                ["RedisRateGate", shared["cpu"] * 1e6, shared["redis_cpu"] * 1e6,
                 shared["latency"] * 1e3, (shared["latency"] - local["latency"]) * 1e3],
            ],
        ))
        print(f"\nclient CPU ratio redis/local: {shared['cpu'] / local['cpu']:.3f}")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
