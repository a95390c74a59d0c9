"""Issue 22, item 4: three classes of work at the gate (due polls, work already started,
new work), in both gates' order, and the engine's use of them. On a virtual clock."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fto_async import FtoClient
from fto_async._kinds import UPLOAD_PATH
from fto_async._lanes import NEW, POLL, STARTED, current_class, work_class
from fto_async.config import RateConfig, RetryConfig
from fto_async.ratelimit import RateGate
from fto_async.testing import MockRequest, MockResponse, MockTransport
from tests._vtime import run_virtual

STEP = 1 / (40 * 0.96)  # one pacing step at qps=40


async def _call(gate: RateGate, lane: int, stamps: list[float], hold: float = 0.0) -> None:
    loop = asyncio.get_running_loop()
    with work_class(STARTED if lane == STARTED else NEW):
        async with gate.slot("/p", priority=lane == POLL):
            stamps.append(loop.time())
            if hold:
                await asyncio.sleep(hold)


def test_a_started_step_goes_before_queued_new_work() -> None:
    """A submit after its upload (started work) is admitted within two pacing steps of
    its arrival although 300 new items' first calls wait; each lane stays FIFO."""

    async def main() -> tuple[list[float], list[float]]:
        gate = RateGate(RateConfig(qps=40))
        new: list[float] = []
        started: list[float] = []

        async def late_started() -> None:
            await asyncio.sleep(2.0)
            await _call(gate, STARTED, started)

        await asyncio.gather(*(_call(gate, NEW, new, 0.3) for _ in range(300)), late_started())
        return new, started

    new, started = run_virtual(main)
    assert 2.0 <= started[0] <= 2.0 + 2 * STEP + 1e-6  # not behind ~6 s of new work
    assert new == sorted(new)


def test_polls_then_started_then_new() -> None:
    """With one caller of each class queued behind a busy gate, they go poll, started,
    new, whatever order they arrived in."""

    async def main() -> list[str]:
        gate = RateGate(RateConfig(qps=2, max_in_flight=1))
        order: list[str] = []

        async def one(name: str, lane: int) -> None:
            stamps: list[float] = []
            await _call(gate, lane, stamps)
            order.append(name)

        blocker = asyncio.create_task(_call(gate, NEW, [], hold=1.0))
        await asyncio.sleep(0)
        await asyncio.gather(one("new", NEW), one("started", STARTED), one("poll", POLL))
        await blocker
        return order

    assert run_virtual(main) == ["poll", "started", "new"]


def test_no_class_is_starved_by_the_classes_above_it() -> None:
    """400 polls, 200 started steps and 40 new calls all wait at once: the k-th new call
    goes within 4k + 2 steps (polls and started work take 3 in 4 while new work waits),
    the k-th started step within 16k/3 + 4 (polls take 3 in 4 of the rest while it
    waits), and polls still take most of the gate."""

    async def main() -> tuple[list[float], list[float], list[float]]:
        gate = RateGate(RateConfig(qps=40))
        polls: list[float] = []
        started: list[float] = []
        new: list[float] = []
        await asyncio.gather(*(_call(gate, POLL, polls) for _ in range(400)),
                             *(_call(gate, STARTED, started) for _ in range(200)),
                             *(_call(gate, NEW, new) for _ in range(40)))  # fmt: skip
        return polls, started, new

    polls, started, new = run_virtual(main)
    for k, at in enumerate(sorted(new), start=1):
        assert at <= (4 * k + 2) * STEP + 1e-6, (k, at)
    for k, at in enumerate(sorted(started)[:60], start=1):  # while new work also waits
        assert at <= (16 * k / 3 + 4) * STEP + 1e-6, (k, at)
    before = sum(p <= max(new) for p in polls)
    assert before >= 0.5 * (len(new) * 4), before  # ~9/16 of the admissions went to polls


def test_work_class_holds_for_the_task_that_set_it_only() -> None:
    """The class is a context variable: set for a block, inherited by tasks started in
    it, gone after; an unknown class is refused."""

    async def main() -> list[int]:
        seen = [current_class()]
        with work_class(STARTED):
            seen.append(current_class())
            seen.append(await asyncio.create_task(asyncio.sleep(0, current_class())))
        seen.append(current_class())
        return seen

    assert run_virtual(main) == [NEW, STARTED, STARTED, NEW]
    with pytest.raises(ValueError, match="unknown work class"), work_class(7):
        pass


def test_redis_gate_turnstile_serves_the_same_order() -> None:
    """The Redis gate's local queue (its head and in-flight turnstiles) serves waiters in
    the local gate's order: poll, started, new."""
    from fto_async.redisgate import _Turnstile

    async def main() -> list[str]:
        t = _Turnstile(1)
        await t.acquire()
        order: list[str] = []

        async def one(name: str, lane: int) -> None:
            await t.acquire(lane)
            order.append(name)
            t.release()

        tasks = [asyncio.create_task(one(n, lane)) for n, lane in
                 (("new", NEW), ("started", STARTED), ("poll", POLL))]  # fmt: skip
        await asyncio.sleep(0)
        assert t.better_waiting(NEW)
        assert not t.better_waiting(POLL)
        t.release()
        await asyncio.gather(*tasks)
        return order

    assert run_virtual(main) == ["poll", "started", "new"]


def _distinct_pngs(tmp_path: Path, n: int) -> list[Path]:
    from tests._shared import png_of_size

    paths = []
    for i in range(n):
        path = tmp_path / f"{i}.png"
        path.write_bytes(png_of_size(200 + i))  # distinct bytes: one upload each
        paths.append(path)
    return paths


def test_a_batch_sends_each_submit_right_after_its_upload(tmp_path: Path) -> None:
    """30 local images on a saturated gate: each item's submit (started work) goes before
    the uploads of items not started yet, so the first result does not wait for every
    upload (FIFO would send all 30 uploads first)."""
    from fto_async.batch import Item

    paths = _distinct_pngs(tmp_path, 30)

    async def main() -> tuple[list[float], list[float]]:
        loop = asyncio.get_running_loop()
        uploads: list[float] = []
        submits: list[float] = []
        n = 0

        async def handler(request: MockRequest) -> MockResponse:
            nonlocal n
            if request.path == UPLOAD_PATH:
                uploads.append(loop.time())
                await asyncio.sleep(0.5)
                n += 1
                return MockResponse.ok({"url": f"https://img.example/u{n}.png"})
            if request.path.endswith("/submit"):
                submits.append(loop.time())
                await asyncio.sleep(0.5)
                return MockResponse.ok({"task_id": f"t{len(submits)}"})
            return MockResponse.ok({"task_id": request.json["task_id"], "task_status": 2,
                                    "report": {"risk_level": "Low"}})  # fmt: skip

        items = [Item.from_path(p.name, p, country=["US"], lang="en") for p in paths]
        async with FtoClient(api_key="sk-test", transport=MockTransport(handler), qps=4,
                             retry=RetryConfig.for_testing()) as client:  # fmt: skip
            async for _ in client.screen_many(items):
                pass
        return uploads, submits

    uploads, submits = run_virtual(main)
    assert len(uploads) == len(submits) == 30
    step = 1 / (4 * 0.96)
    # The first upload is answered at 0.5 s; its submit goes within two steps of that,
    # while about 25 uploads still wait (FIFO: after all 30 uploads, past 7.5 s).
    assert submits[0] <= 0.5 + 2 * step + 1e-6, submits[0]
    assert sum(u > submits[0] for u in uploads) >= 20


def test_a_resend_is_sent_as_started_work() -> None:
    """A call whose first attempt went out and failed (a retryable 502) is sent again as
    started work; a caller's own class (started) is kept."""
    from fto_async._lanes import current_class as cls

    async def main() -> list[tuple[str, int]]:
        seen: list[tuple[str, int]] = []
        failed: set[str] = set()

        class Recording(RateGate):
            def slot(self, path: str, *, priority: bool = False):  # type: ignore[no-untyped-def]
                seen.append((path, POLL if priority else cls()))
                return super().slot(path, priority=priority)

        def handler(request: MockRequest) -> MockResponse:
            assert request.json is not None
            url = request.json["url"]
            if url not in failed:
                failed.add(url)
                return MockResponse.json({}, status=502)
            return MockResponse.ok({"task_id": "t"})

        from fto_async import ImageSearchRequest

        async with FtoClient(api_key="sk-test", transport=MockTransport(handler),
                             gate=Recording(RateConfig(qps=100)),
                             retry=RetryConfig.for_testing()) as client:  # fmt: skip
            await client.submit_image_search(
                ImageSearchRequest(url="https://img.example/a.png", country=["US"], lang="en"))
            with work_class(STARTED):
                await client.submit_image_search(
                    ImageSearchRequest(url="https://img.example/b.png", country=["US"], lang="en"))
        return [lane for _, lane in seen]

    assert run_virtual(main) == [NEW, STARTED, STARTED, STARTED]


def test_screen_keeps_the_class_its_caller_set() -> None:
    """``client.screen`` sends a new question's submit as new work, and as started work
    when its caller marked it so (``screen_image`` after its upload): the flight inherits
    the caller's class; its polls go first either way."""
    from fto_async import ImageSearchRequest
    from fto_async._lanes import current_class as cls

    async def main() -> list[tuple[str, int]]:
        seen: list[tuple[str, int]] = []

        class Recording(RateGate):
            def slot(self, path: str, *, priority: bool = False):  # type: ignore[no-untyped-def]
                seen.append((path.rsplit("/", 1)[-1], POLL if priority else cls()))
                return super().slot(path, priority=priority)

        def handler(request: MockRequest) -> MockResponse:
            assert request.json is not None
            if request.path.endswith("/submit"):
                return MockResponse.ok({"task_id": request.json["url"][-5:]})
            return MockResponse.ok({"task_id": request.json["task_id"], "task_status": 2,
                                    "report": {"country": ["US"], "comparisons": []}})  # fmt: skip

        async with FtoClient(api_key="sk-test", transport=MockTransport(handler),
                             gate=Recording(RateConfig(qps=100)),
                             retry=RetryConfig.for_testing()) as client:  # fmt: skip
            ask = ImageSearchRequest(url="https://img.example/a.png", country=["US"], lang="en")
            assert (await client.screen(ask)).ok
            with work_class(STARTED):
                ask = ImageSearchRequest(url="https://img.example/b.png", country=["US"],
                                         lang="en")  # fmt: skip
                assert (await client.screen(ask)).ok
        return seen

    assert run_virtual(main) == [("submit", NEW), ("report", POLL),
                                 ("submit", STARTED), ("report", POLL)]  # fmt: skip
