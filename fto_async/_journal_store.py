"""The journal's storage: opening the file, the group-commit writer and the row stream. Private.

:class:`_Store` is the part of :class:`~fto_async.journal.Journal` that runs the SQLite
plumbing (over :mod:`fto_async._sqlite`): open and check the file (read-only or under
its ``flock``), the one writer thread committing every queued write in one transaction,
the paged read of the items overlaid with queued writes, and the release of it all.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import os
import sqlite3
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _sqlite
from ._journal_rows import (
    _FU_DROP,
    _FU_RETIRE,
    _FU_UPSERT,
    _HISTORY_INSERT,
    _LAZY_DELAY,
    _META_UPSERT,
    _ORDER,
    _STAMP,
    _UPSERT,
    ItemState,
    JournalRow,
    NotAJournalError,
    _check_journal,
    _FuRec,
    _locked,
    _migrate,
    _Rec,
    _to_row,
)

__all__: list[str] = []

_Retire = tuple[float, str, str | None, str | None]  # replaced_at, key, patent_pn, patent_pn


class _Store:
    """Private: the storage of :class:`~fto_async.journal.Journal` (which sets these)."""

    if not TYPE_CHECKING:  # Journal stays slotted; mypy, seeing empty slots, would refuse
        __slots__ = ()  # the writes below to the slots Journal declares

    path: Path
    recovered_unknown: int
    commits: int
    _state: str
    _readonly: bool
    _counts: Counter[ItemState]
    _dirty: dict[str, _Rec]
    _inflight: dict[str, _Rec]
    _meta: dict[str, str]
    _history: list[tuple[Any, ...]]
    _stamps: dict[str, int]
    _fu_retire: list[_Retire]
    _writing: tuple[list[tuple[Any, ...]], list[tuple[int, str]], list[_Retire]]
    _columns: frozenset[str]
    _select: str
    _fu_dirty: dict[tuple[str, str], _FuRec]
    _fu_inflight: dict[tuple[str, str], _FuRec]
    _waiters: list[asyncio.Future[None]]
    _has_work: asyncio.Event
    _urgent: asyncio.Event
    _stopping: bool
    _broken: BaseException | None
    _executor: Executor
    _wdb: sqlite3.Connection | None
    _rdb: sqlite3.Connection | None
    _lock_fd: int | None
    _writer: asyncio.Task[None] | None

    if TYPE_CHECKING:  # Journal's (from _FollowUps)

        @property
        def _reader(self) -> sqlite3.Connection: ...

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        if self._readonly:
            try:
                self._setup_readonly()
            except BaseException:
                await self._release()
                raise
            self._state = "open"
            return
        try:
            self._lock_fd = _sqlite.lock(self.path, _locked)
            await loop.run_in_executor(self._executor, self._setup)
        except BaseException:
            await self._release()
            raise
        self._state = "open"
        self._writer = loop.create_task(self._run_writer(), name=f"journal:{self.path}")

    async def _run_writer(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not (self._stopping and not self._dirty and not self._meta
                       and not self._history and not self._stamps
                       and not self._fu_dirty and not self._fu_retire):
                await self._has_work.wait()
                if not self._urgent.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(_LAZY_DELAY):
                            await self._urgent.wait()
                self._has_work.clear()
                self._urgent.clear()
                rows, meta, waiters = self._dirty, self._meta, self._waiters
                self._dirty, self._meta, self._waiters, self._inflight = {}, {}, [], rows
                history, stamps, retire = self._history, self._stamps, self._fu_retire
                self._history, self._stamps, self._fu_retire = [], {}, []
                self._writing = (history, [(run, key) for key, run in stamps.items()], retire)
                fu_rows, self._fu_dirty = self._fu_dirty, {}
                self._fu_inflight = fu_rows
                try:
                    if rows or meta or history or stamps or fu_rows or retire:
                        batch = ([*rows.values()], [*meta.items()], [*fu_rows.values()])
                        await loop.run_in_executor(self._executor, self._write, *batch)
                        self.commits += 1
                except Exception as exc:  # disk full, I/O error: the batch is not kept
                    self._broken = exc
                    self._dirty = rows | self._dirty  # reads keep showing what was asked
                    self._history[:0] = history
                    self._fu_retire[:0] = retire
                    self._fu_dirty = fu_rows | self._fu_dirty
                    self._waiters[:0] = waiters
                    return
                finally:
                    self._inflight = {}
                    self._fu_inflight = {}
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)
        finally:  # a writer that is gone fails its waiters, and every later write
            if not self._stopping or self._broken is not None:
                self._broken = self._broken or RuntimeError("the journal writer stopped")
                error = RuntimeError(f"journal commit failed: {self._broken!r}")
                error.__cause__ = self._broken
                for waiter in self._waiters:
                    if not waiter.done():
                        waiter.set_exception(error)

    def _setup_readonly(self) -> None:
        self._rdb = db = _sqlite.connect_read_only(self.path, uri=True)
        _version, columns = _check_journal(db, self.path)
        if not columns:
            raise NotAJournalError(f"{str(self.path)!r} is not an fto-async journal (empty)")
        self._columns = columns
        listed = ", ".join(name if name in columns else f"NULL AS {name}" for name in _Rec._fields)
        self._select = f"SELECT {listed} FROM items"  # noqa: S608 - names of _Rec
        for state, count in db.execute("SELECT state, COUNT(*) FROM items GROUP BY state"):
            self._counts[ItemState(state)] = count

    def _setup(self) -> None:  # in the writer thread
        # The file (created private by _lock; SQLite gives -wal and -shm the same mode)
        # is checked by a reader first: a file that is not a journal is left untouched.
        probe = _sqlite.connect_read_only(self.path, uri=True)
        try:
            _check_journal(probe, self.path)
        finally:
            probe.close()
        self._wdb = db = _sqlite.connect(self.path, wal=True, what="journal")
        with _sqlite.transaction(db, "BEGIN IMMEDIATE"):
            self.recovered_unknown = _migrate(db, self.path)
        self.commits += 1
        self._rdb = _sqlite.connect_read_only(self.path)
        for state, count in self._rdb.execute("SELECT state, COUNT(*) FROM items GROUP BY state"):
            self._counts[ItemState(state)] = count

    def _write(  # in the writer thread
        self, rows: list[_Rec], meta: list[tuple[str, str]], fu_rows: list[_FuRec]
    ) -> None:
        assert self._wdb is not None
        history, stamps, retire = self._writing
        _sqlite.write_batch(self._wdb, [
            (_HISTORY_INSERT, history), (_UPSERT, rows), (_STAMP, stamps),
            (_META_UPSERT, meta), (_FU_UPSERT, fu_rows),
            (_FU_RETIRE, retire), (_FU_DROP, [entry[1:] for entry in retire]),
        ])  # fmt: skip

    def _stream(
        self, wanted: frozenset[ItemState] | None, since_run: int | None = None
    ) -> Iterator[JournalRow]:
        overlay = self._inflight | self._dirty
        mine = [rec for rec in overlay.values() if wanted is None or rec.state in wanted]
        query = self._select
        params: tuple[Any, ...] = tuple(wanted or ())
        where = []
        if wanted is not None:
            where.append(f"state IN ({', '.join('?' * len(wanted))})")
        if since_run is not None and "run" in self._columns:
            where.append("run >= ?")
            params += (since_run,)
            mine = []  # queued rows carry no stamp: only committed rows are filtered
        if where:
            query += " WHERE " + " AND ".join(where)
        cursor = self._reader.execute(query + " ORDER BY seq, key", params)
        try:
            pages = iter(lambda: cursor.fetchmany(512), [])
            stored = (r for page in pages for r in map(_Rec._make, page) if r.key not in overlay)
            for rec in heapq.merge(stored, sorted(mine, key=_ORDER), key=_ORDER):
                yield _to_row(rec)
        finally:
            with contextlib.suppress(sqlite3.Error):
                cursor.close()

    async def _release(self) -> None:
        if self._rdb is not None:
            self._rdb.close()
            self._rdb = None
        if self._wdb is not None:
            wdb, self._wdb = self._wdb, None
            await asyncio.get_running_loop().run_in_executor(self._executor, wdb.close)
        self._executor.shutdown(wait=False)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None
