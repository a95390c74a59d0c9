"""``FtoClient.screen``: one question at a time, shared across concurrent callers."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from fto_async import (
    ConfigurationError,
    DeadlineExceededError,
    FtoClient,
    FtoError,
    InvalidRequestError,
    OverloadedError,
    ReportCache,
)
from tests._batch import emulator, image, make_client, running, workflow
from tests._shared import SUBMIT, collect


async def test_sixty_callers_twenty_questions_make_twenty_submits() -> None:
    """60 concurrent calls over 20 distinct questions: 20 tasks, each caller its answer."""
    async with running() as (emu, client):
        asks = [(f"caller-{c}-{i}", image(i)) for c in range(3) for i in range(20)]
        outcomes = await asyncio.gather(*(client.screen(r, key=k) for k, r in asks))
    assert emu.stats.count(SUBMIT, 0) == 20
    image_of_task = {rec.task_id: rec.image for rec in emu.stats.submits}
    for (key, request), outcome in zip(asks, outcomes, strict=True):
        assert outcome.ok, outcome.error
        assert outcome.key == key
        assert image_of_task[outcome.task_id] == request.url  # the right question's task
    assert client.screen_stats.flights == 20
    assert client.screen_stats.joined == 40
    assert client.stats.waiting == 0


async def test_screen_any_kind() -> None:
    async with running() as (emu, client):
        outcome = await client.screen(workflow(1))
    assert outcome.ok
    assert outcome.report is not None
    assert emu.stats.count("/api/mcp/submit-workflow", 0) == 1


async def test_bad_input_is_a_typed_error_with_zero_calls() -> None:
    async with running() as (emu, client):
        with pytest.raises(InvalidRequestError):
            await client.screen("https://img.example/a.png")  # type: ignore[arg-type]
    assert emu.stats.count(SUBMIT, 0) == 0
    assert client.stats.calls == 0


async def test_a_paid_task_outlives_its_callers_and_lands_in_the_cache(tmp_path: Path) -> None:
    """The caller's deadline passes; the task is still polled, its report cached: the
    caller who asks again gets it with no second task."""
    async with (
        emulator() as emu,
        ReportCache(tmp_path / "c.db") as cache,
        make_client(emu, cache=cache) as client,
    ):
        with pytest.raises(DeadlineExceededError):
            await client.screen(image(1), timeout=0.03)  # tasks take ~100 ms here
        async with asyncio.timeout(10):
            while client.screen_stats.in_flight:
                await asyncio.sleep(0.01)
        again = await client.screen(image(1))
        # screen_many uses the client's cache when given none
        batch, _ = await collect(client.screen_many([("b", image(1))]))
    assert emu.stats.count(SUBMIT, 0) == 1
    assert again.ok
    assert again.from_cache
    assert batch[0].from_cache


async def test_overloaded_client_refuses_fast_while_accepted_calls_finish() -> None:
    async with emulator() as emu, make_client(emu, max_waiting=2) as client:
        accepted = [asyncio.create_task(client.screen(image(i))) for i in range(2)]
        await asyncio.sleep(0)  # both flights started
        duplicate = asyncio.create_task(client.screen(image(0)))  # joins: never refused
        await asyncio.sleep(0)
        other_ran = asyncio.Event()

        async def other_task() -> None:  # runs at the loop's next turn
            other_ran.set()

        other = asyncio.create_task(other_task())
        with pytest.raises(OverloadedError) as caught:
            await client.screen(image(2))
        # Refused at once: before the loop ran anything else (no wait, no call), which a
        # stopwatch could not tell on a loaded machine.
        refused_at_once = not other_ran.is_set()
        await other
        assert client.stats.waiting == 3
        outcomes = await asyncio.gather(*accepted, duplicate)
    assert refused_at_once
    assert caught.value.retryable
    assert caught.value.retry_after > 0
    assert all(o.ok for o in outcomes)
    assert emu.stats.count(SUBMIT, 0) == 2
    assert client.screen_stats.refused == 1


async def test_a_deadline_holds_against_a_server_that_never_answers() -> None:
    async with (
        emulator(hang_rate=1.0, hang_seconds=60) as emu,
        make_client(emu, timeout=30.0) as client,
    ):
        fast = client.with_options(timeout=0.3)
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError):
            async with asyncio.timeout(3):  # without the deadline: TimeoutError here
                await fast.screen(image(1))
        took = time.monotonic() - started
        await fast.aclose()  # a view closes nothing
        assert not client.closed
    assert 0.3 <= took < 1.0


def test_client_reads_credentials_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PATSNAP_CLIENT_ID", "PATSNAP_CLIENT_SECRET", "PATSNAP_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATSNAP_API_KEY", "sk-from-env")
    monkeypatch.setenv("PATSNAP_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("PATSNAP_QPS", "7")
    assert repr(FtoClient()) == "<FtoClient http://127.0.0.1:9 auth=api_key qps=7.0 open>"
    assert FtoClient(qps=3).config.rate.qps == 3  # a keyword beats the environment
    monkeypatch.delenv("PATSNAP_BASE_URL")
    monkeypatch.delenv("PATSNAP_QPS")
    monkeypatch.delenv("PATSNAP_API_KEY")
    monkeypatch.setenv("PATSNAP_CLIENT_ID", "cid")
    with pytest.raises(ConfigurationError) as caught:
        FtoClient()
    message = str(caught.value)
    assert "PATSNAP_CLIENT_SECRET" in message
    assert "set: PATSNAP_CLIENT_ID" in message
    assert "set PATSNAP_CLIENT_ID" not in message  # never "set X" when X is set
    monkeypatch.delenv("PATSNAP_CLIENT_ID")
    with pytest.raises(ConfigurationError, match="none of them is set"):
        FtoClient()


def test_a_partial_pair_passed_is_named_without_the_environment() -> None:
    with pytest.raises(ConfigurationError) as caught:
        FtoClient(client_id="cid")
    assert "client_id was passed without client_secret" in str(caught.value)
    assert "PATSNAP" not in str(caught.value)  # the environment was not read


def test_max_waiting_must_be_positive() -> None:
    with pytest.raises(ConfigurationError):
        FtoClient(api_key="sk-x", max_waiting=0)


async def test_to_record_is_the_outputs_record(tmp_path: Path) -> None:
    """Outcome.to_record() gives what the CLI's JSONL/CSV rows hold for the same row
    (the one record rule), JSON-safe, for done and failed outcomes alike."""
    from fto_async.journal import Journal
    from fto_async.outputs._record import record_from_journal
    from tests._batch import refused_image

    items = [("ok", image(1)), ("bad", refused_image(2))]
    async with running() as (_, client), await Journal.open(tmp_path / "j.db") as journal:
        outcomes, _ = await collect(client.screen_many(items, journal=journal))
        expected = {o.key: record_from_journal(journal.get(o.key)) for o in outcomes}
    for outcome in outcomes:
        record = outcome.to_record()
        json.dumps(record)  # JSON-safe
        want = expected[outcome.key]
        assert record == {**want, "line": None}
    statuses = {o.key: o.to_record()["status"] for o in outcomes}
    assert statuses == {"ok": "done", "bad": "failed"}
    done = next(o for o in outcomes if o.key == "ok").to_record()
    assert done["highest_risk"] is not None
    assert done["report"] is not None


async def test_item_from_path_uploads_each_content_once_and_only_when_submitted(
    tmp_path: Path,
) -> None:
    """Two files with the same bytes and one other: 2 uploads, 2 tasks; a rerun that the
    cache answers uploads nothing."""
    from fto_async._kinds import UPLOAD_PATH
    from fto_async.batch import Item
    from tests._shared import PNG, png_of_size

    (tmp_path / "a.png").write_bytes(PNG)
    (tmp_path / "a-copy.png").write_bytes(PNG)
    (tmp_path / "b.png").write_bytes(png_of_size(200))
    names = ("a.png", "a-copy.png", "b.png")
    items = [Item.from_path(n, tmp_path / n, country=["US"], lang="en") for n in names]
    async with (
        emulator() as emu,
        ReportCache(tmp_path / "c.db") as cache,
        make_client(emu, cache=cache) as client,
    ):
        first, _ = await collect(client.screen_many(items))
        assert emu.stats.count(UPLOAD_PATH, 0) == 2
        assert emu.stats.count(SUBMIT, 0) == 2
        again, _ = await collect(client.screen_many(
            [Item.from_path(n, tmp_path / n, country=["US"], lang="en") for n in names]
        ))  # fmt: skip
        assert emu.stats.count(UPLOAD_PATH, 0) == 2  # the rerun uploaded nothing
        assert emu.stats.count(SUBMIT, 0) == 2
        # no sharing, no cache: 3 tasks, but each content's URL is still the client's
        third, _ = await collect(client.screen_many(items, dedupe=False, cache=None))
    assert all(o.ok for o in first + again + third)
    assert all(o.from_cache for o in again)
    assert emu.stats.count(SUBMIT, 0) == 5
    assert emu.stats.count(UPLOAD_PATH, 0) == 2
    submitted = {rec.image for rec in emu.stats.submits}
    assert not any("local.invalid" in url for url in submitted)  # real upload URLs sent


async def test_item_from_path_never_uploads_a_file_changed_since_it_was_read(
    tmp_path: Path,
) -> None:
    """A file rewritten between Item.from_path and the submit is refused (no upload, no
    task): the answer for the new bytes would be stored under the old bytes' fingerprint
    and served to whoever asks about the old image."""
    from fto_async._kinds import UPLOAD_PATH
    from fto_async.batch import Item
    from tests._shared import PNG, png_of_size

    path = tmp_path / "a.png"
    path.write_bytes(PNG)
    item = Item.from_path("a", path, country=["US"], lang="en")
    path.write_bytes(png_of_size(200))  # another design, same name
    async with (
        emulator() as emu,
        ReportCache(tmp_path / "c.db") as cache,
        make_client(emu, cache=cache) as client,
    ):
        (outcome,), _ = await collect(client.screen_many([item]))
        assert isinstance(outcome.error, InvalidRequestError)
        assert "changed" in str(outcome.error)
        assert await cache.get(item.fingerprint or "", platform=client.provenance[0],
                               account=client.provenance[1]) is None  # fmt: skip
    assert emu.stats.count(UPLOAD_PATH, 0) == 0
    assert emu.stats.count(SUBMIT, 0) == 0


def test_item_from_path_refuses_a_bad_file_with_no_call(tmp_path: Path) -> None:
    from fto_async.batch import Item

    (tmp_path / "x.png").write_bytes(b"not an image")
    with pytest.raises(InvalidRequestError):
        Item.from_path("x", tmp_path / "x.png", country=["US"], lang="en")
    with pytest.raises(InvalidRequestError):
        Item.from_path("y", tmp_path / "missing.png", country=["US"], lang="en")


# -- with_options(max_retries=...) -----------------------------------------------------


async def test_max_retries_zero_surfaces_a_retryable_error_at_once() -> None:
    """A view with max_retries=0 sends one attempt and raises the retryable error; the
    client itself retries as its RetryConfig says; both share one transport."""
    async with emulator(service_error_rate=1.0) as emu, make_client(emu) as client:
        once = client.with_options(max_retries=0)
        with pytest.raises(FtoError) as caught:
            await once.submit_image_search(image(1))
        assert caught.value.retryable
        assert client.stats.calls == 1
        assert once.stats is client.stats
        assert once.gate is client.gate
        with pytest.raises(FtoError):
            await client.submit_image_search(image(1))
        assert client.stats.calls == 1 + 5  # RetryConfig.for_testing(): 5 attempts
        outcome = await once.screen(image(2))  # screen's flight inherits the limit
        assert client.stats.calls == 6 + 1
        assert outcome.error is not None
        assert outcome.error.retryable
        two = once.with_options(max_retries=2)
        with pytest.raises(FtoError):
            await two.get_image_search_report("t-1")
        assert client.stats.calls == 7 + 3


async def test_with_options_keeps_what_it_is_not_given() -> None:
    """Chained views keep the options not given; bad values are typed errors."""
    async with emulator(hang_rate=1.0, hang_seconds=60) as emu, make_client(emu) as client:
        view = client.with_options(timeout=0.2).with_options(max_retries=0)
        with pytest.raises(DeadlineExceededError):
            await view.screen(image(1))
        assert view.with_options(timeout=None)._deadline is None
        for bad in (-1, 1.5, "2", True):
            with pytest.raises(ConfigurationError):
                client.with_options(max_retries=bad)  # type: ignore[arg-type]
        for bad_timeout in (0, -1.0, "5"):
            with pytest.raises(ConfigurationError):
                client.with_options(timeout=bad_timeout)  # type: ignore[arg-type]
