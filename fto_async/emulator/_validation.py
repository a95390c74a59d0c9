"""Request-body validation, in the two styles the platform uses.

* ``/ai/image-search/submit`` answers 68300004 "Invalid parameter!"; the emulator appends the
  name of the offending field to ``error_msg``.
* ``/api/mcp/submit-workflow`` sits on a FastAPI-style service: invalid bodies get HTTP 422
  with ``{"detail": [{"loc": ["body", field, ...], "msg": ..., "type": ...}]}`` (pydantic v2
  wording). The shape is an inference from the 422 "Validation Error" the page lists.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import re
from typing import Any, Final
from urllib.parse import urlsplit

__all__ = [
    "MAX_IMAGE_BYTES",
    "check_1v1_create",
    "check_image_search_submit",
    "check_workflow_submit",
    "is_http_url",
    "is_yyyymmdd",
    "workflow_image_identity",
]

_DATE_RE: Final = re.compile(r"\d{8}")
_DATA_URI_RE: Final = re.compile(r"data:[\w/+.-]*;base64,", re.ASCII)
# 0/1/2 and the extended 220/221/999 of sibling image-search pages (reference §9).
#: The largest image, in bytes, inclusive: P010's "maximum 4096KB" (reference §6).
MAX_IMAGE_BYTES: Final = 4 * 1024 * 1024
_LEGAL_STATUS_RE: Final = re.compile(r"(?:[012]|22[01]|999)(?:,(?:[012]|22[01]|999))*")


def is_yyyymmdd(value: str) -> bool:
    """Return whether ``value`` is a real calendar date written ``yyyyMMdd``."""
    if not _DATE_RE.fullmatch(value):
        return False
    try:
        dt.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        return False
    return True


def is_http_url(value: str) -> bool:
    """Return whether ``value`` is an absolute http(s) URL with a host."""
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _is_str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def check_image_search_submit(body: object) -> str | None:
    """Validate an ``/ai/image-search/submit`` body.

    Args:
        body: The decoded JSON body.

    Returns:
        None when valid, else the detail to append to "Invalid parameter!".
    """
    if not isinstance(body, dict):
        return "the request body must be a JSON object"
    url = body.get("url")
    if url is None:
        return "url is required"
    if not isinstance(url, str) or not is_http_url(url):
        return "url must be an http(s) image URL"
    country = body.get("country")
    if country is None:
        return "country is required"
    if not _is_str_list(country) or not country or not all(country):
        return "country must be a non-empty list of country codes"
    lang = body.get("lang")
    if lang is None:
        return "lang is required"
    if lang not in ("cn", "en"):
        return "lang must be 'cn' or 'en'"
    loc_items = body.get("loc_items")
    if loc_items is not None and not _is_str_list(loc_items):
        return "loc_items must be a list of strings"
    start = body.get("apply_start_time")
    if start is not None and not (isinstance(start, str) and is_yyyymmdd(start)):
        return "apply_start_time must be a date string yyyyMMdd"
    main_field = body.get("main_field")
    if main_field is not None and not isinstance(main_field, str):
        return "main_field must be a string"
    return None


def _error(loc: list[str | int], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": ["body", *loc], "msg": msg, "type": kind}


def _string_errors(body: dict[str, Any], names: tuple[str, ...]) -> list[dict[str, Any]]:
    return [
        _error([name], "Input should be a valid string", "string_type")
        for name in names
        if body.get(name) is not None and not isinstance(body[name], str)
    ]


def _loc_item_errors(loc_items: object) -> list[dict[str, Any]]:
    if not isinstance(loc_items, list):
        return [_error(["loc_items"], "Input should be a valid list", "list_type")]
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(loc_items):
        where: list[str | int] = ["loc_items", index]
        if not isinstance(item, dict):
            errors.append(
                _error(
                    where,
                    "Input should be a valid dictionary or object to extract fields from",
                    "model_attributes_type",
                )
            )
            continue
        if "id" not in item:
            errors.append(_error([*where, "id"], "Field required", "missing"))
        elif not isinstance(item["id"], str):
            errors.append(_error([*where, "id"], "Input should be a valid string", "string_type"))
        desc = item.get("desc")
        if desc is not None and not isinstance(desc, str):
            errors.append(_error([*where, "desc"], "Input should be a valid string", "string_type"))
    return errors


def _decode_base64(value: str) -> bytes | None:
    text = _DATA_URI_RE.sub("", value, count=1).strip()
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return decoded or None


def check_workflow_submit(body: object) -> list[dict[str, Any]]:
    """Validate an ``/api/mcp/submit-workflow`` body, FastAPI style.

    Args:
        body: The decoded JSON body.

    Returns:
        The ``detail`` entries of a 422 answer; empty when the body is valid.
    """
    if not isinstance(body, dict):
        return [
            {
                "loc": ["body"],
                "msg": "Input should be a valid dictionary or object to extract fields from",
                "type": "model_attributes_type",
            }
        ]
    errors = _string_errors(
        body,
        (
            "user_id",
            "url",
            "target_image_base64",
            "title",
            "apply_start_time",
            "apply_end_time",
            "simple_legal_status",
        ),
    )
    bad = {tuple(error["loc"][1:]) for error in errors}
    country = body.get("country")
    if country is not None:
        if not isinstance(country, list):
            errors.append(_error(["country"], "Input should be a valid list", "list_type"))
        else:
            errors.extend(
                _error(["country", i], "Input should be a valid string", "string_type")
                for i, item in enumerate(country)
                if not isinstance(item, str)
            )
    if body.get("loc_items") is not None:
        errors.extend(_loc_item_errors(body["loc_items"]))
    for name in ("apply_start_time", "apply_end_time"):
        value = body.get(name)
        if isinstance(value, str) and not is_yyyymmdd(value):
            errors.append(
                _error(
                    [name], f"Value error, {name} must be a date in YYYYMMDD format", "value_error"
                )
            )
    start, end = body.get("apply_start_time"), body.get("apply_end_time")
    if (
        isinstance(start, str)
        and isinstance(end, str)
        and is_yyyymmdd(start)
        and is_yyyymmdd(end)
        and end < start
    ):
        errors.append(
            _error(
                ["apply_end_time"],
                "Value error, apply_end_time must not be before apply_start_time",
                "value_error",
            )
        )
    status = body.get("simple_legal_status")
    if isinstance(status, str) and not _LEGAL_STATUS_RE.fullmatch(status.replace(" ", "")):
        errors.append(
            _error(
                ["simple_legal_status"],
                "Value error, simple_legal_status must be comma-separated values of "
                "0, 1, 2, 220, 221, 999",
                "value_error",
            )
        )
    url = body.get("url")
    if isinstance(url, str) and url and not is_http_url(url):
        errors.append(_error(["url"], "Value error, url must be an http(s) URL", "value_error"))
    image = body.get("target_image_base64")
    decoded = _decode_base64(image) if isinstance(image, str) and image else b""
    if decoded and len(decoded) > MAX_IMAGE_BYTES:
        errors.append(
            _error(
                ["target_image_base64"],
                f"Value error, target_image_base64 must be at most {MAX_IMAGE_BYTES} bytes",
                "value_error",
            )
        )
    if isinstance(image, str) and image and decoded is None:
        errors.append(
            _error(
                ["target_image_base64"],
                "Value error, target_image_base64 is not valid base64",
                "value_error",
            )
        )
    if not url and not image and ("url",) not in bad and ("target_image_base64",) not in bad:
        errors.append(
            {
                "loc": ["body"],
                "msg": "Value error, at least one of url or target_image_base64 must be provided",
                "type": "value_error",
            }
        )
    return errors


def workflow_image_identity(body: dict[str, Any]) -> str:
    """Return the image identity of a valid workflow body: the url, else sha256 of the base64.

    Args:
        body: A body that passed :func:`check_workflow_submit`.

    Returns:
        The url (it wins when both are given) or ``"sha256:<hex>"`` of the base64 text
        (without any ``data:`` prefix).
    """
    url = body.get("url")
    if isinstance(url, str) and url:
        return url
    text = _DATA_URI_RE.sub("", str(body["target_image_base64"]), count=1).strip()
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def check_1v1_create(body: object) -> str | None:
    """Validate an ``/ai/infringement-detection-1v1-creation`` body (68300004 style).

    ``patent_number`` and ``url`` are required (reference §5.1), ``report_lang`` is
    optional, ``cn`` or ``en``.

    Args:
        body: The decoded JSON body.

    Returns:
        None when valid, else the detail to append to "Invalid parameter!".
    """
    if not isinstance(body, dict):
        return "the request body must be a JSON object"
    number = body.get("patent_number")
    if number is None:
        return "patent_number is required"
    if not isinstance(number, str) or not number.strip() or any(c.isspace() for c in number):
        return "patent_number must be a publication number"
    url = body.get("url")
    if url is None:
        return "url is required"
    if not isinstance(url, str) or not is_http_url(url):
        return "url must be an http(s) image URL"
    lang = body.get("report_lang")
    if lang is not None and lang not in ("cn", "en"):
        return "report_lang must be 'cn' or 'en'"
    return None
