"""The HTTP layer under the transport: one POST in, status, headers and body out.

:class:`HttpSender` is all the transport needs of HTTP. :class:`AiohttpSender` is the
real one (an aiohttp session, created lazily); :class:`fto_async.testing.MockTransport`
is a handler-style fake (httpx's ``MockTransport``) so client and batch tests need no
server. Faults are raised as aiohttp raises them (``aiohttp.ClientError``,
``TimeoutError``); the transport turns them into our errors in one place. One is made
more precise here: a timeout that expired before any connection existed is raised as
:class:`NotConnectedTimeout`, since nothing can have reached the platform (a submit left
so is never "maybe created a task").
"""

from __future__ import annotations

import io
import json as _json
import ssl
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import attrs

from .errors import ResponseTooLargeError

#: Bodies larger than this go as a stream (aiohttp's threshold for raw bytes, 1 MiB).
_LARGE_BODY = 2**20

__all__ = ["AiohttpSender", "FileField", "HttpAnswer", "HttpSender", "NotConnectedTimeout"]


class NotConnectedTimeout(TimeoutError):
    """The request's time ran out before it had a connection: nothing was sent."""


class _Connected:
    """A request's trace context: whether aiohttp gave it a connection (new or reused)."""

    __slots__ = ("yes",)

    def __init__(self) -> None:
        self.yes = False


async def _connected(_session: object, ctx: Any, _params: object) -> None:
    mark = ctx.trace_request_ctx
    if isinstance(mark, _Connected):
        mark.yes = True


def _tracer() -> aiohttp.TraceConfig:
    """aiohttp's own signals, as a request gets its connection (before any byte of it is
    written): a timeout before them left nothing on the wire."""
    config = aiohttp.TraceConfig()
    config.on_connection_create_end.append(_connected)
    config.on_connection_reuseconn.append(_connected)
    return config


@attrs.frozen
class FileField:
    """A file to send as one multipart field (private to the upload call)."""

    name: str
    filename: str
    content: bytes
    content_type: str


@attrs.frozen
class HttpAnswer:
    """What came back: the HTTP status, the headers and the whole body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class HttpSender(Protocol):
    """Sends one POST; the transport's only view of HTTP."""

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
        max_bytes: int,
        on_answer: Callable[[], None] | None = None,
    ) -> HttpAnswer:
        """POST ``json`` (or an urlencoded ``form``, or multipart ``files``) to ``url``.

        ``on_answer`` is called once the status line is in (the call reached a server),
        before the body is read; a body over ``max_bytes`` raises
        :class:`~fto_async.errors.ResponseTooLargeError` without being buffered.
        """

    async def aclose(self) -> None:
        """Release connections (idempotent)."""


class AiohttpSender:
    """The real sender: one aiohttp session, opened on first use.

    Args:
        limit: connections to keep (the in-flight bound plus a few).
        ssl_context: ``True``, ``False`` or an :class:`ssl.SSLContext` for the connector.
        user_agent: the ``User-Agent`` header.
        session: a session of the caller's to use instead (never closed here).
    """

    def __init__(
        self,
        *,
        limit: int,
        ssl_context: bool | ssl.SSLContext,
        user_agent: str,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._limit = limit
        self._ssl = ssl_context
        self._user_agent = user_agent
        self._session = session
        self._owns_session = session is None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._limit, limit_per_host=self._limit, ssl=self._ssl
            )
            self._session = aiohttp.ClientSession(
                connector=connector, headers={"User-Agent": self._user_agent},
                trace_configs=[_tracer()],
            )
        return self._session

    @property
    def owns_session(self) -> bool:
        """Whether :meth:`aclose` closes the session (it was created here)."""
        return self._owns_session

    @property
    def opened(self) -> bool:
        """Whether a session exists (an unclosed one is worth a ``ResourceWarning``)."""
        return self._session is not None

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
        max_bytes: int,
        on_answer: Callable[[], None] | None = None,
    ) -> HttpAnswer:
        kwargs: dict[str, Any] = {}
        if files:
            # Images of up to 4 MiB go as streams: aiohttp warns (ResourceWarning) about
            # raw bytes bodies over 1 MiB, which would lock the event loop.
            data = aiohttp.FormData()
            for f in files:
                data.add_field(f.name, io.BytesIO(f.content), filename=f.filename,
                               content_type=f.content_type)  # fmt: skip
            kwargs["data"] = data
        elif form is not None:
            kwargs["data"] = dict(form)
        else:
            body = _json.dumps(json if json is not None else {}).encode()
            # A workflow body carrying a base64 image goes as a stream (see above).
            kwargs["data"] = io.BytesIO(body) if len(body) > _LARGE_BODY else body
            headers = {**headers, "Content-Type": "application/json"}
        connected = _Connected()
        try:
            async with self._open().post(
                url, params=params, headers=headers, timeout=timeout,
                trace_request_ctx=connected, **kwargs,
            ) as resp:
                if on_answer is not None:
                    on_answer()
                body = await _read_body(resp, max_bytes, urlsplit(url).path)
                return HttpAnswer(resp.status, resp.headers, body)
        except TimeoutError as exc:
            # Only our own session carries the tracer: a caller's session says nothing,
            # and its timeouts stay ambiguous (the safe reading).
            if self._owns_session and not connected.yes:
                raise NotConnectedTimeout(f"no connection to {urlsplit(url).netloc} in "
                                          "time") from exc  # fmt: skip
            raise

    async def aclose(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()


async def _read_body(resp: aiohttp.ClientResponse, limit: int, path: str) -> bytes:
    """The answer's body, at most ``limit`` bytes (never more is buffered).

    Raises:
        ResponseTooLargeError: the body (its ``Content-Length``, or what came) is larger.
    """
    length = resp.content_length
    if length is not None and length > limit:
        raise ResponseTooLargeError(
            f"{path}: the answer is {length} bytes, over max_response_bytes ({limit})",
            http_status=resp.status,
        )
    chunks: list[bytes] = []
    total = 0
    while chunk := await resp.content.read(min(1 << 16, limit + 1 - total)):
        total += len(chunk)
        if total > limit:
            raise ResponseTooLargeError(
                f"{path}: the answer is over max_response_bytes ({limit} bytes); not read",
                http_status=resp.status,
            )
        chunks.append(chunk)
    return b"".join(chunks)
