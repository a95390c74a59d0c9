"""max_calls on the shared gate is spent exactly under concurrency (issue 26: twenty
callers at once all passed the check before any was counted, and all were sent)."""

from __future__ import annotations

import asyncio

import pytest

from fto_async import BudgetExhaustedError, RateConfig, RedisRateGate

PATH = "/ai/image-search/report"


async def test_concurrent_callers_never_overrun_max_calls(redis_url: str) -> None:
    """20 callers at once against max_calls=5: exactly 5 are sent, 15 refused."""
    gate = RedisRateGate(RateConfig(redis_url=redis_url, qps=200, max_calls=5), account="acct")
    outcomes: list[str] = []

    async def call() -> None:
        try:
            async with gate.slot(PATH):
                outcomes.append("sent")
                await asyncio.sleep(0.01)
        except BudgetExhaustedError:
            outcomes.append("refused")

    try:
        await asyncio.wait_for(asyncio.gather(*(call() for _ in range(20))), 20)
    finally:
        await gate.aclose()
    assert (outcomes.count("sent"), outcomes.count("refused")) == (5, 15)
    assert gate.calls == 5
    assert gate.remaining_calls == 0


async def test_a_call_granted_then_cancelled_stays_counted(redis_url: str) -> None:
    """A grant reserved ahead (the caller sleeps until its send time) is counted in Redis
    at once; a caller cancelled during that sleep keeps it counted here too, so max_calls
    agrees with what the account was charged."""
    gate = RedisRateGate(RateConfig(redis_url=redis_url, qps=2, max_calls=2), account="acct")
    try:
        async with gate.slot(PATH):
            pass
        granted = asyncio.create_task(gate.slot(PATH).__aenter__())  # paced: sleeps ~0.5 s
        await asyncio.sleep(0.1)
        granted.cancel()
        await asyncio.gather(granted, return_exceptions=True)
        assert gate.calls == 2
        with pytest.raises(BudgetExhaustedError, match="max_calls"):
            async with gate.slot(PATH):
                pass
    finally:
        await gate.aclose()
