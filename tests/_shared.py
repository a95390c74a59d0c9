"""What every test suite shares: the wire paths, the emulator's demo account, tiny images,
and the helpers that collect a batch and check that it left no task behind.

The paths are spelled out here rather than imported from the package, so that a wrong
path in the package fails the tests instead of agreeing with them.
"""

from __future__ import annotations

import asyncio
import os
import zlib
from collections.abc import AsyncIterator
from typing import Any

from fto_async import FtoError

SUBMIT = "/ai/image-search/submit"
REPORT = "/ai/image-search/report"
WORKFLOW = "/api/mcp/submit-workflow"
WORKFLOW_RESULT = "/api/mcp/workflow-result"
UPLOAD = "/image-search/image-upload"
TOKEN = "/oauth/token"


def unmeasured_env() -> dict[str, str]:
    """This process's environment without coverage's subprocess variables: a Python
    process started with it is not measured (for processes whose lines in-process tests
    reach anyway: measuring one costs about 0.3 s of CPU, and its calls run slower)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_PROCESS_")}


#: The emulator's demo account, in both schemes.
CLIENT_ID = "demo-client"
CLIENT_SECRET = "demo-secret"
API_KEY = "sk-demo"

#: Real, decodable 1x1 images (made with Pillow; the one image rule decodes what it is given).
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108000000003a7e9b55"
    "0000000a4944415478da63f80f00010101001cb08c990000000049454e44ae426082"
)
JPEG = bytes.fromhex(
    "ffd8ffe000104a46494600010100000100010000ffdb004300100b0c0e0c0a100e0d0e1211101318281a"
    "181616183123251d283a333d3c3933383740485c4e404457453738506d51575f626768673e4d717970647"
    "85c656763ffc0000b080001000101011100ffc4001f0000010501010101010100000000000000000102030"
    "405060708090a0bffc400b5100002010303020403050504040000017d0102030004110512213141061351"
    "6107227114328191a1082342b1c11552d1f02433627282090a161718191a25262728292a3435363738393a"
    "434445464748494a535455565758595a636465666768696a737475767778797a838485868788898a9293949"
    "5969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e"
    "2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffda0008010100003f00f40affd9"
)



def png_of_size(size: int) -> bytes:
    """A real, decodable PNG of exactly ``size`` bytes (at least 79): :data:`PNG` with a
    private ancillary chunk that decoders skip, sized to fit."""
    pad = size - len(PNG) - 12
    assert pad >= 0, size
    chunk = b"paDd" + bytes(pad)
    crc = zlib.crc32(chunk).to_bytes(4, "big")
    head = 8 + 25  # the signature and the IHDR chunk
    return PNG[:head] + pad.to_bytes(4, "big") + chunk + crc + PNG[head:]


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
