"""Helpers for the client tests: a fast emulator, a fast client, a handcrafted server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from fto_async import FtoClient, ImageSearchRequest, PollConfig, RetryConfig
from fto_async.emulator import Emulator, EmulatorConfig
from tests._shared import TOKEN, credentials

#: Client options that never wait long: no backoff, quick polls, no client-side pacing.
FAST_OPTIONS: dict[str, Any] = {
    "qps": 1000.0,
    "timeout": 5.0,
    "retry": RetryConfig.for_testing(),
    "poll": PollConfig(interval=0.01, min_interval=0, timeout=5.0),
}


def emulator(**changes: Any) -> Emulator:
    """An emulator 1000x faster than real time and without a QPS limit."""
    return Emulator(EmulatorConfig(**{"time_scale": 0.001, "qps": None, **changes}))


def make_client(base_url: str, scheme: str = "oauth", **options: Any) -> FtoClient:
    """A client of the demo account at ``base_url`` with :data:`FAST_OPTIONS`."""
    names = ("client_id", "client_secret", "api_key")
    creds: dict[str, Any] = {k: options.pop(k) for k in names if k in options}
    return FtoClient(**(creds or credentials(scheme)), base_url=base_url,
                     **{**FAST_OPTIONS, **options})


@asynccontextmanager
async def running(
    scheme: str = "oauth", emu_config: dict[str, Any] | None = None, **options: Any
) -> AsyncIterator[tuple[Emulator, FtoClient]]:
    """A started emulator and an open client pointing at it; both closed afterwards."""
    async with emulator(**(emu_config or {})) as emu, make_client(
        emu.base_url, scheme, **options
    ) as client:
        yield emu, client


def image_request(url: str = "https://img.example/lamp.png") -> ImageSearchRequest:
    """A valid image-search request."""
    return ImageSearchRequest(url=url, country=["US", "CN"], lang="en")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def handcrafted(routes: dict[str, Handler]) -> AsyncIterator[TestServer]:
    """A TestServer on 127.0.0.1 answering POST ``path`` with ``routes[path]``."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_post(path, handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


def base_url(server: TestServer) -> str:
    """``http://127.0.0.1:PORT`` of a started TestServer."""
    return str(server.make_url("")).rstrip("/")


def envelope(
    data: Any = None, *, code: int = 0, msg: str | None = None, **headers: str
) -> web.Response:
    """The platform envelope as a response (success when ``code`` is 0)."""
    if code:
        body: dict[str, Any] = {"status": False, "error_code": code, "error_msg": msg or "error"}
    else:
        body = {"data": data, "status": True, "error_code": 0}
    return web.Response(text=json.dumps(body), content_type="application/json",
                        headers=headers)


def business_calls(emu: Emulator) -> int:
    """Calls the emulator saw on business paths (everything but ``/oauth/token``)."""
    return emu.stats.count() - emu.stats.count(TOKEN)


class TokenEndpoint:
    """A token endpoint that always grants ``tok-N`` (``requests`` counts them)."""

    def __init__(self) -> None:
        self.requests = 0

    async def handle(self, request: web.Request) -> web.Response:
        """The aiohttp handler."""
        self.requests += 1
        return web.json_response({"token": f"tok-{self.requests}", "token_type": "BearerToken",
                                  "expires_in": 1799, "status": "approved"})
