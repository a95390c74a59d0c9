"""The retry policy: which errors are retried, how long to wait, and the retry budget.

Retries happen in exactly one layer, the transport, which wraps each call's attempt
with :meth:`RetryPolicy.wrap` (built on :func:`backoff.on_exception`).

* Retried: errors whose ``retryable`` is true: 67200002 (rate), 67200100 (busy),
  68300008 (service), HTTP 5xx, timeouts, connection faults, non-JSON bodies.
* Never retried: everything else, and above all the ``fatal`` ones (auth, permission,
  quota, balance, expired client).
* Waits: full jitter, ``uniform(0, min(cap, base * 2**(n-1)))`` before retry ``n``;
  when the platform sends ``Retry-After``, that many seconds plus ``uniform(0, base)``.
* Budget: a client-wide token bucket (botocore's standard mode). A retry takes
  ``retry_cost`` tokens (``timeout_cost`` after a timeout), a success gives back
  ``success_refund``. With the bucket empty errors surface at once, so a throttling
  storm cannot multiply traffic.

All options are documented on :class:`~fto_async.config.RetryConfig`.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Generator, Iterator, Sequence
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

import attrs
import backoff

from .config import RetryConfig
from .errors import FtoError, RequestTimeout

__all__ = ["RetryBudget", "RetryEvent", "RetryHook", "RetryPolicy", "retries_limited"]

P = ParamSpec("P")
T = TypeVar("T")

log = logging.getLogger("fto_async.retry")


@attrs.frozen
class RetryEvent:
    """One retry about to happen, as passed to retry hooks.

    Attributes:
        path: the endpoint path of the call.
        attempt: the attempt that just failed (1-based).
        error: why it failed.
        wait: seconds before the next attempt.
    """

    path: str
    attempt: int
    error: FtoError
    wait: float

    @property
    def code(self) -> int | None:
        """The platform error code, if the failure carried one."""
        code = getattr(self.error, "code", None)
        return code if isinstance(code, int) else None


RetryHook = Callable[[RetryEvent], None]

#: Retries allowed to the calls of the current context (``None``: the policy's own).
_MAX_RETRIES: ContextVar[int | None] = ContextVar("fto_max_retries", default=None)


@contextlib.contextmanager
def retries_limited(max_retries: int | None) -> Iterator[None]:
    """Calls made inside the block (and in tasks it starts) retry at most ``max_retries``
    times, whatever :attr:`~fto_async.config.RetryConfig.max_attempts` says (the budget
    and ``max_time`` still apply); ``0``: a retryable error surfaces at once. ``None``
    changes nothing (an enclosing block's limit stays). ``FtoClient.with_options`` uses it.
    """
    if max_retries is None:
        yield
        return
    token = _MAX_RETRIES.set(max_retries)
    try:
        yield
    finally:
        _MAX_RETRIES.reset(token)


class RetryBudget:
    """The client-wide retry quota (botocore standard mode), private to one client.

    Example::

        budget = RetryBudget(500)
        if budget.withdraw(5):
            ...  # retry
        budget.refund(1)  # after a success
    """

    __slots__ = ("capacity", "tokens")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.tokens = capacity

    def withdraw(self, cost: int) -> bool:
        """Take ``cost`` tokens for one retry; False (and take nothing) if too few are left."""
        if cost > self.tokens:
            return False
        self.tokens -= cost
        return True

    def refund(self, amount: int) -> None:
        """Give back ``amount`` tokens, up to the capacity."""
        if self.tokens < self.capacity:
            self.tokens = min(self.capacity, self.tokens + amount)

    def __repr__(self) -> str:
        return f"<RetryBudget {self.tokens}/{self.capacity}>"


class RetryPolicy:
    """Decides, waits and counts retries for one client.

    Args:
        config: see :class:`~fto_async.config.RetryConfig`.
        hooks: called with a :class:`RetryEvent` before each retry's wait.
        rng: ``random.random``-like source for jitter (injectable for tests).
    """

    def __init__(
        self,
        config: RetryConfig | None = None,
        *,
        hooks: Sequence[RetryHook] = (),
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.config = config or RetryConfig()
        self.budget = RetryBudget(self.config.budget)
        self.hooks = list(hooks)
        self._rng = rng
        #: Retries performed so far.
        self.retries = 0
        #: Retries refused because the budget was empty.
        self.budget_refusals = 0

    def _waits(self) -> Generator[float, Any, None]:
        """backoff wait generator: receives each failure, yields the wait or stops."""
        cfg = self.config
        exc = yield 0.0
        attempt = 0
        while True:
            attempt += 1
            cost = cfg.timeout_cost if isinstance(exc, RequestTimeout) else cfg.retry_cost
            if not self.budget.withdraw(cost):
                self.budget_refusals += 1
                log.warning("retry budget empty: not retrying %s", exc)
                return  # StopIteration: backoff gives up and raises the error
            retry_after = getattr(exc, "retry_after", None)
            if isinstance(retry_after, int | float) and retry_after >= 0:
                wait = float(retry_after) + self._rng() * cfg.base
            else:
                wait = self._rng() * min(cfg.cap, cfg.base * 2 ** (attempt - 1))
            exc = yield wait

    @staticmethod
    def _giveup(exc: Exception) -> bool:
        return not (isinstance(exc, FtoError) and exc.retryable)

    def _on_backoff(self, details: Any) -> None:
        self.retries += 1
        exc = details["exception"]
        path = details["args"][0] if details.get("args") else "?"
        event = RetryEvent(
            path=str(path), attempt=details["tries"], error=exc, wait=details["wait"]
        )
        log.info(
            "retrying %s after attempt %d (%s); waiting %.2f s",
            event.path, event.attempt, exc, event.wait,
        )
        for hook in self.hooks:
            hook(event)

    def _on_success(self, _details: Any) -> None:
        self.budget.refund(self.config.success_refund)

    def wrap(self, attempt: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        """Wrap one attempt coroutine function so that calling it retries as configured.

        The wrapped function's first positional argument must be the endpoint path
        (it names the call in retry events). The first attempt runs outside the
        backoff machinery (the common case costs nothing extra); a retryable failure
        hands over to :func:`backoff.on_exception`, which counts that failure as
        attempt 1 (``max_time`` counts from then).
        """

        async def replay(*args: Any, _first: list[FtoError], **kwargs: Any) -> T:
            if _first:
                raise _first.pop()
            return await attempt(*args, **kwargs)

        retrying = backoff.on_exception(
            self._waits,
            FtoError,
            max_tries=self._max_attempts,
            max_time=self.config.max_time,
            jitter=None,  # the wait generator applies the jitter itself
            giveup=self._giveup,
            on_backoff=self._on_backoff,
            on_success=self._on_success,
            logger=None,
        )(replay)

        async def call(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                result = await attempt(*args, **kwargs)
            except FtoError as exc:
                if not exc.retryable or self._max_attempts() <= 1:
                    raise
                return await retrying(*args, _first=[exc], **kwargs)
            self.budget.refund(self.config.success_refund)
            return result

        return call

    def _max_attempts(self) -> int:
        """Attempts per call: the context's :func:`retries_limited`, else the config's."""
        limit = _MAX_RETRIES.get()
        return self.config.max_attempts if limit is None else limit + 1

    def __repr__(self) -> str:
        return f"<RetryPolicy retries={self.retries} budget={self.budget.tokens}>"
