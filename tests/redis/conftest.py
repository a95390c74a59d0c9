"""Fixtures: a real redis-server per test module (no persistence), flushed per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._support import RedisServer, require_redis_server


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A started redis-server on 127.0.0.1; stopped after the module."""
    server = RedisServer(require_redis_server())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The server's URL, with an empty database at the start of the test."""
    import redis

    if redis_server.proc is None:
        redis_server.start()
    with redis.Redis.from_url(redis_server.url) as r:
        r.flushall()
    return redis_server.url
