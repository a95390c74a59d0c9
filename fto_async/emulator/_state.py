"""The emulator's mutable state: tokens, tasks, quota counters, QPS windows and sleeps.

Strictly private. Everything runs on one event loop, so no locks are needed: each check
and the update that follows it happen without an ``await`` in between.
"""

from __future__ import annotations

import asyncio
import math
import random
import secrets
import time
import uuid
from collections import Counter, deque
from typing import Final

import attrs
from aiohttp import web

from ._config import EmulatorConfig
from ._reports import ReportInputs
from ._stats import EmulatorStats, SubmitRecord

__all__ = ["STATE_KEY", "EmulatorState", "Task"]

_SECONDS_PER_DAY: Final = 86400


@attrs.define(slots=True, eq=False, kw_only=True)
class Task:
    """One submitted task (private).

    Attributes:
        task_id: A uuid4 string.
        account: The client_id or ``sk-`` key that owns it.
        kind: ``"image-search"`` or ``"workflow"``.
        inputs: What the report depends on (image identity, countries, language, filters).
        created_at: Event-loop time of creation.
        ready_at: Event-loop time from which the result is available.
        created_wall_ms: Wall-clock creation time in epoch milliseconds.
        will_fail: True when the task ends with ``task_status`` 3.
    """

    task_id: str
    account: str
    kind: str
    inputs: ReportInputs
    created_at: float
    ready_at: float
    created_wall_ms: int
    will_fail: bool


@attrs.define(slots=True, frozen=True)
class _Token:
    client_id: str
    expires_at: float


class EmulatorState:
    """Accounts, tokens, tasks, counters and the seeded RNG of one emulator (private)."""

    __slots__ = (
        "_balance_used",
        "_daily",
        "_sleepers",
        "_tokens",
        "_totals",
        "_windows",
        "closing",
        "config",
        "images",
        "rng",
        "stats",
        "tasks",
        "throttled_429",
    )

    def __init__(self, config: EmulatorConfig) -> None:
        """Create empty state for ``config``."""
        self.config = config
        self.rng = random.Random(config.seed)
        self.stats = EmulatorStats()
        self.tasks: dict[str, Task] = {}
        self.images: dict[str, tuple[bytes, str]] = {}
        self.closing = False
        self.throttled_429 = 0  # bare HTTP 429 answers so far (they alternate in shape)
        self._tokens: dict[str, _Token] = {}
        self._windows: dict[str, deque[float]] = {}
        self._daily: dict[str, list[int]] = {}
        self._totals: Counter[str] = Counter()
        self._balance_used: Counter[str] = Counter()
        self._sleepers: set[asyncio.Future[None]] = set()

    def __repr__(self) -> str:
        """Show the sizes, never a token."""
        return (
            f"<EmulatorState tokens={len(self._tokens)} tasks={len(self.tasks)} "
            f"closing={self.closing}>"
        )

    def reconfigure(self, config: EmulatorConfig) -> None:
        """Switch to ``config``; a new ``seed`` re-seeds the RNG."""
        if config.seed != self.config.seed:
            self.rng = random.Random(config.seed)
        self.config = config

    # -- tokens -------------------------------------------------------------------------------

    def issue_token(self, client_id: str, now: float) -> str:
        """Create a token for ``client_id`` valid for ``token_ttl`` real seconds from ``now``."""
        token = secrets.token_urlsafe(24)
        self._tokens[token] = _Token(client_id, now + self.config.token_ttl)
        return token

    def token_owner(self, token: str, now: float) -> str | None:
        """Return the client_id of a live ``token``, or None if unknown or expired."""
        record = self._tokens.get(token)
        if record is None:
            return None
        if now >= record.expires_at:
            del self._tokens[token]
            return None
        return record.client_id

    def expire_tokens(self) -> int:
        """Invalidate every issued token and return how many there were."""
        count = len(self._tokens)
        self._tokens.clear()
        return count

    # -- admission ----------------------------------------------------------------------------

    def admit(self, account: str, now: float) -> int:
        """Apply the quotas and the QPS window to one business call.

        Args:
            account: The client_id or ``sk-`` key.
            now: The event-loop time.

        Returns:
            0 when admitted (the call is then counted), else 67200001 (total limit), 67200007
            (daily limit) or 67200002 (QPS); a refused call is not counted anywhere.
        """
        config = self.config
        if config.total_limit is not None and self._totals[account] >= config.total_limit:
            return 67200001
        day = int(time.time() // _SECONDS_PER_DAY)
        daily = self._daily.get(account)
        if daily is None or daily[0] != day:
            daily = self._daily[account] = [day, 0]
        if config.daily_limit is not None and daily[1] >= config.daily_limit:
            return 67200007
        if config.qps is not None:
            window = self._windows.get(account)
            if window is None:
                window = self._windows[account] = deque()
            cutoff = now - 1.0
            while window and window[0] <= cutoff:
                window.popleft()
            if len(window) + 1 > config.qps:
                return 67200002
            window.append(now)
        self._totals[account] += 1
        daily[1] += 1
        self.stats.record_admitted(account, now)
        return 0

    def has_balance(self, account: str) -> bool:
        """Return whether ``account`` may still create a task (see ``balance``)."""
        balance = self.config.balance
        return balance is None or self._balance_used[account] < balance

    def spend_balance(self, account: str) -> None:
        """Count one task-creating submit of ``account`` against its ``balance``."""
        self._balance_used[account] += 1

    # -- tasks --------------------------------------------------------------------------------

    def submit_delay(self) -> float:
        """Draw the latency of one submit: ``submit_latency`` +-20%, times ``time_scale``."""
        config = self.config
        base = config.submit_latency * config.time_scale
        if base <= 0:
            return 0.0
        return base * self.rng.uniform(0.8, 1.2)

    def create_task(
        self,
        *,
        account: str,
        kind: str,
        inputs: ReportInputs,
        now: float,
        ambiguous: bool = False,
        unanswered: bool = False,
    ) -> Task:
        """Create and record a task; its duration and outcome are drawn from the RNG.

        Args:
            account: The owner.
            kind: ``"image-search"`` or ``"workflow"``.
            inputs: What the report depends on.
            now: The event-loop time of creation.
            ambiguous: Whether the submit will be answered 67200100 (recorded in the stats).
            unanswered: Whether the client already closed the connection (recorded too).

        Returns:
            The new task.
        """
        config = self.config
        rng = self.rng
        duration = config.task_duration
        if kind == "workflow" and config.workflow_task_duration is not None:
            duration = config.workflow_task_duration
        if config.task_duration_sigma > 0:
            duration *= math.exp(rng.gauss(0.0, config.task_duration_sigma))
        will_fail = config.fail_rate > 0 and rng.random() < config.fail_rate
        task = Task(
            task_id=str(uuid.uuid4()),
            account=account,
            kind=kind,
            inputs=inputs,
            created_at=now,
            ready_at=now + duration * config.time_scale,
            created_wall_ms=int(time.time() * 1000),
            will_fail=will_fail,
        )
        self.tasks[task.task_id] = task
        self.stats.submits.append(
            SubmitRecord(task.task_id, account, kind, inputs.image, ambiguous, now, unanswered)
        )
        return task

    # -- sleeping -----------------------------------------------------------------------------

    async def sleep(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or less if the emulator shuts down meanwhile."""
        if delay <= 0 or self.closing:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        handle = loop.call_later(delay, _wake, future)
        self._sleepers.add(future)
        try:
            await future
        finally:
            handle.cancel()
            self._sleepers.discard(future)

    def wake_all(self) -> None:
        """End every pending :meth:`sleep` now and make later ones return at once."""
        self.closing = True
        for future in self._sleepers:
            _wake(future)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


#: Where an app created by ``create_app`` keeps its state.
STATE_KEY: Final = web.AppKey("fto_emulator_state", EmulatorState)
