"""A bare HTTP 429 slows every process of a shared (Redis) gate, as 67200002 does
(reference §9)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from fto_async import FtoClient, ImageSearchRequest, RateConfig, RedisRateGate, RetryConfig
from tests.client._support import base_url, envelope, handcrafted

SUBMIT = "/ai/image-search/submit"


async def test_a_429_in_one_process_slows_the_other(redis_url: str) -> None:
    """Client A's submits meet bare 429s; client B, sharing the account's Redis gate but never
    answered 429, is paced lower afterwards."""
    calls = {"n": 0}

    async def submit(_request: web.Request) -> web.Response:
        calls["n"] += 1
        if calls["n"] <= 2:
            return web.Response(status=429)  # no body, no Retry-After
        return envelope({"task_id": f"t-{calls['n']}"})

    config = RateConfig(qps=20, redis_url=redis_url)
    a, b = (RedisRateGate(config, account="acct-429") for _ in range(2))
    request = ImageSearchRequest(url="https://a.example/a.png", country=["US"], lang="en")
    retry = RetryConfig(max_attempts=5, base=0.0, cap=0.0)
    async with handcrafted({SUBMIT: submit}) as server:
        url = base_url(server)
        async with FtoClient(api_key="sk-x", base_url=url, gate=a, retry=retry) as client:
            await client.submit_image_search(request)
            await asyncio.gather(*a._tasks)
            assert a.throttled >= 1
        async with FtoClient(api_key="sk-x", base_url=url, gate=b, retry=retry) as other:
            await other.submit_image_search(request)
            assert b.throttled == 0
            assert b.rate < 20 * 0.96
    for g in (a, b):
        await g.aclose()
