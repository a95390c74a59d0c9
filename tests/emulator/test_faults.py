"""Seeded fault injection: busy, ambiguous busy, service error, 5xx, malformed, drop, hang."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import aiohttp
import pytest

from fto_async.emulator import Emulator
from tests._shared import REPORT, SUBMIT, TOKEN

from ._helpers import call, fast, get_token, image_body, wait_done


async def _raw(session, emu, path=REPORT, body=None):
    async with session.post(
        emu.base_url + path, json=body or {}, params={"apikey": "sk-demo"}
    ) as response:
        return response.status, response.content_type, await response.text()


async def test_busy_answers_67200100_without_creating_a_task(session):
    """busy_rate=1 answers 67200100 to a valid submit and creates nothing."""
    async with Emulator(fast(busy_rate=1.0)) as emu:
        status, payload = await call(session, emu, SUBMIT, image_body())
        assert (status, payload["error_code"]) == (200, 67200100)
        assert payload["error_msg"].startswith("The current server status is busy")
        assert emu.stats.submits == []
        assert emu.stats.count(SUBMIT, 67200100) == 1


async def test_ambiguous_busy_creates_the_task_then_answers_67200100(session):
    """ambiguous_busy_rate=1 answers 67200100, but the task exists and can be polled."""
    async with Emulator(fast(ambiguous_busy_rate=1.0)) as emu:
        _, payload = await call(session, emu, SUBMIT, image_body())
        assert payload["error_code"] == 67200100
        (record,) = emu.stats.submits
        assert record.ambiguous is True
        data = await wait_done(session, emu, record.task_id)
        assert data["task_status"] == 2
        assert emu.stats.snapshot()["ambiguous_submits"] == 1


async def test_ambiguous_busy_does_not_touch_polls(session):
    """ambiguous_busy_rate applies to submits only."""
    async with Emulator(fast(ambiguous_busy_rate=1.0)) as emu:
        _, payload = await call(session, emu, REPORT, {"task_id": "x"})
        assert payload["error_code"] == 68300004


async def test_service_error_is_68300008(session):
    """service_error_rate=1 answers 68300008."""
    async with Emulator(fast(service_error_rate=1.0)) as emu:
        _, payload = await call(session, emu, REPORT, {})
        assert payload["error_code"] == 68300008


async def test_http_5xx_is_a_plain_503(session):
    """http_5xx_rate=1 answers HTTP 503 with the plain text 'Service Unavailable'."""
    async with Emulator(fast(http_5xx_rate=1.0)) as emu:
        assert await _raw(session, emu) == (503, "text/plain", "Service Unavailable")
        assert emu.stats.count(REPORT, 503) == 1


async def test_malformed_is_an_html_502_or_truncated_json(session):
    """malformed_rate=1 gives both an HTML 502 page and a cut JSON body with HTTP 200."""
    async with Emulator(fast(malformed_rate=1.0)) as emu:
        answers = [await _raw(session, emu) for _ in range(16)]
    kinds = Counter((status, content_type) for status, content_type, _ in answers)
    assert set(kinds) == {(502, "text/html"), (200, "application/json")}
    for status, _, text in answers:
        if status == 502:
            assert "<html>" in text
        else:
            with pytest.raises(json.JSONDecodeError):
                json.loads(text)


async def test_drop_closes_the_connection_without_a_response(session):
    """drop_rate=1 closes the connection: the client gets a connection error."""
    async with Emulator(fast(drop_rate=1.0)) as emu:
        with pytest.raises(aiohttp.ClientConnectionError):
            await call(session, emu, REPORT, {})
        assert emu.stats.count(REPORT, -1) == 1


async def test_hang_delays_then_answers_normally(session):
    """hang_rate=1 sleeps hang_seconds (real seconds) and then answers normally."""
    async with Emulator(fast(hang_rate=1.0, hang_seconds=0.2)) as emu:
        started = time.monotonic()
        _, payload = await call(session, emu, REPORT, {"task_id": "x"})
        assert time.monotonic() - started >= 0.2
        assert payload["error_code"] == 68300004


async def test_closing_the_emulator_ends_a_hang_at_once(session):
    """Leaving the emulator during a 30 s hang finishes promptly, leaving nothing pending."""
    started = time.monotonic()
    async with Emulator(fast(hang_rate=1.0, hang_seconds=30.0)) as emu:
        pending = asyncio.ensure_future(call(session, emu, REPORT, {}))
        await asyncio.sleep(0.05)
    _, payload = await pending  # woken at shutdown, it answers normally
    assert time.monotonic() - started < 3.0
    assert payload["error_code"] == 68300004


async def test_faults_do_not_touch_tokens_or_admin_routes(session):
    """The token endpoint and admin routes never get faults."""
    async with Emulator(fast(busy_rate=1.0, drop_rate=1.0)) as emu:
        assert (await get_token(session, emu))[0] == 200
        async with session.get(emu.base_url + "/_emulator/stats") as response:
            assert response.status == 200
        assert emu.stats.count(TOKEN, 0) == 1


async def test_faults_are_reproducible_with_a_seed(session):
    """The same seed gives the same sequence of faults; another seed a different one."""

    async def codes(seed: int) -> list[int]:
        async with Emulator(fast(busy_rate=0.5, seed=seed)) as emu:
            return [(await call(session, emu, REPORT, {}))[1]["error_code"] for _ in range(20)]

    first, second, other = await codes(7), await codes(7), await codes(8)
    assert first == second
    assert first != other
    assert set(first) == {67200100, 68300004}
