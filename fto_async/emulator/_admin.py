"""The emulator's own routes under ``/_emulator/``: stats, runtime config, token expiry.

They need no authentication and are never counted in the stats, the quotas or the QPS window.

* ``GET /_emulator/stats``: :meth:`EmulatorStats.snapshot` as JSON.
* ``GET /_emulator/config``: the current configuration (secrets masked).
* ``POST /_emulator/config``: a JSON object of :class:`EmulatorConfig` fields to change, e.g.
  ``{"busy_rate": 0.5}``; answers the new configuration, or HTTP 400 ``{"error": ...}``.
* ``POST /_emulator/publish``: one more publication round (``publish_round`` + 1); an
  optional JSON body ``{"share": 0.2}`` sets ``publish_share`` first. Answers the config.
* ``POST /_emulator/expire-tokens``: invalidates every issued token; answers ``{"expired": n}``.
"""

from __future__ import annotations

import json

from aiohttp import web

from ._config import config_to_json, evolve_config
from ._state import STATE_KEY

__all__ = ["expire_tokens", "get_config", "get_stats", "post_config", "publish"]


async def get_stats(request: web.Request) -> web.Response:
    """Answer the stats snapshot."""
    return web.json_response(request.app[STATE_KEY].stats.snapshot())


async def get_config(request: web.Request) -> web.Response:
    """Answer the current configuration."""
    return web.json_response(config_to_json(request.app[STATE_KEY].config))


async def post_config(request: web.Request) -> web.Response:
    """Change configuration fields at runtime and answer the new configuration."""
    state = request.app[STATE_KEY]
    try:
        changes = json.loads(await request.read())
        if not isinstance(changes, dict):
            raise TypeError("the body must be a JSON object of EmulatorConfig fields")
        config = evolve_config(state.config, changes)
    except (TypeError, ValueError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    state.reconfigure(config)
    return web.json_response(config_to_json(config))


async def expire_tokens(request: web.Request) -> web.Response:
    """Invalidate every issued token."""
    return web.json_response({"expired": request.app[STATE_KEY].expire_tokens()})


async def publish(request: web.Request) -> web.Response:
    """Run one publication round (optionally setting the share first); answer the config."""
    state = request.app[STATE_KEY]
    try:
        raw = await request.read()
        body = json.loads(raw) if raw.strip() else {}
        if not isinstance(body, dict) or set(body) - {"share"}:
            raise TypeError('the body must be empty or {"share": <0..1>}')
        changes = {"publish_round": state.config.publish_round + 1}
        if "share" in body:
            changes["publish_share"] = body["share"]
        config = evolve_config(state.config, changes)
    except (TypeError, ValueError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    state.reconfigure(config)
    return web.json_response(config_to_json(config))
