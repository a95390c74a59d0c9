"""The rate gate against the emulator's own clock: limits, over-configuration, budgets."""

from __future__ import annotations

import asyncio
import math

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
from tests._vtime import run_virtual


def requests(n: int) -> list[ImageSearchRequest]:
    return [ImageSearchRequest(f"https://example.com/g{i}.png", ["US"], "en") for i in range(n)]


@pytest.mark.untraced  # a storm judged by its outcomes (lines: the behaviour tests)
def test_many_concurrent_callers_stay_under_the_limit_at_the_gateway() -> None:
    """1,000 submits fired at once: no 1-second window of calls arriving at the emulator
    (refused ones included) holds more than the gate's bound, and none is refused."""

    async def main() -> tuple[int, int, int, int]:
        async with (
            Emulator(EmulatorConfig(qps=200, time_scale=0.002)) as emu,
            FtoClient(api_key=API_KEY, base_url=emu.base_url, qps=200) as client,
        ):
            await asyncio.gather(*(client.submit_image_search(r) for r in requests(1000)))
            stats = emu.stats
            return (stats.max_attempts_in_window(API_KEY), stats.count(code=67200002),
                    stats.attempts.total(), client.stats.calls)

    # On a virtual clock a call arrives at the instant the gate admits it (no jitter), so
    # the gate's bound holds at the gateway exactly: a leaky bucket of capacity 1 + 0.25
    # draining 0.96 * 200 calls/s admits fewer than 1.25 + 192 calls in any 1 s window.
    widest, rejects, attempts, calls = run_virtual(main)
    assert widest <= math.floor(1.25 + 0.96 * 200) == 193
    assert widest >= 190  # and the gate really runs near its rate
    assert rejects == 0
    assert attempts == calls == 1000


def test_over_configured_qps_finishes_with_bounded_rejects() -> None:
    """Told twice the real limit, the adaptive gate still finishes with few 67200002 answers,
    and after its first throttling episode it sends no more than the limit."""
    retry = RetryConfig(base=0.05, cap=0.5)

    async def main() -> None:
        async with (
            Emulator(EmulatorConfig(qps=100, time_scale=0.002)) as emu,
            FtoClient(api_key=API_KEY, base_url=emu.base_url, qps=200, retry=retry) as client,
        ):
            ids = await asyncio.gather(*(client.submit_image_search(r) for r in requests(400)))
            assert len(set(ids)) == 400
            rejects = emu.stats.count(code=67200002)
            assert 0 < rejects <= 20  # 5% of the calls at most; a naive client wastes far more
            assert emu.stats.attempts.total() == 400 + rejects
            assert client.stats.by_code[67200002] == rejects
            assert client.gate.rate < 200
            # Attempts, not admissions, are what the client controls: told 200 it sends
            # past 100 once (that draws the refusals), then pauses until the gateway's
            # window has room. A 67200002 is answered at once, so on a virtual clock only
            # the calls already sent then are in excess; a client that ignored it would
            # send 193 in a second (its gate's bound at 200) and draw ~100 refusals.
            assert 100 < emu.stats.max_attempts_in_window(API_KEY) <= 105

    run_virtual(main)


async def test_max_calls_budget_stops_a_batch_within_that_many_calls() -> None:
    """A budget of 100 calls: the batch stops submitting while the calls left are kept to
    read the tasks it paid for (the poll reserve), so at most 100 calls reach the platform,
    fewer than one more task's need are left unused, every paid task is read, and every item
    gets one outcome or is counted as not attempted. (The gate itself spends a budget
    exactly: tests/test_ratelimit_budget.py, tests/test_mutants.py.)"""
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
        sent = emu.stats.attempts.total()
        assert 100 - c.poll_reserve.needed("image_search", 1, 0) < sent <= 100
        assert emu.stats.in_flight == 0
        assert sum(emu.stats.calls.values()) == sent
        assert c.stats.calls == sent
        submitted = emu.stats.attempts["/ai/image-search/submit"]
    assert isinstance(caught.value.cause, BudgetExhaustedError)
    assert c.gate.remaining_calls == 100 - sent  # type: ignore[attr-defined]
    assert c.poll_reserve.open == 0
    assert c.poll_reserve.refused == 1
    assert sum(o.task_id is not None for o in outcomes) == submitted
    assert all(o.ok for o in outcomes if o.task_id is not None)  # no paid task stranded
    not_attempted = caught.value.not_attempted or 0
    keys = [o.key for o in outcomes]
    assert len(keys) == len(set(keys))
    assert len(keys) + not_attempted == len(items)
    assert set(keys) <= {k for k, _ in items}
    for outcome in outcomes:
        assert outcome.ok or isinstance(outcome.error, BudgetExhaustedError), outcome.error
