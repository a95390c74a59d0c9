"""Per-account QPS window, daily and total limits, and the submit balance."""

from __future__ import annotations

import asyncio
from collections import Counter

from fto_async.emulator import Emulator
from tests._shared import REPORT, SUBMIT, TOKEN

from ._helpers import call, fast, get_token, image_body


async def test_qps_window_rejects_exactly_the_over_limit_calls(session):
    """With qps=5, 15 concurrent calls give 5 admitted and 10 answered 67200002."""
    async with Emulator(fast(qps=5)) as emu:
        results = await asyncio.gather(
            *(call(session, emu, REPORT, {"task_id": "x"}) for _ in range(15))
        )
        codes = Counter(payload["error_code"] for _, payload in results)
        assert codes == {68300004: 5, 67200002: 10}
        assert {status for status, p in results if p["error_code"] == 67200002} == {200}
        assert emu.stats.max_calls_in_window("sk-demo") == 5  # the emulator's own limit
        assert len(emu.stats.admitted_times["sk-demo"]) == 5
        # Attempts count every call on arrival, refused ones too: they show the client.
        assert emu.stats.max_attempts_in_window("sk-demo") == 15
        assert emu.stats.attempts[REPORT] == 15
        assert len(emu.stats.attempt_times["sk-demo"]) == 15
        assert emu.stats.in_flight == 0
        snapshot = emu.stats.snapshot()
        assert snapshot["attempts"] == {REPORT: 15}
        assert snapshot["max_attempts_in_window"] == {"sk-demo": 15}


async def test_attempts_include_calls_refused_before_admission(session):
    """A call refused for its key (67200008) is an attempt of account "" and never admitted."""
    async with Emulator(fast()) as emu:
        _, payload = await call(session, emu, REPORT, {}, key="sk-unknown")
        assert payload["error_code"] == 67200008
        assert emu.stats.attempt_times.keys() == {""}
        assert emu.stats.admitted_times == {}
        assert emu.stats.attempts[REPORT] == 1


async def test_qps_window_slides(session):
    """Calls are admitted again once the earlier ones leave the 1-second window."""
    async with Emulator(fast(qps=2)) as emu:
        codes = [(await call(session, emu, REPORT, {}))[1]["error_code"] for _ in range(3)]
        assert codes == [68300004, 68300004, 67200002]
        await asyncio.sleep(1.01)
        _, payload = await call(session, emu, REPORT, {})
        assert payload["error_code"] == 68300004
        assert emu.stats.max_calls_in_window("sk-demo") == 2


async def test_qps_is_per_account(session):
    """One account's full window does not throttle another account."""
    async with Emulator(fast(qps=1, api_keys={"sk-a", "sk-b"})) as emu:
        assert (await call(session, emu, REPORT, {}, key="sk-a"))[1]["error_code"] == 68300004
        assert (await call(session, emu, REPORT, {}, key="sk-a"))[1]["error_code"] == 67200002
        assert (await call(session, emu, REPORT, {}, key="sk-b"))[1]["error_code"] == 68300004


async def test_token_requests_do_not_count_against_qps(session):
    """The token endpoint is outside the QPS window."""
    async with Emulator(fast(qps=1)) as emu:
        for _ in range(3):
            assert (await get_token(session, emu))[0] == 200
        assert emu.stats.count(TOKEN, 0) == 3
        assert emu.stats.admitted_times == {}


async def test_unlimited_qps_admits_a_burst(session, emu):
    """qps=None admits any burst."""
    results = await asyncio.gather(*(call(session, emu, REPORT, {}) for _ in range(30)))
    assert all(payload["error_code"] == 68300004 for _, payload in results)


async def test_daily_limit_is_67200007(session):
    """Beyond daily_limit admitted calls, the account gets 67200007 with HTTP 403."""
    async with Emulator(fast(daily_limit=3)) as emu:
        results = [await call(session, emu, REPORT, {}) for _ in range(4)]
        assert [p["error_code"] for _, p in results] == [68300004] * 3 + [67200007]
        assert results[-1][0] == 403


async def test_total_limit_is_67200001(session):
    """Beyond total_limit admitted calls, the account gets 67200001 with HTTP 403."""
    async with Emulator(fast(total_limit=2)) as emu:
        results = [await call(session, emu, REPORT, {}) for _ in range(3)]
        assert [p["error_code"] for _, p in results] == [68300004, 68300004, 67200001]
        assert results[-1][0] == 403


async def test_quota_rejections_are_not_counted(session):
    """Calls refused by the QPS window do not use up the daily limit."""
    async with Emulator(fast(qps=1, daily_limit=2)) as emu:
        codes = [(await call(session, emu, REPORT, {}))[1]["error_code"] for _ in range(3)]
        assert codes == [68300004, 67200002, 67200002]
        await asyncio.sleep(1.01)
        assert (await call(session, emu, REPORT, {}))[1]["error_code"] == 68300004


async def test_balance_limits_task_creating_submits(session):
    """With balance=1 the second valid submit gets 67200005 (403); polls still work."""
    async with Emulator(fast(balance=1)) as emu:
        _, first = await call(session, emu, SUBMIT, image_body())
        assert first["status"] is True
        _, invalid = await call(session, emu, SUBMIT, {"url": "x"})
        assert invalid["error_code"] == 67200005
        status, second = await call(session, emu, SUBMIT, image_body())
        assert (status, second["error_code"]) == (403, 67200005)
        _, poll = await call(session, emu, REPORT, {"task_id": first["data"]["task_id"]})
        assert poll["status"] is True
        assert len(emu.stats.submits) == 1
