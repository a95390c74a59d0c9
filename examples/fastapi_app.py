"""A FastAPI service that screens one product image URL per request.

One ``FtoClient`` is owned by the app's lifespan (created at startup, closed at
shutdown): every request shares its pool, token, rate gate, cache and flights.
``client.screen`` does the rest:

* equal concurrent requests share one task (single flight across callers);
* each request has a deadline (``SCREEN_DEADLINE`` seconds): past it the answer is 504,
  while the task goes on and its report lands in the client's cache, so asking again
  costs nothing;
* ``max_waiting`` bounds the questions answered at once: one more gets 429 with a
  ``Retry-After`` header (``OverloadedError``), at once;
* a spent quota or balance is 503 (``QuotaExceededError``); bad input is 400.

``POST /screen`` takes JSON ``{"url": "https://...", "country": ["US"], "lang": "en"}``
and answers the outcome's flat record (``Outcome.to_record()``, the same fields as a
row of the CLI's JSONL output), without the raw report.

Try it against the local emulator (needs ``pip install fastapi uvicorn``)::

    fto-async emulator --port 8765 --time-scale 0.05
    PATSNAP_BASE_URL=http://127.0.0.1:8765 PATSNAP_API_KEY=sk-demo \\
        uvicorn examples.fastapi_app:app --port 8080
    curl -s localhost:8080/screen -H 'content-type: application/json' \\
        -d '{"url": "https://example.com/lamp.png", "country": ["US"], "lang": "en"}'
"""

from __future__ import annotations

import math
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException

from fto_async import (
    DeadlineExceededError,
    FtoClient,
    ImageSearchRequest,
    InvalidRequestError,
    OverloadedError,
    PollConfig,
    QuotaExceededError,
    ReportCache,
)

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


@app.post("/screen")
async def screen(body: dict[str, Any]) -> dict[str, Any]:
    try:
        request = ImageSearchRequest(
            url=body.get("url"), country=body.get("country", ["US"]),
            lang=body.get("lang", "en"),
        )  # fmt: skip
        outcome = await app.state.fto.screen(request)
    except InvalidRequestError as exc:
        raise HTTPException(400, str(exc)) from None
    except OverloadedError as exc:
        raise HTTPException(429, str(exc),
                            headers={"Retry-After": str(math.ceil(exc.retry_after))}) from None
    except DeadlineExceededError as exc:
        raise HTTPException(504, str(exc)) from None
    if isinstance(outcome.error, QuotaExceededError):
        raise HTTPException(503, "the screening quota is spent; try again later")
    record = outcome.to_record()
    record.pop("report")
    return record
