"""The ONE journal policy of a batch, for items and follow-ups alike.

* :func:`plan`: what a journal row says to do with its item or follow-up (yield the
  recorded answer, poll its task, submit it, or ask the ``unknown_policy``). The dry run
  of the command line reads the same plan, so it never tells another story than a run.
* :func:`result_state`: what a poll's end records (``done``, ``failed``, or nothing:
  the task stays ``submitted`` and the next run polls it).
* :func:`submit_failed_state`: what a failed submit records (``unknown`` when a task
  may exist, ``pending`` when the failure was not the row's own, else ``failed``).
* :func:`transient`: an error that is not the row's fault (a fatal stop, a retryable
  error, a transport fault, an answer that could not be read): kept for the next run.

:class:`_Journaling` applies this policy to a batch's items; the follow-up stage
(:mod:`fto_async.batch._followup`) applies it to its follow-up rows.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal, TypeAlias

import attrs

from .._kinds import request_kind
from ..errors import (
    ConfigurationError,
    FtoError,
    RecordedError,
    ResponseDecodeError,
    TaskFailedError,
    TaskTimeoutError,
    TransportError,
    UnknownSubmissionError,
    may_have_created_task,
)
from ..fingerprint import wire_fingerprint
from ..journal import FollowUpRow, ItemState, Journal, JournalRow
from ..models import ImageSearchReport, Request, TaskKind
from ..polling import PendingTask
from ._values import BatchClient, Outcome

__all__ = ["PROVENANCE_KEY", "Action", "bind_provenance", "plan", "provenance_mismatch",
           "recorded_fingerprint", "result_state", "submit_failed_state",
           "transient"]  # fmt: skip

#: What :func:`plan` says to do with a row: ``new`` (no row: add it, then submit),
#: ``renew`` (the request changed: replace the row, then submit), ``done``/``failed``
#: (yield the recorded answer, no call), ``poll`` (its task), ``skip`` (a submit of a
#: dead run may have created a task: say so, per ``unknown_policy="skip"``), ``resubmit``
#: (the same, resubmitted by policy) or ``submit`` (a pending row).
Action: TypeAlias = Literal["new", "renew", "done", "failed", "poll", "skip", "resubmit",
                            "submit"]  # fmt: skip


#: The journal's meta key for the platform and account whose answers it holds.
PROVENANCE_KEY = "provenance"


def provenance_mismatch(journal: Journal, platform: str, account: str) -> str | None:
    """The platform a journal's answers came from, when it is not this one's (or the
    account differs); ``None`` when they agree or the journal has not said yet."""
    recorded = journal.get_meta(PROVENANCE_KEY)
    if recorded is None or recorded == f"{platform} {account}":
        return None
    return recorded.split(" ", 1)[0]


async def bind_provenance(journal: Journal, platform: str, account: str) -> None:
    """Record the platform and account a journal's answers come from; refuse another.

    Raises:
        ConfigurationError: the journal holds answers of another platform or account.
    """
    if not (platform or account):
        return  # a client that does not say (a test double)
    other = provenance_mismatch(journal, platform, account)
    if other is not None:
        raise ConfigurationError(
            f"journal {str(journal.path)!r} holds answers from {other} (or another account)"
            f"; this client asks {platform}: use another journal"
        )
    if journal.get_meta(PROVENANCE_KEY) is None:
        await journal.set_meta(PROVENANCE_KEY, f"{platform} {account}")


def recorded_fingerprint(row: JournalRow) -> str | None:
    """The fingerprint the journal holds for an item (schema 1: from its wire body)."""
    was = row.fingerprint
    if was is None and row.kind is not None:  # schema 1: from the stored wire body
        was = wire_fingerprint("workflow" if row.kind == "workflow" else "image_search",
                               row.request)
    return was


def plan(
    row: JournalRow | FollowUpRow | None,
    *,
    fingerprint: str | None = None,
    unknown_policy: str = "resubmit",
) -> Action:
    """What the journal's ``row`` says to do with its item or follow-up.

    ``fingerprint`` is the item's now (``None``: unknown, so the record is kept as it
    is); a follow-up row has none (it belongs to its item's screening).
    """
    if row is None:
        return "new"
    state = str(row.state)
    if (isinstance(row, JournalRow) and fingerprint is not None
            and fingerprint != recorded_fingerprint(row) and state != "submitting"):
        # The request changed: its old result must never answer for the new one.
        # (A row `submitting` here is a live submit of this process: a repeated key.)
        return "renew"
    if state == "done":
        return "done"
    if state == "failed":
        return "failed"
    if state == "submitted" and row.task_id:
        return "poll"
    if state in ("submitting", "unknown"):
        return "skip" if unknown_policy == "skip" else "resubmit"
    return "submit"


def transient(error: FtoError) -> bool:
    """Not the item's fault: the next run tries it again (a fatal stop, a retryable error,
    an answer that could not be read: too large, not JSON, not the documented shape)."""
    return (
        error.fatal or error.retryable or isinstance(error, TransportError | ResponseDecodeError)
    )


def result_state(report: ImageSearchReport | None, error: FtoError | None) -> ItemState | None:
    """What a poll's end records: ``DONE``, ``FAILED``, or ``None`` (timeouts, fatal and
    transient errors leave the task ``submitted``: the next run polls it)."""
    if error is None and report is not None:
        return ItemState.DONE
    if isinstance(error, TaskFailedError) or (error is not None and not (
        transient(error) or isinstance(error, TaskTimeoutError)
    )):
        return ItemState.FAILED
    return None


def submit_failed_state(exc: FtoError, sent: bool = True) -> ItemState:
    """What a failed submit records: ``UNKNOWN`` (the platform may hold a task for it),
    ``PENDING`` (never sent, or not the row's fault: try again next run) or ``FAILED``."""
    if sent and may_have_created_task(exc):
        return ItemState.UNKNOWN
    return ItemState.PENDING if transient(exc) else ItemState.FAILED


@attrs.define
class _Counters:
    """Private: the batch's progress counters (one job: counting)."""

    read: int = 0
    submitting: int = 0
    done: int = 0
    failed: int = 0
    not_attempted: int = 0
    resumed: int = 0
    resubmitted_unknown: int = 0
    shared: int = 0
    from_cache: int = 0

    deferred: int = 0

    def count(self, outcome: Outcome) -> None:
        if outcome.error is None:
            self.done += 1
        else:
            self.failed += 1
            if transient(outcome.error):
                self.deferred += 1



class _Journaling:
    """Private: the journal policy of a batch (one job: what the journal says and records).

    It decides what an item needs (yield from the record, poll its task, or submit it)
    and records each step; the batch makes the calls.
    """

    def __init__(
        self, journal: Journal, client: BatchClient, counters: _Counters, unknown_policy: str
    ) -> None:
        self.journal = journal
        self.client = client
        self.counters = counters
        self.unknown_policy = unknown_policy

    async def resume(
        self, key: Any, request: Request, position: int, fingerprint: str | None
    ) -> Outcome | PendingTask | None:
        """What the journal holds for one item: an outcome to yield without a call, a task
        to poll, or ``None`` when the item must be submitted now.

        ``fingerprint`` is the item's (``None``: unknown, so the record is kept as it is).
        """
        journal, counters = self.journal, self.counters
        row = journal.get(str(key))
        kind = request_kind(request)
        body = self.client.encode_request(request)
        action = plan(row, fingerprint=fingerprint, unknown_policy=self.unknown_policy)
        if action == "new":
            await journal.add_pending(str(key), position, body, kind, fingerprint=fingerprint)
            return None
        assert row is not None
        if action == "renew":
            await journal.replace(str(key), position, body, kind, fingerprint=fingerprint)
            return None
        if action == "done":
            try:
                report = self.client.decode_report(row.report, kind)
            except FtoError:  # an unreadable record: screen the item again
                await journal.replace(str(key), position, body, kind, fingerprint=fingerprint)
                return None
            counters.resumed += 1
            return Outcome(key, request, row.task_id, report, None,
                           submitted_at=row.submitted_at, resumed=True)
        if action == "failed":
            counters.resumed += 1
            err = RecordedError(row.error or "failed", error_type=row.error_type)
            return Outcome(key, request, row.task_id, None, err,
                           submitted_at=row.submitted_at, resumed=True)
        if action == "poll":
            return self._pending(key, request, kind, row)
        if action == "skip":
            unknown = UnknownSubmissionError(
                f"item {key!r}: an earlier run died while submitting it; a task may "
                "exist on the platform (skipped by policy)"
            )
            return Outcome(key, request, None, None, unknown)
        if action == "resubmit":
            counters.resubmitted_unknown += 1
            await journal.reset_to_pending(str(key))
        return None

    async def shared(self, key: Any, task_id: str) -> None:
        await self.journal.mark_shared(str(key), task_id)

    async def shared_failed(self, key: Any, exc: FtoError) -> None:
        """A duplicate whose group's submit failed: recorded like its first item."""
        if not (exc.fatal or exc.retryable or may_have_created_task(exc)):
            await self.journal.mark_failed(str(key), str(exc), type(exc).__name__)
        # else it stays `pending`: the next run submits its group again

    @staticmethod
    def _pending(key: Any, request: Request, kind: TaskKind, row: Any) -> PendingTask:
        """The task of a journal row, to poll (its age from the recorded submit time)."""
        loop = asyncio.get_running_loop()
        age = time.time() - row.submitted_at if row.submitted_at else None
        return PendingTask(
            key, row.task_id, kind, request,
            submitted_at=None if age is None else loop.time() - max(0.0, age),
            submitted_wall=row.submitted_at,
        )

    async def sending(self, key: Any) -> None:
        await self.journal.mark_submitting(str(key))

    async def submitted(self, key: Any, task_id: str) -> None:
        await self.journal.mark_submitted(str(key), task_id)

    async def submit_failed(self, key: Any, exc: FtoError, sent: bool = True) -> None:
        state = submit_failed_state(exc, sent)
        if state is ItemState.UNKNOWN:
            await self.journal.mark_unknown(str(key))  # the platform may hold a task for it
        else:
            # Never sent (a token failure before the gate), refused, or not the item's
            # fault (``PENDING``: try again next run).
            await self.journal.mark_submit_failed(
                str(key), str(exc), type(exc).__name__, state is ItemState.PENDING
            )

    async def result(
        self, key: Any, report: ImageSearchReport | None, error: FtoError | None
    ) -> None:
        state = result_state(report, error)
        if state is ItemState.DONE:
            assert report is not None
            await self.journal.mark_done(str(key), dict(report.raw))
        elif state is ItemState.FAILED:
            await self.journal.mark_failed(str(key), str(error), type(error).__name__)
        # else it stays `submitted`: the next run polls it
