"""A screening run's product images: identity, upload, reuse. Strictly private.

A row's identity is its request fingerprint (:mod:`fto_async.fingerprint`; a local image
by the SHA-256 of its bytes, hashed in a worker thread, never by its temporary upload
URL). An ``image_path`` row's file is uploaded (or read, for the workflow) only when the
run needs it, once per run by its digest while the upload URL lives, and not at all when
the report cache answers its row; the URL is kept for the row's follow-ups.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from .. import _validate
from ..cache import AnswerCache
from ..client import FtoClient
from ..errors import FtoError, InvalidRequestError
from ..fingerprint import image_digest, request_fingerprint, wire_fingerprint
from ..journal import JournalRow
from ..models import ImageSearchRequest, TaskKind, WorkflowRequest
from ._catalog import PLACEHOLDER_URL, Row

__all__ = ["CACHE_SLACK", "Images", "readable", "row_identity", "stored_fingerprint",
           "unreadable"]  # fmt: skip

#: Seconds of max-age a local-image row's cache hit must have left for its upload to be
#: skipped (the batch reads the cache again a moment later and must hit too).
CACHE_SLACK: Final = 60.0
_UPLOAD_LIFETIME: Final = 32_400.0  # seconds an upload URL lives when ``expire`` is absent
#: Said once per run, at its first P010 upload (reference §6).
UPLOAD_NOTICE: Final = (
    "note: local images are uploaded to PatSnap (P010) and get a public URL for 9 hours: "
    "anyone holding the link can open the image. --workflow screens them as base64, "
    "with no public URL (1-vs-1 follow-ups still need one)."
)
_UPLOAD_MARGIN: Final = 600.0  # an upload URL is reused only with this much life left



def readable(client: FtoClient, report: object, kind: object) -> bool:
    """Whether a stored report (cache entry, journal record) decodes for its kind."""
    try:
        client.decode_report(report, "workflow" if kind == "workflow" else "image_search")
    except FtoError:
        return False
    return True


def unreadable(row: Row, exc: Exception) -> str:
    if isinstance(exc, OSError) and row.image_path is not None:
        return f"image_path: cannot read {row.image_path.name} ({exc})"
    return str(exc)



async def row_identity(row: Row) -> tuple[str, str | None, bytes | None]:
    """A good row's request fingerprint and, for an ``image_path`` row, its file's digest
    and bytes: read once, and what is hashed is what is sent (uploaded or encoded), so
    an edit of the file meanwhile cannot file the answer under other bytes.

    Raises:
        OSError: the image file cannot be read. InvalidRequestError: it is no image.
    """
    if row.image_path is None:
        assert row.request is not None
        return request_fingerprint(row.request), None, None
    data = await asyncio.to_thread(row.image_path.read_bytes)
    digest = image_digest(data)
    if row.workflow:  # sent as base64: the fingerprint hashes the same bytes
        return request_fingerprint(row.make_request(image=data)), digest, data
    fingerprint = request_fingerprint(row.make_request(url=PLACEHOLDER_URL), image_sha256=digest)
    return fingerprint, digest, data



def stored_fingerprint(row: Row, jrow: JournalRow) -> str | None:
    """The fingerprint of what the journal screened for ``row`` (``None``: cannot tell).

    A schema-1 row has none stored; for a URL row its stored request is the wire body,
    so the fingerprint is computed from it; a local image's bytes were never recorded.
    """
    if jrow.fingerprint is not None or row.image_path is not None or jrow.kind is None:
        return jrow.fingerprint
    if jrow.request.get("invalid") is True:
        return None
    kind: TaskKind = "workflow" if jrow.kind == "workflow" else "image_search"
    return wire_fingerprint(kind, jrow.request)


class Images:
    """The run's uploads: a file uploaded once (by digest) while its URL lives, and each
    followed-up row's image kept until its follow-ups ask for it.

    Args:
        client: uploads with ``upload_image``. cache: the report cache (a hit needs no
            upload). max_age: seconds a cached report stays good. follow_up: whether
            rows have follow-ups (their images are remembered).
    """

    def __init__(
        self,
        client: FtoClient,
        cache: AnswerCache | None,
        max_age: float,
        follow_up: bool,
        notice: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.notice = notice
        self.cache = cache
        self.max_age = max_age
        self.follow_up = follow_up
        self.uploads = 0  #: files uploaded in this run (for the summary)
        self.upload_urls: dict[str, tuple[str, float]] = {}  # digest -> (url, good until)
        # Follow-ups need a row's public image URL again: image_path rows are remembered
        # (path, digest of the bytes screened, and the P010 URL with its expiry) until
        # their follow-ups ask for it.
        self.images: dict[str, tuple[Path, str, str | None, float]] = {}

    def _uploaded(self) -> None:
        """Count one P010 upload; the run's first says once that its URL is public."""
        self.uploads += 1
        if self.uploads == 1 and self.notice is not None:
            self.notice(UPLOAD_NOTICE)

    def remember(self, key: str, path: Path, digest: str) -> None:
        """Keep a row's image for its follow-ups (uploaded if followed up)."""
        if self.follow_up:
            self.images[key] = (path, digest, None, 0.0)

    def forget(self, key: str) -> None:
        """The row's follow-ups have ended."""
        self.images.pop(key, None)

    async def request(
        self, row: Row, fingerprint: str, digest: str, data: bytes
    ) -> ImageSearchRequest | WorkflowRequest:
        """The request of an ``image_path`` row the run sends: its ``data`` (the bytes
        hashed into ``fingerprint``) encoded for the workflow, the placeholder on a cache
        hit (never sent), else an upload of ``data`` (its URL reused by digest).

        Raises:
            OSError: the file cannot be read. InvalidRequestError: it is no image.
            FtoError: the upload failed.
        """
        assert row.image_path is not None
        if row.workflow:
            await asyncio.to_thread(_validate.image_bytes, "image_path", data)
            return await asyncio.to_thread(row.make_request, image=data)
        if await self._cache_answers(fingerprint, row):
            return row.make_request(url=PLACEHOLDER_URL)  # the batch's cache hit
        known = self.upload_urls.get(digest)
        if known is not None and time.monotonic() < known[1]:
            return row.make_request(url=known[0])
        uploaded = await self.client.upload_image(data, filename=row.image_path.name)
        self._uploaded()
        if self.follow_up:  # reused by its follow-ups while fresh
            expires = time.monotonic() + float(uploaded.expire or 0)
            self.images[row.jkey] = (row.image_path, digest, uploaded.url, expires)
        life = float(uploaded.expire) if uploaded.expire else _UPLOAD_LIFETIME
        self.upload_urls[digest] = (uploaded.url, time.monotonic() + life - _UPLOAD_MARGIN)
        return row.make_request(url=uploaded.url)

    async def _cache_answers(self, fingerprint: str, row: Row) -> bool:
        """Whether the cache holds a report for the row that the batch can read (an
        entry it cannot decode is a miss: the row is uploaded, never the placeholder)."""
        if self.cache is None:
            return False
        platform, account = self.client.provenance
        hit = await self.cache.get(fingerprint, max_age=self.max_age - CACHE_SLACK,
                                   platform=platform, account=account)  # fmt: skip
        return hit is not None and readable(self.client, hit.report, row.kind)

    async def follow_up_image(self, key: object, request: object) -> str:
        """The public URL of a row's image for its follow-ups: the run's P010 URL while
        fresh, else a new upload of its image_path; else the request's own image."""
        entry = self.images.pop(str(key), None)
        if entry is not None:
            path, digest, url, expires = entry
            if url is not None and time.monotonic() < expires - _UPLOAD_MARGIN:
                return url
            data, _kind = await asyncio.to_thread(_validate.read_image_file, "image", path)
            if image_digest(data) != digest:  # compared with what was screened: refused
                raise InvalidRequestError(
                    "image", f"{path.name} changed since its row was screened"
                )  # fmt: skip
            uploaded = await self.client.upload_image(data, filename=path.name)
            self._uploaded()
            return uploaded.url
        if isinstance(request, ImageSearchRequest) or (
            isinstance(request, WorkflowRequest) and request.url is not None
        ):
            assert request.url is not None
            return request.url
        if isinstance(request, WorkflowRequest) and request.target_image_base64 is not None:
            data = base64.b64decode(request.target_image_base64)
            uploaded = await self.client.upload_image(data)
            self._uploaded()
            return uploaded.url
        raise InvalidRequestError("image", "the row has no image to compare")
