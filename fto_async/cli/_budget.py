"""``screen --max-calls N`` (or ``PATSNAP_MAX_CALLS``): a run that never spends more than N.

Three layers. The client's rate gate holds the hard ceiling (``RateConfig.max_calls``):
a call past N is refused before it is sent. The client's poll reserve
(:mod:`fto_async._reserve`, the library's rule) starts a new task only while the calls
left also read the tasks already paid. Above both, :class:`CallBudget` decides when the
run stops taking new rows, by that same rule (:meth:`~fto_async._reserve.PollReserve.fits`)
with its own count of open items: a new row is read only while

    its own cost + polls reserved for every open item and for its own <= calls left

where an open item is one handed to the batch and not ended yet (paid or about to be),
its cost is a submit (and an upload for a local image), and the polls reserved per task
are the reserve's (learnt durations; see :mod:`fto_async._reserve`). A reserve is an
estimate, not a bound: a task that needs more polls than reserved can still meet the
gate's ceiling, and is then polled by the next run (the message says how many). While
items are open, a row that does not fit waits for them to end (their reserve comes
back); when nothing is open and it still does not fit, the run stops reading: the tasks
already paid are polled within N, and the rest stays ``pending`` for the next run (exit
code 4, with the resume command). N counts the calls
to business paths (uploads included); ``/oauth/token`` requests, which the platform
does not bill, are not counted. Strictly private.
"""

from __future__ import annotations

import asyncio

from .._kinds import KINDS
from .._reserve import POLLS_KNOWN, POLLS_UNKNOWN
from ..client import FtoClient
from ..config import DEFAULT_WORKFLOW_RESULT_PATH
from ..journal import Journal
from ..polling import TaskDurations

__all__ = ["POLLS_KNOWN", "POLLS_UNKNOWN", "CallBudget", "budget_spent", "polls_per_task"]

_WAKE = 0.02  #: seconds between looks while a row waits for open items to end
_LEDGER_MIN = 5  #: submits the ledger must hold before its polls per task are believed
_SUBMITS = frozenset(k.submit_path for k in KINDS.values() if k.name != "one_vs_one")
_REPORTS = frozenset({*(k.result_path for k in KINDS.values() if k.name != "one_vs_one"),
                      DEFAULT_WORKFLOW_RESULT_PATH})  # fmt: skip


def polls_per_task(journal: Journal | None) -> tuple[float, str]:
    """Polls a task is expected to cost, and where the figure comes from (``--dry-run``):
    the journal's call ledger (report calls per submit answered) once it holds
    ``_LEDGER_MIN`` submits, else one (the scheduler's aim; a first run, with no learnt
    durations, scouts and polls more: the text says so)."""
    if journal is not None:
        lines = journal.calls()
        submits = sum(c.n for c in lines if c.path in _SUBMITS and c.result == "answered")
        polls = sum(c.n for c in lines if c.path in _REPORTS and c.result != "unanswered")
        if submits >= _LEDGER_MIN:
            return polls / submits, "from the journal's call ledger"
        durations = TaskDurations()
        durations.restore(journal.load_durations())
        if durations.known("image_search") or durations.known("workflow"):
            return 1.0, "the learnt task durations aim each task's first poll"
    return 1.0, "the scheduler's aim; no learnt durations yet: a first run scouts, more"


class CallBudget:
    """The ``--max-calls`` budget of one run (see the module docstring)."""

    __slots__ = ("client", "ended", "limit", "opened", "stopped")

    def __init__(self, client: FtoClient, limit: int) -> None:
        self.client = client
        self.limit = limit
        self.opened = 0  # items handed to the batch
        self.ended = 0  # outcomes received
        self.stopped = False  # a row did not fit: the run reads no new rows

    def ended_one(self, polls: int) -> None:
        """An outcome came back, after ``polls`` polls in this run (the client's
        reserve has counted them already, as its task was read)."""
        self.ended += 1
        reserve = self.client.poll_reserve
        reserve.most_polls = max(reserve.most_polls, polls)

    @property
    def used(self) -> int:
        """Calls that passed the gate in this run (the gate's own count)."""
        return self.client.stats.calls

    @property
    def most_polls(self) -> int:
        """The most polls a task read by this client needed."""
        return self.client.poll_reserve.most_polls

    def polls_per_task(self, kind: str) -> float:
        """Polls reserved per task of ``kind`` (the client's reserve's rule)."""
        return self.client.poll_reserve.polls_per_task(kind)

    def fits(self, kind: str, cost: int) -> bool:
        """Whether a new row costing ``cost`` calls (and its polls) fits now."""
        open_items = max(0, self.opened - self.ended)
        return self.client.poll_reserve.fits(kind, cost, open_items)

    async def admit(self, kind: str, cost: int) -> bool:
        """Wait until a new row fits; ``False`` (for good) when it cannot."""
        if self.stopped:
            return False
        while not self.fits(kind, cost):
            if self.opened <= self.ended:  # nothing open: no reserve will come back
                self.stopped = True
                return False
            await asyncio.sleep(_WAKE)
        return True

    def __repr__(self) -> str:
        return (f"<CallBudget {self.used}/{self.limit} open={self.opened - self.ended}"
                f"{' stopped' if self.stopped else ''}>")  # fmt: skip


def budget_spent(budget: CallBudget, left: int, unpolled: int, resume: str) -> str:
    """What the run says when the budget ended it (exit code 4)."""
    paid = (f"; {unpolled} paid tasks still to poll (the next run polls them, no new submit)"
            if unpolled else "; every paid task was polled")  # fmt: skip
    return (f"call budget reached: {budget.used} of {budget.limit} calls used (--max-calls "
            f"or PATSNAP_MAX_CALLS); {left} rows left{paid}. Resume with the same command "
            f"(a new budget of {budget.limit} calls):\n  {resume}")
