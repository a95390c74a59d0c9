"""The account's rate gate: paced, never over the limit, slower when throttled.

Every business call of one client passes :meth:`RateGate.slot`, which

1. takes an in-flight place (a semaphore, so thousands of callers never park on the
   limiter; sized by Little's law, see :class:`~fto_async.config.RateConfig`);
2. checks the call budgets (``max_calls``, ``daily_limit``) and refuses with
   :class:`~fto_async.errors.BudgetExhaustedError` before anything is sent;
3. waits for the pacer: an :class:`aiolimiter.AsyncLimiter` of capacity 1 that lets
   one call through every ``1 / rate`` seconds.

Why capacity 1: ``AsyncLimiter(Q, 1)`` lets Q calls pass at once after an idle spell
and Q more over the next second, so one sliding window can hold almost 2Q. With
capacity 1 two admissions are at least ``1 / rate`` apart, so a closed 1-second window
holds at most ``floor(rate) + 1`` of them; pacing at ``rate = headroom * qps`` with
``headroom < 1`` makes that at most ``qps`` for every integer ``qps`` (and leaves a
3% margin for network jitter at the default headroom).

Adaptive mode (after botocore's): a 67200002 answer multiplies the shared rate by 0.7,
once per throttling episode (answers to calls sent before the last decrease are
ignored); successes climb back to the rate where throttling happened over
``recovery`` seconds, then probe above it slowly, up to the configured ceiling.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from aiolimiter import AsyncLimiter

from .config import RateConfig
from .errors import BudgetExhaustedError

__all__ = ["Permit", "RateGate", "RateGateProtocol"]

_DECREASE = 0.7
_PROBE = 0.05  # of the ceiling, per second, above the last throttled rate


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


class _Pacer(AsyncLimiter):
    """Private: an AsyncLimiter of capacity 1 whose rate can change while in use."""

    __slots__ = ()

    def __init__(self, rate: float) -> None:
        super().__init__(1, 1 / rate)

    def _leak(self) -> None:
        super()._leak()
        if self._level < 1e-9:  # float residue would make the waker spin at one instant
            self._level = 0.0

    def set_rate(self, rate: float) -> None:
        """Change the pace; capacity already drained stays drained."""
        self._leak()
        self.time_period = 1 / rate
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

    def slot(self, path: str) -> AbstractAsyncContextManager[Permit]:
        """Wait for the right to send one call; hold it while the call is in flight."""

    def on_throttled(self, permit: Permit) -> None:
        """The call was answered 67200002."""

    def on_success(self, permit: Permit) -> None:
        """The call was answered without throttling."""

    @property
    def rate(self) -> float:
        """The current pace in calls per second."""


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
        self._throttled_at_rate = self._ceiling
        self._last_decrease = float("-inf")
        self._last_update = float("-inf")
        self._pacer: _Pacer | None = None
        self._endpoint_pacers: dict[str, _Pacer] = {}
        self._in_flight: asyncio.Semaphore | None = None
        #: Calls admitted so far (every attempt counts: the platform counts them too).
        self.calls = 0
        #: 67200002 answers reported through :meth:`on_throttled`.
        self.throttled = 0
        self._day = self._utc_day()
        self._calls_today = 0

    # -- the slot -------------------------------------------------------------------

    @asynccontextmanager
    async def slot(self, path: str) -> AsyncIterator[Permit]:
        """Wait for the right to send one call to ``path``; hold it while in flight.

        Raises:
            BudgetExhaustedError: the call would exceed ``max_calls`` or ``daily_limit``.
        """
        if self._in_flight is None:
            self._in_flight = asyncio.Semaphore(self.config.in_flight_limit)
            self._pacer = _Pacer(self._rate)
        assert self._pacer is not None
        async with self._in_flight:
            self._check_budgets()
            extra = self._endpoint_pacer(path)
            if extra is not None:
                await extra.acquire()
            await self._pacer.acquire()
            self._check_budgets()  # another caller may have spent the budget meanwhile
            self.calls += 1
            self._calls_today += 1
            yield Permit(path, self._clock())

    def _endpoint_pacer(self, path: str) -> _Pacer | None:
        limit = self.config.endpoint_qps.get(path)
        if limit is None:
            return None
        pacer = self._endpoint_pacers.get(path)
        if pacer is None:
            pacer = self._endpoint_pacers[path] = _Pacer(limit * self.config.headroom)
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
        if self._in_flight is None:
            return 0
        return self.config.in_flight_limit - self._in_flight._value

    def on_throttled(self, permit: Permit) -> None:
        """The platform answered 67200002 to ``permit``'s call: slow the whole account."""
        self.throttled += 1
        if not self.config.adaptive or permit.sent_at <= self._last_decrease:
            return  # this answer belongs to an episode we already reacted to
        now = self._clock()
        self._throttled_at_rate = self._rate
        self._set_rate(max(self._floor, self._rate * _DECREASE))
        self._last_decrease = now
        self._last_update = now

    def on_success(self, permit: Permit) -> None:
        """A call went through: climb back toward the ceiling."""
        if not self.config.adaptive or self._rate >= self._ceiling:
            return
        now = self._clock()
        elapsed, self._last_update = now - self._last_update, now
        target = self._throttled_at_rate
        if self._rate < target:
            step = (target - self._floor) * elapsed / self.config.recovery
            new = min(target, self._rate + step)
        else:
            new = self._rate + self._ceiling * _PROBE * elapsed
        self._set_rate(min(self._ceiling, new))

    def _set_rate(self, rate: float) -> None:
        self._rate = rate
        if self._pacer is not None:
            self._pacer.set_rate(rate)

    def __repr__(self) -> str:
        return (
            f"<RateGate qps={self.config.qps} rate={self._rate:.2f}/s calls={self.calls} "
            f"in_flight={self.in_flight} throttled={self.throttled}>"
        )
