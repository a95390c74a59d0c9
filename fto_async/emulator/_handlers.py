"""The platform's endpoints: token, image-search, workflow and 1-vs-1 tasks, image upload.

Each handler runs after the gateway (see ``_gateway``), which has already authenticated the
call, applied the quotas and QPS and drawn the faults.

The result path of ``/api/mcp/submit-workflow`` tasks (``workflow_result_path``, default
``/api/mcp/workflow-result``) is a GUESS: the platform publishes no companion endpoint. The
emulator answers it like ``/ai/image-search/report``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import time
from typing import Any, Final

import attrs
from aiohttp import BodyPartReader, web

from ._gateway import ACCOUNT_KEY, AMBIGUOUS_KEY
from ._reports import ReportInputs, build_1v1_result, build_result
from ._state import STATE_KEY, EmulatorState, Task
from ._validation import (
    MAX_IMAGE_BYTES,
    check_1v1_create,
    check_image_search_submit,
    check_workflow_submit,
    workflow_image_identity,
)
from ._wire import envelope_error, envelope_ok, json_reply

__all__ = [
    "image_search_report",
    "image_search_submit",
    "image_upload",
    "one_vs_one_create",
    "one_vs_one_query",
    "serve_image",
    "token",
    "workflow_result",
    "workflow_submit",
]

#: The largest upload accepted, in bytes: P010's "maximum 4096KB", inclusive (reference §6).
_MAX_UPLOAD: Final = MAX_IMAGE_BYTES
#: Validity of an uploaded image URL, in seconds (9 h), as the platform reports it.
_UPLOAD_EXPIRE: Final = 32400
_MAGIC: Final = ((b"\x89PNG\r\n\x1a\n", "png", "image/png"), (b"\xff\xd8\xff", "jpg", "image/jpeg"))
_WORKFLOW_COUNTRIES: Final = ("US", "CN", "EU")
# simple_legal_status (0 Inactive, 1 Active, 2 Pending; 220/221 PCT designated stage
# expired/current, 999 Undetermined: reference §9) -> comparisons[].status (1, 2, 3).
_LEGAL_TO_STATUS: Final = {"0": 2, "1": 1, "2": 3, "220": 2, "221": 3, "999": 3}
_INVALID: Final = object()


def _now() -> float:
    return asyncio.get_running_loop().time()


async def _read_json(request: web.Request) -> Any:
    """Return the decoded JSON body, or ``_INVALID`` when it is not JSON."""
    try:
        return json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        return _INVALID


def _basic_credentials(header: str) -> tuple[str, str] | None:
    """Return (client_id, secret) from an HTTP Basic header, or None if there is none."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, ValueError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (client_id, secret) if sep else None


async def token(request: web.Request) -> web.Response:
    """``POST /oauth/token``: client-credentials grant with HTTP Basic client_id:secret."""
    state = request.app[STATE_KEY]
    state.stats.token_requests += 1
    form = await request.post()
    if form.get("grant_type") != "client_credentials":
        return envelope_error(67200015)
    credentials = _basic_credentials(request.headers.get("Authorization", ""))
    if credentials is None:
        return envelope_error(67200003)
    client_id, password = credentials
    secret = state.config.clients.get(client_id)
    if secret is None or not hmac.compare_digest(secret.encode(), password.encode()):
        return envelope_error(67200003)
    ttl = state.config.token_ttl
    return json_reply(
        {
            "token": state.issue_token(client_id, _now()),
            "token_type": "BearerToken",
            "expires_in": int(ttl),
            "status": "approved",
            "issued_at": str(int(time.time() * 1000)),
        }
    )


async def _create(
    state: EmulatorState,
    request: web.Request,
    kind: str,
    inputs: ReportInputs,
) -> tuple[Task, bool]:
    """Spend balance, wait the submit latency, create the task; return it and the ambiguity."""
    account = request[ACCOUNT_KEY]
    if kind != "one-vs-one":  # what has been published so far is part of the answer
        config = state.config
        inputs = attrs.evolve(
            inputs, publish_share=config.publish_share, publish_round=config.publish_round
        )
    state.spend_balance(account)
    await state.sleep(state.submit_delay())
    ambiguous = request.get(AMBIGUOUS_KEY, False)
    transport = request.transport  # None once the client has closed the connection
    task = state.create_task(
        account=account, kind=kind, inputs=inputs, now=_now(), ambiguous=ambiguous,
        unanswered=transport is None or transport.is_closing(),
    )
    return task, ambiguous


async def image_search_submit(request: web.Request) -> web.Response:
    """``POST /ai/image-search/submit``: validate, wait, create a task, answer its id."""
    state = request.app[STATE_KEY]
    body = await _read_json(request)
    if not state.has_balance(request[ACCOUNT_KEY]):
        return envelope_error(67200005)
    problem = check_image_search_submit(body)
    if problem is not None:
        return envelope_error(68300004, problem)
    inputs = ReportInputs(
        image=body["url"],
        countries=tuple(dict.fromkeys(body["country"])),
        lang=body["lang"],
        loc=tuple(body.get("loc_items") or ()),
        apply_start_time=body.get("apply_start_time"),
    )
    task, ambiguous = await _create(state, request, "image-search", inputs)
    if ambiguous:
        return envelope_error(67200100)
    return envelope_ok({"task_id": task.task_id})


def _workflow_inputs(body: dict[str, Any]) -> ReportInputs:
    legal = str(body.get("simple_legal_status") or "1,2").replace(" ", "").split(",")
    return ReportInputs(
        image=workflow_image_identity(body),
        countries=tuple(dict.fromkeys(c for c in body.get("country") or () if c))
        or _WORKFLOW_COUNTRIES,
        lang="en",
        loc=tuple(item["id"] for item in body.get("loc_items") or ()),
        apply_start_time=body.get("apply_start_time"),
        apply_end_time=body.get("apply_end_time"),
        statuses=tuple(sorted({_LEGAL_TO_STATUS[code] for code in legal})),
    )


async def workflow_submit(request: web.Request) -> web.Response:
    """``POST /api/mcp/submit-workflow``: FastAPI-style 422s, top-level success fields."""
    state = request.app[STATE_KEY]
    raw = await request.read()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        position = exc.pos if isinstance(exc, json.JSONDecodeError) else 0
        detail = [{"loc": ["body", position], "msg": "JSON decode error", "type": "json_invalid"}]
        return json_reply({"detail": detail}, status=422, code=422)
    if not state.has_balance(request[ACCOUNT_KEY]):
        return envelope_error(67200005)
    detail = check_workflow_submit(body)
    if detail:
        return json_reply({"detail": detail}, status=422, code=422)
    task, ambiguous = await _create(state, request, "workflow", _workflow_inputs(body))
    if ambiguous:
        return envelope_error(67200100)
    return json_reply(
        {
            "status": True,
            "message": "任务提交成功",
            "success": True,
            "task_id": task.task_id,
            "error_code": 0,
        }
    )


#: ``task_status`` as agent-style workflows send it (reference §3.2).
_STATUS_WORDS: Final = {1: "running", 2: "success", 3: "failed"}


def _status(state: EmulatorState, task: Task, code: int) -> int | str:
    """``task_status`` ``code`` in the encoding ``string_status`` asks for this kind."""
    mode = state.config.string_status
    if mode == "all" or (mode == "workflow" and task.kind == "workflow"):
        return _STATUS_WORDS[code]
    return code


def _task_data(state: EmulatorState, task: Task, now: float) -> dict[str, Any]:
    """Return the ``data`` of a result poll: status 1, 3, or 2 with the report fields."""
    if now < task.ready_at:
        return {"task_id": task.task_id, "task_status": _status(state, task, 1)}
    if task.will_fail:
        return {"task_id": task.task_id, "task_status": _status(state, task, 3)}
    done = _status(state, task, 2)
    if task.kind == "one-vs-one":
        return {"task_id": task.task_id, "task_status": done, **build_1v1_result(task.inputs)}
    result = build_result(task.inputs)
    finished_ms = task.created_wall_ms + round((task.ready_at - task.created_at) * 1000)
    return {
        "task_id": task.task_id,
        "task_status": done,
        **result,
        "report": {**result["report"], "operate_date": finished_ms},
    }


async def _poll(request: web.Request, kind: str) -> web.Response:
    state = request.app[STATE_KEY]
    body = await _read_json(request)
    config = state.config
    await state.sleep(config.poll_latency * config.time_scale)
    task_id = body.get("task_id") if isinstance(body, dict) else None
    if not isinstance(task_id, str) or not task_id:
        return envelope_error(68300004, "task_id is required")
    task = state.tasks.get(task_id)
    if task is None or task.kind != kind or task.account != request[ACCOUNT_KEY]:
        return envelope_error(68300004, "task_id does not exist")
    expired = _now() - task.created_at >= config.task_validity * config.time_scale
    if kind == "one-vs-one" and expired:
        return envelope_error(68300004, "task_id does not exist")  # expired: as if unknown
    now = _now()
    state.stats.record_poll(task_id, task.ready_at, now)
    return envelope_ok(_task_data(state, task, now))


async def image_search_report(request: web.Request) -> web.Response:
    """``POST /ai/image-search/report``: the state or result of an image-search task."""
    return await _poll(request, "image-search")


async def workflow_result(request: web.Request) -> web.Response:
    """``POST <workflow_result_path>`` (a guess): the state or result of a workflow task."""
    return await _poll(request, "workflow")


async def one_vs_one_create(request: web.Request) -> web.Response:
    """``POST /ai/infringement-detection-1v1-creation``: one image against one patent."""
    state = request.app[STATE_KEY]
    body = await _read_json(request)
    if not state.has_balance(request[ACCOUNT_KEY]):
        return envelope_error(67200005)
    problem = check_1v1_create(body)
    if problem is not None:
        return envelope_error(68300004, problem)
    inputs = ReportInputs(
        image=body["url"],
        countries=(body["patent_number"][:2],),
        lang=body.get("report_lang") or "cn",
        patent_number=body["patent_number"],
    )
    task, ambiguous = await _create(state, request, "one-vs-one", inputs)
    if ambiguous:
        return envelope_error(67200100)
    return envelope_ok({"task_id": task.task_id})


async def one_vs_one_query(request: web.Request) -> web.Response:
    """``POST /ai/infringement-detection-1v1-query``: state or result; ids expire (8 h)."""
    return await _poll(request, "one-vs-one")


async def _read_part(part: BodyPartReader) -> tuple[bytes, bool]:
    """Read up to ``_MAX_UPLOAD`` bytes of ``part``; drain the rest; say if it was too big."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await part.read_chunk():
        size += len(chunk)
        if size <= _MAX_UPLOAD:
            chunks.append(chunk)
    return b"".join(chunks), size > _MAX_UPLOAD


async def image_upload(request: web.Request) -> web.Response:
    """``POST /image-search/image-upload``: field ``image``, a PNG or JPEG of <= 4,194,304 bytes."""
    state = request.app[STATE_KEY]
    if not request.content_type.startswith("multipart/"):
        return envelope_error(68300004, "image is required (multipart/form-data)")
    image: tuple[bytes, bool] | None = None
    try:
        reader = await request.multipart()
        async for part in reader:
            if isinstance(part, BodyPartReader) and part.name == "image" and image is None:
                image = await _read_part(part)
            elif part is not None:
                await part.release()
    except ValueError:
        return envelope_error(68300004, "the multipart body is malformed")
    if image is None:
        return envelope_error(68300004, "image is required")
    data, too_big = image
    kind = next((k for k in _MAGIC if data.startswith(k[0])), None)
    if too_big or kind is None:
        return envelope_error(68300010)
    name = f"{hashlib.sha256(data).hexdigest()}.{kind[1]}"
    state.images[name] = (data, kind[2])
    config = state.config
    await state.sleep(config.upload_latency * config.time_scale)
    url = f"{request.scheme}://{request.host}/_emulator/images/{name}"
    return envelope_ok({"url": url, "expire": _UPLOAD_EXPIRE})


async def serve_image(request: web.Request) -> web.Response:
    """``GET /_emulator/images/{name}``: the bytes of an uploaded image (no auth)."""
    entry = request.app[STATE_KEY].images.get(request.match_info["name"])
    if entry is None:
        raise web.HTTPNotFound()
    data, content_type = entry
    return web.Response(body=data, content_type=content_type)
