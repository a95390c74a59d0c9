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

from .config import ClientConfig, PollConfig
from .errors import InvalidRequestError, TaskFailedError, TaskTimeoutError
from .models import TASK_KINDS, ImageSearchReport, TaskKind, TaskStatus, task_kind

__all__ = ["ReportSource", "TaskPoller", "wait_for_task"]

_TOKEN_VERSION = 1


class ReportSource(Protocol):
    """What a :class:`TaskPoller` needs of a client: its options and one poll."""

    @property
    def config(self) -> ClientConfig:
        """The client's options (``poll`` is used)."""

    def report_path(self, kind: TaskKind) -> str:
        """The path a task of ``kind`` is polled at."""

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
) -> R:
    """Poll one task every ``poll.interval`` until it ends; return its report.

    ``known`` is a finished report already in hand (no poll is made then). Raises
    :class:`TaskFailedError` for task_status 3 and :class:`TaskTimeoutError` when the next
    poll would come after ``timeout`` (default ``poll.timeout``).
    """
    limit = poll.timeout if timeout is None else timeout
    started = time.monotonic()
    while True:
        report = known if known is not None else await poll_once()
        known = None
        if report.task_status == TaskStatus.SUCCESS:
            return report
        if report.task_status == TaskStatus.FAILED:
            raise TaskFailedError(task_id)
        waited = time.monotonic() - started
        if limit is not None and waited + poll.interval > limit:
            raise TaskTimeoutError(task_id, waited)
        await asyncio.sleep(poll.interval)


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
        kind: ``"image_search"``, ``"workflow"`` or ``"one_vs_one"`` (AI67 1-vs-1; its
            polls return :class:`~fto_async.OneVsOneReport`).
    """

    def __init__(
        self, client: ReportSource, task_id: str, kind: TaskKind = "image_search"
    ) -> None:
        kind = task_kind("kind", kind)
        if not isinstance(task_id, str) or not task_id:
            raise InvalidRequestError("task_id", "must be a non-empty string")
        self._client = client
        self.task_id = task_id
        self.kind: TaskKind = kind
        self._report: ImageSearchReport | None = None

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
        return await wait_for_task(self.poll, self.task_id, self._client.config.poll, timeout,
                                   known=known)

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
