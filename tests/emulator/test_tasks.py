"""Image-search and workflow tasks: validation, submit, poll, result states."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import aiohttp
import pytest

from fto_async.emulator import Emulator
from fto_async.emulator._state import STATE_KEY
from tests._shared import REPORT, SUBMIT, WORKFLOW, WORKFLOW_RESULT
from tests._vtime import run_virtual

from ._helpers import PNG_1X1, call, fast, image_body, wait_done

BAD_IMAGE_SEARCH_BODIES = [
    ([1, 2], "JSON object"),
    ({"country": ["US"], "lang": "en"}, "url"),
    (image_body(url=5), "url"),
    (image_body(url="ftp://img.example/a.png"), "url"),
    (image_body(url="not a url"), "url"),
    ({"url": "https://img.example/a.png", "lang": "en"}, "country"),
    (image_body(country=[]), "country"),
    (image_body(country="US"), "country"),
    (image_body(country=["US", 3]), "country"),
    ({"url": "https://img.example/a.png", "country": ["US"]}, "lang"),
    (image_body(lang="fr"), "lang"),
    (image_body(loc_items="14-02"), "loc_items"),
    (image_body(loc_items=[{"id": "14-02"}]), "loc_items"),
    (image_body(apply_start_time="2020-01-01"), "apply_start_time"),
    (image_body(apply_start_time="20200230"), "apply_start_time"),
    (image_body(apply_start_time=20200101), "apply_start_time"),
    (image_body(main_field=["phone"]), "main_field"),
]


@pytest.mark.parametrize(("body", "field"), BAD_IMAGE_SEARCH_BODIES)
async def test_invalid_image_search_submit_is_68300004_naming_the_field(session, emu, body, field):
    """Each invalid submit body gets 68300004 with the offending field in error_msg."""
    status, payload = await call(session, emu, SUBMIT, body)
    assert status == 200
    assert payload["status"] is False
    assert payload["error_code"] == 68300004
    assert payload["error_msg"].startswith("Invalid parameter!")
    assert field in payload["error_msg"]
    assert emu.stats.submits == []


async def test_non_json_submit_is_68300004(session, emu):
    """A body that is not JSON gets 68300004."""
    async with session.post(
        emu.base_url + SUBMIT, data=b"{not json", params={"apikey": "sk-demo"}
    ) as response:
        assert (await response.json())["error_code"] == 68300004


async def test_image_search_submit_answers_a_task_id_after_the_scaled_latency(session):
    """A valid submit waits submit_latency * time_scale (+-20%) and answers data.task_id."""
    async with Emulator(fast(time_scale=0.01)) as emu:
        started = time.monotonic()
        status, payload = await call(
            session,
            emu,
            SUBMIT,
            image_body(loc_items=["14-02"], apply_start_time="20200101", main_field="phone"),
        )
        elapsed = time.monotonic() - started
    assert status == 200
    assert set(payload) == {"data", "status", "error_code"}
    assert payload["status"] is True
    assert payload["error_code"] == 0
    assert uuid.UUID(payload["data"]["task_id"]).version == 4
    assert 0.04 <= elapsed < 1.0


async def test_report_goes_from_running_to_done_after_the_task_duration(session):
    """A poll before the duration shows task_status 1 only; after it, 2 with the report."""
    async with Emulator(fast(task_duration=100.0)) as emu:  # 0.1 s
        _, submitted = await call(session, emu, SUBMIT, image_body())
        task_id = submitted["data"]["task_id"]
        _, early = await call(session, emu, REPORT, {"task_id": task_id})
        assert early == {
            "data": {"task_id": task_id, "task_status": 1},
            "status": True,
            "error_code": 0,
        }
        await asyncio.sleep(0.12)
        _, done = await call(session, emu, REPORT, {"task_id": task_id})
        data = done["data"]
        assert data["task_status"] == 2
        assert {"line_drawing_base64", "patent_messages", "rrffusion_response", "report"} <= set(
            data
        )
        assert emu.stats.polls_by_task[task_id] == 2


async def test_failed_tasks_end_with_status_3(session):
    """With fail_rate=1 every task ends with task_status 3 and nothing else."""
    async with Emulator(fast(fail_rate=1.0)) as emu:
        _, submitted = await call(session, emu, SUBMIT, image_body())
        task_id = submitted["data"]["task_id"]
        assert await wait_done(session, emu, task_id) == {"task_id": task_id, "task_status": 3}


@pytest.mark.parametrize("body", [{}, {"task_id": ""}, {"task_id": 3}, [], {"task_id": "nope"}])
async def test_report_of_a_missing_or_unknown_task_is_68300004(session, emu, body):
    """A missing, malformed or unknown task_id gets 68300004."""
    _, payload = await call(session, emu, REPORT, body)
    assert payload["error_code"] == 68300004


async def test_report_of_another_accounts_task_is_68300004(session):
    """A task is visible only to the account that created it."""
    async with Emulator(fast(api_keys={"sk-a", "sk-b"})) as emu:
        _, submitted = await call(session, emu, SUBMIT, image_body(), key="sk-a")
        task_id = submitted["data"]["task_id"]
        _, payload = await call(session, emu, REPORT, {"task_id": task_id}, key="sk-b")
        assert payload["error_code"] == 68300004


async def test_task_durations_vary_with_sigma(session):
    """task_duration_sigma > 0 draws lognormal durations: tasks finish at different times."""
    async with Emulator(fast(task_duration=50.0, task_duration_sigma=1.0)) as emu:
        for _ in range(5):
            await call(session, emu, SUBMIT, image_body())
        durations = {round(t.ready_at - t.created_at, 6) for t in emu.app[STATE_KEY].tasks.values()}
        assert len(durations) == 5


BAD_WORKFLOW_BODIES = [
    ([1], ["body"], "model_attributes_type"),
    ({"url": 5}, ["body", "url"], "string_type"),
    ({"url": "https://img.example/a.png", "country": "US"}, ["body", "country"], "list_type"),
    (
        {"url": "https://img.example/a.png", "country": ["US", 1]},
        ["body", "country", 1],
        "string_type",
    ),
    ({"url": "https://img.example/a.png", "title": 1}, ["body", "title"], "string_type"),
    (
        {"url": "https://img.example/a.png", "apply_start_time": "2020-01-01"},
        ["body", "apply_start_time"],
        "value_error",
    ),
    (
        {"url": "https://img.example/a.png", "apply_end_time": "20201301"},
        ["body", "apply_end_time"],
        "value_error",
    ),
    (
        {
            "url": "https://img.example/a.png",
            "apply_start_time": "20240101",
            "apply_end_time": "20200101",
        },
        ["body", "apply_end_time"],
        "value_error",
    ),
    (
        {"url": "https://img.example/a.png", "simple_legal_status": "1,3"},
        ["body", "simple_legal_status"],
        "value_error",
    ),
    (
        {"url": "https://img.example/a.png", "loc_items": [{"desc": "box"}]},
        ["body", "loc_items", 0, "id"],
        "missing",
    ),
    (
        {"url": "https://img.example/a.png", "loc_items": ["09-01"]},
        ["body", "loc_items", 0],
        "model_attributes_type",
    ),
    (
        {"url": "https://img.example/a.png", "loc_items": {"id": "09-01"}},
        ["body", "loc_items"],
        "list_type",
    ),
    ({"title": "no image"}, ["body"], "value_error"),
    ({"target_image_base64": "***not base64***"}, ["body", "target_image_base64"], "value_error"),
    ({"url": "file:///etc/passwd"}, ["body", "url"], "value_error"),
]


@pytest.mark.parametrize(("body", "loc", "kind"), BAD_WORKFLOW_BODIES)
async def test_invalid_workflow_body_is_a_fastapi_422(session, emu, body, loc, kind):
    """Type and format errors get HTTP 422 with a FastAPI-style detail list."""
    status, payload = await call(session, emu, WORKFLOW, body)
    assert status == 422
    assert set(payload) == {"detail"}
    for entry in payload["detail"]:
        assert set(entry) == {"loc", "msg", "type"}
        assert entry["loc"][0] == "body"
    assert {"loc": loc, "type": kind} in [
        {"loc": e["loc"], "type": e["type"]} for e in payload["detail"]
    ]
    assert emu.stats.count(WORKFLOW, 422) == 1


async def test_workflow_body_that_is_not_json_is_a_422(session, emu):
    """A body that is not JSON gets a 422 json_invalid entry."""
    async with session.post(
        emu.base_url + WORKFLOW, data=b"{oops", params={"apikey": "sk-demo"}
    ) as response:
        assert response.status == 422
        assert (await response.json())["detail"][0]["type"] == "json_invalid"


async def test_workflow_success_has_the_top_level_shape(session, emu):
    """A valid workflow submit answers status/message/success/task_id/error_code, no data."""
    status, payload = await call(
        session,
        emu,
        WORKFLOW,
        {
            "target_image_base64": PNG_1X1,
            "title": "FTO",
            "loc_items": [{"id": "09-01"}],
            "simple_legal_status": "0,1,2",
            "user_id": "u1",
        },
    )
    assert status == 200
    assert payload == {
        "status": True,
        "message": "任务提交成功",
        "success": True,
        "task_id": payload["task_id"],
        "error_code": 0,
    }
    record = emu.stats.submits[0]
    assert record.kind == "workflow"
    assert record.image.startswith("sha256:")


async def test_workflow_gateway_errors_use_the_platform_envelope(session, emu):
    """Auth errors on the workflow path come in the platform envelope, not as 422."""
    status, payload = await call(session, emu, WORKFLOW, {"url": 1}, key=None)
    assert (status, payload["error_code"], payload["status"]) == (401, 67200008, False)


async def test_workflow_result_has_the_report_shape_in_english(session, emu):
    """The guessed result path answers the image-search report shape, English, US/CN/EU."""
    _, submitted = await call(session, emu, WORKFLOW, {"url": "https://img.example/w.png"})
    task_id = submitted["task_id"]
    _, wrong_path = await call(session, emu, REPORT, {"task_id": task_id})
    assert wrong_path["error_code"] == 68300004
    data = await wait_done(session, emu, task_id, WORKFLOW_RESULT)
    assert data["task_status"] == "success"  # string statuses on workflow by default (§3.2)
    assert data["report"]["country"] == ["US", "CN", "EU"]
    for comparison in data["report"]["comparisons"]:
        assert comparison["suggestion"].isascii()
        assert comparison["status"] in (1, 3)  # default simple_legal_status "1,2"


async def test_image_search_task_is_not_on_the_workflow_result_path(session, emu):
    """An image-search task_id polled on the workflow result path gets 68300004."""
    _, submitted = await call(session, emu, SUBMIT, image_body())
    _, payload = await call(
        session, emu, WORKFLOW_RESULT, {"task_id": submitted["data"]["task_id"]}
    )
    assert payload["error_code"] == 68300004


async def test_workflow_url_wins_over_base64(session, emu):
    """When both url and target_image_base64 are given, the url is the image identity."""
    await call(
        session,
        emu,
        WORKFLOW,
        {"url": "https://img.example/both.png", "target_image_base64": PNG_1X1},
    )
    assert emu.stats.submits[0].image == "https://img.example/both.png"


def test_submit_whose_client_gave_up_after_the_body_was_read_is_recorded_unanswered() -> None:
    """A client that times out while the emulator waits the submit latency leaves a task
    created for nobody: its record says ``unanswered`` (an answered one does not)."""

    async def main() -> list[bool]:
        async with Emulator(fast(time_scale=0.1)) as emu, aiohttp.ClientSession() as session:
            # The submit latency is 0.4-0.6 s here: 0.1 s is too short, 5 s long enough.
            for timeout in (0.1, 5.0):
                with contextlib.suppress(TimeoutError):
                    async with session.post(
                        emu.base_url + SUBMIT, json=image_body(), params={"apikey": "sk-demo"},
                        timeout=aiohttp.ClientTimeout(total=timeout),
                    ) as response:
                        await response.read()
                await asyncio.sleep(1.0)  # the abandoned task is created meanwhile
            return [record.unanswered for record in emu.stats.submits]

    assert run_virtual(main) == [True, False]
