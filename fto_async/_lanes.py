"""Private: the classes of work a rate gate admits, and the order it admits them in.

Three classes (lanes), best first:

* ``POLL``: a due poll (``slot(path, priority=True)``, set by the poll scheduler): a task
  already paid whose report may be ready.
* ``STARTED``: the next step of work already started: a submit after its own upload, a
  follow-up of an item already screened, a submit tried again after a failed attempt.
* ``NEW``: new work, a new item's first call (the default).

A caller says which class its calls belong to with :func:`work_class` (a context
variable, so it holds for every call sent from the current task, retries included, and
for nothing else); a gate reads it in ``slot()`` when ``priority`` is false.

The order (:class:`LaneQueue`) is work-conserving: whenever the gate can admit a call
and someone waits, someone goes. It serves the best class waiting, with two anti-stall
caps so that no class waits for long:

* polls and started work together take at most 3 admissions in 4 while new work waits
  (then one new call goes);
* among those, polls take at most 3 in 4 while started work waits.

So, counted in admissions ahead of it once it is at the head of its lane, a poll waits
for at most 2 others (one started, one new), a started step for at most 4 (three polls
and one new), a new item's first call for at most 3. With all three lanes busy the
shares are 9/16 polls, 3/16 started work, 4/16 new work; a lane that is empty gives its
share to the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections import deque
from collections.abc import Iterator

__all__ = ["NEW", "POLL", "STARTED", "LaneQueue", "current_class", "work_class"]

POLL = 0  #: a due poll
STARTED = 1  #: the next step of work already started
NEW = 2  #: a new item's first call
_NAMES = ("poll", "started", "new")
_RUN = 3  # admissions of the better classes in a row while a worse one waits: then one of it

_CLASS: contextvars.ContextVar[int] = contextvars.ContextVar("fto_work_class", default=NEW)


def current_class() -> int:
    """The class of the calls the current task sends (``NEW`` unless set)."""
    return _CLASS.get()


@contextlib.contextmanager
def work_class(lane: int) -> Iterator[None]:
    """Send the calls made inside the block (from this task) in class ``lane``."""
    if lane not in (POLL, STARTED, NEW):
        raise ValueError(f"unknown work class {lane!r}")
    token = _CLASS.set(lane)
    try:
        yield
    finally:
        _CLASS.reset(token)


class LaneQueue:
    """Private: waiters (futures) in three FIFO lanes, served in the order above.

    ``head()`` names the lane to serve next (dropping waiters cancelled at the heads),
    ``pop(lane)`` takes its first waiter and counts the admission for the caps.
    """

    __slots__ = ("_run_better", "_run_poll", "lanes")

    def __init__(self) -> None:
        self.lanes: tuple[deque[asyncio.Future[None]], ...] = (deque(), deque(), deque())
        self._run_better = 0  # polls + started admitted in a row while new work waited
        self._run_poll = 0  # polls admitted in a row while started work waited

    def push(self, lane: int, waiter: asyncio.Future[None], *, front: bool = False) -> None:
        if front:
            self.lanes[lane].appendleft(waiter)
        else:
            self.lanes[lane].append(waiter)

    def __len__(self) -> int:
        return sum(len(lane) for lane in self.lanes)

    def __bool__(self) -> bool:
        return any(self.lanes)

    def head(self) -> int | None:
        """The lane whose first waiter goes next (``None``: nobody waits)."""
        for lane in self.lanes:
            while lane and lane[0].done():
                lane.popleft()
        poll, started, new = self.lanes
        if new and (not (poll or started) or self._run_better >= _RUN):
            return NEW
        if poll and (not started or self._run_poll < _RUN):
            return POLL
        if started:
            return STARTED
        return NEW if new else None

    def pop(self, lane: int) -> asyncio.Future[None]:
        """Take the first waiter of ``lane`` (as ``head()`` named it): it is admitted."""
        _, started, new = self.lanes
        if lane == NEW:
            self._run_better = 0
        else:
            self._run_better = self._run_better + 1 if new else 0
            self._run_poll = self._run_poll + 1 if lane == POLL and started else 0
        return self.lanes[lane].popleft()

    def better_waiting(self, lane: int) -> bool:
        """Whether a live waiter of a better class than ``lane`` waits."""
        return any(not f.done() for better in self.lanes[:lane] for f in better)

    def remove(self, lane: int, waiter: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            self.lanes[lane].remove(waiter)

    def counts(self) -> str:
        return " ".join(f"{n}={len(q)}" for n, q in zip(_NAMES, self.lanes, strict=True))
