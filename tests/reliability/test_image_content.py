"""An image is a decodable PNG or JPEG, not three magic bytes: look-alikes (a text file that
starts ``FF D8 FF``, a private key behind a PNG signature, a cut JPEG, a decompression bomb)
are refused with zero calls, on every path (upload, base64 workflow body, catalog file)."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from fto_async import InvalidRequestError, WorkflowRequest, _validate
from fto_async.cli._catalog import Catalog, Defaults
from tests._shared import JPEG, PNG
from tests.client._support import running

KEY = b"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _bomb() -> bytes:
    """A small, valid PNG that declares 100000 x 100000 pixels."""
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))  # fmt: skip


LOOKALIKES = {
    "text-starting-like-a-jpeg": b"\xff\xd8\xff" + b"just some text, not an image\n" * 20,
    "key-behind-a-png-signature": b"\x89PNG\r\n\x1a\n" + KEY,
    "key-after-a-whole-png": PNG + KEY,
    "cut-jpeg": JPEG[: len(JPEG) // 2],
    "png-with-a-broken-checksum": PNG[:-5] + b"\x00" + PNG[-4:],
    "decompression-bomb": _bomb(),
}


@pytest.mark.parametrize("data", LOOKALIKES.values(), ids=LOOKALIKES.keys())
def test_image_bytes_refuses_lookalikes(data):
    """The one image rule refuses bytes that only start like an image."""
    with pytest.raises(InvalidRequestError):
        _validate.image_bytes("image", data)


@pytest.mark.parametrize("data", LOOKALIKES.values(), ids=LOOKALIKES.keys())
async def test_upload_of_a_lookalike_makes_no_call(data, tmp_path):
    """``upload_image`` (bytes and path) refuses a look-alike with zero calls."""
    path = tmp_path / "x.png"
    path.write_bytes(data)
    async with running() as (emu, client):
        with pytest.raises(InvalidRequestError):
            await client.upload_image(data)
        with pytest.raises(InvalidRequestError):
            await client.upload_image(path)
        assert emu.stats.count() == 0


@pytest.mark.parametrize("data", LOOKALIKES.values(), ids=LOOKALIKES.keys())
def test_workflow_base64_body_refuses_lookalikes(data):
    """A base64 workflow body holding a look-alike is refused at construction."""
    with pytest.raises(InvalidRequestError):
        WorkflowRequest(target_image_base64=base64.b64encode(data).decode())
    with pytest.raises(InvalidRequestError):
        WorkflowRequest.from_image_bytes(data)


def test_catalog_file_lookalikes_are_invalid_rows(tmp_path: Path):
    """A catalog row whose image_path holds a look-alike is an invalid row."""
    lines = ["sku,image_path,country"]
    for n, (name, data) in enumerate(LOOKALIKES.items()):
        (tmp_path / f"{n}.png").write_bytes(data)
        lines.append(f"{name},{n}.png,US")
    (tmp_path / "good.jpg").write_bytes(JPEG)
    lines.append("good,good.jpg,US")
    path = tmp_path / "c.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = list(Catalog(path, Defaults()).rows())
    assert [r.ok for r in rows] == [False] * len(LOOKALIKES) + [True]


def test_real_images_of_both_kinds_pass():
    """Real PNG and JPEG files, of any mode, pass the rule."""
    for mode, fmt in (("RGB", "PNG"), ("RGBA", "PNG"), ("L", "JPEG"), ("RGB", "JPEG")):
        buf = io.BytesIO()
        Image.new(mode, (40, 30), 128).save(buf, fmt)
        kind = _validate.image_bytes("image", buf.getvalue())
        assert kind.ext == ("png" if fmt == "PNG" else "jpg")
