"""The follow-up stage (fto_async.followup): 1-vs-1 tasks on each item's riskiest matches."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import pytest

from fto_async import (
    BatchAbortedError,
    FollowUp,
    FollowUpResult,
    FtoClient,
    ImageSearchRequest,
    InvalidRequestError,
    OneVsOneReport,
    PollConfig,
    QuotaExceededError,
    ResponseDecodeError,
    ResponseTooLargeError,
    RetryConfig,
    RiskLevel,
    TaskExpiredError,
    WorkflowRequest,
)
from fto_async.batch import Outcome, Progress, screen_with_follow_ups
from fto_async.batch import _followup as followup
from fto_async.emulator import Emulator, EmulatorConfig
from fto_async.emulator._state import STATE_KEY
from fto_async.journal import ItemState, Journal
from tests._shared import credentials, png_of_size

SCALE = 0.002
CREATE = "/ai/infringement-detection-1v1-creation"


def emulator(**changes: Any) -> Emulator:
    """A fast emulator without a QPS limit."""
    return Emulator(EmulatorConfig(**{"time_scale": SCALE, "qps": None, **changes}))


def make_client(emu: Emulator, **options: Any) -> FtoClient:
    """A client of the demo account, polling at SCALE, with no poll deadline and enough
    retries that a 30 % busy rate never exhausts them (0.3 ** 12 per call)."""
    poll = attrs.evolve(PollConfig(initial_estimate=30.0).scaled(SCALE), timeout=None)
    settings: dict[str, Any] = {
        "qps": 1000.0, "timeout": 10.0, "retry": RetryConfig.for_testing(max_attempts=12),
        "poll": poll, **options,
    }
    return FtoClient(**credentials("oauth"), base_url=emu.base_url, **settings)


def items(n: int = 16) -> list[tuple[str, ImageSearchRequest]]:
    """``n`` keyed requests with distinct images."""
    return [
        (f"sku-{i}", ImageSearchRequest(f"https://img.example/p{i}.png", ["US", "EU"], "en"))
        for i in range(n)
    ]


def expected(outcome: Outcome, top: int, level: RiskLevel = RiskLevel.HIGH) -> list[str]:
    """The patents the stage should follow up, computed here from the report."""
    if outcome.report is None or outcome.report.report is None:
        return []
    risky = [c for c in outcome.report.report.comparisons if c.risk_level >= level]
    risky.sort(key=lambda c: -c.score)
    return [c.patent_pn for c in risky[:top]]


def one_vs_one_tasks(emu: Emulator) -> Counter[tuple[str, str]]:
    """(image, patent) of every 1-vs-1 task the emulator created."""
    tasks = _state(emu).tasks
    return Counter(
        (rec.image, tasks[rec.task_id].inputs.patent_number or "")
        for rec in emu.stats.submits
        if rec.kind == "one-vs-one"
    )


def _state(emu: Emulator) -> Any:
    return emu.app[STATE_KEY]


async def run(client: Any, work: Any, **options: Any) -> tuple[list[Outcome], Exception | None]:
    """Every outcome of a follow-up batch, and the error that ended it (if any)."""
    got: list[Outcome] = []
    try:
        async for outcome in screen_with_follow_ups(client, work, **options):
            got.append(outcome)
    except BatchAbortedError as exc:
        return got, exc
    return got, None


@pytest.mark.parametrize("busy_rate", [0.0, 0.3])
async def test_follow_ups_take_the_top_high_risk_patents(busy_rate: float) -> None:
    """Each item's top-N High comparisons by score get one 1-vs-1 task each, busy or not."""
    async with emulator(busy_rate=busy_rate, seed=3) as emu, make_client(emu) as client:
        outcomes = [o async for o in client.screen_many(items(), follow_up=FollowUp(top=2))]
        assert len(outcomes) == 16
        total = 0
        for outcome in outcomes:
            assert outcome.ok
            want = expected(outcome, 2)
            assert [f.patent_pn for f in outcome.follow_ups] == want
            for fu in outcome.follow_ups:
                assert isinstance(fu, FollowUpResult)
                assert fu.ok, fu.error
                assert isinstance(fu.report, OneVsOneReport)
                assert fu.report.comparisons[0].patent_pn == fu.patent_pn
                assert fu.report.user_image == outcome.request.url
            total += len(want)
        assert total > 0  # the seeded catalog has high-risk items
        created = one_vs_one_tasks(emu)
        assert sum(created.values()) == total  # one task per follow-up, none twice
        assert max(created.values()) == 1


async def test_no_follow_up_below_min_risk_and_progress_counts() -> None:
    """Items without comparisons at min_risk get none; progress counts the follow-ups."""
    seen: list[Progress] = []
    async with emulator(seed=3) as emu, make_client(emu) as client:
        outcomes = [o async for o in client.screen_many(
            items(8), follow_up=FollowUp(min_risk="medium", top=1), on_progress=seen.append,
            progress_interval=0.01,
        )]  # fmt: skip
        total = sum(len(o.follow_ups) for o in outcomes)
        assert len(outcomes) == 8
        assert all(len(o.follow_ups) == len(expected(o, 1, RiskLevel.MEDIUM)) for o in outcomes)
        assert seen[-1].follow_ups_done == total
        assert seen[-1].follow_ups_failed == 0
        assert seen[-1].follow_ups_running == 0
        assert sum(one_vs_one_tasks(emu).values()) == total


async def test_workflow_base64_item_uploads_its_image_once() -> None:
    """A workflow item with base64 only gets one P010 upload for all its follow-ups."""
    async with emulator(seed=1) as emu, make_client(emu) as client:
        work = [(f"wf-{i}", WorkflowRequest.from_image_bytes(png_of_size(100 + i), country=["US"]))
                for i in range(12)]  # fmt: skip
        outcomes = [o async for o in client.screen_many(work, follow_up=FollowUp(top=3))]
        with_fus = [o for o in outcomes if o.follow_ups]
        assert with_fus
        uploads = emu.stats.count("/image-search/image-upload", 0)
        assert uploads == len(with_fus)
        for outcome in with_fus:
            images = {fu.report.user_image for fu in outcome.follow_ups if fu.report}
            assert len(images) == 1
            assert next(iter(images)).startswith(emu.base_url)


class _StopAfter:
    """A client that sets ``stop`` after its ``n``-th 1-vs-1 submit (a Ctrl-C)."""

    def __init__(self, client: FtoClient, stop: asyncio.Event, n: int) -> None:
        self._client, self._stop, self._n = client, stop, n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def submit_1v1(self, request: Any) -> str:
        task_id = await self._client.submit_1v1(request)
        self._n -= 1
        if self._n <= 0:
            self._stop.set()
        return task_id


async def test_stop_then_rerun_never_creates_a_follow_up_twice(tmp_path: Path) -> None:
    """A graceful stop mid-follow-ups, then a rerun on the journal: each follow-up is
    created exactly once and every item ends with all its follow-ups."""
    path = tmp_path / "j.db"
    async with emulator(seed=3, task_duration=60) as emu, make_client(emu) as client:
        stop = asyncio.Event()
        async with await Journal.open(path) as journal:
            first, err = await run(_StopAfter(client, stop, 2), items(), journal=journal,
                                   stop=stop, follow_up=FollowUp(top=3))  # fmt: skip
            assert err is None
            assert all(o.follow_ups == () for o in first)  # items left mid-follow-up wait
            rows = [fu for key, _ in items() for fu in journal.follow_ups(key)]
            assert any(r.state is ItemState.SUBMITTED for r in rows)
        created_before = sum(one_vs_one_tasks(emu).values())
        assert created_before >= 2
        async with await Journal.open(path) as journal:
            second, err = await run(client, items(), journal=journal, follow_up=FollowUp(top=3))
            assert err is None
        keys = {o.key for o in second}
        assert keys == {k for k, _ in items()}
        created = one_vs_one_tasks(emu)
        total = sum(len(o.follow_ups) for o in second)
        assert all(fu.ok for o in second for fu in o.follow_ups)
        assert sum(created.values()) == total
        assert max(created.values()) == 1
        # A third run pays for nothing: every follow-up comes from the journal.
        calls = client.stats.calls
        async with await Journal.open(path) as journal:
            third, _ = await run(client, items(), journal=journal, follow_up=FollowUp(top=3))
        assert client.stats.calls == calls
        assert all(fu.resumed for o in third for fu in o.follow_ups)
        assert sum(len(o.follow_ups) for o in third) == total


class _QuotaOnFirst:
    """A client whose account hits its daily limit at its first 1-vs-1 submit."""

    def __init__(self, client: FtoClient, emu: Emulator) -> None:
        self._client, self._emu = client, emu

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def submit_1v1(self, request: Any) -> str:
        self._emu.reconfigure(daily_limit=0)
        return await self._client.submit_1v1(request)


async def test_fatal_error_during_follow_ups_aborts_after_every_outcome(
    tmp_path: Path,
) -> None:
    """Quota 67200007 during follow-ups: BatchAbortedError after the outcomes, each
    follow-up carrying the error, the screening results intact."""
    async with emulator(seed=3) as emu, make_client(emu) as client:
        async with await Journal.open(tmp_path / "j.db") as journal:
            got, err = await run(_QuotaOnFirst(client, emu), items(), journal=journal,
                                 follow_up=FollowUp(top=3))  # fmt: skip
        assert isinstance(err, BatchAbortedError)
        assert isinstance(err.cause, QuotaExceededError)
        assert err.cause.code == 67200007
        assert len(got) + (err.not_attempted or 0) == 16
        fus = [fu for o in got for fu in o.follow_ups]
        assert fus
        assert all(isinstance(fu.error, QuotaExceededError) for fu in fus)
        assert all(o.ok for o in got if o.follow_ups)  # the item's own result stands
        assert emu.stats.count(CREATE, 0) == 0


def test_follow_up_validation() -> None:
    """FollowUp refuses a bad level, top or language before any call."""
    with pytest.raises(InvalidRequestError, match="min_risk"):
        FollowUp(min_risk="severe")
    with pytest.raises(InvalidRequestError, match="top"):
        FollowUp(top=0)
    with pytest.raises(InvalidRequestError, match="report_lang"):
        FollowUp(report_lang="de")
    assert FollowUp(min_risk="medium").min_risk is RiskLevel.MEDIUM


async def test_journaled_follow_up_older_than_8h_is_expired_without_a_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rerun finding a follow-up task submitted more than 8 h ago records
    TaskExpiredError without polling it and without paying for a new task."""
    path = tmp_path / "j.db"
    async with emulator(seed=3, task_duration=60) as emu, make_client(emu) as client:
        stop = asyncio.Event()
        async with await Journal.open(path) as journal:
            await run(_StopAfter(client, stop, 1), items(), journal=journal, stop=stop,
                      follow_up=FollowUp(top=3))  # fmt: skip
        created = sum(one_vs_one_tasks(emu).values())
        assert created >= 1
        polls_before = dict(emu.stats.polls_by_task)
        monkeypatch.setattr(followup, "TASK_VALIDITY", 0.0)  # every journaled task is old
        async with await Journal.open(path) as journal:
            got, err = await run(client, items(), journal=journal, follow_up=FollowUp(top=3))
            assert err is None
            expired = [fu for o in got for fu in o.follow_ups
                       if isinstance(fu.error, TaskExpiredError)]  # fmt: skip
            assert len(expired) == created
            for fu in expired:
                row = journal.follow_ups(next(o.key for o in got if fu in o.follow_ups))
                assert any(r.state is ItemState.FAILED and r.error_type == "TaskExpiredError"
                           for r in row)  # fmt: skip
        assert max(one_vs_one_tasks(emu).values()) == 1  # the expired ones not paid again
        for fu in expired:  # and not polled either
            assert emu.stats.polls_by_task[fu.task_id] == polls_before.get(fu.task_id, 0)


class _Unreadable1v1:
    """A client whose 1-vs-1 polls get an answer it cannot read (``error``)."""

    def __init__(self, client: FtoClient, error: Exception) -> None:
        self._client, self._error = client, error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def get_1v1_report(self, task_id: str) -> Any:
        raise self._error


@pytest.mark.parametrize("error", [
    ResponseDecodeError("not the documented shape"),
    ResponseTooLargeError("over max_response_bytes"),
], ids=["decode", "too-large"])
async def test_unreadable_1v1_answer_is_kept_for_the_next_run(
    tmp_path: Path, error: Exception
) -> None:
    """After a ResponseDecodeError or ResponseTooLargeError a follow-up is kept for the
    next run, as an item is (one record rule): the rerun polls its task, no new submit."""
    path = tmp_path / "j.db"
    work = items(4)
    async with emulator(seed=3) as emu, make_client(emu) as client:
        async with await Journal.open(path) as journal:
            first, err = await run(_Unreadable1v1(client, error), work, journal=journal,
                                   follow_up=FollowUp(top=1))  # fmt: skip
            assert err is None
            failed = [fu for o in first for fu in o.follow_ups]
            assert failed
            assert all(isinstance(fu.error, type(error)) for fu in failed)
            rows = [fu for key, _ in work for fu in journal.follow_ups(key)]
            assert rows
            assert all(r.state is ItemState.SUBMITTED for r in rows)
        created = sum(one_vs_one_tasks(emu).values())
        async with await Journal.open(path) as journal:
            second, err = await run(client, work, journal=journal, follow_up=FollowUp(top=1))
            assert err is None
        assert sum(one_vs_one_tasks(emu).values()) == created  # polled, never resubmitted
        assert all(fu.ok and not fu.resumed for o in second for fu in o.follow_ups)
        assert sum(len(o.follow_ups) for o in second) == len(failed)
