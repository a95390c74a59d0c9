"""The one record rule: a journal row as a flat record, one status word, one row set.

Every output reads the same record (JSONL, CSV, XLSX, the HTML report, the command's
summary and ``fto-async status``), one per catalog row, a JSON object whose flat fields
are :data:`FLAT_COLUMNS`, in that order, followed by the full ``report`` and the
``follow_ups``::

    {"key": "LAMP-001", "line": 2, "title": "Arc floor lamp", "image": "https://...",
     "status": "done", "highest_risk": "High", "highest_live_risk": "Medium",
     "high_risk_countries": ["US"], "middle_risk_countries": [],
     "top_patent": "USD1055174S1", "top_title": "Floor lamp", "top_score_pct": 91.3,
     "top_legal_status": "invalid", "top_url": "https://patents.google.com/patent/USD1055174S1",
     "matched_designs": 5, "new_matches": ["USD1099999S1"], "dropped_matches": [],
     "risk_change": "same", "previous_screening": "2026-11-30",
     "task_id": "...", "error": null, "report": {...},
     "follow_ups": [{"patent_pn": "USD1055174S1", "task_id": "...", "highest_risk": "High",
                     "high_risk_countries": ["US"], "error": null, "report": {...}}]}

The fields:

* ``key``, ``line``, ``title`` (the product's name) and ``image`` (its URL, or the local
  path the catalog named).
* ``status`` (:func:`status_of`) and ``highest_risk``: the platform's own highest
  ``risk_level`` (``High``, ``Medium``, ``Low``), **"none"** for a ``done`` row whose
  report matched nothing, and empty (``null``) for a row without a result.
  ``highest_live_risk`` is the same over live rights only (every legal status but
  ``invalid``): the platform's level is never rewritten, this one stands beside it.
* ``high_risk_countries`` and ``middle_risk_countries``, as the platform lists them.
* The top match (best risk, then score): ``top_patent``, ``top_title``,
  ``top_score_pct`` (the similarity as a percentage, one decimal), ``top_legal_status``
  (``valid``, ``invalid`` or ``pending``) and ``top_url`` (its page,
  :func:`~fto_async.outputs._links.patent_url`); ``matched_designs`` counts them all.
* What changed since the row's previous result (the journal's history, by patent
  number, :func:`~fto_async.outputs._matches.compare`): ``new_matches`` and
  ``dropped_matches`` (patent numbers), ``risk_change`` (``up``, ``down``, ``same``) and
  ``previous_screening`` (its date). A first screening has no previous result: its
  ``risk_change`` is ``first`` and the other three are ``null`` (never "0 new").
* ``task_id`` and ``error``.

``follow_ups`` lists the 1-vs-1 follow-ups of the row (``--follow-up``; empty without),
one per patent, from the journal's ``follow_ups`` table, best ``score`` first (as the
stage picked them); one not finished yet has neither ``error`` nor ``report``.

``status`` (:func:`status_of`, :data:`STATUSES`) is ``done``, ``failed``, ``invalid``
(refused before any call), ``pending`` (not finished yet: the next run carries on) or
``unknown`` (a run died while submitting it, or left it ``submitting``/``unknown``: the
platform may hold a task). Records come from the journal alone (titles and local image
paths from the catalog, when given), so an output can be rebuilt at any time.

The row set (:func:`run_filter`): the rows the last finished run stamped, that is the
rows of its catalog, in catalog order; rows dropped from the catalog since are left out
unless every row is asked for (``--all``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

from .. import _serde
from ..errors import FtoError
from ..journal import FollowUpRow, ItemState, Journal, JournalRow
from ..models import OneVsOneReport, Report
from ._matches import compare, comparisons, highest, matches

__all__ = [
    "FLAT_COLUMNS",
    "INVALID_TYPE",
    "STATUSES",
    "base_record",
    "flat_cells",
    "follow_up_record",
    "follow_up_status",
    "invalid_body",
    "invalid_record",
    "is_changed",
    "last_run",
    "live_only",
    "previous_result",
    "record_from_journal",
    "records_from_journal",
    "run_filter",
    "status_of",
]

#: ``error_type`` of rows the CLI refused before any call (kept in the journal as failed).
INVALID_TYPE: Final = "InvalidRequestError"
#: Every status word a record can carry, in the order the outputs list them.
STATUSES: Final = ("done", "failed", "invalid", "pending", "unknown")
_INVALID_STATUS: Final = 2  # comparisons[].status of an invalid (lapsed) right
#: The flat fields of a record, in order: the CSV columns and the XLSX *Rows* sheet.
FLAT_COLUMNS: Final = (
    "key", "line", "title", "image", "status", "highest_risk", "highest_live_risk",
    "high_risk_countries", "middle_risk_countries", "top_patent", "top_title",
    "top_score_pct", "top_legal_status", "top_url", "matched_designs", "new_matches",
    "dropped_matches", "risk_change", "previous_screening", "task_id", "error", "follow_ups",
)  # fmt: skip

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


def follow_up_status(record: Mapping[str, Any]) -> str:
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
    title: str | None = None,
    image: str | None = None,
    previous: JournalRow | None = None,
    template: str | None = None,
) -> dict[str, Any]:
    """The output record of one journal row (``None``: a row not reached yet).

    ``key`` and ``line`` default to what the journal holds; ``follow_ups`` are the row's
    follow-ups (``Journal.follow_ups``); ``title`` and ``image`` the catalog's (default:
    the request's); ``previous`` the row's previous result (:func:`previous_result`);
    ``template`` the patent link template (:mod:`~fto_async.outputs._links`).
    """
    if row is None:
        return _flat(key, line, "pending", None, None, None, title=title, image=image)
    base = base_record(row, key=key, line=line)
    request = row.request
    rec = _flat(base["key"], base["line"], base["status"], base["task_id"], base["error"],
                base["report"], title=title if title is not None else _str(request.get("title")),
                image=image if image is not None else _str(request.get("url")),
                previous=previous, template=template)  # fmt: skip
    rec["follow_ups"] = [follow_up_record(fu) for fu in _by_score(row.report, follow_ups)]
    return rec


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _flat(
    key: str | None, line: int | None, status: str, task_id: str | None, error: str | None,
    report: dict[str, Any] | None, *, title: str | None = None, image: str | None = None,
    previous: JournalRow | None = None, template: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """A record from its parts (see the module docstring for each field)."""
    found = matches(report, template) if status == "done" else []
    top = found[0] if found else {}
    risk = _risk(report)
    done = status == "done"
    rec: dict[str, Any] = {
        "key": key, "line": line, "title": title, "image": image, "status": status,
        "highest_risk": (risk["highest_risk"] or highest(found)) if done else None,
        "highest_live_risk": highest(m for m in found if m["live"]) if done else None,
        "high_risk_countries": risk["high_risk_countries"],
        "middle_risk_countries": risk["middle_risk_countries"],
        "top_patent": top.get("pn"), "top_title": top.get("title"),
        "top_score_pct": None if top.get("score") is None else round(top["score"] * 100, 1),
        "top_legal_status": top.get("legal"), "top_url": top.get("url"),
        "matched_designs": len(found) if done else None,
        "new_matches": None, "dropped_matches": None,
        "risk_change": ("first" if previous is None else None) if done else None,
        "previous_screening": None, "task_id": task_id, "error": error, "follow_ups": [],
        "report": report,
    }  # fmt: skip
    if done and previous is not None:
        rec.update(compare(previous.report, report))
        when = previous.completed_at or previous.updated_at
        rec["previous_screening"] = dt.datetime.fromtimestamp(when, dt.UTC).strftime("%Y-%m-%d")
    return rec


def live_only(record: Mapping[str, Any], template: str | None = None) -> dict[str, Any]:
    """``record`` without its invalid (lapsed) rights: the report's comparisons, the top
    match and the count keep live ones only; ``highest_risk`` stays the platform's."""
    report = record.get("report")
    inner = report.get("report") if isinstance(report, dict) else None
    if record.get("status") != "done" or not isinstance(report, dict) \
            or not isinstance(inner, dict):  # fmt: skip
        return dict(record)
    kept = [c for c in comparisons(report) if c.get("status") != _INVALID_STATUS]
    trimmed = {**report, "report": {**inner, "comparisons": kept}}
    found = [m for m in matches(report, template) if m["live"]]
    top = found[0] if found else {}
    return {
        **record, "top_patent": top.get("pn"), "top_title": top.get("title"),
        "top_score_pct": None if top.get("score") is None else round(top["score"] * 100, 1),
        "top_legal_status": top.get("legal"), "top_url": top.get("url"),
        "matched_designs": len(found), "report": trimmed,
    }  # fmt: skip


def is_changed(record: Mapping[str, Any]) -> bool:
    """Whether a row's result changed since its previous one (``export --changed``)."""
    return bool(record.get("new_matches") or record.get("dropped_matches")
                or record.get("risk_change") in ("up", "down"))  # fmt: skip


def previous_result(journal: Journal, key: str) -> JournalRow | None:
    """The row's latest earlier result (a ``done`` record the history keeps), if any."""
    return next((old for old in reversed(journal.history(key))
                 if old.state is ItemState.DONE and old.report is not None), None)  # fmt: skip


def flat_cells(record: Mapping[str, Any]) -> list[Any]:
    """A record's :data:`FLAT_COLUMNS` values as cells: lists ``;``-joined, follow-ups as
    ``PN=RISK``; numbers stay numbers, ``None`` stays ``None`` (CSV and XLSX)."""
    cells: list[Any] = []
    for column in FLAT_COLUMNS:
        value = record.get(column)
        if column == "follow_ups":
            value = ";".join(f"{fu['patent_pn']}={_follow_up_cell(fu)}"
                             for fu in value or ()) or None  # fmt: skip
        elif isinstance(value, list | tuple):
            value = ";".join(map(str, value))
        cells.append(value)
    return cells


def _follow_up_cell(record: Mapping[str, Any]) -> str:
    """A follow-up as a cell: its highest risk when done (``done`` if none), its error
    when failed, else ``pending``."""
    status = follow_up_status(record)
    if status == "done":
        return str(record.get("highest_risk") or "done")
    return str(record.get("error") or "failed") if status == "failed" else status


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


def invalid_record(
    key: str | None, line: int, reason: str, *, title: str | None = None,
    image: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The output record of a catalog row refused before any call."""
    return _flat(key, line, "invalid", None, reason, None, title=title, image=image)


def records_from_journal(
    journal: Journal, *, since_run: int | None = None, template: str | None = None,
    products: Mapping[str, tuple[str | None, str | None]] | None = None,
) -> Iterator[dict[str, Any]]:
    """Every journal row (or those stamped ``since_run`` or later) as an output record,
    in catalog order (streaming). ``products`` maps a row key to its catalog title and
    image; ``template`` is the patent link template."""
    for row in journal.rows(since_run=since_run):
        title, image = (products or {}).get(row.key, (None, None))
        yield record_from_journal(row, follow_ups=journal.follow_ups(row.key), title=title,
                                  image=image, previous=previous_result(journal, row.key),
                                  template=template)  # fmt: skip


