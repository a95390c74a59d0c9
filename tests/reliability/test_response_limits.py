"""Answer bodies are bounded (``max_response_bytes``): a huge body is a typed error, never
buffered whole. An answer that cannot be read (too large, wrong shape) never leaves a row
failed for good: the rerun polls it again; ``--retry-failed`` resubmits failed tasks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from fto_async import (
    ClientConfig,
    ImageSearchReport,
    PollConfig,
    ResponseDecodeError,
    ResponseTooLargeError,
)
from fto_async.emulator import Emulator, EmulatorConfig
from fto_async.errors import may_have_created_task
from fto_async.journal import ItemState, Journal
from tests._cli import cli, good_rows
from tests._shared import API_KEY, REPORT, SUBMIT, collect
from tests.client._support import base_url, envelope, handcrafted, image_request, make_client
from tests.test_models import sample_report

LIMIT = 256 * 1024


#: Polls at once: the first poll is not put off by a guessed task duration.
QUICK = PollConfig(interval=0.01, min_interval=0, initial_estimate=0.01, timeout=5.0)


def _client(url: str, **options: Any):
    return make_client(url, "sk", config=ClientConfig(max_response_bytes=LIMIT), poll=QUICK,
                       **options)  # fmt: skip


async def test_content_length_over_the_limit_is_refused_unread():
    """A declared body over the limit raises ResponseTooLargeError, once (not retried)."""
    calls = 0

    async def huge(_request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.Response(body=b"{" + b" " * (LIMIT * 4) + b"}", content_type="application/json")

    async with handcrafted({REPORT: huge}) as server, _client(base_url(server)) as client:
        with pytest.raises(ResponseTooLargeError) as info:
            await client.get_image_search_report("t-1")
    assert calls == 1
    assert "max_response_bytes" in str(info.value)
    assert not may_have_created_task(info.value)


async def test_a_streamed_body_is_cut_at_the_limit():
    """A chunked body with no length stops being read just past the limit."""
    sent = 0
    total = 64 * 1024 * 1024

    async def stream(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        chunk = b" " * 65536
        try:
            while sent < total:
                await resp.write(chunk)
                sent += len(chunk)
        except (ConnectionError, RuntimeError):
            pass  # the client hung up, as it should
        return resp

    async with handcrafted({REPORT: stream}) as server, _client(base_url(server)) as client:
        with pytest.raises(ResponseTooLargeError):
            await client.get_image_search_report("t-1")
    # the client stopped reading at LIMIT + 1; what was sent beyond sits in socket buffers
    assert sent < total // 4, sent


class _Platform:
    """A submit that always works, and a report answer chosen by the test."""

    def __init__(self) -> None:
        self.report: Any = "huge"
        self.polls = 0

    async def submit(self, _request: web.Request) -> web.Response:
        return envelope({"task_id": "task-1"})

    async def poll(self, _request: web.Request) -> web.Response:
        self.polls += 1
        if self.report == "huge":
            return web.Response(body=b" " * (LIMIT * 2), content_type="application/json")
        return envelope(self.report)


@pytest.mark.parametrize("bad", ["huge", {"task_status": "not-a-status", "task_id": 7}])
async def test_an_unreadable_poll_answer_leaves_the_row_for_the_next_run(bad, tmp_path: Path):
    """A too-large or ill-shaped report leaves the task ``submitted``; the rerun polls it done."""
    platform = _Platform()
    platform.report = bad
    routes = {SUBMIT: platform.submit, REPORT: platform.poll}
    async with handcrafted(routes) as server:
        async with await Journal.open(tmp_path / "j.db") as journal, \
                _client(base_url(server)) as client:
            outcomes, _ = await collect(client.screen_many([("k", image_request())],
                                                           journal=journal, poll=QUICK))
            assert isinstance(outcomes[0].error, ResponseTooLargeError | ResponseDecodeError)
            row = journal.get("k")
            assert row is not None
            assert row.state is ItemState.SUBMITTED, row
            assert row.task_id == "task-1"
        platform.report = {**sample_report(), "task_id": "task-1"}
        async with await Journal.open(tmp_path / "j.db") as journal, \
                _client(base_url(server)) as client:
            outcomes, _ = await collect(client.screen_many([("k", image_request())],
                                                           journal=journal, poll=QUICK))
            assert isinstance(outcomes[0].report, ImageSearchReport), outcomes[0]
            assert journal.get("k").state is ItemState.DONE


async def test_retry_failed_resubmits_rows_whose_task_failed(tmp_path, monkeypatch):
    """Failed tasks stay failed on a rerun; ``--retry-failed`` submits them again."""
    path = tmp_path / "c.csv"
    path.write_text("sku,image_url,country\n" + "\n".join(good_rows(3)) + "\n", encoding="utf-8")
    out = tmp_path / "o.jsonl"
    monkeypatch.setenv("PATSNAP_API_KEY", API_KEY)
    args = ["screen", str(path), "--out", str(out), "--time-scale", "0.001"]

    def statuses() -> list[str]:
        return [json.loads(line)["status"] for line in out.read_text().splitlines()]

    async with Emulator(EmulatorConfig(time_scale=0.001, qps=None, fail_rate=1.0)) as emu:
        monkeypatch.setenv("PATSNAP_BASE_URL", emu.base_url)
        assert await cli(*args) == 1
        assert statuses() == ["failed"] * 3
        # the same platform (a journal holds one platform's answers), now healthy
        emu.reconfigure(fail_rate=0.0)
        assert await cli(*args) == 1  # no flag: the journal's verdict stands
        assert emu.stats.count(SUBMIT) == 3
        assert await cli(*args, "--retry-failed") == 0
        assert emu.stats.count(SUBMIT) == 6
        assert statuses() == ["done"] * 3
    async with await Journal.open(tmp_path / "o.jsonl.journal.db") as journal:
        assert all(row.attempts == 2 for row in journal.rows())  # the history is kept
