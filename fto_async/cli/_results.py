"""The screen's output file and summary tally, from the catalog and the journal. Strictly private.

:func:`write_output` rebuilds ``--out`` at the end of a run: one record per catalog row
(the record rule of :mod:`fto_async.outputs`), in catalog order, stamped with the run's
number (the row set ``export``, ``report`` and ``status`` read back). :class:`Tally`
counts the same records for the end-of-run summary.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import Counter
from pathlib import Path
from typing import Any, Final

import attrs

from ..journal import ItemState, Journal
from ..outputs import atomic_write, record_from_journal, write_jsonl
from ..outputs._record import follow_up_status, invalid_record, previous_result
from ..transport import TOKEN_PATH
from ._catalog import Catalog

__all__ = ["CATALOG_META", "Tally", "screening_calls", "write_output"]

_TOP: Final = 20
#: The journal's meta key naming the catalog of its last run (for ``export``'s titles).
CATALOG_META: Final = "catalog"
def screening_calls(journal: Journal, run: int | None = None) -> int | None:
    """The screening's calls that reached the platform, from the journal's call ledger:
    answered or refused with a code, token requests aside (the summary's "calls used"
    counts the same way). Every run, or run ``run`` only; ``None``: nothing recorded.

    The one home of that figure: the summary, the report's header and ``usage`` agree.
    """
    lines = [line for line in journal.calls() if run is None or line.run == run]
    if not lines:
        return None
    return sum(line.n for line in lines
               if line.result != "unanswered" and line.path != TOKEN_PATH)  # fmt: skip


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
        first: done rows screened for the first time (nothing to compare with).
        compared: done rows with a previous result; new_rows: those with new matches;
            newly_high: those of them that went up to High; dropped_rows: those that
            lost matches.
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
    first: int = 0
    compared: int = 0
    new_rows: int = 0
    newly_high: int = 0
    dropped_rows: int = 0

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
            self.follow_ups[follow_up_status(fu)] += 1
            self.follow_ups_high += fu["highest_risk"] == "High"
        if status == "pending":
            reason = _waiting(record, state)
            self.waiting.setdefault(reason, [0, record.get("error")])[0] += 1
        if status == "done":
            self._changes(record)
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

    def _changes(self, record: dict[str, Any]) -> None:
        if record.get("risk_change") == "first":
            self.first += 1
            return
        self.compared += 1
        if record.get("new_matches"):
            self.new_rows += 1
            self.newly_high += record.get("risk_change") == "up" \
                and record.get("highest_risk") == "High"  # fmt: skip
        self.dropped_rows += bool(record.get("dropped_matches"))

    def changes(self) -> str | None:
        """The summary's line on what is new since the previous screening, if any row was
        screened before (a first screening says so, never "0 new")."""
        if not self.compared:
            return "first screening: no earlier result to compare with" if self.first \
                else None  # fmt: skip
        text = (f"{self.new_rows} rows with new matches ({self.newly_high} newly High) "
                f"since their previous screening")
        if self.dropped_rows:
            text += f"; {self.dropped_rows} rows lost matches"
        if self.first:
            text += f"; {self.first} rows screened for the first time"
        return text

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
    catalog: Catalog, journal: Journal, out: Path, *, run: int | None = None,
    template: str | None = None,
) -> Tally:
    """Write ``out`` atomically: one record per catalog row, in catalog order.

    Rows are looked up in the journal by key; a row refused by validation is
    ``invalid`` (but a ``done`` row whose local image has gone keeps its result), one
    the run never reached is ``pending``. Rows of the journal that are not in the
    catalog are left out. ``run`` stamps every catalog row's key with that run number
    (:meth:`~fto_async.journal.Journal.stamp_run`), for ``fto-async export``;
    ``template`` is the patent link template. Each record carries the catalog's title and
    image, and what changed since the row's previous result (the journal's history).
    """
    tally = Tally()
    with atomic_write(out) as handle:
        for n, row in enumerate(catalog.rows(read_images=False)):  # the journal knows them
            if run is not None:
                await journal.stamp_run(row.jkey, run)
            elif n % 256 == 255:
                await asyncio.sleep(0)
            jrow = journal.get(row.jkey) if row.error is None or row.image_gone else None
            image = getattr(row.request, "url", None) if row.request is not None else None
            image = image or (None if row.image_path is None else str(row.image_path))
            if row.error is not None and (jrow is None or jrow.state is not ItemState.DONE):
                rec = invalid_record(row.key, row.line, row.error, title=row.title, image=image)
                tally.add(rec, row.title)
            else:
                rec = record_from_journal(
                    jrow, key=row.key, line=row.line, follow_ups=journal.follow_ups(row.jkey),
                    title=row.title, image=image, template=template,
                    previous=None if jrow is None else previous_result(journal, row.jkey))
                tally.add(rec, row.title, None if jrow is None else jrow.error_type,
                          None if jrow is None else jrow.state)  # fmt: skip
            write_jsonl((rec,), handle)
    return tally
