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
- 1)`` (0.83 for the default 2.2: the optimal shape for a known lognormal; a cold
cohort pays its scouts out of its own calls). That age is multiplied by
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
a due poll does not wait behind queued submits, though polls take at most 3 admissions
in 4 while submits wait, so submission never stalls. ``PollConfig(order="makespan")``
sends them without priority (a per-poll context variable, :func:`poll_priority`, read
by the client). A task past its deadline
(``PollConfig.timeout`` after its submit) ends with
:class:`~fto_async.errors.TaskTimeoutError`.

The package, one job per module::

    _durations   the learnt durations (Turnbull's estimate), first_age and next_age
    _scheduler   PendingTask and PollScheduler (the batch's due-time heap)
    _poller      one task: wait_for_task and TaskPoller
"""

from ._durations import TaskDurations, first_age, next_age
from ._poller import ReportSource, TaskPoller, wait_for_task
from ._scheduler import Deliver, Fetch, PendingTask, PollScheduler, poll_priority

__all__ = [
    "Deliver",
    "Fetch",
    "PendingTask",
    "PollScheduler",
    "ReportSource",
    "TaskDurations",
    "TaskPoller",
    "first_age",
    "next_age",
    "poll_priority",
    "wait_for_task",
]
