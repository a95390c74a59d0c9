"""The poll reserve: under a call budget, calls kept back to read the tasks already paid.

With ``max_calls`` or ``daily_limit`` set (:class:`~fto_async.config.RateConfig`), the
client's rate gate refuses any call past the budget: a hard ceiling, spent exactly. A
ceiling alone strands paid tasks: submits spend the last calls, and the polls of the
tasks they paid for are refused. So above it, :class:`PollReserve` (one per client,
``client.poll_reserve``) decides whether a new task may be paid for. A new item's
submit starts only while

    calls left >= its own cost + polls reserved for every open task and for its own

where the calls left are the tighter of the gate's two budgets, an open task is one
paid (or being paid) and not read yet, by any caller of the client (``screen``,
``screen_many``, follow-ups), its cost is a submit (and an upload for a local image),
and the polls reserved per task come from the learnt task durations: ``POLLS_KNOWN``
once the durations of its kind are known (the scheduler aims one poll at the learnt
quantile; one spare), else ``POLLS_UNKNOWN`` (scouting), and never fewer than one more
than the most polls a task of this client has needed.

A submit that does not fit waits while tasks are open (each gives its reserve back when
it is read); when nothing is open and it still does not fit, it is refused with
:class:`~fto_async.errors.BudgetExhaustedError` before any call: a batch stops cleanly
(what it paid for is read), ``screen`` raises. Polls are never held back: the reserve
is for them. A reserve is an estimate, not a bound: a task that needs more polls than
reserved can still meet the gate's ceiling (then the next process with a budget left
reads it: its task id is in the journal or the cache key).

The CLI's ``--max-calls`` (:mod:`fto_async.cli._budget`) decides which catalog rows to
read with this same rule (:meth:`PollReserve.fits` with its own count of open rows).
Strictly private.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from .errors import BudgetExhaustedError
from .polling import TaskDurations

__all__ = ["POLLS_KNOWN", "POLLS_UNKNOWN", "PollReserve"]

POLLS_KNOWN = 2.0  #: polls reserved per task once its kind's durations are known
POLLS_UNKNOWN = 6.0  #: polls reserved per task while they are not (scouting)


class PollReserve:
    """Private: the client's open tasks and the calls their polls need (see above)."""

    __slots__ = ("_changed", "_durations", "_gate", "most_polls", "open", "refused")

    def __init__(self, gate: Any, durations: TaskDurations) -> None:
        self._gate = gate
        self._durations = durations
        self._changed: asyncio.Event | None = None
        self.open = 0  #: tasks paid (or being paid) and not read yet
        self.most_polls = 0  #: the most polls a task read by this client needed
        self.refused = 0  #: submits refused because the calls left are kept for polls

    def calls_left(self) -> tuple[int, str] | None:
        """The calls left under the tighter budget, and its name (``None``: no budget)."""
        left = [(n, name) for name in ("max_calls", "daily_limit")
                if (n := getattr(self._gate, _REMAINING[name], None)) is not None]  # fmt: skip
        return min(left) if left else None

    def polls_per_task(self, kind: str) -> float:
        """Polls reserved for one task of ``kind``."""
        base = POLLS_KNOWN if self._durations.known(kind) else POLLS_UNKNOWN
        return max(base, self.most_polls + 1.0)

    def needed(self, kind: str, cost: int, open_tasks: int | None = None) -> int:
        """Calls a new task costing ``cost`` needs left: its cost and the polls of every
        open task (``open_tasks``, default the client's) and of its own."""
        n = self.open if open_tasks is None else open_tasks
        return cost + math.ceil((n + 1) * self.polls_per_task(kind))

    def fits(self, kind: str, cost: int, open_tasks: int | None = None) -> bool:
        """Whether a new task of ``kind`` costing ``cost`` calls (and its polls) fits now."""
        left = self.calls_left()
        return left is None or self.needed(kind, cost, open_tasks) <= left[0]

    async def claim(self, kind: str, cost: int) -> None:
        """Hold the reserve of one new task: wait while it does not fit and tasks are
        open; refuse when nothing is open.

        Raises:
            BudgetExhaustedError: the calls left are needed by the open tasks (none
                open: they would not even poll this one). Nothing was sent.
        """
        while not self.fits(kind, cost):
            if self.open == 0:
                self.refused += 1
                left = self.calls_left()
                assert left is not None
                raise BudgetExhaustedError(
                    f"{left[1]} budget: {left[0]} calls left, a new task needs "
                    f"{self.needed(kind, cost)} (its submit and the polls kept to read it); "
                    "nothing was sent", budget=left[1],
                )  # fmt: skip
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()
        self.open += 1

    def hold(self) -> None:
        """A task already paid (resumed, or handed over) will be polled: keep its polls."""
        self.open += 1

    def release(self, polls: int = 0) -> None:
        """A task held here was read after ``polls`` polls (or will not be polled here):
        its reserve comes back."""
        self.open -= 1
        self.most_polls = max(self.most_polls, polls)
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def __repr__(self) -> str:
        left = self.calls_left()
        shown = "no budget" if left is None else f"{left[0]} calls left ({left[1]})"
        return f"<PollReserve open={self.open} {shown} refused={self.refused}>"


_REMAINING = {"max_calls": "remaining_calls", "daily_limit": "remaining_today"}
