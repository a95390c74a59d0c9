"""What ``fto-async screen`` tells machines: ``--fail-on`` and ``--summary-json``.
Strictly private.

``--fail-on`` chooses which rows make the exit code 1 (an orchestrator fails its task
on a non-zero exit), a ladder from strict to lenient:

* ``invalid`` (default for a screening): any row not done: failed, invalid (refused by
  our checks, never sent), pending or unknown. Exit 0 only when every row is done.
* ``failed``: a row whose task failed or that the platform refused, or a row left
  pending or unknown (the next run finishes it); invalid rows alone exit 0.
* ``never``: row results never make the exit non-zero.

Whatever it says, a problem of the run itself keeps its own code: 2 usage or input
error, 3 a fatal platform error, 4 the call budget spent, 130 interrupted. A dry run
(``--dry-run``) exits 0 for invalid rows unless ``--fail-on invalid`` is given.

``--summary-json PATH`` writes the end-of-run summary as one JSON object (replaced
atomically; a pipe such as ``/dev/stderr`` is written straight through): the exit code
and its reason, rows by status and by highest risk, calls, cache hits, time and the
output paths. See :func:`summary_record` for the fields; ``version`` changes if a field
changes meaning.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

from ..outputs._flat import atomic_write
from ._common import EXIT_BUDGET, EXIT_FATAL, EXIT_OK, EXIT_ROWS, EXIT_STOPPED, EXIT_USAGE
from ._display import Summary
from ._results import Tally

__all__ = ["FAIL_ON", "SUMMARY_VERSION", "FailOn", "rows_exit", "stop_reason",
           "summary_record", "write_summary_json"]  # fmt: skip

FailOn = Literal["failed", "invalid", "never"]
#: The ``--fail-on`` choices, strictest first.
FAIL_ON: Final = ("invalid", "failed", "never")
#: The summary's format version.
SUMMARY_VERSION: Final = 1

_STATUSES: Final = ("done", "failed", "invalid", "pending", "unknown")


def rows_exit(tally: Tally, fail_on: FailOn) -> int:
    """The exit code the rows give under ``fail_on`` (0 or 1)."""
    status = tally.status
    if fail_on == "never":
        return EXIT_OK
    bad = status["failed"] + status["pending"] + status["unknown"]
    if fail_on == "invalid":
        bad += status["invalid"]
    return EXIT_ROWS if bad else EXIT_OK


def stop_reason(exit_code: int, fatal: BaseException | None) -> str | None:
    """Why a run ended with ``exit_code`` when its rows are not the reason (else ``None``)."""
    if exit_code == EXIT_FATAL and fatal is not None:
        return f"fatal platform error: {type(fatal).__name__}"
    return {EXIT_BUDGET: "call budget spent (--max-calls): rerun to go on",
            EXIT_STOPPED: "interrupted: rerun to resume",
            EXIT_USAGE: "catalog error"}.get(exit_code)  # fmt: skip


def summary_record(
    summary: Summary, *, exit_code: int, fail_on: FailOn, reason: str | None,
    report: Path | None,
) -> dict[str, Any]:
    """The summary for machines (JSON-safe).

    Fields: ``version``, ``exit_code``, ``fail_on``, ``reason`` (why the run stopped
    early, else ``None``), ``rows``, ``status`` (rows per status: done, failed, invalid,
    pending, unknown), ``risk`` (done rows per highest risk: High, Medium, Low, none),
    ``high_risk_rows``, ``follow_ups`` (per status), ``distinct`` (distinct requests),
    ``from_cache``, ``shared``, ``calls`` (calls answered), ``uploads``, ``retries``,
    ``ambiguous_submits``, ``elapsed_s``, ``out``, ``journal``, ``report``.
    """
    tally = summary.tally
    return {
        "version": SUMMARY_VERSION,
        "exit_code": exit_code,
        "fail_on": fail_on,
        "reason": reason,
        "rows": tally.rows,
        "status": {s: tally.status[s] for s in _STATUSES},
        "risk": dict(sorted(tally.risk.items())),
        "high_risk_rows": tally.high_total,
        "follow_ups": dict(sorted(tally.follow_ups.items())),
        "distinct": summary.distinct,
        "from_cache": summary.from_cache,
        "shared": summary.shared,
        "calls": summary.calls,
        "uploads": summary.uploads,
        "retries": summary.retries,
        "ambiguous_submits": summary.ambiguous,
        "elapsed_s": round(summary.elapsed, 3),
        "out": str(summary.out),
        "journal": str(summary.journal),
        "report": None if report is None else str(report),
    }


def write_summary_json(path: Path, record: Mapping[str, Any]) -> None:
    """Write ``record`` to ``path`` as one JSON object and a newline."""
    with atomic_write(path) as handle:
        handle.write(json.dumps(record, ensure_ascii=False, sort_keys=False) + "\n")
