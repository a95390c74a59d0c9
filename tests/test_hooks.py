"""Hooks: on_call, on_retry, on_poll, on_result; sync or async; a raising hook breaks nothing."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from fto_async import (
    CallEvent,
    FtoClient,
    Hooks,
    ImageSearchRequest,
    PollConfig,
    PollEvent,
    ResultEvent,
    RetryConfig,
    RetryEvent,
)
from fto_async.testing import MockRequest, MockResponse, MockTransport
from tests._vtime import virtual

SUBMIT = "/ai/image-search/submit"
REPORT = "/ai/image-search/report"


def _request(i: int = 0) -> ImageSearchRequest:
    return ImageSearchRequest(url=f"https://img.example/{i}.png?sig=S", country=["US"], lang="en")


class Platform:
    """Busy once on the first submit, then answers; each task runs one poll, then ends."""

    def __init__(self) -> None:
        self.busy = 1
        self.polls: dict[str, int] = {}
        self.created = 0

    def __call__(self, request: MockRequest) -> MockResponse:
        if request.path == SUBMIT:
            if self.busy:
                self.busy -= 1
                return MockResponse.error(67200100, "busy")
            self.created += 1
            return MockResponse.ok({"task_id": f"t-{self.created}"})
        task_id = request.json["task_id"]
        self.polls[task_id] = self.polls.get(task_id, 0) + 1
        if self.polls[task_id] == 1:
            return MockResponse.ok({"task_id": task_id, "task_status": 1})
        return MockResponse.ok({"task_id": task_id, "task_status": 2})


async def _until(condition: Any, timeout: float = 5.0) -> None:
    """Wait for async hooks (tasks of their own) to have run."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def _client(hooks: Hooks, platform: Platform | None = None) -> FtoClient:
    return FtoClient(
        api_key="sk-test", transport=MockTransport(platform or Platform()), hooks=hooks,
        retry=RetryConfig.for_testing(), poll=PollConfig(interval=0.01, min_interval=0.01),
    )  # fmt: skip


@virtual
async def test_sync_hooks_see_calls_retries_polls_and_results() -> None:
    """Every attempt, retry, poll and task end reaches its hook, in order."""
    seen: list[Any] = []
    hooks = Hooks(on_call=seen.append, on_retry=seen.append, on_poll=seen.append,
                  on_result=seen.append)  # fmt: skip
    async with _client(hooks) as client:
        task_id = await client.submit_image_search(_request())
        report = await client.wait_image_search(task_id)
    calls = [e for e in seen if isinstance(e, CallEvent)]
    assert [(c.path, c.resend_count, c.code, c.result) for c in calls] == [
        (SUBMIT, 0, 67200100, "refused"), (SUBMIT, 1, 0, "answered"),
        (REPORT, 0, 0, "answered"), (REPORT, 0, 0, "answered"),
    ]  # fmt: skip
    assert all(c.http_status == 200 and c.elapsed >= 0 for c in calls)
    retries = [e for e in seen if isinstance(e, RetryEvent)]
    assert [(r.path, r.code) for r in retries] == [(SUBMIT, 67200100)]
    polls = [e for e in seen if isinstance(e, PollEvent)]
    assert [(p.task_id, p.path, int(p.task_status)) for p in polls] == [
        (task_id, REPORT, 1), (task_id, REPORT, 2),
    ]  # fmt: skip
    results = [e for e in seen if isinstance(e, ResultEvent)]
    assert results == [ResultEvent(None, task_id, report, None, 0)]


@virtual  # the batch's first polls wait a learned-duration guess of real seconds
async def test_async_hooks_run_and_a_batch_tells_each_result() -> None:
    """Async hooks are awaited as tasks; a batch tells on_result once per item."""
    results: list[ResultEvent] = []
    calls: list[CallEvent] = []

    async def on_result(event: ResultEvent) -> None:
        await asyncio.sleep(0)
        results.append(event)

    async def on_call(event: CallEvent) -> None:
        calls.append(event)

    async with _client(Hooks(on_call=on_call, on_result=on_result)) as client:
        outcomes = [o async for o in client.screen_many([_request(i) for i in range(3)])]
        await _until(lambda: len(results) == 3 and len(calls) == 10)
    assert sorted(r.key for r in results) == [0, 1, 2]
    assert {r.task_id for r in results} == {o.task_id for o in outcomes}
    assert all(r.error is None and r.polls == 2 for r in results)
    assert len(calls) == 1 + 3 + 6  # one busy submit, 3 submits, 2 polls each


@virtual
async def test_a_raising_hook_never_breaks_a_call_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Sync and async hooks that raise: the calls go on; each failure is logged once."""

    def bad_call(_event: CallEvent) -> None:
        raise RuntimeError("sync hook bug")

    async def bad_poll(_event: PollEvent) -> None:
        raise ValueError("async hook bug")

    with caplog.at_level(logging.DEBUG, logger="fto_async.hooks"):
        async with _client(Hooks(on_call=bad_call, on_poll=bad_poll)) as client:
            task_id = await client.submit_image_search(_request())
            await client.wait_image_search(task_id)
            await _until(lambda: any("on_poll" in r.getMessage() for r in caplog.records))
    mine = [r for r in caplog.records if r.name == "fto_async.hooks"]
    warnings = [r for r in mine if r.levelno == logging.WARNING]
    assert sorted(r.getMessage().split()[1] for r in warnings) == ["on_call", "on_poll"]
    assert any(r.levelno == logging.DEBUG for r in mine)  # the repeats


def test_a_hook_must_be_callable() -> None:
    """A non-callable hook is refused when the Hooks are made."""
    with pytest.raises(TypeError, match="on_call"):
        Hooks(on_call="print")  # type: ignore[arg-type]
