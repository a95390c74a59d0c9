"""The poll scheduler: one due-time heap for every pending task of a batch (see
:mod:`fto_async.polling` for the rules: scouting, the warm schedule, the budget, the tail)."""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
import math
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from ..config import PollConfig
from ..errors import FtoError, TaskFailedError, TaskTimeoutError
from ..models import ImageSearchReport, TaskKind, TaskStatus
from ._durations import (
    _SA_AFTER,
    _SCOUT_GROWTH,
    TaskDurations,
    _scout_gap,
    first_age,
    gap_bounds,
    next_age,
)

__all__ = ["Deliver", "Fetch", "PendingTask", "PollScheduler", "poll_priority"]

# Whether the poll being sent goes before queued submits: each poll runs in a task of
# its own (a copy of the context), where the scheduler sets it from PollConfig.order.
_PRIORITY: contextvars.ContextVar[bool] = contextvars.ContextVar("fto_poll_priority", default=True)


def poll_priority() -> bool:
    """Private: whether the poll being sent (from this task) takes the gate's priority
    lane (``PollConfig.order == "results"``, and outside a scheduler)."""
    return _PRIORITY.get()

_EARLY = 0.8  # a first poll is queued at 0.8x the quantile age, then re-checked
_DITHER = 0.06  # first polls spread over up to +-6% of the quantile age
_WARM_LEVEL = 0.7  # scouting ends once this quantile is known (3 of 4 scouts ended)
_SCOUT_TOLERANCE = 0.05  # scouting ends when running scouts are within 5% of the age
_SCOUT_GROWTH_MAX = 1.0  # a scout's gap: at most its age (doubling)
_SCOUT_POLLS = 4.0  # a scout's polls, times its gap's fraction of its age (about)
_SCOUT_SHARE = 0.1  # the calls per task of the cohort that the scouts take (about)
_SA_LATE = 1.05  # a first poll later than 5% past its aim says nothing about the aim
_SPREAD = 0.05  # first polls always spread over at least +-5% of their age
_STEER_GAIN = 0.001  # the budget controller: quantile shift per call of error per task
_UNDER = 0.01  # the controller aims this far under the budget (cold tasks spend more)
_STEER_MAX = 0.12  # the controller shifts the quantile by at most this much

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
        last_age: the task's age at its last poll that found it running (0: none).
        scout: polled at the scouting cadence while its kind's durations are unknown.
        age_known: False when the submit time was unknown (nothing is learnt from it).
        fallback_due: the normal due time of an early tail poll (used if the room for
            tail polls is gone when it comes due).
        phase: a scout's offset (a fraction of a gap), applied once (see _make_scout).
        aim: the age its first poll was aimed at, dithered and not (``None``: not
            aimed, e.g. a scout);
            the answer of a first poll made on time tunes the first-poll age.
        span: the task's OpenTelemetry span (the batch's; ``None``: none).
    """

    key: Any
    task_id: str
    kind: TaskKind
    request: Any = None
    submitted_at: float | None = None
    submitted_wall: float | None = attrs.field(factory=time.time)
    polls: int = 0
    sent: bool = attrs.field(default=False, repr=False)
    last_age: float = 0.0
    scout: bool = False
    age_known: bool = True
    fallback_due: float | None = None
    aim: tuple[float, float] | None = attrs.field(default=None, repr=False)
    aimed: bool = attrs.field(default=False, repr=False)
    span: Any = attrs.field(default=None, repr=False, eq=False)  # the task's trace span
    phase: float = attrs.field(default=0.0, repr=False)


class PollScheduler:
    """Polls many pending tasks through one due-time heap (see the module docstring).

    Example::

        scheduler = PollScheduler(fetch, deliver, PollConfig(), durations=durations)
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
        durations: the learnt durations to use and feed (default: new ones, seeded
            from ``config.initial_estimate`` if given). Pass the client's.
    """

    def __init__(
        self,
        fetch: Fetch,
        deliver: Deliver,
        config: PollConfig | None = None,
        *,
        max_concurrent: int = 64,
        on_release: Callable[[], None] | None = None,
        durations: TaskDurations | None = None,
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
        self.durations = durations if durations is not None else TaskDurations()
        self.durations.seed_unknown(self.config.seed_estimate)
        self._scouts: dict[str, set[PendingTask]] = {}  # live scouts per cold kind
        self._parked: dict[str, deque[PendingTask]] = {}  # unpolled tasks of cold kinds
        self._warm: set[str] = set()
        #: Polls sent, tasks added and tasks delivered, so far.
        self.polls = 0
        self.added = 0
        self.delivered = 0
        #: Polls sent early in the tail (within ``calls_per_task``).
        self.tail_polls = 0

    @property
    def pending(self) -> int:
        """Tasks added and not yet delivered."""
        parked = sum(len(p) for p in self._parked.values())
        return len(self._heap) + self._active + parked

    def add(self, task: PendingTask) -> None:
        """Schedule the first poll of a newly submitted (or resumed) task."""
        if self._closed:
            raise RuntimeError("the scheduler is closed")
        self.added += 1
        now = asyncio.get_running_loop().time()
        if task.submitted_at is None:
            task.age_known = False
            self._push(now, task)
            return
        if self._is_warm(task.kind):
            self._push_first(task, now)
            return
        scouts = self._scouts.setdefault(task.kind, set())
        if self._wants_scout(task.kind, scouts):
            self._make_scout(task, scouts, now)
        else:
            self._parked.setdefault(task.kind, deque()).append(task)

    def _quantile(self, kind: str) -> float:
        """The quantile polls aim at: ``1 / (calls_per_task - 1)`` (the optimal shape's),
        shifted by the budget controller (see _steer). No calls are kept back for
        scouting: a cold cohort pays its scouts, and a reserve kept warm batches under
        the budget (0.05 of it: 2.15-2.17 calls for 2.2 over 300 tasks, which the
        controller, slow on purpose, had not made up)."""
        budget = self.config.calls_per_task - 1.0
        base = 1.0 / budget if budget > 1.0 else 0.97
        shift = self.durations.estimator(kind).shift
        return min(0.97, max(0.3, base + shift))

    def _steer(self, task: PendingTask) -> None:
        """The budget controller: a task delivered with more calls than
        ``calls_per_task`` raises the quantile (fewer second polls), one with fewer
        lowers it (earlier first polls); an integral controller, bounded."""
        if not task.aimed:  # a scout, or polled before anything was known
            return
        est = self.durations.estimator(task.kind)
        target = self.config.calls_per_task - _UNDER
        error = min(2.0, max(-2.0, 1.0 + task.polls - target))
        est.shift = min(_STEER_MAX, max(-_STEER_MAX, est.shift + _STEER_GAIN * error))

    def _push_first(self, task: PendingTask, now: float) -> None:
        """Queue a task's first poll a little before the quantile age: it is re-checked
        against the estimate of that moment when it comes due (see _first_poll_later),
        which may have moved either way since."""
        age = first_age(self.durations, task.kind, self.config, self._quantile(task.kind))
        assert age is not None
        assert task.submitted_at is not None
        early = max(self.config.min_interval, _EARLY * age)
        self._push(max(task.submitted_at + early, now), task)

    def _wants_scout(self, kind: str, scouts: set[PendingTask]) -> bool:
        """Whether a cold kind needs one more scout: fewer than ``scouts`` of its tasks
        have finished or are scouting (a scout that failed is replaced), or none is
        scouting at all: a cold kind never parks a task without a scout that can warm it
        (tasks finished by an earlier, cancelled batch may not have been enough)."""
        finished = self.durations.estimator(kind).finished
        return not scouts or len(scouts) + finished < self.config.scouts

    def _make_scout(self, task: PendingTask, scouts: set[PendingTask], now: float) -> None:
        """Scouts are polled out of step: all first at ``min_interval`` (the first
        outcome of a short task is not delayed), then the k-th scout's first gap longer
        than ``min_interval`` shrinks by ``k / (2 scouts)``, so their polls interleave (a
        scout that ends is seen sooner, and their answers sample more ages); a gap never
        grows, so a scout's end is still seen within one gap."""
        task.phase = len(scouts) % self.config.scouts / (2 * self.config.scouts)
        task.scout = True
        scouts.add(task)
        assert task.submitted_at is not None
        self._push(max(task.submitted_at + self.config.min_interval, now), task)

    def _is_warm(self, kind: str) -> bool:
        """Whether ``kind``'s first-poll quantile is known (sticky once true)."""
        if kind in self._warm:
            return True
        est = self.durations.estimator(kind)
        if not est.known and est.seed is None:
            return False
        # Scouts still running count as censored at the age they were last seen
        # running; one seen running younger than the candidate quantile may yet end
        # past it (only the tasks still at risk there tell), so wait for it.
        running = [s.last_age for s in self._scouts.get(kind, ()) if s.polls]
        found = est.quantile(min(self.config.quantile, _WARM_LEVEL), running, inside=True)
        if found is None or any(age < found * (1.0 - _SCOUT_TOLERANCE) for age in running):
            return False
        self._warm.add(kind)
        return True

    def _scout_growth(self, kind: str) -> float:
        """A scout's gap, as a fraction of its age: the scouts' polls are paid by the
        cohort they warm (the tasks of the kind waiting), so they take about
        ``_SCOUT_SHARE`` calls per task of it: 10% of the age for a cohort of 1,600
        tasks or more (fine scouting is cheap there), up to doubling (a cohort of 160 or
        fewer). Four scouts out of step still sample the ages 4 times as finely."""
        cohort = len(self._parked.get(kind, ())) + len(self._scouts.get(kind, ()))
        want = _SCOUT_POLLS * self.config.scouts / (_SCOUT_SHARE * max(1, cohort))
        return min(_SCOUT_GROWTH_MAX, max(_SCOUT_GROWTH, want))

    def _after_scouting(self, task: PendingTask, now: float) -> None:
        """A task of a cold kind finished or was polled: release or promote waiters."""
        kind = task.kind
        scouts = self._scouts.get(kind)
        if task.scout and scouts is not None:
            task.scout = False
            scouts.discard(task)
        parked = self._parked.get(kind)
        if self._is_warm(kind):
            for s in list(scouts or ()):
                s.scout = False
            self._scouts.pop(kind, None)
            self._parked.pop(kind, None)
            while parked:
                self._push_first(parked.popleft(), now)
            return
        # Replace a scout only while fewer than ``scouts`` tasks have finished (it
        # failed, or the kind needs more data); the others run to their end.
        while parked and scouts is not None and self._wants_scout(kind, scouts):
            self._make_scout(parked.popleft(), scouts, now)

    def close(self) -> None:
        """No more tasks will be added; :meth:`run` returns when the heap is drained."""
        self._closed = True
        self._wakeup.set()

    async def abort(self, error: FtoError) -> None:
        """Deliver every pending task with ``error``: those in the heap (or waiting for
        their kind's scouts) without polling them, and those whose poll still waits in the
        rate gate after cancelling that poll (nothing was sent for it). A poll already
        sent (``PendingTask.sent``) is paid for: it is left to finish, and its task gets
        its real answer (the report, a failure, the poll's own error) or, when the task is
        still running, ``error``.
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
        waiting = [t for _, _, t in self._heap]
        self._heap.clear()
        for parked in self._parked.values():
            waiting.extend(parked)
            parked.clear()
        for task in waiting:
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
            while self._heap or self._active or self.pending or not self._closed:
                if self._heap and self._heap[0][0] <= loop.time():
                    await self._slots.acquire()
                    if not self._heap:  # aborted meanwhile
                        self._slots.release()
                        continue
                    _, _, task = heapq.heappop(self._heap)
                    if self._first_poll_later(task, loop.time()) or self._tail_refused(task):
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
            _PRIORITY.set(self.config.order != "makespan")  # this poll's task only
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
            now = loop.time()
            if failure is not None:
                self.durations.estimator(task.kind).forget(task.task_id)
                await self._finish(task, None, failure)
                return
            if task.submitted_at is None:  # age unknown: count from this first poll
                task.submitted_at = now
            age = now - task.submitted_at
            status = report.task_status
            est = self.durations.estimator(task.kind)
            aim, task.aim = task.aim, None
            if task.polls == 1 and aim is not None and est.finished >= _SA_AFTER:
                task.aimed = True  # a first poll on a settled estimate: steers the budget
            on_time = aim is not None and task.polls == 1 and age <= aim[0] * _SA_LATE
            if on_time and aim is not None and status in (TaskStatus.SUCCESS, TaskStatus.RUNNING):
                est.first_answer(status == TaskStatus.SUCCESS, self._quantile(task.kind), aim[1])
            if status == TaskStatus.SUCCESS and task.age_known:
                est.observe(task.last_age, age, task.task_id)
            elif status == TaskStatus.FAILED:
                est.forget(task.task_id)
            if status == TaskStatus.SUCCESS:
                await self._finish(task, report, None)
            elif status == TaskStatus.FAILED:
                await self._finish(task, report, TaskFailedError(task.task_id))
            else:
                timeout = self.config.timeout
                if task in self._draining and self._abort_error is not None:
                    await self._finish(task, None, self._abort_error)
                elif timeout is not None and age >= timeout:
                    if task.age_known:
                        est.observe(age, math.inf, task.task_id)
                    await self._finish(task, None, TaskTimeoutError(task.task_id, age))
                else:
                    if task.age_known and not task.scout:
                        # Learn at once that it runs past this age: waiting for its end
                        # would hide every miss of a cohort polled on a low estimate.
                        self.durations.estimator(task.kind).running(task.task_id, age)
                    task.last_age = age
                    self._reschedule(task, now, age)
                    rescheduled = True
        finally:
            self._draining.discard(task)
            self._active -= 1
            self._slots.release()
            self._wakeup.set()
            if not rescheduled:
                self._on_release()

    def _first_poll_later(self, task: PendingTask, now: float) -> bool:
        """Push a never-polled task back to the latest estimate's due time.

        First polls are queued early (0.8x the quantile age when added); re-checking at
        pop time polls each task at the estimate of that moment, whether it grew or
        shrank since (a shrink of more than 20% is followed only to that point).
        """
        if task.polls or task.submitted_at is None or task.scout or self._tail_room(1):
            return False  # in the tail, with polls to spare: poll at the early time
        age = first_age(self.durations, task.kind, self.config, self._quantile(task.kind))
        if age is None:
            return False
        aim = max(self.config.min_interval, age * self._dither(task))
        due = task.submitted_at + aim
        if due <= now + 1e-3:
            # Polled now: at the age aimed when it was queued for now (the estimate may
            # have moved since; the answer still tells about that aim), or at this one.
            if task.aim is None or task.submitted_at + task.aim[0] < now - 1e-3:
                task.aim = (aim, age)
            return False
        task.aim = (aim, age)
        self._slots.release()
        self._push(due, task)
        return True

    def _dither(self, task: PendingTask) -> float:
        """A factor spreading first polls over up to +-6% of the quantile age.

        Polls all made at one age tell nothing about the ages around it
        (current-status data): the estimate would ratchet up from one poll age to the
        next. The spread is at most the gap to the ``quantile - 0.1`` quantile, so
        durations that hardly vary (or a bare seed) are not dithered. Fixed per task
        (from its id: no random state).
        """
        est = self.durations.estimator(task.kind)
        if not est.known:  # a bare seed: not dithered
            return 1.0
        q = self._quantile(task.kind)
        at = est.quantile(q)
        below = est.quantile(max(0.01, q - 0.1))
        if at is None or below is None or at <= 0:
            spread = _SPREAD
        else:
            spread = max(_SPREAD, min(_DITHER, 1.0 - below / at))
        u = (zlib.crc32(task.task_id.encode()) & 0xFFFF) / 0xFFFF
        return 1.0 + spread * (2.0 * u - 1.0)

    def _tail_refused(self, task: PendingTask) -> bool:
        """Push an early tail poll back to its normal time if the room is gone."""
        fallback, task.fallback_due = task.fallback_due, None
        if fallback is None:
            return False
        if self._tail_room(1):
            self.tail_polls += 1
            return False
        self._slots.release()
        self._push(fallback, task)
        return True

    def _tail_room(self, outside: int = 0) -> bool:
        """In the tail (no more tasks will come), whether the polls left under
        ``calls_per_task``, once every pending task got one more, still leave one more
        poll per pending task: the budget is kept for the last tasks, where waiting a
        whole quantile-plus-backoff cycle would set the batch's end. ``outside``: tasks
        being handled that ``pending`` does not count."""
        if not self._closed:
            return False
        pending = self.pending + outside
        spare = (self.config.calls_per_task - 1.0) * self.added - self.polls - pending
        return spare > 0 and spare >= pending

    def _reschedule(self, task: PendingTask, now: float, age: float) -> None:
        cfg = self.config
        kind = task.kind
        if task.scout and not self._is_warm(kind):
            gap = _scout_gap(cfg, age, self._scout_growth(kind))
            if task.phase and gap * (1.0 - task.phase) >= cfg.min_interval:  # once
                gap, task.phase = gap * (1.0 - task.phase), 0.0  # out of step with the rest
            target = age + gap
        else:
            if task.scout:
                self._after_scouting(task, now)
            target = next_age(self.durations, kind, cfg, age, self._quantile(kind))
            if self._tail_room():
                tight = age + _scout_gap(cfg, age)
                if tight < target:  # sooner, if there is still room when it comes due
                    task.fallback_due = max(now + (target - age), now + cfg.min_interval)
                    target = tight
        due = now + (target - age)
        if cfg.timeout is not None and task.submitted_at is not None:
            due = min(due, task.submitted_at + cfg.timeout)  # one last poll at the deadline
        low = cfg.min_interval if task.scout else gap_bounds(self.durations, kind, cfg)[0]
        self._push(max(due, now + low), task)

    async def _finish(
        self, task: PendingTask, report: ImageSearchReport | None, error: FtoError | None
    ) -> None:
        self.delivered += 1
        if report is not None:
            self._steer(task)
        if task.scout or task.kind in self._parked:
            self._after_scouting(task, asyncio.get_running_loop().time())
        await self._deliver(task, report, error)

    def __repr__(self) -> str:
        kinds = {k: self.durations.quantile(k, self.config.quantile) for k in self._warm}
        shown = ", ".join(f"{k}={v:.1f}s" for k, v in kinds.items() if v is not None)
        return (
            f"<PollScheduler pending={self.pending} polls={self.polls} "
            f"first polls at {{{shown or 'scouting'}}}>"
        )
