"""Test helpers: a handler-style fake of the HTTP layer (httpx's ``MockTransport``).

The client still runs everything above HTTP (validation, the rate gate, auth, retries,
the envelope, batches, the journal); only the POST is answered by your handler::

    from fto_async import FtoClient
    from fto_async.testing import MockResponse, MockTransport

    def handler(request):
        if request.path == "/ai/image-search/submit":
            return MockResponse.ok({"task_id": "t-1"})
        return MockResponse.ok({"task_status": 2, "report": {"risk_level": "Low"}})

    async with FtoClient(api_key="sk-test", transport=MockTransport(handler)) as client:
        ...

A handler may be a plain function or a coroutine function, and may raise what aiohttp
raises (``aiohttp.ClientConnectionError``, ``TimeoutError``) to play a network fault.
"""

from __future__ import annotations

import inspect
import json as _json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import attrs

from ._http import FileField, HttpAnswer

__all__ = ["MockRequest", "MockResponse", "MockTransport"]


@attrs.frozen
class MockRequest:
    """One POST as the platform would see it.

    Attributes:
        path: the URL's path (``/ai/image-search/submit``).
        url: the whole URL, without the query string.
        params: the query parameters (``apikey``: redact it if you print it).
        headers: the request headers.
        json: the JSON body, or ``None`` for a form or multipart call.
        form: the urlencoded form (the token call), or ``None``.
        files: the multipart files (the upload call).
    """

    path: str
    url: str
    params: Mapping[str, str]
    headers: Mapping[str, str]
    json: Any
    form: Mapping[str, str] | None
    files: tuple[FileField, ...]


@attrs.frozen
class MockResponse:
    """An answer: an HTTP status, a body and headers.

    Use :meth:`ok` and :meth:`error` for the platform's envelope.
    """

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = attrs.field(factory=dict)

    @classmethod
    def json(cls, value: Any, status: int = 200, **headers: str) -> MockResponse:
        """Any JSON body."""
        body = _json.dumps(value).encode()
        return cls(status, body, {"Content-Type": "application/json", **headers})

    @classmethod
    def ok(cls, data: Any) -> MockResponse:
        """A successful envelope around ``data``."""
        return cls.json({"status": True, "error_code": 0, "data": data})

    @classmethod
    def error(cls, code: int, message: str = "error", status: int = 200) -> MockResponse:
        """A platform error envelope (``error_code`` ``code``)."""
        return cls.json({"status": False, "error_code": code, "error_msg": message}, status)


Handler = Callable[[MockRequest], MockResponse | Awaitable[MockResponse]]


class MockTransport:
    """The HTTP layer of a client, answered by ``handler`` (see the module docstring).

    Attributes:
        requests: every request seen, in order.
    """

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.requests: list[MockRequest] = []

    async def post(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
        json: Any = None,
        form: Mapping[str, str] | None = None,
        files: tuple[FileField, ...] = (),
        timeout: aiohttp.ClientTimeout,
    ) -> HttpAnswer:
        parts = urlsplit(url)
        request = MockRequest(
            path=parts.path, url=f"{parts.scheme}://{parts.netloc}{parts.path}",
            params=dict(params or {}), headers=dict(headers),
            json=None if files or form is not None else (json if json is not None else {}),
            form=None if form is None else dict(form), files=files,
        )
        self.requests.append(request)
        answer = self._handler(request)
        if inspect.isawaitable(answer):
            answer = await answer
        if not isinstance(answer, MockResponse):
            raise TypeError(f"the handler must return a MockResponse, got {type(answer).__name__}")
        return HttpAnswer(answer.status, dict(answer.headers), answer.body)

    async def aclose(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"<MockTransport requests={len(self.requests)}>"
