"""The report cache: finished reports kept across runs, keyed by request fingerprint.

A catalog screened again next week asks mostly the same questions. With a cache, a
request whose :func:`~fto_async.fingerprint.request_fingerprint` has a report younger
than ``max_age`` costs no call::

    cache = ReportCache("~/.cache/fto-async/reports.db", max_age=timedelta(days=7))
    async for outcome in client.screen_many(items, cache=cache):
        if outcome.from_cache:
            print(outcome.key, "from the cache,", outcome.cache_age, "s old")
    cache.close()

What is stored: one row per fingerprint (``fingerprint``, ``kind``, ``report`` JSON as the
platform sent it, ``created_at`` epoch seconds, ``task_id``). Only successful reports are
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
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, Self

import attrs

from . import _otel, _sqlite

__all__ = ["DEFAULT_MAX_AGE", "CachedReport", "ReportCache"]

#: How old a cached report may be before it is a miss (7 days).
DEFAULT_MAX_AGE: Final = timedelta(days=7)
_BUSY_TIMEOUT_MS: Final = 5000
_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS reports (fingerprint TEXT PRIMARY KEY, kind TEXT NOT NULL,"
    " report TEXT NOT NULL, created_at REAL NOT NULL, task_id TEXT)"
)
_PUT: Final = (
    "INSERT INTO reports VALUES (?, ?, ?, ?, ?) ON CONFLICT (fingerprint) DO UPDATE SET"
    " (kind, report, created_at, task_id) = (excluded.kind, excluded.report,"
    " excluded.created_at, excluded.task_id) WHERE excluded.created_at >= reports.created_at"
)


@attrs.frozen
class CachedReport:
    """One cached report.

    Attributes:
        fingerprint: the request fingerprint it answers.
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


_Put = tuple[str, str, str, float, str | None]  # fingerprint, kind, report text, at, task id


def _from_put(put: _Put) -> CachedReport | None:
    try:
        return CachedReport(put[0], put[1], json.loads(put[2]), put[3], put[4])
    except ValueError:
        return None


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
        self._queued: dict[str, _Put] = {}  # puts waiting for the next commit
        self._writing: dict[str, _Put] = {}  # puts being committed now
        self._flusher: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return (f"<ReportCache {str(self.path)!r} max_age={self.max_age:g}s hits={self.hits} "
                f"misses={self.misses} puts={self.puts}>")  # fmt: skip

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- the API ------------------------------------------------------------------------

    async def get(self, fingerprint: str, *, max_age: float | None = None) -> CachedReport | None:
        """The report for ``fingerprint`` if one younger than ``max_age`` (seconds, default
        the cache's) is stored, else ``None``."""
        limit = self.max_age if max_age is None else max_age
        oldest = self.clock() - limit
        put = self._queued.get(fingerprint) or self._writing.get(fingerprint)
        found: CachedReport | None
        if put is not None:  # not committed yet, but ours
            found = _from_put(put) if put[3] >= oldest else None
        else:
            try:
                found = await self._run(self._get, fingerprint, oldest)
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
        self, fingerprint: str, kind: str, report: dict[str, Any], task_id: str | None
    ) -> None:
        """Store a successful report (stamped now); a newer stored one is kept. Queued:
        committed with the other puts of the moment (see :meth:`flush`)."""
        if self._state != "open":
            raise RuntimeError(f"report cache {str(self.path)!r} is closed")
        text = json.dumps(report, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        self._queued[fingerprint] = (fingerprint, kind, text, self.clock(), task_id)
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

    def _get(self, fingerprint: str, oldest: float) -> CachedReport | None:
        row = self._connection().execute(
            "SELECT kind, report, created_at, task_id FROM reports"
            " WHERE fingerprint = ? AND created_at >= ?", (fingerprint, oldest),
        ).fetchone()  # fmt: skip
        if row is None:
            return None
        try:
            report = json.loads(row[1])
        except ValueError:
            return None  # a damaged entry is a miss; the next report replaces it
        return CachedReport(fingerprint, row[0], report, float(row[2]), row[3])

    def _put_many(self, puts: list[_Put]) -> None:
        _sqlite.write_batch(self._connection(), [(_PUT, puts)], "BEGIN IMMEDIATE")

    def _prune(self, oldest: float) -> int:
        return self._connection().execute(
            "DELETE FROM reports WHERE created_at < ?", (oldest,)
        ).rowcount

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
