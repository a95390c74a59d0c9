"""The aiohttp application: routes, gateway middleware, state and clean shutdown.

Routes (all business routes pass the gateway, see ``_gateway``):

================================================  ==================================================
``POST /oauth/token``                             client-credentials token (form + HTTP Basic)
``POST /ai/image-search/submit``                  image-search task, platform envelope
``POST /ai/image-search/report``                  its state/result (task_status 1/2/3)
``POST /api/mcp/submit-workflow``                 workflow task, FastAPI-style (422 ``detail``)
``POST <workflow_result_path>``                   its state/result; the path is a GUESS
``POST /ai/infringement-detection-1v1-creation``  AI67 1-vs-1 task, platform envelope
``POST /ai/infringement-detection-1v1-query``     its state/result; ids expire (8 h)
``POST /image-search/image-upload``               multipart ``image`` -> public URL
``POST /open-user/statement/v2``                  usage statement from its own counts
``GET /_emulator/images/{name}``                  uploaded bytes (no auth)
``GET /_emulator/stats``                          stats snapshot (no auth)
``GET|POST /_emulator/config``                    read / change the configuration (no auth)
``POST /_emulator/publish``                       one more publication round (no auth)
``POST /_emulator/expire-tokens``                 invalidate every token (no auth)
================================================  ==================================================
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from . import _admin, _handlers, _statement
from ._config import EmulatorConfig
from ._gateway import gateway
from ._state import STATE_KEY, EmulatorState

__all__ = ["create_app"]

# Room for a workflow body carrying a base64 image of up to 4 MB, and for uploads.
_CLIENT_MAX_SIZE: Final = 16 * 1024 * 1024


async def _wake_sleepers(app: web.Application) -> None:
    """On shutdown, end every latency/hang sleep so no handler keeps the server waiting."""
    app[STATE_KEY].wake_all()


def create_app(config: EmulatorConfig | None = None) -> web.Application:
    """Build the emulator's aiohttp application.

    Use it with ``aiohttp.test_utils.TestServer``, or use :class:`Emulator`, which also runs it.

    Args:
        config: The behaviour (see :class:`EmulatorConfig`); ``None`` means the defaults.

    Returns:
        The application; its state is reachable as ``app[STATE_KEY]``.
    """
    config = config if config is not None else EmulatorConfig()
    app = web.Application(middlewares=[gateway], client_max_size=_CLIENT_MAX_SIZE)
    app[STATE_KEY] = EmulatorState(config)
    router = app.router
    router.add_post("/oauth/token", _handlers.token)
    router.add_post("/ai/image-search/submit", _handlers.image_search_submit)
    router.add_post("/ai/image-search/report", _handlers.image_search_report)
    router.add_post("/api/mcp/submit-workflow", _handlers.workflow_submit)
    router.add_post(config.workflow_result_path, _handlers.workflow_result)
    router.add_post("/ai/infringement-detection-1v1-creation", _handlers.one_vs_one_create)
    router.add_post("/ai/infringement-detection-1v1-query", _handlers.one_vs_one_query)
    router.add_post("/image-search/image-upload", _handlers.image_upload)
    router.add_post(_statement.STATEMENT_PATH, _statement.statement)
    router.add_get("/_emulator/images/{name}", _handlers.serve_image)
    router.add_get("/_emulator/stats", _admin.get_stats)
    router.add_get("/_emulator/config", _admin.get_config)
    router.add_post("/_emulator/config", _admin.post_config)
    router.add_post("/_emulator/publish", _admin.publish)
    router.add_post("/_emulator/expire-tokens", _admin.expire_tokens)
    app.on_shutdown.append(_wake_sleepers)
    return app
