"""The follow-ups of a journal: one row per ``(key, patent_pn)``. Private.

:class:`_FollowUps` is the part of :class:`~fto_async.journal.Journal` that reads and
writes the ``follow_ups`` table, over the items' transition table; with it live the
checks every read and write makes and the wait for the next group commit.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

from ._journal_rows import (
    _FU_SELECT,
    _FU_SELECT_V3,
    _HOW_TO_OPEN,
    _MAX_QUEUED,
    _S,
    FollowUpRow,
    InvalidTransitionError,
    ItemState,
    _dumps,
    _follow_up_write,
    _fu_row,
    _FuRec,
)

__all__: list[str] = []


class _FollowUps:
    """Private: the follow-ups of :class:`~fto_async.journal.Journal` (which sets these)."""

    __slots__ = ()

    path: Path
    _state: str
    _readonly: bool
    _broken: BaseException | None
    _rdb: sqlite3.Connection | None
    _fu_dirty: dict[tuple[str, str], _FuRec]
    _fu_inflight: dict[tuple[str, str], _FuRec]
    _fu_retire: list[tuple[float, str, str | None, str | None]]
    _waiters: list[asyncio.Future[None]]
    _has_work: asyncio.Event
    _urgent: asyncio.Event

    # -- follow-ups (1-vs-1 tasks of an item's riskiest patents) --

    def follow_up(self, key: str, patent_pn: str) -> FollowUpRow | None:
        """The follow-up of item ``key`` for ``patent_pn``, as of every write called."""
        rec = self._fu_lookup(key, patent_pn)
        return None if rec is None else _fu_row(rec)

    def follow_ups(self, key: str) -> list[FollowUpRow]:
        """Every follow-up of item ``key`` (in ``patent_pn`` order)."""
        self._check_readable()
        found = {
            rec.patent_pn: rec
            for rec in map(_FuRec._make, self._fu_query(" WHERE key = ?", (key,)))
        }
        for overlay in (self._fu_inflight, self._fu_dirty):
            found.update((pn, rec) for (k, pn), rec in overlay.items() if k == key)
        return [_fu_row(found[pn]) for pn in sorted(found)]

    def follow_up_counts(self) -> dict[ItemState, int]:
        """How many committed follow-ups are in each state (``fto-async status``)."""
        self._check_readable()
        counts = dict.fromkeys(ItemState, 0)
        if not self._fu_table():
            return counts
        for state, n in self._reader.execute(
            "SELECT state, COUNT(*) FROM follow_ups GROUP BY state"
        ).fetchall():
            counts[ItemState(state)] = int(n)
        return counts

    async def add_follow_up(
        self, key: str, patent_pn: str, *, fingerprint: str | None = None
    ) -> None:
        """Record a follow-up as ``pending`` (lazy), with what it asks (``fingerprint``);
        an existing one is left as it is."""
        self._check_writable()
        if self._fu_lookup(key, patent_pn) is None:
            now = time.time()
            rec = _FuRec(key, patent_pn, _S.PENDING, None, None, None, None, now, now, None,
                         fingerprint)  # fmt: skip
            await self._fu_queue(rec, durable=False)

    async def replace_follow_up(self, key: str, patent_pn: str) -> None:
        """The follow-up asks something else now (another report language): its record
        moves to the follow-up history; committed."""
        self._check_writable()
        self._fu_retire.append((time.time(), key, patent_pn, patent_pn))
        await self._commit_wait()

    async def mark_follow_up(
        self,
        key: str,
        patent_pn: str,
        state: ItemState,
        *,
        task_id: str | None = None,
        report: dict[str, Any] | None = None,
        error: str | None = None,
        error_type: str | None = None,
    ) -> None:
        """Move a follow-up to ``state``; committed before return, except ``done`` and
        ``failed`` (lazy, like :meth:`mark_done`).

        ``submitted`` needs ``task_id``; ``done`` needs ``report``; ``pending`` (from
        ``unknown``, to submit again) forgets the task id.

        Raises:
            KeyError: no such follow-up. InvalidTransitionError: ``state`` cannot follow
                the current one (the items' transition table, ``_TRANSITIONS``).
        """
        self._check_writable()
        state = ItemState(state)
        rec = self._fu_lookup(key, patent_pn)
        if rec is None:
            raise KeyError((key, patent_pn))
        if _follow_up_write(ItemState(rec.state), state) is None:
            raise InvalidTransitionError(
                f"follow-up {key!r}/{patent_pn!r} is {rec.state}: cannot become {state}"
            )
        now = time.time()
        changes: dict[str, Any] = {"state": state, "updated_at": now, "error": error,
                                   "error_type": error_type}  # fmt: skip
        if state is _S.SUBMITTED:
            if not task_id:
                raise InvalidTransitionError(f"follow-up {key!r}/{patent_pn!r}: no task_id")
            changes.update(task_id=task_id, submitted_at=now)
        elif state is _S.DONE:
            if report is None:
                raise InvalidTransitionError(f"follow-up {key!r}/{patent_pn!r}: no report")
            changes["report"] = _dumps(report)
        elif state is _S.PENDING:
            changes.update(task_id=None, submitted_at=None)
        durable = state not in (_S.DONE, _S.FAILED)
        await self._fu_queue(rec._replace(**changes), durable=durable)

    def _fu_lookup(self, key: str, patent_pn: str) -> _FuRec | None:
        self._check_readable()
        rec = self._fu_dirty.get((key, patent_pn)) or self._fu_inflight.get((key, patent_pn))
        if rec is None:
            found = self._fu_query(" WHERE key = ? AND patent_pn = ?", (key, patent_pn))
            rec = _FuRec._make(found[0]) if found else None
        return rec

    def _fu_table(self) -> bool:
        """Whether the file has the follow_ups table (a schema-2 journal opened read-only
        has none: it is created when a run opens the journal for writing)."""
        return bool(self._reader.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'follow_ups'"
        ).fetchone())

    def _fu_query(self, where: str, params: tuple[Any, ...]) -> list[Any]:
        if not self._fu_table():
            return []
        columns = {row[1] for row in self._reader.execute("PRAGMA table_info(follow_ups)")}
        select = _FU_SELECT if "fingerprint" in columns else _FU_SELECT_V3
        return self._reader.execute(select + where, params).fetchall()

    async def _fu_queue(self, rec: _FuRec, durable: bool) -> None:
        self._fu_dirty[(rec.key, rec.patent_pn)] = rec
        self._has_work.set()
        if durable or len(self._fu_dirty) >= _MAX_QUEUED:
            await self._commit_wait()

    # -- checks and the commit wait, for items and follow-ups --

    @property
    def _reader(self) -> sqlite3.Connection:
        assert self._rdb is not None
        return self._rdb

    def _check_readable(self) -> None:
        if self._state not in ("open", "closing"):
            raise RuntimeError(f"journal {str(self.path)!r} is {self._state}{_HOW_TO_OPEN}")

    def _check_writable(self) -> None:
        if self._readonly:
            raise RuntimeError(f"journal {str(self.path)!r} was opened read-only")
        if self._state != "open":
            raise RuntimeError(f"journal {str(self.path)!r} is {self._state}{_HOW_TO_OPEN}")
        if self._broken is not None:
            raise RuntimeError("an earlier journal commit failed") from self._broken

    async def _commit_wait(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._urgent.set()
        self._has_work.set()
        await waiter
