"""Private: is the platform there at all? One counter, fed by the transport.

A platform that cannot be reached (connection refused, a server that accepts and never
answers) or a server that is not the platform (an HTML page for every call) would
otherwise make a batch try every row, each with its retries: hours refused, days
against a black hole. :class:`Reachability` watches every attempt of one client and
turns such a run into one fatal error, early:

* **unreachable**: at least ``ClientConfig.unreachable_attempts`` attempts got no answer
  *and* ``ClientConfig.unreachable_after`` seconds passed since the first of them, with
  not a single HTTP answer (of any status) in between. Both must hold (whichever comes
  later), so a burst of failures in a short blip, or one slow attempt, never stops a
  batch. Then each attempt that gets no answer raises
  :class:`~fto_async.errors.PlatformUnreachableError` instead of its own error, until an
  answer comes.
* **not the platform**: ``ClientConfig.not_platform_after`` whole answers in a row that
  are not JSON, while no answer of this client was ever a JSON envelope, raise
  :class:`~fto_async.errors.NotThePlatformError`. Once an envelope has been seen, HTML
  answers are the platform's gateway having a bad moment: ordinary retryable errors.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from .errors import NotThePlatformError, PlatformUnreachableError, TransportError

__all__ = ["Reachability", "loop_time"]


def loop_time() -> float:
    """The running event loop's clock: the one aiohttp's timeouts count on (outside a
    loop, ``time.monotonic()``, which a default loop's clock equals). The time an attempt
    started and the time since the first unanswered one are read on it, so "0.5 s without
    an answer" means the same seconds as the request timeout that produced it."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()


class Reachability:
    """Private: counts attempts without an answer since the last answer (see the module).

    Args:
        url: the platform URL, for messages (already redacted).
        after: seconds, ``ClientConfig.unreachable_after``.
        attempts: ``ClientConfig.unreachable_attempts``.
        not_platform_after: ``ClientConfig.not_platform_after``.
        clock: seconds, :func:`loop_time` (injectable for tests).
    """

    __slots__ = ("_after", "_attempts", "_clock", "_failures", "_non_json", "_not_platform",
                 "_since", "envelope_seen", "url")  # fmt: skip

    def __init__(
        self,
        url: str,
        *,
        after: float,
        attempts: int,
        not_platform_after: int,
        clock: Callable[[], float] = loop_time,
    ) -> None:
        self.url = url
        self._after = after
        self._attempts = attempts
        self._not_platform = not_platform_after
        self._clock = clock
        self._failures = 0  # attempts without an answer since the last answer
        self._since: float | None = None  # when the first of them started
        self._non_json = 0  # whole non-JSON answers in a row
        #: Whether any answer of this client was a JSON envelope (the platform is there).
        self.envelope_seen = False

    def answered(self) -> None:
        """An HTTP answer (its status line) came back."""
        self._failures = 0
        self._since = None

    def body(self, *, envelope: bool) -> None:
        """A whole body came back; ``envelope``: it is a JSON object."""
        if envelope:
            self.envelope_seen = True
            self._non_json = 0
        else:
            self._non_json += 1

    def check_answer(self, *, ambiguous: bool = False) -> NotThePlatformError | None:
        """The fatal error to raise after a non-JSON answer, if it is time.

        ``ambiguous``: the answer itself leaves a submit's outcome unknown (an HTML 5xx
        page may come from a gateway in front of the platform); the error keeps it so.
        """
        if self.envelope_seen or self._non_json < self._not_platform:
            return None
        return NotThePlatformError(
            f"cannot reach {self.url}: {self._non_json} answers in a row were not the "
            "platform's JSON (an HTML page?); check --base-url / PATSNAP_BASE_URL",
            url=self.url, request_sent=ambiguous,
        )

    def unanswered(self, started: float, error: TransportError) -> PlatformUnreachableError | None:
        """An attempt that started at ``started`` got no answer (``error``); the fatal error
        to raise instead, if it is time."""
        self._failures += 1
        if self._since is None or started < self._since:
            self._since = started
        waited = self._clock() - self._since
        if self._failures < self._attempts or waited < self._after:
            return None
        return PlatformUnreachableError(
            f"cannot reach {self.url}: no answer to {self._failures} attempts in "
            f"{waited:.1f} s (last: {error})",
            url=self.url, request_sent=error.request_sent,
        )

    def __repr__(self) -> str:
        return (f"<Reachability failures={self._failures} non_json={self._non_json} "
                f"envelope_seen={self.envelope_seen}>")  # fmt: skip
