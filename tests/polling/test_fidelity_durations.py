"""Workflow durations are learnt on their own (reference §3.2: agent-style workflows take
minutes, e.g. 366.9 s): a client that knows image-search tasks take 30 s does not apply
that to workflow tasks of 300 s, which start from their own cold start."""

from __future__ import annotations

import pytest

from fto_async import FtoClient, ImageSearchRequest, PollConfig, RetryConfig, WorkflowRequest
from fto_async.emulator import Emulator, EmulatorConfig
from tests._vtime import run_virtual

SCALE = 0.001  # 30 s image-search tasks take 30 ms, 300 s workflow tasks 300 ms


@pytest.mark.untraced  # a long replay judged by its figures (lines: the shorter tests)
def test_workflow_tasks_learn_their_minutes_apart_from_image_search() -> None:
    """After an image-search batch (30 s tasks), a workflow batch (300 s, string statuses)
    ends without error; each kind's median is its own; workflow polls stay few.
    On the virtual clock (tests/_vtime.py): the durations learnt are the emulator's,
    not those plus a loaded machine's latency."""

    async def main() -> None:
        config = EmulatorConfig(time_scale=SCALE, qps=None, task_duration=30.0,
                                workflow_task_duration=300.0)  # fmt: skip
        async with Emulator(config) as emu, FtoClient(
            api_key="sk-demo", base_url=emu.base_url, qps=1000.0,
            retry=RetryConfig.for_testing(), poll=PollConfig().scaled(SCALE),
        ) as client:  # fmt: skip
            images = [ImageSearchRequest(url=f"https://a.example/{i}.png", country=["US"],
                                         lang="en") for i in range(40)]  # fmt: skip
            assert [o.error async for o in client.screen_many(images) if o.error] == []
            image_median = client.durations.quantile("image_search", 0.5)
            assert image_median is not None
            # 30 ms tasks on the virtual clock: the bounds are the true duration below and
            # far from the workflow's above.
            assert 0.025 <= image_median <= 0.15
            assert not client.durations.known("workflow")
            before = emu.stats.polls_by_task.total()
            flows = [WorkflowRequest(url=f"https://a.example/w{i}.png", country=["US"])
                     for i in range(40)]  # fmt: skip
            done = [o async for o in client.screen_many(flows)]
            assert [o.error for o in done if o.error] == []
            assert {o.report.raw["task_status"] for o in done} == {"success"}  # type: ignore[union-attr]
            flow_median = client.durations.quantile("workflow", 0.5)
            assert flow_median is not None
            assert 0.28 <= flow_median <= 0.6  # its own 300 s (scaled), not image search's 30 s
            assert flow_median > 3 * image_median
            polls = emu.stats.polls_by_task.total() - before
            assert polls / len(flows) < 4.0  # scouting costs a few dozen polls, not per task
            assert client.durations.quantile("image_search", 0.5) == image_median

    run_virtual(main)
