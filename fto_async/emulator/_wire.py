"""Error codes, their messages and HTTP statuses, and the response builders.

The messages are the platform's own strings (the "Platform Errors" and "Business Errors"
tables of the endpoint pages, plus the gateway strings observed by third parties for
67200015 and 67200202).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

__all__ = [
    "CODE_KEY",
    "HTTP_STATUS",
    "MESSAGES",
    "envelope_error",
    "envelope_ok",
    "json_reply",
    "text_reply",
]

#: Key under which each response carries the code the stats record (0 for success).
CODE_KEY: Final = web.ResponseKey("fto_emulator_code", int)

#: error_code -> error_msg.
MESSAGES: Final[Mapping[int, str]] = {
    67200000: "API call exceeds the total limit set by the platform!",
    67200001: "API call exceeds the total limit set by the platform!",
    67200002: "The current call rate is too fast, exceeding the current configuration limit QPS!",
    67200003: (
        "The key and secret parameters for applying for the token are incorrect "
        "or the client has been disabled!"
    ),
    67200004: "The requested api does not have permission. Please contact our support personnel!",
    67200005: "Insufficient account balance/number of calls!",
    67200006: "The client has exceeded the activation validity period!",
    67200007: "The current call exceeds the configured usage limit of the day!",
    67200008: "Please check if the required apikey in the query parameter has been transmitted!",
    67200009: (
        "The apikey does not match the passed bearerToken. "
        "Please check if a valid token is being used!"
    ),
    67200012: "The request is illegal!",
    67200015: "Grant type error",
    67200100: "The current server status is busy, request response timeout!",
    67200101: "The API requested currently does not exist. Please check the request path!",
    67200202: "apikey auth error",
    68300004: "Invalid parameter!",
    68300005: "Search api failure!",
    68300006: "Analytic basic access error!",
    68300007: "Bad request!",
    68300008: "Service error, please try again later!",
    68300010: "The file does not comply with upload specifications!",
}

#: error_code -> HTTP status; codes not listed are answered with HTTP 200.
HTTP_STATUS: Final[Mapping[int, int]] = {
    67200001: 403,
    67200003: 401,
    67200005: 403,
    67200007: 403,
    67200008: 401,
    67200009: 401,
    67200015: 400,
    67200101: 404,
}


def _dumps(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def json_reply(payload: Any, *, status: int = 200, code: int = 0) -> web.Response:
    """Build a JSON response and tag it with the code the stats record.

    Args:
        payload: Any JSON-safe value.
        status: The HTTP status.
        code: The code recorded in the stats (the ``error_code``, 0 for success, or the HTTP
            status of a non-envelope answer).

    Returns:
        The response.
    """
    response = web.json_response(payload, status=status, dumps=_dumps)
    response[CODE_KEY] = code
    return response


def text_reply(
    text: str, *, status: int, code: int, content_type: str = "text/plain"
) -> web.Response:
    """Build a non-JSON response (fault injection) tagged with the code the stats record.

    Args:
        text: The body.
        status: The HTTP status.
        code: The code recorded in the stats.
        content_type: The media type of ``text``.

    Returns:
        The response.
    """
    response = web.Response(text=text, status=status, content_type=content_type)
    response[CODE_KEY] = code
    return response


def envelope_ok(data: Any) -> web.Response:
    """Answer ``{"data": data, "status": true, "error_code": 0}`` with HTTP 200.

    Args:
        data: The payload.

    Returns:
        The response.
    """
    return json_reply({"data": data, "status": True, "error_code": 0})


def envelope_error(code: int, detail: str | None = None) -> web.Response:
    """Answer ``{"status": false, "error_code": code, "error_msg": ...}``.

    The HTTP status comes from :data:`HTTP_STATUS` (200 when the code is not listed).

    Args:
        code: The platform or business error code.
        detail: Appended to the standard message, e.g. the name of the invalid field.

    Returns:
        The response.
    """
    message = MESSAGES.get(code, "Unknown error!")
    if detail:
        message = f"{message} {detail}"
    payload = {"status": False, "error_code": code, "error_msg": message}
    return json_reply(payload, status=HTTP_STATUS.get(code, 200), code=code)
