"""Private: the Redis plumbing the shared rate gate (:mod:`fto_async.redisgate`) and the
shared report cache (:mod:`fto_async.rediscache`) both use: one connection rule, one key
namespace per account, and the secrets of a URL (to scrub from messages)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from .errors import ConfigurationError

__all__ = ["FIRST_PATIENCE", "account_key", "connect", "first_answer", "is_timeout",
           "url_secrets"]

T = TypeVar("T")

#: Seconds of timeouts waited out before Redis first answers (a loaded machine can be
#: slower than the 1 s connect timeout); a refusal or a wrong password fails at once.
FIRST_PATIENCE: Final = 10.0


def is_timeout(exc: BaseException) -> bool:
    """A redis-py (or asyncio) timeout: Redis may be there, only slow to answer."""
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return isinstance(exc, RedisTimeoutError | TimeoutError)


async def first_answer(call: Callable[[], Awaitable[T]], patience: float = FIRST_PATIENCE) -> T:
    """``await call()``, waiting out timeouts for ``patience`` seconds (then the last one
    is raised); any other error is raised at once."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    pause = 0.05
    while True:
        try:
            return await call()
        except Exception as exc:
            if not is_timeout(exc) or loop.time() + pause >= deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, 1.0)


def account_key(account: str, prefix: str = "") -> str:
    """The Redis key stem of one account: ``{prefix}fto:{<account>}``.

    The braces are a Redis Cluster hash tag: every key of one account lands in one slot.
    ``account`` is an identity that is not a secret (see ``account_id`` on the credential
    classes); an ``sk-`` key must never be passed here.
    """
    if account.startswith("sk-"):
        account = "sk:" + hashlib.sha256(account.encode()).hexdigest()[:32]
    return f"{prefix}fto:{{{account}}}"


def _import_redis() -> Any:
    try:
        import redis.asyncio as redis_asyncio
    except ImportError:  # pragma: no cover - exercised where the extra is missing
        raise ConfigurationError(
            "redis_url needs the 'redis' extra: pip install 'fto-async[redis]'"
        ) from None
    return redis_asyncio


def connect(url: str) -> Any:
    """A redis-py asyncio client for ``url`` as the shared gate and cache use it: short
    socket timeouts, text replies, no retries inside redis-py (the callers decide).

    Raises:
        ConfigurationError: the ``redis`` extra is not installed.
    """
    redis_asyncio = _import_redis()
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return redis_asyncio.Redis.from_url(
        url, socket_connect_timeout=1.0, socket_timeout=2.0, retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


def url_secrets(url: str) -> tuple[str, ...]:
    from urllib.parse import parse_qs, unquote, urlsplit

    parts = urlsplit(url)
    found = [s for s in (parts.password, unquote(parts.password or "")) if s]
    for name, values in parse_qs(parts.query).items():
        if name.lower() == "password":
            found.extend(v for v in values if v)
    return tuple(sorted(set(found), key=len, reverse=True))
