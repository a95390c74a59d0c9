"""A follow-up's status word is one rule (outputs._record.follow_up_status) for CSV and the
summary: a 1-vs-1 report that found no risk is done, never pending."""

from __future__ import annotations

import csv
import io
from typing import Any

from fto_async.cli._results import Tally
from fto_async.outputs import write_csv
from fto_async.outputs._record import follow_up_status


def _fu(pn: str, *, report: Any = None, error: str | None = None,
        risk: str | None = None) -> dict[str, Any]:  # fmt: skip
    return {"patent_pn": pn, "task_id": None, "highest_risk": risk,
            "high_risk_countries": [], "error": error, "report": report}  # fmt: skip


FOLLOW_UPS = [_fu("P1", report={"task_status": 2}, risk="High"),
              _fu("P2", report={"task_status": 2}),  # done, no risk found
              _fu("P3", error="task failed"), _fu("P4")]  # fmt: skip
RECORD = {"key": "K", "line": 2, "task_id": "t", "status": "done", "highest_risk": "High",
          "high_risk_countries": ["US"], "middle_risk_countries": [], "error": None,
          "report": None, "follow_ups": FOLLOW_UPS}  # fmt: skip


def test_follow_up_status_words():
    """done (with or without a risk), failed, pending."""
    assert [follow_up_status(fu) for fu in FOLLOW_UPS] == ["done", "done", "failed", "pending"]


def test_csv_and_summary_agree_on_each_follow_up():
    """The CSV cell says done for a follow-up that found no risk, as the summary counts it."""
    handle = io.StringIO()
    write_csv([RECORD], handle)
    (row,) = csv.DictReader(io.StringIO(handle.getvalue()))
    assert row["follow_ups"] == "P1=High;P2=done;P3=task failed;P4=pending"
    tally = Tally()
    tally.add(RECORD)
    assert dict(tally.follow_ups) == {"done": 2, "failed": 1, "pending": 1}
