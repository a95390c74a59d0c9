"""Scheduling of polls: the learned task durations, and one scheduler for every pending
task. It knows no client: it polls through a ``fetch`` callable and hands each result to
a ``deliver`` callable.

**Learned durations.** :class:`TaskDurations` (one per client, shared by every batch
and ``wait_*``) holds one estimator per task kind. Each finished task gives an
interval-censored duration ``(lo, hi]``: it was running at its previous poll (age
``lo``, 0 if none) and done at this one (age ``hi``); a task given up on gives
``(lo, inf)``. A task found running counts at once as censored at that age until it
ends (the latest 512 such tasks), so a cohort polled on a low estimate corrects it
while it is being polled, not a whole duration later. The estimator keeps the last
512 such intervals and computes
Turnbull's nonparametric maximum-likelihood estimate of the duration distribution
(the self-consistency / EM iteration, 40 rounds, warm-started) on the cells between
the intervals' own endpoints, with prefix sums so a round costs
``O(cells + intervals)``. It is refreshed lazily (once 1/8 of the sample is new).
A quantile is the right end of the cell where the estimate reaches it. Why this
estimator: first polls land near one quantile, so most observations are ``(0, a]``
(current-status data) and
the rest are narrow; Turnbull's estimate uses both without assuming a shape, has no
tuning knob, and (unlike binning the ages) no bias towards earlier polls.

**Scouting (cold start).** While a kind has no duration quantile yet (nothing
learnt, restored or seeded), the first ``PollConfig.scouts`` tasks are polled from
``min_interval`` after their submit (the k-th from ``(1 + k/scouts) min_interval``, so
their polls interleave rather than run in lockstep), the gap growing by 10% of their
age (2, 4, 6 ... s, then gently slower), and every other task of that kind waits, unpolled. Scouting
ends once the tasks finished, still-running scouts counted as censored at the age they
were last seen running, put 70% of the mass below an age that every running scout has
passed, within 5% (3 scouts of 4 ended: the slowest is not waited for); a scout that ends without a
duration (it failed) is replaced by the oldest waiting task. Then every waiting task
is scheduled at its
submit time plus the learnt quantile. The first outcome thus comes within one
``min_interval`` (or 10% of its age) of the first scout's end, whatever the batch size,
and scouting costs a few dozen polls in all, not per task.

**Warm schedule.** A task is first polled when it reaches the quantile ``q`` of its
kind's durations (never sooner than ``min_interval``), where ``q = 1 / (calls_per_task
- 1 - 0.05)`` (0.87 for the default 2.2: the optimal shape for a known lognormal has
``q = 1 / (B - 1)``; 0.05 is kept for scouting and the tail). That age is multiplied by
a factor tracked from the first polls' own answers (stochastic approximation: each
on-time first poll that finds its task running raises it, each that finds it done
lowers it, so that a fraction ``q`` find their task done, once 32 tasks finished), and
first polls are spread over at least +-5% of it: with current-status answers, polls all
at one age can never lower the estimate (it ratcheted upwards). A budget controller
shifts ``q`` (by at most 0.12) by the calls each task delivered on a settled estimate
spent beyond or below ``calls_per_task``, so the calls follow the budget. The re-poll
rule uses the same ``q``: a task still running at age
``a`` is polled again when ``quantile`` of the tasks still running at ``a`` are
expected done (the conditional quantile), or, past everything seen so far, when its
age grew by 15% (by ``backoff`` while fewer than 64 tasks finished), and never
before its age grew by 15%; gaps stay within ``[min_interval, max_interval]``. A never-polled
task is re-checked against the latest estimate when it comes due.

**Tail.** Once no more tasks will be added (``close()``: every submit has returned),
the gate carries only polls. While the polls left under ``PollConfig.calls_per_task``
(one submit per task counted, and one more poll reserved for each pending task) are at
least one more poll per pending task (re-checked when each early poll comes due), a
task comes to its first poll at 0.8x the
quantile age and a task still running is polled again at the scouting cadence rather
than the conditional quantile, so the last tasks are seen soon after they end.

Polls are sent with ``priority=True`` (see :meth:`fto_async.ratelimit.RateGate.slot`):
a due poll never waits behind queued submits. A task past its deadline
(``PollConfig.timeout`` after its submit) ends with
:class:`~fto_async.errors.TaskTimeoutError`.

The single-task view, :class:`~fto_async.TaskPoller`, lives in ``_poller.py``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
import zlib
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import attrs

from .config import PollConfig
from .errors import FtoError, TaskFailedError, TaskTimeoutError
from .models import ImageSearchReport, TaskKind, TaskStatus

__all__ = ["Deliver", "Fetch", "PendingTask", "PollScheduler"]

__all__ = [
    "Deliver",
    "Fetch",
    "PendingTask",
    "PollScheduler",
    "TaskDurations",
    "first_age",
    "next_age",
]

_DURATIONS_VERSION = 1
_SAMPLE = 512  # intervals kept per kind (the most recent)
_SAVED = 256  # intervals persisted per kind
_EM_ROUNDS = 40
_SCOUT_GROWTH = 0.1  # a scout's gap: 10% of its age, at least min_interval
_EARLY = 0.8  # a first poll is queued at 0.8x the quantile age, then re-checked
_DITHER = 0.06  # first polls spread over up to +-6% of the quantile age
_BEYOND_GROWTH = 1.15  # an outlier (older than every finished task): +15% age per poll
_WARM_LEVEL = 0.7  # scouting ends once this quantile is known (3 of 4 scouts ended)
_CAUTION = 4  # finished tasks at which the first-poll quantile is halfway to quantile
_SCOUT_TOLERANCE = 0.05  # scouting ends when running scouts are within 5% of the age
_SA_GAIN = 0.03  # stochastic approximation of the first-poll age (log scale, per answer)
_SA_AFTER = 32  # finished tasks before the first-poll age is tuned from answers
_SA_LATE = 1.05  # a first poll later than 5% past its aim says nothing about the aim
_SPREAD = 0.05  # first polls always spread over at least +-5% of their age
_RESERVE = 0.05  # calls per task kept for scouting and the tail: q = 1 / (B - 1 - reserve)
_STEER_GAIN = 0.004  # the budget controller: quantile shift per call of error per task
_STEER_MAX = 0.12  # the controller shifts the quantile by at most this much
_TRUSTED = 64  # finished tasks after which a task older than all is an outlier

#: Sends one poll for a task and returns its report.
Fetch = Callable[["PendingTask"], Awaitable[ImageSearchReport]]
#: Receives each task once, with its final report or its error.
Deliver = Callable[["PendingTask", ImageSearchReport | None, FtoError | None], Awaitable[None]]


class _DurationEstimator:
    """Private: the duration distribution of one task kind, from censored intervals.

    See the module docstring (Turnbull's estimate over the intervals' own endpoints).
    """

    __slots__ = (
        "_cells", "_fresh", "_live", "_quantiles", "_sample", "finished", "log_scale", "seed",
        "shift",
    )

    def __init__(self, seed: float | None = None) -> None:
        self.seed = seed
        self._sample: deque[tuple[float, float]] = deque(maxlen=_SAMPLE)
        self._cells: list[tuple[float, float, float]] = []  # (lo, hi, mass), the estimate
        self._fresh = 0  # observations since the last refresh
        self._live: dict[str, float] = {}  # task id -> age it was last seen running at
        self._quantiles: dict[float, float | None] = {}
        #: Finished tasks observed (a censored one does not count).
        self.finished = 0
        #: log of the factor applied to the quantile for a first poll, tracked from the
        #: first polls' own answers (see :meth:`first_answer`).
        self.log_scale = 0.0
        #: The budget controller's shift of the quantile (see PollScheduler._steer).
        self.shift = 0.0

    def first_answer(self, done: bool, q: float) -> None:
        """A first poll made at its aimed age answered ``done`` (or running): move the
        first-poll age so that a fraction ``q`` of first polls find their task done
        (Robbins-Monro on current-status answers: unbiased whatever the estimate)."""
        if self.finished < _SA_AFTER:  # the estimate itself is still crude: it leads
            return
        self.log_scale += _SA_GAIN * (q - float(done))
        self.log_scale = min(1.0, max(-1.0, self.log_scale))

    # -- learning -------------------------------------------------------------------

    def running(self, task_id: str, age: float) -> None:
        """Task ``task_id`` was seen running at ``age``: counted as censored there until
        it ends (only the latest 512 such tasks are kept)."""
        live = self._live
        live.pop(task_id, None)
        live[task_id] = age
        if len(live) > _SAMPLE:
            del live[next(iter(live))]
        self._fresh += 1

    def forget(self, task_id: str) -> None:
        """Task ``task_id`` left without a duration (failed, or an error)."""
        if self._live.pop(task_id, None) is not None:
            self._fresh += 1

    def observe(self, lo: float, hi: float, task_id: str | None = None) -> None:
        """A task was running at age ``lo`` and done at age ``hi`` (``inf``: never seen
        done, e.g. timed out); ``task_id`` ends its censored place (see running)."""
        if task_id is not None:
            self._live.pop(task_id, None)
        lo = max(0.0, lo)
        self._sample.append((lo, max(hi, lo + 1e-9)))
        self.finished += math.isfinite(hi)
        self._fresh += 1

    @property
    def known(self) -> bool:
        """Whether any finished task was observed (else only a seed, or nothing)."""
        return self.finished > 0

    def longest(self) -> float:
        """The latest age by which a task of the sample was seen done (0: none)."""
        return max((hi for _, hi in self._sample if math.isfinite(hi)), default=0.0)

    def _current(self) -> list[tuple[float, float, float]]:
        """The estimate, refreshed once an eighth of the sample is new."""
        if not self._cells or self._fresh * 8 >= len(self._sample) + len(self._live):
            live = [(age, math.inf) for age in self._live.values()]
            self._cells = _turnbull([*self._sample, *live], self._cells)
            self._fresh = 0
            self._quantiles.clear()
        return self._cells

    # -- reading --------------------------------------------------------------------

    def quantile(self, q: float, running: Iterable[float] = ()) -> float | None:
        """Seconds by which a fraction ``q`` of tasks are done (``None``: not known yet).

        ``running`` are ages of tasks still running (counted as censored there; only
        for the cold-start decision, never cached). Without finished tasks: the seed.
        """
        censored = [(age, math.inf) for age in running]
        if not self.known:
            return None if censored or self.seed is None else self.seed
        if censored:
            live = [(age, math.inf) for age in self._live.values()]
            everything = [*self._sample, *live, *censored]
            return _quantile(_turnbull(everything, self._current()), q)
        cells = self._current()
        if q not in self._quantiles:
            self._quantiles[q] = _quantile(cells, q)
        return self._quantiles[q]

    def conditional(self, age: float, q: float) -> float | None:
        """The age by which a fraction ``q`` of the tasks still running at ``age`` are
        done (``None``: nothing known past ``age``)."""
        if not self.known:
            return None
        cells = self._current()
        below = _cdf(cells, age)
        beyond = sum(m for _, hi, m in cells if not math.isfinite(hi))
        if 1.0 - below - beyond <= 1e-6:
            return None
        target = min(below + (1.0 - below) * q, 1.0 - beyond - 1e-9)
        found = _quantile(cells, target)
        return None if found is None or found <= age else found

    # -- persistence ----------------------------------------------------------------

    def intervals(self) -> list[list[float | None]]:
        """The most recent intervals, JSON-ready (``None`` for an open end)."""
        recent = list(self._sample)[-_SAVED:]
        return [[round(lo, 4), round(hi, 4) if math.isfinite(hi) else None] for lo, hi in recent]

    def __repr__(self) -> str:
        q = self.quantile(0.5) if self.known else None
        median = "?" if q is None else f"{q:.1f}s"
        return f"<_DurationEstimator finished={self.finished} median={median} seed={self.seed}>"


def _turnbull(
    sample: Iterable[tuple[float, float]], start: list[tuple[float, float, float]]
) -> list[tuple[float, float, float]]:
    """Turnbull's self-consistency (EM) iteration for interval-censored durations.

    The cells are the gaps between consecutive distinct endpoints of the intervals
    (the NPMLE puts its mass on such cells). Each round costs ``O(cells + intervals)``
    with prefix sums. The start is the previous estimate blended with 10% of uniform
    mass (EM never moves mass into a cell that has none). Returns ``(lo, hi, mass)``.
    """
    counts = Counter(sample)
    if not counts:
        return []
    points = sorted({0.0, *itertools.chain.from_iterable(counts)})
    index = {x: i for i, x in enumerate(points)}
    width = len(points) - 1
    ranges = [(index[lo], index[hi], n) for (lo, hi), n in counts.items()]
    total = sum(counts.values())
    p = [0.1 / width] * width
    if start:
        at = _cdf_at(start, points)
        for k in range(width):
            p[k] += 0.9 * max(0.0, at[k + 1] - at[k])
    norm = sum(p)
    p = [x / norm for x in p]
    for _ in range(_EM_ROUNDS):
        prefix = list(itertools.accumulate(p, initial=0.0))
        diff = [0.0] * (width + 1)
        for i, j, n in ranges:
            covered = prefix[j] - prefix[i]
            share = n / (total * covered) if covered > 1e-300 else 0.0
            diff[i] += share
            diff[j] -= share
        run = 0.0
        for k in range(width):
            run += diff[k]
            p[k] *= run
        norm = sum(p)
        if norm <= 0:
            break
        p = [x / norm for x in p]
    return [(points[k], points[k + 1], x) for k, x in enumerate(p) if x > 1e-9]


def _cdf(cells: list[tuple[float, float, float]], t: float) -> float:
    """The estimated fraction of tasks done by age ``t``."""
    done = 0.0
    for lo, hi, m in cells:
        if hi <= t:
            done += m
        elif lo < t and math.isfinite(hi):
            done += m * (t / hi if lo <= 0.0 else math.log(t / lo) / math.log(hi / lo))
    return min(1.0, done)


def _cdf_at(cells: list[tuple[float, float, float]], points: list[float]) -> list[float]:
    """:func:`_cdf` at every one of the sorted ``points``, in one pass."""
    out: list[float] = []
    done, k, n = 0.0, 0, len(cells)
    for t in points:
        while k < n and cells[k][1] <= t:
            done += cells[k][2]
            k += 1
        extra = 0.0
        if k < n:
            lo, hi, m = cells[k]
            if lo < t and math.isfinite(hi):
                extra = m * (t / hi if lo <= 0.0 else math.log(t / lo) / math.log(hi / lo))
        out.append(min(1.0, done + extra))
    return out


def _quantile(cells: list[tuple[float, float, float]], q: float) -> float | None:
    """The right end of the cell where the estimate reaches ``q`` (``None``: past all
    finished tasks). The NPMLE says how much mass a cell holds, not where in it; its
    right end is the one age by which ``q`` is surely reached (biased up by at most a
    cell, which is narrow where polls are dense). First polls do not inherit the bias:
    their age is tuned from their own answers (:meth:`_DurationEstimator.first_answer`)."""
    run = 0.0
    for _lo, hi, m in cells:
        run += m
        if run >= q - 1e-9:
            return hi if math.isfinite(hi) else None
    return None


class TaskDurations:
    """How long tasks take, learnt per task kind; owned by the client.

    Example::

        durations = TaskDurations(seed=30.0)   # or TaskDurations(): unknown, scout
        durations.observe("image_search", lo=20.0, hi=24.0)
        durations.quantile("image_search", 0.85)
        saved = durations.snapshot()           # a plain dict (JSON-ready)
        TaskDurations().restore(saved)

    Kinds are ``"image_search"``, ``"workflow"`` or any other name (a future
    ``"one_vs_one"``); an estimator is made on first use. See the module docstring for
    the estimator.

    Args:
        seed: seconds; the first-poll delay used for a kind until one of its tasks has
            finished (``None``: unknown, the scheduler scouts).
    """

    __slots__ = ("_kinds", "seed")

    def __init__(self, seed: float | None = None) -> None:
        self.seed = seed
        self._kinds: dict[str, _DurationEstimator] = {}

    def estimator(self, kind: str) -> _DurationEstimator:
        """The estimator of ``kind`` (private API; made on first use)."""
        found = self._kinds.get(kind)
        if found is None:
            found = self._kinds[kind] = _DurationEstimator(self.seed)
        return found

    def seed_unknown(self, seed: float | None) -> None:
        """Use ``seed`` for every kind that has neither data nor a seed yet."""
        if seed is None:
            return
        if self.seed is None:
            self.seed = seed
        for est in self._kinds.values():
            if est.seed is None:
                est.seed = seed

    def observe(self, kind: str, lo: float, hi: float) -> None:
        """A task of ``kind`` was running at age ``lo`` and done at age ``hi``."""
        self.estimator(kind).observe(lo, hi)

    def quantile(self, kind: str, q: float) -> float | None:
        """Seconds by which a fraction ``q`` of ``kind``'s tasks are done (or ``None``)."""
        return self.estimator(kind).quantile(q)

    def known(self, kind: str) -> bool:
        """Whether a task of ``kind`` has been seen finished (here or restored)."""
        est = self._kinds.get(kind)
        return est is not None and est.known

    def snapshot(self) -> dict[str, Any]:
        """A plain, JSON-ready dict of what was learnt (for :meth:`restore`)."""
        return {
            "version": _DURATIONS_VERSION,
            "kinds": {k: e.intervals() for k, e in self._kinds.items() if e.known},
        }

    def restore(self, data: Mapping[str, Any] | None) -> None:
        """Take back a :meth:`snapshot` for every kind that has learnt nothing here yet.

        Anything unreadable (another version, bad values) is ignored: durations are a
        hint, never a reason to fail.
        """
        if not isinstance(data, Mapping) or data.get("version") != _DURATIONS_VERSION:
            return
        kinds = data.get("kinds")
        if not isinstance(kinds, Mapping):
            return
        for kind, rows in kinds.items():
            if not isinstance(kind, str) or self.known(kind) or not isinstance(rows, list):
                continue
            est = self.estimator(kind)
            for row in rows:
                try:
                    lo, hi = float(row[0]), math.inf if row[1] is None else float(row[1])
                except (TypeError, ValueError, IndexError, KeyError):
                    continue
                if math.isfinite(lo) and lo >= 0 and hi >= lo:
                    est.observe(lo, hi)

    def __repr__(self) -> str:
        kinds = ", ".join(f"{k}: {e.finished}" for k, e in self._kinds.items())
        return f"<TaskDurations seed={self.seed} finished={{{kinds}}}>"


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
        aim: the age its first poll was aimed at (``None``: not aimed, e.g. a scout);
            the answer of a first poll made on time tunes the first-poll age.
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
    aim: float | None = attrs.field(default=None, repr=False)
    aimed: bool = attrs.field(default=False, repr=False)


def _scout_gap(config: PollConfig, age: float) -> float:
    return min(config.max_interval, max(config.min_interval, _SCOUT_GROWTH * age))


def first_age(
    durations: TaskDurations, kind: str, config: PollConfig, q: float | None = None
) -> float | None:
    """Private: the age at which to poll a new task first (``None``: unknown, scout).

    The ``q`` quantile (default ``config.quantile``) times the factor tracked from the
    first polls' answers (:meth:`_DurationEstimator.first_answer`). While few tasks have
    finished, it aims at a higher quantile (``1 - (1 - q) * n / (n + 4)`` after ``n``
    finished): a crude early estimate then costs a little latency for the first cohort
    rather than a second poll for many of its tasks.
    """
    est = durations.estimator(kind)
    n = est.finished
    base = config.quantile if q is None else q
    q = 1.0 - (1.0 - base) * n / (n + _CAUTION) if n else base
    value = est.quantile(q)
    if value is None and est.known:  # more than 1 - q of the tasks run past all seen done
        value = est.longest() * _BEYOND_GROWTH
    if value is not None and est.known:
        value *= math.exp(est.log_scale)
    return None if value is None else max(config.min_interval, value)


def next_age(
    durations: TaskDurations, kind: str, config: PollConfig, age: float, q: float | None = None
) -> float:
    """Private: the age at which to poll again a task found running at ``age``: when a
    fraction ``q`` (default ``config.quantile``) of those still running are done.

    Never sooner than ``min_interval`` after ``age`` nor later than ``max_interval``.
    """
    est = durations.estimator(kind)
    if not est.known:
        if est.seed is None:  # a scout (or a lone poller) of an unknown kind
            return age + _scout_gap(config, age)
        target = max(age * config.backoff, max(config.min_interval, est.seed))
    else:
        found = est.conditional(age, config.quantile if q is None else q)
        if found is None:  # older than every finished task: an outlier, or little data
            found = age * (_BEYOND_GROWTH if est.finished >= _TRUSTED else config.backoff)
        # The upper tail is known from few tasks: never step less than 15% of the age.
        target = max(found, age * _BEYOND_GROWTH)
    return age + min(config.max_interval, max(config.min_interval, target - age))


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
        """The quantile polls aim at: ``1 / (calls_per_task - 1 - reserve)`` (the optimal
        shape's, with a little kept for scouting and the tail), shifted by the budget
        controller (see _steer)."""
        budget = self.config.calls_per_task - 1.0 - _RESERVE
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
        error = min(2.0, max(-2.0, 1.0 + task.polls - self.config.calls_per_task))
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
        """Scouts are polled out of step: the k-th first at ``(1 + k / scouts)`` times
        ``min_interval``, so their polls interleave and one that ends is seen sooner."""
        step = len(scouts) % self.config.scouts / self.config.scouts
        task.scout = True
        scouts.add(task)
        assert task.submitted_at is not None
        first = self.config.min_interval * (1.0 + step)
        self._push(max(task.submitted_at + first, now), task)

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
        found = est.quantile(min(self.config.quantile, _WARM_LEVEL), running)
        if found is None or any(age < found * (1.0 - _SCOUT_TOLERANCE) for age in running):
            return False
        self._warm.add(kind)
        return True

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
            on_time = task.polls == 1 and aim is not None and age <= aim * _SA_LATE
            if on_time and status in (TaskStatus.SUCCESS, TaskStatus.RUNNING):
                est.first_answer(status == TaskStatus.SUCCESS, self._quantile(task.kind))
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
            task.aim = aim
            return False
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
            target = age + _scout_gap(cfg, age)
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
        self._push(max(due, now + cfg.min_interval), task)

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
