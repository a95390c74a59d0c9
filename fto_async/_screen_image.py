"""Private: the question ``FtoClient.screen_image`` asks for a local image.

The image (bytes, or a path read once) is checked by the one image rule
(:func:`fto_async._validate.image_bytes`: a PNG or JPEG of at most 4 MiB that decodes)
and the filters by the request's own validators, in a worker thread, before anything
is sent: bad input is an :class:`~fto_async.errors.InvalidRequestError` and costs no
call.

* ``image_search`` needs a public URL: the request carries a stand-in URL on the
  ``local.invalid`` host (never sent: the client refuses it) and a
  :class:`~fto_async.batch.LocalImage` holding the bytes. The batch uploads them (P010)
  only when it submits, through ``FtoClient.upload_once``: once per content hash per
  client, the URL reused while it is valid. A cached or shared answer uploads nothing.
* ``workflow`` takes the image in the body as ``target_image_base64``: no upload and no
  public URL.

Either way the fingerprint stands the image in by the SHA-256 of the bytes read, so
equal images with equal filters are one question (one flight, one cache entry).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import attrs

from . import _validate
from .batch import LocalImage
from .errors import InvalidRequestError
from .fingerprint import image_digest, request_fingerprint
from .models import ImageSearchRequest, Request, WorkflowRequest

__all__ = ["ImageKind", "image_question"]

#: The kinds ``screen_image`` can ask (a 1-vs-1 needs a patent: not a screening).
ImageKind = Literal["image_search", "workflow"]

_IMAGE_FIELDS = {"url", "target_image_base64"}  # the image itself: never a filter


async def image_question(
    image: bytes | str | os.PathLike[str], kind: str, filters: Mapping[str, Any]
) -> tuple[Request, str, LocalImage | None]:
    """``(request, fingerprint, local image or None)`` for ``screen_image``.

    Raises:
        InvalidRequestError: not a valid image, an unknown kind, or a bad filter.
    """
    if kind not in ("image_search", "workflow"):
        raise InvalidRequestError("kind", f"must be 'image_search' or 'workflow', got {kind!r}")
    cls = ImageSearchRequest if kind == "image_search" else WorkflowRequest
    known = {f.name for f in attrs.fields(cls)} - _IMAGE_FIELDS
    unknown = sorted(set(filters) - known)
    if unknown:
        raise InvalidRequestError(
            unknown[0], f"is not a filter of {cls.__name__} (filters: {', '.join(sorted(known))})"
        )
    required = {f.name for f in attrs.fields(cls) if f.default is attrs.NOTHING}
    missing = sorted(required - _IMAGE_FIELDS - set(filters))
    if missing:
        raise InvalidRequestError(missing[0], f"is required by {cls.__name__}")
    return await asyncio.to_thread(_question, image, kind, dict(filters))


def _question(
    image: bytes | str | os.PathLike[str], kind: str, filters: dict[str, Any]
) -> tuple[Request, str, LocalImage | None]:
    """Blocking part of :func:`image_question` (reads and decodes the image)."""
    path: Path | None = None
    if isinstance(image, bytes | bytearray | memoryview):
        data = bytes(image)
        _validate.image_bytes("image", data)
    elif isinstance(image, str | os.PathLike):
        path = Path(image)
        data, _ = _validate.read_image_file("image", path)
    else:
        got = type(image).__name__
        raise InvalidRequestError("image", f"must be image bytes or a path, got {got}")
    if kind == "workflow":
        workflow = WorkflowRequest.from_image_bytes(data, **filters)
        return workflow, request_fingerprint(workflow), None
    digest = image_digest(data)
    placeholder = f"https://local.invalid/{digest.removeprefix('sha256:')}"
    request = ImageSearchRequest(url=placeholder, **filters)
    fingerprint = request_fingerprint(request, image_sha256=digest)
    return request, fingerprint, LocalImage(path, digest, data)
