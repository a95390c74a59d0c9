"""Every FtoClient endpoint method against the emulator, and the client's lifecycle."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from aiohttp import web

from fto_async import (
    ConfigurationError,
    FtoClient,
    ImageSearchReport,
    InvalidRequestError,
    PathNotFoundError,
    ResponseDecodeError,
    TaskFailedError,
    TaskStatus,
    TaskTimeoutError,
    UploadedImage,
    ValidationError,
    WorkflowReport,
    WorkflowRequest,
)
from tests._shared import API_KEY, CLIENT_SECRET, JPEG, PNG, REPORT, SUBMIT, UPLOAD, WORKFLOW
from tests._vtime import run_virtual

from ._support import base_url, emulator, envelope, handcrafted, image_request, make_client, running

# -- image search ----------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["oauth", "sk"])
async def test_submit_image_search_returns_task_id(scheme: str) -> None:
    """submit_image_search sends the typed request and returns the emulator's task id."""
    async with running(scheme) as (emu, client):
        task_id = await client.submit_image_search(image_request())
        assert [s.task_id for s in emu.stats.submits] == [task_id]
        assert emu.stats.submits[0].image == "https://img.example/lamp.png"
        assert emu.stats.count(SUBMIT, 0) == 1


async def test_get_image_search_report_running_then_done() -> None:
    """get_image_search_report shows task_status 1 while running and the full report when done."""
    async with running(emu_config={"task_duration": 200}) as (_emu, client):
        task_id = await client.submit_image_search(image_request())
        first = await client.get_image_search_report(task_id)
        assert isinstance(first, ImageSearchReport)
        assert (first.task_id, first.task_status) == (task_id, TaskStatus.RUNNING)
        assert not first.done
        assert first.report is None
        report = await client.wait_image_search(task_id)
        assert report.task_status is TaskStatus.SUCCESS
        assert report.succeeded
        assert report.report is not None
        assert report.patent_messages is not None
        again = await client.get_image_search_report(task_id)
        assert again.task_status is TaskStatus.SUCCESS
        assert again.raw == report.raw


async def test_wait_image_search_polls_until_done() -> None:
    """wait_image_search polls every poll.interval until task_status 2."""
    async with running(emu_config={"task_duration": 50}) as (emu, client):
        task_id = await client.submit_image_search(image_request())
        report = await client.wait_image_search(task_id)
        assert report.succeeded
        assert report.highest_risk is not None
        assert emu.stats.polls_by_task[task_id] >= 2


async def test_task_failed_error() -> None:
    """A task that ends with task_status 3 makes wait_image_search raise TaskFailedError."""
    async with running(emu_config={"fail_rate": 1.0}) as (_emu, client):
        task_id = await client.submit_image_search(image_request())
        with pytest.raises(TaskFailedError) as info:
            await client.wait_image_search(task_id)
        assert info.value.task_id == task_id
        assert not info.value.fatal
        report = await client.get_image_search_report(task_id)
        assert report.failed


async def test_task_timeout_error() -> None:
    """A task still running at the deadline gives TaskTimeoutError (a TimeoutError)."""
    async with running(emu_config={"task_duration": 10_000}) as (_emu, client):
        task_id = await client.submit_image_search(image_request())
        with pytest.raises(TimeoutError) as info:
            await client.wait_image_search(task_id, timeout=0.05)
        assert isinstance(info.value, TaskTimeoutError)
        assert info.value.task_id == task_id
        assert 0 < info.value.waited < 2.0  # past the 0.05 s deadline by a poll, not the 10 s task


async def test_report_of_empty_task_id_is_refused_without_a_call() -> None:
    """An empty task id is an InvalidRequestError and costs no call."""
    async with running() as (emu, client):
        with pytest.raises(InvalidRequestError):
            await client.get_image_search_report("  ")
        assert client.stats.calls == 0
        assert emu.stats.count() == 0


async def test_submit_refuses_a_non_request_without_a_call() -> None:
    """Passing a dict instead of an ImageSearchRequest is refused before any call."""
    async with running() as (emu, client):
        with pytest.raises(InvalidRequestError):
            await client.submit_image_search({"url": "x"})  # type: ignore[arg-type]
        assert emu.stats.count() == 0


# -- workflow ----------------------------------------------------------------------------


def test_workflow_round_trip() -> None:
    """submit_workflow returns the top-level task_id; get/wait_workflow read its result.
    On the virtual clock: the first read comes before the task's 0.1 s are up, however
    loaded the machine."""
    request = WorkflowRequest(url="https://img.example/cup.png", country=["US"],
                              simple_legal_status="1")

    async def main() -> None:
        async with running(emu_config={"task_duration": 100}) as (emu, client):
            task_id = await client.submit_workflow(request)
            assert emu.stats.submits[0].kind == "workflow"
            first = await client.get_workflow_report(task_id)
            assert isinstance(first, WorkflowReport)
            assert first.task_status is TaskStatus.RUNNING
            report = await client.wait_workflow(task_id)
            assert isinstance(report, WorkflowReport)
            assert report.succeeded
            assert report.report is not None

    run_virtual(main)


async def test_workflow_from_image_bytes() -> None:
    """A workflow request carrying base64 image bytes is accepted by the emulator."""
    async with running() as (_emu, client):
        task_id = await client.submit_workflow(WorkflowRequest.from_image_bytes(PNG))
        assert (await client.wait_workflow(task_id)).succeeded


async def test_workflow_422_gives_validation_error() -> None:
    """A raw bad body at submit-workflow gives ValidationError with readable field text."""
    async with running() as (emu, client):
        with pytest.raises(ValidationError) as info:
            await client.transport.call(WORKFLOW, {"url": 123, "country": "US"})
        err = info.value
        assert err.http_status == 422
        assert err.details
        assert all("loc" in d and "msg" in d for d in err.details)
        assert "url: " in err.message
        assert client.retries == 0
        assert emu.stats.count(WORKFLOW, 422) == 1


async def test_workflow_result_path_is_configurable() -> None:
    """A client configured with the emulator's workflow_result_path reads results there."""
    path = "/custom/fto/result"
    async with emulator(workflow_result_path=path) as emu, make_client(
        emu.base_url, workflow_result_path=path
    ) as client:
        assert client.config.workflow_result_path == path
        task_id = await client.submit_workflow(WorkflowRequest(url="https://img.example/a.png"))
        report = await client.wait_workflow(task_id)
        assert report.succeeded
        assert emu.stats.count(path, 0) >= 1


async def test_wrong_workflow_result_path_is_path_not_found() -> None:
    """A client polling a path the platform does not serve gets PathNotFoundError (fatal)."""
    async with emulator(workflow_result_path="/custom/fto/result") as emu, make_client(
        emu.base_url
    ) as client:
        task_id = await client.submit_workflow(WorkflowRequest(url="https://img.example/a.png"))
        with pytest.raises(PathNotFoundError) as info:
            await client.get_workflow_report(task_id)
        assert info.value.fatal
        assert client.retries == 0


# -- upload ------------------------------------------------------------------------------


async def test_upload_bytes() -> None:
    """upload_image sends PNG bytes as multipart and returns the public url and expiry."""
    async with running() as (emu, client):
        uploaded = await client.upload_image(PNG)
        assert isinstance(uploaded, UploadedImage)
        assert uploaded.url.startswith(emu.base_url)
        assert uploaded.expire == 32400
        assert emu.stats.count(UPLOAD, 0) == 1


async def test_upload_path_then_screen_it(tmp_path: Any) -> None:
    """upload_image reads a file path; the returned url can be screened."""
    image = tmp_path / "lamp.jpg"
    image.write_bytes(JPEG)
    async with running() as (_emu, client):
        uploaded = await client.upload_image(image)
        assert uploaded.url.endswith(".jpg")
        uploaded_str = await client.upload_image(str(image))
        assert uploaded_str.url == uploaded.url
        task_id = await client.submit_image_search(image_request(uploaded.url))
        assert (await client.wait_image_search(task_id)).succeeded


@pytest.mark.parametrize(
    "image",
    [
        pytest.param(b"GIF89a" + b"\x00" * 32, id="gif"),
        pytest.param(b"", id="empty"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + b"\x00" * (4 * 1024 * 1024), id="over-4MB"),
    ],
)
async def test_upload_refuses_bad_images_without_a_call(image: bytes) -> None:
    """A non-image or a file of 4 MB or more is refused with zero calls."""
    async with running() as (emu, client):
        with pytest.raises(InvalidRequestError) as info:
            await client.upload_image(image)
        assert info.value.field == "image"
        assert client.stats.calls == 0
        assert client.stats.token_requests == 0
        assert emu.stats.count() == 0


async def test_upload_missing_file_is_invalid_request(tmp_path: Any) -> None:
    """A path that cannot be read is an InvalidRequestError, not an OSError."""
    async with running() as (emu, client):
        with pytest.raises(InvalidRequestError):
            await client.upload_image(tmp_path / "nope.png")
        assert emu.stats.count() == 0


# -- answers that do not fit -------------------------------------------------------------


async def test_submit_answer_without_task_id_is_decode_error() -> None:
    """A success answer without a task_id gives ResponseDecodeError with the raw answer."""

    async def submit(_request: web.Request) -> web.Response:
        return envelope({"something": "else"})

    async with handcrafted({SUBMIT: submit}) as server, make_client(
        base_url(server), "sk"
    ) as client:
        with pytest.raises(ResponseDecodeError) as info:
            await client.submit_image_search(image_request())
        assert info.value.raw == {"something": "else"}
        assert client.retries == 0


async def test_report_with_unknown_status_is_decode_error() -> None:
    """A report whose task_status is outside 1-3 gives ResponseDecodeError, not a guess."""

    async def report(_request: web.Request) -> web.Response:
        return envelope({"task_id": "t", "task_status": 7})

    async with handcrafted({REPORT: report}) as server, make_client(
        base_url(server), "sk"
    ) as client:
        with pytest.raises(ResponseDecodeError):
            await client.get_image_search_report("t")


async def test_json_array_answer_is_decode_error() -> None:
    """A JSON array instead of the envelope gives ResponseDecodeError (not retried)."""

    async def report(_request: web.Request) -> web.Response:
        return web.json_response([1, 2, 3])

    async with handcrafted({REPORT: report}) as server, make_client(
        base_url(server), "sk"
    ) as client:
        with pytest.raises(ResponseDecodeError):
            await client.get_image_search_report("t")
        assert client.stats.calls == 1


# -- lifecycle ---------------------------------------------------------------------------


async def test_use_after_close_raises_runtime_error() -> None:
    """Every call on a closed client raises RuntimeError; aclose is idempotent."""
    async with running() as (_emu, client):
        task_id = await client.submit_image_search(image_request())
    assert client.closed
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await client.get_image_search_report(task_id)
    with pytest.raises(RuntimeError, match="closed"):
        await client.submit_image_search(image_request())
    with pytest.raises(RuntimeError, match="closed"):
        await client.upload_image(PNG)


async def test_closed_before_use_raises_runtime_error() -> None:
    """A client closed before its first call refuses calls too (both schemes)."""
    for scheme in ("oauth", "sk"):
        client = make_client("http://127.0.0.1:9", scheme)
        await client.aclose()
        with pytest.raises(RuntimeError):
            await client.get_image_search_report("t")


def _drop_all(holder: list[Any]) -> None:
    holder.clear()
    gc.collect()


async def test_unclosed_client_gives_resource_warning() -> None:
    """A client dropped while its session is open warns with ResourceWarning."""
    async with emulator() as emu:
        holder = [make_client(emu.base_url, "sk")]
        await holder[0].submit_image_search(image_request())
        session = holder[0].transport._sender._session  # type: ignore[attr-defined]
        assert session is not None
        with pytest.warns(ResourceWarning, match="unclosed"):
            _drop_all(holder)
        await session.close()  # the test owns the session now; close it without a warning


async def test_client_given_a_session_does_not_close_it() -> None:
    """A client given a session uses it and leaves it open (it does not own it)."""
    import aiohttp

    async with emulator() as emu, aiohttp.ClientSession() as session:
        async with make_client(emu.base_url, "sk", session=session) as client:
            await client.submit_image_search(image_request())
        assert not session.closed


@pytest.mark.parametrize("scheme", ["oauth", "sk"])
async def test_repr_shows_no_secret(scheme: str) -> None:
    """repr/str of the client show the base URL and scheme but never a secret."""
    async with running(scheme) as (_emu, client):
        await client.submit_image_search(image_request())
        for text in (repr(client), str(client), repr(client.transport)):
            assert CLIENT_SECRET not in text
            assert API_KEY not in text
        assert "auth=" in repr(client)


# -- from_env ----------------------------------------------------------------------------


def test_from_env_client_credentials() -> None:
    """from_env reads PATSNAP_CLIENT_ID/SECRET, base URL and QPS from the given mapping."""
    client = FtoClient.from_env(
        {
            "PATSNAP_CLIENT_ID": "id-1",
            "PATSNAP_CLIENT_SECRET": "secret-1",
            "PATSNAP_BASE_URL": "http://127.0.0.1:1234",
            "PATSNAP_QPS": "7.5",
        }
    )
    assert "auth=client_credentials" in repr(client)
    assert client.config.base_url == "http://127.0.0.1:1234"
    assert client.config.rate.qps == 7.5
    assert "secret-1" not in repr(client)


def test_from_env_api_key() -> None:
    """from_env builds an sk- key client from PATSNAP_API_KEY."""
    client = FtoClient.from_env({"PATSNAP_API_KEY": "sk-env-key"})
    assert "auth=api_key" in repr(client)
    assert "sk-env-key" not in repr(client)


def test_from_env_api_key_wins_over_client_credentials() -> None:
    """With both schemes in the environment the sk- key wins."""
    client = FtoClient.from_env(
        {"PATSNAP_API_KEY": "sk-env-key", "PATSNAP_CLIENT_ID": "id",
         "PATSNAP_CLIENT_SECRET": "s"}
    )
    assert "auth=api_key" in repr(client)


def test_from_env_options_override_environment() -> None:
    """Keyword options override the environment."""
    client = FtoClient.from_env({"PATSNAP_API_KEY": "sk-k", "PATSNAP_QPS": "3"}, qps=9)
    assert client.config.rate.qps == 9


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"PATSNAP_CLIENT_ID": "id-only"},
        {"PATSNAP_CLIENT_SECRET": "secret-only"},
        {"PATSNAP_API_KEY": "not-an-sk-key"},
        {"PATSNAP_API_KEY": "sk-k", "PATSNAP_QPS": "fast"},
        {"PATSNAP_API_KEY": "sk-k", "PATSNAP_QPS": "0"},
        {"PATSNAP_API_KEY": "sk-k", "PATSNAP_BASE_URL": "ftp://example.com"},
    ],
    ids=["nothing", "id-only", "secret-only", "bad-key", "qps-text", "qps-zero", "bad-url"],
)
def test_from_env_refuses_bad_environment(environ: dict[str, str]) -> None:
    """Missing credentials or bad values in the environment raise ConfigurationError."""
    with pytest.raises(ConfigurationError):
        FtoClient.from_env(environ)
