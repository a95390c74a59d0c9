"""Issue 22, item 5: under a call budget, new submits stop while the calls left are
needed to read the tasks already paid; a quota never strands a paid task."""

from __future__ import annotations

import asyncio

import pytest

from fto_async._reserve import POLLS_UNKNOWN, PollReserve
from fto_async.config import RateConfig
from fto_async.errors import BudgetExhaustedError
from fto_async.polling import TaskDurations
from fto_async.ratelimit import RateGate
from tests._batch import emulator, image, make_client
from tests._shared import SUBMIT
from tests._vtime import run_virtual


def test_a_new_task_waits_for_the_reserve_of_open_ones_then_is_refused_when_none_is_open() -> None:
    """Calls left = the reserve of the open tasks: a new task's claim waits; when they
    end it fits; with fewer calls left than one task's need and nothing open, it is
    refused with the budget's name, and nothing is counted open."""

    async def main() -> None:
        gate = RateGate(RateConfig(max_calls=13, daily_limit=100))
        reserve = PollReserve(gate, TaskDurations())
        assert reserve.polls_per_task("image_search") == POLLS_UNKNOWN  # nothing learnt
        reserve.hold()  # one paid task: its 6 polls are kept
        assert reserve.needed("image_search", 1) == 1 + 12
        assert reserve.fits("image_search", 1)
        reserve.hold()  # two: 13 calls left = 2 x 6 + 1, no room for a third task
        claim = asyncio.create_task(reserve.claim("image_search", 1))
        await asyncio.sleep(1)
        assert not claim.done()
        reserve.release(polls=1)  # one paid task was read: its reserve comes back
        await asyncio.wait_for(claim, 1)
        assert reserve.open == 2
        for _ in range(2):
            reserve.release(polls=1)
        for _ in range(8):  # spend 8 calls: 5 left < 1 + 6
            async with gate.slot("/p"):
                pass
        with pytest.raises(BudgetExhaustedError) as caught:
            await reserve.claim("image_search", 1)
        assert caught.value.budget == "max_calls"
        assert reserve.open == 0
        assert reserve.refused == 1
        reserve.most_polls = 9  # a task needed 9 polls: the next ones keep 10
        assert reserve.polls_per_task("image_search") == 10

    run_virtual(main)


def test_the_tighter_budget_decides() -> None:
    """With both budgets set, the calls left are the fewer of the two."""
    gate = RateGate(RateConfig(max_calls=100, daily_limit=8))
    assert PollReserve(gate, TaskDurations()).calls_left() == (8, "daily_limit")
    assert PollReserve(RateGate(RateConfig()), TaskDurations()).calls_left() is None


async def test_thirty_screens_on_a_small_daily_limit_read_every_paid_task() -> None:
    """The issue's story: 30 concurrent ``client.screen`` calls with ``daily_limit=20``.
    Some are answered, the rest refused with BudgetExhaustedError before any call; every
    task paid for is read (before: 0 of 30 answered, 14 paid tasks never read)."""
    async with emulator() as emu, make_client(emu, daily_limit=20) as client:
        async with asyncio.timeout(60):  # a reserve never given back would wait for ever
            outcomes = await asyncio.gather(*(client.screen(image(i)) for i in range(30)))
        paid = emu.stats.count(SUBMIT, 0)
        assert client.stats.calls <= 20
        assert client.poll_reserve.open == 0
    read = [o for o in outcomes if o.ok]
    refused = [o for o in outcomes if isinstance(o.error, BudgetExhaustedError)]
    assert paid > 0
    assert len(read) == paid
    assert len(read) + len(refused) == 30
    assert all(o.task_id is None for o in refused)  # refused before any call
    assert {o.task_id for o in read} == {rec.task_id for rec in emu.stats.submits}


async def test_tasks_handed_over_hold_their_polls_until_read() -> None:
    """``wait_many`` over 3 paid task ids: the reserve counts 3 open tasks while they are
    polled, and none once they are read."""
    from fto_async import FtoClient
    from fto_async.config import RetryConfig
    from fto_async.testing import MockRequest, MockResponse, MockTransport

    seen: list[int] = []
    clients: list[FtoClient] = []

    def handler(request: MockRequest) -> MockResponse:
        assert request.json is not None
        seen.append(clients[0].poll_reserve.open)
        return MockResponse.ok({"task_id": request.json["task_id"], "task_status": 2,
                                "report": {"country": ["US"], "comparisons": []}})  # fmt: skip

    async with FtoClient(api_key="sk-test", transport=MockTransport(handler), max_calls=50,
                         retry=RetryConfig.for_testing()) as client:  # fmt: skip
        clients.append(client)
        outcomes = [o async for o in client.wait_many([("a", "t1"), ("b", "t2"), ("c", "t3")])]
        assert all(o.ok for o in outcomes)
        assert client.poll_reserve.open == 0
    assert max(seen) == 3


async def test_follow_ups_hold_the_reserve_while_polled_and_give_it_back() -> None:
    """Under a budget, each 1-vs-1 follow-up claims a task's polls before its submit and
    gives them back once read: nothing is left held."""
    from fto_async import FollowUp
    from tests.batch.test_followup import emulator as fu_emulator
    from tests.batch.test_followup import items
    from tests.batch.test_followup import make_client as fu_client

    async with fu_emulator(seed=3) as emu, fu_client(emu, max_calls=10_000) as client:
        claimed: list[str] = []

        class Recording(PollReserve):
            async def claim(self, kind: str, cost: int) -> None:
                await super().claim(kind, cost)
                claimed.append(kind)

        reserve = client.poll_reserve = Recording(client.gate, client.durations)
        outcomes = [o async for o in client.screen_many(items(4), follow_up=FollowUp(top=2))]
        assert all(o.ok for o in outcomes)
        follow_ups = sum(len(o.follow_ups) for o in outcomes)
        assert follow_ups > 0
        assert claimed.count("one_vs_one") == follow_ups  # one claim per 1-vs-1 task
        assert claimed.count("image_search") == 4
        assert reserve.open == 0  # every claim given back
