"""The gateway in front of every route: path check, authentication, quotas, QPS, faults.

For a business call (any path but ``/oauth/token`` and ``/_emulator/*``) the checks run in
this order, the first failure answering in the platform envelope:

1. unknown path (or method) -> 67200101, HTTP 404;
2. a bare HTTP 429 at ``http_429_rate`` (reference §9; also on ``/oauth/token``);
3. no ``apikey`` (or ``apiKey``) query parameter, and no ``Bearer sk-...`` header -> 67200008
   (with ``key_auth`` "query" the header is not read, with "bearer" the query is not read:
   reference §7.2a);
   ``sk-`` key: unknown -> 67200008; an ``Authorization`` header other than
   ``Bearer <that key>`` -> 67200009;
   client_id: unknown -> 67200008; missing, unknown or expired Bearer token -> 67200003
   (HTTP 401); a token of another client -> 67200009 (HTTP 401);
4. total limit -> 67200001, daily limit -> 67200007 (HTTP 403), QPS window -> 67200002;
5. faults, drawn from the seeded RNG (see :class:`EmulatorConfig`);
6. the handler.

The gateway also records every call in the stats: a business call on arrival (its path,
account and loop time, before any check, so rejected calls count too) and again, with its
code, once it is answered.
"""

from __future__ import annotations

import asyncio
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from ._state import STATE_KEY, EmulatorState
from ._stats import CODE_DROPPED
from ._wire import CODE_KEY, envelope_error, text_reply

__all__ = [
    "ACCOUNT_KEY",
    "ADMIN_PREFIX",
    "AMBIGUOUS_KEY",
    "SUBMIT_PATHS",
    "TOKEN_PATH",
    "authenticate",
    "gateway",
    "throttle_429",
]

#: Prefix of the emulator's own routes: no auth, no stats, no QPS.
ADMIN_PREFIX: Final = "/_emulator/"
#: The OAuth token endpoint: no apikey, no QPS, no faults.
TOKEN_PATH: Final = "/oauth/token"  # noqa: S105 (a path, not a password)
#: The task-creating paths, where ``ambiguous_busy_rate`` applies.
SUBMIT_PATHS: Final = frozenset(
    {
        "/ai/image-search/submit",
        "/api/mcp/submit-workflow",
        "/ai/infringement-detection-1v1-creation",
    }
)
#: The admitted account (client_id or ``sk-`` key) of a business call.
ACCOUNT_KEY: Final = web.RequestKey("fto_emulator_account", str)
#: True when a submit must create its task and then answer 67200100.
AMBIGUOUS_KEY: Final = web.RequestKey("fto_emulator_ambiguous", bool)

_BEARER: Final = "Bearer "
_HTML_502: Final = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_TRUNCATED_JSON: Final = '{"data":{"task_id":"3f2a'


def authenticate(state: EmulatorState, request: web.Request, now: float) -> tuple[str, int]:
    """Identify the account of a business call.

    Args:
        state: The emulator state (credentials and tokens).
        request: The incoming request.
        now: The event-loop time, for token expiry.

    Returns:
        ``(account, 0)`` on success, else ``("", error_code)``.
    """
    query = request.query
    apikey = query.get("apikey") or query.get("apiKey")
    header = request.headers.get("Authorization")
    style = state.config.key_auth
    if style == "query" and header is not None and header.startswith(_BEARER + "sk-"):
        header = None  # only the query parameter is read (reference §7.2a)
    if style == "bearer" and (apikey or "").startswith("sk-"):
        apikey = None  # only the Bearer header is read
    bearer = header[len(_BEARER) :] if header is not None and header.startswith(_BEARER) else None
    if not apikey:
        # An sk- key sent only as a Bearer header is the recommended form (guides/authentication).
        if bearer is None or not bearer.startswith("sk-"):
            return "", 67200008
        apikey = bearer
    config = state.config
    if apikey.startswith("sk-"):
        if apikey not in config.api_keys:
            return "", 67200008
        if header is not None and bearer != apikey:
            return "", 67200009
        return apikey, 0
    if apikey not in config.clients:
        return "", 67200008
    if not bearer:
        return "", 67200003
    owner = state.token_owner(bearer, now)
    if owner is None:
        return "", 67200003
    if owner != apikey:
        return "", 67200009
    return apikey, 0


def throttle_429(state: EmulatorState) -> web.Response | None:
    """A bare HTTP 429 at ``http_429_rate`` (no envelope), or None; three variants in turn."""
    config = state.config
    if not config.http_429_rate or state.rng.random() >= config.http_429_rate:
        return None
    state.throttled_429 += 1
    variant = state.throttled_429 % 3
    response = text_reply("Too Many Requests" if variant == 1 else "", status=429, code=429)
    if variant == 2:
        response.headers["Retry-After"] = "0"
    return response


async def _fault(state: EmulatorState, request: web.Request) -> web.StreamResponse | None:
    """Draw this call's fault; return the faulty answer, or None to go on to the handler."""
    config = state.config
    rng = state.rng
    if config.busy_rate and rng.random() < config.busy_rate:
        return envelope_error(67200100)
    if (
        config.ambiguous_busy_rate
        and request.path in SUBMIT_PATHS
        and rng.random() < config.ambiguous_busy_rate
    ):
        request[AMBIGUOUS_KEY] = True
    if config.service_error_rate and rng.random() < config.service_error_rate:
        return envelope_error(68300008)
    if config.http_5xx_rate and rng.random() < config.http_5xx_rate:
        return text_reply("Service Unavailable", status=503, code=503)
    if config.malformed_rate and rng.random() < config.malformed_rate:
        if rng.random() < 0.5:
            return text_reply(_HTML_502, status=502, code=502, content_type="text/html")
        return text_reply(_TRUNCATED_JSON, status=200, code=200, content_type="application/json")
    if config.drop_rate and rng.random() < config.drop_rate:
        transport = request.transport
        if transport is not None:
            transport.close()
        return text_reply("", status=200, code=CODE_DROPPED)
    if config.hang_rate and rng.random() < config.hang_rate:
        await state.sleep(config.hang_seconds)
    return None


async def _business(
    state: EmulatorState, request: web.Request, handler: Handler
) -> web.StreamResponse:
    now = asyncio.get_running_loop().time()
    account, code = authenticate(state, request, now)
    state.stats.record_attempt(request.path, account, now)
    if (throttled := throttle_429(state)) is not None:
        return throttled
    if not code:
        code = state.admit(account, now)
    if code:
        return envelope_error(code)
    request[ACCOUNT_KEY] = account
    fault = await _fault(state, request)
    if fault is not None:
        return fault
    return await handler(request)


@web.middleware
async def gateway(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run the gateway checks (see the module docstring) and record the call in the stats."""
    path = request.path
    if path.startswith(ADMIN_PREFIX):
        return await handler(request)
    state = request.app[STATE_KEY]
    response: web.StreamResponse
    try:
        if request.match_info.http_exception is not None:
            response = envelope_error(67200101)
        elif path == TOKEN_PATH:
            response = throttle_429(state) or await handler(request)
        else:
            state.stats.in_flight += 1
            try:
                response = await _business(state, request, handler)
            finally:
                state.stats.in_flight -= 1
    except web.HTTPException as exc:
        state.stats.record_call(path, exc.status)
        raise
    state.stats.record_call(path, response.get(CODE_KEY, 0))
    return response
