"""The shared gate keeps every time on Redis's clock (``TIME``), never a host's: hosts
with skewed clocks then share one schedule (issue 26: a gate on the client's clock
survived the suite)."""

from __future__ import annotations

import time

import pytest
import redis

from fto_async import RateConfig, RedisRateGate

PATH = "/ai/image-search/submit"
SKEW = 10 * 86400.0  # a host ten days ahead: another UTC day, far beyond any horizon


async def test_a_host_with_a_skewed_clock_paces_on_redis_time(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the host's wall clock ten days off, the schedule (``tat``) and the day of the
    daily counter still follow Redis's clock (a schedule on host clocks lets a host that
    runs behind find the account's schedule in its future, and one ahead in its past)."""
    real = time.time
    with redis.Redis.from_url(redis_url, decode_responses=True) as r:
        monkeypatch.setattr(time, "time", lambda: real() + SKEW)
        ahead = RedisRateGate(RateConfig(redis_url=redis_url, qps=5, daily_limit=100),
                              account="acct")
        try:
            for _ in range(3):
                async with ahead.slot(PATH) as permit:
                    pass
                ahead.on_success(permit)
        finally:
            await ahead.aclose()
        monkeypatch.setattr(time, "time", real)
        seconds, micros = r.time()
        server_now = seconds + micros / 1e6
        state = r.hgetall("fto:{acct}:gate")
        assert abs(float(state["tat"]) - server_now) < 5, state
        assert int(state["day"]) == int(server_now // 86400)
        assert int(state["count"]) == 3
