"""Private: turn one HTTP answer (status, body, headers) into data or a typed error.

Rules, in order:

* A body that is not JSON (a cut body, an HTML page): below HTTP 400
  :class:`~fto_async.errors.MalformedResponseError`; 5xx
  :class:`~fto_async.errors.ServerError`; 401, 403, 404 and 422 their classes; 429
  :class:`~fto_async.errors.RateLimitedError` (throttling, like 67200002: undocumented, but
  PatSnap's own scripts retry it, reference §9), with or without a body or ``Retry-After``;
  any other 4xx a plain :class:`~fto_async.errors.ApiError`.
* JSON that is not an object (or no body) below HTTP 400:
  :class:`~fto_async.errors.ResponseDecodeError`; from 400 on, as a body that is not JSON.
* A non-zero ``error_code`` (int or numeric string) decides the class (reference §8).
* A FastAPI ``detail`` (list of ``{loc, msg, type}`` or a string) gives
  :class:`~fto_async.errors.ValidationError` on 422, the HTTP status's class otherwise.
* ``status: false`` or ``success: false`` without a code: the HTTP status's class,
  else a plain :class:`~fto_async.errors.ApiError`.
* Otherwise success: ``data`` when present, else the whole object (``submit-workflow``
  answers with a top-level ``task_id``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Any

from .errors import (
    MalformedResponseError,
    ResponseDecodeError,
    ValidationError,
    error_from_code,
)

__all__ = ["decode_answer", "format_detail", "parse_retry_after"]

_REQUEST_ID_HEADERS = ("x-request-id", "x-trace-id", "x-b3-traceid", "x-correlation-id")
_TAGS = re.compile(r"<[^>]+>")


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:  # "inf" or "nan" would make the retry wait forever, or not at all
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, OverflowError):
        return None


def _falsy(value: object) -> bool:
    return value is False or (isinstance(value, str) and value.strip().lower() == "false")


def _code(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value or None
    if isinstance(value, str):
        try:  # not str.isdigit(): it accepts "²", which int() refuses
            return int(value) or None
        except ValueError:
            return None
    return None


def format_detail(detail: object) -> tuple[str, list[Mapping[str, Any]]]:
    """Readable text and the entries of a FastAPI ``detail`` (list or string)."""
    if isinstance(detail, str):
        return detail, []
    if not isinstance(detail, Sequence):
        return str(detail), []
    entries = [d for d in detail if isinstance(d, Mapping)]
    parts = []
    for entry in entries:
        loc = entry.get("loc")
        where = ".".join(str(p) for p in loc if p != "body") if isinstance(loc, Sequence) else ""
        parts.append(f"{where or 'request'}: {entry.get('msg', 'invalid')}")
    return ("; ".join(parts) or "validation error"), entries


def _snippet(body: bytes) -> str:
    text = _TAGS.sub(" ", body[:400].decode("utf-8", "replace"))
    return " ".join(text.split())[:120]


def decode_answer(
    http_status: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: float = 0.0,
) -> Any:
    """Data of a successful answer; raises the matching :class:`~fto_async.errors.FtoError`."""
    request_id = next((headers[h] for h in _REQUEST_ID_HEADERS if h in headers), None)
    retry_after = parse_retry_after(headers.get("retry-after"), now)
    constants: list[str] = []  # NaN/Infinity met: no documented answer holds one

    def constant(name: str) -> float:
        constants.append(name)
        return float(name)

    try:
        obj = json.loads(body, parse_constant=constant) if body.strip() else None
    except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
        obj = None
        if http_status < 400:
            raise MalformedResponseError(
                f"HTTP {http_status} with a body that is not JSON: {_snippet(body)!r}",
                http_status=http_status,
            ) from None
    if obj is None or not isinstance(obj, Mapping):
        if http_status >= 400:
            text = f"HTTP {http_status}" + (f": {_snippet(body)}" if body.strip() else "")
            raise error_from_code(
                None, text, http_status=http_status, request_id=request_id, retry_after=retry_after
            )
        raise ResponseDecodeError(f"expected a JSON object, got {type(obj).__name__}", raw=obj)

    code = _code(obj.get("error_code"))
    message = obj.get("error_msg") or obj.get("message") or obj.get("msg")
    if code is not None:
        raise error_from_code(
            code,
            str(message or "error"),
            http_status=http_status,
            request_id=request_id,
            retry_after=retry_after,
        )
    if "detail" in obj and (http_status >= 400 or _falsy(obj.get("success"))):
        text, entries = format_detail(obj["detail"])
        if http_status == 422:
            raise ValidationError(None, text, details=entries, request_id=request_id)
        raise error_from_code(
            None, text, http_status=http_status, request_id=request_id, retry_after=retry_after
        )
    if _falsy(obj.get("status")) or _falsy(obj.get("success")) or http_status >= 400:
        raise error_from_code(
            None,
            str(message or f"HTTP {http_status}: request failed"),
            http_status=http_status,
            request_id=request_id,
            retry_after=retry_after,
        )
    if constants:  # an error answer says what it says; data must hold finite numbers
        raise ResponseDecodeError(f"the answer holds {constants[0]} (not a finite number)")
    data = obj.get("data")
    return data if data is not None else obj
