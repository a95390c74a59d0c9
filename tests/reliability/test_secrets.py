"""Secrets stay secret through a whole faulty batch; TLS is verified unless told otherwise.

For each credential scheme (OAuth client credentials and an ``sk-`` key) a batch of 50
items runs against the emulator with distinctive credentials, busy (8%), malformed (8%),
dropped (4%) and hung (2%) answers, a token lifetime of 2 s and one revocation of every
token mid-batch (OAuth), with the journal on and logging at DEBUG on the root logger
(so the ``fto_async`` tree, aiohttp and the emulator are all captured). Then none of the
client secret, its HTTP Basic form, the ``sk-`` key or any token the emulator issued
(recorded as it issues them) may appear, raw or URL-encoded, in:

* any log record: message, ``args``, formatted exception and stack;
* ``str``/``repr``/formatted traceback of every error met (outcomes, retry events, and
  each error's ``__cause__``/``__context__`` chain, aiohttp's included);
* ``repr`` of the client, its transport, auth, credentials, config, rate gate, a poller
  (and its continuation token), every outcome, the journal;
* the journal's SQLite files (main, ``-wal``, ``-shm``) read as bytes;
* the output files (the CLI's JSONL records and the CSV export).

TLS: ``ClientConfig().ssl`` is ``True``, and the connector the transport creates uses
it; an HTTPS emulator with a throwaway self-signed certificate (``openssl``) is refused
by a default client (certificate verify failed, raised as ``TLSError``: fatal, never
retried, it stops a batch) and reached
by a client given an ``ssl.SSLContext`` that trusts it, which the connector holds as is.

Figures: per scheme 50 items, about 135 calls, 33 retries, 34 errors and 185 log
records scanned, 2 tokens issued (OAuth: the first and the one after the revocation);
0 leaks. A mutant that logs URLs unredacted (``apikey=sk-...``) fails the test. The
``-wal``/``-shm`` files are gone once the journal is closed (checkpointed); every file
left in the test's folder is read. Runtime about 3 s.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import shutil
import ssl
import subprocess
import traceback
from base64 import b64encode
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestServer

from fto_async import (
    BatchAbortedError,
    ClientConfig,
    FtoClient,
    PollConfig,
    RetryConfig,
    TLSError,
)
from fto_async.emulator import Emulator, EmulatorConfig, create_app
from fto_async.emulator._state import STATE_KEY, EmulatorState
from fto_async.journal import Journal
from fto_async.outputs import records_from_journal, write_csv
from fto_async.retry import RetryEvent
from tests._shared import collect

from ._support import SCALE, request

CLIENT_ID = "acme-7f3a"
CLIENT_SECRET = "S3cr3t-Zq9w-do-not-leak"
SK_KEY = "sk-live-4f9e2b7c1d0a5e6f3b8a"
N = 50


class Capture(logging.Handler):
    """Keeps every record, formatted with its exception and stack."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.texts: list[str] = []
        self.formatter_ = logging.Formatter("%(name)s %(levelname)s %(message)s")

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        parts = [self.formatter_.format(record), str(record.msg), repr(record.args)]
        if record.exc_info:
            parts.append(self.formatter_.formatException(record.exc_info))
        parts += [record.exc_text or "", record.stack_info or ""]
        self.texts.append("\n".join(parts))


@pytest.fixture
def captured() -> Iterator[Capture]:
    """Every log record of every logger, at DEBUG, for the duration of the test."""
    handler = Capture()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


@pytest.fixture
def issued(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every token the emulator issues, recorded from its state as it issues it."""
    tokens: list[str] = []
    original = EmulatorState.issue_token

    def issue_token(self: EmulatorState, client_id: str, now: float) -> str:
        token = original(self, client_id, now)
        tokens.append(token)
        return token

    monkeypatch.setattr(EmulatorState, "issue_token", issue_token)
    return tokens


def chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it was raised from or during."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]
        if isinstance(current, BaseExceptionGroup):
            todo += list(current.exceptions)


def describe(exc: BaseException) -> str:
    texts = []
    for err in chain(exc):
        texts += [str(err), repr(err), repr(getattr(err, "args", ()))]
    texts.append("".join(traceback.format_exception(exc)))
    return "\n".join(texts)


def forms(secret: str) -> set[str]:
    """The secret as it could appear: raw and URL-encoded."""
    return {secret, quote(secret, safe=""), quote(secret)}


def leaks(secrets: list[str], text: str, blob: bytes = b"") -> list[str]:
    """The secrets found in ``text`` or ``blob``."""
    found = []
    for secret in secrets:
        if any(form in text or form.encode() in blob for form in forms(secret)):
            found.append(secret[:6] + "...")
    return found


@pytest.mark.parametrize("scheme", ["oauth", "sk"])
async def test_no_secret_leaks_anywhere(
    scheme: str, tmp_path: Path, captured: Capture, issued: list[str]
) -> None:
    """No secret, token or key shows up in logs, errors, reprs, the journal or outputs."""
    config = EmulatorConfig(
        time_scale=SCALE, qps=None, seed=5, clients={CLIENT_ID: CLIENT_SECRET},
        api_keys={SK_KEY}, token_ttl=2.0, busy_rate=0.08, malformed_rate=0.08,
        drop_rate=0.04, hang_rate=0.02, hang_seconds=0.5,
    )
    creds = ({"api_key": SK_KEY} if scheme == "sk"
             else {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
    events: list[RetryEvent] = []
    texts: list[str] = []
    journal_path = tmp_path / "journal.sqlite"
    async with Emulator(config) as emu:
        client = FtoClient(
            **creds, base_url=emu.base_url, qps=200, timeout=0.3, retry_hooks=[events.append],
            retry=RetryConfig(base=0.01, cap=0.05, max_attempts=4),
            poll=PollConfig().scaled(SCALE),
        )
        async with client:
            journal = await Journal.open(journal_path)
            try:
                async def revoke() -> None:  # once the batch is well under way
                    while len(emu.stats.submits) < N // 5:
                        await asyncio.sleep(0.005)
                    emu.expire_tokens()

                revoker = asyncio.create_task(revoke())
                outcomes, raised = await collect(client.screen_many(
                    [(f"sku-{i}", request(i)) for i in range(N)], journal=journal
                ))
                await revoker
                assert raised is None, raised
                assert len(outcomes) == N
                failing: list[BaseException] = []
                try:  # a refused call, for its error text
                    await client.get_report("no-such-task")
                except Exception as exc:
                    failing.append(exc)
                done = next(o for o in outcomes if o.task_id)
                poller = client.poller(done.task_id)
                texts += [repr(client), repr(client.transport), repr(client.transport._auth),
                          repr(client._credentials), repr(client.config), repr(client.gate),
                          repr(client.stats), repr(poller), poller.continuation_token(),
                          repr(journal), repr(client.transport.retry)]
                texts += [repr(o) for o in outcomes]
                errors = [o.error for o in outcomes if o.error is not None] + failing
                errors += [event.error for event in events]
                texts += [describe(err) for err in errors] + [repr(e) for e in events]
                out = tmp_path / "results.jsonl"
                with out.open("w", encoding="utf-8") as handle:
                    for record in records_from_journal(journal):
                        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                csv_text = io.StringIO()
                write_csv(records_from_journal(journal), csv_text)
                (tmp_path / "results.csv").write_text(csv_text.getvalue(), encoding="utf-8")
            finally:
                await journal.aclose()

    secrets = [SK_KEY] if scheme == "sk" else [CLIENT_SECRET, *issued]
    if scheme == "oauth":
        secrets.append(b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode())
        assert len(issued) >= 2  # the revocation forced a new token
    assert events, "the faults caused no retry: the error paths were not exercised"
    assert len(captured.records) > 20
    assert any(r.name.startswith("fto_async") and r.levelno == logging.DEBUG
               for r in captured.records)
    assert not leaks(secrets, "\n".join(captured.texts)), "a secret reached a log record"
    assert not leaks(secrets, "\n".join(texts)), "a secret reached an error or a repr"
    files = [p for p in tmp_path.iterdir() if p.is_file()]
    assert any(p.name.startswith("journal.sqlite") for p in files)
    for path in files:
        assert not leaks(secrets, "", path.read_bytes()), f"a secret is stored in {path.name}"
    print(f"\n{scheme}: records={len(captured.records)} tokens={len(issued)} "
          f"calls={client.stats.calls} retries={len(events)} errors={len(errors)} "
          f"files={sorted(p.name for p in files)}")


# -- TLS ----------------------------------------------------------------------------------


async def test_tls_verification_is_on_by_default() -> None:
    """ClientConfig().ssl is True and the connector the transport creates is given it."""
    assert ClientConfig().ssl is True
    async with Emulator(EmulatorConfig(time_scale=SCALE, qps=None)) as emu, FtoClient(
        api_key="sk-demo", base_url=emu.base_url, poll=PollConfig().scaled(SCALE)
    ) as client:
        assert client.config.ssl is True
        await client.submit_image_search(request(1))
        connector = client.transport._sender._session.connector  # type: ignore[attr-defined]
        assert connector._ssl is True


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(  # noqa: S603 - fixed arguments
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",  # noqa: S607
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


async def https_emulator(cert: Path, key: Path) -> TestServer:
    """The emulator app served over HTTPS on 127.0.0.1 with the self-signed certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = TestServer(create_app(EmulatorConfig(time_scale=SCALE, qps=None)),
                        host="127.0.0.1")
    await server.start_server(ssl=context)
    return server


async def test_self_signed_certificate_is_refused_by_default(
    certificate: tuple[Path, Path],
) -> None:
    """A default client refuses an unverifiable certificate at once: TLSError, no retry."""
    server = await https_emulator(*certificate)
    retries: list[RetryEvent] = []
    try:
        base = str(server.make_url("")).rstrip("/")
        assert base.startswith("https://127.0.0.1:")
        async with FtoClient(api_key="sk-demo", base_url=base, retry=RetryConfig.for_testing(),
                             retry_hooks=[retries.append]) as client:
            with pytest.raises(TLSError) as info:
                await client.submit_image_search(request(1))
        assert "certificate verify failed" in str(info.value).lower()
        assert info.value.fatal
        assert not info.value.retryable
        assert not retries  # every attempt would fail the same way
        assert getattr(info.value, "request_sent", True) is False  # nothing went out
        assert not server.app[STATE_KEY].stats.calls  # the handshake failed: no request
    finally:
        await server.close()


async def test_a_batch_stops_on_an_unverifiable_certificate(
    certificate: tuple[Path, Path],
) -> None:
    """A TLS failure is fatal for a batch: it aborts instead of trying every item."""
    server = await https_emulator(*certificate)
    try:
        base = str(server.make_url("")).rstrip("/")
        async with FtoClient(api_key="sk-demo", base_url=base,
                             retry=RetryConfig.for_testing()) as client:
            outcomes, raised = await asyncio.wait_for(
                collect(client.screen_many(request(i) for i in range(1000))), timeout=10)
        assert isinstance(raised, BatchAbortedError)
        assert isinstance(raised.cause, TLSError)
        assert len(outcomes) < 50  # only those already at the gate when the first failed
        assert all(isinstance(o.error, TLSError) for o in outcomes)
        assert not server.app[STATE_KEY].stats.calls
    finally:
        await server.close()


async def test_https_to_a_plain_http_server_is_a_tls_error() -> None:
    """https:// against a server that does not speak TLS fails with TLSError, unretried."""
    retries: list[RetryEvent] = []
    async with Emulator(EmulatorConfig(time_scale=SCALE, qps=None)) as emu:
        base = emu.base_url.replace("http://", "https://")
        async with FtoClient(api_key="sk-demo", base_url=base, retry=RetryConfig.for_testing(),
                             retry_hooks=[retries.append]) as client:
            with pytest.raises(TLSError) as info:
                await client.submit_image_search(request(1))
        assert not retries
        assert "sk-demo" not in str(info.value)
        assert emu.stats.count() == 0


async def test_custom_ssl_context_reaches_the_connector(certificate: tuple[Path, Path]) -> None:
    """A custom SSLContext trusting the certificate is passed to the connector and works."""
    cert, _key = certificate
    context = ssl.create_default_context(cafile=str(cert))
    server = await https_emulator(*certificate)
    try:
        base = str(server.make_url("")).rstrip("/")
        config = ClientConfig(base_url=base, ssl=context, poll=PollConfig().scaled(SCALE))
        async with FtoClient(api_key="sk-demo", config=config) as client:
            task_id = await client.submit_image_search(request(1))
            assert task_id
            connector = client.transport._sender._session.connector  # type: ignore[attr-defined]
            assert connector._ssl is context
    finally:
        await server.close()
