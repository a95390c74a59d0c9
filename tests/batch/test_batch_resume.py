"""Resuming from a journal, and the batch paths that timing alone used to reach.

Each test builds the journal state it needs by hand (or forces the fault it needs), so
the path is taken on every run: resume of unreadable ``done`` rows and of ``failed``
rows, ``wait_many`` after a fatal error, a submit whose answer may hide a task
(``mark_unknown``), and a refused connection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fto_async import (
    BatchAbortedError,
    ConnectError,
    FtoClient,
    QuotaExceededError,
    RecordedError,
    RetryConfig,
)
from fto_async.journal import ItemState, Journal
from tests._batch import emulator, image, make_client, running
from tests._shared import REPORT, SUBMIT, collect, credentials


async def _journal_with(path: Path, client: FtoClient, key: str, *states: str,
                        task_id: str = "t-old", report: Any = None) -> None:
    """A journal holding item ``key`` (the request ``image(key)``) walked through ``states``."""
    async with await Journal.open(path) as journal:
        await journal.add_pending(key, 0, client.encode_request(image(key)), "image_search")
        for state in states:
            if state == "submitting":
                await journal.mark_submitting(key)
            elif state == "submitted":
                await journal.mark_submitted(key, task_id)
            elif state == "done":
                await journal.mark_done(key, report)
            elif state == "failed":
                await journal.mark_failed(key, "task t-old failed", "TaskFailedError")


async def test_resume_screens_an_unreadable_done_row_again(tmp_path: Path) -> None:
    """A ``done`` row whose report cannot be read is not trusted: the unreadable record
    moves to the journal's history and the item is screened again, so it gets a readable
    outcome and the journal a readable report (this used to raise
    InvalidTransitionError: done -> submitting)."""
    path = tmp_path / "journal.sqlite"
    async with running() as (emu, client):
        task_id = await client.submit_image_search(image("a"))
        await _journal_with(path, client, "a", "submitting", "submitted", "done",
                            task_id=task_id,
                            report={"task_id": ["not", "a", "string"], "task_status": "x"})
        async with await Journal.open(path) as journal:
            outcomes, raised = await collect(
                client.screen_many([("a", image("a"))], journal=journal)
            )
            row = journal.get("a")
    assert raised is None, raised
    [outcome] = outcomes
    assert outcome.ok, outcome.error
    assert not outcome.resumed
    assert outcome.task_id != task_id  # screened again: the old record is history
    assert emu.stats.count(SUBMIT) == 2
    async with await Journal.open(path, readonly=True) as journal:
        assert [old.task_id for old in journal.history("a")] == [task_id]
    assert emu.stats.count(REPORT) >= 1
    assert row is not None
    assert row.state is ItemState.DONE
    assert row.report is not None
    assert row.report["task_id"] == outcome.task_id


async def test_resume_yields_a_failed_row_without_a_call(tmp_path: Path) -> None:
    """A ``failed`` row is yielded as a resumed outcome carrying the recorded error; no call."""
    path = tmp_path / "journal.sqlite"
    async with running() as (emu, client):
        await _journal_with(path, client, "a", "submitting", "submitted", "failed")
        async with await Journal.open(path) as journal:
            outcomes, raised = await collect(
                client.screen_many([("a", image("a"))], journal=journal)
            )
        business = emu.stats.count() - emu.stats.count("/oauth/token")
    assert raised is None
    [outcome] = outcomes
    assert outcome.resumed
    assert outcome.task_id == "t-old"
    assert isinstance(outcome.error, RecordedError)
    assert "task t-old failed" in str(outcome.error)
    assert business == 0


async def test_wait_many_after_a_fatal_error_stops_and_counts_the_rest() -> None:
    """When a poll meets a fatal error, wait_many ends with BatchAbortedError: every task
    read gets one outcome (the fatal error) or is counted as not attempted."""
    async with running(daily_limit=3) as (emu, client):
        ids = [await client.submit_image_search(image(i)) for i in range(3)]  # quota spent
        task_ids = [*ids, *(f"t-{i}" for i in range(20))]
        outcomes, raised = await collect(client.wait_many(task_ids))
    assert isinstance(raised, BatchAbortedError)
    assert isinstance(raised.cause, QuotaExceededError)
    assert raised.not_attempted is not None
    assert len(outcomes) + raised.not_attempted == len(task_ids)
    assert len({o.key for o in outcomes}) == len(outcomes)
    assert outcomes
    assert all(isinstance(o.error, QuotaExceededError) for o in outcomes)
    assert emu.stats.count(REPORT, 67200007) >= 1


async def test_a_submit_that_may_have_created_a_task_is_journaled_unknown(
    tmp_path: Path,
) -> None:
    """A submit answered busy on every attempt (the platform may hold its task) leaves the
    row ``unknown``, not ``pending``: the next run decides by its unknown policy."""
    path = tmp_path / "journal.sqlite"
    async with running(busy_rate=1.0) as (_emu, client), await Journal.open(path) as journal:
        outcomes, raised = await collect(
            client.screen_many([("a", image("a"))], journal=journal)
        )
        row = journal.get("a")
    assert raised is None
    [outcome] = outcomes
    assert outcome.task_id is None
    assert outcome.error is not None
    assert row is not None
    assert row.state is ItemState.UNKNOWN


async def test_connection_refused_is_a_connect_error(refused_port: int) -> None:
    """A port nobody listens on gives ConnectError (a TransportError), after the retries."""
    port = refused_port
    retry = RetryConfig.for_testing(max_attempts=2)
    async with FtoClient(**credentials("sk"), base_url=f"http://127.0.0.1:{port}",
                         retry=retry, timeout=5.0) as client:
        with pytest.raises(ConnectError) as caught:
            await client.submit_image_search(image(1))
        assert client.retries == 1  # retried once: a refused connection sent nothing
    assert f"cannot connect (Connect call failed ('127.0.0.1', {port}))" in str(caught.value)
    assert caught.value.retryable


async def test_a_submit_refused_before_sending_leaves_its_row_pending(tmp_path: Path) -> None:
    """A submit the rate gate refuses before anything is sent (here the call budget) is
    not a submit failure: its row stays ``pending`` for the next run, and the batch ends
    with BatchAbortedError naming the budget (it used to crash: pending -> submit_failed)."""
    path = tmp_path / "journal.sqlite"
    async with emulator() as emu, make_client(emu, max_calls=1) as client:
        await client.submit_image_search(image("spent"))  # the whole budget
        async with await Journal.open(path) as journal:
            outcomes, raised = await collect(
                client.screen_many([("a", image("a")), ("b", image("b"))], journal=journal)
            )
            rows = {row.key: row.state for row in journal.rows()}
        submits = emu.stats.count(SUBMIT)
    assert isinstance(raised, BatchAbortedError), raised
    assert submits == 1  # the one before the batch
    assert set(rows.values()) == {ItemState.PENDING}
    assert all(o.task_id is None for o in outcomes)
