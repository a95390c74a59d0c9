"""Class 6, the Redis gate heals: a stored next-call time (``tat``) beyond now plus the
window horizon (far-future, ``inf`` or ``nan``, written by a bad clock, a bug or a hand)
is reset with a warning instead of stalling every process of the account for ever; and
no single wait of the gate exceeds ``LONG_WAIT`` seconds without a visible message."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis

from fto_async import RateConfig, RedisRateGate
from fto_async.redisgate import LONG_WAIT, account_key
from tests.redis.conftest import redis_server, redis_url  # noqa: F401 - fixtures

PATH = "/ai/image-search/submit"


def _gate(url: str) -> RedisRateGate:
    return RedisRateGate(RateConfig(redis_url=url, qps=10), account="acct")


@pytest.mark.parametrize("stored", ["inf", "nan", "99999999999.000000", "1e300"])
async def test_a_far_future_timestamp_is_reset_with_a_warning(
    redis_url: str, stored: str, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    """A poisoned ``tat`` is healed on the next acquire: the call goes at once."""
    with redis.Redis.from_url(redis_url) as r:
        r.hset(account_key("acct") + ":gate", mapping={"tat": stored})
    gate = _gate(redis_url)
    caplog.set_level(logging.WARNING, "fto_async.redisgate")
    try:
        async with asyncio.timeout(5):
            async with gate.slot(PATH):
                pass
    finally:
        await gate.aclose()
    assert "reset" in caplog.text
    assert "far in the future" in caplog.text


async def test_a_long_wait_is_announced(
    redis_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    """A wait longer than LONG_WAIT (here lowered) logs a warning before it sleeps."""
    from fto_async import redisgate

    monkeypatch.setattr(redisgate, "LONG_WAIT", 0.05)
    gate = _gate(redis_url)
    caplog.set_level(logging.WARNING, "fto_async.redisgate")
    try:
        async with asyncio.timeout(10):
            for _ in range(12):  # 10/s: the later grants wait a little
                async with gate.slot(PATH):
                    pass
    finally:
        await gate.aclose()
    assert "waiting" in caplog.text
    assert LONG_WAIT == 60.0
