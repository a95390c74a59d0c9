"""The two credential schemes, and the token cache with single-flight refresh.

* :class:`ClientCredentials`: enterprise client id and secret. ``POST /oauth/token``
  (HTTP Basic, ``grant_type=client_credentials``) yields a token valid for 30 minutes;
  business calls send ``?apikey=<client_id>`` and ``Authorization: Bearer <token>``.
* :class:`ApiKey`: an ``sk-`` key from the Eureka admin dashboard, sent as
  ``Authorization: Bearer sk-...`` and ``?apikey=sk-...``; no token exchange.

Neither class ever shows its secret in ``repr()`` or ``str()``.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import attrs

from .config import env_settings
from .errors import (
    ApiError,
    AuthenticationError,
    ConfigurationError,
    FtoError,
    MalformedResponseError,
    ServerError,
    error_from_code,
)

__all__ = [
    "REFRESH_MARGIN",
    "ApiKey",
    "Authenticator",
    "ClientCredentials",
    "StaticKeyAuth",
    "TokenAuth",
    "TokenFetcher",
    "env_credentials",
    "parse_token_reply",
    "resolve_credentials",
    "token_error",
]

#: Refresh a token this many seconds before it expires (PatSnap's own client uses 60 s).
REFRESH_MARGIN = 60.0

TokenFetcher = Callable[["ClientCredentials"], Awaitable[Mapping[str, Any]]]


def _mask(value: str) -> str:
    return f"{value[:3]}…" if len(value) > 8 else "***"


@attrs.frozen(repr=False)
class ClientCredentials:
    """An enterprise client id and secret (OAuth client credentials).

    Example::

        creds = ClientCredentials("my-client-id", "my-secret")
    """

    client_id: str
    client_secret: str

    def __attrs_post_init__(self) -> None:
        for name in ("client_id", "client_secret"):
            if not isinstance(getattr(self, name), str):
                raise ConfigurationError(f"{name} must be a string")
        if not self.client_id or not self.client_secret:
            raise ConfigurationError("client_id and client_secret must both be non-empty")

    @property
    def account_id(self) -> str:
        """The account's non-secret identity (the client_id), e.g. for shared-gate keys."""
        return self.client_id

    def __repr__(self) -> str:
        return f"ClientCredentials(client_id={_mask(self.client_id)!r}, client_secret='***')"


@attrs.frozen(repr=False)
class ApiKey:
    """An Eureka open-platform API key (``sk-...``).

    Example::

        key = ApiKey("sk-...")
    """

    key: str

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key.startswith("sk-") or len(self.key) < 4:
            raise ConfigurationError("api_key must be an 'sk-' key")

    @property
    def account_id(self) -> str:
        """The account's non-secret identity: ``sk:`` and a SHA-256 prefix of the key."""
        return "sk:" + hashlib.sha256(self.key.encode()).hexdigest()[:32]

    def __repr__(self) -> str:
        return "ApiKey(key='sk-***')"


def parse_token_reply(body: Mapping[str, Any]) -> tuple[str, float]:
    """Take ``(token, expires_in)`` from a token reply.

    Accepts the documented ``token`` field, ``access_token``, and ``data.token``.

    Raises:
        AuthenticationError: the reply carries an error code.
        MalformedResponseError: the reply holds no token.
    """
    data = body.get("data")
    nested: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
    token = body.get("token") or body.get("access_token") or nested.get("token")
    if not isinstance(token, str) or not token:
        raise MalformedResponseError("token reply holds no token")
    expires = body.get("expires_in", nested.get("expires_in", 1799))
    try:
        expires_in = float(expires)
    except (TypeError, ValueError):
        expires_in = 1799.0
    return token, expires_in


class Authenticator(Protocol):
    """What the transport needs from a credential scheme (private protocol)."""

    #: The value of the ``apikey`` query parameter.
    apikey: str

    async def bearer(self) -> str:
        """The value to send after ``Bearer``; may fetch a token."""

    def invalidate(self, bearer: str) -> bool:
        """Forget ``bearer`` after the platform refused it; True if a refresh can help."""


class StaticKeyAuth:
    """Private: the ``sk-`` scheme. The key is both the bearer and the apikey."""

    __slots__ = ("_key", "apikey")

    def __init__(self, key: ApiKey) -> None:
        self._key = key
        self.apikey = key.key

    async def bearer(self) -> str:
        return self._key.key

    def invalidate(self, bearer: str) -> bool:
        return False

    def __repr__(self) -> str:
        return "StaticKeyAuth(apikey='sk-***')"


class TokenAuth:
    """Token cache for client credentials, with single-flight refresh.

    Any number of concurrent callers that find the token missing or about to expire
    share one token request, and its failure too (a wrong secret costs one request, not
    one per waiting caller). Private to the SDK; the transport builds it.
    """

    __slots__ = (
        "_clock",
        "_creds",
        "_expires_at",
        "_failure",
        "_fetch",
        "_fetches",
        "_lock",
        "_token",
        "apikey",
    )

    def __init__(
        self,
        creds: ClientCredentials,
        fetch: TokenFetcher,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._creds = creds
        self._fetch = fetch
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock: asyncio.Lock | None = None
        self._fetches = 0  # token requests finished (with a reply or an FtoError)
        self._failure: FtoError | None = None  # how the last one failed, if it did
        self.apikey = creds.client_id

    def _valid(self) -> bool:
        return self._token is not None and self._clock() < self._expires_at

    async def bearer(self) -> str:
        if self._valid():
            assert self._token is not None
            return self._token
        if self._lock is None:
            self._lock = asyncio.Lock()
        seen = self._fetches
        async with self._lock:
            if self._fetches != seen:  # a fetch ended while we waited: share its outcome
                if self._failure is not None:
                    raise self._failure
                if self._token is not None:  # (None: refused since, fetch again)
                    return self._token
            if not self._valid():
                await self._refresh()
            assert self._token is not None
            return self._token

    async def _refresh(self) -> None:
        started = self._clock()
        try:
            token, ttl = parse_token_reply(await self._fetch(self._creds))
        except FtoError as exc:
            self._failure, self._fetches = exc, self._fetches + 1
            raise
        margin = min(REFRESH_MARGIN, ttl / 2)
        self._token, self._expires_at = token, started + ttl - margin
        self._failure, self._fetches = None, self._fetches + 1

    def invalidate(self, bearer: str) -> bool:
        if bearer == self._token:
            self._token = None
        return True

    def __repr__(self) -> str:
        state = "valid" if self._valid() else "none"
        return f"TokenAuth(apikey={_mask(self.apikey)!r}, token={state})"


def token_error(body: Mapping[str, Any], http_status: int) -> ApiError | None:
    """The error a token reply reports, if any (private helper for the transport).

    A platform code decides the class (67200003 is fatal, 67200100 busy is retried);
    without one, HTTP 5xx is a retryable :class:`ServerError` and anything else refused
    is an :class:`AuthenticationError`.
    """
    code = body.get("error_code")
    refused = body.get("status") is False or code not in (None, 0, "0")
    if not refused and (http_status < 400 or "token" in body or "access_token" in body):
        return None
    message = str(body.get("error_msg") or body.get("message") or "token request refused")
    try:
        num = int(code) if code is not None else None
    except (TypeError, ValueError):
        num = None
    if num:
        return error_from_code(num, message, http_status=http_status)
    cls = ServerError if http_status >= 500 else AuthenticationError
    return cls(None, message, http_status=http_status)


def resolve_credentials(
    client_id: str | None, client_secret: str | None, api_key: str | None,
    *, from_env: bool = False,
) -> ClientCredentials | ApiKey:
    """The credentials a client uses: ``api_key`` alone, or ``client_id`` with
    ``client_secret``. ``from_env``: none were passed and the environment was read, so
    the error names the variables looked for (and which are set, never their values).
    """
    if api_key is not None:
        if client_id is not None or client_secret is not None:
            raise ConfigurationError("pass either api_key or client_id/client_secret, not both")
        return ApiKey(api_key)
    if client_id is None or client_secret is None:
        if from_env:
            raise ConfigurationError(
                "no credentials: none passed, and the environment has no PATSNAP_API_KEY "
                "nor both PATSNAP_CLIENT_ID and PATSNAP_CLIENT_SECRET" + _found_in_env()
            )
        given, missing = (("client_id", "client_secret") if client_secret is None
                          else ("client_secret", "client_id"))  # fmt: skip
        raise ConfigurationError(
            f"no credentials: {given} was passed without {missing}; pass both, or api_key"
        )
    return ClientCredentials(client_id, client_secret)


def env_credentials() -> tuple[str | None, str | None, str | None]:
    """The credentials ``from_env`` would read (an ``sk-`` key wins over a client id)."""
    env = env_settings()
    api_key = env["api_key"]
    if isinstance(api_key, str):
        return None, None, api_key
    client_id, secret = env["client_id"], env["client_secret"]
    return (client_id if isinstance(client_id, str) else None,
            secret if isinstance(secret, str) else None, None)  # fmt: skip


def _found_in_env() -> str:
    """Which of the looked-for variables are set (names only, never values)."""
    env = env_settings()
    names = {"api_key": "PATSNAP_API_KEY", "client_id": "PATSNAP_CLIENT_ID",
             "client_secret": "PATSNAP_CLIENT_SECRET"}  # fmt: skip
    found = [name for field, name in names.items() if env[field] is not None]
    return f" (set: {', '.join(found)})" if found else " (none of them is set)"
