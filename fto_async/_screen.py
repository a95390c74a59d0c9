"""``FtoClient.screen``: one question at a time, for programs that embed the client.

Concurrent callers asking the same question (the request fingerprint) share one flight:
the first starts it, the others wait for the same :class:`~fto_async.batch.Outcome`.
A flight is a one-item batch (:func:`fto_async.batch.screen_many`), so the batch's
code answers it: the client's report cache first (no call), then one submit and the
poll series paced by the client's learned durations, and the report stored in the
cache. The batch's own single flight works inside one batch; this module is the part
that spans callers: a map of fingerprint -> running flight.

A flight runs in its own task, shielded from its callers: a caller who leaves (its
deadline passed, its web request was cancelled) stops waiting, but a task already paid
is polled to its end while the client is open, and its report goes to the cache, so a
caller who retries gets it free. Closing the client cancels the flights still running.

``max_waiting`` bounds the questions answered at once: one more new question raises
:class:`~fto_async.errors.OverloadedError` at once, with no call (a caller joining a
flight already running is never refused: it costs nothing).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs

from ._kinds import request_kind
from .batch import Item, LocalImage, Outcome
from .cache import AnswerCache
from .errors import BatchAbortedError, DeadlineExceededError, OverloadedError
from .fingerprint import request_fingerprint
from .models import Request, TaskKind
from .polling import TaskDurations
from .transport import TransportStats

__all__ = ["ScreenHub", "ScreenStats"]

#: Seconds a refused caller is told to wait when no task duration is learned yet.
DEFAULT_RETRY_AFTER = 5.0

#: Runs a one-item batch: ``(items, cache) -> outcomes`` (the client's ``screen_many``).
Runner = Callable[[list[Item], AnswerCache | None], AsyncIterator[Outcome]]


@attrs.define
class ScreenStats:
    """Counters of :meth:`~fto_async.FtoClient.screen` (``client.screen_stats``).

    Attributes:
        waiting: callers waiting for an answer now.
        in_flight: distinct questions being answered now (what ``max_waiting`` bounds).
        flights: flights started (each at most one task).
        joined: callers who joined a flight already running (no second task).
        refused: calls refused with :class:`~fto_async.errors.OverloadedError`.
    """

    waiting: int = 0
    in_flight: int = 0
    flights: int = 0
    joined: int = 0
    refused: int = 0


@attrs.define
class _Flight:
    task: asyncio.Task[Outcome]
    started: float
    kind: TaskKind


class ScreenHub:
    """Private: the client's flights, keyed by request fingerprint."""

    def __init__(
        self,
        run: Runner,
        durations: TaskDurations,
        max_waiting: int | None,
        traffic: TransportStats,
    ) -> None:
        self._run = run
        self._traffic = traffic
        self._durations = durations
        self._max_waiting = max_waiting
        self._flights: dict[str, _Flight] = {}
        self.stats = ScreenStats()

    async def screen(
        self,
        request: Request,
        *,
        key: Any,
        timeout: float | None,
        cache: AnswerCache | None,
        fingerprint: str | None = None,
        local: LocalImage | None = None,
    ) -> Outcome:
        """Answer ``request`` (``fingerprint`` and ``local``: a local image's question,
        from :func:`fto_async._screen_image.image_question`)."""
        if fingerprint is None:
            fingerprint = request_fingerprint(request)  # InvalidRequestError: no call made
        flight = self._flights.get(fingerprint)
        if flight is None:
            if self._max_waiting is not None and len(self._flights) >= self._max_waiting:
                self.stats.refused += 1
                raise OverloadedError(len(self._flights), self._retry_after())
            flight = self._start(fingerprint, request, cache, local)
        else:
            self.stats.joined += 1
        self.stats.waiting += 1
        self._traffic.waiting = self.stats.waiting
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                outcome = await asyncio.shield(flight.task)
        except TimeoutError:
            if timeout is None or not deadline.expired():
                raise  # not our deadline: a TimeoutError from inside the flight
            raise DeadlineExceededError(timeout) from None
        finally:
            self.stats.waiting -= 1
            self._traffic.waiting = self.stats.waiting
        return attrs.evolve(outcome, key=key)

    def _start(
        self, fingerprint: str, request: Request, cache: AnswerCache | None,
        local: LocalImage | None,
    ) -> _Flight:
        task = asyncio.create_task(self._one(fingerprint, request, cache, local))
        flight = _Flight(task, time.monotonic(), request_kind(request))
        self._flights[fingerprint] = flight
        self.stats.flights += 1
        self.stats.in_flight = len(self._flights)

        def done(_: asyncio.Task[Outcome]) -> None:
            if self._flights.get(fingerprint) is flight:
                del self._flights[fingerprint]
            self.stats.in_flight = len(self._flights)
            if not task.cancelled():
                task.exception()  # retrieved: nobody may be waiting any more

        task.add_done_callback(done)
        return flight

    async def _one(
        self, fingerprint: str, request: Request, cache: AnswerCache | None,
        local: LocalImage | None,
    ) -> Outcome:
        item = Item(fingerprint, request, fingerprint=fingerprint, local=local)
        outcomes = self._run([item], cache)
        try:
            async for outcome in outcomes:
                return outcome
        except BatchAbortedError as exc:  # a fatal stop before the item was attempted
            return Outcome(fingerprint, request, None, None, exc.cause)
        finally:
            close = getattr(outcomes, "aclose", None)
            if close is not None:
                await close()
        raise AssertionError("a one-item batch ended without its outcome")  # pragma: no cover

    def _retry_after(self) -> float:
        """Seconds until the oldest flight is expected to end (learned median duration)."""
        oldest = min(self._flights.values(), key=lambda f: f.started)
        typical = self._durations.quantile(oldest.kind, 0.5)
        if typical is None:
            return DEFAULT_RETRY_AFTER
        return max(1.0, typical - (time.monotonic() - oldest.started))

    async def aclose(self) -> None:
        """Cancel the flights still running (the client is closing)."""
        tasks = [f.task for f in self._flights.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
