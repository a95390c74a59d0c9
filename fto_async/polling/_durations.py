"""Learned task durations: Turnbull's estimate per task kind, and the ages of the
first poll and of each re-poll that follow from it (see :mod:`fto_async.polling`)."""

from __future__ import annotations

import itertools
import math
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from statistics import NormalDist
from typing import Any

from ..config import PollConfig

__all__ = ["TaskDurations", "first_age", "next_age"]

_DURATIONS_VERSION = 1
_SAMPLE = 512  # intervals kept per kind (the most recent)
_SAVED = 256  # intervals persisted per kind
_EM_ROUNDS = 40
_SCOUT_GROWTH = 0.1  # a scout's gap: 10% of its age, at least min_interval
_BEYOND_GROWTH = 1.15  # an outlier (older than every finished task): +15% age per poll
_CAUTION = 4  # finished tasks at which the first-poll quantile is halfway to quantile
_SA_GAIN = 0.03  # stochastic approximation of the first-poll age: the least gain...
_SA_START = 0.5  # ...and the gain of the k-th answer before that: 0.5 / (k + 4)
_SA_AFTER = 32  # finished tasks before a first poll steers the budget
_TRUSTED = 64  # finished tasks after which a task older than all is an outlier
_NORMAL = NormalDist()
_QUARTER = 0.25  # unset min_interval: a quarter of the learnt median between polls...
_TWICE = 2.0  # ...and unset max_interval: twice it (at least the 30 s default)


class _DurationEstimator:
    """Private: the duration distribution of one task kind, from censored intervals.

    See the module docstring (Turnbull's estimate over the intervals' own endpoints).
    """

    __slots__ = (
        "_cells", "_fresh", "_live", "_quantiles", "_sample", "answers", "finished", "first_log",
        "seed", "shift",
    )

    def __init__(self, seed: float | None = None) -> None:
        self.seed = seed
        self._sample: deque[tuple[float, float]] = deque(maxlen=_SAMPLE)
        self._cells: list[tuple[float, float, float]] = []  # (lo, hi, mass), the estimate
        self._fresh = 0  # observations since the last refresh
        self._live: dict[str, float] = {}  # task id -> age it was last seen running at
        self._quantiles: dict[tuple[float, bool], float | None] = {}
        #: Finished tasks observed (a censored one does not count).
        self.finished = 0
        #: log of the first-poll age, tracked from the first polls' own answers (see
        #: :meth:`first_answer`; ``None``: no answer yet), and the answers counted.
        self.first_log: float | None = None
        self.answers = 0
        #: The budget controller's shift of the quantile (see PollScheduler._steer).
        self.shift = 0.0

    def first_answer(self, done: bool, q: float, aimed_at: float) -> None:
        """A first poll made on time answered ``done`` (or running): move the first-poll
        age so that a fraction ``q`` of first polls find their task done (Robbins-Monro
        on current-status answers, in log age: unbiased whatever the estimate, so no
        ratchet). ``aimed_at``: the age the poll aimed at, the start (first answer).
        The gain falls from 0.1 to 0.03: a cold cohort moves fast, a warm one steady."""
        if self.first_log is None:
            self.first_log = math.log(max(aimed_at, 1e-9))
        self.answers += 1
        gain = max(_SA_GAIN, _SA_START / (self.answers + 4))
        self.first_log += gain * (q - float(done))

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

    def quantile(
        self, q: float, running: Iterable[float] = (), *, inside: bool = False
    ) -> float | None:
        """Seconds by which a fraction ``q`` of tasks are done (``None``: not known yet).

        ``running`` are ages of tasks still running (counted as censored there; only
        for the cold-start decision, never cached). Without finished tasks: the seed.
        ``inside``: read the age inside the estimator's cell (log-linear in the cell's
        mass) rather than at its right end; for the first polls of a cold cohort, whose
        cells are the wide gaps between scout polls.
        """
        censored = [(age, math.inf) for age in running]
        if not self.known:
            return None if censored or self.seed is None else self.seed
        if censored:
            live = [(age, math.inf) for age in self._live.values()]
            everything = [*self._sample, *live, *censored]
            return _quantile(_turnbull(everything, self._current()), q, inside=inside)
        cells = self._current()
        key = (q, inside)
        if key not in self._quantiles:
            self._quantiles[key] = _quantile(cells, q, inside=inside)
        return self._quantiles[key]

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

    def fitted(self, age: float, q: float) -> float | None:
        """:meth:`conditional` from a lognormal fitted to the estimate's quartiles (read
        inside their cells; ``None``: not known yet). While few tasks have finished,
        the estimate's upper tail is the few tasks seen: the conditional quantile there
        is clamped at the last one seen done and re-polls would step 15% at a time."""
        low, mid, high = (self.quantile(p, inside=True) for p in (0.25, 0.5, 0.75))
        if low is None or mid is None or high is None or not 0 < low < high:
            return None
        sigma = math.log(high / low) / (2 * _NORMAL.inv_cdf(0.75))
        below = _NORMAL.cdf(math.log(max(age, 1e-9) / mid) / sigma)
        target = min(below + (1.0 - below) * q, 1.0 - 1e-6)
        return float(mid * math.exp(sigma * _NORMAL.inv_cdf(target)))

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


def _quantile(
    cells: list[tuple[float, float, float]], q: float, *, inside: bool = False
) -> float | None:
    """The right end of the cell where the estimate reaches ``q`` (``None``: past all
    finished tasks). The NPMLE says how much mass a cell holds, not where in it; its
    right end is the one age by which ``q`` is surely reached (biased up by at most a
    cell, which is narrow where polls are dense). First polls do not inherit the bias:
    their age is tuned from their own answers (:meth:`_DurationEstimator.first_answer`).
    ``inside``: the age within the cell where the mass reaches ``q``, spread log-linearly
    over the cell as :func:`_cdf` does (a cold cohort's cells are a scout gap wide: up to
    doubling, so the right end would aim its first polls far too late)."""
    run = 0.0
    for lo, hi, m in cells:
        if run + m >= q - 1e-9:
            if not math.isfinite(hi):
                return None
            if not inside:
                return hi
            f = min(1.0, max(0.0, (q - run) / m))
            return hi * f if lo <= 0.0 else lo * (hi / lo) ** f
        run += m
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


def _scout_gap(config: PollConfig, age: float, growth: float = _SCOUT_GROWTH) -> float:
    """A scout's gap: ``growth`` of its age, within ``[min_interval, max_interval]``
    (unset: 2-30 s, nothing being learnt yet)."""
    return min(config.max_interval, max(config.min_interval, growth * age))


def gap_bounds(durations: TaskDurations, kind: str, config: PollConfig) -> tuple[float, float]:
    """Private: the least and the longest gap between two polls of a task of ``kind``:
    ``min_interval`` and ``max_interval`` when set; unset, they follow the learnt median
    (a quarter of it within 0.5-2 s; twice it, at least 30 s; both scaled)."""
    low, high = config.min_interval, config.max_interval
    unset_low, unset_high = config.min_interval_set is None, config.max_interval_set is None
    if unset_low or unset_high:
        est = durations.estimator(kind)
        median = est.quantile(0.5, inside=True) if est.known else None
        if median is not None and unset_low:
            low = min(low, max(0.25 * low, _QUARTER * median))
        if median is not None and unset_high:
            high = max(high, _TWICE * median)
    return low, high


def first_age(
    durations: TaskDurations, kind: str, config: PollConfig, q: float | None = None
) -> float | None:
    """Private: the age at which to poll a new task first (``None``: unknown, scout).

    With ``q`` given (the scheduler's), the age tracked from the first polls' answers
    once there are any (:meth:`_DurationEstimator.first_answer`); else the ``q``
    quantile (default ``config.quantile``) of the estimate. While few tasks have
    finished, it aims at a higher quantile (``1 - (1 - q) * n / (n + 4)`` after ``n``
    finished): a crude early estimate then costs a little latency for the first cohort
    rather than a second poll for many of its tasks.
    """
    est = durations.estimator(kind)
    if q is not None and est.known and est.first_log is not None:
        return max(config.min_interval, math.exp(est.first_log))
    n = est.finished
    base = config.quantile if q is None else q
    q = 1.0 - (1.0 - base) * n / (n + _CAUTION) if n else base
    value = est.quantile(q, inside=True)
    if value is None and est.known:  # more than 1 - q of the tasks run past all seen done
        value = est.longest() * _BEYOND_GROWTH
    return None if value is None else max(config.min_interval, value)


def next_age(
    durations: TaskDurations, kind: str, config: PollConfig, age: float, q: float | None = None
) -> float:
    """Private: the age at which to poll again a task found running at ``age``: when a
    fraction ``q`` (default ``config.quantile``) of those still running are done.

    Never sooner than the least gap after ``age`` nor later than the longest
    (:func:`gap_bounds`).
    """
    est = durations.estimator(kind)
    if not est.known:
        if est.seed is None:  # a scout (or a lone poller) of an unknown kind
            return age + _scout_gap(config, age)
        target = max(age * config.backoff, max(config.min_interval, est.seed))
    else:
        q = config.quantile if q is None else q
        found = est.conditional(age, q)
        if est.finished < _TRUSTED:  # the upper tail is a few tasks: extrapolate it
            fit = est.fitted(age, q)
            if fit is not None:
                found = max(found or 0.0, fit)
        if found is None:  # older than every finished task: an outlier, or little data
            found = age * (_BEYOND_GROWTH if est.finished >= _TRUSTED else config.backoff)
        # The upper tail is known from few tasks: never step less than 15% of the age.
        target = max(found, age * _BEYOND_GROWTH)
    low, high = gap_bounds(durations, kind, config)
    return age + min(high, max(low, target - age))
