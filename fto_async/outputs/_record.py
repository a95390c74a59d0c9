"""The one record rule: a journal row as a flat record, one status word, one row set.

Every output reads the same record (JSONL, CSV, XLSX, the HTML report, the command's
summary and ``fto-async status``), one per catalog row, a flat JSON object::

    {"key": "LAMP-001", "line": 2, "task_id": "...", "status": "done",
     "highest_risk": "High", "high_risk_countries": ["US"], "middle_risk_countries": [],
     "error": null, "report": {...},
     "follow_ups": [{"patent_pn": "USD1055174S1", "task_id": "...", "highest_risk": "High",
                     "high_risk_countries": ["US"], "error": null, "report": {...}}]}

``follow_ups`` lists the 1-vs-1 follow-ups of the row (``--follow-up``; empty without),
one per patent, from the journal's ``follow_ups`` table, best ``score`` first (as the
stage picked them); one not finished yet has neither ``error`` nor ``report``.

``status`` (:func:`status_of`, :data:`STATUSES`) is ``done``, ``failed``, ``invalid``
(refused before any call), ``pending`` (not finished yet: the next run carries on) or
``unknown`` (a run died while submitting it, or left it ``submitting``/``unknown``: the
platform may hold a task). Records come from the journal alone, so an output can be
rebuilt at any time.

The row set (:func:`run_filter`): the rows the last finished run stamped, that is the
rows of its catalog, in catalog order; rows dropped from the catalog since are left out
unless every row is asked for (``--all``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Final

from .. import _serde
from ..errors import FtoError
from ..journal import FollowUpRow, ItemState, Journal, JournalRow
from ..models import OneVsOneReport, Report

__all__ = [
    "INVALID_TYPE",
    "STATUSES",
    "base_record",
    "follow_up_record",
    "follow_up_status",
    "invalid_body",
    "invalid_record",
    "last_run",
    "record_from_journal",
    "records_from_journal",
    "run_filter",
    "status_of",
]

#: ``error_type`` of rows the CLI refused before any call (kept in the journal as failed).
INVALID_TYPE: Final = "InvalidRequestError"
#: Every status word a record can carry, in the order the outputs list them.
STATUSES: Final = ("done", "failed", "invalid", "pending", "unknown")

_converter = _serde.make_converter()


def status_of(row: JournalRow | None) -> str:
    """The status word of a journal row (``None``: a row not reached yet, ``pending``)."""
    state = None if row is None else row.state
    if state is ItemState.DONE:
        return "done"
    if state is ItemState.FAILED:
        assert row is not None
        return "invalid" if row.error_type == INVALID_TYPE else "failed"
    if state in (ItemState.SUBMITTING, ItemState.UNKNOWN):
        return "unknown"
    return "pending"


def last_run(journal: Journal) -> int:
    """The number of the journal's last finished run (0: none, or an older journal)."""
    try:
        return int(journal.get_meta("last_run") or 0)
    except ValueError:
        return 0


def run_filter(journal: Journal, *, everything: bool = False) -> int | None:
    """The ``since_run`` of the row set (for ``Journal.rows``): the last run's rows.

    ``None`` (every row) with ``everything``, or when no run has finished yet.
    """
    return None if everything else last_run(journal) or None


def invalid_body(key: str | None, line: int) -> dict[str, Any]:
    """The journal's ``request`` for a row refused before any call."""
    return {"invalid": True, "key": key, "line": line}


def _risk(report: dict[str, Any] | None) -> dict[str, Any]:
    """``highest_risk`` and the countries of a report's JSON (only its ``report`` part)."""
    empty: dict[str, Any] = {
        "highest_risk": None, "high_risk_countries": [], "middle_risk_countries": []
    }
    inner_json = None if report is None else report.get("report")
    if not isinstance(inner_json, dict):
        return empty
    try:
        inner = _serde.structure(_converter, inner_json, Report)
    except FtoError:
        return empty
    risk = inner.highest_risk
    return {
        "highest_risk": None if risk is None else risk.value,
        "high_risk_countries": list(inner.high_risk_country),
        "middle_risk_countries": list(inner.middle_risk_country),
    }


def follow_up_record(row: FollowUpRow) -> dict[str, Any]:
    """The output record of one follow-up (an item of a record's ``follow_ups``)."""
    report = row.report if row.state is ItemState.DONE else None
    risk, high = None, []
    if report is not None:
        try:
            one = _serde.structure(_converter, report, OneVsOneReport)
        except FtoError:
            one = None
        if one is not None:
            risk = None if one.highest_risk is None else one.highest_risk.value
            high = list(one.high_risk_country)
    return {
        "patent_pn": row.patent_pn, "task_id": row.task_id, "highest_risk": risk,
        "high_risk_countries": high,
        "error": row.error if row.state is ItemState.FAILED else None, "report": report,
    }  # fmt: skip


def follow_up_status(record: dict[str, Any]) -> str:
    """The status word of a follow-up record: ``done``, ``failed`` or ``pending``."""
    if record.get("report") is not None:
        return "done"
    return "failed" if record.get("error") else "pending"


def record_from_journal(
    row: JournalRow | None,
    *,
    key: str | None = None,
    line: int | None = None,
    follow_ups: Iterable[FollowUpRow] = (),
) -> dict[str, Any]:
    """The output record of one journal row (``None``: a row not reached yet).

    ``key`` and ``line`` default to what the journal holds; ``follow_ups`` are the row's
    follow-ups (``Journal.follow_ups``).
    """
    if row is None:
        return {
            "key": key, "line": line, "task_id": None, "status": "pending",
            "highest_risk": None, "high_risk_countries": [], "middle_risk_countries": [],
            "error": None, "report": None, "follow_ups": [],
        }  # fmt: skip
    base = base_record(row, key=key, line=line)
    return {
        **{name: base[name] for name in ("key", "line", "task_id", "status")},
        **_risk(base["report"]),
        "error": base["error"],
        "report": base["report"],
        "follow_ups": [follow_up_record(fu) for fu in _by_score(row.report, follow_ups)],
    }


def base_record(
    row: JournalRow, *, key: str | None = None, line: int | None = None
) -> dict[str, Any]:
    """The fields of a record the journal row holds as they are (no report parsing):
    ``key``, ``line``, ``task_id``, ``status``, ``error`` and ``report``.

    The HTML cards read these and derive the risk from the report themselves.
    """
    if row.request.get("invalid") is True:
        key = key if key is not None else row.request.get("key")
        line = line if line is not None else row.request.get("line")
    status = status_of(row)
    return {
        "key": key if key is not None else row.key,
        "line": line if line is not None else row.seq,
        "task_id": row.task_id,
        "status": status,
        "error": row.error if status != "done" else None,
        "report": row.report if status == "done" else None,
    }


def _by_score(
    report: dict[str, Any] | None, follow_ups: Iterable[FollowUpRow]
) -> list[FollowUpRow]:
    """Follow-ups in the order the stage picked them: best ``score`` in the report first."""
    inner = report.get("report") if isinstance(report, dict) else None
    comparisons = inner.get("comparisons") if isinstance(inner, dict) else None
    rank: dict[str, float] = {}
    for c in comparisons if isinstance(comparisons, list) else ():
        if isinstance(c, dict) and isinstance(c.get("score"), int | float):
            pn = str(c.get("patent_pn"))
            rank[pn] = max(rank.get(pn, float("-inf")), float(c["score"]))
    return sorted(follow_ups, key=lambda fu: (-rank.get(fu.patent_pn, float("-inf")),
                                              fu.patent_pn))  # fmt: skip


def invalid_record(key: str | None, line: int, reason: str) -> dict[str, Any]:
    """The output record of a catalog row refused before any call."""
    rec = record_from_journal(None, key=key, line=line)
    rec.update(status="invalid", error=reason)
    return rec


def records_from_journal(
    journal: Journal, *, since_run: int | None = None
) -> Iterator[dict[str, Any]]:
    """Every journal row (or those stamped ``since_run`` or later) as an output record,
    in catalog order (streaming)."""
    for row in journal.rows(since_run=since_run):
        yield record_from_journal(row, follow_ups=journal.follow_ups(row.key))


