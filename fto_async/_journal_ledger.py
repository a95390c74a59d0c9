"""The journal's call ledger: every call of every run, by endpoint path and result.

A part of :class:`~fto_async.journal.Journal` (a mixin, like its follow-ups). Its own
table, ``calls``, is created when first written (``CREATE TABLE IF NOT EXISTS``): a
journal without it reads as an empty ledger, and no schema version changes::

    calls(run, day, path, result, code, n)   PRIMARY KEY (run, day, path, result, code)

``day`` is the date (``yyyyMMdd``, China Standard Time: the platform's statement days)
when the counts were recorded: the end of the run for ``fto-async screen``.

``result`` is ``answered`` (code 0), ``refused`` (an answer carrying an error; ``code``
the platform code, or -1 for an answer without one) or ``unanswered`` (code -1: sent,
or tried, with no answer). ``n`` adds up when a run records twice. Paths are the fixed
endpoint paths (never a query string); nothing else about a call is stored.
"""

from __future__ import annotations

import asyncio
import datetime
import sqlite3
from collections.abc import Mapping
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from . import _sqlite

__all__ = ["PLATFORM_TZ", "CallCount", "platform_day"]

_CREATE = (
    "CREATE TABLE IF NOT EXISTS calls (run INTEGER NOT NULL, day TEXT NOT NULL, "
    "path TEXT NOT NULL, result TEXT NOT NULL, code INTEGER NOT NULL, n INTEGER NOT NULL, "
    "PRIMARY KEY (run, day, path, result, code))"
)
_ADD = (
    "INSERT INTO calls (run, day, path, result, code, n) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (run, day, path, result, code) DO UPDATE SET n = n + excluded.n"
)
_SELECT = (
    "SELECT run, day, path, result, code, n FROM calls ORDER BY run, day, path, result, code"
)
#: The platform's day: its statement counts calls by date in China Standard Time.
PLATFORM_TZ = datetime.timezone(datetime.timedelta(hours=8), "CST")


def platform_day(now: datetime.datetime | None = None) -> str:
    """``yyyyMMdd`` of ``now`` (default: the current time) in the platform's time zone."""
    moment = now or datetime.datetime.now(datetime.UTC)
    return moment.astimezone(PLATFORM_TZ).strftime("%Y%m%d")


@attrs.frozen
class CallCount:
    """``n`` calls of run ``run`` (recorded on ``day``) to ``path`` that ended as
    ``result`` with ``code``."""

    run: int
    day: str
    path: str
    result: str
    code: int
    n: int


class _Ledger:
    """Private: the call ledger of :class:`~fto_async.journal.Journal` (which sets these)."""

    __slots__ = ()

    path: Path
    _executor: Executor
    _wdb: sqlite3.Connection | None

    if TYPE_CHECKING:  # Journal's (from _FollowUps)

        def _check_writable(self) -> None: ...

        async def _commit_wait(self) -> None: ...

        @property
        def _reader(self) -> sqlite3.Connection: ...

    async def record_calls(
        self, run: int, counts: Mapping[tuple[str, str, int], int], day: str | None = None
    ) -> None:
        """Add ``counts`` (``(path, result, code) -> n``, as
        ``FtoClient.observer.ledger``) to run ``run`` on ``day`` (default: today, see
        :func:`platform_day`); returns once committed."""
        self._check_writable()
        when = day or platform_day()
        rows = [(run, when, path, result, code, n)
                for (path, result, code), n in counts.items() if n]  # fmt: skip
        if not rows:
            return
        await self._commit_wait()  # the item writes queued before it go first
        await asyncio.get_running_loop().run_in_executor(self._executor, self._add_calls, rows)

    def _add_calls(self, rows: list[tuple[int, str, str, str, int, int]]) -> None:  # writer
        assert self._wdb is not None
        with _sqlite.transaction(self._wdb, "BEGIN IMMEDIATE") as db:
            db.execute(_CREATE)
            db.executemany(_ADD, rows)

    def calls(self) -> list[CallCount]:
        """Every ledger line, by run, path, result and code (empty: none recorded)."""
        try:
            found = self._reader.execute(_SELECT).fetchall()
        except sqlite3.OperationalError as exc:  # no calls table: nothing recorded yet
            if "no such table" not in str(exc):
                raise
            return []
        return [CallCount(*row) for row in found]
