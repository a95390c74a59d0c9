"""The report cache in Redis, with single flight across processes: replicas share answers.

Several processes (replicas of a service, several CLI runs) screening overlapping
catalogs on one account pay once per distinct question::

    cache = RedisReportCache("redis://localhost:6379/0")
    async with FtoClient(api_key=..., redis_url=..., cache=cache) as client:
        outcome = await client.screen(request)    # or screen_many(items)
    # or: FtoClient(..., redis_url="redis://...", cache="redis")  (the client closes it)

It is an :class:`~fto_async.cache.AnswerCache` like the SQLite
:class:`~fto_async.cache.ReportCache`, with the same rules (one home each, in
:mod:`fto_async.cache`): an answer is keyed by the request ``fingerprint``, the
``platform`` (base URL) and the ``account``; only successful reports are stored, with
``cached_at`` and the ``task_id``; one older than ``max_age`` or stamped in the future is
a miss. A value is served only if it says it answers the fingerprint, platform and account
asked (hashes of them are also in its key): a value copied under another key, one that is
not JSON, or one of another shape is a miss (counted in ``poisoned``), never an answer.

Keys (the gate's namespace rule, :func:`~fto_async._redis.account_key`: one Redis
Cluster slot per account, ``prefix`` first)::

    {prefix}fto:{<account>}:answer:<platform hash>:<fingerprint hash>   a report (TTL ``ttl``)
    {prefix}fto:{<account>}:flight:<platform hash>:<fingerprint hash>   a lease or a task id

No secret is ever written: the account is the non-secret identity
(:attr:`FtoClient.provenance <fto_async.FtoClient.provenance>`; an ``sk-`` key is hashed,
as the gate does), values hold a hash of it, and no token, key or request body is stored.

Single flight (:meth:`RedisReportCache.submit_once`, used by every batch before a submit):

* a process takes the question's lease, ``SET flight NX PX lease_ttl``, submits, then
  replaces the lease with the task id (kept ``task_ttl``); while it submits, it renews
  the lease every ``lease_ttl / 3``;
* a process that finds a lease waits for the task id (polling the key, up to 0.25 s
  apart) and then polls that task itself, under its own rate gate; one that finds a task
  id younger than ``max_age`` takes it at once;
* a holder whose submit fails (or is cancelled) deletes its lease: a waiter takes it and
  asks the question itself; a holder killed mid-submit (SIGKILL) stops renewing, so its
  lease expires after at most ``lease_ttl`` and a waiter takes over: nothing stays locked;
* a task that ends in failure is forgotten (:meth:`RedisReportCache.forget`, by every
  process that polled it): the next asker submits afresh, never gets the old failure;
* a flight value that cannot be checked (garbled, another question's) is replaced (one
  process wins the replacement) and never followed.

Redis down: a lookup is a miss and a lost store is counted in ``errors`` (a cache never
stops a screening, as :class:`~fto_async.cache.ReportCache`); but a submit that cannot
take its lease waits up to ``lease_ttl`` for Redis and then raises
:class:`~fto_async.errors.SharedCacheError` (fatal, nothing sent; the URL redacted),
because submitting without the lease could pay twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, Self

from ._redis import account_key, connect, first_answer, url_secrets
from .cache import (
    DEFAULT_MAX_AGE,
    AnswerCache,
    CachedReport,
    Submit,
    dump_report,
    is_fresh,
    load_report,
)
from .config import RateConfig, redact_url_credentials
from .errors import ConfigurationError, SharedCacheError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["DEFAULT_LEASE_TTL", "DEFAULT_TASK_TTL", "RedisReportCache", "own_cache"]

log = logging.getLogger("fto_async.rediscache")

#: Seconds a submit's lease lives unless renewed (a dead holder frees it after this).
DEFAULT_LEASE_TTL: Final = 15.0
#: Seconds a shared task id is kept for other processes to poll (tasks live 8 h: AI67).
DEFAULT_TASK_TTL: Final = 3600.0
_WAIT_FIRST, _WAIT_MAX = 0.02, 0.25  # seconds between looks at a held lease
_VERSION: Final = 1
_LONGEST: Final = 100 * 365 * 86400.0  # seconds: the longest expiry set (Redis refuses inf)

# Compare-and-act on the whole value: only the holder of this exact lease acts.
_RENEW: Final = ("if redis.call('GET', KEYS[1]) == ARGV[1] then "
                 "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end")
_RELEASE: Final = ("if redis.call('GET', KEYS[1]) == ARGV[1] then "
                   "return redis.call('DEL', KEYS[1]) else return 0 end")
_SWAP: Final = ("if redis.call('GET', KEYS[1]) == ARGV[1] then "
                "redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 else return 0 end")


def _tag(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _seconds(value: timedelta | float, name: str, low: float = 0.0) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds >= low:
        raise ConfigurationError(f"{name} must be at least {low:g} seconds, got {value!r}")
    return float(seconds)


class RedisReportCache:
    """Finished reports and in-flight submits in Redis, shared by every process of an
    account.

    Usage::

        cache = RedisReportCache("redis://localhost:6379/0")          # 7 days
        cache = RedisReportCache(url, max_age=timedelta(hours=12), prefix="app1:")
        async with RedisReportCache(url) as cache: ...                # closes at the end

    Args:
        redis_url: ``redis://[:password@]host:6379/0`` (``rediss://``, ``unix://``); the
            password is never shown.
        max_age: how old a report (or a shared task id) may be to be used (a
            ``timedelta`` or seconds; default 7 days).
        ttl: seconds Redis keeps a report (default the larger of ``max_age`` and 7 days,
            so a run with a short ``max_age`` still feeds the others).
        prefix: prepended to every key (as :attr:`~fto_async.config.RateConfig.redis_prefix`).
        lease_ttl: seconds a submit's lease lives without renewal (default 15): how long
            others wait for a holder that died.
        task_ttl: seconds a submitted task id stays for others to poll (default 1 h).
        clock: epoch seconds now (default :func:`time.time`); tests inject one.

    Raises:
        ConfigurationError: a bad URL or duration, or the ``redis`` extra is missing.
    """

    __slots__ = ("_lost", "_redis", "_release", "_renew", "_secrets", "_state", "_swap", "clock",
                 "errors", "followed", "hits", "last_error", "lease_ttl", "led", "max_age",
                 "misses", "poisoned", "prefix", "puts", "takeovers", "task_ttl", "ttl",
                 "url")  # fmt: skip

    def __init__(
        self,
        redis_url: str,
        *,
        max_age: timedelta | float = DEFAULT_MAX_AGE,
        ttl: timedelta | float | None = None,
        prefix: str = "",
        lease_ttl: float = DEFAULT_LEASE_TTL,
        task_ttl: float = DEFAULT_TASK_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        RateConfig(redis_url=redis_url, redis_prefix=prefix)  # the URL rule's one home
        self.max_age = _seconds(max_age, "max_age")
        default_ttl = max(self.max_age, DEFAULT_MAX_AGE.total_seconds())
        self.ttl = _seconds(default_ttl if ttl is None else ttl, "ttl", 1.0)
        self.lease_ttl = _seconds(lease_ttl, "lease_ttl", 0.1)
        self.task_ttl = _seconds(task_ttl, "task_ttl", 1.0)
        self.prefix = prefix
        self.clock = clock
        #: The URL with its password redacted.
        self.url = redact_url_credentials(redis_url)
        self._secrets = url_secrets(redis_url)
        self._redis: Redis = connect(redis_url)
        from redis.exceptions import RedisError

        self._lost: tuple[type[Exception], ...] = (RedisError, OSError)  # Redis unusable
        self._renew = self._redis.register_script(_RENEW)
        self._release = self._redis.register_script(_RELEASE)
        self._swap = self._redis.register_script(_SWAP)
        self._state = "open"
        #: lookups answered, lookups missed, reports stored (by this instance).
        self.hits = self.misses = self.puts = 0
        #: values refused because they could not be checked (never served).
        self.poisoned = 0
        #: submits this process made as the lease holder; task ids it took from others;
        #: leases it took over from a holder that died or failed (or a bad value).
        self.led = self.followed = self.takeovers = 0
        #: Redis failures of lookups and stores (a miss, a lost report).
        self.errors = 0
        self.last_error: Exception | None = None

    def __repr__(self) -> str:
        return (f"<RedisReportCache {self.url} max_age={self.max_age:g}s hits={self.hits} "
                f"misses={self.misses} puts={self.puts} led={self.led} "
                f"followed={self.followed}>")  # fmt: skip

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- keys and values ----------------------------------------------------------------

    def _key(self, what: str, fingerprint: str, platform: str, account: str) -> str:
        stem = account_key(account, self.prefix)
        return f"{stem}:{what}:{_tag(platform)[:16]}:{_tag(fingerprint)}"

    @staticmethod
    def _about(fingerprint: str, platform: str, account: str) -> dict[str, Any]:
        """What every value says it answers (checked on every read)."""
        return {"v": _VERSION, "fingerprint": fingerprint, "platform": platform,
                "account": _tag(account)}  # fmt: skip

    def _checked(
        self, text: object, fingerprint: str, platform: str, account: str
    ) -> dict[str, Any] | None:
        value = load_report(text) if isinstance(text, str) else None
        about = self._about(fingerprint, platform, account)
        if not isinstance(value, dict) or any(value.get(k) != v for k, v in about.items()):
            self.poisoned += 1
            return None
        at = value.get("at")
        if isinstance(at, bool) or not isinstance(at, int | float):
            self.poisoned += 1
            return None
        return value

    # -- the cache ----------------------------------------------------------------------

    async def get(
        self, fingerprint: str, *, max_age: float | None = None, platform: str = "",
        account: str = "",
    ) -> CachedReport | None:
        """The report for ``fingerprint`` asked on ``platform`` by ``account`` if one younger
        than ``max_age`` (seconds, default the cache's) is stored and checks out, else
        ``None``. A Redis failure is a miss (counted in ``errors``)."""
        self._check_open()
        limit = self.max_age if max_age is None else max_age
        found = None
        try:
            text = await self._redis.get(self._key("answer", fingerprint, platform, account))
        except self._lost as exc:  # any redis-py failure: a miss
            self._failed(exc)
        else:
            found = None if text is None else self._answer(text, fingerprint, platform,
                                                            account, limit)  # fmt: skip
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    def _answer(
        self, text: object, fingerprint: str, platform: str, account: str, limit: float
    ) -> CachedReport | None:
        value = self._checked(text, fingerprint, platform, account)
        if value is None:
            return None
        kind, report, task_id = value.get("kind"), value.get("report"), value.get("task_id")
        if (not isinstance(kind, str) or not isinstance(report, dict)
                or not isinstance(task_id, str | None)):  # fmt: skip
            self.poisoned += 1
            return None
        if not is_fresh(value["at"], self.clock(), limit):
            return None
        return CachedReport(fingerprint, kind, report, float(value["at"]), task_id,
                            platform, account)  # fmt: skip

    async def put(
        self, fingerprint: str, kind: str, report: dict[str, Any], task_id: str | None,
        *, platform: str = "", account: str = "",
    ) -> None:
        """Store a successful report (stamped now, kept ``ttl``) for ``fingerprint`` asked on
        ``platform`` by ``account``. A Redis failure loses it (counted in ``errors``)."""
        self._check_open()
        value = {**self._about(fingerprint, platform, account), "kind": kind,
                 "at": self.clock(), "task_id": task_id, "report": report}  # fmt: skip
        text = dump_report(value)
        try:
            await self._redis.set(self._key("answer", fingerprint, platform, account), text,
                                  px=self._ms(self.ttl))  # fmt: skip
        except self._lost as exc:  # any redis-py failure: the report is lost
            self._failed(exc)
            return
        self.puts += 1

    async def flush(self) -> None:
        """Nothing to wait for: every :meth:`put` is written when it returns."""

    async def ping(self) -> None:
        """Check that Redis answers.

        Raises:
            SharedCacheError: it does not (the URL redacted).
        """
        try:
            await first_answer(self._redis.ping)  # a slow machine's timeouts waited out
        except self._lost as exc:  # any redis-py failure means unusable
            raise self._error(exc) from None

    async def aclose(self) -> None:
        """Close the connections; later calls raise ``RuntimeError``. Idempotent."""
        if self._state == "closed":
            return
        self._state = "closed"
        await self._redis.aclose()

    # -- single flight ------------------------------------------------------------------

    async def submit_once(
        self, fingerprint: str, kind: str, submit: Submit, *, platform: str, account: str
    ) -> str:
        """The task id answering ``fingerprint``: ``submit()``'s if this process holds the
        question's lease, else the id another process submitted (to poll here). See the
        module docstring for the rules.

        Raises:
            SharedCacheError: Redis could not be reached for ``lease_ttl`` seconds (nothing
                was sent).
            Exception: what ``submit()`` raised (the lease is released first).
        """
        self._check_open()
        key = self._key("flight", fingerprint, platform, account)
        lease = dump_report({**self._about(fingerprint, platform, account), "kind": kind,
                             "state": "submitting", "owner": uuid.uuid4().hex,
                             "at": self.clock()})  # fmt: skip
        wait, down_since = _WAIT_FIRST, None
        while True:
            try:
                won = await self._redis.set(key, lease, nx=True, px=self._ms(self.lease_ttl))
                text = None if won else await self._redis.get(key)
                if not won and text is not None:
                    value = self._checked(text, fingerprint, platform, account)
                    submitted = value is not None and value.get("state") == "submitted"
                    if value is None or value.get("kind") != kind or (
                        value.get("state") != "submitting" and not submitted
                    ) or (submitted and (
                        not isinstance(value.get("task_id"), str) or not value["task_id"]
                        or not is_fresh(value["at"], self.clock(), self.max_age)
                    )):  # unusable (waiting on it could last for ever) or too old for us:
                        # replace it (one process wins)
                        won = bool(await self._swap(keys=[key],
                                                    args=[text, lease, self._ms(self.lease_ttl)]))
                        self.takeovers += won
                    elif submitted:
                        self.followed += 1
                        return str(value["task_id"])
            except self._lost as exc:  # any redis-py failure: wait, then fail
                now = time.monotonic()
                down_since = now if down_since is None else down_since
                if now - down_since >= self.lease_ttl:
                    raise self._error(exc) from None
                await asyncio.sleep(min(1.0, wait) * random.uniform(0.5, 1.0))
                wait = min(wait * 2, 1.0)
                continue
            down_since = None
            if won:
                return await self._lead(key, lease, fingerprint, kind, submit, platform, account)
            if text is None:
                continue  # freed between our SET and GET: try again at once
            await asyncio.sleep(wait)  # a live holder is submitting
            wait = min(wait * 1.5, _WAIT_MAX)

    async def _lead(
        self, key: str, lease: str, fingerprint: str, kind: str, submit: Submit,
        platform: str, account: str,
    ) -> str:
        """Submit as the lease holder, renewing it; publish the task id or free the lease."""
        renewer = asyncio.create_task(self._keep(key, lease))
        try:
            task_id = await submit()
        except BaseException:
            renewer.cancel()
            await asyncio.wait([renewer])
            try:
                await self._release(keys=[key], args=[lease])
            except self._lost as exc:  # it expires after lease_ttl anyway
                self._failed(exc)
            raise
        renewer.cancel()
        await asyncio.wait([renewer])
        self.led += 1
        record = dump_report({**self._about(fingerprint, platform, account), "kind": kind,
                              "state": "submitted", "task_id": task_id,
                              "at": self.clock()})  # fmt: skip
        try:
            if not await self._swap(keys=[key], args=[lease, record, self._ms(self.task_ttl)]):
                log.warning("shared cache: a submit's lease expired before its task id was "
                            "published (another process may have asked the same question)")
        except self._lost as exc:  # waiters take over after lease_ttl
            self._failed(exc)
        return task_id

    async def forget(
        self, fingerprint: str, task_id: str, *, platform: str, account: str
    ) -> None:
        """Stop handing out ``task_id`` for ``fingerprint``: it ended in failure, so the next
        asker submits afresh instead of being given the old failure. A Redis failure is
        counted in ``errors`` (the id then lives out ``task_ttl``)."""
        self._check_open()
        key = self._key("flight", fingerprint, platform, account)
        try:
            text = await self._redis.get(key)
            value = None if text is None else load_report(text)
            if isinstance(value, dict) and value.get("task_id") == task_id:
                await self._release(keys=[key], args=[text])  # only if still that value
        except self._lost as exc:  # any redis-py failure
            self._failed(exc)

    async def _keep(self, key: str, lease: str) -> None:
        """Renew the lease every ``lease_ttl / 3`` while the submit runs."""
        while True:
            await asyncio.sleep(self.lease_ttl / 3)
            try:
                if not await self._renew(keys=[key], args=[lease, self._ms(self.lease_ttl)]):
                    return  # lost (expired under a stall): nothing left to renew
            except self._lost as exc:  # try again at the next beat
                self._failed(exc)

    # -- private ------------------------------------------------------------------------

    @staticmethod
    def _ms(seconds: float) -> int:
        return max(1, int(min(seconds, _LONGEST) * 1000))  # inf: "for ever", as Redis can

    def _check_open(self) -> None:
        if self._state != "open":
            raise RuntimeError(f"report cache {self.url} is closed")

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        self.last_error = exc
        if self.errors == 1:
            log.warning("shared cache: Redis at %s failed (%s); lookups miss until it is back",
                        self.url, type(exc).__name__)  # fmt: skip

    def _error(self, exc: Exception) -> SharedCacheError:
        text = f"{type(exc).__name__}: {exc}"
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return SharedCacheError(f"shared report cache cannot use Redis at {self.url}: {text}",
                                url=self.url)  # fmt: skip


def own_cache(cache: AnswerCache | str | None, config: RateConfig) -> tuple[
        AnswerCache | None, RedisReportCache | None]:  # fmt: skip
    """A client's ``cache=`` option: the cache to use, and the one the client built (and
    closes). ``"redis"`` builds a :class:`RedisReportCache` on ``config.redis_url`` and
    ``config.redis_prefix``.

    Raises:
        ConfigurationError: ``"redis"`` without a ``redis_url``, or another string.
    """
    if not isinstance(cache, str):
        return cache, None
    if cache != "redis":
        raise ConfigurationError(f"cache must be a cache object or 'redis', got {cache!r}")
    if not config.redis_url:
        raise ConfigurationError("cache='redis' needs redis_url (or PATSNAP_REDIS_URL)")
    built = RedisReportCache(config.redis_url, prefix=config.redis_prefix)
    return built, built
