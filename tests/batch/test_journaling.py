"""The one journal policy of a batch (fto_async.batch._journaling), for items and follow-ups."""

from __future__ import annotations

import pytest

from fto_async import (
    BusyError,
    InvalidParameterError,
    QuotaExceededError,
    RateLimitedError,
    ResponseDecodeError,
    ResponseTooLargeError,
    TaskFailedError,
    TaskTimeoutError,
)
from fto_async.batch._journaling import plan, result_state, submit_failed_state
from fto_async.journal import FollowUpRow, ItemState, JournalRow

S = ItemState


def item(
    state: ItemState, task_id: str | None = "t-1", fingerprint: str | None = "fp"
) -> JournalRow:
    return JournalRow("k", 0, state, task_id, "image_search", 1, None, None, 0.0, 0.0, None,
                      None, "{}", None, fingerprint)  # fmt: skip


def follow_up(state: ItemState, task_id: str | None = "t-1") -> FollowUpRow:
    return FollowUpRow("k", "USD1S1", state, task_id, None, None, 0.0, 0.0, None, None)


@pytest.mark.parametrize(("state", "task_id", "policy", "action"), [
    (S.PENDING, None, "resubmit", "submit"),
    (S.SUBMITTING, None, "resubmit", "resubmit"),
    (S.SUBMITTING, None, "skip", "skip"),
    (S.UNKNOWN, None, "resubmit", "resubmit"),
    (S.UNKNOWN, None, "skip", "skip"),
    (S.SUBMITTED, "t-1", "resubmit", "poll"),
    (S.SUBMITTED, None, "resubmit", "submit"),
    (S.DONE, "t-1", "resubmit", "done"),
    (S.FAILED, "t-1", "resubmit", "failed"),
])
def test_plan_reads_items_and_follow_ups_alike(
    state: ItemState, task_id: str | None, policy: str, action: str
) -> None:
    """Every row state gives one action, the same for an item and a follow-up."""
    assert plan(item(state, task_id), unknown_policy=policy) == action
    assert plan(follow_up(state, task_id), unknown_policy=policy) == action


def test_plan_new_and_changed_rows() -> None:
    """No row: new. A changed fingerprint renews an item (not a live submit); unknown
    fingerprints never count as a change."""
    assert plan(None) == "new"
    assert plan(item(S.DONE), fingerprint="other") == "renew"
    assert plan(item(S.SUBMITTING), fingerprint="other") == "resubmit"
    assert plan(item(S.DONE), fingerprint="fp") == "done"
    assert plan(item(S.DONE, fingerprint=None), fingerprint=None) == "done"


@pytest.mark.parametrize(("error", "state"), [
    (None, S.DONE),
    (TaskFailedError("t-1"), S.FAILED),
    (InvalidParameterError(67200001, "bad"), S.FAILED),
    (TaskTimeoutError("t-1", 60.0), None),
    (ResponseDecodeError("shape"), None),
    (ResponseTooLargeError("big"), None),
    (RateLimitedError(67200002, "slow down"), None),
    (QuotaExceededError(67200005, "quota"), None),
])
def test_result_state(error: Exception | None, state: ItemState | None) -> None:
    """A poll's end: done, failed for good, or left `submitted` for the next run."""
    report = object() if error is None else None
    assert result_state(report, error) is state  # type: ignore[arg-type]


@pytest.mark.parametrize(("error", "sent", "state"), [
    (BusyError(67200100, "busy"), True, S.UNKNOWN),
    (BusyError(67200100, "busy"), False, S.PENDING),
    (InvalidParameterError(67200001, "bad"), True, S.FAILED),
    (ResponseDecodeError("shape"), True, S.PENDING),
    (QuotaExceededError(67200005, "quota"), True, S.PENDING),
])
def test_submit_failed_state(error: Exception, sent: bool, state: ItemState) -> None:
    """A failed submit: unknown when a task may exist, pending when not the row's fault."""
    assert submit_failed_state(error, sent) is state  # type: ignore[arg-type]
