"""``fto-async screen --dry-run``: validate every row and count the calls; call nothing.

Strictly private. It reads the journal and the cache read-only and applies the run's
rules to each row (journal state, changed rows, shared fingerprints, cache hits, one
upload per file) to estimate the calls and the time a run would take.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

from ..auth import ApiKey
from ..batch._journaling import plan
from ..cache import ReportCache
from ..client import provenance
from ..config import (
    DEFAULT_BASE_URL,
    DEFAULT_QPS,
    DEFAULT_SUBMIT_LATENCY,
    PollConfig,
    env_settings,
)
from ..errors import ConfigurationError, InvalidRequestError
from ..fingerprint import request_fingerprint
from ..journal import ItemState
from ..outputs._record import INVALID_TYPE
from ._budget import polls_per_task
from ._common import EXIT_OK, EXIT_ROWS, EXIT_USAGE, open_journal, say_error
from ._display import Section, clean, format_duration, render_sections
from ._images import CACHE_SLACK, row_identity, stored_fingerprint
from ._job import Job
from ._machine import SUMMARY_VERSION, write_summary_json

__all__ = ["dry_run"]


def _provenance_from_env() -> tuple[str, str]:
    """The platform and account a run's client would have (see FtoClient.provenance)."""
    settings = env_settings()
    account = str(settings.get("client_id") or "")
    if settings.get("api_key"):
        try:
            account = ApiKey(str(settings["api_key"])).account_id
        except ConfigurationError:
            account = ""
    return provenance(str(settings.get("base_url") or DEFAULT_BASE_URL), account)


async def dry_run(job: Job, args: argparse.Namespace) -> int:
    """Validate every row and count the calls a run would make; no client, no call."""
    try:
        qps = args.qps or env_settings().get("qps") or DEFAULT_QPS
    except ConfigurationError as exc:
        say_error(str(exc))
        return EXIT_USAGE
    journal = await open_journal(job.journal, readonly=True) if job.journal.exists() else None
    if job.journal.exists() and journal is None:
        return EXIT_USAGE
    # Read-only: a missing cache file is not created by a dry run.
    cache = (ReportCache(job.cache, max_age=job.max_age)
             if job.cache is not None and job.cache.is_file() else None)  # fmt: skip
    platform, account = _provenance_from_env()  # the cache answers only these
    # --rescreen reads no report from the cache, and screens again every result from
    # before it began (an unfinished one's start is in the journal), as the run does
    max_age = 0.0 if job.rescreen else job.max_age
    begun = journal.get_meta("rescreen_since") if journal is not None else None
    rescreen_since = float(begun) if begun else time.time()
    count: Counter[str] = Counter()
    seen: set[str] = set()  # fingerprints answered in this run (as the batch shares them)
    distinct: set[str] = set()  # every good row's fingerprint
    uploaded: set[str] = set()  # files uploaded in this run (by digest)
    try:
        for row in job.catalog.rows():
            count["rows"] += 1
            kept = journal.get(row.jkey) if journal is not None and row.image_gone else None
            if kept is not None and kept.state is ItemState.DONE:
                count["finished"] += 1  # the run keeps its result though the image has gone
                continue
            if not row.ok:
                count["invalid"] += 1
                if count["invalid"] <= 50:
                    sys.stderr.write(clean(f"line {row.line}: {row.key or '-'}: {row.error}")
                                     + "\n")
                continue
            jrow = journal.get(row.jkey) if journal is not None else None
            if jrow is not None and row.request is not None and jrow.state is not \
                    ItemState.PENDING and stored_fingerprint(row, jrow) not in (
                        None, request_fingerprint(row.request)):
                count["changed"] += 1  # the run screens it again
                jrow = None
            if job.rescreen and jrow is not None and jrow.state in (
                    ItemState.DONE, ItemState.FAILED) and (
                    jrow.completed_at or jrow.updated_at) < rescreen_since:  # fmt: skip
                jrow = None
            action = plan(jrow, unknown_policy=job.unknown_policy)  # as the run reads it
            try:
                fingerprint, digest, _data = await row_identity(row)
            except (OSError, InvalidRequestError) as exc:
                if action not in ("done", "poll", "failed"):
                    count["invalid"] += 1
                    sys.stderr.write(f"line {row.line}: {row.key}: cannot read the image "
                                     f"({exc})\n")  # fmt: skip
                    continue
                fingerprint, digest = f"row:{row.jkey}", None  # as the run does
            distinct.add(fingerprint)
            if action == "done" or (
                action == "failed" and jrow is not None and jrow.error_type != INVALID_TYPE
            ):
                count["finished"] += 1
                count["reported"] += action == "done"  # may still need its follow-ups
                if action == "done":
                    seen.add(fingerprint)  # the batch remembers its report for duplicates
                continue
            if action == "skip":
                count["skipped_unknown"] += 1  # left alone: neither submitted nor polled
                continue
            if fingerprint in seen:
                count["shared"] += 1  # shares the task (or report) of an equal row
                continue
            seen.add(fingerprint)
            count["polls"] += 1  # the scheduler's aim: one poll per task
            if action == "poll":
                continue
            if cache is not None and await cache.get(
                fingerprint, max_age=max_age - CACHE_SLACK, platform=platform,
                account=account,
            ):
                count["cached"] += 1
                count["polls"] -= 1
                continue
            count["submits"] += 1
            if digest is not None and not row.workflow and digest not in uploaded:
                uploaded.add(digest)
                count["uploads"] += 1
        per_task, source = polls_per_task(journal)  # the ledger, the learnt durations
    finally:
        if journal is not None:
            await journal.aclose()
        if cache is not None:
            await cache.aclose()
    count["polls"] = round(count["polls"] * per_task)  # tasks to poll -> polls
    calls = count["submits"] + count["polls"] + count["uploads"]
    # Follow-ups depend on the reports: none, or up to N per row, a submit and a poll each.
    # Cached rows need theirs too (perhaps from the cache); shared rows share their equal
    # row's follow-ups, as the run shares them.
    follow_up_max = (count["polls"] + count["cached"] + count["reported"]) \
        * job.follow_up.top * 2 \
        if job.follow_up is not None else 0
    task = PollConfig().initial_estimate
    seconds = calls / float(qps) + (DEFAULT_SUBMIT_LATENCY + task if calls else 0)
    sections = [Section("Dry run (no call made)", ["", "rows"], [
        ["rows", str(count["rows"])], ["invalid (skipped)", str(count["invalid"])],
        ["already finished (journal)", str(count["finished"])],
        *([["unknown, skipped (--unknown skip)", str(count["skipped_unknown"])]]
          if count["skipped_unknown"] else []),
        *([["changed since the last run (submitted again)", str(count["changed"])]]
          if count["changed"] else []),
        ["shared with an equal row", str(count["shared"])],
        ["from the cache", str(count["cached"])],
        ["to submit", str(count["submits"])],
    ])]  # fmt: skip
    footer = [
        ("calls needed", f"about {calls} (submits {count['submits']}, polls ~{count['polls']}, "
                         f"uploads {count['uploads']})"),
        ("polls per task", f"~{per_task:.2g} ({source})"),
        ("time at", f"{qps:g} QPS: about {format_duration(seconds)} (calls / QPS, plus "
                    f"~{DEFAULT_SUBMIT_LATENCY + task:.0f} s for the last submit and task)"),
        *([("follow-up calls", f"0 .. {follow_up_max} (up to {job.follow_up.top} per row "
                                f"at {job.follow_up.min_risk.value} risk or above, a submit "
                                "and a poll each, once per distinct request; depends on the "
                                "reports and the cache)")]
          if job.follow_up is not None else []),
        ("requests", f"{count['rows']} rows, {len(distinct)} distinct requests, "
                     f"{count['cached']} from cache, calls needed {calls}"),
        ("cache", _cache_line(job)),
        ("output", str(job.out)), ("journal", str(job.journal)),
    ]  # fmt: skip
    render_sections(sections, footer, sys.stdout)
    # Invalid rows are counted above, not a failure: a dry run fails only on a bad
    # command line, catalog or configuration (EXIT_USAGE), so an orchestrator's step
    # that checks a catalog does not fail on rows a real run would skip anyway; unless
    # it asks to with --fail-on invalid (cli._machine).
    code = EXIT_ROWS if args.fail_on == "invalid" and count["invalid"] else EXIT_OK
    if job.summary_json is not None:
        record = {"version": SUMMARY_VERSION, "exit_code": code, "dry_run": True,
                  "fail_on": args.fail_on or "never", "rows": count["rows"],
                  "invalid": count["invalid"], "distinct": len(distinct),
                  "from_cache": count["cached"], "to_submit": count["submits"],
                  "calls_needed": calls}  # fmt: skip
        try:
            write_summary_json(job.summary_json, record)
        except OSError as exc:
            say_error(f"cannot write --summary-json {job.summary_json}: {exc.strerror or exc}")
            return EXIT_USAGE
    return code


def _cache_line(job: Job) -> str:
    if job.cache is None:
        return "off (--no-cache)"
    return f"{job.cache} (reports younger than {format_duration(job.max_age)})"
