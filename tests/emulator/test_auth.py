"""Token grant and the gateway's authentication checks."""

from __future__ import annotations

import asyncio

from fto_async.emulator import Emulator
from tests._shared import REPORT

from ._helpers import call, fast, get_token, oauth_headers


async def test_token_grant_returns_the_documented_flat_shape(session, emu):
    """A client-credentials grant answers token, BearerToken, expires_in 1799, approved."""
    status, payload = await get_token(session, emu)
    assert status == 200
    assert set(payload) == {"token", "token_type", "expires_in", "status", "issued_at"}
    assert payload["token_type"] == "BearerToken"
    assert payload["expires_in"] == 1799
    assert payload["status"] == "approved"
    assert payload["issued_at"].isdigit()
    assert len(payload["issued_at"]) == 13
    assert emu.stats.token_requests == 1


async def test_token_with_a_wrong_secret_is_67200003_with_http_401(session, emu):
    """A wrong client secret gets 67200003 and HTTP 401."""
    status, payload = await get_token(session, emu, secret="nope")
    assert status == 401
    assert payload == {
        "status": False,
        "error_code": 67200003,
        "error_msg": payload["error_msg"],
    }
    assert "key and secret" in payload["error_msg"]


async def test_token_without_basic_credentials_is_67200003(session, emu):
    """A token request without HTTP Basic credentials gets 67200003."""
    async with session.post(
        emu.base_url + "/oauth/token", data={"grant_type": "client_credentials"}
    ) as response:
        assert response.status == 401
        assert (await response.json())["error_code"] == 67200003


async def test_token_with_a_wrong_grant_type_is_67200015(session, emu):
    """A grant type other than client_credentials gets 67200015 'Grant type error'."""
    status, payload = await get_token(session, emu, grant_type="password")
    assert payload["error_code"] == 67200015
    assert payload["error_msg"] == "Grant type error"
    assert status == 400


async def test_oauth_token_authenticates_business_calls(session, emu):
    """apikey=client_id plus Bearer token passes the gateway."""
    headers = await oauth_headers(session, emu)
    status, payload = await call(
        session, emu, REPORT, {"task_id": "x"}, key="demo-client", headers=headers
    )
    assert status == 200
    assert payload["error_code"] == 68300004  # past the gateway, into the handler
    assert emu.stats.admitted_times["demo-client"]


async def test_sk_key_in_the_query_authenticates(session, emu):
    """An sk- key as the apikey query parameter passes the gateway, in either spelling."""
    for name in ("apikey", "apiKey"):
        async with session.post(
            emu.base_url + REPORT, json={"task_id": "x"}, params={name: "sk-demo"}
        ) as response:
            assert (await response.json())["error_code"] == 68300004


async def test_sk_key_as_bearer_only_authenticates(session, emu):
    """An sk- key sent only as 'Authorization: Bearer sk-...' passes the gateway."""
    _, payload = await call(
        session,
        emu,
        REPORT,
        {"task_id": "x"},
        key=None,
        headers={"Authorization": "Bearer sk-demo"},
    )
    assert payload["error_code"] == 68300004


async def test_sk_key_with_a_different_bearer_is_67200009(session, emu):
    """An Authorization header that is not 'Bearer <the same key>' gets 67200009 (401)."""
    status, payload = await call(
        session, emu, REPORT, {"task_id": "x"}, headers={"Authorization": "Bearer sk-other"}
    )
    assert (status, payload["error_code"]) == (401, 67200009)


async def test_unknown_sk_key_is_67200008(session, emu):
    """An unknown sk- key gets 67200008."""
    status, payload = await call(session, emu, REPORT, {"task_id": "x"}, key="sk-unknown")
    assert (status, payload["error_code"]) == (401, 67200008)


async def test_missing_apikey_is_67200008(session, emu):
    """A call without apikey (and without an sk- Bearer) gets 67200008 with the seed message."""
    status, payload = await call(session, emu, REPORT, {"task_id": "x"}, key=None)
    assert (status, payload["error_code"]) == (401, 67200008)
    assert "apikey" in payload["error_msg"]
    assert emu.stats.count(REPORT, 67200008) == 1


async def test_client_id_without_token_is_67200003(session, emu):
    """apikey=client_id without a Bearer token gets 67200003 (401)."""
    status, payload = await call(session, emu, REPORT, {"task_id": "x"}, key="demo-client")
    assert (status, payload["error_code"]) == (401, 67200003)


async def test_unknown_client_id_is_67200008(session, emu):
    """An apikey that is neither a known client_id nor a known sk- key gets 67200008."""
    headers = await oauth_headers(session, emu)
    _, payload = await call(session, emu, REPORT, {}, key="who", headers=headers)
    assert payload["error_code"] == 67200008


async def test_expired_token_is_67200003(session):
    """A token past its token_ttl (real seconds) gets 67200003."""
    async with Emulator(fast(token_ttl=0.05)) as emu:
        status, token = await get_token(session, emu)
        assert token["expires_in"] == 0
        headers = {"Authorization": f"Bearer {token['token']}"}
        await asyncio.sleep(0.1)
        status, payload = await call(
            session, emu, REPORT, {"task_id": "x"}, key="demo-client", headers=headers
        )
        assert (status, payload["error_code"]) == (401, 67200003)


async def test_token_of_another_client_is_67200009(session):
    """A valid token presented with another client's apikey gets 67200009 (401)."""
    clients = {"demo-client": "demo-secret", "other": "other-secret"}
    async with Emulator(fast(clients=clients)) as emu:
        _, token = await get_token(session, emu, "other", "other-secret")
        headers = {"Authorization": f"Bearer {token['token']}"}
        status, payload = await call(session, emu, REPORT, {}, key="demo-client", headers=headers)
        assert (status, payload["error_code"]) == (401, 67200009)


async def test_expire_tokens_invalidates_every_token(session, emu):
    """Emulator.expire_tokens makes every issued token fail with 67200003."""
    headers = await oauth_headers(session, emu)
    assert emu.expire_tokens() == 1
    _, payload = await call(session, emu, REPORT, {}, key="demo-client", headers=headers)
    assert payload["error_code"] == 67200003


async def test_unknown_path_is_67200101_before_authentication(session, emu):
    """An unknown path (or method) gets 67200101 (404) even without credentials."""
    status, payload = await call(session, emu, "/auth", {}, key=None)
    assert (status, payload["error_code"]) == (404, 67200101)
    assert payload["error_msg"].startswith("The API requested currently does not exist")
    async with session.get(emu.base_url + REPORT) as response:
        assert response.status == 404
        assert (await response.json())["error_code"] == 67200101
    assert emu.stats.count("/auth", 67200101) == 1
