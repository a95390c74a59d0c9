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
                                   the earlier record moves to the ``history`` table

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
import contextlib
import functools
import heapq
import json
import operator
import os
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple, Self

import attrs

from . import _sqlite
from ._kinds import KINDS
from .errors import FtoError

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

_SCHEMA_VERSION = 3  # 2: items.fingerprint, items.run, history; 3: follow_ups
_LAZY_DELAY = 0.2  # seconds a lazy write may wait for company before it is committed
_MAX_QUEUED = 10_000  # queued rows before lazy writes wait for a commit (bounded memory)
_KINDS = tuple(k for k, kind in KINDS.items() if kind.journal_table == "items")
_DURATIONS_KEY = "durations"  # meta key: the client's learnt task durations


class ItemState(StrEnum):
    """Where an item stands; the module docstring draws the state machine."""

    PENDING = "pending"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    DONE = "done"
    FAILED = "failed"
    UNKNOWN = "unknown"


class InvalidTransitionError(ValueError):
    """A write that the item's current state does not allow (a bug in the caller)."""


class JournalLockedError(FtoError, RuntimeError):
    """Another open :class:`Journal`, in this process or another, holds the file."""


class NotAJournalError(FtoError, ValueError):
    """The file is not an fto-async journal (another database, or not SQLite); unchanged."""


@attrs.frozen
class JournalRow:
    """One item as the journal knows it. Times are epoch seconds.

    Attributes:
        key: the item's key; seq: its input position (the order of ``rows()``).
        request: the request's wire body; kind: ``"image_search"`` or ``"workflow"``.
        state: see :class:`ItemState`; task_id: the platform's task id, once known.
        attempts: submits started; error, error_type: the last failure and its class name.
        report: the report's JSON, once done.
        fingerprint: the request's fingerprint (``None``: written before schema 2).
        created_at, updated_at, submitted_at, completed_at: when it was added, last
            changed, given its task_id, done or failed.

    ``request`` and ``report`` are decoded from their stored text on first access, so
    reading an item's state costs no JSON parsing (a report is tens of kilobytes).
    """

    key: str
    seq: int
    state: ItemState
    task_id: str | None
    kind: str | None
    attempts: int
    error: str | None
    error_type: str | None
    created_at: float
    updated_at: float
    submitted_at: float | None
    completed_at: float | None
    request_json: str = attrs.field(repr=False)
    report_json: str | None = attrs.field(repr=False)
    fingerprint: str | None = None

    @functools.cached_property
    def request(self) -> dict[str, Any]:
        """The request's wire body."""
        body: dict[str, Any] = json.loads(self.request_json)
        return body

    @functools.cached_property
    def report(self) -> dict[str, Any] | None:
        """The report's JSON, once done."""
        report: dict[str, Any] | None = (
            None if self.report_json is None else json.loads(self.report_json)
        )
        return report


@attrs.frozen
class FollowUpRow:
    """One follow-up (a 1-vs-1 task for one patent of an item) as the journal knows it.

    Attributes:
        key: the item's key; patent_pn: the compared patent.
        state: see :class:`ItemState`; task_id: the 1-vs-1 task id, once known.
        error, error_type: the failure and its class name, if it failed.
        created_at, updated_at, submitted_at: epoch seconds.
    """

    key: str
    patent_pn: str
    state: ItemState
    task_id: str | None
    error: str | None
    error_type: str | None
    created_at: float
    updated_at: float
    submitted_at: float | None
    report_json: str | None = attrs.field(repr=False)

    @functools.cached_property
    def report(self) -> dict[str, Any] | None:
        """The 1-vs-1 report's JSON, once done."""
        report: dict[str, Any] | None = (
            None if self.report_json is None else json.loads(self.report_json)
        )
        return report


class _FuRec(NamedTuple):
    """Private: a follow-up row as stored, in column order."""

    key: str
    patent_pn: str
    state: str
    task_id: str | None
    report: str | None
    error: str | None
    error_type: str | None
    created_at: float
    updated_at: float
    submitted_at: float | None


class _Rec(NamedTuple):
    """Private: a row as stored (JSON as text), in column order."""

    key: str
    seq: int
    request: str
    state: str
    task_id: str | None
    kind: str | None
    attempts: int
    error: str | None
    error_type: str | None
    report: str | None
    created_at: float
    updated_at: float
    submitted_at: float | None
    completed_at: float | None
    fingerprint: str | None


_V1_COLUMNS = (  # schema 1's items columns, in order
    "key", "seq", "request", "state", "task_id", "kind", "attempts", "error", "error_type",
    "report", "created_at", "updated_at", "submitted_at", "completed_at",
)
_COLUMNS = ", ".join(_Rec._fields)
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS items (key TEXT PRIMARY KEY, seq INTEGER NOT NULL,
    request TEXT NOT NULL, state TEXT NOT NULL CHECK (state IN ('pending', 'submitting',
    'submitted', 'done', 'failed', 'unknown')), task_id TEXT, kind TEXT,
    attempts INTEGER NOT NULL, error TEXT, error_type TEXT, report TEXT,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, submitted_at REAL, completed_at REAL,
    fingerprint TEXT, run INTEGER)""",
    "CREATE INDEX IF NOT EXISTS items_by_seq ON items (seq, key)",
    "CREATE INDEX IF NOT EXISTS items_by_state ON items (state, seq)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    f"""CREATE TABLE IF NOT EXISTS history (id INTEGER PRIMARY KEY AUTOINCREMENT,
    {_COLUMNS.replace("key,", "key TEXT NOT NULL,", 1)}, replaced_at REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS history_by_key ON history (key, id)",
    """CREATE TABLE IF NOT EXISTS follow_ups (key TEXT NOT NULL, patent_pn TEXT NOT NULL,
    state TEXT NOT NULL, task_id TEXT, report TEXT, error TEXT, error_type TEXT,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, submitted_at REAL,
    PRIMARY KEY (key, patent_pn))""",
)
_FU_SELECT = (
    "SELECT key, patent_pn, state, task_id, report, error, error_type, created_at,"
    " updated_at, submitted_at FROM follow_ups"
)
_FU_UPSERT = "INSERT OR REPLACE INTO follow_ups VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_MIGRATIONS = {"fingerprint": "TEXT", "run": "INTEGER"}  # schema 1 -> 2: columns added
# S608 below: every name built into SQL here is one of this module's constants.
_UPSERT = (  # key and created_at never change
    f"INSERT INTO items ({_COLUMNS}) VALUES ({', '.join('?' * len(_Rec._fields))})"  # noqa: S608
    " ON CONFLICT (key) DO UPDATE SET (seq, request, kind, fingerprint, state, task_id,"
    " attempts, error, error_type, report, updated_at, submitted_at, completed_at) ="
    " (excluded.seq, excluded.request, excluded.kind, excluded.fingerprint, excluded.state,"
    " excluded.task_id, excluded.attempts, excluded.error, excluded.error_type,"
    " excluded.report, excluded.updated_at, excluded.submitted_at, excluded.completed_at)"
)
_HISTORY_INSERT = (
    f"INSERT INTO history ({_COLUMNS}, replaced_at)"  # noqa: S608
    f" VALUES ({', '.join('?' * (len(_Rec._fields) + 1))})"
)
_STAMP = "UPDATE items SET run = ? WHERE key = ?"
_META_UPSERT = "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)"

_S = ItemState
_HOW_TO_OPEN = " (open it with `async with Journal(path)` or `await Journal.open(path)`)"
_ORDER = operator.itemgetter(1, 0)  # a _Rec's (seq, key)
#: THE transition table, of items and follow-ups alike: each write -> the states it may
#: come from, and the states it leads to. A follow-up moves by the write that takes it
#: from its state to the one asked (:meth:`Journal.mark_follow_up`); it never shares.
_TRANSITIONS: dict[str, tuple[frozenset[ItemState], frozenset[ItemState]]] = {
    "mark_submitting": (frozenset({_S.PENDING}), frozenset({_S.SUBMITTING})),
    "mark_submitted": (frozenset({_S.SUBMITTING, _S.UNKNOWN}), frozenset({_S.SUBMITTED})),
    "mark_shared": (frozenset({_S.PENDING}), frozenset({_S.SUBMITTED})),
    "mark_submit_failed": (frozenset({_S.PENDING, _S.SUBMITTING}),
                           frozenset({_S.PENDING, _S.FAILED})),
    "mark_unknown": (frozenset({_S.SUBMITTING, _S.UNKNOWN}), frozenset({_S.UNKNOWN})),
    "mark_done": (frozenset({_S.SUBMITTED, _S.FAILED, _S.DONE}), frozenset({_S.DONE})),
    "mark_failed": (frozenset({_S.PENDING, _S.SUBMITTING, _S.SUBMITTED, _S.UNKNOWN,
                               _S.FAILED}), frozenset({_S.FAILED})),
    "reset_to_pending": (frozenset({_S.PENDING, _S.UNKNOWN, _S.FAILED}),
                         frozenset({_S.PENDING})),
}  # fmt: skip
_ALLOWED = {write: sources for write, (sources, _) in _TRANSITIONS.items()}
_FOLLOW_UP_WRITES = tuple(write for write in _TRANSITIONS if write != "mark_shared")


def _follow_up_write(current: ItemState, target: ItemState) -> str | None:
    """The write that takes a follow-up from ``current`` to ``target`` (``None``: none)."""
    for write in _FOLLOW_UP_WRITES:
        sources, targets = _TRANSITIONS[write]
        if current in sources and target in targets:
            return write
    return None


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _to_row(rec: _Rec) -> JournalRow:
    fields = rec._asdict()
    fields["state"] = ItemState(rec.state)
    fields["request_json"], fields["report_json"] = fields.pop("request"), fields.pop("report")
    return JournalRow(**fields)


def _fu_row(rec: _FuRec) -> FollowUpRow:
    fields = rec._asdict()
    fields["state"] = ItemState(rec.state)
    fields["report_json"] = fields.pop("report")
    return FollowUpRow(**fields)


def _locked(message: str) -> JournalLockedError:
    return JournalLockedError(f"journal {message}")


def _check_journal(db: sqlite3.Connection, path: Path) -> tuple[int, frozenset[str]]:
    """The schema version and items columns of a journal file; ``(0, {})`` if it is empty.

    Raises:
        NotAJournalError: the file is another database, or not SQLite at all.
        RuntimeError: a newer fto-async wrote it.
    """
    where = f"{str(path)!r} is not an fto-async journal"
    try:
        listed = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        tables = {row[0] for row in listed}
        if not tables:
            return 0, frozenset()
        if not {"items", "meta"} <= tables:
            raise NotAJournalError(f"{where} (it has no items and meta tables)")
        columns = frozenset(row[1] for row in db.execute("PRAGMA table_info(items)"))
        found = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    except sqlite3.DatabaseError as exc:
        raise NotAJournalError(f"{where} ({exc})") from None
    if not set(_V1_COLUMNS) <= columns or not found:
        raise NotAJournalError(f"{where} (wrong items columns or no schema version)")
    try:
        version = int(found[0][0])
    except ValueError:
        raise NotAJournalError(f"{where} (schema version {found[0][0]!r})") from None
    if version > _SCHEMA_VERSION:
        raise RuntimeError(f"journal {str(path)!r} needs a newer fto-async")
    return version, columns


class Journal:
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
        *("_fu_dirty", "_fu_inflight", "commits", "path", "recovered_unknown"),
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
        self._writing: tuple[list[tuple[Any, ...]], list[tuple[int, str]]] = ([], [])
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

    async def add_follow_up(self, key: str, patent_pn: str) -> None:
        """Record a follow-up as ``pending`` (lazy); an existing one is left as it is."""
        self._check_writable()
        if self._fu_lookup(key, patent_pn) is None:
            now = time.time()
            rec = _FuRec(key, patent_pn, _S.PENDING, None, None, None, None, now, now, None)
            await self._fu_queue(rec, durable=False)

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
        return self._reader.execute(_FU_SELECT + where, params).fetchall()

    async def _fu_queue(self, rec: _FuRec, durable: bool) -> None:
        self._fu_dirty[(rec.key, rec.patent_pn)] = rec
        self._has_work.set()
        if durable or len(self._fu_dirty) >= _MAX_QUEUED:
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

    async def _commit_wait(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._urgent.set()
        self._has_work.set()
        await waiter

    async def _run_writer(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not (self._stopping and not self._dirty and not self._meta
                       and not self._history and not self._stamps
                       and not self._fu_dirty):
                await self._has_work.wait()
                if not self._urgent.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(_LAZY_DELAY):
                            await self._urgent.wait()
                self._has_work.clear()
                self._urgent.clear()
                rows, meta, waiters = self._dirty, self._meta, self._waiters
                self._dirty, self._meta, self._waiters, self._inflight = {}, {}, [], rows
                history, stamps = self._history, self._stamps
                self._history, self._stamps = [], {}
                self._writing = (history, [(run, key) for key, run in stamps.items()])
                fu_rows, self._fu_dirty = self._fu_dirty, {}
                self._fu_inflight = fu_rows
                try:
                    if rows or meta or history or stamps or fu_rows:
                        batch = ([*rows.values()], [*meta.items()], [*fu_rows.values()])
                        await loop.run_in_executor(self._executor, self._write, *batch)
                        self.commits += 1
                except Exception as exc:  # disk full, I/O error: the batch is not kept
                    self._broken = exc
                    self._dirty = rows | self._dirty  # reads keep showing what was asked
                    self._history[:0] = history
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
            version, columns = _check_journal(db, self.path)
            for statement in _SCHEMA:
                db.execute(statement)
            for name, sql_type in _MIGRATIONS.items():
                if columns and name not in columns:
                    db.execute(f"ALTER TABLE items ADD COLUMN {name} {sql_type}")
            if not version:
                db.execute(_META_UPSERT, ("created_at", str(time.time())))
            if version < _SCHEMA_VERSION:
                db.execute(_META_UPSERT, ("schema_version", str(_SCHEMA_VERSION)))
            self.recovered_unknown = db.execute(
                "UPDATE items SET state = 'unknown', updated_at = ? WHERE state = 'submitting'",
                (time.time(),),
            ).rowcount
            db.execute(
                "UPDATE follow_ups SET state = 'unknown', updated_at = ?"
                " WHERE state = 'submitting'",
                (time.time(),),
            )
        self.commits += 1
        self._rdb = _sqlite.connect_read_only(self.path)
        for state, count in self._rdb.execute("SELECT state, COUNT(*) FROM items GROUP BY state"):
            self._counts[ItemState(state)] = count

    def _write(  # in the writer thread
        self, rows: list[_Rec], meta: list[tuple[str, str]], fu_rows: list[_FuRec]
    ) -> None:
        assert self._wdb is not None
        history, stamps = self._writing
        _sqlite.write_batch(self._wdb, [
            (_HISTORY_INSERT, history), (_UPSERT, rows), (_STAMP, stamps),
            (_META_UPSERT, meta), (_FU_UPSERT, fu_rows),
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
