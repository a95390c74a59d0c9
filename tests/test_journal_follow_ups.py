"""The journal's follow_ups table: add/mark, transitions, durability, recovery at open."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fto_async.journal import InvalidTransitionError, ItemState, Journal


async def test_follow_up_lifecycle_survives_reopen(tmp_path: Path) -> None:
    """A follow-up goes pending -> submitting -> submitted -> done and is read back."""
    path = tmp_path / "j.db"
    async with await Journal.open(path) as journal:
        assert journal.follow_up("k", "USD1S1") is None
        await journal.add_follow_up("k", "USD1S1")
        await journal.add_follow_up("k", "USD1S1")  # no-op
        await journal.add_follow_up("k", "EU0001S")
        await journal.mark_follow_up("k", "USD1S1", ItemState.SUBMITTING)
        await journal.mark_follow_up("k", "USD1S1", ItemState.SUBMITTED, task_id="t-1")
        await journal.mark_follow_up("k", "USD1S1", ItemState.DONE, report={"task_status": 2})
        rows = journal.follow_ups("k")
        assert [r.patent_pn for r in rows] == ["EU0001S", "USD1S1"]
    async with await Journal.open(path) as journal:
        row = journal.follow_up("k", "USD1S1")
        assert row is not None
        assert (row.state, row.task_id, row.report) == (ItemState.DONE, "t-1", {"task_status": 2})
        assert journal.follow_ups("other") == []


async def test_follow_up_left_submitting_is_unknown_at_open(tmp_path: Path) -> None:
    """A follow-up whose submit was in flight when the run died is unknown next time."""
    path = tmp_path / "j.db"
    async with await Journal.open(path) as journal:
        await journal.add_follow_up("k", "USD1S1")
        await journal.mark_follow_up("k", "USD1S1", ItemState.SUBMITTING)
    async with await Journal.open(path) as journal:
        row = journal.follow_up("k", "USD1S1")
        assert row is not None
        assert row.state is ItemState.UNKNOWN
        await journal.mark_follow_up("k", "USD1S1", ItemState.PENDING)  # resubmit policy


async def test_follow_up_bad_transitions(tmp_path: Path) -> None:
    """Marks the state does not allow raise; submitted needs a task id."""
    async with await Journal.open(tmp_path / "j.db") as journal:
        with pytest.raises(KeyError):
            await journal.mark_follow_up("k", "X", ItemState.SUBMITTING)
        await journal.add_follow_up("k", "X")
        with pytest.raises(InvalidTransitionError):
            await journal.mark_follow_up("k", "X", ItemState.DONE, report={})
        await journal.mark_follow_up("k", "X", ItemState.SUBMITTING)
        with pytest.raises(InvalidTransitionError):
            await journal.mark_follow_up("k", "X", ItemState.SUBMITTED)


async def test_follow_ups_and_items_share_one_transition_table(tmp_path: Path) -> None:
    """A follow-up moves exactly as an item does: failed -> done (its task polled again)
    and unknown -> unknown are allowed for both; pending -> done for neither."""
    async with await Journal.open(tmp_path / "j.db") as journal:
        await journal.add_pending("k", 0, {"url": "https://e.test/a.png"}, "image_search")
        await journal.add_follow_up("k", "X")
        item_writes: list[tuple[Any, ItemState]] = [
            (lambda: journal.mark_submitting("k"), ItemState.SUBMITTING),
            (lambda: journal.mark_unknown("k"), ItemState.UNKNOWN),
            (lambda: journal.mark_unknown("k"), ItemState.UNKNOWN),
            (lambda: journal.mark_submitted("k", "t-1"), ItemState.SUBMITTED),
            (lambda: journal.mark_failed("k", "timed out", "TaskTimeoutError"), ItemState.FAILED),
            (lambda: journal.mark_done("k", {"task_status": 2}), ItemState.DONE),
        ]
        for write_item, state in item_writes:
            await write_item()
            await journal.mark_follow_up("k", "X", state, task_id="t-1",
                                         report={"task_status": 2})  # fmt: skip
            row, follow_up = journal.get("k"), journal.follow_up("k", "X")
            assert row is not None
            assert follow_up is not None
            assert row.state is follow_up.state is state
        await journal.add_follow_up("k", "Y")
        with pytest.raises(InvalidTransitionError):
            await journal.mark_follow_up("k", "Y", ItemState.DONE, report={})
