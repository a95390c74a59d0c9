"""Issue 24 on a virtual clock: no upward ratchet, calls steered by the budget, scouts
out of step. Exact timestamps, no wall clock; each test runs in about a second."""

from __future__ import annotations

import asyncio
import itertools
import math
import random

import pytest

from fto_async.config import PollConfig
from fto_async.errors import FtoError
from fto_async.models import ImageSearchReport, TaskStatus
from fto_async.polling import PendingTask, PollScheduler, TaskDurations
from tests._vtime import run_virtual


class Platform:
    """A fake report endpoint: task ``t`` is done at ``ready[t]``; records every poll."""

    def __init__(self) -> None:
        self.ready: dict[str, float] = {}
        self.submitted: dict[str, float] = {}
        self.polls: dict[str, list[float]] = {}

    async def fetch(self, task: PendingTask) -> ImageSearchReport:
        now = asyncio.get_running_loop().time()
        self.polls.setdefault(task.task_id, []).append(now)
        done = now >= self.ready[task.task_id]
        status = TaskStatus.SUCCESS if done else TaskStatus.RUNNING
        return ImageSearchReport(task_id=task.task_id, task_status=status)

    async def deliver(
        self, task: PendingTask, report: ImageSearchReport | None, error: FtoError | None
    ) -> None:
        assert error is None

    async def batch(self, durations: TaskDurations, config: PollConfig, tasks: list[float],
                    spacing: float, tag: str) -> PollScheduler:
        scheduler = PollScheduler(self.fetch, self.deliver, config, durations=durations)
        runner = asyncio.create_task(scheduler.run())
        loop = asyncio.get_running_loop()
        for i, d in enumerate(tasks):
            now = loop.time()
            task_id = f"{tag}{i:05d}"
            self.ready[task_id], self.submitted[task_id] = now + d, now
            scheduler.add(PendingTask(task_id, task_id, "image_search", submitted_at=now))
            await asyncio.sleep(spacing)
        scheduler.close()
        await runner
        return scheduler


def lognormal(seed: int, n: int, median: float, sigma: float) -> list[float]:
    rng = random.Random(seed)
    return [median * math.exp(rng.gauss(0.0, sigma)) for _ in range(n)]


@pytest.mark.untraced  # a 5,000-task replay: its lines are covered by the shorter tests
def test_no_upward_ratchet_over_5000_tasks() -> None:
    """With current-status answers, first polls all made at one age cannot lower the
    estimate: it used to creep up (first polls drifting from the 0.87 towards the
    0.97 quantile over 5,000 tasks, 600 in flight). The first polls' own answers now
    tune their age: the fraction that find their task done stays near the aimed
    quantile over the last 3,000 tasks (0.958 before the fix, about 0.89 after)."""
    platform = Platform()
    config = PollConfig()
    tasks = lognormal(11, 5000, 60.0, 0.3)

    async def main() -> PollScheduler:
        return await platform.batch(TaskDurations(), config, tasks, 0.1, "t")

    scheduler = run_virtual(main)
    q = scheduler._quantile("image_search")
    late = sorted(platform.polls)[2000:]
    hits = sum(platform.polls[t][0] >= platform.ready[t] for t in late) / len(late)
    assert hits <= min(q, config.quantile) + 0.04, (hits, q)


# 2.2 stays traced (one warm replay measured); 2.5 is the same replay again.
@pytest.mark.parametrize("budget", [2.2, pytest.param(2.5, marks=pytest.mark.untraced)])
def test_calls_follow_the_budget_warm(budget: float) -> None:
    """Warm (after 256 finished tasks), a batch spends calls_per_task within 0.03:
    the budget moves the first-poll quantile (q = 1 / (B - 1 - reserve)) and a
    controller holds the calls there."""
    platform = Platform()
    config = PollConfig(calls_per_task=budget)

    async def main() -> float:
        durations = TaskDurations()
        await platform.batch(durations, config, lognormal(1, 256, 20.0, 0.3), 0.2, "w")
        scheduler = await platform.batch(durations, config, lognormal(2, 1500, 20.0, 0.3),
                                         0.2, "m")
        return 1.0 + scheduler.polls / 1500

    calls = run_virtual(main)
    assert abs(calls - budget) <= 0.03, calls


def test_scouts_are_not_polled_in_lockstep() -> None:
    """Scouts submitted together are first polled at min_interval (a short task's
    outcome is not delayed), then at interleaved ages: no two scouts are polled at the
    same age once their gaps outgrow min_interval, so a scout that ends is seen sooner
    and the four sample four times as many ages as one."""
    platform = Platform()
    config = PollConfig()

    async def main() -> None:
        await platform.batch(TaskDurations(), config, [60.0] * 8, 0.0, "s")

    run_virtual(main)
    scouts = [t for t, polls in platform.polls.items()
              if polls[0] - platform.submitted[t] == pytest.approx(config.min_interval)]
    assert len(scouts) == config.scouts
    ages = {t: [round(p - platform.submitted[t], 6) for p in platform.polls[t]] for t in scouts}
    assert all(a[0] == pytest.approx(config.min_interval) for a in ages.values())
    late = [a for t in scouts for a in ages[t] if a > 10.0]
    assert len(late) >= 2 * config.scouts
    assert len(set(late)) == len(late), sorted(late)  # lockstep: the same ages, 4 times


def test_scouting_costs_a_bounded_share_of_a_long_cohort() -> None:
    """Cold, 300 tasks of 2 minutes submitted at once: the scouts' polls are paid by the
    cohort they warm, so their gap grows with their age by a share set by the cohort's
    size (about half of it here, not 10%): they cost at most 0.15 calls per task (0.4
    with a 10% gap, which polled each scout about 30 times)."""
    platform = Platform()
    config = PollConfig()
    tasks = lognormal(4, 300, 120.0, 0.3)

    async def main() -> PollScheduler:
        return await platform.batch(TaskDurations(), config, tasks, 0.05, "c")

    run_virtual(main)
    scouts = [t for t, polls in platform.polls.items()
              if polls[0] - platform.submitted[t] == pytest.approx(config.min_interval)]
    assert len(scouts) == config.scouts
    scouting = sum(len(platform.polls[t]) for t in scouts)
    assert scouting / len(tasks) <= 0.15, scouting


def test_a_cold_tail_is_extrapolated_not_stepped_by_15_percent() -> None:
    """While few tasks have finished, a task still running past the few seen done is
    polled again where a lognormal fitted to the estimate's quartiles puts the
    conditional quantile, not at +15% of its age poll after poll (the estimate's
    conditional quantile stops at the last task seen done: 13 s here)."""
    durations = TaskDurations()
    for lo, hi in [(8, 9.0), (9, 10.0), (9.5, 10.5), (10, 11.0), (11, 12.0), (12, 13.0)]:
        durations.observe("image_search", lo, hi)
    for k in range(4):  # seen running at 12.5 s: their mass lies past every task seen done
        durations.estimator("image_search").running(f"r{k}", 12.5)
    config = PollConfig()
    from fto_async.polling import next_age

    after = next_age(durations, "image_search", config, 12.5, 0.87)
    assert after > 12.5 * 1.15 + 0.5, after


def test_unset_intervals_follow_the_learnt_median() -> None:
    """Unset, max_interval is at least twice the learnt median (2-minute tasks are not
    re-polled every 30 s) and min_interval a quarter of it within 0.5-2 s (2 s tasks are
    not re-polled a whole median later); set, both are hard bounds."""
    from fto_async.polling._durations import gap_bounds

    slow, fast = TaskDurations(), TaskDurations()
    for k in range(50):
        slow.observe("image_search", 99.0 + k, 100.0 + k)
        fast.observe("image_search", 1.7 + k / 100, 1.8 + k / 100)
    assert gap_bounds(slow, "image_search", PollConfig())[1] >= 240.0
    assert gap_bounds(slow, "image_search", PollConfig(max_interval=30))[1] == 30.0
    low = gap_bounds(fast, "image_search", PollConfig())[0]
    assert 0.5 <= low <= 0.6, low
    assert gap_bounds(fast, "image_search", PollConfig(min_interval=2))[0] == 2.0
    assert PollConfig().min_interval == 2.0
    assert PollConfig().max_interval == 30.0
    scaled = PollConfig().scaled(0.01)
    assert scaled.min_interval_set is None
    assert scaled.min_interval == pytest.approx(0.02)


@pytest.mark.untraced  # a long replay judged by its figures (lines: the shorter tests)
@pytest.mark.parametrize("median", [2.0, 120.0])
def test_warm_extremes_stay_near_the_budget(median: float) -> None:
    """Warm, sigma 0.5 at 2-minute medians (re-polls were capped at 30 s: 2.38 calls) and
    sigma 0.2 at 2 s medians (re-polls a whole median apart): calls stay under B + 0.03
    and the mean overshoot near the frontier's (0.69 and 0.24 medians at 2.2); medians
    of 3 seeds (one seed of 6 reads a conditional quantile at the right end of a wide
    cell: 0.38 at 2 s)."""
    sigma, limit = (0.5, 0.95) if median > 60 else (0.2, 0.30)
    config = PollConfig()

    def run(seed: int) -> tuple[float, float]:
        platform = Platform()

        async def main() -> float:
            durations = TaskDurations()
            await platform.batch(durations, config, lognormal(seed, 256, median, sigma), 0.05,
                                 "w")
            before = sum(map(len, platform.polls.values()))
            await platform.batch(durations, config, lognormal(seed + 1, 300, median, sigma),
                                 0.05, "m")
            return 1 + (sum(map(len, platform.polls.values())) - before) / 300

        calls = run_virtual(main)
        ids = [t for t in platform.polls if t.startswith("m")]
        over = [next(p for p in platform.polls[t] if p >= platform.ready[t]) - platform.ready[t]
                for t in ids]
        return calls, sum(over) / len(over) / median

    runs = [run(seed) for seed in (5, 7, 9)]
    calls = sorted(c for c, _ in runs)[1]
    mean = sorted(m for _, m in runs)[1]
    assert 2.1 <= calls <= config.calls_per_task + 0.03, runs
    assert mean <= limit, runs


def test_submission_never_stalls_behind_due_polls_under_the_default_order() -> None:
    """The scheduler with the default order ("results": its polls take the gate's
    priority lane) on a saturated gate: 400 resumed tasks all due at once, and 8
    workers submitting 60 new items meanwhile. Polls go first, but a waiting submit is
    admitted within 4 pacing steps of the previous one (polls take at most 3 admissions
    in 4 while submits wait); strict priority stalled every submit for about 10 s, until
    the poll backlog was gone."""
    from fto_async.config import RateConfig
    from fto_async.polling import poll_priority
    from fto_async.ratelimit import RateGate

    qps, resumed, fresh = 40.0, 400, 60

    async def main() -> tuple[list[float], list[float]]:
        gate = RateGate(RateConfig(qps=qps))
        loop = asyncio.get_running_loop()
        ready: dict[str, float] = {}
        polls: list[float] = []
        submits: list[float] = []

        async def fetch(task: PendingTask) -> ImageSearchReport:
            assert poll_priority()  # the default order
            async with gate.slot("/report", priority=poll_priority()):
                polls.append(loop.time())
            done = loop.time() >= ready[task.task_id]
            status = TaskStatus.SUCCESS if done else TaskStatus.RUNNING
            return ImageSearchReport(task_id=task.task_id, task_status=status)

        async def deliver(task: PendingTask, report: ImageSearchReport | None,
                          error: FtoError | None) -> None:
            assert error is None

        scheduler = PollScheduler(fetch, deliver, PollConfig(initial_estimate=30.0))
        runner = asyncio.create_task(scheduler.run())
        now = loop.time()
        for i in range(resumed):  # submitted a minute ago: every first poll is due now
            ready[f"r{i}"] = now + 20.0
            scheduler.add(PendingTask(i, f"r{i}", "image_search", submitted_at=now - 60.0))
        items = iter(range(fresh))

        async def worker() -> None:
            for i in items:
                async with gate.slot("/submit"):
                    submits.append(loop.time())
                ready[f"n{i}"] = loop.time() + 30.0
                scheduler.add(PendingTask(i, f"n{i}", "image_search",
                                          submitted_at=loop.time()))

        await asyncio.gather(*(worker() for _ in range(8)))
        scheduler.close()
        await runner
        return polls, submits

    polls, submits = run_virtual(main)
    step = 1 / (qps * 0.96)
    gaps = [b - a for a, b in itertools.pairwise([0.0, *sorted(submits)])]
    assert max(gaps) <= 4 * step + 1e-6, (max(gaps), 4 * step)
    # ... and polls still went first: about 3 of every 4 admissions meanwhile.
    before = sum(p <= max(submits) for p in polls)
    assert before >= 3 * (fresh - 1), before


# (0.2, 10) stays traced (it reaches the early tail polls); (0.3, 30) is the same replay.
@pytest.mark.parametrize(
    ("sigma", "median"), [(0.2, 10.0), pytest.param(0.3, 30.0, marks=pytest.mark.untraced)])
def test_a_short_warm_batch_spends_its_budget(sigma: float, median: float) -> None:
    """Warm (after 256 finished tasks), a batch of only 300 spends calls_per_task within
    0.03 (median of 5 seeds): the first polls aim at q = 1 / (B - 1) itself. With 0.05
    of the budget kept back as a reserve (q = 1 / (B - 1.05)), such a batch spent 2.16
    for 2.2 (2.20 now): the controller, slow on purpose, had not made it up yet."""
    config = PollConfig()

    def calls(seed: int) -> float:
        platform = Platform()

        async def main() -> float:
            durations = TaskDurations()
            await platform.batch(durations, config, lognormal(seed, 256, median, sigma),
                                 0.05, "w")
            scheduler = await platform.batch(
                durations, config, lognormal(100 + seed, 300, median, sigma), 0.05, "m")
            return 1.0 + scheduler.polls / 300

        return run_virtual(main)

    spent = sorted(calls(seed) for seed in range(5))
    assert abs(spent[2] - config.calls_per_task) <= 0.03, spent
