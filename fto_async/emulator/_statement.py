"""``POST /open-user/statement/v2``: the usage statement, from the emulator's own counts.

It passes the gateway like any business call, then checks the body (reference §9):
``apikey`` (a client_id with its ``client_secret``, or an ``sk-`` key) naming the
caller's account, and ``time_start``/``time_end`` as ``yyyyMMdd``. ``usage`` lists each
business path the emulator answered (``usage_times``: calls answered, refused ones
included, dropped connections not; ``fee_times``: the successful ones), whatever the
dates and the account (the emulator keeps no per-day, per-account counts). The token
and statement paths are not billed, so not listed.
"""

from __future__ import annotations

import hmac
import re
from collections import Counter
from typing import Any, Final

from aiohttp import web

from ._gateway import ACCOUNT_KEY, TOKEN_PATH
from ._state import STATE_KEY
from ._stats import CODE_DROPPED
from ._wire import envelope_error, envelope_ok

__all__ = ["STATEMENT_PATH", "statement"]

STATEMENT_PATH: Final = "/open-user/statement/v2"
_DAY = re.compile(r"\d{8}")
_PRICE = 1.0  # money per billed call (the emulator's unit)


async def statement(request: web.Request) -> web.Response:
    """The usage statement of the caller's account (see the module docstring)."""
    state = request.app[STATE_KEY]
    try:
        body: Any = await request.json()
    except ValueError:
        return envelope_error(67200015)
    if not isinstance(body, dict):
        return envelope_error(67200015)
    apikey, secret = str(body.get("apikey") or ""), str(body.get("client_secret") or "")
    known = state.config.clients.get(apikey)
    if apikey in state.config.api_keys:
        ok = True
    else:
        ok = known is not None and hmac.compare_digest(known.encode(), secret.encode())
    if not ok or apikey != request.get(ACCOUNT_KEY):
        return envelope_error(67200008)
    for name in ("time_start", "time_end"):
        if not isinstance(body.get(name), str) or not _DAY.fullmatch(body[name]):
            return envelope_error(67200015, name)
    usage: Counter[str] = Counter()
    fees: Counter[str] = Counter()
    for (path, code), n in state.stats.calls.items():
        if path in (TOKEN_PATH, STATEMENT_PATH) or code == CODE_DROPPED:
            continue
        usage[path] += n
        if code == 0:
            fees[path] += n
    lines = [
        {"request_path": path, "serial_number": str(i), "request_path_name": path,
         "usage_times": usage[path], "fee_times": fees[path],
         "used_money": fees[path] * _PRICE}
        for i, path in enumerate(sorted(usage), 1)
    ]  # fmt: skip
    return envelope_ok({
        "usage": lines, "combo_usage": [],
        "usage_money": sum(line["used_money"] for line in lines),
        "combo_use_num": 0, "combo_usage_num": 0,
    })  # fmt: skip
