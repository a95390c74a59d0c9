"""The account's rate gate: paced, never over the limit, slower when throttled.

Every business call of one client passes :meth:`RateGate.slot`, which

1. checks the call budgets (``max_calls``, ``daily_limit``) and refuses with
   :class:`~fto_async.errors.BudgetExhaustedError` before anything is sent;
2. waits in one queue of three lanes (:mod:`fto_async._lanes`): due polls
   (``priority=True``), then the next step of work already started, then new work (the
   class a caller set with ``work_class``), FIFO within a lane. A dispatcher
   admits waiters in that order, as many at once as both bounds allow: an in-flight
   place (a counter sized by Little's law, see :class:`~fto_async.config.RateConfig`)
   and the pacer, an :class:`aiolimiter.AsyncLimiter` that drains at ``rate`` calls
   per second with a capacity ``c`` of one call plus a small credit ``x < 1`` (the
   dispatcher fills the bucket exactly as ``acquire`` would, and sleeps until it has
   drained enough). Thousands of callers never park on the limiter.

The lanes only change the order of admissions: there is still one pacer, one leaky
bucket, so the bound below holds for every mix of classes. Polls and started work take
at most 3 admissions in 4 while new work waits, and polls at most 3 in 4 of theirs while
started work waits, so no class stalls another: at the head of its lane a poll waits at
most two pacing steps (``1 / rate`` seconds each) for the calls ahead of it, a started
step at most four, a new call at most three.

Why not ``AsyncLimiter(Q, 1)``: it lets Q calls pass at once after an idle spell and
Q more over the next second, so one sliding window can hold almost 2Q. A leaky bucket
of capacity ``c`` admits at most ``c + rate * W`` calls in any window of ``W`` seconds
(its level starts >= 0, rises by 1 per call, never exceeds ``c`` and drains
``rate * W``). With ``rate = headroom * qps`` and ``x = min(0.25, qps - rate)`` (minus
a hair) that is fewer than ``qps + 1`` calls, i.e. at most ``qps``, in every 1-second
window. At the default headroom (0.96) and ``qps = 50`` the bound is 49.25 calls: the
0.75 call to spare absorbs 15 ms of network jitter between our clock and the
gateway's. The credit ``x`` lets a waiter woken a little late catch up instead of
losing that time, so the gate really runs at ``rate`` (measured: 0.960 Q).

Adaptive mode (after botocore's): a 67200002 answer starts a throttling episode, once
(answers to calls sent before the last decrease, or less than a second after it, are
ignored: the gateway's window still holds the calls that caused it). The gate counts the
calls that succeeded in the last second: that is the share of the account's limit this
client actually gets, so the new ceiling estimate is that count times ``headroom``
and the rate drops to ``min(0.7 * rate, estimate)``; and since the gateway's window is
full, the gate admits nothing until the oldest of those calls has left it. Successes
climb back to the estimate over ``recovery`` seconds, then probe above it slowly (5% of
``qps`` per second) up to the configured rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from aiolimiter import AsyncLimiter

from ._lanes import NEW, POLL, LaneQueue, current_class
from .config import RateConfig
from .errors import BudgetExhaustedError

__all__ = ["Permit", "RateGate", "RateGateProtocol"]

_DECREASE = 0.7
_PROBE = 0.05  # of the ceiling, per second, above the last throttled rate


def _credit(qps: float, rate: float) -> float:
    """The pacer's catch-up credit: keeps ``1 + credit + rate`` below ``qps + 1``."""
    return max(0.0, min(0.25, qps - rate - 1e-6))


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


class _Pacer(AsyncLimiter):
    """Private: an AsyncLimiter of capacity ``1 + credit`` whose rate can change."""

    __slots__ = ()

    def __init__(self, rate: float, credit: float = 0.0) -> None:
        capacity = 1.0 + credit
        super().__init__(capacity, capacity / rate)

    def _leak(self) -> None:
        super()._leak()
        # Float residue just above a threshold would make the waker spin at one instant.
        if self._level < 1e-9:
            self._level = 0.0
        elif 0.0 < self._level - (self.max_rate - 1.0) < 1e-9:
            self._level = self.max_rate - 1.0

    def pause(self, seconds: float) -> None:
        """Admit nothing for ``seconds`` (then resume at the current rate)."""
        self._leak()
        self._level = max(self._level, self.max_rate - 1.0 + self._rate_per_sec * seconds)
        self._wake_next()

    def set_rate(self, rate: float) -> None:
        """Change the pace; capacity already drained stays drained."""
        self._leak()
        self.time_period = self.max_rate / rate
        self._rate_per_sec = rate  # AsyncLimiter caches max_rate / time_period here
        self._wake_next()


class Permit:
    """One admission through the gate; the transport hands it back with feedback."""

    __slots__ = ("path", "sent_at")

    def __init__(self, path: str, sent_at: float) -> None:
        self.path = path
        self.sent_at = sent_at


class RateGateProtocol(Protocol):
    """The gate as the transport sees it: acquire, feedback, budgets.

    A shared multi-process backend (Redis, a sidecar) can implement this and be passed
    to the client without touching the transport.
    """

    def slot(self, path: str, *, priority: bool = False) -> AbstractAsyncContextManager[Permit]:
        """Wait for the right to send one call; hold it while the call is in flight.

        ``priority=True`` (due polls) is admitted before any waiting call without it;
        without it, the class set with :func:`fto_async._lanes.work_class` (new work
        unless set) orders the call.
        """

    def on_throttled(self, permit: Permit) -> None:
        """The call was answered 67200002."""

    def on_success(self, permit: Permit) -> None:
        """The call was answered without throttling."""

    @property
    def rate(self) -> float:
        """The current pace in calls per second."""


class _Admits(Protocol):
    """Private: what :class:`_Slot` calls on a gate (this one, or the Redis one)."""

    async def _enter(self, path: str, lane: int) -> Permit: ...

    def _exit(self) -> None: ...


class _Slot:
    """Private: the async context manager a gate's ``slot()`` returns (cheaper than a
    generator-based one on this hot path); shared by :class:`RateGate` and
    :class:`~fto_async.redisgate.RedisRateGate`."""

    __slots__ = ("_gate", "_lane", "_path")

    def __init__(self, gate: _Admits, path: str, priority: bool) -> None:
        self._gate = gate
        self._path = path
        # Read here, in the caller's task: the class its calls are sent in.
        self._lane = POLL if priority else current_class()

    async def __aenter__(self) -> Permit:
        return await self._gate._enter(self._path, self._lane)

    async def __aexit__(self, *exc: object) -> None:
        self._gate._exit()


class RateGate:
    """Paces every call of one account under its QPS limit and enforces call budgets.

    Example::

        gate = RateGate(RateConfig(qps=10, max_calls=1000))
        async with gate.slot("/ai/image-search/submit") as permit:
            ...  # send the request
        gate.on_success(permit)

    Args:
        config: the options, documented on :class:`~fto_async.config.RateConfig`.
        clock: monotonic seconds for the adaptive rate (default: the running loop's
            clock, which the pacer uses too).
        wall_clock: epoch seconds, to tell UTC days apart for ``daily_limit``.
    """

    def __init__(
        self,
        config: RateConfig | None = None,
        *,
        clock: Callable[[], float] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config or RateConfig()
        self._clock = clock or _loop_time
        self._wall_clock = wall_clock
        self._ceiling = self.config.qps * self.config.headroom
        self._floor = self.config.qps * self.config.min_rate_fraction
        self._rate = self._ceiling
        self._credit = _credit(self.config.qps, self._ceiling)
        self._estimate = self._ceiling  # the adaptive ceiling estimate
        self._successes: deque[float] = deque()
        self._last_decrease = float("-inf")
        self._last_update = float("-inf")
        self._pacer: _Pacer | None = None
        self._endpoint_pacers: dict[str, _Pacer] = {}
        self._busy = 0  # calls holding an in-flight place
        self._started = False
        # The admission queue, one lane per class of work: the dispatcher admits
        # waiters in its order, as many as the pacer and the in-flight bound allow now.
        self._queue = LaneQueue()
        self._timer: asyncio.TimerHandle | None = None
        # Waiters the dispatcher gave a place to that have not resumed yet: each takes
        # (and counts) its call in its own step, so a caller cancelled in between never
        # held a counted call, and the budgets wait for these before refusing anyone.
        self._reserved = 0
        self._budget_blocked = False  # the dispatcher waits for the reserved ones
        #: Calls admitted so far (every attempt counts: the platform counts them too).
        self.calls = 0
        #: 67200002 answers reported through :meth:`on_throttled`.
        self.throttled = 0
        self._day = self._utc_day()
        self._calls_today = 0

    # -- the slot -------------------------------------------------------------------

    def slot(self, path: str, *, priority: bool = False) -> _Slot:
        """Wait for the right to send one call to ``path``; hold it while in flight.

        Use as ``async with gate.slot(path) as permit:``.

        Args:
            path: the endpoint path.
            priority: admit this call before every waiting call without priority (the
                poll scheduler sets it for due polls, so they never queue behind
                seconds of submits). Without it, the call goes in the class the
                calling task set with :func:`fto_async._lanes.work_class` (new work
                unless set). The pace and the window bound are unchanged.

        Raises:
            BudgetExhaustedError: the call would exceed ``max_calls`` or ``daily_limit``.
        """
        return _Slot(self, path, priority)

    async def _enter(self, path: str, lane: int = NEW) -> Permit:
        if self._pacer is None:
            self._pacer = _Pacer(self._rate, self._credit)
        self._check_budgets()
        extra = self._endpoint_pacer(path) if self.config.endpoint_qps else None
        if extra is not None:
            await extra.acquire()
        queue = self._queue
        if not queue and self._budget_left() and self._take():
            pass  # admitted at once
        else:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            queue.push(lane, waiter)
            self._dispatch()
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    self._reserved -= 1  # given a place, cancelled before taking the call
                    self._exit()
                raise
            self._reserved -= 1
            try:
                self._check_budgets()
            except BudgetExhaustedError:
                self._exit()
                raise
        # The call is taken and counted in the caller's own step, with no await between
        # here and the send: from now on it is counted whatever happens to the caller.
        self.calls += 1
        self._calls_today += 1
        if self._budget_blocked:
            self._dispatch()  # a waiter held back by the budgets may be refused now
        return Permit(path, self._clock())

    def _take(self) -> bool:
        """Take an in-flight place and a pacer step now if both bounds allow it."""
        pacer = self._pacer
        assert pacer is not None
        if self._busy >= self.config.in_flight_limit or not pacer.has_capacity():
            return False
        pacer._level += 1.0  # the pacer's own acquire, without waiting
        self._busy += 1
        return True

    def _budget_left(self) -> bool:
        """Whether the budgets have room for one more call beside the reserved ones."""
        cfg = self.config
        taken = self._reserved
        if cfg.max_calls is not None and self.calls + taken >= cfg.max_calls:
            return False
        return cfg.daily_limit is None or self._calls_today + taken < cfg.daily_limit

    def _dispatch(self) -> None:
        """Admit waiters in lane order while room lasts; else wake up when it comes."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._budget_blocked = False
        pacer = self._pacer
        queue = self._queue
        while (lane := queue.head()) is not None:
            try:
                self._check_budgets()
            except BudgetExhaustedError as exc:
                queue.lanes[lane].popleft().set_exception(exc)
                continue
            if not self._budget_left():
                # The last calls of a budget are reserved: each is taken when its
                # caller resumes, or handed back if it was cancelled first. Refuse
                # nobody until then (the budget is spent exactly, never short).
                self._budget_blocked = True
                return
            if not self._take():
                if pacer is not None and self._busy < self.config.in_flight_limit:
                    # capacity returns as the bucket drains (the in-flight bound
                    # is re-dispatched by _exit)
                    need = pacer._level + 1.0 - pacer.max_rate
                    delay = max(need / pacer._rate_per_sec, 1e-4)
                    self._timer = asyncio.get_running_loop().call_later(delay, self._dispatch)
                return
            self._reserved += 1
            queue.pop(lane).set_result(None)

    def _exit(self) -> None:
        self._busy -= 1
        if self._queue:
            self._dispatch()

    def _endpoint_pacer(self, path: str) -> _Pacer | None:
        limit = self.config.endpoint_qps.get(path)
        if limit is None:
            return None
        pacer = self._endpoint_pacers.get(path)
        if pacer is None:
            rate = limit * self.config.headroom
            pacer = self._endpoint_pacers[path] = _Pacer(rate, _credit(limit, rate))
        return pacer

    # -- budgets --------------------------------------------------------------------

    def _utc_day(self) -> int:
        return int(self._wall_clock() // 86400)

    def _check_budgets(self) -> None:
        cfg = self.config
        if cfg.max_calls is not None and self.calls >= cfg.max_calls:
            raise BudgetExhaustedError(
                f"max_calls budget of {cfg.max_calls} calls is spent", budget="max_calls"
            )
        if cfg.daily_limit is not None:
            day = self._utc_day()
            if day != self._day:
                self._day, self._calls_today = day, 0
            if self._calls_today >= cfg.daily_limit:
                raise BudgetExhaustedError(
                    f"daily_limit budget of {cfg.daily_limit} calls is spent for today (UTC)",
                    budget="daily_limit",
                )

    @property
    def remaining_calls(self) -> int | None:
        """Calls left under ``max_calls`` (``None`` without that budget)."""
        m = self.config.max_calls
        return None if m is None else max(0, m - self.calls)

    @property
    def remaining_today(self) -> int | None:
        """Calls left today under ``daily_limit`` (``None`` without that budget)."""
        d = self.config.daily_limit
        if d is None:
            return None
        if self._utc_day() != self._day:
            return d
        return max(0, d - self._calls_today)

    # -- adaptive rate --------------------------------------------------------------

    @property
    def rate(self) -> float:
        """The pace in force, in calls per second (for progress displays)."""
        return self._rate

    @property
    def in_flight(self) -> int:
        """Calls holding a slot right now."""
        return self._busy

    def on_throttled(self, permit: Permit) -> None:
        """The platform answered 67200002 to ``permit``'s call: slow the whole account."""
        self.throttled += 1
        if not self.config.adaptive or permit.sent_at <= self._last_decrease + 1.0:
            # A call sent before the last decrease, or within one window after it (the
            # gateway's window still holds the calls that caused it), belongs to the
            # episode we already reacted to: one decrease per episode, no cascade.
            return
        now = self._clock()
        self._forget_successes(now)
        share = len(self._successes) * self.config.headroom
        self._estimate = max(self._floor, min(self._ceiling, share))
        self._set_rate(max(self._floor, min(self._rate * _DECREASE, self._estimate)))
        if self._successes and self._pacer is not None:
            # The gateway's window is full: send nothing until its oldest call we know
            # of has left it, or every call sent meanwhile is refused too.
            self._pacer.pause(self._successes[0] + 1.0 - now)
            self._redispatch()
        self._last_decrease = now
        self._last_update = now

    def on_success(self, permit: Permit) -> None:
        """A call went through: remember it, and climb back toward the ceiling."""
        if not self.config.adaptive:
            return
        now = self._clock()
        self._successes.append(now)
        if len(self._successes) > 4 * self.config.qps + 16:
            self._forget_successes(now)
        if self._rate >= self._ceiling:
            return
        elapsed, self._last_update = now - self._last_update, now
        if self._rate < self._estimate:
            step = (self._estimate - self._floor) * elapsed / self.config.recovery
            new = min(self._estimate, self._rate + step)
        else:
            new = self._rate + self.config.qps * _PROBE * elapsed
        self._set_rate(min(self._ceiling, new))

    def _forget_successes(self, now: float) -> None:
        successes = self._successes
        while successes and successes[0] < now - 1.0:
            successes.popleft()

    def _set_rate(self, rate: float) -> None:
        self._rate = rate
        if self._pacer is not None:
            self._pacer.set_rate(rate)
            self._redispatch()

    def _redispatch(self) -> None:
        """The pace changed: recompute when the next waiter can go."""
        if self._queue:
            with contextlib.suppress(RuntimeError):  # no running loop: nothing waits
                self._dispatch()

    def __repr__(self) -> str:
        return (
            f"<RateGate qps={self.config.qps} rate={self._rate:.2f}/s calls={self.calls} "
            f"in_flight={self.in_flight} waiting={len(self._queue)} "
            f"throttled={self.throttled}>"
        )
