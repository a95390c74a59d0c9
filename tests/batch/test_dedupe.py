"""Never paying twice within a batch: equal requests share one task (single flight)."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from fto_async import ImageSearchRequest, InvalidParameterError, RetryConfig, WorkflowRequest
from fto_async.batch import RECENT_REPORTS, Item
from fto_async.errors import RateLimitedError
from fto_async.fingerprint import image_digest, request_fingerprint
from fto_async.journal import ItemState, Journal
from tests._batch import emulator, image, make_client, refused_image, running
from tests._shared import PNG, SUBMIT, collect


class Delivered:
    """A batch's outcomes as they arrive, and a wait until some keys are among them: an
    input generator waits on it (an event), never on the real clock."""

    def __init__(self) -> None:
        self.outcomes: list[Any] = []
        self._arrived = asyncio.Event()

    async def collect(self, batch: Any) -> tuple[list[Any], BaseException | None]:
        try:
            async for outcome in batch:
                self.outcomes.append(outcome)
                self._arrived.set()
        except Exception as exc:
            return self.outcomes, exc
        return self.outcomes, None

    async def wait_for(self, keys: Any) -> None:
        wanted = set(keys)
        async with asyncio.timeout(30):
            while not wanted <= {o.key for o in self.outcomes}:
                self._arrived.clear()
                await self._arrived.wait()

WORKFLOW_SUBMIT = "/api/mcp/submit-workflow"


def catalog(distinct: int, copies: int) -> list[tuple[str, ImageSearchRequest]]:
    """``distinct`` images, each asked ``copies`` times under other keys (interleaved)."""
    return [(f"sku-{i}-{c}", image(i)) for c in range(copies) for i in range(distinct)]


def tasks_per_image(emu: Any) -> Counter[str]:
    return Counter(record.image for record in emu.stats.submits if not record.ambiguous)


async def test_duplicates_share_one_task() -> None:
    """30 rows over 10 images: 10 submits, each row its own outcome with the shared report."""
    async with running() as (emu, client):
        outcomes, raised = await collect(client.screen_many(catalog(10, 3)))
    assert raised is None
    assert len(outcomes) == 30
    assert all(o.ok for o in outcomes)
    assert emu.stats.count(SUBMIT, 0) == 10
    assert set(tasks_per_image(emu).values()) == {1}
    by_key = {o.key: o for o in outcomes}
    for i in range(10):
        first = by_key[f"sku-{i}-0"]
        assert first.shared_with is None
        for c in (1, 2):
            dup = by_key[f"sku-{i}-{c}"]
            assert dup.shared_with == first.key
            assert dup.task_id == first.task_id
            assert dup.report == first.report
    # one poll series per task: the duplicates cost no polls
    assert sum(emu.stats.polls_by_task.values()) == sum(o.polls for o in outcomes)


async def test_dedupe_off_submits_every_row() -> None:
    """``dedupe=False`` keeps the old behaviour: one task per row."""
    async with running() as (emu, client):
        outcomes, _ = await collect(client.screen_many(catalog(5, 2), dedupe=False))
    assert emu.stats.count(SUBMIT, 0) == 10
    assert all(o.shared_with is None for o in outcomes)


async def test_later_duplicate_reuses_the_finished_report() -> None:
    """A duplicate read after its group finished takes the report without a call."""

    delivered = Delivered()

    async def slow_items() -> Any:
        yield "a", image(1)
        await delivered.wait_for(["a"])  # the first task is done and delivered
        yield "b", image(1)

    async with running() as (emu, client):
        outcomes, _ = await delivered.collect(client.screen_many(slow_items()))
        calls = client.stats.calls
    by_key = {o.key: o for o in outcomes}
    assert by_key["b"].shared_with == "a"
    assert by_key["b"].report == by_key["a"].report
    assert emu.stats.count(SUBMIT, 0) == 1
    assert calls == 1 + by_key["a"].polls  # b cost nothing


async def test_item_carries_its_fingerprint() -> None:
    """Two upload URLs of one file share a task when the items carry the file's hash."""
    fp = request_fingerprint(image("upload-1"), image_sha256=image_digest(PNG))
    items = [Item("a", image("upload-1"), fingerprint=fp), Item("b", image("upload-2"),
                                                                fingerprint=fp)]
    async with running() as (emu, client):
        outcomes, _ = await collect(client.screen_many(items))
    assert emu.stats.count(SUBMIT, 0) == 1
    assert {o.key: o.shared_with for o in outcomes} == {"a": None, "b": "a"}


async def test_workflow_duplicates_by_image_hash() -> None:
    """Workflow requests with equal base64 images share one task."""
    items = [(k, WorkflowRequest.from_image_bytes(PNG, country=["US"])) for k in "abc"]
    async with running() as (emu, client):
        outcomes, _ = await collect(client.screen_many(items))
    assert len(outcomes) == 3
    assert all(o.ok for o in outcomes)
    assert emu.stats.count(WORKFLOW_SUBMIT, 0) == 1


async def test_refused_submit_gives_every_duplicate_the_error() -> None:
    """A non-retryable refusal of the first submit is each waiting duplicate's error."""
    items = [(k, refused_image(1)) for k in "abc"]
    async with running() as (emu, client):
        outcomes, _ = await collect(client.screen_many(items))
    assert emu.stats.calls[(SUBMIT, 0)] == 0
    assert sum(n for (path, _c), n in emu.stats.calls.items() if path == SUBMIT) == 1
    assert all(isinstance(o.error, InvalidParameterError) for o in outcomes)
    assert {o.key: o.shared_with for o in outcomes} == {"a": None, "b": "a", "c": "a"}


async def test_retryable_failure_retries_once_for_the_group() -> None:
    """A retryable submit failure while duplicates wait costs one more submit, not one each."""
    async with running() as (emu, client):
        real = client.submit
        attempts = 0

        async def flaky(request: Any, **kw: Any) -> str:
            nonlocal attempts
            attempts += 1
            if attempts == 1:
                await asyncio.sleep(0.05)  # the duplicates arrive meanwhile
                raise RateLimitedError(67200002, "rate limited (test)")
            return await real(request, **kw)

        client.submit = flaky  # type: ignore[method-assign]
        outcomes, _ = await collect(client.screen_many([(k, image(1)) for k in "abcd"]))
    assert attempts == 2
    assert len(outcomes) == 4
    assert all(o.ok for o in outcomes), outcomes
    assert emu.stats.count(SUBMIT, 0) == 1


async def test_retryable_failure_twice_fails_the_group() -> None:
    """If the group's one retry fails too, every item gets that error (no third submit)."""
    async with running() as (_emu, client):
        attempts = 0

        async def failing(request: Any, **kw: Any) -> str:
            nonlocal attempts
            attempts += 1
            await asyncio.sleep(0.02)
            raise RateLimitedError(67200002, "rate limited (test)")

        client.submit = failing  # type: ignore[method-assign]
        outcomes, _ = await collect(client.screen_many([(k, image(1)) for k in "abc"]))
    assert attempts == 2
    assert sorted(o.key for o in outcomes) == ["a", "b", "c"]
    assert all(isinstance(o.error, RateLimitedError) for o in outcomes)


async def test_busy_faults_one_task_per_distinct_request() -> None:
    """Under busy faults every distinct image gets exactly one normally answered task."""
    async with (
        emulator(busy_rate=0.3, seed=3) as emu,
        make_client(emu, retry=RetryConfig.for_testing(12)) as client,
    ):
        outcomes, raised = await collect(client.screen_many(catalog(40, 3)))
    assert raised is None
    assert len(outcomes) == 120
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok][:3]
    assert len(emu.stats.submits) == 40
    assert set(tasks_per_image(emu).values()) == {1}


async def test_ambiguous_busy_faults_no_task_per_duplicate(tmp_path: Path) -> None:
    """Under ambiguous-busy faults a distinct image has one normal task, and its extra
    tasks are only the emulator's ambiguous records (retries), never one per duplicate."""
    async with (
        emulator(ambiguous_busy_rate=0.2, seed=5) as emu,
        make_client(emu, retry=RetryConfig.for_testing(12)) as client,
        await Journal.open(tmp_path / "j.db") as journal,
    ):
        outcomes, raised = await collect(client.screen_many(catalog(40, 3), journal=journal))
        rows = {row.key: row for row in journal.rows()}
    assert raised is None
    assert len(outcomes) == 120
    normal = tasks_per_image(emu)
    assert len(normal) == 40
    assert set(normal.values()) == {1}
    ambiguous = sum(r.ambiguous for r in emu.stats.submits)
    assert len(emu.stats.submits) == 40 + ambiguous
    assert ambiguous <= client.stats.ambiguous_submits
    shared = [o for o in outcomes if o.shared_with is not None]
    assert len(shared) == 80
    for o in shared:
        assert rows[str(o.key)].attempts == 0  # never submitted by itself
        assert rows[str(o.key)].task_id == o.task_id


async def test_shared_rows_are_journaled_with_the_group_task(tmp_path: Path) -> None:
    """Each shared row is `done` with its group's task id and no submit of its own."""
    async with running() as (_emu, client), await Journal.open(tmp_path / "j.db") as journal:
        outcomes, _ = await collect(client.screen_many(catalog(4, 3), journal=journal))
        rows = {row.key: row for row in journal.rows()}
    assert len(rows) == 12
    assert all(r.state is ItemState.DONE for r in rows.values())
    for o in outcomes:
        row = rows[str(o.key)]
        assert row.task_id == o.task_id
        assert row.attempts == (0 if o.shared_with is not None else 1)


async def test_resume_polls_shared_rows_once_and_never_resubmits(tmp_path: Path) -> None:
    """Stopped after the submits, a resume polls each group's task once for all its rows."""
    path = tmp_path / "j.db"
    items = catalog(6, 3)
    async with running(task_duration=100.0) as (emu, client):  # 0.5 s tasks: still running
        stop = asyncio.Event()
        async with await Journal.open(path) as journal:
            batch = client.screen_many(items, journal=journal, stop=stop)

            async def stop_soon() -> None:  # once every row is submitted or shares a task
                async with asyncio.timeout(30):
                    while journal.counts().get(ItemState.SUBMITTED, 0) < 18:
                        await asyncio.sleep(0.005)  # a condition, not a guess of time
                stop.set()

            stopper = asyncio.create_task(stop_soon())
            first, _ = await collect(batch)
            await stopper
            states = Counter(row.state for row in journal.rows())
        assert first == []
        assert states == {ItemState.SUBMITTED: 18}
        submits_before = len(emu.stats.submits)
        polls_before = sum(emu.stats.polls_by_task.values())
        async with make_client(emu) as again, await Journal.open(path) as journal:
            outcomes, raised = await collect(again.screen_many(items, journal=journal))
    assert raised is None
    assert len(outcomes) == 18
    assert all(o.ok for o in outcomes)
    assert len(emu.stats.submits) == submits_before  # nothing resubmitted
    # one poll series per group: the shared rows polled nothing of their own
    assert all(o.polls == 0 for o in outcomes if o.shared_with is not None)
    polled = sum(emu.stats.polls_by_task.values()) - polls_before
    assert polled == sum(o.polls for o in outcomes if o.shared_with is None)
    assert len([o for o in outcomes if o.shared_with is None]) == 6


async def test_recent_report_window_is_bounded() -> None:
    """The finished-report window never holds more than RECENT_REPORTS reports."""
    from fto_async.batch import _sharing as batch_module

    assert RECENT_REPORTS == 64
    old = batch_module.RECENT_REPORTS
    batch_module.RECENT_REPORTS = 3
    try:

        delivered = Delivered()

        async def items() -> Any:
            for i in range(8):
                yield f"a{i}", image(i)
            await delivered.wait_for(f"a{i}" for i in range(8))
            for i in range(8):
                yield f"b{i}", image(i)  # 3 from the window, 5 poll their finished task

        async with running() as (emu, client):
            outcomes, _ = await delivered.collect(client.screen_many(items()))
    finally:
        batch_module.RECENT_REPORTS = old
    assert len(outcomes) == 16
    assert all(o.ok for o in outcomes)
    assert emu.stats.count(SUBMIT, 0) == 8  # never resubmitted
    later = [o for o in outcomes if str(o.key).startswith("b")]
    assert all(o.shared_with == "a" + str(o.key)[1:] for o in later)
    assert sum(o.polls for o in later) == 5


async def test_past_the_report_window_the_cache_answers(tmp_path: Path) -> None:
    """With a cache, a duplicate whose report left the window is read from the cache: no call."""
    from fto_async import ReportCache
    from fto_async.batch import _sharing as batch_module

    old = batch_module.RECENT_REPORTS
    batch_module.RECENT_REPORTS = 2
    try:

        delivered = Delivered()

        async def items() -> Any:
            for i in range(6):
                yield f"a{i}", image(i)
            await delivered.wait_for(f"a{i}" for i in range(6))
            for i in range(6):
                yield f"b{i}", image(i)

        async with running() as (emu, client), ReportCache(tmp_path / "c.db") as cache:
            outcomes, raised = await delivered.collect(client.screen_many(items(), cache=cache))
            polls = sum(emu.stats.polls_by_task.values())
    finally:
        batch_module.RECENT_REPORTS = old
    assert raised is None
    assert len(outcomes) == 12
    assert all(o.ok for o in outcomes)
    assert emu.stats.count(SUBMIT, 0) == 6
    later = [o for o in outcomes if str(o.key).startswith("b")]
    assert all(o.shared_with == "a" + str(o.key)[1:] for o in later)
    assert polls == sum(o.polls for o in outcomes if str(o.key).startswith("a"))


async def test_one_task_id_for_two_questions_answers_neither_with_the_other(
    tmp_path: Path,
) -> None:
    """A gateway that replays the first submit's answer gives two different questions one
    task id: its report answers one of them only. The other item fails (typed), and no
    report is filed under a question it does not answer."""
    from fto_async import FtoError, ReportCache

    async with (
        emulator() as emu,
        ReportCache(tmp_path / "c.db") as cache,
        make_client(emu, cache=cache) as client,
    ):
        real = client.submit
        own: dict[str, str] = {}  # fingerprint -> the task id its own submit created
        replay: list[str] = []

        async def replaying(request: Any, **options: Any) -> str:
            task_id = await real(request, **options)
            own[request_fingerprint(request)] = task_id
            replay.append(task_id)
            return replay[0]

        client.submit = replaying  # type: ignore[method-assign]
        outcomes, _ = await collect(client.screen_many([("a", image(1)), ("b", image(2))]))
        provenance = client.provenance
        for outcome in outcomes:
            fingerprint = request_fingerprint(outcome.request)
            if outcome.ok:
                assert outcome.task_id == own[fingerprint], outcome.key
            else:
                assert isinstance(outcome.error, FtoError)
            hit = await cache.get(fingerprint, platform=provenance[0], account=provenance[1])
            assert hit is None or hit.task_id == own[fingerprint], outcome.key
        assert sum(o.ok for o in outcomes) == 1
