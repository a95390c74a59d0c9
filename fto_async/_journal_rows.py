"""The journal's rows, states and file format (schema 4). Private; see :mod:`fto_async.journal`.

The states (:class:`ItemState`) and THE transition table (``_TRANSITIONS``) that items and
follow-ups share; the rows a reader gets (:class:`JournalRow`, :class:`FollowUpRow`) and
the records stored (``_Rec``, ``_FuRec``); the SQL of the file, its checks and migrations.
"""

from __future__ import annotations

import functools
import json
import operator
import sqlite3
import time
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

import attrs

from ._kinds import KINDS
from .errors import FtoError

__all__ = [
    "FollowUpRow",
    "InvalidTransitionError",
    "ItemState",
    "JournalLockedError",
    "JournalRow",
    "NotAJournalError",
]

_SCHEMA_VERSION = 4  # 2: items.fingerprint, items.run, history; 3: follow_ups;
# 4: follow_up_history (follow-ups are replaced with their item)
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
        fingerprint: what it asks (:func:`~fto_async.fingerprint.follow_up_fingerprint`:
            the item's checked fingerprint, the patent, the report language); ``None``
            before schema 4 or when its item could not be checked.
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
    fingerprint: str | None = attrs.field(default=None, repr=False)

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
    fingerprint: str | None = None


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
    fingerprint TEXT, PRIMARY KEY (key, patent_pn))""",
    """CREATE TABLE IF NOT EXISTS follow_up_history (id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL, patent_pn TEXT NOT NULL, state TEXT NOT NULL, task_id TEXT,
    report TEXT, error TEXT, error_type TEXT, created_at REAL NOT NULL,
    updated_at REAL NOT NULL, submitted_at REAL, fingerprint TEXT,
    replaced_at REAL NOT NULL)""",
)
_FU_FIELDS = ("key, patent_pn, state, task_id, report, error, error_type, created_at,"
              " updated_at, submitted_at, fingerprint")  # fmt: skip
_FU_SELECT = f"SELECT {_FU_FIELDS} FROM follow_ups"  # noqa: S608
#: A schema-3 file opened read-only has no follow_ups.fingerprint column.
_FU_SELECT_V3 = _FU_SELECT.replace(", fingerprint ", ", NULL AS fingerprint ")
_FU_UPSERT = f"INSERT OR REPLACE INTO follow_ups ({_FU_FIELDS}) VALUES ({', '.join('?' * 11)})"  # noqa: S608
# Params (replaced_at, key, patent_pn or None, the same): an item's follow-ups (or one of
# them) go to history with its old record.
_FU_RETIRE = (
    f"INSERT INTO follow_up_history ({_FU_FIELDS}, replaced_at)"  # noqa: S608
    f" SELECT {_FU_FIELDS}, ? FROM follow_ups WHERE key = ? AND (? IS NULL OR patent_pn = ?)"
)
_FU_DROP = "DELETE FROM follow_ups WHERE key = ? AND (? IS NULL OR patent_pn = ?)"
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


def _migrate(db: sqlite3.Connection, path: Path) -> int:
    """Create or upgrade the file's tables (in the caller's transaction) and mark the rows
    a dead run left ``submitting`` as ``unknown``; return how many items it found so."""
    version, columns = _check_journal(db, path)
    for statement in _SCHEMA:
        db.execute(statement)
    for name, sql_type in _MIGRATIONS.items():
        if columns and name not in columns:
            db.execute(f"ALTER TABLE items ADD COLUMN {name} {sql_type}")
    if "fingerprint" not in {r[1] for r in db.execute("PRAGMA table_info(follow_ups)")}:
        db.execute("ALTER TABLE follow_ups ADD COLUMN fingerprint TEXT")  # schema 3 -> 4
    if not version:
        db.execute(_META_UPSERT, ("created_at", str(time.time())))
    if version < _SCHEMA_VERSION:
        db.execute(_META_UPSERT, ("schema_version", str(_SCHEMA_VERSION)))
    recovered: int = db.execute(
        "UPDATE items SET state = 'unknown', updated_at = ? WHERE state = 'submitting'",
        (time.time(),),
    ).rowcount
    db.execute(
        "UPDATE follow_ups SET state = 'unknown', updated_at = ?"
        " WHERE state = 'submitting'",
        (time.time(),),
    )
    return recovered
