"""Scheduling of polls: one scheduler for every pending task. It knows no client: it
polls through a ``fetch`` callable and hands each result to a ``deliver`` callable.

:class:`PollScheduler` keeps every pending task in one due-time heap (no sleeping
coroutine per task) and sends each poll through the client, hence through the
account's rate gate. It learns how long tasks take and polls each task first when a
task is likely done, so most tasks cost one poll:

* The first poll of a task comes ``estimate`` seconds after its submit, where
  ``estimate`` tracks the ``quantile`` (0.9 by default) of task durations. The tracker
  learns from first polls alone (stochastic approximation of a quantile under
  censoring): a task still running at or past the estimate pushes it up by
  ``exp(0.2 * q)``, a task found done at or before it pulls it down by
  ``exp(-0.2 * (1 - q))``; at equilibrium a fraction ``q`` of first polls find the
  task done.
* A task still running is polled again after its age grew by ``backoff`` (1.5x), never
  sooner than ``min_interval`` (the platform asks for 2-5 s) nor later than
  ``max_interval`` after the previous poll.
* A task past its deadline (``PollConfig.timeout`` after its submit) ends with
  :class:`~fto_async.errors.TaskTimeoutError`.

The single-task view, :class:`~fto_async.TaskPoller`, lives in ``_poller.py``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from .config import PollConfig
from .errors import FtoError, TaskFailedError, TaskTimeoutError
from .models import ImageSearchReport, TaskKind, TaskStatus

__all__ = ["Deliver", "Fetch", "PendingTask", "PollScheduler"]

_STEP = 0.2
_MAX_ESTIMATE = 86400.0  # a day: the estimate never grows past it

#: Sends one poll for a task and returns its report.
Fetch = Callable[["PendingTask"], Awaitable[ImageSearchReport]]
#: Receives each task once, with its final report or its error.
Deliver = Callable[["PendingTask", ImageSearchReport | None, FtoError | None], Awaitable[None]]


@attrs.define(eq=False)
class PendingTask:
    """A submitted task waiting for its report (private bookkeeping of the batch layer).

    Attributes:
        key: the caller's key for the item.
        task_id: the platform's task id.
        kind: ``"image_search"`` or ``"workflow"`` (which report endpoint to poll).
        request: the request that created the task (or ``None`` when unknown).
        submitted_at: loop time of the submit's answer (``None``: unknown, e.g. a task id
            handed over from another process; such a task is polled at once).
        submitted_wall: epoch seconds of the same moment (``None``: unknown).
        polls: polls sent so far.
        sent: whether the current poll has passed the rate gate, so may have reached the
            platform (``fetch`` sets it, through the transport's ``before_send`` hook;
            the scheduler clears it before each poll). :meth:`PollScheduler.abort` lets
            such a poll finish.
    """

    key: Any
    task_id: str
    kind: TaskKind
    request: Any = None
    submitted_at: float | None = None
    submitted_wall: float | None = attrs.field(factory=time.time)
    polls: int = 0
    sent: bool = attrs.field(default=False, repr=False)


class _QuantileTracker:
    """Private: tracks the ``q`` quantile of task durations from censored first polls."""

    __slots__ = ("floor", "q", "value")

    def __init__(self, initial: float, q: float, floor: float) -> None:
        self.value = max(initial, floor)
        self.q = q
        self.floor = floor

    def observe(self, age: float, done: bool) -> None:
        """Learn from a first poll made when the task was ``age`` seconds old.

        Only informative polls count (censoring): a task found done at or before the
        estimate says the quantile is lower; one still running at or after it says it
        is higher. A poll made late (the task re-checked against a grown estimate)
        finds tasks done more often than ``q``: the bias is upward, towards fewer
        polls, at the cost of some latency.
        """
        if done and age <= self.value * 1.05:
            self.value = max(self.floor, self.value * math.exp(-_STEP * (1 - self.q)))
        elif not done and age >= self.value * 0.95:
            self.value = min(_MAX_ESTIMATE, self.value * math.exp(_STEP * self.q))


class PollScheduler:
    """Polls many pending tasks through one due-time heap.

    Example::

        scheduler = PollScheduler(fetch, deliver, PollConfig())
        runner = asyncio.create_task(scheduler.run())
        scheduler.add(PendingTask(key, task_id, "image_search", submitted_at=loop.time()))
        ...
        scheduler.close()      # no more tasks will be added
        await runner           # returns once every task was delivered

    Args:
        fetch: sends one poll for a task and returns its report.
        deliver: receives each task once, with its final report or its error.
        config: see :class:`~fto_async.config.PollConfig`.
        max_concurrent: polls in flight at once (the rest wait in the heap).
        on_release: called each time a task leaves the scheduler (``pending`` dropped).
    """

    def __init__(
        self,
        fetch: Fetch,
        deliver: Deliver,
        config: PollConfig | None = None,
        *,
        max_concurrent: int = 64,
        on_release: Callable[[], None] | None = None,
    ) -> None:
        self.config = config or PollConfig()
        self._fetch = fetch
        self._deliver = deliver
        self._heap: list[tuple[float, int, PendingTask]] = []
        self._order = itertools.count()
        self._slots = asyncio.Semaphore(max_concurrent)
        self._wakeup = asyncio.Event()
        self._active = 0
        self._fetching: dict[PendingTask, asyncio.Task[Any]] = {}  # polls awaiting answers
        # Polls on the wire when abort() ran, and its error: they end on their answer.
        self._draining: set[PendingTask] = set()
        self._abort_error: FtoError | None = None
        self._closed = False
        self._on_release = on_release or (lambda: None)
        self.estimate = _QuantileTracker(
            self.config.initial_estimate, self.config.quantile, self.config.min_interval
        )
        #: Polls sent, and tasks delivered, so far.
        self.polls = 0
        self.delivered = 0

    @property
    def pending(self) -> int:
        """Tasks added and not yet delivered."""
        return len(self._heap) + self._active

    def add(self, task: PendingTask) -> None:
        """Schedule the first poll of a newly submitted (or resumed) task."""
        if self._closed:
            raise RuntimeError("the scheduler is closed")
        now = asyncio.get_running_loop().time()
        if task.submitted_at is None:
            self._push(now, task)
            return
        self._push(max(task.submitted_at + self._first_delay(), now), task)

    def close(self) -> None:
        """No more tasks will be added; :meth:`run` returns when the heap is drained."""
        self._closed = True
        self._wakeup.set()

    async def abort(self, error: FtoError) -> None:
        """Deliver every pending task with ``error``: those in the heap without polling
        them, and those whose poll still waits in the rate gate after cancelling that poll
        (nothing was sent for it). A poll already sent (``PendingTask.sent``) is paid for:
        it is left to finish, and its task gets its real answer (the report, a failure,
        the poll's own error) or, when the task is still running, ``error``.
        """
        current = asyncio.current_task()
        self._abort_error = error
        for task, poller in list(self._fetching.items()):
            if poller is current or task not in self._fetching:
                continue
            if task.sent:
                self._draining.add(task)
                continue
            del self._fetching[task]
            poller.cancel()
            await self._finish(task, None, error)
        while self._heap:
            _, _, task = heapq.heappop(self._heap)
            await self._finish(task, None, error)
            self._on_release()
        self._wakeup.set()

    def _push(self, due: float, task: PendingTask) -> None:
        heapq.heappush(self._heap, (due, next(self._order), task))
        self._wakeup.set()

    async def run(self) -> None:
        """Drive the polls until :meth:`close` was called and every task is delivered."""
        loop = asyncio.get_running_loop()
        async with asyncio.TaskGroup() as polls:
            while self._heap or self._active or not self._closed:
                if self._heap and self._heap[0][0] <= loop.time():
                    await self._slots.acquire()
                    if not self._heap:  # aborted meanwhile
                        self._slots.release()
                        continue
                    _, _, task = heapq.heappop(self._heap)
                    if self._first_poll_later(task, loop.time()):
                        continue
                    self._active += 1
                    polls.create_task(self._poll(task))
                    continue
                self._wakeup.clear()
                timer = loop.call_at(self._heap[0][0], self._wakeup.set) if self._heap else None
                try:
                    await self._wakeup.wait()
                finally:
                    if timer is not None:
                        timer.cancel()

    async def _poll(self, task: PendingTask) -> None:
        loop = asyncio.get_running_loop()
        rescheduled = False
        me = asyncio.current_task()
        assert me is not None
        try:
            self._fetching[task] = me  # abort() may cancel the poll until it is sent
            task.sent = False
            failure: FtoError | None = None
            try:
                report = await self._fetch(task)
            except FtoError as exc:
                failure = exc
            finally:
                self._fetching.pop(task, None)
                task.polls += 1
                self.polls += 1
            if failure is not None:
                await self._finish(task, None, failure)
                return
            now = loop.time()
            if task.submitted_at is None:  # age unknown: count from this first poll
                task.submitted_at = now
            age = now - task.submitted_at
            first = task.polls == 1 and age > 0
            if report.task_status == TaskStatus.SUCCESS:
                if first:
                    self.estimate.observe(age, done=True)
                await self._finish(task, report, None)
            elif report.task_status == TaskStatus.FAILED:
                await self._finish(task, report, TaskFailedError(task.task_id))
            else:
                if first:
                    self.estimate.observe(age, done=False)
                timeout = self.config.timeout
                if task in self._draining and self._abort_error is not None:
                    await self._finish(task, None, self._abort_error)
                elif timeout is not None and age >= timeout:
                    await self._finish(task, None, TaskTimeoutError(task.task_id, age))
                else:
                    self._reschedule(task, now, age)
                    rescheduled = True
        finally:
            self._draining.discard(task)
            self._active -= 1
            self._slots.release()
            self._wakeup.set()
            if not rescheduled:
                self._on_release()

    def _first_delay(self) -> float:
        """Seconds from submit to a task's first poll: the tracked quantile.

        Polls cost quota as well as QPS, so even at the end of a batch, when the gate
        has room to spare, the scheduler does not poll sooner (measured: polling at 0.6x
        the estimate while draining raised a 60 s-task batch to 5.2 calls per task).
        """
        return max(self.config.min_interval, self.estimate.value)

    def _first_poll_later(self, task: PendingTask, now: float) -> bool:
        """Push a never-polled task back if the estimate grew since it was queued.

        The first poll is scheduled when the task is added; tasks added while the
        estimate was low would all miss. Re-checking at pop time polls each task at the
        latest estimate (stable durations then cost one poll per task).
        """
        if task.polls or task.submitted_at is None:
            return False
        due = task.submitted_at + self._first_delay()
        if due <= now + 1e-3:
            return False
        self._slots.release()
        self._push(due, task)
        return True

    def _reschedule(self, task: PendingTask, now: float, age: float) -> None:
        cfg = self.config
        next_age = max(age * cfg.backoff, self._first_delay())
        gap = min(cfg.max_interval, max(cfg.min_interval, next_age - age))
        due = now + gap
        if cfg.timeout is not None and task.submitted_at is not None:
            due = min(due, task.submitted_at + cfg.timeout)  # one last poll at the deadline
        self._push(max(due, now + cfg.min_interval), task)

    async def _finish(
        self, task: PendingTask, report: ImageSearchReport | None, error: FtoError | None
    ) -> None:
        self.delivered += 1
        await self._deliver(task, report, error)

    def __repr__(self) -> str:
        return (
            f"<PollScheduler pending={self.pending} polls={self.polls} "
            f"estimate={self.estimate.value:.1f}s>"
        )
