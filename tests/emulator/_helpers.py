"""Shared helpers for the emulator tests."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from fto_async.emulator import Emulator, EmulatorConfig
from tests._shared import REPORT, TOKEN

PNG_1X1 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)


def fast(**changes: Any) -> EmulatorConfig:
    """Return a config 1000x faster than real time and without a QPS limit."""
    return EmulatorConfig(**{"time_scale": 0.001, "qps": None, **changes})


def image_body(url: str = "https://img.example/product.png", **extra: Any) -> dict[str, Any]:
    """Return a valid /ai/image-search/submit body."""
    return {"url": url, "country": ["US", "CN", "JP"], "lang": "en", **extra}


async def call(
    session: aiohttp.ClientSession,
    emu: Emulator,
    path: str,
    body: Any = None,
    *,
    key: str | None = "sk-demo",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """POST ``body`` as JSON to ``path`` with ``?apikey=key``; return (HTTP status, JSON)."""
    params = {"apikey": key} if key is not None else {}
    async with session.post(
        emu.base_url + path, json=body if body is not None else {}, params=params, headers=headers
    ) as response:
        return response.status, await response.json(content_type=None)


async def get_token(
    session: aiohttp.ClientSession,
    emu: Emulator,
    client_id: str = "demo-client",
    secret: str = "demo-secret",
    grant_type: str = "client_credentials",
) -> tuple[int, Any]:
    """Request an OAuth token; return (HTTP status, JSON)."""
    async with session.post(
        emu.base_url + TOKEN,
        data={"grant_type": grant_type},
        headers={"Authorization": aiohttp.encode_basic_auth(client_id, secret)},
    ) as response:
        return response.status, await response.json()


async def oauth_headers(session: aiohttp.ClientSession, emu: Emulator) -> dict[str, str]:
    """Return the Authorization header of a fresh demo-client token."""
    status, payload = await get_token(session, emu)
    assert status == 200
    return {"Authorization": f"Bearer {payload['token']}"}


async def wait_done(
    session: aiohttp.ClientSession, emu: Emulator, task_id: str, path: str = REPORT
) -> dict[str, Any]:
    """Poll until the task leaves task_status 1; return the ``data``."""
    for _ in range(200):
        _, payload = await call(session, emu, path, {"task_id": task_id})
        data: dict[str, Any] = payload["data"]
        if data["task_status"] not in (1, "running"):
            return data
        await asyncio.sleep(0.005)
    raise AssertionError("task never finished")
