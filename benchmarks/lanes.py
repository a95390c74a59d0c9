"""Work-conserving priorities and the poll reserve, on the issue-22 web-app stories.

Run:  python benchmarks/lanes.py        # a few seconds: virtual clock, no real waiting

Two stories, each run with the rule and without it (the "before" column), through a real
client (gate, retries, batch engine, poll scheduler) whose HTTP layer is a
:class:`~fto_async.testing.MockTransport` on the tests' virtual-time loop
(``tests/_vtime.py``): every figure is exact and independent of the machine's load.

1. **Started work waits behind new work.** A web app on an account of ``qps=10``: 30
   requests arrive at t=0, 70 more at t=2 s; each is a local image (``Item.from_path``,
   one request per one-item batch, as ``screen_image`` does): an upload (1 s), then a
   submit (5 s), then polls (0.3 s) until its task is done (lognormal around 7 s). Before,
   every call but a due poll queued first come, first served, so the 70 late uploads
   went ahead of the early requests' submits. Figures: time to result of the early 30
   and of all 100 (p50 / p95), and how long a submit waited at the gate after its upload.
2. **The quota.** 30 concurrent ``client.screen`` calls with ``daily_limit=20``: tasks
   paid and tasks read. Before (no poll reserve), submits spent the budget and the polls
   of the paid tasks were refused.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests._vtime
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table

import fto_async.ratelimit
from fto_async import FtoClient, ImageSearchRequest, RetryConfig
from fto_async._kinds import UPLOAD_PATH
from fto_async._lanes import NEW
from fto_async.batch import Item
from fto_async.errors import BudgetExhaustedError
from fto_async.testing import MockRequest, MockResponse, MockTransport
from tests._shared import png_of_size
from tests._vtime import run_virtual

QPS = 10.0


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def _platform(seed: int) -> tuple[Callable[[MockRequest], Any], dict[str, Any]]:
    """A handler playing the platform: latencies, task durations; and what it saw."""
    rng = random.Random(seed)
    seen: dict[str, Any] = {"uploaded": {}, "submitted": {}, "paid": set()}
    due: dict[str, float] = {}

    async def handler(request: MockRequest) -> MockResponse:
        loop = asyncio.get_running_loop()
        if request.path == UPLOAD_PATH:
            await asyncio.sleep(1.0)
            url = f"https://img.example/u{len(seen['uploaded'])}.png"
            seen["uploaded"][url] = loop.time()  # when the upload was answered
            return MockResponse.ok({"url": url, "expire": 32400})
        if request.path.endswith("/submit"):
            assert request.json is not None
            seen["submitted"][request.json["url"]] = loop.time()  # reached the platform
            await asyncio.sleep(5.0)
            task_id = f"t{len(due)}"
            due[task_id] = loop.time() + rng.lognormvariate(0, 0.3) * 7.0
            seen["paid"].add(task_id)
            return MockResponse.ok({"task_id": task_id})
        assert request.json is not None
        await asyncio.sleep(0.3)
        task_id = request.json["task_id"]
        done = loop.time() >= due[task_id]
        return MockResponse.ok({"task_id": task_id, "task_status": 2 if done else 1,
                                "report": {"country": ["US"], "comparisons": []} if done
                                else None})  # fmt: skip

    return handler, seen


def started_work(images: list[Path], lanes: bool) -> dict[str, float]:
    """Story 1 (see the module docstring)."""
    original = fto_async.ratelimit.current_class
    if not lanes:  # before: every call but a due poll in one first-come lane
        fto_async.ratelimit.current_class = lambda: NEW  # type: ignore[assignment]
    try:
        return run_virtual(lambda: _started_work(images))
    finally:
        fto_async.ratelimit.current_class = original  # type: ignore[assignment]


async def _started_work(images: list[Path]) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    handler, seen = _platform(1)
    done: dict[int, float] = {}
    async with FtoClient(api_key="sk-bench", transport=MockTransport(handler), qps=QPS,
                         retry=RetryConfig.for_testing()) as client:  # fmt: skip

        async def request(i: int, at: float) -> None:
            await asyncio.sleep(at)
            start = loop.time()
            item = Item.from_path(i, images[i], country=["US"], lang="en")
            async for outcome in client.screen_many([item]):
                assert outcome.ok, outcome.error
            done[i] = loop.time() - start

        await asyncio.gather(*(request(i, 0.0 if i < 30 else 2.0) for i in range(100)))
    waits = [seen["submitted"][url] - at for url, at in seen["uploaded"].items()]
    early = [done[i] for i in range(30)]
    every = list(done.values())
    return {
        "early p50": statistics.median(early), "early p95": _pct(early, 0.95),
        "all p50": statistics.median(every), "all p95": _pct(every, 0.95),
        "submit wait mean": statistics.fmean(waits), "submit wait max": max(waits),
        "last result": max(every) + 0.0,
    }  # fmt: skip


def quota(reserve: bool) -> dict[str, int]:
    """Story 2 (see the module docstring)."""
    return run_virtual(lambda: _quota(reserve))


async def _quota(reserve: bool) -> dict[str, int]:
    handler, seen = _platform(2)
    async with FtoClient(api_key="sk-bench", transport=MockTransport(handler), qps=QPS,
                         daily_limit=20, retry=RetryConfig.for_testing()) as client:  # fmt: skip
        if not reserve:
            client.poll_reserve = None  # type: ignore[assignment]
        requests = [ImageSearchRequest(url=f"https://img.example/{i}.png", country=["US"],
                                       lang="en") for i in range(30)]  # fmt: skip
        outcomes = await asyncio.gather(*(client.screen(r) for r in requests))
        calls = client.stats.calls
    read = {o.task_id for o in outcomes if o.ok}
    return {
        "calls": calls, "paid": len(seen["paid"]), "paid and read": len(read & seen["paid"]),
        "answered": sum(o.ok for o in outcomes),
        "refused": sum(isinstance(o.error, BudgetExhaustedError) for o in outcomes),
    }  # fmt: skip


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        images = []
        for i in range(100):
            path = Path(tmp) / f"{i}.png"
            path.write_bytes(png_of_size(200 + i))
            images.append(path)
        before, after = started_work(images, lanes=False), started_work(images, lanes=True)
    rows = [(name, before[name], after[name]) for name in before]
    print(table("1. Started work (seconds; 30 requests at t=0, 70 at t=2, qps=10)",
                ("figure", "before (one lane)", "after (three classes)"), rows))
    q_before, q_after = quota(reserve=False), quota(reserve=True)
    rows2 = [(name, q_before[name], q_after[name]) for name in q_before]
    print(table("2. The quota (30 concurrent screen calls, daily_limit=20)",
                ("figure", "before (no reserve)", "after (poll reserve)"), rows2))


if __name__ == "__main__":
    main()
