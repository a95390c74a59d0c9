"""Issue 24: due polls go first on a saturated gate, but never stall submits. On a
virtual clock (exact pacing steps, no wall clock)."""

from __future__ import annotations

import asyncio

from fto_async.config import RateConfig
from fto_async.ratelimit import RateGate
from tests._vtime import run_virtual


def test_submits_are_never_stalled_behind_a_flood_of_due_polls() -> None:
    """With 400 due polls and 20 submits waiting at once, polls take 3 admissions in 4
    while submits wait, so the k-th submit is admitted within about 4k pacing steps
    (strict priority would admit it after all 400 polls: 10 s at 40 calls/s)."""

    async def main() -> tuple[list[float], list[float]]:
        gate = RateGate(RateConfig(qps=40))
        loop = asyncio.get_running_loop()
        polls: list[float] = []
        submits: list[float] = []

        async def call(priority: bool, stamps: list[float]) -> None:
            async with gate.slot("/report" if priority else "/submit", priority=priority):
                stamps.append(loop.time())

        await asyncio.gather(*(call(True, polls) for _ in range(400)),
                             *(call(False, submits) for _ in range(20)))
        return polls, submits

    polls, submits = run_virtual(main)
    step = 1 / (40 * 0.96)
    for k, at in enumerate(sorted(submits), start=1):
        assert at <= (4 * k + 2) * step, (k, at, (4 * k + 2) * step)
    # ... and polls still go first: 3 of every 4 admissions while both lanes wait.
    before = sum(p <= max(submits) for p in polls)
    assert before >= 3 * len(submits) - 3, before


def test_polls_keep_the_gate_when_no_submit_waits() -> None:
    """The share cap only acts while submits wait: alone, polls run at the full pace."""

    async def main() -> float:
        gate = RateGate(RateConfig(qps=40))
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def poll() -> None:
            async with gate.slot("/report", priority=True):
                pass

        await asyncio.gather(*(poll() for _ in range(200)))
        return loop.time() - start

    elapsed = run_virtual(main)
    assert elapsed <= 200 / (40 * 0.96) + 0.1, elapsed


def test_poll_order_sets_the_priority_of_each_poll() -> None:
    """PollConfig(order="makespan") sends a batch's polls without priority (they queue
    with submits); the default ("results") sends them first; a bad order is refused."""
    import pytest

    from fto_async.config import PollConfig
    from fto_async.errors import ConfigurationError, FtoError
    from fto_async.models import ImageSearchReport, TaskStatus
    from fto_async.polling import PendingTask, PollScheduler, poll_priority

    async def run(order: str) -> list[bool]:
        seen: list[bool] = []

        async def fetch(task: PendingTask) -> ImageSearchReport:
            seen.append(poll_priority())
            return ImageSearchReport(task_id=task.task_id, task_status=TaskStatus.SUCCESS)

        async def deliver(task: PendingTask, report: ImageSearchReport | None,
                          error: FtoError | None) -> None:
            return None

        config = PollConfig(order=order, initial_estimate=5.0)
        scheduler = PollScheduler(fetch, deliver, config)
        runner = asyncio.create_task(scheduler.run())
        now = asyncio.get_running_loop().time()
        for i in range(3):
            scheduler.add(PendingTask(i, f"t{i}", "image_search", submitted_at=now))
        scheduler.close()
        await runner
        return seen

    assert run_virtual(lambda: run("results")) == [True] * 3
    assert run_virtual(lambda: run("makespan")) == [False] * 3
    assert poll_priority()  # outside a scheduler: a poll goes first
    with pytest.raises(ConfigurationError):
        PollConfig(order="fastest")
