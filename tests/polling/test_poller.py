"""TaskPoller: done/status/result, continuation tokens across clients, begin_screening."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from fto_async import (
    FtoClient,
    ImageSearchReport,
    InvalidRequestError,
    PollConfig,
    TaskFailedError,
    TaskPoller,
    TaskStatus,
    TaskTimeoutError,
    WorkflowReport,
    WorkflowRequest,
)
from tests._shared import API_KEY, CLIENT_SECRET, REPORT, WORKFLOW_RESULT
from tests.client._support import emulator, image_request, make_client

SCALE = 0.001  # the emulator of _support runs 1000x faster than real time
POLL = PollConfig().scaled(SCALE)


def client_for(emu: Any, scheme: str = "oauth", **options: Any) -> FtoClient:
    """A fast client of the demo account whose polls are scaled like the emulator."""
    return make_client(emu.base_url, scheme, **{"poll": POLL, **options})


def workflow_request() -> WorkflowRequest:
    return WorkflowRequest(url="https://img.example/cup.png", country=["US", "CN"])


async def poll_until_done(poller: TaskPoller) -> ImageSearchReport:
    """Poll once at a time until the task is finished."""
    for _ in range(500):
        report = await poller.poll()
        if report.done:
            return report
        await asyncio.sleep(0.005)
    raise AssertionError("the task never finished")


# -- done() and status() --------------------------------------------------------------


async def test_status_before_and_after_polls() -> None:
    """status() is NotStarted before any poll, running while running, succeeded when done."""
    async with emulator(task_duration=200) as emu, client_for(emu) as client:
        task_id = await client.submit_image_search(image_request())
        poller = client.poller(task_id)
        assert (poller.status(), poller.done()) == ("NotStarted", False)
        assert emu.stats.polls_by_task[task_id] == 0  # building a poller costs nothing
        report = await poller.poll()
        assert report.task_status is TaskStatus.RUNNING
        assert (poller.status(), poller.done()) == ("running", False)
        final = await poll_until_done(poller)
        assert final.task_status is TaskStatus.SUCCESS
        assert (poller.status(), poller.done()) == ("succeeded", True)
        assert task_id in repr(poller)
        assert "succeeded" in repr(poller)


async def test_status_failed_after_a_failed_poll() -> None:
    """A poll that sees task_status 3 makes status() failed and done() true."""
    async with emulator(fail_rate=1.0) as emu, client_for(emu) as client:
        poller = client.poller(await client.submit_image_search(image_request()))
        report = await poll_until_done(poller)
        assert report.task_status is TaskStatus.FAILED
        assert (poller.status(), poller.done()) == ("failed", True)


# -- result() -------------------------------------------------------------------------


async def test_result_returns_the_report_and_keeps_it() -> None:
    """result() waits for success; a second result() returns the same report without a poll."""
    async with emulator() as emu, client_for(emu) as client:
        task_id = await client.submit_image_search(image_request())
        poller = client.poller(task_id)
        report = await poller.result(timeout=5)
        assert isinstance(report, ImageSearchReport)
        assert report.task_status is TaskStatus.SUCCESS
        assert report.report is not None
        assert (poller.status(), poller.done()) == ("succeeded", True)
        polls = emu.stats.polls_by_task[task_id]
        assert await poller.result() is report
        assert emu.stats.polls_by_task[task_id] == polls


async def test_result_raises_task_failed_error() -> None:
    """result() raises TaskFailedError naming the task when it ends with task_status 3."""
    async with emulator(fail_rate=1.0) as emu, client_for(emu) as client:
        task_id = await client.submit_image_search(image_request())
        with pytest.raises(TaskFailedError) as info:
            await client.poller(task_id).result(timeout=5)
        assert info.value.task_id == task_id


async def test_result_raises_task_timeout_error_in_time() -> None:
    """result(timeout) raises TaskTimeoutError (a TimeoutError) once the timeout has passed."""
    async with emulator(task_duration=5000) as emu, client_for(emu) as client:
        task_id = await client.submit_image_search(image_request())
        started = time.monotonic()
        with pytest.raises(TaskTimeoutError) as info:
            await client.poller(task_id).result(timeout=0.1)
        assert isinstance(info.value, TimeoutError)
        assert info.value.task_id == task_id
        assert time.monotonic() - started < 1.0


async def test_status_after_result_raised_task_failed_error() -> None:
    """After result() raised TaskFailedError, status() is failed and done() is true."""
    async with emulator(fail_rate=1.0) as emu, client_for(emu) as client:
        poller = client.poller(await client.submit_image_search(image_request()))
        with pytest.raises(TaskFailedError):
            await poller.result(timeout=5)
        assert (poller.status(), poller.done()) == ("failed", True)


async def test_status_after_result_timed_out() -> None:
    """After result() timed out, status() is running (the last poll saw the task running)."""
    async with emulator(task_duration=5000) as emu, client_for(emu) as client:
        poller = client.poller(await client.submit_image_search(image_request()))
        with pytest.raises(TaskTimeoutError):
            await poller.result(timeout=0.05)
        assert (poller.status(), poller.done()) == ("running", False)


# -- continuation tokens --------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["oauth", "sk"])
async def test_continuation_token_is_versioned_json_without_secrets(scheme: str) -> None:
    """The token is JSON with version, kind, endpoint and task_id, and holds no secret."""
    async with emulator() as emu, client_for(emu, scheme) as client:
        poller = await client.begin_screening(image_request())
        await poller.poll()  # an OAuth client now holds a bearer token
        token = poller.continuation_token()
        data = json.loads(token)
        assert data == {"version": 1, "kind": "image_search", "endpoint": REPORT,
                        "task_id": poller.task_id}
        for secret in (CLIENT_SECRET, API_KEY, "demo-client", "Bearer"):
            assert secret not in token
        for text in (repr(poller), str(poller)):
            assert CLIENT_SECRET not in text
            assert API_KEY not in text


@pytest.mark.parametrize("kind", ["image_search", "workflow"])
async def test_continuation_token_round_trip_across_clients(kind: str) -> None:
    """A token saved from one client rebuilds a poller on another that gets the result."""
    request = image_request() if kind == "image_search" else workflow_request()
    async with emulator(task_duration=100) as emu:
        async with client_for(emu) as first:
            poller = await first.begin_screening(request)
            token = poller.continuation_token()
        async with client_for(emu) as second:
            again = TaskPoller.from_continuation_token(second, token)
            assert (again.task_id, again.kind, again.endpoint) == (
                poller.task_id, kind, poller.endpoint)
            assert again.status() == "NotStarted"
            report = await again.result(timeout=5)
        assert report.task_status is TaskStatus.SUCCESS
        assert report.task_id == poller.task_id
        assert type(report) is (ImageSearchReport if kind == "image_search" else WorkflowReport)


def _token(**changes: Any) -> str:
    base: dict[str, Any] = {"version": 1, "kind": "image_search", "endpoint": REPORT,
                            "task_id": "0f1e2d3c-task"}
    base.update(changes)
    return json.dumps({k: v for k, v in base.items() if v is not _DROP})


_DROP = object()

BAD_TOKENS = {
    "not json": "this is not json",
    "empty": "",
    "json list": "[1, 2]",
    "json null": "null",
    "newer version": _token(version=2),
    "version as text": _token(version="1"),
    "no version": _token(version=_DROP),
    "unknown kind": _token(kind="patent_search"),
    "no task id": _token(task_id=_DROP),
    "task id not a string": _token(task_id=42),
    "empty task id": _token(task_id=""),
    "other endpoint": _token(endpoint="/ai/image-search/other"),
    "workflow on report path": _token(kind="workflow"),
}


@pytest.mark.parametrize("token", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
async def test_bad_tokens_raise_invalid_request_error(token: str) -> None:
    """A token that is not ours, from a newer version, or for another endpoint is refused."""
    async with make_client("http://127.0.0.1:9") as client:
        with pytest.raises(InvalidRequestError) as info:
            TaskPoller.from_continuation_token(client, token)
        assert info.value.field in ("token", "task_id")


async def test_non_string_token_raises_invalid_request_error() -> None:
    """A token of the wrong type (None) is refused with InvalidRequestError, not TypeError."""
    async with make_client("http://127.0.0.1:9") as client:
        with pytest.raises(InvalidRequestError):
            TaskPoller.from_continuation_token(client, None)  # type: ignore[arg-type]


async def test_token_for_another_workflow_result_path_is_refused() -> None:
    """A workflow token does not resume on a client that reads workflow results elsewhere."""
    async with emulator() as emu:
        async with client_for(emu) as first:
            token = (await first.begin_screening(workflow_request())).continuation_token()
        assert json.loads(token)["endpoint"] == WORKFLOW_RESULT
        async with client_for(emu, workflow_result_path="/api/mcp/other-result") as other:
            with pytest.raises(InvalidRequestError) as info:
                TaskPoller.from_continuation_token(other, token)
            assert "/api/mcp/other-result" in str(info.value)


# -- building pollers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_factory", "kind", "endpoint", "report_type"),
    [
        (image_request, "image_search", REPORT, ImageSearchReport),
        (workflow_request, "workflow", WORKFLOW_RESULT, WorkflowReport),
    ],
    ids=["image_search", "workflow"],
)
async def test_begin_screening_submits_and_returns_a_poller(
    request_factory: Any, kind: str, endpoint: str, report_type: type
) -> None:
    """begin_screening submits either request kind and returns a poller for its endpoint."""
    async with emulator() as emu, client_for(emu) as client:
        poller = await client.begin_screening(request_factory())
        assert isinstance(poller, TaskPoller)
        assert (poller.kind, poller.endpoint) == (kind, endpoint)
        assert [s.task_id for s in emu.stats.submits] == [poller.task_id]
        assert emu.stats.submits[0].kind == ("image-search" if kind == "image_search"
                                             else "workflow")
        assert poller.status() == "NotStarted"
        report = await poller.result(timeout=5)
        assert type(report) is report_type
        assert emu.stats.count(endpoint, 0) >= 1


@pytest.mark.parametrize(
    ("task_id", "kind"),
    [("", "image_search"), (None, "image_search"), ("abc", "patent"), ("abc", None)],
)
async def test_poller_rejects_bad_task_id_or_kind(task_id: Any, kind: Any) -> None:
    """A poller needs a non-empty task id and a known kind; else InvalidRequestError."""
    async with make_client("http://127.0.0.1:9") as client:
        with pytest.raises(InvalidRequestError):
            TaskPoller(client, task_id, kind)
