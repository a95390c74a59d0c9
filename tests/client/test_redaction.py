"""Secrets never reach logs, exception texts or reprs."""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from fto_async import ApiKey, AuthenticationError, ClientCredentials, FtoClient, RetryConfig
from fto_async.emulator import Emulator, EmulatorConfig
from fto_async.emulator._state import STATE_KEY
from fto_async.transport import redact_url
from tests._shared import SUBMIT

from ._support import FAST_OPTIONS, image_request

CLIENT_ID = "acct-redaction"
SECRET = "Cl13ntS3cr3t-never-log-me"
SK_KEY = "sk-Live-K3y-never-log-me"
FAULTS: dict[str, Any] = {
    "busy_rate": 0.15,
    "malformed_rate": 0.15,
    "http_5xx_rate": 0.05,
    "drop_rate": 0.05,
    "seed": 11,
    "time_scale": 0.001,
    "qps": None,
}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [e.__cause__, e.__context__]


def _texts(records: Iterable[logging.LogRecord], errors: Iterable[BaseException],
           objects: Iterable[object]) -> Iterator[str]:
    for record in records:
        yield record.getMessage()
        yield str(record.msg)
        yield repr(record.args)
        if record.exc_info:
            yield "".join(traceback.format_exception(*record.exc_info))
    for error in errors:
        for e in _chain(error):
            yield str(e)
            yield repr(e)
        yield "".join(traceback.format_exception(error))
    for obj in objects:
        yield repr(obj)
        yield str(obj)


async def _run(client: FtoClient, emu: Emulator, tokens: list[str]) -> list[BaseException]:
    """Submit and poll a few tasks with faults on; expire the token midway.

    ``tokens`` receives every token the emulator issued.
    """
    errors: list[BaseException] = []
    state = emu.app[STATE_KEY]

    async def one() -> None:
        try:
            task_id = await client.submit_image_search(image_request())
            await client.wait_image_search(task_id)
        except Exception as exc:
            errors.append(exc)

    await asyncio.gather(*(one() for _ in range(12)))
    tokens += list(state._tokens)
    emu.expire_tokens()
    await asyncio.gather(*(one() for _ in range(12)))
    tokens += list(state._tokens)
    return errors


def _assert_clean(texts: Iterable[str], secrets: Iterable[str]) -> int:
    count = 0
    for text in texts:
        count += 1
        for secret in secrets:
            assert secret not in text, f"secret leaked in: {text[:300]!r}"
    return count


@pytest.mark.parametrize("scheme", ["oauth", "sk"])
async def test_no_secret_in_logs_errors_or_reprs(
    scheme: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With DEBUG logging and faults on, no secret, token or key shows up anywhere."""
    caplog.set_level(logging.DEBUG, logger="fto_async")
    config = EmulatorConfig(clients={CLIENT_ID: SECRET}, api_keys={SK_KEY}, **FAULTS)
    creds: dict[str, Any] = (
        {"api_key": SK_KEY} if scheme == "sk"
        else {"client_id": CLIENT_ID, "client_secret": SECRET}
    )
    tokens: list[str] = []
    async with Emulator(config) as emu:
        options = {**FAST_OPTIONS, "retry": RetryConfig.for_testing(max_attempts=2)}
        async with FtoClient(**creds, base_url=emu.base_url, **options) as client:
            errors = await _run(client, emu, tokens)
            objects: list[object] = [
                client, client.transport, client.transport._auth, client.config,
                client.stats, client.gate, client.transport.retry,
            ]
            if scheme == "oauth":
                assert len(tokens) == 2  # the first, and the refresh after expire_tokens()
            # a client with a wrong secret or key, for the refusal paths
            wrong: dict[str, Any] = (
                {"api_key": "sk-Wr0ng-K3y-never-log-me"} if scheme == "sk"
                else {"client_id": CLIENT_ID, "client_secret": "Wr0ngS3cr3t-never-log-me"}
            )
            calls_before = emu.stats.count(SUBMIT)
            async with FtoClient(**wrong, base_url=emu.base_url, **options) as bad:
                # Refused for its credentials (the token endpoint and the key check come
                # before any fault): the refusal path, whose messages are checked below.
                with pytest.raises(AuthenticationError) as refused:
                    await bad.submit_image_search(image_request())
                errors.append(refused.value)
                assert bad.retries == 0  # a wrong credential is not retried
                objects.append(bad)
            # an unknown key is refused at the gateway; a wrong secret never gets a token
            assert emu.stats.count(SUBMIT) - calls_before == (1 if scheme == "sk" else 0)
    objects += [ApiKey(SK_KEY), ClientCredentials(CLIENT_ID, SECRET)]
    secrets = [SECRET, SK_KEY, "Wr0ngS3cr3t-never-log-me", "sk-Wr0ng-K3y-never-log-me", *tokens]
    secrets += [SK_KEY[3:], SECRET[3:]]  # no partial masks that keep most of the value
    assert errors, "the faults should make some calls fail"
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    assert any("refreshing" in r.getMessage() for r in caplog.records) or scheme == "sk"
    checked = _assert_clean(_texts(caplog.records, errors, objects), secrets)
    assert checked > 50
    assert any("apikey=***" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://h/p?apikey=sk-abc", "https://h/p?apikey=***"),
        ("https://h/p?apiKey=sk-abc&x=1", "https://h/p?apiKey=***&x=1"),
        ("https://h/p?x=1&APIKEY=id-1#frag", "https://h/p?x=1&APIKEY=***#frag"),
        ("https://h/p?api_key=k", "https://h/p?api_key=***"),
        ("https://h/p?access_token=t1&token=t2", "https://h/p?access_token=***&token=***"),
        ("https://h/p?apikey=a&apikey=b", "https://h/p?apikey=***&apikey=***"),
        ("https://h/p?apikey=sk-a b", "https://h/p?apikey=*** b"),
        ("https://h/ai/image-search/report", "https://h/ai/image-search/report"),
        ("https://h/p?q=apikey", "https://h/p?q=apikey"),
        ("https://h/p?apikey=", "https://h/p?apikey="),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    """redact_url replaces the value of apikey and token parameters by ***."""
    assert redact_url(url) == expected


def test_credentials_repr_masks_secrets() -> None:
    """ClientCredentials and ApiKey never show their secret in repr or str."""
    creds = ClientCredentials("a-long-client-id", SECRET)
    key = ApiKey(SK_KEY)
    for text in (repr(creds), str(creds), repr(key), str(key)):
        assert SECRET not in text
        assert SK_KEY not in text
        assert SK_KEY[3:] not in text
    assert "a-long-client-id" not in repr(creds)


def test_emulator_config_repr_masks_secrets() -> None:
    """The emulator's config repr shows neither client secrets nor keys (used in test output)."""
    config = EmulatorConfig(clients={CLIENT_ID: SECRET}, api_keys={SK_KEY})
    assert SECRET not in repr(config)
    assert SK_KEY not in repr(config)
