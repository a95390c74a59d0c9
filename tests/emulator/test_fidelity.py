"""The emulator's fidelity options (issue 20): string statuses, bare 429s, the exact upload
limit, key styles, minutes-long workflow tasks, 67200101 on unknown paths, all in --help."""

from __future__ import annotations

import aiohttp
import pytest

from fto_async.emulator import Emulator, EmulatorConfig
from fto_async.emulator._cli import main as emulator_main

from ._helpers import call, fast, image_body, wait_done

SUBMIT, REPORT = "/ai/image-search/submit", "/ai/image-search/report"
WORKFLOW, WORKFLOW_RESULT = "/api/mcp/submit-workflow", "/api/mcp/workflow-result"


def test_help_documents_every_fidelity_option(capsys):
    """--help names --string-status (workflow default), --http-429-rate, --key-auth,
    --workflow-task-duration, the exact upload limit and 67200101."""
    assert emulator_main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for needle in ("--string-status", "workflow (default)", "--http-429-rate", "--key-auth",
                   "--workflow-task-duration", "4,194,304 bytes inclusive", "67200101"):
        assert needle in text, needle


def test_bad_option_values_are_usage_errors(capsys):
    """--string-status maybe / --key-auth cookie: exit 2 naming the field."""
    assert emulator_main(["--string-status", "maybe"]) == 2
    assert "string_status" in capsys.readouterr().err
    assert emulator_main(["--key-auth", "cookie"]) == 2
    assert "key_auth" in capsys.readouterr().err


@pytest.mark.parametrize(("mode", "image", "workflow"), [
    ("workflow", 2, "success"), ("all", "success", "success"), ("none", 2, 2),
])  # fmt: skip
async def test_string_status_modes(session, mode, image, workflow):
    """workflow (default): strings on workflow tasks only; all: everywhere; none: numbers."""
    config = fast() if mode == "workflow" else fast(string_status=mode)
    async with Emulator(config) as emu:
        _, first = await call(session, emu, SUBMIT, image_body())
        _, second = await call(session, emu, WORKFLOW, {"url": "https://img.example/w.png"})
        assert (await wait_done(session, emu, first["data"]["task_id"]))["task_status"] == image
        done = await wait_done(session, emu, second["task_id"], WORKFLOW_RESULT)
        assert done["task_status"] == workflow


async def test_workflow_tasks_run_for_minutes_scaled_by_time_scale(session):
    """--workflow-task-duration 300 at time scale 0.0001 is 30 ms: running right after the
    submit, done later; image-search tasks keep --task-duration."""
    config = EmulatorConfig(time_scale=0.0001, qps=None, workflow_task_duration=300.0,
                            task_duration=1.0)  # fmt: skip
    async with Emulator(config) as emu:
        _, submitted = await call(session, emu, WORKFLOW, {"url": "https://img.example/w.png"})
        _, first = await call(session, emu, WORKFLOW_RESULT, {"task_id": submitted["task_id"]})
        assert first["data"]["task_status"] == "running"
        done = await wait_done(session, emu, submitted["task_id"], WORKFLOW_RESULT)
        assert done["task_status"] == "success"


async def test_bare_429_variants(session):
    """At http_429_rate 1: HTTP 429 with no envelope (empty, text, or Retry-After: 0), on
    business paths and on /oauth/token, recorded with code 429 and not admitted."""
    async with Emulator(fast(http_429_rate=1.0)) as emu:
        seen = []
        for _ in range(3):
            async with session.post(emu.base_url + SUBMIT, json=image_body(),
                                    params={"apikey": "sk-demo"}) as response:  # fmt: skip
                seen.append((response.status, await response.text(),
                             response.headers.get("Retry-After")))  # fmt: skip
        assert {s for s, _, _ in seen} == {429}
        assert {t for _, t, _ in seen} == {"", "Too Many Requests"}
        assert "0" in {h for _, _, h in seen}
        async with session.post(emu.base_url + "/oauth/token",
                                data={"grant_type": "client_credentials"}) as response:
            assert response.status == 429
        assert emu.stats.count(SUBMIT, 429) == 3
        assert emu.stats.count("/oauth/token", 429) == 1
        assert emu.stats.submits == []


@pytest.mark.parametrize(("accepts", "query", "header", "code"), [
    ("query", True, False, 0), ("query", False, True, 67200008), ("query", True, True, 0),
    ("bearer", False, True, 0), ("bearer", True, False, 67200008), ("bearer", True, True, 0),
    ("any", True, False, 0), ("any", False, True, 0),
])  # fmt: skip
async def test_key_auth_reads_one_channel(session, accepts, query, header, code):
    """key_auth query/bearer reads only its channel (as behind a proxy that strips the
    other); any reads both."""
    async with Emulator(fast(key_auth=accepts)) as emu:
        headers = {"Authorization": "Bearer sk-demo"} if header else None
        _, payload = await call(session, emu, SUBMIT, image_body(),
                                key="sk-demo" if query else None, headers=headers)  # fmt: skip
        assert payload["error_code"] == code


async def test_unknown_paths_answer_67200101(session, emu):
    """A path the platform does not have (a guessed result path) answers 67200101, HTTP 404,
    whatever the credentials."""
    for key in ("sk-demo", None):
        status, payload = await call(session, emu, "/api/mcp/no-such-result", {"task_id": "x"},
                                     key=key)  # fmt: skip
        assert (status, payload["error_code"]) == (404, 67200101)


async def test_upload_limit_is_inclusive(session: aiohttp.ClientSession, emu):
    """4,194,304 bytes are accepted, 4,194,305 are 68300010 (reference §6)."""
    import io

    from tests._shared import png_of_size

    for size, code in ((4_194_304, 0), (4_194_305, 68300010)):
        form = aiohttp.FormData()
        form.add_field("image", io.BytesIO(png_of_size(size)), filename="a.png",
                       content_type="image/png")
        async with session.post(emu.base_url + "/image-search/image-upload", data=form,
                                params={"apikey": "sk-demo"}) as response:  # fmt: skip
            assert (await response.json())["error_code"] == code
