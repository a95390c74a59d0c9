"""The poll scheduler against the oracle frontier, replayed in virtual time.

Run:  python benchmarks/frontier.py            # sigma 0.2, 0.3, 0.5; medians 2-120 s; 5 seeds
      python benchmarks/frontier.py --quick    # sigma 0.3, 0.5; medians 10, 60 s; 2 seeds (< 1 min)
      python benchmarks/frontier.py --budget 2.5

With current-status answers (a poll says only done or not done), the least overshoot
reachable at B calls per task (submit included) is computable for a known distribution:
the **oracle frontier**. Here it is computed with exact integrals for lognormal(0, sigma)
(median 1) by dynamic programming over a grid of poll ages and a Lagrange sweep (the
lower convex hull of (calls, mean overshoot) over schedules; a budget between two hull
points is met by mixing them). The frontier's p50 is the p50 of that mean-optimal mixture.

The **replay** drives the real :class:`~fto_async.polling.PollScheduler` and its
:class:`~fto_async.polling.TaskDurations` on a virtual clock (``tests/_vtime.py``): a fake
report endpoint answers "done" once a task's lognormal duration has passed. Tasks are
submitted every ``--spacing`` seconds (0.05: 20 submits/s). Cold: a fresh client, N = 300.
Warm: the same client after a first batch of 256 finished tasks, then N = 300 measured.
Overshoot = from a task's end to the poll that saw it done, in medians; calls = 1 +
polls per task. ``excess`` = the replay's value minus the frontier's at the calls the
replay spent (medians over seeds, each seed compared at its own calls).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import random
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from statistics import NormalDist
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table

from fto_async.config import PollConfig
from fto_async.errors import FtoError
from fto_async.models import ImageSearchReport, TaskStatus
from fto_async.polling import PendingTask, PollScheduler, TaskDurations
from tests._vtime import run_virtual

_N = NormalDist()

# -- the oracle frontier (lognormal, median 1) ------------------------------------------


class Lognormal:
    """lognormal(0, sigma): cdf, survival, partial mean, quantile."""

    def __init__(self, sigma: float) -> None:
        self.s = sigma
        self._k = math.exp(sigma * sigma / 2)

    def cdf(self, t: float) -> float:
        return 0.0 if t <= 0 else _N.cdf(math.log(t) / self.s)

    def partial_mean(self, t: float) -> float:
        """The integral of u f(u) du over [0, t]."""
        return 0.0 if t <= 0 else self._k * _N.cdf((math.log(t) - self.s * self.s) / self.s)

    def q(self, p: float) -> float:
        return math.exp(self.s * _N.inv_cdf(p))


def schedule_calls(d: Lognormal, sched: Sequence[float]) -> float:
    prev, out = 0.0, 1.0
    for t in sched:
        out += 1.0 - d.cdf(prev)
        prev = t
    return out


def schedule_mean(d: Lognormal, sched: Sequence[float]) -> float:
    prev, out = 0.0, 0.0
    for t in sched:
        out += t * (d.cdf(t) - d.cdf(prev)) - (d.partial_mean(t) - d.partial_mean(prev))
        prev = t
    return out


def schedule_cdf(d: Lognormal, sched: Sequence[float], x: float) -> float:
    """P(overshoot <= x)."""
    prev, out = 0.0, 0.0
    for t in sched:
        out += d.cdf(t) - d.cdf(max(prev, t - x))
        prev = t
    return out


def _grid(d: Lognormal, h: float) -> list[float]:
    g, t = [0.0], h
    a, b = d.q(0.999), d.q(1 - 1e-6)
    while t < a:
        g.append(t)
        t += h
    while t < b:
        g.append(t)
        t += 10 * h
    g.append(b)
    return g


def _dp_mean(d: Lognormal, g: list[float], lam: float) -> list[float]:
    """The grid schedule minimising E[overshoot] + lam E[polls]."""
    top = len(g) - 1
    F = [d.cdf(t) for t in g]
    M = [d.partial_mean(t) for t in g]
    V = [0.0] * (top + 1)
    nxt = [top] * (top + 1)
    A = [0.0] * (top + 1)
    A[top] = g[top] * F[top] - M[top]
    for i in range(top - 1, -1, -1):
        fi = F[i]
        best, bj = math.inf, top
        for j in range(i + 1, top + 1):
            v = A[j] - g[j] * fi
            if v < best:
                best, bj = v, j
        V[i] = lam * (1.0 - fi) + M[i] + best
        nxt[i] = bj
        A[i] = g[i] * F[i] - M[i] + V[i]
    out, i = [], 0
    while i < top:
        i = nxt[i]
        out.append(g[i])
    return out


class Frontier:
    """The mean-overshoot oracle for lognormal(0, sigma): the hull of (calls, mean)."""

    def __init__(self, sigma: float, h: float = 0.005, sweeps: int = 90) -> None:
        self.d = d = Lognormal(sigma)
        g = _grid(d, h)
        pts, seen = [], set()
        for k in range(sweeps):
            s = _dp_mean(d, g, 10 ** (-3 + 4.5 * k / (sweeps - 1)))
            if tuple(s) not in seen:
                seen.add(tuple(s))
                pts.append((schedule_calls(d, s), schedule_mean(d, s), s))
        pts.sort(key=lambda p: (p[0], p[1]))
        hull: list[tuple[float, float, list[float]]] = []
        for p in pts:
            while len(hull) >= 2:
                (x1, y1, _), (x2, y2, _) = hull[-2], hull[-1]
                if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) <= 0:
                    hull.pop()
                else:
                    break
            hull.append(p)
        self.hull = [p for k, p in enumerate(hull) if k == 0 or p[1] < hull[k - 1][1]]

    def mix(self, budget: float) -> list[tuple[float, list[float]]]:
        h = self.hull
        if budget <= h[0][0]:
            return [(1.0, h[0][2])]
        for (c1, _, s1), (c2, _, s2) in itertools.pairwise(h):
            if c1 <= budget <= c2:
                w = (c2 - budget) / (c2 - c1)
                return [(w, s1), (1 - w, s2)]
        return [(1.0, h[-1][2])]

    def at(self, budget: float) -> dict[str, float]:
        """Mean and p50 overshoot (medians) of the oracle spending ``budget`` calls."""
        d, mix = self.d, self.mix(budget)
        mean = sum(w * schedule_mean(d, s) for w, s in mix)
        lo, hi = 0.0, 5.0
        for _ in range(30):
            mid = (lo + hi) / 2
            if sum(w * schedule_cdf(d, s, mid) for w, s in mix) >= 0.5:
                hi = mid
            else:
                lo = mid
        return {"mean": mean, "p50": hi}


# -- the replay -------------------------------------------------------------------------


class Platform:
    """A fake report endpoint: task ``i`` is done ``durations[i]`` after its submit."""

    def __init__(self) -> None:
        self.ready: dict[str, float] = {}
        self.seen: dict[str, float] = {}
        self.polls = 0

    async def fetch(self, task: PendingTask) -> ImageSearchReport:
        now = asyncio.get_running_loop().time()
        self.polls += 1
        done = now >= self.ready[task.task_id]
        if done and task.task_id not in self.seen:
            self.seen[task.task_id] = now
        status = TaskStatus.SUCCESS if done else TaskStatus.RUNNING
        return ImageSearchReport(task_id=task.task_id, task_status=status)

    async def deliver(
        self, task: PendingTask, report: ImageSearchReport | None, error: FtoError | None
    ) -> None:
        assert error is None, error


async def _batch(durations: TaskDurations, config: PollConfig, tasks: list[float],
                 spacing: float, tag: str) -> tuple[list[float], float]:
    """Run one batch; return the overshoots (s) and the calls per task."""
    platform = Platform()
    scheduler = PollScheduler(platform.fetch, platform.deliver, config, durations=durations)
    runner = asyncio.create_task(scheduler.run())
    loop = asyncio.get_running_loop()
    for i, d in enumerate(tasks):
        now = loop.time()
        task_id = f"{tag}{i:05d}"
        platform.ready[task_id] = now + d
        scheduler.add(PendingTask(task_id, task_id, "image_search", submitted_at=now))
        await asyncio.sleep(spacing)
    scheduler.close()
    await runner
    over = [platform.seen[t] - platform.ready[t] for t in platform.ready]
    return over, 1.0 + platform.polls / len(tasks)


def replay(sigma: float, median: float, seed: int, *, warm: bool, n: int = 300,
           warmup: int = 256, spacing: float = 0.05,
           config: PollConfig | None = None) -> dict[str, float]:
    """One replay: calls per task, overshoot p50 and mean (in medians)."""
    rng = random.Random(seed * 1009 + int(sigma * 100) * 7 + int(median))
    config = config or PollConfig()

    def draw(k: int) -> list[float]:
        return [median * math.exp(rng.gauss(0.0, sigma)) for _ in range(k)]

    async def main() -> tuple[list[float], float]:
        durations = TaskDurations()
        if warm:
            await _batch(durations, config, draw(warmup), spacing, "w")
        return await _batch(durations, config, draw(n), spacing, "m")

    over, calls = run_virtual(main)
    return {"calls": calls, "p50": statistics.median(over) / median,
            "mean": statistics.fmean(over) / median}


def study(sigmas: Sequence[float], medians: Sequence[float], seeds: int, *, h: float,
          budget: float, log: Any = None,
          phases: Sequence[str] = ("cold", "warm")) -> list[list[object]]:
    rows: list[list[object]] = []
    config = PollConfig(calls_per_task=budget)
    for sigma in sigmas:
        t0 = time.monotonic()
        front = Frontier(sigma, h=h)
        if log:
            print(f"  frontier sigma={sigma}: {time.monotonic() - t0:.1f} s", file=log)
        for phase in phases:
            for median in medians:
                runs = [replay(sigma, median, s, warm=phase == "warm", config=config)
                        for s in range(seeds)]
                refs = [front.at(r["calls"]) for r in runs]
                med = {k: statistics.median(r[k] for r in runs) for k in ("calls", "p50", "mean")}
                pairs = list(zip(runs, refs, strict=True))
                ex50 = statistics.median(r["p50"] - f["p50"] for r, f in pairs)
                exm = statistics.median(r["mean"] - f["mean"] for r, f in pairs)
                rows.append([sigma, phase, median, med["calls"], med["calls"] - budget,
                             med["p50"], ex50, med["mean"], exm])
                if log:
                    print(f"  sigma={sigma} {phase} median={median:g}: calls {med['calls']:.3f} "
                          f"excess p50 {ex50:+.3f} mean {exm:+.3f}", file=log)
    return rows


HEADER = ["sigma", "phase", "median s", "calls / task", "calls - B", "overshoot p50",
          "excess p50", "overshoot mean", "excess mean"]


def frontier_table(sigmas: Sequence[float], h: float,
                   budgets: Sequence[float] = (2.05, 2.1, 2.15, 2.2, 2.3, 2.5, 3.0)) -> str:
    rows = []
    for b in budgets:
        row: list[object] = [b]
        for sigma in sigmas:
            f = Frontier(sigma, h=h).at(b)
            row += [f["p50"], f["mean"]]
        rows.append(row)
    header = ["calls / task"] + [f"sigma {s}: {k}" for s in sigmas for k in ("p50", "mean")]
    return table("Oracle frontier: least overshoot (x median) at a budget", header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 sigmas, 2 medians, 2 seeds")
    parser.add_argument("--budget", type=float, default=2.2, help="calls_per_task B")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--phase", choices=("cold", "warm"), default=None,
                        help="replay only cold (or only warm) batches")
    parser.add_argument("--sigmas", default=None, help="comma-separated, e.g. 0.3,0.5")
    parser.add_argument("--medians", default=None, help="comma-separated seconds")
    parser.add_argument("--frontier-only", action="store_true", help="print the frontier table")
    args = parser.parse_args()
    if args.quick:
        sigmas, medians, seeds, h = [0.3, 0.5], [10.0, 60.0], 2, 0.02
    else:
        sigmas, medians, seeds, h = [0.2, 0.3, 0.5], [2.0, 10.0, 30.0, 120.0], 5, 0.005
    seeds = args.seeds or seeds
    if args.sigmas:
        sigmas = [float(x) for x in args.sigmas.split(",")]
    if args.medians:
        medians = [float(x) for x in args.medians.split(",")]
    phases = (args.phase,) if args.phase else ("cold", "warm")
    if args.frontier_only:
        print(frontier_table(sigmas, h))
        return
    t0 = time.perf_counter()
    rows = study(sigmas, medians, seeds, h=h, budget=args.budget, log=sys.stderr, phases=phases)
    print(table(
        f"Replay vs oracle frontier: B = {args.budget:g}, medians over {seeds} seeds; "
        "overshoot and excess in x median (excess: minus the frontier at the calls spent)",
        HEADER, rows,
    ))
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
