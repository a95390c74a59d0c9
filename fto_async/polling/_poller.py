"""One task's view: :func:`wait_for_task` and :class:`TaskPoller` (azure-core's shape).

Typed against :class:`ReportSource`, the little of a client they use, so they import no
client: :class:`~fto_async.FtoClient` builds them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from ..config import ClientConfig, PollConfig
from ..errors import InvalidRequestError, TaskFailedError, TaskTimeoutError
from ..models import TASK_KINDS, ImageSearchReport, TaskKind, TaskStatus, task_kind
from ._durations import TaskDurations, first_age, next_age

__all__ = ["ReportSource", "TaskPoller", "wait_for_task"]

_TOKEN_VERSION = 1


class ReportSource(Protocol):
    """What a :class:`TaskPoller` needs of a client: its options and one poll."""

    @property
    def config(self) -> ClientConfig:
        """The client's options (``poll`` is used)."""

    def report_path(self, kind: TaskKind) -> str:
        """The path a task of ``kind`` is polled at."""

    @property
    def durations(self) -> TaskDurations:
        """The client's learned task durations (shared by every poller and batch)."""

    async def get_report(self, task_id: str, kind: TaskKind = "image_search") -> ImageSearchReport:
        """Poll a task once."""


R = TypeVar("R", bound=ImageSearchReport)


async def wait_for_task(
    poll_once: Callable[[], Awaitable[R]],
    task_id: str,
    poll: PollConfig,
    timeout: float | None,
    *,
    known: R | None = None,
    durations: TaskDurations | None = None,
    kind: str = "image_search",
    submitted_at: float | None = None,
) -> R:
    """Poll one task until it ends; return its report.

    With ``durations`` and ``submitted_at`` (the loop time of the submit's answer), the
    polls follow the learnt durations of ``kind`` as the batch scheduler's do (first at
    the quantile, or scouting while nothing is known), and the task's duration is
    learnt. Otherwise (a bare task id: its age is unknown) it polls every
    ``poll.interval``.

    ``known`` is a finished report already in hand (no poll is made then). Raises
    :class:`TaskFailedError` for task_status 3 and :class:`TaskTimeoutError` when the next
    poll would come after ``timeout`` (default ``poll.timeout``).
    """
    limit = poll.timeout if timeout is None else timeout
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    learnt = durations if submitted_at is not None else None  # None: the age is unknown
    born = 0.0 if submitted_at is None else submitted_at
    last_age = 0.0
    if learnt is not None and known is None:
        first = first_age(learnt, kind, poll)
        due = born + (poll.min_interval if first is None else first)
        wait = due - loop.time()
        if limit is not None:
            wait = min(wait, limit)
        if wait > 0:
            await asyncio.sleep(wait)
    while True:
        report = known if known is not None else await poll_once()
        known = None
        if report.task_status == TaskStatus.SUCCESS:
            if learnt is not None:
                learnt.observe(kind, last_age, loop.time() - born)
            return report
        if report.task_status == TaskStatus.FAILED:
            raise TaskFailedError(task_id)
        gap = poll.interval
        if learnt is not None:
            last_age = loop.time() - born
            gap = next_age(learnt, kind, poll, last_age) - last_age
        waited = time.monotonic() - started
        if limit is not None and waited + gap > limit:
            raise TaskTimeoutError(task_id, waited)
        await asyncio.sleep(gap)


class TaskPoller:
    """Follows one task, in the shape of azure-core's ``AsyncLROPoller``.

    Example::

        poller = client.poller(task_id)                      # or begin_image_search(...)
        token = poller.continuation_token()                  # save it anywhere
        ...
        poller = TaskPoller.from_continuation_token(client, token)   # another process
        report = await poller.result(timeout=600)

    Args:
        client: the client to poll with.
        task_id: the platform's task id.
        kind: ``"image_search"`` or ``"workflow"``.
        submitted_at: loop time of the submit's answer, when known (``begin_screening``
            sets it): :meth:`result` then polls on the client's learnt durations.
    """

    def __init__(
        self,
        client: ReportSource,
        task_id: str,
        kind: TaskKind = "image_search",
        *,
        submitted_at: float | None = None,
    ) -> None:
        kind = task_kind("kind", kind)
        if not isinstance(task_id, str) or not task_id:
            raise InvalidRequestError("task_id", "must be a non-empty string")
        self._client = client
        self.task_id = task_id
        self.kind: TaskKind = kind
        self._report: ImageSearchReport | None = None
        self.submitted_at = submitted_at

    @property
    def endpoint(self) -> str:
        """The path this task's report is read from."""
        return self._client.report_path(self.kind)

    def done(self) -> bool:
        """Whether the last poll saw the task finished (success or failure)."""
        return self._report is not None and self._report.done

    def status(self) -> str:
        """``"NotStarted"`` before any poll, else ``running``, ``succeeded`` or ``failed``."""
        if self._report is None:
            return "NotStarted"
        return {1: "running", 2: "succeeded", 3: "failed"}[int(self._report.task_status)]

    async def poll(self) -> ImageSearchReport:
        """Poll once and return the report as it stands."""
        self._report = await self._client.get_report(self.task_id, self.kind)
        return self._report

    async def result(self, timeout: float | None = None) -> ImageSearchReport:
        """Wait for the task to finish; see :meth:`FtoClient.wait_workflow` for the rules.

        :meth:`status` and :meth:`done` reflect the last poll even when this raises.
        """
        last = self._report
        known = last if last is not None and last.done else None
        return await wait_for_task(
            self.poll, self.task_id, self._client.config.poll, timeout, known=known,
            durations=self._client.durations, kind=self.kind, submitted_at=self.submitted_at,
        )

    def continuation_token(self) -> str:
        """A versioned JSON string to rebuild this poller elsewhere (no secrets in it)."""
        return json.dumps(
            {
                "version": _TOKEN_VERSION,
                "kind": self.kind,
                "endpoint": self.endpoint,
                "task_id": self.task_id,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_continuation_token(cls, client: ReportSource, token: str) -> TaskPoller:
        """Rebuild a poller from :meth:`continuation_token`'s output.

        Raises:
            InvalidRequestError: the token is not one of ours, or from a newer version.
        """
        try:
            data = json.loads(token)
        except (TypeError, ValueError):
            raise InvalidRequestError("token", "is not a continuation token (not JSON)") from None
        version = data.get("version") if isinstance(data, dict) else None
        if type(version) is not int or version != _TOKEN_VERSION:
            raise InvalidRequestError("token", f"must be a version {_TOKEN_VERSION} token")
        kind, task_id = data.get("kind"), data.get("task_id")
        if kind not in TASK_KINDS or not isinstance(task_id, str):
            raise InvalidRequestError("token", "lacks a valid kind or task_id")
        poller = cls(client, task_id, kind)
        if data.get("endpoint") != poller.endpoint:
            raise InvalidRequestError(
                "token", f"was made for {data.get('endpoint')!r}, this client polls "
                f"{poller.endpoint!r}"
            )
        return poller

    def __repr__(self) -> str:
        return f"<TaskPoller {self.kind} {self.task_id} {self.status()}>"
