"""Both credential schemes, the token cache and its single-flight refresh."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from aiohttp import web

from fto_async import (
    ApiKey,
    AuthenticationError,
    ClientCredentials,
    ConfigurationError,
    RetryConfig,
)
from fto_async.auth import TokenAuth, parse_token_reply
from fto_async.errors import MalformedResponseError, ServerError
from tests._shared import CLIENT_ID, REPORT, SUBMIT, TOKEN

from ._support import (
    TokenEndpoint,
    base_url,
    business_calls,
    envelope,
    handcrafted,
    image_request,
    make_client,
    running,
)


async def test_token_fetched_once_and_reused() -> None:
    """One token serves every call until it expires."""
    async with running() as (emu, client):
        task_id = await client.submit_image_search(image_request())
        for _ in range(5):
            await client.get_image_search_report(task_id)
        assert emu.stats.token_requests == 1
        assert client.stats.token_requests == 1
        assert client.stats.calls == 6


async def test_concurrent_first_calls_share_one_token_request() -> None:
    """50 coroutines starting together with no token cause exactly one token request."""
    async with running() as (emu, client):
        await asyncio.gather(*(client.submit_image_search(image_request()) for _ in range(50)))
        assert emu.stats.token_requests == 1


async def test_expired_token_refreshed_once_for_100_coroutines() -> None:
    """100 coroutines meeting an expired token cause exactly one token request and all succeed."""
    async with running() as (emu, client):
        task_id = await client.submit_image_search(image_request())
        assert emu.expire_tokens() == 1
        emu.stats.reset()
        reports = await asyncio.gather(
            *(client.get_image_search_report(task_id) for _ in range(100))
        )
        assert len(reports) == 100
        assert emu.stats.token_requests == 1
        assert emu.stats.count(REPORT, 0) == 100
        # every call refused with the old token was sent again once: a retry too
        assert client.retries == client.stats.refresh_resends == emu.stats.count(REPORT, 67200003)
        assert client.transport.retry.retries == 0  # none by the retry policy


async def test_refused_token_mid_run_refreshes_once_and_succeeds() -> None:
    """67200003 on a call refreshes the token exactly once and the call succeeds."""
    async with running() as (emu, client):
        await client.submit_image_search(image_request())
        emu.expire_tokens()
        task_id = await client.submit_image_search(image_request())
        assert task_id
        assert emu.stats.token_requests == 2
        assert emu.stats.count(SUBMIT, 67200003) == 1
        assert client.retries == 1  # the resend after the refresh
        assert client.transport.retry.retries == 0


async def test_token_ttl_expiry_refreshes_before_the_platform_refuses() -> None:
    """A token near its end is replaced before use (refresh margin), without a 67200003."""
    async with running(emu_config={"token_ttl": 1}) as (emu, client):
        await client.submit_image_search(image_request())
        await asyncio.sleep(0.6)  # past ttl - margin (the margin is ttl / 2 for short tokens)
        await client.submit_image_search(image_request())
        assert emu.stats.token_requests == 2
        assert emu.stats.count(SUBMIT, 67200003) == 0


async def test_second_refusal_raises_authentication_error() -> None:
    """When the fresh token is refused too, AuthenticationError is raised at once (no loop)."""
    tokens = TokenEndpoint()
    calls = 0

    async def refuse(_request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return envelope(code=67200003, msg="token expired")

    async with handcrafted({TOKEN: tokens.handle, SUBMIT: refuse}) as server, make_client(
        base_url(server)
    ) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.submit_image_search(image_request())
        assert info.value.code == 67200003
        assert info.value.fatal
        assert tokens.requests == 2
        assert calls == 2
        assert client.retries == 1  # the resend after the refresh


async def test_bare_401_refreshes_once_then_raises() -> None:
    """A 401 with no body counts as a refused token: one refresh, then AuthenticationError."""
    tokens = TokenEndpoint()

    async def refuse(_request: web.Request) -> web.Response:
        return web.Response(status=401)

    async with handcrafted({TOKEN: tokens.handle, SUBMIT: refuse}) as server, make_client(
        base_url(server)
    ) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.submit_image_search(image_request())
        assert info.value.http_status == 401
        assert tokens.requests == 2


async def test_other_auth_codes_are_not_refreshed() -> None:
    """67200009 (apikey/token mismatch) is raised without a token refresh."""
    tokens = TokenEndpoint()

    async def mismatch(_request: web.Request) -> web.Response:
        return envelope(code=67200009, msg="mismatch")

    async with handcrafted({TOKEN: tokens.handle, SUBMIT: mismatch}) as server, make_client(
        base_url(server)
    ) as client:
        with pytest.raises(AuthenticationError):
            await client.submit_image_search(image_request())
        assert tokens.requests == 1


async def test_oauth_sends_bearer_token_and_client_id() -> None:
    """Client credentials send HTTP Basic to /oauth/token, then Bearer token + apikey=client_id."""
    seen: list[tuple[str | None, str | None]] = []
    token_auth: list[str | None] = []

    async def token(request: web.Request) -> web.Response:
        token_auth.append(request.headers.get("Authorization"))
        form = await request.post()
        assert form.get("grant_type") == "client_credentials"
        return web.json_response({"token": "tok-A", "expires_in": 1799})

    async def submit(request: web.Request) -> web.Response:
        seen.append((request.headers.get("Authorization"), request.query.get("apikey")))
        return envelope({"task_id": "t1"})

    async with handcrafted({TOKEN: token, SUBMIT: submit}) as server, make_client(
        base_url(server), client_id="id-1", client_secret="pw:1"
    ) as client:
        assert await client.submit_image_search(image_request()) == "t1"
    assert token_auth == ["Basic aWQtMTpwdzox"]  # base64("id-1:pw:1")
    assert seen == [("Bearer tok-A", "id-1")]


async def test_sk_key_sends_bearer_and_apikey_without_token_exchange() -> None:
    """An sk- key is sent as Bearer and as apikey, with no token request."""
    seen: list[tuple[str | None, str | None]] = []
    tokens = TokenEndpoint()

    async def submit(request: web.Request) -> web.Response:
        seen.append((request.headers.get("Authorization"), request.query.get("apikey")))
        return envelope({"task_id": "t1"})

    async with handcrafted({TOKEN: tokens.handle, SUBMIT: submit}) as server, make_client(
        base_url(server), api_key="sk-test-123"
    ) as client:
        await client.submit_image_search(image_request())
        await client.submit_image_search(image_request())
        assert client.stats.token_requests == 0
    assert seen == [("Bearer sk-test-123", "sk-test-123")] * 2
    assert tokens.requests == 0


async def test_sk_key_against_emulator() -> None:
    """The emulator accepts the sk- scheme as the client sends it."""
    async with running("sk") as (emu, client):
        await client.submit_image_search(image_request())
        assert emu.stats.token_requests == 0
        assert emu.stats.count(SUBMIT, 0) == 1


async def test_wrong_secret_fails_at_once_without_business_calls() -> None:
    """A wrong secret raises AuthenticationError at once: one token request, zero calls."""
    async with running(client_id=CLIENT_ID, client_secret="wrong") as (emu, client):
        with pytest.raises(AuthenticationError) as info:
            await client.submit_image_search(image_request())
        assert info.value.fatal
        assert info.value.code == 67200003
        assert emu.stats.token_requests == 1
        assert business_calls(emu) == 0
        assert client.stats.calls == 0
        assert client.retries == 0


async def test_wrong_secret_costs_one_token_request_for_many_callers() -> None:
    """50 coroutines with a wrong secret share one refused token request."""
    async with running(client_id=CLIENT_ID, client_secret="wrong") as (emu, client):
        results = await asyncio.gather(
            *(client.submit_image_search(image_request()) for _ in range(50)),
            return_exceptions=True,
        )
        assert all(isinstance(r, AuthenticationError) for r in results)
        assert emu.stats.token_requests == 1
        assert business_calls(emu) == 0


async def test_unknown_sk_key_fails_without_retry() -> None:
    """An unknown sk- key gets 67200008 once and is not retried."""
    async with running(api_key="sk-unknown") as (emu, client):
        with pytest.raises(AuthenticationError) as info:
            await client.submit_image_search(image_request())
        assert info.value.code == 67200008
        assert business_calls(emu) == 1


@pytest.mark.parametrize(
    "first",
    [
        web.Response(status=503, text="Service Unavailable"),
        web.json_response({"message": "Service Unavailable"}, status=503),
        web.json_response({"status": False, "error_code": 67200100, "error_msg": "busy"}),
    ],
    ids=["text-503", "json-503", "busy"],
)
async def test_token_endpoint_transient_failure_is_retried(first: web.Response) -> None:
    """A 5xx or a busy answer from /oauth/token is transient: the token request is retried."""
    attempts = 0

    async def token(_request: web.Request) -> web.Response:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            return first
        return web.json_response({"token": "tok", "expires_in": 1799})

    async def submit(_request: web.Request) -> web.Response:
        return envelope({"task_id": "t"})

    async with handcrafted({TOKEN: token, SUBMIT: submit}) as server, make_client(
        base_url(server)
    ) as client:
        assert await client.submit_image_search(image_request()) == "t"
        assert attempts == 2
        assert client.retries == 1


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (401, b"", AuthenticationError),
        (400, b'{"status": false, "error_code": 67200015, "error_msg": "Grant type error"}',
         AuthenticationError),
        (200, b'{"status": "approved"}', MalformedResponseError),
        (200, b"<html>oops</html>", MalformedResponseError),
        (502, b"<html>502</html>", ServerError),
    ],
)
async def test_token_endpoint_failures_are_typed(status: int, body: bytes, cls: type) -> None:
    """A refused or garbled token reply becomes the matching FtoError."""

    async def token(_request: web.Request) -> web.Response:
        return web.Response(status=status, body=body, content_type="application/json")

    async with handcrafted({TOKEN: token}) as server, make_client(
        base_url(server), retry=RetryConfig.for_testing(max_attempts=1)
    ) as client:
        with pytest.raises(cls):
            await client.submit_image_search(image_request())
        assert client.stats.calls == 0


# -- units -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ({"token": "a", "token_type": "BearerToken", "expires_in": 1799, "status": "approved",
          "issued_at": "1692347672874"}, ("a", 1799.0)),
        ({"access_token": "b", "expires_in": "600"}, ("b", 600.0)),
        ({"data": {"token": "c", "expires_in": 100}}, ("c", 100.0)),
        ({"data": {"token": "d"}}, ("d", 1799.0)),
        ({"token": "e", "expires_in": "soon"}, ("e", 1799.0)),
    ],
)
def test_parse_token_reply_accepts_all_shapes(
    reply: Mapping[str, Any], expected: tuple[str, float]
) -> None:
    """parse_token_reply reads ``token``, ``access_token`` or ``data.token`` and expires_in."""
    assert parse_token_reply(reply) == expected


@pytest.mark.parametrize("reply", [{}, {"token": ""}, {"token": 5}, {"data": "x"}])
def test_parse_token_reply_without_token(reply: Mapping[str, Any]) -> None:
    """A reply without a usable token is a MalformedResponseError."""
    with pytest.raises(MalformedResponseError):
        parse_token_reply(reply)


async def test_token_auth_refreshes_within_margin_of_expiry() -> None:
    """TokenAuth reuses a token until REFRESH_MARGIN before its end, then fetches a new one."""
    now = [1000.0]
    fetched: list[int] = []

    async def fetch(_creds: ClientCredentials) -> Mapping[str, Any]:
        fetched.append(1)
        return {"token": f"t{len(fetched)}", "expires_in": 1799}

    auth = TokenAuth(ClientCredentials("id", "secret"), fetch, clock=lambda: now[0])
    assert await auth.bearer() == "t1"
    now[0] += 1799 - 61
    assert await auth.bearer() == "t1"
    now[0] += 2
    assert await auth.bearer() == "t2"
    assert auth.invalidate("t-old") is True  # a stale bearer leaves the new token alone
    assert await auth.bearer() == "t2"
    assert auth.invalidate("t2") is True
    assert await auth.bearer() == "t3"


async def test_token_auth_single_flight() -> None:
    """Concurrent callers of TokenAuth.bearer share one fetch."""
    fetched = 0

    async def fetch(_creds: ClientCredentials) -> Mapping[str, Any]:
        nonlocal fetched
        fetched += 1
        await asyncio.sleep(0.01)
        return {"token": "tok", "expires_in": 1799}

    auth = TokenAuth(ClientCredentials("id", "secret"), fetch)
    assert set(await asyncio.gather(*(auth.bearer() for _ in range(100)))) == {"tok"}
    assert fetched == 1


async def test_token_auth_shares_a_failure_with_waiters_only() -> None:
    """Callers waiting on a failing fetch get its error; a later caller tries again."""
    replies: list[Any] = [AuthenticationError(67200003, "refused"), {"token": "ok"}]
    fetched = 0

    async def fetch(_creds: ClientCredentials) -> Mapping[str, Any]:
        nonlocal fetched
        fetched += 1
        await asyncio.sleep(0.01)
        reply = replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply  # type: ignore[no-any-return]

    auth = TokenAuth(ClientCredentials("id", "secret"), fetch)
    results = await asyncio.gather(*(auth.bearer() for _ in range(10)), return_exceptions=True)
    assert all(isinstance(r, AuthenticationError) for r in results)
    assert fetched == 1
    assert await auth.bearer() == "ok"
    assert fetched == 2


async def test_token_auth_zero_lifetime_still_single_flight() -> None:
    """Waiters share a just-fetched token even when its lifetime is zero."""
    fetched = 0

    async def fetch(_creds: ClientCredentials) -> Mapping[str, Any]:
        nonlocal fetched
        fetched += 1
        await asyncio.sleep(0.01)
        return {"token": f"t{fetched}", "expires_in": 0}

    auth = TokenAuth(ClientCredentials("id", "secret"), fetch)
    assert set(await asyncio.gather(*(auth.bearer() for _ in range(20)))) == {"t1"}
    assert fetched == 1


@pytest.mark.parametrize(
    ("kwargs"),
    [{"client_id": "", "client_secret": "s"}, {"client_id": "i", "client_secret": ""}],
)
def test_client_credentials_must_be_non_empty(kwargs: dict[str, str]) -> None:
    """Empty client id or secret is a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        ClientCredentials(**kwargs)


@pytest.mark.parametrize("key", ["", "sk-", "pk-123", "123"])
def test_api_key_must_be_sk_key(key: str) -> None:
    """An API key must start with sk- and have an identifier."""
    with pytest.raises(ConfigurationError):
        ApiKey(key)


def test_both_schemes_at_once_is_configuration_error() -> None:
    """Passing an sk- key and client credentials together is refused."""
    with pytest.raises(ConfigurationError):
        make_client("http://127.0.0.1:9", api_key="sk-a", client_id="i", client_secret="s")
