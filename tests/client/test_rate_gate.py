"""The rate gate against the emulator's own clock: limits, over-configuration, budgets."""

from __future__ import annotations

import asyncio

import pytest

from fto_async import (
    BatchAbortedError,
    BudgetExhaustedError,
    FtoClient,
    ImageSearchRequest,
    PollConfig,
    RetryConfig,
)
from fto_async.batch import Outcome
from fto_async.emulator import Emulator, EmulatorConfig
from tests._shared import API_KEY


def requests(n: int) -> list[ImageSearchRequest]:
    return [ImageSearchRequest(f"https://example.com/g{i}.png", ["US"], "en") for i in range(n)]


async def test_many_concurrent_callers_stay_under_the_limit_at_the_gateway() -> None:
    """1,000 submits fired at once: no 1-second window at the emulator exceeds qps, no 67200002."""
    async with (
        Emulator(EmulatorConfig(qps=200, time_scale=0.002)) as emu,
        FtoClient(api_key=API_KEY, base_url=emu.base_url, qps=200) as client,
    ):
        await asyncio.gather(*(client.submit_image_search(r) for r in requests(1000)))
        assert emu.stats.max_calls_in_window(API_KEY) <= 200
        assert emu.stats.count(code=67200002) == 0
        assert client.stats.calls == 1000


async def test_over_configured_qps_finishes_with_bounded_rejects() -> None:
    """Told twice the real limit, the adaptive gate still finishes with few 67200002 answers."""
    retry = RetryConfig(base=0.05, cap=0.5)
    async with (
        Emulator(EmulatorConfig(qps=100, time_scale=0.002)) as emu,
        FtoClient(api_key=API_KEY, base_url=emu.base_url, qps=200, retry=retry) as client,
    ):
        ids = await asyncio.gather(*(client.submit_image_search(r) for r in requests(400)))
        assert len(set(ids)) == 400
        rejects = emu.stats.count(code=67200002)
        assert 0 < rejects <= 20  # 5% of the calls at most; a naive client wastes far more
        assert client.gate.rate < 200
        assert emu.stats.max_calls_in_window(API_KEY) <= 100


async def test_max_calls_budget_stops_a_batch_at_exactly_that_many_calls() -> None:
    """A budget of 100 calls lets exactly 100 reach the platform, then the batch aborts; every
    item gets one outcome or is counted as not attempted, and no poll that was sent is lost."""
    poll = PollConfig(interval=0.01, min_interval=0.0, initial_estimate=0.01)
    async with (
        Emulator(EmulatorConfig(qps=None, time_scale=0.001)) as emu,
        FtoClient(api_key=API_KEY, base_url=emu.base_url, qps=1000, max_calls=100, poll=poll) as c,
    ):
        items = [(f"k{i}", r) for i, r in enumerate(requests(80))]
        outcomes: list[Outcome] = []

        async def run() -> None:
            async for outcome in c.screen_many(items):
                outcomes.append(outcome)

        with pytest.raises(BatchAbortedError) as caught:
            await run()
        # Counted on arrival, so a call whose handler is still running counts too; and the
        # batch waits for every poll it sent, so nothing is still on the wire.
        assert emu.stats.attempts.total() == 100
        assert emu.stats.in_flight == 0
        assert sum(emu.stats.calls.values()) == 100
    assert isinstance(caught.value.cause, BudgetExhaustedError)
    assert c.stats.calls == 100
    assert c.gate.remaining_calls == 0  # type: ignore[attr-defined]
    not_attempted = caught.value.not_attempted or 0
    keys = [o.key for o in outcomes]
    assert len(keys) == len(set(keys))
    assert len(keys) + not_attempted == len(items)
    assert set(keys) <= {k for k, _ in items}
    for outcome in outcomes:
        assert outcome.ok or isinstance(outcome.error, BudgetExhaustedError), outcome.error
