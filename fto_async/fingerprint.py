"""The request fingerprint: whether two requests ask the platform the same question.

One rule, used by the journal (a row whose request changed is screened again), by the
batch (equal fingerprints share one task) and by the report cache (reports keyed by it):

* the request's wire body (what the client would send), with every field the platform
  knows present: a field left out is written as ``null``, and a field with a documented
  platform default (the workflow's ``simple_legal_status``, ``"1,2"``) as that default,
  so ``WorkflowRequest(...)`` and ``WorkflowRequest(..., simple_legal_status="1,2")``
  agree;
* the image stands in by the SHA-256 of its bytes: a base64 body
  (``target_image_base64``) by the hash of the decoded bytes, and a local file uploaded
  through P010 by the hash of the file (``image_sha256=``), never by its temporary
  upload URL. A remote ``url`` stays as it is: the same URL is the same question;
* the task kind, then everything as JSON with sorted keys and no spaces, hashed with
  SHA-256. The result is ``"v1:"`` and 64 hex digits; the prefix changes if the rule does.

Example::

    from fto_async.fingerprint import request_fingerprint

    a = request_fingerprint(ImageSearchRequest("https://x/a.png", ["US", "CN"], "en"))
    b = request_fingerprint(ImageSearchRequest("https://x/a.png", ["US", "CN"], "en"))
    assert a == b

Country lists keep their order (``["US", "CN"]`` and ``["CN", "US"]`` differ): the
platform documents no meaning for it, and treating them as equal would be an inference.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

from . import _serde
from ._kinds import KINDS, request_kind
from .errors import InvalidRequestError
from .models import Request, TaskKind

__all__ = ["FINGERPRINT_VERSION", "follow_up_fingerprint", "image_digest", "request_fingerprint",
           "wire_fingerprint"]  # fmt: skip

#: The rule's version, the fingerprint's prefix.
FINGERPRINT_VERSION: Final = "v1"



def follow_up_fingerprint(item: str, patent_pn: str, report_lang: str | None) -> str:
    """What a 1-vs-1 follow-up asks: its item's checked fingerprint (the image as sent and
    the filters), the patent and the report language. Follow-ups are shared within a
    batch and cached under it."""
    text = f"{item}\n{patent_pn}\n{report_lang or ''}"
    return "fu1:" + hashlib.sha256(text.encode()).hexdigest()


def image_digest(data: bytes) -> str:
    """The SHA-256 of an image's bytes, as the fingerprint writes it (``"sha256:<hex>"``)."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def request_fingerprint(request: object, *, image_sha256: str | None = None) -> str:
    """The fingerprint of an :class:`~fto_async.ImageSearchRequest` or
    :class:`~fto_async.WorkflowRequest`.

    Args:
        request: the request.
        image_sha256: the :func:`image_digest` of the local file behind the request's
            ``url`` (an upload URL changes at every upload; the file's bytes do not).

    Raises:
        InvalidRequestError: ``request`` is not a request.
    """
    if not isinstance(request, Request):
        raise InvalidRequestError("request", f"cannot fingerprint a {type(request).__name__}")
    body = _serde.unstructure(_serde.CONVERTER, request)
    return wire_fingerprint(request_kind(request), body, image_sha256=image_sha256)


def wire_fingerprint(
    kind: TaskKind, body: Mapping[str, Any], *, image_sha256: str | None = None
) -> str:
    """The fingerprint of a wire body of ``kind`` (what the journal stores)."""
    fields = KINDS[kind].fingerprint_fields
    canonical: dict[str, Any] = {
        name: body.get(name) if body.get(name) is not None else default
        for name, default in fields.items()
    }
    canonical.update((k, v) for k, v in body.items() if k not in fields)  # future fields
    encoded = canonical.get("target_image_base64")
    if isinstance(encoded, str):
        canonical["target_image_base64"] = image_digest(base64.b64decode(encoded))
    if image_sha256 is not None:
        canonical["url"] = image_sha256
    text = json.dumps({"kind": kind, "body": canonical}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False)
    return f"{FINGERPRINT_VERSION}:{hashlib.sha256(text.encode()).hexdigest()}"
