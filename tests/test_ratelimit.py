"""The rate gate: pacing under the limit, adaptive slow-down, budgets, cancellation."""

from __future__ import annotations

import asyncio
import bisect

import pytest

from fto_async.config import RateConfig
from fto_async.errors import BudgetExhaustedError
from fto_async.ratelimit import Permit, RateGate
from tests._vtime import run_virtual


def max_in_window(stamps: list[float], window: float = 1.0) -> int:
    """The largest number of stamps inside any closed window of ``window`` seconds."""
    stamps = sorted(stamps)
    best = 0
    for i, t in enumerate(stamps):
        j = bisect.bisect_right(stamps, t + window)
        best = max(best, j - i)
    return best


async def _fire(gate: RateGate, n: int, *, hold: float = 0.0) -> list[float]:
    loop = asyncio.get_running_loop()
    stamps: list[float] = []

    async def one() -> None:
        async with gate.slot("/p"):
            stamps.append(loop.time())
            if hold:
                await asyncio.sleep(hold)

    await asyncio.gather(*(one() for _ in range(n)))
    return stamps


# 50 QPS is the smaller rates' replay, longer: untraced (their lines are the same).
@pytest.mark.parametrize("qps", [1, 5, 7, pytest.param(50, marks=pytest.mark.untraced)])
def test_never_more_than_qps_in_any_window(qps: int) -> None:
    """5,000 concurrent callers never put more than qps admissions in a 1-second window."""

    async def main() -> list[float]:
        gate = RateGate(RateConfig(qps=qps, max_in_flight=10_000))
        return await _fire(gate, 5_000 if qps >= 50 else 200)

    stamps = run_virtual(main)
    assert max_in_window(stamps) <= qps
    span = max(stamps) - min(stamps)
    assert (len(stamps) - 1) / span >= 0.95 * qps  # and runs close to the limit


def test_idle_spell_gives_no_burst() -> None:
    """After a long idle spell the gate does not release a burst (aiolimiter's default would)."""

    async def main() -> list[float]:
        gate = RateGate(RateConfig(qps=10))
        first = await _fire(gate, 30)
        await asyncio.sleep(60)
        second = await _fire(gate, 30)
        return first + second

    assert max_in_window(run_virtual(main)) <= 10


def test_in_flight_bound_limits_concurrency() -> None:
    """No more than max_in_flight callers hold a slot at once."""

    async def main() -> int:
        gate = RateGate(RateConfig(qps=1000, max_in_flight=7))
        peak = 0

        async def one() -> None:
            nonlocal peak
            async with gate.slot("/p"):
                peak = max(peak, gate.in_flight)
                await asyncio.sleep(0.5)

        await asyncio.gather(*(one() for _ in range(100)))
        return peak

    assert run_virtual(main) == 7


def test_default_in_flight_follows_littles_law() -> None:
    """The default in-flight bound covers qps x submit latency (5 s) with margin."""
    assert RateConfig(qps=50).in_flight_limit >= 50 * 5
    assert RateConfig(qps=1).in_flight_limit >= 8


def test_throttle_lowers_rate_to_measured_share_once_per_episode_and_recovers() -> None:
    """A 67200002 burst sets the rate to the share that succeeded, once; then it climbs back."""

    async def main() -> tuple[float, float, float, float]:
        gate = RateGate(RateConfig(qps=10, recovery=2.0))
        loop = asyncio.get_running_loop()
        for _ in range(6):  # the platform let 6 calls through in the last second
            await asyncio.sleep(0.1)
            gate.on_success(Permit("/p", loop.time()))
        old = Permit("/p", loop.time())
        gate.on_throttled(old)
        after_one = gate.rate
        gate.on_throttled(Permit("/p", old.sent_at))  # same episode: ignored
        same_episode = gate.rate
        await asyncio.sleep(1.0)
        gate.on_success(Permit("/p", loop.time()))
        climbing = gate.rate
        for _ in range(200):
            await asyncio.sleep(0.1)
            gate.on_success(Permit("/p", loop.time()))
        return after_one, same_episode, climbing, gate.rate

    after_one, same_episode, climbing, recovered = run_virtual(main)
    assert after_one == pytest.approx(6 * 0.96)
    assert same_episode == after_one
    assert climbing == pytest.approx(after_one + 10 * 0.05 * 1.0)  # probes 5% of qps per s
    assert recovered == pytest.approx(10 * 0.96)


def test_the_memory_of_successes_stays_bounded() -> None:
    """A long run of successes keeps only the last second's (the share a throttle
    measures), not one entry per call ever made."""

    async def main() -> int:
        gate = RateGate(RateConfig(qps=10))
        loop = asyncio.get_running_loop()
        for _ in range(300):  # 300 calls at the limit, over 30 s
            await asyncio.sleep(0.1)
            gate.on_success(Permit("/p", loop.time()))
        return len(gate._successes)

    assert run_virtual(main) <= 4 * 10 + 16


def test_a_gate_that_does_not_adapt_ignores_successes() -> None:
    """With ``adaptive=False`` the pace stays at the configured rate and the gate keeps no
    memory of successes."""

    async def main() -> tuple[float, int]:
        gate = RateGate(RateConfig(qps=10, adaptive=False))
        loop = asyncio.get_running_loop()
        before = gate.rate
        for _ in range(100):
            gate.on_success(Permit("/p", loop.time()))
        assert gate.rate == before
        return gate.rate, len(gate._successes)

    rate, remembered = run_virtual(main)
    assert remembered == 0
    assert rate == pytest.approx(10 * 0.96)


def test_throttle_never_drops_below_the_floor() -> None:
    """With no recent success the rate drops to qps * min_rate_fraction, not to zero."""

    async def main() -> float:
        gate = RateGate(RateConfig(qps=10))
        loop = asyncio.get_running_loop()
        gate.on_throttled(Permit("/p", loop.time()))
        return gate.rate

    assert run_virtual(main) == pytest.approx(10 * 0.05)


def test_rate_change_applies_to_waiting_callers() -> None:
    """Lowering the rate slows the pacing of callers already waiting."""

    async def main() -> float:
        gate = RateGate(RateConfig(qps=10))
        loop = asyncio.get_running_loop()
        for _ in range(5):
            gate.on_success(Permit("/p", loop.time()))
        gate.on_throttled(Permit("/p", loop.time() + 1))
        stamps = await _fire(gate, 20)
        return (len(stamps) - 1) / (max(stamps) - min(stamps))

    assert run_virtual(main) == pytest.approx(5 * 0.96, rel=0.03)


def test_max_calls_budget_stops_exactly() -> None:
    """A budget of 100 calls admits exactly 100 and refuses the rest before sending."""

    async def main() -> tuple[int, int, int | None]:
        gate = RateGate(RateConfig(qps=1000, max_calls=100))
        admitted = refused = 0

        async def one() -> None:
            nonlocal admitted, refused
            try:
                async with gate.slot("/p"):
                    admitted += 1
            except BudgetExhaustedError:
                refused += 1

        await asyncio.gather(*(one() for _ in range(150)))
        return admitted, refused, gate.remaining_calls

    assert run_virtual(main) == (100, 50, 0)


def test_daily_limit_resets_each_utc_day() -> None:
    """The daily budget is counted per UTC day and resets at midnight."""
    now = [86400.0 * 20_000 + 3600]

    async def main() -> list[object]:
        gate = RateGate(RateConfig(qps=1000, daily_limit=3), wall_clock=lambda: now[0])
        results: list[object] = []
        for _ in range(4):
            try:
                async with gate.slot("/p"):
                    results.append("ok")
            except BudgetExhaustedError as exc:
                results.append(exc.budget)
        now[0] += 86400
        results.append(gate.remaining_today)
        async with gate.slot("/p"):
            results.append("ok")
        return results

    assert run_virtual(main) == ["ok", "ok", "ok", "daily_limit", 3, "ok"]


def test_cancelled_waiter_leaves_gate_consistent() -> None:
    """Cancelling callers parked in the gate frees their places; the rest still pace."""

    async def main() -> tuple[int, list[float]]:
        gate = RateGate(RateConfig(qps=5, max_in_flight=3))
        loop = asyncio.get_running_loop()
        tasks = [asyncio.create_task(_fire(gate, 1, hold=10)) for _ in range(10)]
        await asyncio.sleep(0.5)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        in_flight = gate.in_flight
        stamps = await _fire(gate, 20)
        assert loop.time() > 0
        return in_flight, stamps

    in_flight, stamps = run_virtual(main)
    assert in_flight == 0
    assert len(stamps) == 20
    assert max_in_window(stamps) <= 5


def test_endpoint_limit_layers_on_account_gate() -> None:
    """A per-path limit paces that path below the account rate."""

    async def main() -> list[float]:
        gate = RateGate(RateConfig(qps=100, endpoint_qps={"/slow": 2}))
        loop = asyncio.get_running_loop()
        stamps: list[float] = []

        async def one() -> None:
            async with gate.slot("/slow"):
                stamps.append(loop.time())

        await asyncio.gather(*(one() for _ in range(10)))
        return stamps

    assert max_in_window(run_virtual(main)) <= 2


def test_due_poll_overtakes_queued_submits() -> None:
    """A priority call is admitted within one pacing step of its arrival although
    hundreds of non-priority calls wait; the order within each lane stays FIFO."""

    async def main() -> tuple[float, float, list[int], list[float]]:
        gate = RateGate(RateConfig(qps=40))
        loop = asyncio.get_running_loop()
        order: list[int] = []
        stamps: list[float] = []
        admitted: dict[str, float] = {}

        async def submit(i: int) -> None:
            async with gate.slot("/submit"):
                order.append(i)
                stamps.append(loop.time())
                await asyncio.sleep(0.3)

        async def poll(name: str, at: float) -> None:
            await asyncio.sleep(at)
            async with gate.slot("/report", priority=True):
                admitted[name] = loop.time()
                stamps.append(loop.time())

        await asyncio.gather(*(submit(i) for i in range(300)), poll("a", 2.0), poll("b", 2.001))
        return admitted["a"], admitted["b"], order, stamps

    a, b, order, stamps = run_virtual(main)
    step = 1 / (40 * 0.96)
    assert 2.0 <= a <= 2.0 + 2 * step + 1e-6  # not behind ~7 s of queued submits
    assert a < b <= 2.001 + 2 * step + 1e-6
    assert order == sorted(order)
    assert max_in_window(stamps) <= 40  # the window bound holds with mixed lanes


def test_cancelled_priority_waiter_passes_its_turn() -> None:
    """A cancelled caller in either lane never stalls the callers behind it."""

    async def main() -> int:
        gate = RateGate(RateConfig(qps=10))
        done = 0

        async def one(priority: bool) -> None:
            nonlocal done
            async with gate.slot("/p", priority=priority):
                done += 1

        tasks = [asyncio.create_task(one(i % 2 == 0)) for i in range(20)]
        await asyncio.sleep(0.25)
        for t in tasks[5:10]:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return done

    assert run_virtual(main) == 15
