"""Image upload: PNG/JPEG under 4 MB become a URL the emulator serves."""

from __future__ import annotations

import base64
import hashlib
import io

import aiohttp
import pytest

from tests._shared import UPLOAD

from ._helpers import PNG_1X1

PNG = base64.b64decode(PNG_1X1)
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64
LIMIT = 4 * 1024 * 1024


async def _upload(session, emu, payload: bytes | None, *, field: str = "image", name="a.png"):
    form = aiohttp.FormData()
    if payload is not None:
        form.add_field(
            field, io.BytesIO(payload), filename=name, content_type="application/octet-stream"
        )
    else:
        form.add_field("other", "x")
    async with session.post(
        emu.base_url + UPLOAD, data=form, params={"apikey": "sk-demo"}
    ) as response:
        return response.status, await response.json()


@pytest.mark.parametrize(
    ("payload", "ext", "media"), [(PNG, "png", "image/png"), (JPEG, "jpg", "image/jpeg")]
)
async def test_upload_answers_a_url_that_serves_the_image(session, emu, payload, ext, media):
    """A PNG or JPEG upload answers data.url and expire 32400; the URL serves the bytes."""
    status, body = await _upload(session, emu, payload)
    assert status == 200
    assert body["status"] is True
    data = body["data"]
    assert data["expire"] == 32400
    digest = hashlib.sha256(payload).hexdigest()
    assert data["url"] == f"{emu.base_url}/_emulator/images/{digest}.{ext}"
    async with session.get(data["url"]) as response:
        assert response.status == 200
        assert response.content_type == media
        assert await response.read() == payload
    assert emu.stats.count(UPLOAD, 0) == 1


async def test_upload_just_under_4mb_is_accepted(session, emu):
    """A PNG of exactly 4 MiB is accepted: P010's "maximum 4096KB" is inclusive (§6)."""
    _, body = await _upload(session, emu, PNG + b"\x00" * (LIMIT - len(PNG)))
    assert body["error_code"] == 0


@pytest.mark.parametrize(
    "payload",
    [b"hello, this is text", b"", PNG + b"\x00" * (LIMIT + 1 - len(PNG))],
    ids=["text", "empty", "4MiB+1"],
)
async def test_upload_that_is_not_a_small_png_or_jpeg_is_68300010(session, emu, payload):
    """A non-image file, an empty file, or a file of 4 MiB or more gets 68300010."""
    _, body = await _upload(session, emu, payload, name="a.txt")
    assert body["error_code"] == 68300010
    assert body["error_msg"] == "The file does not comply with upload specifications!"


async def test_upload_without_the_image_field_is_68300004(session, emu):
    """A multipart body without an 'image' field gets 68300004."""
    _, body = await _upload(session, emu, None)
    assert body["error_code"] == 68300004


async def test_upload_that_is_not_multipart_is_68300004(session, emu):
    """A JSON body on the upload path gets 68300004."""
    async with session.post(
        emu.base_url + UPLOAD, json={"image": "x"}, params={"apikey": "sk-demo"}
    ) as response:
        assert (await response.json())["error_code"] == 68300004


async def test_unknown_image_is_404(session, emu):
    """An image name that was never uploaded is a plain 404."""
    async with session.get(emu.base_url + "/_emulator/images/nope.png") as response:
        assert response.status == 404
