"""Key styles (reference §7.2a): an ``sk-`` key sent as ``?apikey=`` only, as
``Authorization: Bearer`` only, or both (default), against an emulator that reads one."""

from __future__ import annotations

from typing import Any

import pytest

from fto_async import AuthenticationError, ConfigurationError, FtoClient, ImageSearchRequest
from fto_async.testing import MockResponse, MockTransport
from tests._cli import FAST, catalog, cli, good_rows, records
from tests.client._support import running

REQUEST = ImageSearchRequest(url="https://a.example/a.png", country=["US"], lang="en")


@pytest.mark.parametrize(
    ("accepts", "style", "works"),
    [
        ("query", "query", True), ("query", "both", True), ("query", "bearer", False),
        ("bearer", "bearer", True), ("bearer", "both", True), ("bearer", "query", False),
        ("any", "query", True), ("any", "bearer", True), ("any", "both", True),
    ],
)  # fmt: skip
async def test_each_style_against_an_emulator_that_reads_one(accepts, style, works):
    """A style works where the platform reads its channel; "both" works everywhere."""
    async with running("sk", {"key_auth": accepts}, key_auth=style) as (_emu, client):
        if works:
            report = await client.wait_image_search(await client.submit_image_search(REQUEST))
            assert report.succeeded
        else:
            with pytest.raises(AuthenticationError) as info:
                await client.submit_image_search(REQUEST)
            assert info.value.code == 67200008
            assert info.value.fatal


@pytest.mark.parametrize(
    ("style", "param", "header"),
    [("both", True, True), ("query", True, False), ("bearer", False, True)],
)
async def test_the_wire_carries_only_the_chosen_channel(style, param, header):
    """query: no Authorization header; bearer: no apikey in the URL; both: both."""
    seen: list[Any] = []

    def handler(request: Any) -> MockResponse:
        seen.append(request)
        return MockResponse.ok({"task_id": "t-1"})

    async with FtoClient(api_key="sk-x", key_auth=style,
                         transport=MockTransport(handler)) as client:  # fmt: skip
        await client.submit_image_search(REQUEST)
    (request,) = seen
    assert ("apikey" in request.params) is param
    assert ("Authorization" in request.headers) is header
    if header:
        assert request.headers["Authorization"] == "Bearer sk-x"


def test_patsnap_key_auth_is_read_by_from_env():
    """PATSNAP_KEY_AUTH sets the style (any case); a keyword option overrides it."""
    environ = {"PATSNAP_API_KEY": "sk-x", "PATSNAP_KEY_AUTH": "Bearer"}
    assert FtoClient.from_env(environ).config.key_auth == "bearer"
    assert FtoClient.from_env(environ, key_auth="query").config.key_auth == "query"
    assert FtoClient.from_env({"PATSNAP_API_KEY": "sk-x"}).config.key_auth == "both"


@pytest.mark.parametrize("options", [
    {"api_key": "sk-x", "key_auth": "header"},
    {"api_key": "sk-x", "key_auth": ""},
    {"client_id": "c", "client_secret": "s", "key_auth": "query"},
    {"client_id": "c", "client_secret": "s", "key_auth": "bearer"},
])  # fmt: skip
def test_a_wrong_style_is_a_configuration_error(options):
    """An unknown style, or a single channel with client credentials (they need both, §7.1),
    is refused at construction."""
    with pytest.raises(ConfigurationError, match="key_auth"):
        FtoClient(**options)


async def test_cli_takes_the_style_from_the_environment(emu, env, tmp_path, monkeypatch):
    """`fto-async screen` with PATSNAP_KEY_AUTH=query runs against a query-only platform."""
    emu.reconfigure(key_auth="query")
    monkeypatch.setenv("PATSNAP_KEY_AUTH", "query")
    path = catalog(tmp_path, good_rows(3))
    out = tmp_path / "r.jsonl"
    assert await cli("screen", str(path), "--out", str(out), *FAST) == 0
    assert {r["status"] for r in records(out)} == {"done"}
