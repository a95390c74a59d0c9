"""The call budget is spent exactly: a call the rate gate admitted is counted whatever
happens to its caller, and no one is refused while a reserved call may still hand its
place back (issue 26, F1: a batch said "budget spent" with a call unused)."""

from __future__ import annotations

import asyncio

import pytest

from fto_async.config import RateConfig
from fto_async.errors import BudgetExhaustedError
from fto_async.ratelimit import RateGate
from tests._vtime import run_virtual

PATH = "/ai/image-search/report"


def test_no_call_is_refused_while_an_admitted_one_has_not_resumed() -> None:
    """Budget 2, one place in flight: A holds it, B waits. A leaves and, in the same step,
    asks for another call R, while B has been given the place but has not resumed yet.
    R must not be refused yet: a batch aborts on that refusal and cancels B, which it
    thinks unsent, and the budget ends with a call unused. B is sent, then R refused."""

    async def main() -> list[object]:
        gate = RateGate(RateConfig(qps=1000, max_calls=2, max_in_flight=1))
        release = asyncio.Event()
        events: list[object] = []

        async def first() -> None:
            async with gate.slot(PATH):
                events.append("sent A")
                await release.wait()
            try:  # B holds the place A left, and has not run since
                async with gate.slot(PATH):
                    events.append("sent R")
            except BudgetExhaustedError:
                events.append("refused R")
                refused.set()
                b.cancel()  # the batch aborts: it cancels the calls it thinks unsent

        refused = asyncio.Event()

        async def second() -> None:
            async with gate.slot(PATH):
                events.append("sent B")
                await refused.wait()  # R is refused while B is still in flight

        a = asyncio.create_task(first())
        await asyncio.sleep(0)
        b = asyncio.create_task(second())
        await asyncio.sleep(0.01)  # B waits for A's place
        release.set()
        await asyncio.wait_for(asyncio.gather(a, b, return_exceptions=True), 5)
        events += [gate.calls, gate.remaining_calls]
        with pytest.raises(BudgetExhaustedError):
            async with gate.slot(PATH):
                pass
        return events

    assert run_virtual(main) == ["sent A", "sent B", "refused R", 2, 0]


def test_a_caller_cancelled_after_its_place_was_given_hands_the_call_on() -> None:
    """Budget 2, one place: A holds it, B and C wait. A leaves and, in that same step,
    B (just given the place) is cancelled: C gets the place and the last call; the call
    after that is refused. Nothing waits for ever."""

    async def main() -> list[object]:
        gate = RateGate(RateConfig(qps=1000, max_calls=2, max_in_flight=1))
        release = asyncio.Event()
        events: list[object] = []

        async def call(name: str) -> None:
            async with gate.slot(PATH):
                events.append(f"sent {name}")

        async def first() -> None:
            async with gate.slot(PATH):
                events.append("sent A")
                await release.wait()
            b.cancel()  # B was given the place by A's exit and has not resumed

        a = asyncio.create_task(first())
        await asyncio.sleep(0)
        b, c = asyncio.create_task(call("B")), asyncio.create_task(call("C"))
        await asyncio.sleep(0.01)
        release.set()
        await asyncio.wait_for(asyncio.gather(a, b, c, return_exceptions=True), 5)
        events += [gate.calls, gate.remaining_calls, gate.in_flight]
        with pytest.raises(BudgetExhaustedError):
            async with gate.slot(PATH):
                pass
        return events

    assert run_virtual(main) == ["sent A", "sent C", 2, 0, 0]


def test_callers_past_the_budget_are_refused_once_the_reserved_calls_resume() -> None:
    """Ten callers, budget 3: three are sent, seven refused, none waits for ever."""

    async def main() -> tuple[int, int, int]:
        gate = RateGate(RateConfig(qps=50, max_calls=3, max_in_flight=2))
        outcomes: list[str] = []

        async def call() -> None:
            try:
                async with gate.slot(PATH):
                    outcomes.append("sent")
                    await asyncio.sleep(0.05)
            except BudgetExhaustedError:
                outcomes.append("refused")

        await asyncio.wait_for(asyncio.gather(*(call() for _ in range(10))), 10)
        return outcomes.count("sent"), outcomes.count("refused"), gate.calls

    assert run_virtual(main) == (3, 7, 3)
