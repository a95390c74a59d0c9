"""The single place a call goes out: rate gate, auth, aiohttp, envelope, retries.

One :class:`Transport` belongs to one client (one account). For every call it

1. retries the attempt below as the :class:`~fto_async.retry.RetryPolicy` says;
2. gets the bearer (fetching a token if needed; single flight), waits for a slot in the
   :class:`~fto_async.ratelimit.RateGate`, then reads the bearer again, so a call that
   waited long in the gate never goes out with a token replaced meanwhile;
3. sends the POST, reads the answer, and turns aiohttp faults into our errors (the
   only ``except aiohttp...`` in the package is :func:`_translate_faults`);
4. decodes the envelope, tells the gate about throttling, and on 67200003 / HTTP 401
   refreshes the token once and sends again.

Answer bodies are read up to ``ClientConfig.max_response_bytes`` (a larger one raises
:class:`~fto_async.errors.ResponseTooLargeError`, never buffered whole). Every attempt
feeds one :class:`~fto_async._reach.Reachability`, which turns a platform that cannot be
reached, or a server that is not the platform, into one fatal error early.

URLs are logged with the ``apikey`` value redacted; secrets never reach a log line.
"""

from __future__ import annotations

import base64
import enum
import json
import logging
import re
import time
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from contextlib import nullcontext
from typing import Any

import aiohttp
import attrs

from ._envelope import decode_answer, parse_retry_after
from ._http import AiohttpSender, FileField, HttpSender, NotConnectedTimeout
from ._lanes import NEW, STARTED, current_class, work_class
from ._observe import Attempt, Observer
from ._reach import Reachability, loop_time
from .auth import ApiKey, Authenticator, ClientCredentials, StaticKeyAuth, TokenAuth, token_error
from .config import ClientConfig
from .errors import (
    AuthenticationError,
    ConnectError,
    FtoError,
    MalformedResponseError,
    RateLimitedError,
    RequestTimeout,
    ResponseDecodeError,
    ServerError,
    TLSError,
    TransportError,
    may_have_created_task,
)
from .ratelimit import RateGate, RateGateProtocol
from .retry import RetryEvent, RetryHook, RetryPolicy

__all__ = [
    "TOKEN_PATH",
    "BeforeSend",
    "FileField",
    "HttpSender",
    "Transport",
    "TransportStats",
    "redact_url",
]

log = logging.getLogger("fto_async.transport")

TOKEN_PATH = "/oauth/token"  # noqa: S105 - a path, not a secret
_SECRET_PARAM = re.compile(r"((?:api_?key|apiKey|access_token|token)=)[^&#\s]+", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` with the value of ``apikey`` (and any token parameter) replaced by ``***``."""
    return _SECRET_PARAM.sub(r"\1***", url)


def _basic_auth(creds: ClientCredentials) -> str:
    # Built by hand: aiohttp 3.14 deprecates BasicAuth, and its encode_basic_auth()
    # replacement does not exist in the oldest aiohttp we support (3.9).
    pair = f"{creds.client_id}:{creds.client_secret}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


@attrs.define
class TransportStats:
    """Counters of one client's traffic (for progress displays and tests).

    Attributes:
        calls: HTTP requests started to business paths (every attempt, answered or not).
        answered: those that reached the platform: an HTTP answer came back (any status).
            This is what the platform counts; the CLI shows it as "calls used".
        unconnected: attempts that never got a connection (refused, DNS, TLS handshake),
            token requests included.
        unanswered: attempts sent that got no answer (timeout, connection dropped),
            token requests included.
        token_requests: requests to ``/oauth/token``.
        refresh_resends: calls sent again after a refused token was refreshed (counted
            as retries by :attr:`FtoClient.retries <fto_async.FtoClient.retries>`).
        by_code: answers by platform error code (0 for success, -1 for no answer).
        ambiguous_submits: submits retried after a failure that may have created a task
            on the platform anyway (67200100, 5xx, timeouts, dropped connections; see
            :func:`~fto_async.errors.may_have_created_task`).
        waiting: callers of :meth:`FtoClient.screen <fto_async.FtoClient.screen>`
            waiting for their answers now (``FtoClient.screen_stats`` has more).
    """

    calls: int = 0
    answered: int = 0
    unconnected: int = 0
    unanswered: int = 0
    token_requests: int = 0
    refresh_resends: int = 0
    by_code: Counter[int] = attrs.field(factory=Counter)
    ambiguous_submits: int = 0
    waiting: int = 0


BeforeSend = Callable[[], Awaitable[None]]


class _State(enum.Enum):
    UNOPENED = 1
    OPENED = 2
    CLOSED = 3


def _tls_reason(exc: aiohttp.ClientError) -> str:
    """A short reason for a failed TLS handshake (never a URL: no query string, no key)."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert = exc.certificate_error
        detail = getattr(cert, "verify_message", None) or getattr(cert, "reason", None)
        return f"certificate verify failed: {detail}" if detail else "certificate verify failed"
    if isinstance(exc, aiohttp.ServerFingerprintMismatch):
        return "certificate fingerprint mismatch"
    os_error = getattr(exc, "os_error", None)
    return str(getattr(os_error, "reason", None) or type(exc).__name__)


class _translate_faults:
    """Turn aiohttp and timeout faults into :class:`~fto_async.errors.TransportError`.

    A class rather than a generator-based context manager: it wraps every call. It counts
    the attempt as answered (``got_answer()``), unconnected or unanswered, and tells the
    :class:`~fto_async._reach.Reachability` about attempts with no answer.
    """

    __slots__ = ("answered", "attempt", "business", "path", "reach", "started", "stats")

    def __init__(
        self,
        path: str,
        stats: TransportStats | None = None,
        reach: Reachability | None = None,
        *,
        business: bool = True,
    ) -> None:
        self.path = path
        self.stats = stats
        self.reach = reach
        self.business = business  # False for token requests: not calls, not in by_code
        self.started = loop_time()  # the clock Reachability reads
        self.answered = False
        self.attempt: Attempt | None = None  # told of the answer (the call ledger)

    def got_answer(self) -> None:
        """The status line came back: the call reached the platform."""
        self.answered = True
        if self.attempt is not None:
            self.attempt.got_answer()
        if self.stats is not None and self.business:
            self.stats.answered += 1
        if self.reach is not None:
            self.reach.answered()

    async def __aenter__(self) -> _translate_faults:
        return self

    async def __aexit__(self, _t: object, exc: BaseException | None, _tb: object) -> None:
        if exc is None or not isinstance(exc, TimeoutError | aiohttp.ClientError):
            return
        if self.stats is not None and self.business:
            self.stats.by_code[-1] += 1  # no usable answer
        log.debug("%s: no usable answer (%s)", self.path, type(exc).__name__)
        err = self._error(exc)
        if not self.answered:
            if self.stats is not None:
                if err.request_sent:
                    self.stats.unanswered += 1
                else:
                    self.stats.unconnected += 1
            fatal = None if self.reach is None else self.reach.unanswered(self.started, err)
            if fatal is not None:
                raise fatal from exc
        raise err from exc

    def _error(self, exc: BaseException) -> TransportError:
        path = self.path
        if isinstance(exc, NotConnectedTimeout):  # the time ran out before a connection
            err: TransportError = ConnectError(f"{path}: no connection in time")
            err.request_sent = False
            return err
        if isinstance(exc, TimeoutError):
            return RequestTimeout(f"{path}: no answer in time")
        if isinstance(exc, aiohttp.ClientSSLError | aiohttp.ServerFingerprintMismatch):
            return TLSError(f"{path}: TLS handshake failed ({_tls_reason(exc)})")
        if isinstance(exc, aiohttp.ClientConnectorError):
            reason = exc.os_error.strerror or exc.os_error
            err = ConnectError(f"{path}: cannot connect ({reason})")
            err.request_sent = False
            return err
        if isinstance(exc, aiohttp.ClientPayloadError):
            return MalformedResponseError(f"{path}: truncated body ({type(exc).__name__})")
        return ConnectError(f"{path}: connection failed ({type(exc).__name__})")


def _is_envelope(body: bytes) -> bool:
    """Whether ``body`` looks like the platform's JSON object (not an HTML page)."""
    return body.lstrip()[:1] == b"{"


class Transport:
    """Sends every call of one client; owns its aiohttp session (private to the SDK).

    Args:
        credentials: the account's :class:`~fto_async.auth.ClientCredentials` or
            :class:`~fto_async.auth.ApiKey`.
        config: see :class:`~fto_async.config.ClientConfig`.
        gate: a rate gate to share (default: a new one from ``config.rate``).
        retry_hooks: called before each retry, see :class:`~fto_async.retry.RetryEvent`.
        session: an aiohttp session to use; it is not closed by :meth:`aclose`.
        task_paths: paths whose calls create tasks (to count ambiguous resubmits).
        sender: the HTTP layer (default: an :class:`~fto_async._http.AiohttpSender`);
            :class:`fto_async.testing.MockTransport` answers from a handler instead.
        observer: told about every attempt (hooks, OpenTelemetry, the call ledger).
    """

    def __init__(
        self,
        credentials: ClientCredentials | ApiKey,
        config: ClientConfig,
        *,
        gate: RateGateProtocol | None = None,
        retry_hooks: tuple[RetryHook, ...] = (),
        session: aiohttp.ClientSession | None = None,
        task_paths: frozenset[str] = frozenset(),
        sender: HttpSender | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.config = config
        #: Hooks, OpenTelemetry and the call ledger (see :mod:`fto_async._observe`).
        self.observer = observer or Observer(base_url=config.base_url)
        self.gate: RateGateProtocol = gate or RateGate(config.rate)
        self.stats = TransportStats()
        #: The ``Date`` header of the last answer (``fto-async doctor`` checks the clock).
        self.server_date: str | None = None
        self._task_paths = task_paths
        self.retry = RetryPolicy(config.retry, hooks=(self._count_ambiguous, *retry_hooks))
        self._auth: Authenticator = (
            StaticKeyAuth(credentials)
            if isinstance(credentials, ApiKey)
            else TokenAuth(credentials, self._fetch_token)
        )
        # Which channels carry the credential (reference §7.2a): query, header, or both.
        self._query_key = config.key_auth in ("both", "query")
        self._bearer = config.key_auth in ("both", "bearer")
        self._sender: HttpSender = sender or AiohttpSender(
            limit=config.rate.in_flight_limit + 4, ssl_context=config.ssl,
            user_agent=config.user_agent, session=session,
        )
        self._owns_session = session is None and sender is None
        self._state = _State.UNOPENED
        self._base = config.base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(
            total=config.timeout, sock_connect=config.connect_timeout
        )
        self._send = self.retry.wrap(self._attempt)
        self.reach = Reachability(
            redact_url(self._base), after=config.unreachable_after,
            attempts=config.unreachable_attempts, not_platform_after=config.not_platform_after,
        )  # fmt: skip

    # -- lifecycle ------------------------------------------------------------------

    def _check_open(self) -> HttpSender:
        if self._state is _State.CLOSED:
            raise RuntimeError("this client is closed; create a new one")
        self._state = _State.OPENED
        return self._sender

    async def aclose(self) -> None:
        """Close the HTTP layer if this transport created it. Idempotent."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        await self._sender.aclose()

    @property
    def closed(self) -> bool:
        """True after :meth:`aclose`."""
        return self._state is _State.CLOSED

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if self._state is _State.OPENED and self._owns_session and self._sender_opened():
            _warn(f"unclosed {self!r}: use 'async with FtoClient(...)'", ResourceWarning, 2)

    def _sender_opened(self) -> bool:
        return isinstance(self._sender, AiohttpSender) and self._sender.opened

    # -- calls ----------------------------------------------------------------------

    async def call(
        self,
        path: str,
        payload: Mapping[str, Any] | None = None,
        *,
        files: tuple[FileField, ...] = (),
        before_send: BeforeSend | None = None,
        priority: bool = False,
    ) -> Any:
        """Send one call to ``path`` (with retries) and return the answer's data.

        Args:
            path: the endpoint path.
            payload: the JSON body.
            files: multipart fields instead of a JSON body.
            before_send: awaited each time the rate gate has admitted an attempt, just
                before it goes out (the journal records ``submitting`` there).
            priority: the rate gate admits it before waiting calls without priority
                (see :meth:`fto_async.ratelimit.RateGate.slot`; polls use it).

        Raises:
            FtoError: the typed error of the last attempt.
        """
        return await self._send(path, payload, files, before_send, priority, [0])

    async def _attempt(
        self,
        path: str,
        payload: Mapping[str, Any] | None,
        files: tuple[FileField, ...],
        before_send: BeforeSend | None,
        priority: bool = False,
        sends: list[int] | None = None,  # attempts of this call so far (resend count)
    ) -> Any:
        refreshed = False
        while True:
            # A first look before the gate: a burst of callers shares one token fetch,
            # and one refusal of a wrong secret (the single flight of TokenAuth).
            await self._auth.bearer()
            used: list[str] = []  # the bearer the attempt went out with
            try:
                return await self._observed(path, payload, files, used, before_send, priority,
                                            sends or [0])
            except AuthenticationError as exc:
                expired = exc.code == 67200003 or (exc.code is None and exc.http_status == 401)
                if refreshed or not expired or not used or not self._auth.invalidate(used[0]):
                    raise
                refreshed = True
                self.stats.refresh_resends += 1  # a resend: counted with the retries
                log.info("token refused on %s; refreshing once", path)

    async def _observed(
        self,
        path: str,
        payload: Mapping[str, Any] | None,
        files: tuple[FileField, ...],
        used: list[str],
        before_send: BeforeSend | None,
        priority: bool,
        sends: list[int],
    ) -> Any:
        """:meth:`_send_once`, reported to the observer (a span, hooks, the ledger)."""
        attempt = self.observer.attempt(path, sends[0])
        # A resend (an attempt went out before) is work already started: at the gate it
        # goes before new items' first calls (fto_async._lanes).
        again = work_class(STARTED) if sends[0] and current_class() == NEW else nullcontext()
        try:
            with again:
                data = await self._send_once(path, payload, files, used, before_send,
                                             priority, attempt)  # fmt: skip
        except BaseException as exc:
            attempt.end(exc)
            raise
        finally:
            sends[0] += attempt.went_out  # a resend is an attempt after one that went out
        attempt.end(None)
        return data

    async def _send_once(
        self,
        path: str,
        payload: Mapping[str, Any] | None,
        files: tuple[FileField, ...],
        used: list[str],
        before_send: BeforeSend | None,
        priority: bool,
        attempt: Attempt,
    ) -> Any:
        sender = self._check_open()
        url = self._base + path
        params = {"apikey": self._auth.apikey} if self._query_key else {}
        started = time.monotonic()
        async with attempt.slot(self.gate, priority) as permit:
            # The bearer is read again once the gate admits the call: a call can wait in
            # the gate for long, and the token seen before may have been replaced since.
            bearer = await self._auth.bearer()
            used.append(bearer)
            headers = {"Authorization": f"Bearer {bearer}"} if self._bearer else {}
            if before_send is not None:
                await before_send()
            self.stats.calls += 1
            attempt.begin()
            async with _translate_faults(path, self.stats, self.reach) as faults:
                faults.attempt = attempt
                answer = await sender.post(
                    url, params=params, headers=headers, json=payload or {}, files=files,
                    timeout=self._timeout, max_bytes=self.config.max_response_bytes,
                    on_answer=faults.got_answer,
                )
        status, body, resp_headers = answer.status, answer.body, answer.headers
        attempt.status = status
        self.server_date = resp_headers.get("Date")
        try:
            data = decode_answer(status, body, resp_headers, now=time.time())
        except RateLimitedError:
            self.stats.by_code[67200002] += 1
            self.gate.on_throttled(permit)
            self.reach.body(envelope=True)
            raise
        except FtoError as exc:
            self.stats.by_code[getattr(exc, "code", None) or -1] += 1
            self._log(path, status, exc, started)
            envelope = _is_envelope(body) and not isinstance(
                exc, MalformedResponseError | ResponseDecodeError
            )
            self.reach.body(envelope=envelope)
            fatal = (
                None if envelope else self.reach.check_answer(ambiguous=may_have_created_task(exc))
            )
            if fatal is not None:
                raise fatal from exc
            raise
        self.reach.body(envelope=True)
        self.stats.by_code[0] += 1
        self.gate.on_success(permit)
        self._log(path, status, None, started)
        return data

    def _log(self, path: str, status: int, exc: FtoError | None, started: float) -> None:
        if log.isEnabledFor(logging.DEBUG):
            query = f"?apikey={self._auth.apikey}" if self._query_key else ""
            url = redact_url(f"{self._base}{path}{query}")
            ms = (time.monotonic() - started) * 1000
            outcome = "ok" if exc is None else f"{type(exc).__name__}: {exc}"
            log.debug("POST %s -> HTTP %d in %.0f ms: %s", url, status, ms, outcome)

    async def _fetch_token(self, creds: ClientCredentials) -> Mapping[str, Any]:
        attempt = self.observer.attempt(TOKEN_PATH, 0)  # a span and a ledger line too
        try:
            body = await self._token_once(creds, attempt)
        except BaseException as exc:
            attempt.end(exc)
            raise
        attempt.end(None)
        return body

    async def _token_once(self, creds: ClientCredentials, attempt: Attempt) -> Mapping[str, Any]:
        sender = self._check_open()
        self.stats.token_requests += 1
        attempt.begin()
        async with _translate_faults(
            TOKEN_PATH, self.stats, self.reach, business=False
        ) as faults:
            faults.attempt = attempt
            answer = await sender.post(
                self._base + TOKEN_PATH,
                form={"grant_type": "client_credentials"},
                headers={"Authorization": _basic_auth(creds)},
                timeout=self._timeout, max_bytes=self.config.max_response_bytes,
                on_answer=faults.got_answer,
            )
        status = attempt.status = answer.status
        self.server_date = answer.headers.get("Date")
        try:
            body = json.loads(answer.body)
        except (ValueError, RecursionError):
            body = None
        if status == 429 and not (isinstance(body, Mapping) and body.get("error_code")):
            # Throttled (reference §9: PatSnap's scripts retry a bare 429): retried, never
            # an authentication failure, and an answer of the platform (no reachability
            # alarm). The token call holds no gate permit: the retry's backoff paces it.
            self.reach.body(envelope=True)
            raise RateLimitedError(
                None, "token request throttled (HTTP 429)", http_status=status,
                retry_after=parse_retry_after(answer.headers.get("retry-after"), time.time()),
            )
        self.reach.body(envelope=isinstance(body, Mapping))
        if not isinstance(body, Mapping) and (fatal := self.reach.check_answer()) is not None:
            raise fatal
        if not isinstance(body, Mapping):
            if status >= 500:
                raise ServerError(None, f"token request failed (HTTP {status})",
                                  http_status=status)
            if status >= 400:
                raise AuthenticationError(None, f"token request refused (HTTP {status})",
                                          http_status=status)
            raise MalformedResponseError(f"token reply is not a JSON object (HTTP {status})",
                                         http_status=status)
        err = token_error(body, status)
        if err is not None:
            raise err
        log.debug("fetched a token from %s", TOKEN_PATH)
        return body

    def _count_ambiguous(self, event: RetryEvent) -> None:
        if event.path in self._task_paths and may_have_created_task(event.error):
            self.stats.ambiguous_submits += 1
            log.warning(
                "resubmitting to %s after %s: the first submit may have created a task",
                event.path, type(event.error).__name__,
            )

    def __repr__(self) -> str:
        return f"<Transport {self._base} {self._state.name.lower()} calls={self.stats.calls}>"
