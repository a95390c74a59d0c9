"""A platform that cannot be reached stops a batch early with one fatal error.

Three kinds of "not there": a refused port (a socket bound then closed), a black hole (a
server that accepts and never answers) and a server that answers HTML to everything. Each
ends the batch with :class:`PlatformUnreachableError` (or :class:`NotThePlatformError`)
after ``unreachable_after`` seconds and ``unreachable_attempts`` attempts without an
answer, instead of trying every row; rows never sent stay ``pending`` for the next run.
The thresholds here are small (0.5 s, 5 attempts) and every bound below is derived from
them and the request timeout, with a wide margin.

The batch tests run on the virtual clock (tests/_vtime.py): a timeout fires after its
0.3 s of loop time, never because a loaded machine was slow to run the local HTML server
(on the real clock that turned "not the platform" into "unreachable" in parallel runs),
and the times judged are loop times.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from fto_async import (
    BatchAbortedError,
    ClientConfig,
    FtoClient,
    NotThePlatformError,
    PlatformUnreachableError,
    RetryConfig,
)
from fto_async.journal import ItemState, Journal
from tests._cli import cli
from tests._shared import API_KEY, collect
from tests._vtime import virtual
from tests.reliability._support import request

ROWS = 300
AFTER, ATTEMPTS, TIMEOUT = 0.5, 5, 0.3
#: No test may come near the time trying every row would take; 20 s is far above the
#: mechanism's bound (AFTER + a few TIMEOUTs and backoffs) and far below that.
BOUND = 20.0


@contextlib.asynccontextmanager
async def black_hole() -> AsyncIterator[str]:
    """A server that accepts connections and never answers; yields its URL."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # read nothing, answer nothing

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.fixture
def full_backlog() -> Iterator[str]:
    """A port whose accept queue is full: a connect to it neither completes nor fails
    (the SYN is dropped), so the request's time runs out before it has a connection."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for sock in (*fillers, server):
            sock.close()


@contextlib.asynccontextmanager
async def html_server() -> AsyncIterator[tuple[str, Counter[str]]]:
    """A server answering 200 with an HTML page to everything; yields URL and hits."""
    hits: Counter[str] = Counter()

    async def page(request: web.Request) -> web.Response:
        hits[request.path] += 1
        return web.Response(text="<html><body>Welcome to the hotel wifi</body></html>",
                            content_type="text/html")  # fmt: skip

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", page)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), hits
    finally:
        await server.close()


def client(url: str, **options: Any) -> FtoClient:
    config = ClientConfig(unreachable_after=AFTER, unreachable_attempts=ATTEMPTS,
                          not_platform_after=ATTEMPTS)  # fmt: skip
    return FtoClient(api_key=API_KEY, base_url=url, config=config, timeout=TIMEOUT, qps=200,
                     retry=RetryConfig(base=0.05, cap=0.2), **options)  # fmt: skip


async def screen(url: str, tmp_path: Path) -> tuple[BaseException | None, Counter[str], Any, float]:
    """Screen ROWS rows into a journal; return the error, the journal states, stats, and
    the loop time it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with await Journal.open(tmp_path / "j.db") as journal, client(url) as c:
        items = [(f"k{i}", request(i)) for i in range(ROWS)]
        _outcomes, error = await asyncio.wait_for(collect(c.screen_many(items, journal=journal)),
                                                  BOUND * 3)  # fmt: skip
        states = Counter(str(row.state) for row in journal.rows())
        return error, states, c.stats, loop.time() - started


@virtual
async def test_a_refused_port_stops_the_batch_early(tmp_path, refused_port):
    """Connection refused everywhere: a fatal PlatformUnreachableError, rows left pending."""
    url = f"http://127.0.0.1:{refused_port}"
    error, states, stats, took = await screen(url, tmp_path)
    assert isinstance(error, BatchAbortedError), error
    assert isinstance(error.cause, PlatformUnreachableError), error.cause
    assert f"cannot reach {url}" in str(error.cause)
    assert took < BOUND
    assert stats.answered == 0
    assert stats.unconnected >= ATTEMPTS
    assert stats.ambiguous_submits == 0
    assert set(states) <= {ItemState.PENDING.value}, states  # never sent: the next run sends


@virtual
async def test_a_connect_that_never_completes_leaves_rows_pending(full_backlog, tmp_path):
    """Time out before a connection exists: nothing left, so nothing is 'unknown' (a
    loaded machine turns a refused port into this too); the batch still stops early."""
    error, states, stats, took = await screen(full_backlog, tmp_path)
    assert isinstance(error, BatchAbortedError), error
    assert isinstance(error.cause, PlatformUnreachableError), error.cause
    assert took < BOUND
    assert stats.answered == 0
    assert stats.unanswered == 0
    assert stats.unconnected >= ATTEMPTS
    assert set(states) == {ItemState.PENDING.value}, states


@virtual
async def test_a_black_hole_stops_the_batch_early(tmp_path):
    """A server that never answers: fatal after the thresholds, not after every row."""
    async with black_hole() as url:
        error, states, stats, took = await screen(url, tmp_path)
    assert isinstance(error, BatchAbortedError), error
    assert isinstance(error.cause, PlatformUnreachableError), error.cause
    assert took < BOUND
    assert stats.answered == 0
    assert stats.unanswered >= ATTEMPTS
    # sent with no answer: honestly unknown; the rest never left
    assert states[ItemState.PENDING.value] + states[ItemState.UNKNOWN.value] == ROWS
    assert states[ItemState.PENDING.value] > ROWS // 2


@virtual
async def test_an_html_server_stops_the_batch_and_leaves_rows_pending(tmp_path):
    """HTML to everything: NotThePlatformError; no row is 'unknown' or failed."""
    async with html_server() as (url, hits):
        error, states, stats, took = await screen(url, tmp_path)
    assert isinstance(error, BatchAbortedError), error
    assert isinstance(error.cause, NotThePlatformError), error.cause
    assert took < BOUND
    assert sum(hits.values()) < ROWS  # not every row was sent to it
    assert stats.ambiguous_submits == 0
    assert set(states) == {ItemState.PENDING.value}, states


async def test_an_answer_resets_the_count():
    """Failures with answers in between never add up to 'unreachable'."""
    from fto_async._reach import Reachability
    from fto_async.errors import ConnectError

    now = [0.0]
    reach = Reachability("http://x", after=1.0, attempts=3, not_platform_after=3,
                         clock=lambda: now[0])  # fmt: skip
    refused = ConnectError("refused")
    refused.request_sent = False
    for _ in range(100):
        now[0] += 10
        assert reach.unanswered(now[0] - 0.1, refused) is None
        reach.answered()
    for _ in range(2):  # many failures in no time: not yet (whichever comes later)
        assert reach.unanswered(now[0], refused) is None
    assert reach.unanswered(now[0], refused) is None  # 3 attempts, but 0 s
    now[0] += 1.0
    fatal = reach.unanswered(now[0], refused)
    assert isinstance(fatal, PlatformUnreachableError)
    assert fatal.fatal


async def test_cli_exits_3_saying_which_url_cannot_be_reached(
    tmp_path, monkeypatch, capsys, refused_port
):
    """``fto-async screen`` against a refused port exits 3: "cannot reach URL"."""
    url = f"http://127.0.0.1:{refused_port}"
    path = tmp_path / "c.csv"
    path.write_text("sku,image_url,country\n" + "\n".join(
        f"K{i},https://example.com/p{i}.png,US" for i in range(ROWS)) + "\n", encoding="utf-8")
    monkeypatch.setenv("PATSNAP_API_KEY", API_KEY)
    monkeypatch.setenv("PATSNAP_BASE_URL", url)
    original = FtoClient.from_env.__func__  # type: ignore[attr-defined]

    def from_env(cls, environ=None, **options):  # the CLI's client, with small thresholds
        config = ClientConfig(base_url=url, unreachable_after=AFTER,
                              unreachable_attempts=ATTEMPTS)  # fmt: skip
        return original(cls, environ, config=config, timeout=TIMEOUT,
                        retry=RetryConfig(base=0.05, cap=0.2), **options)  # fmt: skip

    monkeypatch.setattr(FtoClient, "from_env", classmethod(from_env))
    out = tmp_path / "o.jsonl"
    started = time.monotonic()
    code = await cli("screen", str(path), "--out", str(out))
    err = capsys.readouterr().err
    assert code == 3, err
    assert time.monotonic() - started < BOUND
    assert f"cannot reach {url}" in err
    assert "Resume with" in err
    assert API_KEY not in err
    assert {json.loads(line)["status"] for line in out.read_text().splitlines()} == {"pending"}


@virtual
async def test_html_5xx_pages_stop_the_batch_but_stay_ambiguous(tmp_path):
    """HTML 502 pages only: NotThePlatformError, but a submit answered 502 may have reached a
    platform behind the gateway, so its row is 'unknown', never silently 'pending'."""

    async def gateway(_request: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>Bad Gateway</html>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", gateway)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        error, states, _stats, took = await screen(str(server.make_url("")).rstrip("/"), tmp_path)
    finally:
        await server.close()
    assert isinstance(error, BatchAbortedError), error
    assert isinstance(error.cause, NotThePlatformError), error.cause
    assert took < BOUND
    assert states[ItemState.UNKNOWN.value] >= 1, states
    assert states[ItemState.PENDING.value] + states[ItemState.UNKNOWN.value] == ROWS


@virtual
async def test_oauth_token_requests_count_too(tmp_path, refused_port):
    """With client credentials the first attempts are token requests: they feed the same
    counter (and ``unconnected``), so a refused port stops the batch the same way."""
    url = f"http://127.0.0.1:{refused_port}"
    # A refused connect takes no loop time here (only the retries' backoff passes it),
    # so the attempts alone decide; unreachable_after is the black hole test's.
    config = ClientConfig(unreachable_after=0.0, unreachable_attempts=ATTEMPTS)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with FtoClient(client_id="id", client_secret="secret", base_url=url, config=config,
                         retry=RetryConfig(base=0.05, cap=0.2)) as c:  # fmt: skip
        rows = [request(i) for i in range(20_000)]
        _outcomes, error = await collect(c.screen_many(rows, count_remaining=False))
        assert isinstance(error, BatchAbortedError), error
        assert isinstance(error.cause, PlatformUnreachableError), error.cause
        assert "/oauth/token" in str(error.cause)
        assert c.stats.unconnected == c.stats.token_requests >= ATTEMPTS
        assert c.stats.answered == 0
    assert loop.time() - started < BOUND


@virtual
async def test_unreachable_after_counts_the_loops_seconds():
    """``unreachable_after`` is counted on the event loop's clock, the one the request
    timeouts run on: 5 s of loop time without an answer is past 1 s, however little real
    time it took (on the real clock a virtual or fast loop tried far more rows first)."""
    from fto_async._reach import Reachability
    from fto_async.transport import _translate_faults

    reach = Reachability("http://x", after=1.0, attempts=1, not_platform_after=3)

    async def attempt_with_no_answer() -> None:
        async with _translate_faults("/ai/image-search/submit", None, reach):
            await asyncio.sleep(5.0)  # no real time on the virtual loop
            raise TimeoutError

    with pytest.raises(PlatformUnreachableError):
        await attempt_with_no_answer()
