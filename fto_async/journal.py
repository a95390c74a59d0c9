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
    pending ─> failed              refused before any call was made
    unknown | failed ─> pending    reset_to_pending: the resubmit / retry policy
    unknown ─> submitted           its task was found; else it stays unknown (skip policy)

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

One :class:`Journal` holds a file at a time (a ``flock`` on ``<path>.lock``, POSIX only):
a second process would turn the first one's live submits into ``unknown``.

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
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple, Self

import attrs

from .errors import FtoError

if sys.platform != "win32":
    import fcntl

__all__ = ["InvalidTransitionError", "ItemState", "Journal", "JournalLockedError", "JournalRow"]

_SCHEMA_VERSION = 1
_LAZY_DELAY = 0.2  # seconds a lazy write may wait for company before it is committed
_MAX_QUEUED = 10_000  # queued rows before lazy writes wait for a commit (bounded memory)
_KINDS = ("image_search", "workflow")
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


@attrs.frozen
class JournalRow:
    """One item as the journal knows it. Times are epoch seconds.

    Attributes:
        key: the item's key; seq: its input position (the order of ``rows()``).
        request: the request's wire body; kind: ``"image_search"`` or ``"workflow"``.
        state: see :class:`ItemState`; task_id: the platform's task id, once known.
        attempts: submits started; error, error_type: the last failure and its class name.
        report: the report's JSON, once done.
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


_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS items (key TEXT PRIMARY KEY, seq INTEGER NOT NULL,
    request TEXT NOT NULL, state TEXT NOT NULL CHECK (state IN ('pending', 'submitting',
    'submitted', 'done', 'failed', 'unknown')), task_id TEXT, kind TEXT,
    attempts INTEGER NOT NULL, error TEXT, error_type TEXT, report TEXT,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, submitted_at REAL, completed_at REAL)""",
    "CREATE INDEX IF NOT EXISTS items_by_seq ON items (seq, key)",
    "CREATE INDEX IF NOT EXISTS items_by_state ON items (state, seq)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
_SELECT = (  # the columns of _Rec, in order
    "SELECT key, seq, request, state, task_id, kind, attempts, error, error_type, report,"
    " created_at, updated_at, submitted_at, completed_at FROM items"
)
_UPSERT = (  # key, seq, request, kind and created_at never change
    "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key)"
    " DO UPDATE SET (state, task_id, attempts, error, error_type, report, updated_at,"
    " submitted_at, completed_at) = (excluded.state, excluded.task_id, excluded.attempts,"
    " excluded.error, excluded.error_type, excluded.report, excluded.updated_at,"
    " excluded.submitted_at, excluded.completed_at)"
)
_META_UPSERT = "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)"

_S = ItemState
_ORDER = operator.itemgetter(1, 0)  # a _Rec's (seq, key)
_ALLOWED: dict[str, frozenset[ItemState]] = {
    "mark_submitting": frozenset({_S.PENDING}),
    "mark_submitted": frozenset({_S.SUBMITTING, _S.UNKNOWN}),
    "mark_submit_failed": frozenset({_S.SUBMITTING}),
    "mark_unknown": frozenset({_S.SUBMITTING, _S.UNKNOWN}),
    "mark_done": frozenset({_S.SUBMITTED, _S.FAILED, _S.DONE}),
    "mark_failed": frozenset({_S.PENDING, _S.SUBMITTING, _S.SUBMITTED, _S.UNKNOWN, _S.FAILED}),
    "reset_to_pending": frozenset({_S.PENDING, _S.UNKNOWN, _S.FAILED}),
}


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _to_row(rec: _Rec) -> JournalRow:
    fields = rec._asdict()
    fields["state"] = ItemState(rec.state)
    fields["request_json"], fields["report_json"] = fields.pop("request"), fields.pop("report")
    return JournalRow(**fields)


def _lock(path: Path) -> int | None:
    if sys.platform == "win32":  # pragma: no cover - no advisory lock there
        return None
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JournalLockedError(f"journal {str(path)!r} is open elsewhere") from None
    return fd


class Journal:
    """The durable record of a batch's items; the module docstring gives the contract.

    Open it with ``await Journal.open(path)`` (``async with`` closes it), from one event
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
        *("commits", "path", "recovered_unknown"),
    )

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.recovered_unknown = 0
        self.commits = 0
        self._state = "unopened"  # -> open -> closing -> closed
        self._counts: Counter[ItemState] = Counter()
        self._dirty: dict[str, _Rec] = {}  # rows changed since the last commit began
        self._inflight: dict[str, _Rec] = {}  # rows being committed now
        self._meta: dict[str, str] = {}  # meta values queued for the next commit
        self._waiters: list[asyncio.Future[None]] = []  # callers of the next commit
        self._has_work = asyncio.Event()
        self._urgent = asyncio.Event()  # someone awaits the next commit
        self._stopping = False
        self._broken: BaseException | None = None  # a failed commit ends all writing
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="fto-journal")
        self._wdb: sqlite3.Connection | None = None  # used by the executor's thread only
        self._rdb: sqlite3.Connection | None = None  # read-only, used by the loop only
        self._lock_fd: int | None = None
        self._writer: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, path: str | os.PathLike[str]) -> Self:
        """Open (or create) the journal at ``path`` and recover interrupted submits.

        Rows left in ``submitting`` by a process that died mid-call become ``unknown``
        (the platform may or may not have created their task): see ``recovered_unknown``.

        Raises:
            JournalLockedError: another open journal holds the file.
            RuntimeError: the file was written by a newer schema version.
            sqlite3.DatabaseError: the file is not a journal.
        """
        self = cls(path)
        loop = asyncio.get_running_loop()
        try:
            self._lock_fd = _lock(self.path)
            await loop.run_in_executor(self._executor, self._setup)
        except BaseException:
            await self._release()
            raise
        self._state = "open"
        self._writer = loop.create_task(self._run_writer(), name=f"journal:{self.path}")
        return self

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<Journal {str(self.path)!r} {self._state} items={sum(self._counts.values())}>"

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

    def rows(self, states: Iterable[ItemState] | None = None) -> Iterator[JournalRow]:
        """Stream the items (all, or those in ``states``) ordered by ``(seq, key)``.

        The stream is a snapshot taken at its first ``next()`` and is fetched in pages,
        so memory stays flat; holding it open for long delays WAL checkpoints.
        """
        self._check_readable()
        return self._stream(None if states is None else frozenset(map(ItemState, states)))

    def get_meta(self, key: str) -> str | None:
        """A committed meta value (``schema_version`` and ``created_at`` are preset)."""
        self._check_readable()
        found = self._reader.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchall()
        return str(found[0][0]) if found else None

    # -- writes --

    async def add_pending(self, key: str, seq: int, request: dict[str, Any], kind: str) -> None:
        """Record a new item as ``pending`` (lazy); an existing row is left as it is.

        Args:
            key: the item's unique key.
            seq: its input position (the order of :meth:`rows`).
            request: the request's wire body: JSON-serialisable, without credentials.
            kind: ``"image_search"`` or ``"workflow"``.
        """
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, not {kind!r}")
        self._check_writable()
        if self._lookup(key) is None:
            now = time.time()
            args = (_S.PENDING, None, kind, 0, None, None, None, now, now, None, None)
            self._counts[_S.PENDING] += 1
            await self._queue(_Rec(key, seq, _dumps(request), *args), durable=False)

    async def mark_submitting(self, key: str) -> None:
        """``pending -> submitting``, committed before return; counts an attempt."""
        rec = self._base(key, "mark_submitting")
        fields = {"attempts": rec.attempts + 1, "error": None, "error_type": None}
        await self._change(rec, _S.SUBMITTING, durable=True, **fields)

    async def mark_submitted(self, key: str, task_id: str) -> None:
        """``submitting|unknown -> submitted`` with ``task_id``, committed before return."""
        rec = self._base(key, "mark_submitted")
        await self._change(rec, _S.SUBMITTED, True, task_id=task_id, submitted_at=time.time())

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

    async def close(self) -> None:
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
            raise RuntimeError(f"journal {str(self.path)!r} is {self._state}")

    def _check_writable(self) -> None:
        if self._state != "open":
            raise RuntimeError(f"journal {str(self.path)!r} is {self._state}")
        if self._broken is not None:
            raise RuntimeError("an earlier journal commit failed") from self._broken

    def _lookup(self, key: str) -> _Rec | None:
        self._check_readable()
        rec = self._dirty.get(key)
        if rec is None:
            rec = self._inflight.get(key)
        if rec is None:
            # fetchall() runs the statement to its end, so it keeps no read snapshot.
            found = self._reader.execute(_SELECT + " WHERE key = ?", (key,)).fetchall()
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
            while not (self._stopping and not self._dirty and not self._meta):
                await self._has_work.wait()
                if not self._urgent.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(_LAZY_DELAY):
                            await self._urgent.wait()
                self._has_work.clear()
                self._urgent.clear()
                rows, meta, waiters = self._dirty, self._meta, self._waiters
                self._dirty, self._meta, self._waiters, self._inflight = {}, {}, [], rows
                try:
                    if rows or meta:
                        batch = ([*rows.values()], [*meta.items()])
                        await loop.run_in_executor(self._executor, self._write, *batch)
                        self.commits += 1
                except Exception as exc:  # disk full, I/O error: the batch is not kept
                    self._broken = exc
                    self._dirty = rows | self._dirty  # reads keep showing what was asked
                    self._waiters[:0] = waiters
                    return
                finally:
                    self._inflight = {}
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

    def _setup(self) -> None:  # in the writer thread
        # A new file is created private; SQLite gives -wal and -shm the same mode.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        self._wdb = db = sqlite3.connect(self.path, isolation_level=None)
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise RuntimeError(f"journal {str(self.path)!r}: WAL mode refused ({mode})")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA:
                db.execute(statement)
            found = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
            if found and int(found[0][0]) > _SCHEMA_VERSION:
                raise RuntimeError(f"journal {str(self.path)!r} needs a newer fto-async")
            if not found:
                meta = [("schema_version", str(_SCHEMA_VERSION)), ("created_at", str(time.time()))]
                db.executemany(_META_UPSERT, meta)
            self.recovered_unknown = db.execute(
                "UPDATE items SET state = 'unknown', updated_at = ? WHERE state = 'submitting'",
                (time.time(),),
            ).rowcount
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.commits += 1
        self._rdb = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._rdb.execute("PRAGMA query_only=1")
        for state, count in self._rdb.execute("SELECT state, COUNT(*) FROM items GROUP BY state"):
            self._counts[ItemState(state)] = count

    def _write(self, rows: list[_Rec], meta: list[tuple[str, str]]) -> None:  # writer thread
        assert self._wdb is not None
        self._wdb.execute("BEGIN")
        try:
            self._wdb.executemany(_UPSERT, rows)
            self._wdb.executemany(_META_UPSERT, meta)
            self._wdb.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._wdb.execute("ROLLBACK")
            raise

    def _stream(self, wanted: frozenset[ItemState] | None) -> Iterator[JournalRow]:
        overlay = self._inflight | self._dirty
        mine = [rec for rec in overlay.values() if wanted is None or rec.state in wanted]
        query, params = _SELECT, tuple(wanted or ())
        if wanted is not None:
            query += f" WHERE state IN ({', '.join('?' * len(wanted))})"
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
