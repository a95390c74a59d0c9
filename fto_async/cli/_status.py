"""``fto-async status JOURNAL``: a journal's progress, read-only. Strictly private.

Rows are those of the last run (the outputs' row set) with the outputs' status word
(:func:`fto_async.outputs.status_of`), told apart where the journal can: ``submitted``
is a pending row already paid for, ``submitting`` one the live run is sending.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from pathlib import Path

from ..journal import ItemState, Journal
from ..outputs import last_run, status_of
from ._common import EXIT_OK, EXIT_USAGE, open_journal, say_error
from ._display import Section, format_duration, render_sections

__all__ = ["cmd_status"]


def cmd_status(args: argparse.Namespace) -> int:
    if not args.journal.is_file():
        say_error(f"no journal at {args.journal}")
        return EXIT_USAGE
    return asyncio.run(_status(args.journal))


async def _status(path: Path) -> int:
    journal = await open_journal(path, readonly=True)
    if journal is None:
        return EXIT_USAGE
    live = Journal.is_held(path)  # else rows left `submitting` are from a run that died
    died = 0
    try:
        run = last_run(journal)
        outside = journal.count_before_run(run) if run else 0  # left out, as by export
        states: Counter[str] = Counter()
        failures: Counter[str] = Counter()
        oldest: tuple[float, str, str] | None = None
        last = 0.0
        shared = 0  # rows answered by another row's task or a cached report (attempts 0)
        for row in journal.rows(since_run=run or None):  # the row set of every output
            shared += row.task_id is not None and row.attempts == 0
            name = status_of(row)  # the outputs' word, told apart where the journal can:
            if row.state is ItemState.SUBMITTED:
                name = "submitted"  # pending, and paid: the next run polls it
            if row.state is ItemState.FAILED:
                failures[row.error_type or "error"] += 1
            if row.state is ItemState.SUBMITTING:
                if live:
                    name = "submitting"  # the run that holds the journal is sending it
                else:
                    died += 1
            states[name] += 1
            last = max(last, row.updated_at)
            if row.state is ItemState.SUBMITTED and row.submitted_at is not None and (
                oldest is None or row.submitted_at < oldest[0]
            ):
                oldest = (row.submitted_at, row.key, row.task_id or "?")
        follow_ups = {str(k): n for k, n in journal.follow_up_counts().items() if n}
    finally:
        await journal.aclose()
    order = ("done", "failed", "invalid", "pending", "submitting", "submitted", "unknown")
    rows = [[name, str(states[name])] for name in order if states[name]]
    rows.append(["total", str(sum(states.values()))])
    sections = [Section(f"Journal {path}", ["state", "items"], rows)]
    if follow_ups:
        sections.append(Section("Follow-ups (1-vs-1)", ["state", "patents"],
                                [[k, str(n)] for k, n in sorted(follow_ups.items())]))
    if failures:
        sections.append(Section("Failures by type", ["error", "items"],
                                [[k, str(n)] for k, n in failures.most_common()]))
    now = time.time()
    footer = [("last activity", f"{format_duration(now - last)} ago" if last else "never")]
    if shared:
        footer.append(("shared", f"{shared} rows share the task of an equal row or a cached "
                                 "report (never submitted by themselves)"))
    if oldest is not None:
        footer.append(("oldest unfinished task", f"{oldest[1]} (task {oldest[2]}), submitted "
                                              f"{format_duration(now - oldest[0])} ago"))
    if states["submitting"]:
        footer.append(("submitting", f"{states['submitting']} items are being submitted by "
                       "the run that holds the journal"))
    if states["unknown"]:
        footer.append(("unknown", f"{states['unknown']} items may hold a task on the platform "
                       f"({died} left mid-submit by a run that died); the next run resubmits "
                       "them unless --unknown skip"))
    if follow_ups.get("unknown") or follow_ups.get("submitting"):
        stuck = follow_ups.get("unknown", 0) + follow_ups.get("submitting", 0)
        footer.append(("unknown follow-ups", f"{stuck} follow-ups may hold a task on the "
                       "platform (left mid-submit); the next run resubmits them unless "
                       "--unknown skip"))
    if outside:
        footer.append(("not in the last run", f"{outside} items were not in the last run's "
                       "catalog: not counted above (export and report leave them out "
                       "unless --all)"))
    render_sections(sections, footer, sys.stdout)
    return EXIT_OK
