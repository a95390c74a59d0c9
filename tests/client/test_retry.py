"""The retry policy: what is retried, how long it waits, the budget and the hooks."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp import web

from fto_async import (
    BusyError,
    InsufficientBalanceError,
    RateLimitedError,
    RetryConfig,
    RetryEvent,
    ServerError,
)
from fto_async.errors import (
    ConnectError,
    FtoError,
    InvalidParameterError,
    MalformedResponseError,
    RequestTimeout,
    ServiceError,
)
from fto_async.retry import RetryBudget, RetryPolicy
from tests._shared import REPORT, SUBMIT
from tests._vtime import virtual

from ._support import base_url, emulator, envelope, handcrafted, image_request, make_client, running

# -- against the emulator ----------------------------------------------------------------


async def test_busy_20_percent_every_call_succeeds() -> None:
    """With 20% of calls answered 67200100, every call of a 100-call run still succeeds."""
    async with running(
        emu_config={"busy_rate": 0.2, "seed": 7}, retry=RetryConfig.for_testing(max_attempts=10)
    ) as (emu, client):
        calls = (client.submit_image_search(image_request()) for _ in range(100))
        ids = await asyncio.gather(*calls)
        assert len(set(ids)) == 100
        busy = emu.stats.count(SUBMIT, 67200100)
        assert busy > 0
        assert client.retries == busy
        assert client.stats.by_code[67200100] == busy
        assert client.stats.by_code[0] == 100


async def test_busy_always_gives_busy_error_after_max_attempts() -> None:
    """busy_rate=1 raises BusyError after exactly max_attempts attempts."""
    async with running(
        "sk", emu_config={"busy_rate": 1.0}, retry=RetryConfig.for_testing(max_attempts=4)
    ) as (emu, client):
        with pytest.raises(BusyError):
            await client.submit_image_search(image_request())
        assert emu.stats.count(SUBMIT, 67200100) == 4
        assert client.stats.calls == 4
        assert client.retries == 3


async def test_fatal_code_raised_at_once_without_retry() -> None:
    """A fatal code (67200005, no balance) is raised at once: zero retries, one submit call."""
    async with running(emu_config={"balance": 0}) as (emu, client):
        with pytest.raises(InsufficientBalanceError) as info:
            await client.submit_image_search(image_request())
        assert info.value.fatal
        assert info.value.code == 67200005
        assert client.retries == 0
        assert emu.stats.count(SUBMIT) == 1


async def test_invalid_parameter_is_not_retried() -> None:
    """68300004 (the platform refused the input) is raised without retry."""
    async with running() as (emu, client):
        with pytest.raises(InvalidParameterError):
            await client.transport.call(SUBMIT, {"url": "not a url"})
        assert client.retries == 0
        assert emu.stats.count(SUBMIT, 68300004) == 1


def _flip_after_first(emu: Any, field: str, events: list[RetryEvent]) -> Any:
    def hook(event: RetryEvent) -> None:
        events.append(event)
        emu.reconfigure(**{field: 0.0})

    return hook


@pytest.mark.parametrize(
    ("field", "error", "extra"),
    [
        ("service_error_rate", ServiceError, {}),
        ("http_5xx_rate", ServerError, {}),
        ("drop_rate", ConnectError, {}),
        ("hang_rate", RequestTimeout, {"hang_seconds": 0.5}),
        ("busy_rate", BusyError, {}),
    ],
)
@virtual  # a 0.2 s timeout on the real clock timed out the good retry on a loaded machine
async def test_transient_fault_is_retried_and_succeeds(
    field: str, error: type[FtoError], extra: dict[str, Any]
) -> None:
    """68300008, HTTP 5xx, dropped connections and hangs are retried and the call succeeds."""
    events: list[RetryEvent] = []
    async with emulator(**{field: 1.0, **extra}) as emu, make_client(
        emu.base_url, "sk", timeout=0.2, retry_hooks=[_flip_after_first(emu, field, events)]
    ) as client:
        task_id = await client.submit_image_search(image_request())
        assert task_id
        assert client.retries == 1
        assert [type(e.error) for e in events] == [error]
        assert events[0].path == SUBMIT
        assert events[0].attempt == 1


async def test_malformed_bodies_are_retried() -> None:
    """HTML 502 pages and truncated JSON bodies are retried until a good answer arrives."""
    async with running(
        "sk", emu_config={"malformed_rate": 0.4, "seed": 3},
        retry=RetryConfig.for_testing(max_attempts=10),
    ) as (emu, client):
        for _ in range(20):
            await client.submit_image_search(image_request())
        assert emu.stats.count(SUBMIT, 502) > 0  # the HTML page
        assert emu.stats.count(SUBMIT, 200) > 0  # the truncated JSON
        assert client.retries == emu.stats.count(SUBMIT, 502) + emu.stats.count(SUBMIT, 200)


async def test_malformed_answer_error_types() -> None:
    """A truncated JSON body is a MalformedResponseError, an HTML 502 a ServerError."""
    events: list[RetryEvent] = []
    async with running(
        "sk", emu_config={"malformed_rate": 0.5, "seed": 1},
        retry=RetryConfig.for_testing(max_attempts=10), retry_hooks=[events.append],
    ) as (_emu, client):
        for _ in range(10):
            await client.submit_image_search(image_request())
    kinds = {type(e.error) for e in events}
    assert kinds == {MalformedResponseError, ServerError}


async def test_retry_hooks_receive_events() -> None:
    """Retry hooks get RetryEvent(path, attempt, error, wait) with the platform code."""
    events: list[RetryEvent] = []
    async with running(
        "sk",
        emu_config={"busy_rate": 1.0},
        retry=RetryConfig(max_attempts=3, base=0.001, cap=0.001),
        retry_hooks=[events.append],
    ) as (_emu, client):
        with pytest.raises(BusyError):
            await client.get_image_search_report("nope")
    assert [e.attempt for e in events] == [1, 2]
    assert {e.code for e in events} == {67200100}
    assert {e.path for e in events} == {REPORT}
    assert all(0 <= e.wait <= 0.001 for e in events)
    assert all(isinstance(e.error, BusyError) for e in events)


# -- ambiguous submits -------------------------------------------------------------------


async def test_ambiguous_busy_counts_resubmits() -> None:
    """Resubmits after a 67200100 that created the task are counted as ambiguous submits."""
    async with running(
        "sk", emu_config={"ambiguous_busy_rate": 1.0}, retry=RetryConfig.for_testing(max_attempts=3)
    ) as (emu, client):
        for _ in range(3):
            with pytest.raises(BusyError):
                await client.submit_image_search(image_request())
        assert client.stats.ambiguous_submits == 6  # two resubmits per call
        emu.reconfigure(ambiguous_busy_rate=0.0)
        await client.submit_image_search(image_request())
        assert client.stats.ambiguous_submits == 6
        assert sum(s.ambiguous for s in emu.stats.submits) == 9  # tasks the client never saw


async def test_ambiguous_then_success_counts_the_duplicate() -> None:
    """A submit answered busy after creating its task, then resubmitted, counts one ambiguity."""
    async with emulator(ambiguous_busy_rate=1.0) as emu, make_client(
        emu.base_url, "sk", retry_hooks=[lambda _e: emu.reconfigure(ambiguous_busy_rate=0.0)]
    ) as client:
        await client.submit_image_search(image_request())
        assert client.stats.ambiguous_submits == 1
        assert len(emu.stats.submits) == 2  # the platform now holds a duplicate task
        assert sum(s.ambiguous for s in emu.stats.submits) == 1


async def test_busy_on_polls_is_not_ambiguous() -> None:
    """Retried polls never count as ambiguous submits (they create nothing)."""
    async with running("sk") as (emu, client):
        task_id = await client.submit_image_search(image_request())
        emu.reconfigure(busy_rate=1.0)

        def calm(_event: RetryEvent) -> None:
            emu.reconfigure(busy_rate=0.0)

        client.transport.retry.hooks.append(calm)
        await client.get_image_search_report(task_id)
        assert client.retries == 1
        assert client.stats.ambiguous_submits == 0


def _rate_limited_once(retry_after: str | None) -> tuple[Any, list[float]]:
    seen: list[float] = []

    async def submit(_request: web.Request) -> web.Response:
        seen.append(time.monotonic())
        if len(seen) == 1:
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            return envelope(code=67200002, msg="too fast", **headers)
        return envelope({"task_id": f"t{len(seen)}"})

    return submit, seen


async def test_rate_limited_retry_is_not_ambiguous() -> None:
    """A 67200002 retry of a submit is not counted as ambiguous (nothing was created)."""
    submit, seen = _rate_limited_once(None)
    async with handcrafted({SUBMIT: submit}) as server, make_client(
        base_url(server), "sk"
    ) as client:
        assert await client.submit_image_search(image_request()) == "t2"
        assert len(seen) == 2
        assert client.retries == 1
        assert client.stats.ambiguous_submits == 0
        assert client.gate.rate < 1000  # the shared gate slowed down


async def test_retry_after_is_honoured() -> None:
    """A Retry-After of 0.2 s makes the retry wait at least 0.2 s and less than 0.2 s + base."""
    base = 0.1
    submit, seen = _rate_limited_once("0.2")
    events: list[RetryEvent] = []
    async with handcrafted({SUBMIT: submit}) as server, make_client(
        base_url(server), "sk", retry=RetryConfig(max_attempts=3, base=base, cap=1.0),
        retry_hooks=[events.append],
    ) as client:
        await client.submit_image_search(image_request())
    assert len(events) == 1
    assert events[0].code == 67200002
    assert 0.2 <= events[0].wait < 0.2 + base
    gap = seen[1] - seen[0]
    assert gap >= 0.2
    assert gap < 0.2 + base + 0.05  # plus the request's own latency


# -- the policy alone --------------------------------------------------------------------


def test_retry_budget_withdraw_and_refund() -> None:
    """RetryBudget takes cost per retry, refuses when short and refunds up to capacity."""
    budget = RetryBudget(20)
    assert [budget.withdraw(5) for _ in range(5)] == [True, True, True, True, False]
    assert budget.tokens == 0
    budget.refund(1)
    assert budget.tokens == 1
    assert not budget.withdraw(5)
    assert budget.tokens == 1
    for _ in range(100):
        budget.refund(1)
    assert budget.tokens == 20
    assert "20/20" in repr(budget)


def _failing(error: FtoError) -> tuple[Any, list[int]]:
    calls: list[int] = []

    async def attempt(path: str) -> str:
        calls.append(1)
        raise error

    return attempt, calls


async def _ok(path: str) -> str:
    return "ok"


async def test_policy_budget_allows_exactly_four_retries() -> None:
    """Budget 20, retry_cost 5: four retries, then the error surfaces; successes refill 1 each."""
    policy = RetryPolicy(RetryConfig(max_attempts=100, base=0, cap=0, budget=20, retry_cost=5))
    attempt, calls = _failing(BusyError(67200100, "busy"))
    with pytest.raises(BusyError):
        await policy.wrap(attempt)("/p")
    assert len(calls) == 5
    assert policy.retries == 4
    assert policy.budget_refusals == 1
    assert policy.budget.tokens == 0

    calls.clear()
    with pytest.raises(BusyError):  # an empty budget: no retry at all
        await policy.wrap(attempt)("/p")
    assert len(calls) == 1

    ok = policy.wrap(_ok)
    for _ in range(5):
        assert await ok("/p") == "ok"
    assert policy.budget.tokens == 5
    calls.clear()
    with pytest.raises(BusyError):
        await policy.wrap(attempt)("/p")
    assert len(calls) == 2  # exactly one retry bought by the refund


async def test_policy_timeout_retries_cost_more() -> None:
    """A retry after a timeout takes timeout_cost tokens."""
    policy = RetryPolicy(RetryConfig(max_attempts=100, base=0, cap=0, budget=20, timeout_cost=10))
    attempt, calls = _failing(RequestTimeout("slow"))
    with pytest.raises(RequestTimeout):
        await policy.wrap(attempt)("/p")
    assert len(calls) == 3


@pytest.mark.parametrize(
    "error",
    [
        InsufficientBalanceError(67200005, "no balance"),
        InvalidParameterError(68300004, "bad"),
        ServiceError(68300005, "search failed"),
        FtoError("plain"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_policy_never_retries_non_retryable(error: FtoError) -> None:
    """Non-retryable errors surface after one attempt and spend no budget."""
    policy = RetryPolicy(RetryConfig.for_testing(max_attempts=5))
    attempt, calls = _failing(error)
    with pytest.raises(type(error)):
        await policy.wrap(attempt)("/p")
    assert len(calls) == 1
    assert policy.budget.tokens == policy.config.budget
    assert policy.retries == 0


async def test_policy_does_not_touch_foreign_exceptions() -> None:
    """Exceptions outside FtoError (a bug, RuntimeError) pass through untouched."""
    policy = RetryPolicy(RetryConfig.for_testing())

    async def attempt(path: str) -> str:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        await policy.wrap(attempt)("/p")
    assert policy.retries == 0


async def test_policy_waits_full_jitter_with_cap() -> None:
    """Waits are rng * min(cap, base * 2**(n-1)), and hooks see them."""
    events: list[RetryEvent] = []
    policy = RetryPolicy(
        RetryConfig(max_attempts=5, base=0.001, cap=0.004), hooks=[events.append], rng=lambda: 1.0
    )
    attempt, _ = _failing(RateLimitedError(67200002, "slow"))
    with pytest.raises(RateLimitedError):
        await policy.wrap(attempt)("/p")
    assert [e.wait for e in events] == pytest.approx([0.001, 0.002, 0.004, 0.004])
    assert [e.attempt for e in events] == [1, 2, 3, 4]
    assert all(e.code == 67200002 and e.path == "/p" for e in events)


async def test_policy_retry_after_adds_jitter_up_to_base() -> None:
    """With a Retry-After hint the wait is the hint plus rng * base."""
    events: list[RetryEvent] = []
    policy = RetryPolicy(
        RetryConfig(max_attempts=2, base=0.01, cap=5), hooks=[events.append], rng=lambda: 0.5
    )
    attempt, _ = _failing(RateLimitedError(67200002, "slow", retry_after=0.02))
    with pytest.raises(RateLimitedError):
        await policy.wrap(attempt)("/p")
    assert [e.wait for e in events] == pytest.approx([0.025])


async def test_policy_for_testing_never_waits() -> None:
    """RetryConfig.for_testing retries max_attempts times with zero waits."""
    events: list[RetryEvent] = []
    policy = RetryPolicy(RetryConfig.for_testing(max_attempts=4), hooks=[events.append])
    attempt, calls = _failing(ServerError(None, "502", http_status=502))
    started = time.monotonic()
    with pytest.raises(ServerError):
        await policy.wrap(attempt)("/p")
    assert time.monotonic() - started < 0.1
    assert len(calls) == 4
    assert [e.wait for e in events] == [0.0, 0.0, 0.0]


async def test_policy_max_time_bounds_the_waits() -> None:
    """No wait runs past max_time: the call gives up within its overall budget."""
    policy = RetryPolicy(RetryConfig(max_attempts=100, base=10, cap=10, max_time=0.05),
                         rng=lambda: 1.0)
    attempt, _ = _failing(BusyError(67200100, "busy"))
    started = time.monotonic()
    with pytest.raises(BusyError):
        await policy.wrap(attempt)("/p")
    assert time.monotonic() - started < 0.5
