"""The handler-style HTTP fake: client and batch behaviour with no server at all."""

from __future__ import annotations

import asyncio
import itertools

import aiohttp
import pytest

from fto_async import (
    BatchAbortedError,
    FtoClient,
    ImageSearchRequest,
    PollConfig,
    QuotaExceededError,
    RetryConfig,
)
from fto_async.testing import MockRequest, MockResponse, MockTransport

SUBMIT = "/ai/image-search/submit"
REPORT = "/ai/image-search/report"
FAST_POLL = PollConfig(interval=0.01, min_interval=0.0, max_interval=0.01,
                       initial_estimate=0.01)  # fmt: skip
FAST_RETRY = RetryConfig(base=0.001, cap=0.002)


def requests(n: int) -> list[ImageSearchRequest]:
    return [ImageSearchRequest(f"https://example.com/{i}.png", ["US"], "en") for i in range(n)]


class Platform:
    """A tiny platform: tasks finish after ``polls_needed`` polls."""

    def __init__(self, polls_needed: int = 1) -> None:
        self.ids = itertools.count(1)
        self.polls: dict[str, int] = {}
        self.polls_needed = polls_needed

    def __call__(self, request: MockRequest) -> MockResponse:
        if request.path == SUBMIT:
            task_id = f"t{next(self.ids)}"
            self.polls[task_id] = 0
            return MockResponse.ok({"task_id": task_id})
        assert request.path == REPORT
        task_id = request.json["task_id"]
        self.polls[task_id] += 1
        status = 2 if self.polls[task_id] >= self.polls_needed else 1
        return MockResponse.ok({"task_id": task_id, "task_status": status})


def client_for(handler, **options) -> FtoClient:
    return FtoClient(api_key="sk-mock", qps=1000, poll=FAST_POLL, retry=FAST_RETRY,
                     transport=MockTransport(handler), **options)  # fmt: skip


async def test_a_batch_runs_against_a_handler():
    platform = Platform(polls_needed=2)
    async with client_for(platform) as client:
        outcomes = [o async for o in client.screen_many(requests(20))]
        sent = client.transport._sender.requests  # type: ignore[attr-defined]
    assert sorted(o.key for o in outcomes) == list(range(20))
    assert all(o.ok for o in outcomes)
    assert len(platform.polls) == 20
    assert all(n == 2 for n in platform.polls.values())
    assert all(r.params["apikey"] == "sk-mock" for r in sent)
    assert sent[0].headers["Authorization"] == "Bearer sk-mock"


async def test_network_faults_from_the_handler_are_retried():
    platform = Platform()
    failures = iter([True, True, False])

    async def flaky(request: MockRequest) -> MockResponse:
        await asyncio.sleep(0)
        if request.path == SUBMIT and next(failures, False):
            raise aiohttp.ClientConnectionError("dropped")
        return platform(request)

    async with client_for(flaky) as client:
        outcomes = [o async for o in client.screen_many(requests(1))]
        assert client.retries == 2
    assert outcomes[0].ok


async def test_a_fatal_code_stops_the_batch_without_a_server():
    calls = []

    def quota(request: MockRequest) -> MockResponse:
        calls.append(request.path)
        return MockResponse.error(67200007, "daily quota spent")

    async with client_for(quota) as client:
        with pytest.raises(BatchAbortedError) as info:
            _ = [o async for o in client.screen_many(requests(5), submit_concurrency=1)]
    assert isinstance(info.value.cause, QuotaExceededError)
    assert calls == [SUBMIT]  # one refusal, no retry, nothing sent after it


async def test_the_handler_must_answer_a_response():
    async with client_for(lambda request: "nope") as client:
        with pytest.raises(TypeError, match="MockResponse"):
            await client.submit_image_search(requests(1)[0])
