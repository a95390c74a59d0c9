"""The journal: a durable record of every catalog item (SQLite in WAL mode).

One row per item, keyed by the caller's key. The batch layer records an item's intent
before its submit goes out and its task_id before anyone is told the task exists, so a
rerun after a crash or Ctrl-C polls known task_ids instead of paying for them twice::

    async with await Journal.open("catalog.journal") as journal:
        if journal.get("sku-1") is None:
            await journal.add_pending("sku-1", 0, body, "image_search")
        await journal.mark_submitting("sku-1")  # committed before the call goes out
        task_id = await client.submit(request)
        await journal.mark_submitted("sku-1", task_id)  # committed before it counts

The state machine (any other write raises :class:`InvalidTransitionError`)::

    pending ─> submitting ─> submitted ─> done
                 │  │  │        └───────> failed ─> done     (its task_id polled again)
                 │  │  └─ definite refusal ──────> failed    (mark_submit_failed)
                 │  └──── retryable, batch stopped ─> pending (mark_submit_failed)
                 └─────── died mid-call (found at open), busy after send ─> unknown
    pending ─> pending | failed    mark_submit_failed of a submit that never went out
                                   (a token or upload failure before the rate gate let
                                   it go): no task can exist, the error is recorded
    pending ─> failed              refused before any call was made
    unknown | failed ─> pending    reset_to_pending: the resubmit / retry policy
    unknown ─> submitted           its task was found; else it stays unknown (skip policy)
    any ─> pending                 replace: the item's request changed (its fingerprint);
                                   the earlier record moves to the ``history`` table and
                                   its follow-ups to ``follow_up_history`` (schema 4): a
                                   follow-up belongs to its item's screening

Each follow-up keeps what it asks (``fingerprint``: its item's, the patent, the report
language); one asked otherwise now moves to ``follow_up_history``
(:meth:`Journal.replace_follow_up`). The ``provenance`` meta value names the platform and
account whose answers the journal holds; a batch of another refuses it.

Each row keeps its request's fingerprint (:mod:`fto_async.fingerprint`; ``None`` for rows
written before schema 2, "unknown": never taken as a match nor as a change) and the
number of the last run whose input held it (:meth:`Journal.stamp_run`), so a reader can
leave out rows that are no longer in the catalog.
    pending ─> submitted           mark_shared: another row's task (or a cached report) answers it

A *shared* row holds the task id of the row (or cached report) that answers the same
request, and ``attempts`` 0: it never made a submit of its own, so a resume polls (or
reads) that task and never resubmits it.

Durability: ``journal_mode=WAL`` with ``synchronous=NORMAL``: a commit survives the
death of the process (SIGKILL, OOM, Ctrl-C), which is the contract; a power loss may
roll back the last commits (never corrupt the file). ``mark_submitting``,
``mark_submitted``, ``mark_submit_failed``, ``mark_unknown``, ``reset_to_pending`` and
``set_meta`` return once committed. ``add_pending``, ``mark_done`` and ``mark_failed``
are lazy: committed within 0.2 s, with the next durable write (writes commit in call
order), or by :meth:`Journal.flush` / :meth:`Journal.close`.

Group commit: a write changes an in-memory copy of the row at once (so :meth:`Journal.get`
sees it) and queues it; one writer thread commits everything queued in one transaction,
then wakes every caller of that batch, so thousands of concurrent writes cost a handful
of commits. Cancelling a caller does not take its write back.

One :class:`Journal` holds a file at a time (a ``flock`` on the database file itself,
POSIX only, so a symlink or a hard link to it is held too): a second process would turn
the first one's live submits into ``unknown``.

Readers never write: ``Journal.open(path, readonly=True)`` (``fto-async status`` and
``export``) opens the file with SQLite's ``mode=ro`` (``immutable=1`` when no run has it
open: no ``-wal`` file), takes no lock, creates nothing and works while a run writes.
A file that is not a journal (no ``items``/``meta`` tables, no schema version) raises
:class:`NotAJournalError` in both modes and is left as it was.

Follow-ups (1-vs-1 tasks on an item's riskiest patents, :mod:`fto_async.batch._followup`) have
their own small table, one row per ``(key, patent_pn)``, with the same states and the SAME
transition table as items (one state machine; a follow-up never shares): ``pending``
-> ``submitting`` (committed before the call) -> ``submitted`` (task_id committed) ->
``done`` | ``failed``; a row left ``submitting`` by a dead run is ``unknown`` at open. See
:meth:`Journal.add_follow_up` and :meth:`Journal.mark_follow_up`.

Secrets: requests and reports are stored as JSON in a plain file (created mode 0600).
The journal must never receive credentials, tokens or URLs carrying ``apikey=``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Self

from . import _sqlite
from ._journal_follow_ups import _FollowUps
from ._journal_ledger import _Ledger  # the call ledger (its own table)
from ._journal_rows import (  # the rows, states and file format; re-exported
    _ALLOWED,
    _COLUMNS,
    _DURATIONS_KEY,
    _KINDS,
    _MAX_QUEUED,
    _S,
    FollowUpRow,
    InvalidTransitionError,
    ItemState,
    JournalLockedError,
    JournalRow,
    NotAJournalError,
    _dumps,
    _FuRec,
    _Rec,
    _to_row,
)
from ._journal_store import _Retire, _Store  # opening, the writer, the row stream

if sys.platform != "win32":
    import fcntl

__all__ = [
    "FollowUpRow",
    "InvalidTransitionError",
    "ItemState",
    "Journal",
    "JournalLockedError",
    "JournalRow",
    "NotAJournalError",
]

class Journal(_FollowUps, _Ledger, _Store):
    """The durable record of a batch's items; the module docstring gives the contract.

    Open it with ``async with Journal(path)`` or ``await Journal.open(path)`` (``async with``
    closes it; :meth:`aclose` does too), from one event
    loop. Reads are synchronous and cheap: a dict lookup for rows written since the last
    commit, else a primary-key lookup on a read-only connection. Using a closed journal
    raises ``RuntimeError``.

    Attributes:
        path: the database file.
        recovered_unknown: rows found in ``submitting`` at open, now ``unknown``.
        commits: transactions this instance committed (group commit keeps it small).
    """

    __slots__ = (
        *("_broken", "_counts", "_dirty", "_executor", "_has_work", "_inflight", "_lock_fd"),
        *("_meta", "_rdb", "_state", "_stopping", "_urgent", "_waiters", "_wdb", "_writer"),
        *("_columns", "_history", "_readonly", "_select", "_stamps", "_writing"),
        *("_fu_dirty", "_fu_inflight", "_fu_retire", "commits", "path", "recovered_unknown"),
    )

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.recovered_unknown = 0
        self.commits = 0
        self._state = "unopened"  # -> open -> closing -> closed
        self._counts: Counter[ItemState] = Counter()
        self._dirty: dict[str, _Rec] = {}  # rows changed since the last commit began
        self._inflight: dict[str, _Rec] = {}  # rows being committed now
        self._meta: dict[str, str] = {}  # meta values queued for the next commit
        self._history: list[tuple[Any, ...]] = []  # replaced records for the next commit
        self._stamps: dict[str, int] = {}  # run stamps queued for the next commit
        # (replaced_at, key, patent_pn or None twice): follow-ups to history, next commit
        self._fu_retire: list[_Retire] = []
        self._writing: tuple[list[tuple[Any, ...]], list[tuple[int, str]], list[_Retire]] = (
            [], [], []
        )
        self._readonly = readonly
        self._columns = frozenset((*_Rec._fields, "run"))  # the file's items columns
        self._select = f"SELECT {_COLUMNS} FROM items"  # noqa: S608 - the columns of _Rec
        self._fu_dirty: dict[tuple[str, str], _FuRec] = {}  # follow-up rows, as _dirty
        self._fu_inflight: dict[tuple[str, str], _FuRec] = {}
        self._waiters: list[asyncio.Future[None]] = []  # callers of the next commit
        self._has_work = asyncio.Event()
        self._urgent = asyncio.Event()  # someone awaits the next commit
        self._stopping = False
        self._broken: BaseException | None = None  # a failed commit ends all writing
        self._executor = _sqlite.one_thread("fto-journal")
        self._wdb: sqlite3.Connection | None = None  # used by the executor's thread only
        self._rdb: sqlite3.Connection | None = None  # read-only, used by the loop only
        self._lock_fd: int | None = None
        self._writer: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, path: str | os.PathLike[str], *, readonly: bool = False) -> Self:
        """Open (or create) the journal at ``path`` and recover interrupted submits.

        Rows left in ``submitting`` by a process that died mid-call become ``unknown``
        (the platform may or may not have created their task): see ``recovered_unknown``.

        Args:
            path: the database file.
            readonly: read it only (see the module docstring): no lock, no recovery,
                nothing created; every write raises ``RuntimeError``.

        Raises:
            JournalLockedError: another open journal holds the file.
            NotAJournalError: the file is not a journal (it is left unchanged).
            RuntimeError: the file was written by a newer schema version.
            sqlite3.DatabaseError, OSError: the file cannot be read.
        """
        self = cls(path, readonly=readonly)
        await self._open()
        return self

    @staticmethod
    def is_held(path: str | os.PathLike[str]) -> bool:
        """Whether an open (writable) :class:`Journal`, here or in another process, holds
        the file. Reading it takes a shared ``flock`` for an instant (nothing is written).
        """
        if sys.platform == "win32":  # pragma: no cover - no advisory lock there
            return False
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # releases the shared lock
        return False

    async def __aenter__(self) -> Self:
        """``async with Journal(path) as journal`` opens it here (as :meth:`open` does,
        with the same errors, raised at once); an open journal is entered as it is."""
        if self._state == "unopened":
            await self._open()
        elif self._state != "open":
            raise RuntimeError(f"journal {str(self.path)!r} is {self._state}: "
                               "open a new Journal to use the file again")  # fmt: skip
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        mode = " read-only" if self._readonly else ""
        return (f"<Journal {str(self.path)!r} {self._state}{mode} "
                f"items={sum(self._counts.values())}>")

    # -- reads: synchronous, committed rows overlaid with every write already made --

    def get(self, key: str) -> JournalRow | None:
        """The item ``key`` as of every write already called (committed or queued)."""
        rec = self._lookup(key)
        return None if rec is None else _to_row(rec)

    def counts(self) -> dict[ItemState, int]:
        """How many items are in each state (every state, zeros included)."""
        self._check_readable()
        return {state: self._counts[state] for state in ItemState}

    def __len__(self) -> int:
        self._check_readable()
        return sum(self._counts.values())

    def rows(
        self, states: Iterable[ItemState] | None = None, *, since_run: int | None = None
    ) -> Iterator[JournalRow]:
        """Stream the items (all, or those in ``states``) ordered by ``(seq, key)``.

        ``since_run`` keeps only the committed rows stamped with that run or a later one
        (:meth:`stamp_run`). The stream is a snapshot taken at its first ``next()`` and
        is fetched in pages, so memory stays flat; holding it open for long delays WAL
        checkpoints.
        """
        self._check_readable()
        wanted = None if states is None else frozenset(map(ItemState, states))
        return self._stream(wanted, since_run)

    def count_before_run(self, run: int) -> int:
        """Committed rows not stamped with ``run`` or a later one (see :meth:`stamp_run`)."""
        self._check_readable()
        if "run" not in self._columns:
            return 0
        query = "SELECT COUNT(*) FROM items WHERE run IS NULL OR run < ?"
        return int(self._reader.execute(query, (run,)).fetchone()[0])

    def history(self, key: str) -> list[JournalRow]:
        """The earlier records of ``key`` (oldest first) that :meth:`replace` moved aside."""
        self._check_readable()
        if "fingerprint" not in self._columns:
            return []  # schema 1, read-only: no history table
        found = self._reader.execute(
            f"SELECT {_COLUMNS} FROM history WHERE key = ? ORDER BY id", (key,)  # noqa: S608
        ).fetchall()
        return [_to_row(_Rec._make(rec)) for rec in found]

    def get_meta(self, key: str) -> str | None:
        """A committed meta value (``schema_version`` and ``created_at`` are preset)."""
        self._check_readable()
        found = self._reader.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchall()
        return str(found[0][0]) if found else None

    # -- writes --

    async def add_pending(
        self, key: str, seq: int, request: dict[str, Any], kind: str,
        *, fingerprint: str | None = None,
    ) -> None:
        """Record a new item as ``pending`` (lazy); an existing row is left as it is.

        Args:
            key: the item's unique key.
            seq: its input position (the order of :meth:`rows`).
            request: the request's wire body: JSON-serialisable, without credentials.
            kind: ``"image_search"`` or ``"workflow"``.
            fingerprint: the request's :func:`~fto_async.fingerprint.request_fingerprint`
                (``None``: unknown), so a later run can tell whether the item changed.
        """
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, not {kind!r}")
        self._check_writable()
        if self._lookup(key) is None:
            now = time.time()
            args = (_S.PENDING, None, kind, 0, None, None, None, now, now, None, None)
            self._counts[_S.PENDING] += 1
            rec = _Rec(key, seq, _dumps(request), *args, fingerprint)
            await self._queue(rec, durable=False)

    async def replace(
        self, key: str, seq: int, request: dict[str, Any], kind: str,
        *, fingerprint: str | None,
    ) -> None:
        """The item's request changed: start it again as ``pending``; committed.

        Its earlier record (state, task_id, report or error) moves to the history table
        (:meth:`history`) in the same transaction, unless it was a ``pending`` row that
        was never attempted. An old result is never shown for the new request.
        """
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, not {kind!r}")
        self._check_writable()
        rec = self._lookup(key)
        if rec is None:
            raise KeyError(key)
        now = time.time()
        if rec.state != _S.PENDING or rec.attempts:
            self._history.append((*rec, now))
        # Its follow-ups answered the old request: they go to history with it.
        self._fu_retire.append((now, key, None, None))
        fresh = _Rec(key, seq, _dumps(request), _S.PENDING, None, kind, 0, None, None, None,
                     rec.created_at, now, None, None, fingerprint)  # fmt: skip
        self._counts[ItemState(rec.state)] -= 1
        self._counts[_S.PENDING] += 1
        await self._queue(fresh, durable=True)

    async def stamp_run(self, key: str, run: int) -> None:
        """Record that run number ``run`` found ``key`` in its input (lazy; no-op for a
        key the journal does not hold). Readers use it to leave out rows that are no
        longer in the catalog (:meth:`rows` ``since_run``)."""
        self._check_writable()
        self._stamps[key] = run
        self._has_work.set()
        if len(self._stamps) >= _MAX_QUEUED:
            await self._commit_wait()

    async def mark_submitting(self, key: str) -> None:
        """``pending -> submitting``, committed before return; counts an attempt."""
        rec = self._base(key, "mark_submitting")
        fields = {"attempts": rec.attempts + 1, "error": None, "error_type": None}
        await self._change(rec, _S.SUBMITTING, durable=True, **fields)

    async def mark_submitted(self, key: str, task_id: str) -> None:
        """``submitting|unknown -> submitted`` with ``task_id``, committed before return."""
        rec = self._base(key, "mark_submitted")
        await self._change(rec, _S.SUBMITTED, True, task_id=task_id, submitted_at=time.time())

    async def mark_shared(self, key: str, task_id: str) -> None:
        """``pending -> submitted`` with the task id of an equal request (lazy): the row
        shares that task and never submits (``attempts`` stays 0)."""
        rec = self._base(key, "mark_shared")
        await self._change(rec, _S.SUBMITTED, False, task_id=task_id, submitted_at=time.time())

    async def mark_submit_failed(
        self, key: str, error: str, error_type: str, retry_later: bool
    ) -> None:
        """The submit raised a definite error, so no task exists; committed before return.

        ``retry_later`` puts the item back to ``pending`` (a retryable error, or a fatal
        one that stopped the batch); otherwise it is ``failed`` (the platform refused it).
        Where the task may exist after all (a busy answer), use :meth:`mark_unknown`.
        """
        rec = self._base(key, "mark_submit_failed")
        state, end = (_S.PENDING, None) if retry_later else (_S.FAILED, time.time())
        fields = {"error": error, "error_type": error_type, "completed_at": end}
        await self._change(rec, state, durable=True, **fields)

    async def mark_unknown(self, key: str) -> None:
        """``submitting -> unknown``: the task may or may not exist; committed."""
        await self._change(self._base(key, "mark_unknown"), _S.UNKNOWN, durable=True)

    async def mark_done(self, key: str, report: dict[str, Any]) -> None:
        """The task's report arrived (lazy); the row must hold a task_id."""
        rec = self._base(key, "mark_done")
        if rec.task_id is None:
            raise InvalidTransitionError(f"journal item {key!r} has no task_id to be done")
        fields = {"report": _dumps(report), "error": None, "error_type": None}
        await self._change(rec, _S.DONE, durable=False, completed_at=time.time(), **fields)

    async def mark_failed(self, key: str, error: str, error_type: str) -> None:
        """The item failed for good, e.g. its task failed or timed out (lazy)."""
        rec = self._base(key, "mark_failed")
        fields = {"error": error, "error_type": error_type, "completed_at": time.time()}
        await self._change(rec, _S.FAILED, durable=False, **fields)

    async def reset_to_pending(self, key: str) -> None:
        """``unknown|failed -> pending`` to submit again (forgets the task_id); committed."""
        rec = self._base(key, "reset_to_pending")
        fields = {"task_id": None, "report": None, "submitted_at": None, "completed_at": None}
        await self._change(rec, _S.PENDING, durable=True, **fields)

    async def set_meta(self, key: str, value: str) -> None:
        """Store a free-form value (a run fingerprint, ...); committed before return."""
        self._check_writable()
        self._meta[key] = str(value)
        await self._commit_wait()

    async def save_durations(self, durations: dict[str, Any]) -> None:
        """Store learnt task durations (a ``TaskDurations.snapshot()``) in meta key
        ``durations``; returns once committed."""
        await self.set_meta(_DURATIONS_KEY, _dumps(durations))

    def load_durations(self) -> dict[str, Any] | None:
        """The durations last saved by :meth:`save_durations` (``None``: none or unreadable)."""
        text = self.get_meta(_DURATIONS_KEY)
        if text is None:
            return None
        try:
            value = json.loads(text)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    async def flush(self) -> None:
        """Commit everything queued so far, lazy writes included."""
        self._check_writable()
        await self._commit_wait()

    async def aclose(self) -> None:
        """Commit what is queued, stop the writer and close the file; then do nothing.

        Raises:
            RuntimeError: a commit failed, so queued writes were lost (raised once).
        """
        if self._state == "unopened":
            self._state = "closed"
        if self._state != "open":
            return
        self._state, self._stopping = "closing", True
        self._urgent.set()
        self._has_work.set()
        try:
            if self._writer is not None:  # wait() raises nothing; a failed commit is below
                await asyncio.wait([self._writer])
        finally:
            self._state = "closed"
            await self._release()
        if self._broken is not None:
            raise RuntimeError("the journal closed after a failed commit") from self._broken

    # -- private --

    def _lookup(self, key: str) -> _Rec | None:
        self._check_readable()
        rec = self._dirty.get(key)
        if rec is None:
            rec = self._inflight.get(key)
        if rec is None:
            # fetchall() runs the statement to its end, so it keeps no read snapshot.
            found = self._reader.execute(self._select + " WHERE key = ?", (key,)).fetchall()
            rec = _Rec._make(found[0]) if found else None
        return rec

    def _base(self, key: str, op: str) -> _Rec:
        self._check_writable()
        rec = self._lookup(key)
        if rec is None:
            raise KeyError(key)
        if rec.state not in _ALLOWED[op]:
            allowed = " or ".join(sorted(_ALLOWED[op]))
            raise InvalidTransitionError(
                f"journal item {key!r} is {rec.state}: {op} needs {allowed}"
            )
        return rec

    async def _change(self, rec: _Rec, state: ItemState, durable: bool, **fields: Any) -> None:
        self._counts[ItemState(rec.state)] -= 1
        self._counts[state] += 1
        await self._queue(rec._replace(state=state, updated_at=time.time(), **fields), durable)

    async def _queue(self, rec: _Rec, durable: bool) -> None:
        self._dirty[rec.key] = rec
        self._has_work.set()
        if durable or len(self._dirty) >= _MAX_QUEUED:
            await self._commit_wait()
