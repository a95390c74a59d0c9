"""Shared helpers of the reliability suites: a fast emulator, a fast client, collecting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fto_async import FtoClient, FtoError, ImageSearchRequest, PollConfig, RetryConfig
from fto_async.emulator import Emulator, EmulatorConfig

#: Emulator time factor: a 5 s submit takes 25 ms, a 30 s task 150 ms.
SCALE = 0.005
CLIENT_ID = "demo-client"
CLIENT_SECRET = "demo-secret"
API_KEY = "sk-demo"
SUBMIT = "/ai/image-search/submit"
REPORT = "/ai/image-search/report"
TOKEN = "/oauth/token"

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010804000000b51c0c02"
    "0000000b4944415478da63646000000006000230819d0b0000000049454e44ae426082"
)
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64


def emulator(**changes: Any) -> Emulator:
    """An emulator on 127.0.0.1 at :data:`SCALE`, seeded, without a QPS limit by default."""
    return Emulator(EmulatorConfig(**{"time_scale": SCALE, "qps": None, "seed": 11, **changes}))


def credentials(scheme: str) -> dict[str, str]:
    """Constructor keywords of the emulator's demo account (``oauth`` or ``sk``)."""
    if scheme == "sk":
        return {"api_key": API_KEY}
    return {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}


def make_client(emu: Emulator, scheme: str = "oauth", **options: Any) -> FtoClient:
    """A client of the demo account: short backoff, polls at :data:`SCALE`, 200 QPS."""
    settings: dict[str, Any] = {
        "qps": 200.0,
        "timeout": 2.0,
        "retry": RetryConfig(base=0.01, cap=0.1, max_attempts=8),
        "poll": PollConfig().scaled(SCALE),
        **options,
    }
    return FtoClient(**credentials(scheme), base_url=emu.base_url, **settings)


def image_url(i: int | str, tag: str = "item") -> str:
    """The image URL of item ``i`` (the emulator's identity of the item's image)."""
    return f"https://img.example/{tag}/{i}.png"


def request(i: int | str, tag: str = "item") -> ImageSearchRequest:
    """A valid image-search request whose image is unique to ``i``."""
    return ImageSearchRequest(url=image_url(i, tag), country=["US", "CN"], lang="en")


async def collect(iterator: AsyncIterator[Any]) -> tuple[list[Any], FtoError | None]:
    """Every item of ``iterator`` and the FtoError that ended it, if any."""
    items: list[Any] = []
    try:
        async for item in iterator:
            items.append(item)
    except FtoError as exc:
        return items, exc
    return items, None


def other_tasks() -> set[asyncio.Task[Any]]:
    """Live tasks except the current one and the emulator's server-side handlers."""
    current = asyncio.current_task()
    left = set()
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        if task is current or (code is not None and code.co_filename.endswith("web_protocol.py")):
            continue
        left.add(task)
    return left


async def settle(rounds: int = 200) -> set[asyncio.Task[Any]]:
    """Let cancelled tasks unwind; return the tasks still alive (see :func:`other_tasks`)."""
    for _ in range(rounds):
        if not other_tasks():
            break
        await asyncio.sleep(0)
    return other_tasks()
