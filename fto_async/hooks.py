"""Hooks: see every call, retry, poll and result without OpenTelemetry.

::

    def on_call(event: fto_async.CallEvent) -> None:
        print(event.path, event.http_status, event.code, f"{event.elapsed:.3f}s")

    async with fto_async.FtoClient.from_env(hooks=fto_async.Hooks(on_call=on_call)) as c:
        ...

A hook may be a plain function or an ``async def``; an async hook runs as a task of its
own, so a slow hook never delays a call. A hook that raises never breaks a call: the
first failure of each hook is logged (WARNING, logger ``fto_async.hooks``), later ones
at DEBUG. Events carry no secret: paths, codes, task ids, never a URL, key or body.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

import attrs

from .errors import FtoError
from .retry import RetryEvent

__all__ = ["CallEvent", "Hooks", "PollEvent", "ResultEvent"]

log = logging.getLogger("fto_async.hooks")


@attrs.frozen
class CallEvent:
    """One HTTP attempt that passed the rate gate, once it ended.

    Attributes:
        path: the endpoint path (never the query).
        resend_count: 0 for a call's first attempt, then 1, 2, ... for its resends.
        http_status: the HTTP status of the answer (``None``: no answer).
        code: the platform code (0 success; ``None``: no answer or no code).
        result: ``"answered"``, ``"refused"`` (an answer with an error) or ``"unanswered"``.
        error: the attempt's error (``None`` on success).
        elapsed: seconds from leaving the gate to the end of the answer.
    """

    path: str
    resend_count: int
    http_status: int | None
    code: int | None
    result: str
    error: FtoError | None
    elapsed: float


@attrs.frozen
class PollEvent:
    """One poll of a task answered (or failed).

    Attributes:
        task_id: the task polled.
        path: the report path.
        task_status: the report's ``task_status`` (``None`` when the poll failed).
        error: the poll's error (``None``: it answered).
    """

    task_id: str
    path: str
    task_status: Any
    error: FtoError | None


@attrs.frozen
class ResultEvent:
    """A task's end, as a batch or ``wait_*`` sees it.

    Attributes:
        key: the batch item's key (``None`` outside a batch; ``(key, patent_pn)`` for
            a follow-up).
        task_id: the task (``None`` when no task was created).
        report: the finished report (``None`` on failure).
        error: why it failed (``None`` on success).
        polls: polls made for it in this process.
    """

    key: Any
    task_id: str | None
    report: Any
    error: FtoError | None
    polls: int


def _check(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"Hooks.{attribute.name} must be callable, got {type(value).__name__}")


@attrs.frozen
class Hooks:
    """Callables told about what a client does (each optional; sync or ``async``).

    Attributes:
        on_call: a :class:`CallEvent` per HTTP attempt.
        on_retry: a :class:`~fto_async.retry.RetryEvent` before each retry.
        on_poll: a :class:`PollEvent` per poll.
        on_result: a :class:`ResultEvent` per task ended (batches and ``wait_*``).
    """

    on_call: Callable[[CallEvent], Any] | None = attrs.field(default=None, validator=_check)
    on_retry: Callable[[RetryEvent], Any] | None = attrs.field(default=None, validator=_check)
    on_poll: Callable[[PollEvent], Any] | None = attrs.field(default=None, validator=_check)
    on_result: Callable[[ResultEvent], Any] | None = attrs.field(default=None, validator=_check)


class _HookRunner:
    """Runs hooks safely: a failure is logged once per hook, never raised."""

    __slots__ = ("_failed", "_tasks")

    def __init__(self) -> None:
        self._failed: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()  # async hooks still running

    def fire(self, name: str, hook: Callable[[Any], Any] | None, event: object) -> None:
        if hook is None:
            return
        try:
            result = hook(event)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(functools.partial(self._done, name))
        except Exception as exc:  # a hook never breaks a call
            self._failed_once(name, exc)

    def _done(self, name: str, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._failed_once(name, exc)

    def _failed_once(self, name: str, exc: BaseException) -> None:
        if name in self._failed:
            log.debug("hook %s raised %s again", name, type(exc).__name__)
            return
        self._failed.add(name)
        log.warning("hook %s raised %s (logged once; calls go on)", name,
                    type(exc).__name__, exc_info=exc)  # fmt: skip
