"""Result records of the ``fto-async`` command, built from the journal. Strictly private.

One record per catalog row, a flat JSON object::

    {"key": "LAMP-001", "line": 2, "task_id": "...", "status": "done",
     "highest_risk": "High", "high_risk_countries": ["US"], "middle_risk_countries": [],
     "error": null, "report": {...}}

``status`` is ``done``, ``failed``, ``invalid`` (refused before any call), ``pending``
(not finished yet: the next run carries on) or ``unknown`` (a run died while submitting
it; the platform may hold a task). Records come from the journal alone, so the output
file can be rebuilt at any time (:func:`write_output`, ``fto-async export``).
"""

from __future__ import annotations

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
from ..journal import ItemState, Journal, JournalRow
from ..models import Report
from ._catalog import Catalog

__all__ = [
    "CSV_COLUMNS",
    "INVALID_TYPE",
    "Tally",
    "atomic_write",
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
CSV_COLUMNS: Final = ("key", "task_id", "status", "highest_risk", "high_risk_countries", "error")
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


def record_from_journal(
    row: JournalRow | None, *, key: str | None = None, line: int | None = None
) -> dict[str, Any]:
    """The output record of one journal row (``None``: a row not reached yet).

    ``key`` and ``line`` default to what the journal holds.
    """
    if row is None:
        return {
            "key": key, "line": line, "task_id": None, "status": "pending",
            "highest_risk": None, "high_risk_countries": [], "middle_risk_countries": [],
            "error": None, "report": None,
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
    }


def invalid_record(key: str | None, line: int, reason: str) -> dict[str, Any]:
    """The output record of a catalog row refused before any call."""
    rec = record_from_journal(None, key=key, line=line)
    rec.update(status="invalid", error=reason)
    return rec


def records_from_journal(journal: Journal) -> Iterator[dict[str, Any]]:
    """Every journal row as an output record, in catalog order (streaming)."""
    for row in journal.rows():
        yield record_from_journal(row)


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
    """

    rows: int = 0
    status: Counter[str] = attrs.field(factory=Counter)
    risk: Counter[str] = attrs.field(factory=Counter)
    high: list[tuple[int, int, str, str, list[str]]] = attrs.field(factory=list)
    high_total: int = 0
    failures: dict[str, list[Any]] = attrs.field(factory=dict)

    def add(
        self, record: dict[str, Any], title: str | None = None, error_type: str | None = None
    ) -> None:
        """Count one record.

        ``title`` is the product's name, for the high-risk table; ``error_type`` the
        failure's class name, which names its group in the failure table.
        """
        self.rows += 1
        status = record["status"]
        self.status[status] += 1
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


def write_output(catalog: Catalog, journal: Journal, out: Path) -> Tally:
    """Write ``out`` atomically: one record per catalog row, in catalog order.

    Rows are looked up in the journal by key; a row refused by validation is
    ``invalid``, one the run never reached is ``pending``.
    """
    tally = Tally()
    with atomic_write(out) as handle:
        for row in catalog.rows():
            if row.error is not None:
                rec = invalid_record(row.key, row.line, row.error)
                tally.add(rec, row.title)
            else:
                jrow = journal.get(row.jkey)
                rec = record_from_journal(jrow, key=row.key, line=row.line)
                tally.add(rec, row.title, None if jrow is None else jrow.error_type)
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
        )])
