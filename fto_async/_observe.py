"""What a client tells the outside about its work: hooks, OpenTelemetry, the call ledger.

One :class:`Observer` belongs to one client. The transport reports each attempt to it
(:meth:`Observer.attempt`), the client each poll and ``wait_*`` result, the batch each
task's life (:meth:`Observer.task_started` / :meth:`Observer.task_ended`) and the batch
itself. It fans each out to the :class:`~fto_async.hooks.Hooks`, to :mod:`._otel`, and
counts calls by ``(path, result, code)`` in :attr:`Observer.ledger` (the journal's call
ledger writes them per run).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from . import _otel
from .errors import FtoError
from .hooks import CallEvent, Hooks, PollEvent, ResultEvent, _HookRunner
from .retry import RetryEvent

__all__ = ["NULL_OBSERVER", "Attempt", "Observer", "observer_of"]

#: A ledger key: (path, "answered" | "refused" | "unanswered", code; 0 ok, -1 none).
LedgerKey = tuple[str, str, int]
_KEPT = 4096  # ended task spans kept for their follow-ups, at most


class Attempt:
    """One HTTP attempt: from the gate to its end (made by :meth:`Observer.attempt`)."""

    __slots__ = ("_obs", "_sent", "answered", "path", "resend", "span", "status", "went_out")

    def __init__(self, obs: Observer, path: str, resend: int) -> None:
        self._obs = obs
        self.path = path
        self.resend = resend
        self.span: Any = None  # started when the gate lets it go (begin)
        self._sent = 0.0
        self.status: int | None = None  # the HTTP status, once the answer came
        self.answered = False
        self.went_out = False

    @contextlib.asynccontextmanager
    async def slot(self, gate: Any, priority: bool) -> AsyncIterator[Any]:
        """``gate.slot(path)``, counting the callers waiting and the time waited."""
        entered = time.monotonic()
        _otel.waiting(1)
        admitted = False
        try:
            async with gate.slot(self.path, priority=priority) as permit:
                admitted = True
                _otel.waiting(-1)
                _otel.gate_waited(self.path, time.monotonic() - entered)
                yield permit
        finally:
            if not admitted:
                _otel.waiting(-1)

    def begin(self) -> None:
        """The attempt goes out now."""
        self._sent = time.monotonic()
        self.went_out = True
        obs = self._obs
        self.span = _otel.http_span(self.path, obs.server, obs.port, self.resend)

    def got_answer(self) -> None:
        self.answered = True

    def end(self, error: BaseException | None) -> None:
        """The attempt ended (``error``: why it failed); a no-op if it never went out."""
        if self.span is None:
            return
        span, self.span = self.span, None
        fto_error = error if isinstance(error, FtoError) else None
        answered = self.answered or self.status is not None
        if error is None:
            result, code = "answered", 0
        elif answered:
            found = getattr(error, "code", None)
            result, code = "refused", found if isinstance(found, int) else -1
        else:
            result, code = "unanswered", -1
        status = self.status if self.status is not None else getattr(error, "http_status", None)
        _otel.end_span(span, error, **{
            "http.response.status_code": status if answered else None,
            "patsnap.error_code": code if answered else None,
        })  # fmt: skip
        obs = self._obs
        obs.ledger[(self.path, result, code)] += 1
        _otel.count_call(self.path, code)
        if obs.hooks.on_call is not None:
            event = CallEvent(self.path, self.resend, status if answered else None,
                              code if answered else None, result, fto_error,
                              time.monotonic() - self._sent)  # fmt: skip
            obs.runner.fire("on_call", obs.hooks.on_call, event)


class Observer:
    """Hooks, telemetry and call counts of one client (private)."""

    __slots__ = ("_kept", "hooks", "keep_spans", "ledger", "port", "runner", "server")

    def __init__(self, hooks: Hooks | None = None, base_url: str = "") -> None:
        self.hooks = hooks or Hooks()
        self.runner = _HookRunner()
        parts = urlsplit(base_url)
        self.server = parts.hostname or ""  # the host only: never a query or credentials
        try:
            self.port = parts.port
        except ValueError:
            self.port = None
        #: Calls by (path, result, code), every attempt that passed the gate.
        self.ledger: Counter[LedgerKey] = Counter()
        #: Keep the spans of tasks ended well, for their follow-ups (the follow-up stage).
        self.keep_spans = False
        self._kept: OrderedDict[str, Any] = OrderedDict()  # task id -> span (bounded LRU)

    def kept_span(self, task_id: str | None) -> Any:
        """The span of a task ended well (once: it is forgotten), else ``None``."""
        return None if task_id is None else self._kept.pop(task_id, None)

    def attempt(self, path: str, resend: int) -> Attempt:
        return Attempt(self, path, resend)

    def retried(self, event: RetryEvent) -> None:
        """A retry hook (the client adds it to the transport's)."""
        _otel.count_retry(event.code)
        self.runner.fire("on_retry", self.hooks.on_retry, event)

    def polled(self, task_id: str, path: str, report: Any, error: FtoError | None) -> None:
        if self.hooks.on_poll is not None:
            status = getattr(report, "task_status", None)
            self.runner.fire("on_poll", self.hooks.on_poll,
                             PollEvent(task_id, path, status, error))  # fmt: skip

    # -- tasks --------------------------------------------------------------------

    def task_started(self, kind: str) -> Any:
        """A task span (child of the current span), before its submit."""
        _otel.tasks_in_flight(1)
        return _otel.start_span("fto_async.task", {"patsnap.task_kind": kind})

    def task_ended(
        self, span: Any, key: Any, task_id: str | None, report: Any,
        error: FtoError | None, polls: int,
    ) -> None:  # fmt: skip
        """The task ended: end its span, tell ``on_result``."""
        if span is not None:
            _otel.tasks_in_flight(-1)
            outcome = "done" if error is None else type(error).__name__
            _otel.end_span(span, error, **{
                "patsnap.task_id": task_id, "patsnap.polls": polls, "patsnap.outcome": outcome,
            })  # fmt: skip
            if self.keep_spans and error is None and task_id is not None:
                self._kept[task_id] = span
                while len(self._kept) > _KEPT:
                    self._kept.popitem(last=False)
        if self.hooks.on_result is not None:
            self.runner.fire("on_result", self.hooks.on_result,
                             ResultEvent(key, task_id, report, error, polls))  # fmt: skip


NULL_OBSERVER = Observer()


def observer_of(client: object) -> Observer:
    """The client's observer (a shared silent one for fakes that have none)."""
    found = getattr(client, "observer", None)
    return found if isinstance(found, Observer) else NULL_OBSERVER
