"""The report cache: finished reports kept across runs, keyed by request fingerprint.

A catalog screened again next week asks mostly the same questions. With a cache, a
request whose :func:`~fto_async.fingerprint.request_fingerprint` has a report younger
than ``max_age`` costs no call::

    cache = ReportCache("~/.cache/fto-async/reports.db", max_age=timedelta(days=7))
    async for outcome in client.screen_many(items, cache=cache):
        if outcome.from_cache:
            print(outcome.key, "from the cache,", outcome.cache_age, "s old")
    cache.close()

What is stored: one row per question, keyed by what it answers: the request
``fingerprint``, the ``platform`` (base URL) and the ``account`` (client id, or ``sk:`` and
a hash of the API key, never the key), with ``kind``, ``report`` JSON as the platform sent
it, ``created_at`` epoch seconds and ``task_id``. A lookup names the same three: one file
used against two platforms or by two accounts never answers one with the other's report.
Entries of the first file format (table ``reports``, no platform or account) cannot be
checked, so they are never served (they are pruned like the others). An entry stamped in
the future (a clock jump) is a miss. Only successful reports are
put; failed tasks, ``unknown`` submissions and errors never are. No credentials, tokens
or request bodies are stored (a request's image URL appears only inside its fingerprint's
hash). The file is created mode 0600 and its folder 0700.

Sharing: SQLite in WAL mode with ``busy_timeout`` (5 s), so several processes may read
and write one file at once; each write is one short transaction (``INSERT ... ON
CONFLICT``, keeping the newer report). An entry older than ``max_age`` is a miss (it is
replaced by the next report for its fingerprint; :meth:`ReportCache.prune` deletes old
rows).

Calls run on one private thread (SQLite may block on another process's lock), so the
event loop is never blocked; the methods are coroutines. Puts are group-committed: a
put is queued (and seen by :meth:`ReportCache.get` at once) and one transaction writes
everything queued meanwhile; :meth:`ReportCache.flush` and closing wait for it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, Protocol, Self, runtime_checkable

import attrs

from . import _otel, _sqlite

__all__ = ["DEFAULT_MAX_AGE", "AnswerCache", "CachedReport", "ReportCache", "SharedFlight",
           "dump_report", "forget_failed", "is_fresh", "load_report", "submit_once"]  # fmt: skip

#: How old a cached report may be before it is a miss (7 days).
DEFAULT_MAX_AGE: Final = timedelta(days=7)
_BUSY_TIMEOUT_MS: Final = 5000
_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS answers (fingerprint TEXT NOT NULL, platform TEXT NOT NULL,"
    " account TEXT NOT NULL, kind TEXT NOT NULL, report TEXT NOT NULL,"
    " created_at REAL NOT NULL, task_id TEXT, PRIMARY KEY (fingerprint, platform, account))"
)
_PUT: Final = (
    "INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (fingerprint, platform,"
    " account) DO UPDATE SET (kind, report, created_at, task_id) = (excluded.kind,"
    " excluded.report, excluded.created_at, excluded.task_id)"
    " WHERE excluded.created_at >= answers.created_at"
)
_FUTURE_SLACK: Final = 300.0  # seconds an entry may be stamped ahead of this clock


@attrs.frozen
class CachedReport:
    """One cached report.

    Attributes:
        fingerprint: the request fingerprint it answers.
        platform: the base URL of the platform that answered (``""``: not said).
        account: the account that asked (client id or ``sk:`` key hash; ``""``: not said).
        kind: ``"image_search"`` or ``"workflow"``.
        report: the report's JSON, as the platform sent it.
        created_at: epoch seconds when it was stored (its task's completion).
        task_id: the platform task that produced it.
    """

    fingerprint: str
    kind: str
    report: dict[str, Any] = attrs.field(repr=False)
    created_at: float
    task_id: str | None
    platform: str = ""
    account: str = ""


# fingerprint, platform, account, kind, report text, at, task id
_Put = tuple[str, str, str, str, str, float, str | None]


def _from_put(put: _Put) -> CachedReport | None:
    report = load_report(put[4])
    if report is None:
        return None
    return CachedReport(put[0], put[3], report, put[5], put[6], put[1], put[2])


def load_report(text: str | bytes) -> Any:
    """Stored JSON read back, or ``None`` if it is not JSON (NaN and Infinity included:
    never a report). Every cache reads its entries through this rule."""
    try:
        return json.loads(text, parse_constant=_refuse)
    except (ValueError, TypeError, RecursionError):
        return None


def dump_report(report: Any) -> str:
    """The JSON text a cache stores (compact, UTF-8, no NaN): :func:`load_report` reads it."""
    return json.dumps(report, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def is_fresh(created_at: float, now: float, max_age: float) -> bool:
    """Whether an entry stored at ``created_at`` (epoch seconds) answers at ``now`` under
    ``max_age`` seconds: not older, and not stamped ahead of this clock by more than a
    few minutes (a clock jump). The one rule every cache applies."""
    return now - max_age <= created_at <= now + _FUTURE_SLACK


def _refuse(name: str) -> Any:
    raise ValueError(name)  # NaN/Infinity: never a report


class AnswerCache(Protocol):
    """What a batch, :meth:`FtoClient.screen <fto_async.FtoClient.screen>` and the follow-up
    stage need of a report cache: :class:`ReportCache` (a SQLite file) and
    :class:`~fto_async.rediscache.RedisReportCache` (Redis, shared by replicas) are two.
    Entries are keyed by ``fingerprint``, ``platform`` and ``account`` (see
    :meth:`ReportCache.get` and :meth:`ReportCache.put`, whose signatures these are)."""

    async def get(
        self, fingerprint: str, *, max_age: float | None = None, platform: str = "",
        account: str = "",
    ) -> CachedReport | None: ...

    async def put(
        self, fingerprint: str, kind: str, report: dict[str, Any], task_id: str | None,
        *, platform: str = "", account: str = "",
    ) -> None: ...

    async def aclose(self) -> None: ...


Submit = Callable[[], Awaitable[str]]


@runtime_checkable
class SharedFlight(Protocol):
    """A cache that also keeps single flight across processes: a question is submitted by
    one process at a time, the others take its task id
    (:meth:`~fto_async.rediscache.RedisReportCache.submit_once`)."""

    async def submit_once(
        self, fingerprint: str, kind: str, submit: Submit, *, platform: str, account: str
    ) -> str: ...

    async def forget(
        self, fingerprint: str, task_id: str, *, platform: str, account: str
    ) -> None: ...


async def forget_failed(
    cache: object, fingerprint: str, task_id: str, provenance: tuple[str, str]
) -> None:
    """Stop ``cache``'s single flight handing out ``task_id`` (a failed task) for
    ``fingerprint``, when it keeps one."""
    if isinstance(cache, SharedFlight):
        platform, account = provenance
        await cache.forget(fingerprint, task_id, platform=platform, account=account)


async def submit_once(
    cache: object, fingerprint: str | None, kind: str, submit: Submit,
    provenance: tuple[str, str],
) -> str:
    """``submit()``, through ``cache``'s single flight when it keeps one
    (:class:`SharedFlight`) and the question has a fingerprint; the task id to poll."""
    if fingerprint is None or not isinstance(cache, SharedFlight):
        return await submit()
    platform, account = provenance
    return await cache.submit_once(fingerprint, kind, submit, platform=platform,
                                   account=account)  # fmt: skip


def _seconds(value: timedelta | float) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        raise ValueError("max_age must not be negative")
    return seconds


class ReportCache:
    """A SQLite file of finished reports, shared safely by several processes.

    Usage::

        cache = ReportCache(path)                      # 7 days
        cache = ReportCache(path, max_age=timedelta(hours=12))
        async with ReportCache(path) as cache: ...     # closes at the end

    Args:
        path: the database file (its folder is created if missing).
        max_age: how old a report may be to count as a hit (a ``timedelta`` or seconds;
            default 7 days).
        clock: epoch seconds now (default :func:`time.time`); tests inject one.
    """

    __slots__ = ("_db", "_executor", "_flusher", "_queued", "_state", "_writing", "clock",
                 "errors", "hits", "last_error", "max_age", "misses", "path",
                 "puts")  # fmt: skip

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_age: timedelta | float = DEFAULT_MAX_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path).expanduser()
        self.max_age = _seconds(max_age)
        self.clock = clock
        #: lookups answered, lookups missed, reports stored (by this instance).
        self.hits = self.misses = self.puts = 0
        #: reads and commits that failed (a locked or broken file): a read is a miss, a
        #: failed commit loses its reports; a cache never stops a screening.
        self.errors = 0
        self.last_error: Exception | None = None
        self._db: sqlite3.Connection | None = None  # used by the executor's thread only
        self._executor = _sqlite.one_thread("fto-cache")
        self._state = "open"
        self._queued: dict[tuple[str, str, str], _Put] = {}  # puts waiting for the next commit
        self._writing: dict[tuple[str, str, str], _Put] = {}  # puts being committed now
        self._flusher: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return (f"<ReportCache {str(self.path)!r} max_age={self.max_age:g}s hits={self.hits} "
                f"misses={self.misses} puts={self.puts}>")  # fmt: skip

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- the API ------------------------------------------------------------------------

    async def get(
        self, fingerprint: str, *, max_age: float | None = None, platform: str = "",
        account: str = "",
    ) -> CachedReport | None:
        """The report for ``fingerprint`` asked on ``platform`` by ``account`` if one
        younger than ``max_age`` (seconds, default the cache's) is stored, else ``None``.
        A batch passes its client's platform and account (:attr:`FtoClient.provenance`)."""
        limit = self.max_age if max_age is None else max_age
        now = self.clock()
        oldest, newest = now - limit, now + _FUTURE_SLACK
        key = (fingerprint, platform, account)
        put = self._queued.get(key) or self._writing.get(key)
        found: CachedReport | None
        if put is not None:  # not committed yet, but ours
            found = _from_put(put) if is_fresh(put[5], now, limit) else None
        else:
            try:
                found = await self._run(self._get, key, oldest, newest)
            except sqlite3.Error as exc:
                self._failed(exc)
                found = None
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        _otel.cache_lookup(found is not None)
        return found

    async def put(
        self, fingerprint: str, kind: str, report: dict[str, Any], task_id: str | None,
        *, platform: str = "", account: str = "",
    ) -> None:
        """Store a successful report (stamped now) for ``fingerprint`` asked on
        ``platform`` by ``account``; a newer stored one is kept. Queued: committed with
        the other puts of the moment (see :meth:`flush`)."""
        if self._state != "open":
            raise RuntimeError(f"report cache {str(self.path)!r} is closed")
        text = dump_report(report)
        self._queued[(fingerprint, platform, account)] = (
            fingerprint, platform, account, kind, text, self.clock(), task_id
        )
        self.puts += 1
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_queued())

    async def flush(self) -> None:
        """Wait until every put so far is committed."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    async def _flush_queued(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queued and self._state == "open":
            self._writing, self._queued = self._queued, {}
            try:
                await loop.run_in_executor(self._executor, self._put_many,
                                           list(self._writing.values()))  # fmt: skip
            except (sqlite3.Error, OSError) as exc:
                self._failed(exc)
            finally:
                self._writing = {}

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        self.last_error = exc

    async def prune(self) -> int:
        """Delete the reports older than ``max_age``; return how many."""
        await self.flush()
        deleted: int = await self._run(self._prune, self.clock() - self.max_age)
        return deleted

    def close(self) -> None:
        """Close the file (waits for the running call); later calls raise ``RuntimeError``."""
        if self._state == "closed":
            return
        self._state = "closed"
        queued, self._queued = list(self._queued.values()), {}
        try:
            if queued:  # after any commit under way: the executor runs one call at a time
                self._executor.submit(self._put_many, queued).result()
        finally:
            self._executor.submit(self._close).result()
            self._executor.shutdown(wait=True)

    async def aclose(self) -> None:
        """Commit the queued puts and close, without blocking the event loop."""
        if self._state == "open":
            await self.flush()
        await asyncio.to_thread(self.close)

    # -- private: the executor's thread -------------------------------------------------

    async def _run(self, func: Callable[..., Any], *args: Any) -> Any:
        if self._state != "open":
            raise RuntimeError(f"report cache {str(self.path)!r} is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            db = _sqlite.connect(self.path, wal=True, what="report cache",
                                 timeout=_BUSY_TIMEOUT_MS / 1000)  # the busy timeout
            db.execute(_SCHEMA)
            self._db = db
        return self._db

    def _get(
        self, key: tuple[str, str, str], oldest: float, newest: float
    ) -> CachedReport | None:
        row = self._connection().execute(
            "SELECT kind, report, created_at, task_id FROM answers WHERE fingerprint = ?"
            " AND platform = ? AND account = ? AND created_at BETWEEN ? AND ?",
            (*key, oldest, newest),
        ).fetchone()  # fmt: skip
        if row is None:
            return None
        # a damaged entry is a miss; the next report replaces it
        return _from_put((*key, row[0], row[1], float(row[2]), row[3]))

    def _put_many(self, puts: list[_Put]) -> None:
        _sqlite.write_batch(self._connection(), [(_PUT, puts)], "BEGIN IMMEDIATE")

    def _prune(self, oldest: float) -> int:
        db = self._connection()
        old: int = 0
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'reports'").fetchone():
            old = db.execute("DELETE FROM reports WHERE created_at < ?", (oldest,)).rowcount
        return old + db.execute("DELETE FROM answers WHERE created_at < ?", (oldest,)).rowcount

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
