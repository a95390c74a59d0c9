"""A FastAPI service that screens one product image per request.

One ``FtoClient`` is owned by the app's lifespan (created at startup, closed at
shutdown): every request shares its pool, token, rate gate, cache and flights.
``client.screen`` does the rest:

* equal concurrent requests share one task (single flight across callers);
* each request has a deadline (``SCREEN_DEADLINE`` seconds): past it the answer is 504,
  while the task goes on and its report lands in the client's cache, so asking again
  costs nothing;
* ``max_waiting`` bounds the questions answered at once: one more gets 429 with a
  ``Retry-After`` header (``OverloadedError``), at once;
* a caller who disconnects stops waiting (the handler answers 499 to nobody), while
  the task it started goes on and its report lands in the cache;
* a spent quota or balance is 503 (``QuotaExceededError``); bad input is 400.

Routes:

* ``POST /screen`` takes JSON ``{"url": "https://...", "country": ["US"], "lang": "en"}``
  and answers the outcome's flat record (``Outcome.to_record()``, the same fields as a
  row of the CLI's JSONL output), without the raw report.
* ``POST /tasks`` (for long tasks, e.g. ``{"kind": "workflow", ...}``) submits and
  answers ``202 Accepted`` at once with the task id and a ``Location``,
  ``/tasks/{token}``: the poller's continuation token (versioned JSON, no secret),
  base64url-encoded. ``GET /tasks/{token}`` polls once: ``202`` with
  ``Retry-After`` while the task runs, then ``200`` and the record (any replica of the
  app can answer it: the token holds all it needs).

Try it against the local emulator (needs ``pip install fastapi uvicorn``)::

    fto-async emulator --port 8765 --time-scale 0.05
    PATSNAP_BASE_URL=http://127.0.0.1:8765 PATSNAP_API_KEY=sk-demo \\
        uvicorn examples.fastapi_app:app --port 8080
    curl -s localhost:8080/screen -H 'content-type: application/json' \\
        -d '{"url": "https://example.com/lamp.png", "country": ["US"], "lang": "en"}'
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import math
import os
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from fto_async import (
    DeadlineExceededError,
    FtoClient,
    ImageSearchRequest,
    InvalidRequestError,
    Outcome,
    OverloadedError,
    PollConfig,
    QuotaExceededError,
    ReportCache,
    TaskFailedError,
    TaskPoller,
    WorkflowRequest,
)

T = TypeVar("T")

#: Seconds a request may take in all (under a typical 30 s gateway timeout).
SCREEN_DEADLINE = float(os.environ.get("SCREEN_DEADLINE", "25"))
#: Distinct questions answered at once before new ones get 429.
MAX_WAITING = int(os.environ.get("MAX_WAITING", "50"))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    scale = float(os.environ.get("FTO_TIME_SCALE", "1"))  # < 1 only against the emulator
    cache_path = os.environ.get("FTO_CACHE")
    cache = ReportCache(cache_path) if cache_path else None
    client = FtoClient(  # credentials from PATSNAP_* (as FtoClient.from_env)
        cache=cache, max_waiting=MAX_WAITING, poll=PollConfig().scaled(scale)
    )
    app.state.fto = client.with_options(timeout=SCREEN_DEADLINE)
    try:
        yield
    finally:
        await client.aclose()
        if cache is not None:
            await cache.aclose()


app = FastAPI(lifespan=lifespan)


@app.exception_handler(InvalidRequestError)
async def bad_input(_: Request, exc: InvalidRequestError) -> JSONResponse:
    return JSONResponse({"detail": str(exc), "field": exc.field}, status_code=400)


@app.exception_handler(OverloadedError)
async def overloaded(_: Request, exc: OverloadedError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=429,
                        headers={"Retry-After": str(math.ceil(exc.retry_after))})  # fmt: skip


@app.exception_handler(QuotaExceededError)
async def quota_spent(_: Request, exc: QuotaExceededError) -> JSONResponse:
    return JSONResponse({"detail": "the screening quota is spent; try again later"},
                        status_code=503)  # fmt: skip


def make_request(body: dict[str, Any]) -> ImageSearchRequest | WorkflowRequest:
    """The request a JSON body asks for (raises InvalidRequestError: 400)."""
    if body.get("kind") == "workflow":
        return WorkflowRequest(url=body.get("url"), country=body.get("country", ["US"]))
    return ImageSearchRequest(url=body.get("url"), country=body.get("country", ["US"]),
                              lang=body.get("lang", "en"))  # fmt: skip


def public(outcome: Outcome) -> dict[str, Any]:
    """The outcome's flat record, without the raw report."""
    record = outcome.to_record()
    record.pop("report")
    return record


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await ``work`` until the caller disconnects; then stop waiting (499). A flight of
    ``screen`` is shielded: its task goes on and its report lands in the cache."""
    job = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(disconnected(request))
    try:
        await asyncio.wait({job, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not job.done():
            job.cancel()  # this caller only: the shared flight is not cancelled
            with contextlib.suppress(asyncio.CancelledError):
                await job
    if job.cancelled():
        raise HTTPException(499, "the caller disconnected")
    return job.result()


async def disconnected(request: Request) -> None:
    """Return when the ASGI server says the caller has gone (the body is read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


@app.post("/screen")
async def screen(body: dict[str, Any], http: Request) -> dict[str, Any]:
    request = make_request(body)
    try:
        outcome = await unless_disconnected(http, app.state.fto.screen(request))
    except DeadlineExceededError as exc:
        raise HTTPException(504, str(exc)) from None
    if isinstance(outcome.error, QuotaExceededError):
        raise outcome.error  # 503
    return public(outcome)


# -- long tasks: 202 + a continuation token, then GET the result --------------------------


def encode_token(poller: TaskPoller) -> str:
    return base64.urlsafe_b64encode(poller.continuation_token().encode()).decode().rstrip("=")


def decode_token(token: str) -> TaskPoller:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequestError("token", "is not a task token") from None
    return TaskPoller.from_continuation_token(app.state.fto, text)  # InvalidRequestError


def retry_after(kind: str) -> str:
    """Seconds to wait before polling: the learned median task duration, else 5."""
    typical = app.state.fto.durations.quantile(kind, 0.5)
    return str(max(1, math.ceil(typical or 5)))


@app.post("/tasks", status_code=202)
async def start_task(body: dict[str, Any]) -> JSONResponse:
    poller = await app.state.fto.begin_screening(make_request(body))
    location = f"/tasks/{encode_token(poller)}"
    return JSONResponse({"task_id": poller.task_id, "kind": poller.kind, "poll": location},
                        status_code=202, headers={"Location": location,
                                                  "Retry-After": retry_after(poller.kind)})


@app.get("/tasks/{token}")
async def task_result(token: str) -> JSONResponse:
    poller = decode_token(token)
    report = await poller.poll()
    if not report.done:
        return JSONResponse({"task_id": poller.task_id, "status": "running"}, status_code=202,
                            headers={"Retry-After": retry_after(poller.kind)})  # fmt: skip
    failed = None if poller.status() == "succeeded" else TaskFailedError(poller.task_id)
    outcome = Outcome(poller.task_id, None, poller.task_id, report, failed)
    return JSONResponse(public(outcome))
