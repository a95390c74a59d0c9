"""AI67 1-vs-1 infringement detection: endpoints, report decoding, expiry, poller."""

from __future__ import annotations

import pytest

from fto_async import (
    InvalidRequestError,
    OneVsOneReport,
    OneVsOneRequest,
    RiskLevel,
    TaskExpiredError,
    TaskFailedError,
    TaskPoller,
    TaskStatus,
)
from fto_async.models import normalize_score
from tests._vtime import run_virtual

from ._support import running

CREATE = "/ai/infringement-detection-1v1-creation"
QUERY = "/ai/infringement-detection-1v1-query"
URL = "https://img.example/santa.png"


def one_v_one(patent: str = "USD1055174S1", lang: str | None = "en") -> OneVsOneRequest:
    """A valid 1-vs-1 request."""
    return OneVsOneRequest(patent, URL, report_lang=lang)


def test_1v1_round_trip() -> None:
    """submit_1v1 creates a task; wait_1v1 returns a report that compares the patent.
    On the virtual clock: the first read comes before the task is done, however loaded
    the machine."""

    async def main() -> None:
        async with running(emu_config={"task_duration": 50}) as (emu, client):
            task_id = await client.submit_1v1(one_v_one())
            assert [(s.task_id, s.kind) for s in emu.stats.submits] == [(task_id, "one-vs-one")]
            first = await client.get_1v1_report(task_id)
            assert isinstance(first, OneVsOneReport)
            assert first.task_status is TaskStatus.RUNNING
            report = await client.wait_1v1(task_id)
            assert report.succeeded
            assert report.task_id == task_id
            assert report.user_image == URL
            assert report.country == ("US",)
            [comparison] = report.comparisons
            assert comparison.patent_pn == "USD1055174S1"
            assert comparison.patent_image_url is not None
            assert "img_id" not in comparison.raw
            assert comparison.score is not None
            assert 0 <= comparison.score <= 1
            assert report.highest_risk is comparison.risk_level
            assert (comparison.risk_level is RiskLevel.HIGH) == ("US" in report.high_risk_country)
            assert emu.stats.count(CREATE, 0) == 1
            assert emu.stats.count(QUERY, 0) >= 2

    run_virtual(main)


async def test_1v1_report_is_deterministic_and_language_follows_request() -> None:
    """The same image and patent give the same report; report_lang cn gives Chinese text."""
    async with running() as (_emu, client):
        a = await client.wait_1v1(await client.submit_1v1(one_v_one()))
        b = await client.wait_1v1(await client.submit_1v1(one_v_one()))
        cn = await client.wait_1v1(await client.submit_1v1(one_v_one(lang="cn")))
        assert a.comparisons == b.comparisons
        assert any("\u4e00" <= ch <= "\u9fff" for ch in cn.comparisons[0].suggestion or "")


async def test_1v1_poller_kind() -> None:
    """client.poller(task_id, "one_vs_one") polls the 1-vs-1 query path."""
    async with running() as (_emu, client):
        task_id = await client.submit_1v1(one_v_one())
        poller = client.poller(task_id, "one_vs_one")
        assert poller.endpoint == QUERY
        report = await poller.result()
        assert isinstance(report, OneVsOneReport)
        again = TaskPoller.from_continuation_token(client, poller.continuation_token())
        assert again.kind == "one_vs_one"
        assert isinstance(await client.get_report(task_id, "one_vs_one"), OneVsOneReport)


async def test_expired_task_raises_task_expired_error() -> None:
    """A query of a 1-vs-1 task older than its validity raises TaskExpiredError."""
    async with running(emu_config={"task_duration": 1.0}) as (emu, client):
        task_id = await client.submit_1v1(one_v_one())
        assert (await client.get_1v1_report(task_id)).succeeded
        emu.reconfigure(task_validity=1e-9)  # the task is now older than its validity
        with pytest.raises(TaskExpiredError) as info:
            await client.get_1v1_report(task_id)
        assert isinstance(info.value, TaskFailedError)
        assert info.value.task_id == task_id
        assert not info.value.fatal
        assert not info.value.retryable
        with pytest.raises(TaskExpiredError):
            await client.get_1v1_report("no-such-task")


async def test_1v1_failed_task() -> None:
    """A 1-vs-1 task with task_status 3 makes wait_1v1 raise TaskFailedError."""
    async with running(emu_config={"fail_rate": 1.0}) as (_emu, client):
        task_id = await client.submit_1v1(one_v_one())
        with pytest.raises(TaskFailedError):
            await client.wait_1v1(task_id)


@pytest.mark.parametrize(
    ("raw", "score"),
    [(None, None), (0.0, 0.0), (0.93, 0.93), (1, 1.0), (80, 0.8), (100, 1.0), (250, 1.0),
     (-3, 0.0)],
)
def test_normalize_score(raw: float | None, score: float | None) -> None:
    """Scores above 1 are percentages; the result is on the 0-1 scale."""
    assert normalize_score(raw) == score


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("", URL), "patent_number"),
        (("usd1055174s1", URL), "patent_number"),
        (("US D1055174", URL), "patent_number"),
        (("US", URL), "patent_number"),
        ((1055174, URL), "patent_number"),
        (("USD1055174S1", "ftp://x.example/a.png"), "url"),
        (("USD1055174S1", None), "url"),
    ],
)
def test_1v1_request_validation(args: tuple[object, object], field: str) -> None:
    """OneVsOneRequest refuses a malformed patent number or URL, naming the field."""
    with pytest.raises(InvalidRequestError) as info:
        OneVsOneRequest(*args)  # type: ignore[arg-type]
    assert info.value.field == field


def test_1v1_request_report_lang() -> None:
    """report_lang is cn or en; EU-style numbers are accepted."""
    assert OneVsOneRequest("EU0065350760001S", URL, "cn").report_lang == "cn"
    with pytest.raises(InvalidRequestError, match="report_lang"):
        OneVsOneRequest("EU0065350760001S", URL, "fr")
