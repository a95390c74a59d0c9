"""What the emulator saw: calls by path and code, attempts on arrival, submits, polls and
admission times."""

from __future__ import annotations

from collections import Counter
from typing import Any

import attrs

__all__ = ["CODE_DROPPED", "EmulatorStats", "SubmitRecord"]

#: Code recorded for a call whose connection was closed without any response.
CODE_DROPPED = -1


@attrs.define(frozen=True, slots=True)
class SubmitRecord:
    """One task the emulator created.

    Attributes:
        task_id: The task's id.
        account: The client_id or ``sk-`` key that created it.
        kind: ``"image-search"`` or ``"workflow"``.
        image: The image identity: the url, or ``sha256:<hex>`` of the base64 text.
        ambiguous: True when the submit was answered 67200100 although the task was created.
        at: The event-loop time of creation.
        unanswered: True when the client had closed the connection before the task was
            created (it gave up, e.g. a timeout, after the emulator had read the body): the
            answer reached nobody, so a retry of that client may create a second task.
    """

    task_id: str
    account: str
    kind: str
    image: str
    ambiguous: bool
    at: float
    unanswered: bool = False


class EmulatorStats:
    """Live counters of one emulator, for tests and benchmarks.

    Admin routes (``/_emulator/*``) are never counted. Codes are the ``error_code`` (0 for
    success), :data:`CODE_DROPPED` (-1) for a dropped connection, or the HTTP status of an
    answer without an envelope (502 HTML page, 503, 200 truncated JSON, 422 validation).

    Example::

        async with Emulator(EmulatorConfig(qps=5)) as emu:
            ...
            assert emu.stats.max_attempts_in_window("demo-client") <= 5  # sent, not admitted
            assert emu.stats.count(code=67200002) == 0
            assert emu.stats.count("/ai/image-search/submit", 0) == 3

    ``calls`` counts a call when its answer is ready (a cancelled call whose handler is
    still running is not in it yet); ``attempts`` counts it on arrival, before any check,
    rejected or not. A client's pacing is judged on attempts: admitted calls can never
    exceed the emulator's own limit, whatever the client sends.

    Attributes:
        calls: Counter of (path, code).
        token_requests: Number of ``/oauth/token`` requests, successful or not.
        submits: Every created task, in creation order.
        admitted_times: Account -> event-loop time of every admitted business call.
        attempts: Counter of business paths, counted on arrival (rejected calls too).
        attempt_times: Account -> event-loop arrival time of every business call, rejected
            or not (``""`` for a call whose account could not be identified).
        in_flight: Business calls that arrived and have no answer yet.
        polls_by_task: task_id -> number of result polls for that task.
        task_ends: task_id -> event-loop time at which the task ended (its result ready).
        seen_done: task_id -> event-loop time of the first poll that saw it ended.
    """

    __slots__ = (
        "admitted_times",
        "attempt_times",
        "attempts",
        "calls",
        "in_flight",
        "polls_by_task",
        "seen_done",
        "submits",
        "task_ends",
        "token_requests",
    )

    def __init__(self) -> None:
        """Start with every counter at zero."""
        self.reset()

    def reset(self) -> None:
        """Set every counter back to zero (the emulator's tasks and quotas are kept)."""
        self.calls: Counter[tuple[str, int]] = Counter()
        self.token_requests = 0
        self.submits: list[SubmitRecord] = []
        self.admitted_times: dict[str, list[float]] = {}
        self.attempts: Counter[str] = Counter()
        self.attempt_times: dict[str, list[float]] = {}
        self.in_flight = 0
        self.polls_by_task: Counter[str] = Counter()
        self.task_ends: dict[str, float] = {}
        self.seen_done: dict[str, float] = {}

    def record_poll(self, task_id: str, ends_at: float, now: float) -> None:
        """Count one result poll of ``task_id`` (ending at ``ends_at``) answered at ``now``."""
        self.polls_by_task[task_id] += 1
        self.task_ends[task_id] = ends_at
        if now >= ends_at and task_id not in self.seen_done:
            self.seen_done[task_id] = now

    def overshoots(self) -> list[float]:
        """Seconds from each task's end to the first poll that saw it ended, sorted."""
        return sorted(t - self.task_ends[k] for k, t in self.seen_done.items())

    def overshoot_summary(self) -> dict[str, float | int | None]:
        """``n``, ``p50``, ``p90``, ``max`` of :meth:`overshoots` (seconds), ``last_end``
        (the latest end of a task seen ended) and ``tail`` (from that end to the last
        poll that saw a task ended)."""
        values = self.overshoots()
        if not values:
            return {"n": 0, "p50": None, "p90": None, "max": None, "last_end": None,
                    "tail": None}
        last_end = max(self.task_ends[k] for k in self.seen_done)
        return {
            "n": len(values),
            "p50": values[len(values) // 2],
            "p90": values[min(len(values) - 1, int(0.9 * len(values)))],
            "max": values[-1],
            "last_end": last_end,
            "tail": max(self.seen_done.values()) - last_end,
        }

    def __repr__(self) -> str:
        """Show the totals."""
        return (
            f"<EmulatorStats calls={self.calls.total()} tokens={self.token_requests} "
            f"submits={len(self.submits)} polls={self.polls_by_task.total()}>"
        )

    def record_call(self, path: str, code: int) -> None:
        """Count one answered (or dropped) call."""
        self.calls[path, code] += 1

    def record_admitted(self, account: str, at: float) -> None:
        """Note that a business call of ``account`` was admitted at loop time ``at``."""
        times = self.admitted_times.get(account)
        if times is None:
            self.admitted_times[account] = [at]
        else:
            times.append(at)

    def record_attempt(self, path: str, account: str, at: float) -> None:
        """Note that a business call to ``path`` of ``account`` arrived at loop time ``at``."""
        self.attempts[path] += 1
        self.attempt_times.setdefault(account, []).append(at)

    def count(self, path: str | None = None, code: int | None = None) -> int:
        """Return how many calls match ``path`` and ``code`` (``None`` matches any).

        Args:
            path: A request path such as ``"/ai/image-search/report"``.
            code: An error code, 0, -1 or an HTTP status (see the class docstring).

        Returns:
            The number of matching calls.
        """
        return sum(
            n
            for (p, c), n in self.calls.items()
            if (path is None or p == path) and (code is None or c == code)
        )

    def max_calls_in_window(self, account: str, window: float = 1.0) -> int:
        """Return the most admitted calls of ``account`` in any sliding window.

        A window holds the calls at times in ``(t - window, t]``, the rule the emulator's QPS
        check applies, so with ``qps`` set this never exceeds ``qps``: it describes the
        emulator, not the client (use :meth:`max_attempts_in_window` for that).

        Args:
            account: A client_id or ``sk-`` key.
            window: The window length in seconds.

        Returns:
            The maximum count, 0 when the account made no admitted call.
        """
        return _max_in_window(self.admitted_times.get(account, []), window)

    def max_attempts_in_window(self, account: str, window: float = 1.0) -> int:
        """Return the most calls ``account`` sent in any sliding window, rejected or not.

        Same windows as :meth:`max_calls_in_window`, over arrival times: a client that
        sends more than the limit shows here even though the emulator refused the excess.

        Args:
            account: A client_id or ``sk-`` key.
            window: The window length in seconds.

        Returns:
            The maximum count, 0 when no call of the account arrived.
        """
        return _max_in_window(self.attempt_times.get(account, []), window)

    def snapshot(self) -> dict[str, Any]:
        """Return a JSON-safe copy of every counter.

        Returns:
            A dict with ``calls`` (path -> {code as string -> count}), ``token_requests``,
            ``submits`` (list of records as dicts), ``tasks_created``, ``ambiguous_submits``,
            ``admitted`` (account -> count), ``max_calls_in_window`` (account -> count),
            ``attempts`` (path -> count on arrival), ``max_attempts_in_window`` (account ->
            count), ``in_flight``, ``polls_by_task``, ``overshoot`` (see
            :meth:`overshoot_summary`) and ``task_ends``.
        """
        calls: dict[str, dict[str, int]] = {}
        for (path, code), n in sorted(self.calls.items()):
            calls.setdefault(path, {})[str(code)] = n
        return {
            "calls": calls,
            "token_requests": self.token_requests,
            "submits": [attrs.asdict(record) for record in self.submits],
            "tasks_created": len(self.submits),
            "ambiguous_submits": sum(record.ambiguous for record in self.submits),
            "admitted": {account: len(t) for account, t in self.admitted_times.items()},
            "max_calls_in_window": {
                account: self.max_calls_in_window(account) for account in self.admitted_times
            },
            "attempts": dict(self.attempts),
            "max_attempts_in_window": {
                account: self.max_attempts_in_window(account) for account in self.attempt_times
            },
            "in_flight": self.in_flight,
            "polls_by_task": dict(self.polls_by_task),
            "overshoot": self.overshoot_summary(),
            "task_ends": dict(self.task_ends),
        }


def _max_in_window(times: list[float], window: float) -> int:
    """The most of ``times`` (ascending) in any half-open window ``(t - window, t]``."""
    best = 0
    start = 0
    for end, t in enumerate(times):
        while times[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best
