"""One client process of the shared-gate tests and benchmark (run with sys.executable).

Sends ``--calls`` image-search submits to ``--base-url`` through a client whose gate is
shared through ``--redis-url`` (or local with ``--redis-url none``). It prints one JSON
line per grant (``{"event": "grant", "at": ...}``: the time the gate granted the call, in
Redis's clock, so the grants of every process share one clock) and then one last line:
calls admitted by the gate, answers by code, budget refusals, wall and CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fto_async import (
    BudgetExhaustedError,
    ClientConfig,
    FtoClient,
    FtoError,
    ImageSearchRequest,
    RateConfig,
    RetryConfig,
)


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    p.add_argument("--redis-url", default="none")
    p.add_argument("--api-key", default="sk-demo")
    p.add_argument("--qps", type=float, required=True)
    p.add_argument("--calls", type=int, required=True)
    p.add_argument("--daily-limit", type=int)
    p.add_argument("--start-at", type=float, default=0.0)
    p.add_argument("--wait-go", action="store_true",
                   help='print {"event": "ready"}, then start at a line on stdin')
    p.add_argument("--name", default="w")
    p.add_argument("--headroom", type=float, default=0.96)
    args = p.parse_args()
    redis_url = None if args.redis_url == "none" else args.redis_url
    config = ClientConfig(rate=RateConfig(headroom=args.headroom))
    client = FtoClient(
        api_key=args.api_key, base_url=args.base_url, qps=args.qps, redis_url=redis_url,
        daily_limit=args.daily_limit, timeout=30.0, config=config,
        retry=RetryConfig(max_attempts=20, base=0.05, cap=1.0, max_time=120.0),
    )
    refused = errors = 0
    latencies: list[float] = []

    async def one(i: int) -> None:
        nonlocal refused, errors
        req = ImageSearchRequest(f"https://img.example/{args.name}-{i}.png", ["US"], "en")
        t0 = time.perf_counter()
        try:
            await client.submit_image_search(req)
        except BudgetExhaustedError:
            refused += 1
            return
        except FtoError as exc:
            errors += 1
            print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
            return
        latencies.append(time.perf_counter() - t0)

    if args.wait_go:  # the caller starts every process at once, whatever their import took
        print(json.dumps({"event": "ready", "name": args.name}), flush=True)
        await asyncio.to_thread(sys.stdin.readline)
    delay = args.start_at - time.time()
    if delay > 0:
        await asyncio.sleep(delay)
    async with client:
        record_grants(client.gate)
        print(json.dumps({"event": "started", "name": args.name}), flush=True)
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(args.calls)))
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        gate = client.gate
        print(json.dumps({
            "event": "done",
            "name": args.name,
            "gate_calls": getattr(gate, "calls", None),
            "throttled": getattr(gate, "throttled", None),
            "by_code": {str(k): v for k, v in client.stats.by_code.items()},
            "refused": refused,
            "errors": errors,
            "ok": len(latencies),
            "wall": wall,
            "cpu": cpu,
            "latency": sum(latencies) / len(latencies) if latencies else None,
        }), flush=True)


def record_grants(gate: Any) -> None:
    """Print each call's grant time (``Permit.sent_at``) as the gate hands it out.

    A grant is the gate's decision, taken on Redis's clock: unlike the arrival times at the
    emulator, it does not bunch when a loaded machine delays a process or a socket read.
    """
    slot = gate.slot

    @asynccontextmanager
    async def recorded(path: str, *, priority: bool = False) -> AsyncIterator[Any]:
        async with slot(path, priority=priority) as permit:
            print(json.dumps({"event": "grant", "at": permit.sent_at}), flush=True)
            yield permit

    gate.slot = recorded


if __name__ == "__main__":
    asyncio.run(main())
