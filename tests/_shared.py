"""What every test suite shares: the wire paths, the emulator's demo account, tiny images,
and the helpers that collect a batch and check that it left no task behind.

The paths are spelled out here rather than imported from the package, so that a wrong
path in the package fails the tests instead of agreeing with them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fto_async import FtoError

SUBMIT = "/ai/image-search/submit"
REPORT = "/ai/image-search/report"
WORKFLOW = "/api/mcp/submit-workflow"
WORKFLOW_RESULT = "/api/mcp/workflow-result"
UPLOAD = "/image-search/image-upload"
TOKEN = "/oauth/token"

#: The emulator's demo account, in both schemes.
CLIENT_ID = "demo-client"
CLIENT_SECRET = "demo-secret"
API_KEY = "sk-demo"

#: A valid 1x1 PNG, and bytes that only start like a JPEG (enough for the magic check).
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010804000000b51c0c02"
    "0000000b4944415478da63646000000006000230819d0b0000000049454e44ae426082"
)
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64


def credentials(scheme: str) -> dict[str, str]:
    """Constructor keywords of the emulator's demo account (``oauth`` or ``sk``)."""
    if scheme == "sk":
        return {"api_key": API_KEY}
    return {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}


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
