"""Result records of the ``fto-async`` command, built from the journal. Strictly private.

One record per catalog row, a flat JSON object::

    {"key": "LAMP-001", "line": 2, "task_id": "...", "status": "done",
     "highest_risk": "High", "high_risk_countries": ["US"], "middle_risk_countries": [],
     "error": null, "report": {...},
     "follow_ups": [{"patent_pn": "USD1055174S1", "task_id": "...", "highest_risk": "High",
                     "high_risk_countries": ["US"], "error": null, "report": {...}}]}

``follow_ups`` lists the 1-vs-1 follow-ups of the row (``--follow-up``; empty without),
one per patent, from the journal's ``follow_ups`` table; one not finished yet has
neither ``error`` nor ``report``.

``status`` is ``done``, ``failed``, ``invalid`` (refused before any call), ``pending``
(not finished yet: the next run carries on) or ``unknown`` (a run died while submitting
it; the platform may hold a task). Records come from the journal alone, so the output
file can be rebuilt at any time (:func:`write_output`, ``fto-async export``).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import heapq
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Final, TextIO

import attrs

from .. import _serde
from .._cells import cell_text
from ..errors import FtoError
from ..journal import FollowUpRow, ItemState, Journal, JournalRow
from ..models import OneVsOneReport, Report
from ._catalog import Catalog

__all__ = [
    "CSV_COLUMNS",
    "INVALID_TYPE",
    "Tally",
    "atomic_write",
    "follow_up_record",
    "invalid_body",
    "invalid_record",
    "record_from_journal",
    "records_from_journal",
    "write_csv",
    "write_jsonl",
    "write_output",
]

#: ``error_type`` of rows the CLI refused before any call (kept in the journal as failed).
INVALID_TYPE: Final = "InvalidRequestError"
#: Columns of ``fto-async export --format csv``.
CSV_COLUMNS: Final = ("key", "task_id", "status", "highest_risk", "high_risk_countries", "error",
                      "follow_ups")  # fmt: skip
_TOP: Final = 20

_converter = _serde.make_converter()


def invalid_body(key: str | None, line: int) -> dict[str, Any]:
    """The journal's ``request`` for a row refused before any call."""
    return {"invalid": True, "key": key, "line": line}


def _status(row: JournalRow) -> str:
    state = row.state
    if state is ItemState.DONE:
        return "done"
    if state is ItemState.FAILED:
        return "invalid" if row.error_type == INVALID_TYPE else "failed"
    if state in (ItemState.SUBMITTING, ItemState.UNKNOWN):
        return "unknown"
    return "pending"


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
    if row.request.get("invalid") is True:
        key = key if key is not None else row.request.get("key")
        line = line if line is not None else row.request.get("line")
    status = _status(row)
    return {
        "key": key if key is not None else row.key,
        "line": line if line is not None else row.seq,
        "task_id": row.task_id,
        "status": status,
        **_risk(row.report if status == "done" else None),
        "error": row.error if status != "done" else None,
        "report": row.report if status == "done" else None,
        "follow_ups": [follow_up_record(fu) for fu in _by_score(row.report, follow_ups)],
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


def _group(record: dict[str, Any], error_type: str | None) -> str:
    """The heading a failure is listed under in the summary."""
    error = str(record.get("error") or "")
    if record["status"] == "invalid":
        field = error.split(":", 1)[0] if ":" in error else "row"
        return f"invalid {field}"
    return str(error_type or error.split(" ", 1)[0] or "error")


@attrs.define
class Tally:
    """What the summary shows, accumulated record by record (memory stays bounded).

    Attributes:
        rows: records seen. status: records per status. risk: done rows per highest
            risk (``"none"`` when the report found nothing).
        high: the top high-risk rows ``(n countries, -line, key, title, countries)``.
        high_total: every high-risk row.
        failures: heading -> ``[count, example message, example keys]``.
        follow_ups: follow-ups by ``done`` / ``failed`` / ``pending``; follow_ups_high:
            those whose 1-vs-1 report found a high risk.
        waiting: why ``pending`` rows are not done -> ``[count, example message]``
            (``"not submitted: cannot connect ..."``, ``"paid and not yet polled: ..."``).
    """

    rows: int = 0
    status: Counter[str] = attrs.field(factory=Counter)
    risk: Counter[str] = attrs.field(factory=Counter)
    high: list[tuple[int, int, str, str, list[str]]] = attrs.field(factory=list)
    high_total: int = 0
    failures: dict[str, list[Any]] = attrs.field(factory=dict)
    follow_ups: Counter[str] = attrs.field(factory=Counter)
    follow_ups_high: int = 0
    waiting: dict[str, list[Any]] = attrs.field(factory=dict)

    def add(
        self,
        record: dict[str, Any],
        title: str | None = None,
        error_type: str | None = None,
        state: ItemState | None = None,
    ) -> None:
        """Count one record.

        ``title`` is the product's name, for the high-risk table; ``error_type`` the
        failure's class name, which names its group in the failure table; ``state`` the
        journal's state of the row (``None``: not in the journal), which says why a
        ``pending`` row is not done.
        """
        self.rows += 1
        status = record["status"]
        self.status[status] += 1
        for fu in record.get("follow_ups", ()):
            fu_state = (
                "done" if fu["report"] is not None else "failed" if fu["error"] else "pending"
            )
            self.follow_ups[fu_state] += 1
            self.follow_ups_high += fu["highest_risk"] == "High"
        if status == "pending":
            reason = _waiting(record, state)
            self.waiting.setdefault(reason, [0, record.get("error")])[0] += 1
        if status == "done":
            risk = record["highest_risk"] or "none"
            self.risk[risk] += 1
            if risk == "High":
                self.high_total += 1
                countries = list(record["high_risk_countries"])
                entry = (len(countries), -int(record["line"] or 0), str(record["key"]),
                         title or "", countries)  # fmt: skip
                if len(self.high) < _TOP:
                    heapq.heappush(self.high, entry)
                else:
                    heapq.heappushpop(self.high, entry)
        elif status in ("failed", "invalid"):
            group = self.failures.setdefault(_group(record, error_type),
                                             [0, record["error"], []])
            group[0] += 1
            if len(group[2]) < 3:
                where = f"{record['key'] or '-'} (line {record['line']})"
                group[2].append(where)

    def top_high(self) -> list[tuple[str, str, list[str]]]:
        """The high-risk rows with the most countries, in that order: key, title, countries."""
        return [(k, t, c) for _n, _l, k, t, c in sorted(self.high, reverse=True)]


def _waiting(record: dict[str, Any], state: ItemState | None) -> str:
    """Why a ``pending`` record is not done, as the summary says it."""
    if state is ItemState.SUBMITTED:
        return "paid and not yet polled: the next run polls them"
    error = " ".join(str(record.get("error") or "").split())
    if error:
        return f"not submitted: {error[:160]}; the next run submits them"
    return "not submitted yet: the next run submits them"


async def write_output(
    catalog: Catalog, journal: Journal, out: Path, *, run: int | None = None
) -> Tally:
    """Write ``out`` atomically: one record per catalog row, in catalog order.

    Rows are looked up in the journal by key; a row refused by validation is
    ``invalid`` (but a ``done`` row whose local image has gone keeps its result), one
    the run never reached is ``pending``. Rows of the journal that are not in the
    catalog are left out. ``run`` stamps every catalog row's key with that run number
    (:meth:`~fto_async.journal.Journal.stamp_run`), for ``fto-async export``.
    """
    tally = Tally()
    with atomic_write(out) as handle:
        for n, row in enumerate(catalog.rows(read_images=False)):  # the journal knows them
            if run is not None:
                await journal.stamp_run(row.jkey, run)
            elif n % 256 == 255:
                await asyncio.sleep(0)
            jrow = journal.get(row.jkey) if row.error is None or row.image_gone else None
            if row.error is not None and (jrow is None or jrow.state is not ItemState.DONE):
                rec = invalid_record(row.key, row.line, row.error)
                tally.add(rec, row.title)
            else:
                rec = record_from_journal(jrow, key=row.key, line=row.line,
                                          follow_ups=journal.follow_ups(row.jkey))
                tally.add(rec, row.title, None if jrow is None else jrow.error_type,
                          None if jrow is None else jrow.state)  # fmt: skip
            write_jsonl((rec,), handle)
    return tally


@contextlib.contextmanager
def atomic_write(out: Path) -> Iterator[TextIO]:
    """A text handle on a temporary file that replaces ``out`` only if the block succeeds."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as handle:
            yield handle
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def write_jsonl(records: Iterable[dict[str, Any]], handle: TextIO) -> None:
    """Write records as JSON lines."""
    for rec in records:
        handle.write(json.dumps(rec, ensure_ascii=False) + "\n")


def write_csv(records: Iterable[dict[str, Any]], handle: TextIO) -> None:
    """Write records as CSV with :data:`CSV_COLUMNS` (countries ``;``-joined).

    Every cell goes through :func:`~fto_async._cells.cell_text`: no formulas, no controls.
    """
    writer = csv.writer(handle)
    writer.writerow(CSV_COLUMNS)
    for rec in records:
        writer.writerow([cell_text(value) for value in (
            rec["key"],
            rec["task_id"],
            rec["status"],
            rec["highest_risk"],
            ";".join(rec["high_risk_countries"]),
            rec["error"],
            ";".join(f"{fu['patent_pn']}={fu['highest_risk'] or fu['error'] or 'pending'}"
                     for fu in rec.get("follow_ups", ())),
        )])
