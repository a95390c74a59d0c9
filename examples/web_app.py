"""An aiohttp web service that screens one product image per request.

One long-lived ``FtoClient`` is created when the app starts and closed when it stops
(``app.cleanup_ctx``): every request shares its connection pool, token and rate gate,
as DESIGN.md asks (one client per account, never one per request).

``POST /screen`` takes either

* a multipart form with an ``image`` file (JPG/PNG under 4 MB) and optional ``country``
  (comma list, default ``US``) and ``lang`` (``en``/``cn``) fields, or
* JSON ``{"url": "https://...", "country": ["US", "EU"], "lang": "en"}``,

and answers JSON ``{"task_id", "highest_risk", "high_risk_countries",
"middle_risk_countries", "patents": [...]}``. Bad input gets a 400 naming the field.

Try it against the local emulator::

    fto-async emulator --port 8765 --time-scale 0.05
    PATSNAP_BASE_URL=http://127.0.0.1:8765 PATSNAP_API_KEY=sk-demo \\
        python examples/web_app.py --port 8080 --time-scale 0.05
    curl -s localhost:8080/screen -H 'content-type: application/json' \\
        -d '{"url": "https://example.com/lamp.png", "country": ["US"], "lang": "en"}'
    curl -s localhost:8080/screen -F image=@lamp.png -F country=US,EU
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from fto_async import (
    FtoClient,
    FtoError,
    ImageSearchReport,
    ImageSearchRequest,
    InvalidRequestError,
    PollConfig,
    TaskFailedError,
)

CLIENT = web.AppKey("client", FtoClient)


def summary(report: ImageSearchReport) -> dict[str, Any]:
    """The risk summary of a finished task, as JSON."""
    inner = report.report
    risk = report.highest_risk
    return {
        "task_id": report.task_id,
        "highest_risk": risk.value if risk is not None else None,
        "high_risk_countries": list(inner.high_risk_country) if inner else [],
        "middle_risk_countries": list(inner.middle_risk_country) if inner else [],
        "patents": [
            {"patent_pn": c.patent_pn, "country": c.country, "risk_level": c.risk_level.value,
             "title": c.title}
            for c in (inner.comparisons if inner else ())
        ],
    }


async def _request_from(request: web.Request, client: FtoClient) -> ImageSearchRequest:
    """Build the screening request from a multipart upload or a JSON body."""
    if request.content_type.startswith("multipart/"):
        form = await request.post()
        image = form.get("image")
        if not isinstance(image, web.FileField):
            raise InvalidRequestError("image", "send the product image as a file field 'image'")
        uploaded = await client.upload_image(image.file.read(), filename=image.filename)
        country = str(form.get("country") or "US").split(",")
        return ImageSearchRequest(uploaded.url, [c.strip() for c in country],
                                  str(form.get("lang") or "en"))
    try:
        body = await request.json()
    except ValueError:
        raise InvalidRequestError("body", "send JSON or a multipart form") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("body", "must be a JSON object")
    return ImageSearchRequest(body.get("url"), body.get("country", ["US"]), body.get("lang", "en"))


async def screen(request: web.Request) -> web.Response:
    """``POST /screen``: screen one image and answer its risk summary."""
    client = request.app[CLIENT]
    try:
        screening = await _request_from(request, client)
        task_id = await client.submit_image_search(screening)
        report = await client.wait_image_search(task_id)
    except InvalidRequestError as exc:
        return web.json_response({"error": str(exc), "field": exc.field}, status=400)
    except TaskFailedError as exc:
        return web.json_response({"error": str(exc)}, status=502)
    except FtoError as exc:  # quota, credentials, platform trouble: not the caller's fault
        status = 503 if exc.fatal or exc.retryable else 502
        return web.json_response({"error": str(exc), "type": type(exc).__name__}, status=status)
    return web.json_response(summary(report))


def make_app(*, time_scale: float = 1.0) -> web.Application:
    """The application; its client is built from the environment on startup."""

    async def client_ctx(app: web.Application) -> AsyncIterator[None]:
        async with FtoClient.from_env(poll=PollConfig().scaled(time_scale)) as client:
            app[CLIENT] = client
            yield

    app = web.Application(client_max_size=5 * 1024 * 1024)
    app.cleanup_ctx.append(client_ctx)
    app.router.add_post("/screen", screen)
    return app


def main(argv: list[str] | None = None) -> None:
    """Serve until Ctrl-C."""
    parser = argparse.ArgumentParser(description="FTO screening web service")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--time-scale", type=float, default=1.0)
    args = parser.parse_args(argv)
    web.run_app(make_app(time_scale=args.time_scale), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
