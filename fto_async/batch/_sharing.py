"""Sharing: never paying twice for one question within a batch.

Items with the same fingerprint share one task (:class:`_Group`: the first item submits,
duplicates wait for it: single flight); a finished fingerprint is remembered in bounded
least-recently-used windows (:data:`RECENT_TASKS` task ids, :data:`RECENT_REPORTS`
reports within :data:`RECENT_REPORT_BYTES` of their JSON); a
:class:`~fto_async.cache.ReportCache` answers with no call. The module
docstring of :mod:`fto_async.batch` states the rules. :class:`_Sharing` is the part of
the batch (:class:`~fto_async.batch._engine._Batch`) that does this; the engine admits,
submits and polls.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from typing import Any, Final

import attrs

from .._kinds import request_kind
from ..cache import AnswerCache
from ..errors import FtoError, may_have_created_task
from ..models import ImageSearchReport, Request, TaskKind
from ..polling import PendingTask, PollScheduler
from ._journaling import _Counters, _Journaling
from ._values import BatchClient, Outcome

__all__ = ["RECENT_REPORTS", "RECENT_REPORT_BYTES", "RECENT_TASKS", "provenance_of",
           "report_size"]  # fmt: skip

#: Finished fingerprints a batch remembers (first key and task id) for later duplicates.
RECENT_TASKS: Final = 10_000
#: Finished fingerprints whose typed reports a batch keeps for later duplicates (LRU).
RECENT_REPORTS: Final = 64
#: Bytes of report JSON that window may hold (a typed report takes ~3x in memory): a
#: few huge reports evict the rest, and one larger than this is not kept at all.
RECENT_REPORT_BYTES: Final = 4 * 1024 * 1024


@attrs.define
class _Member:
    """Private: a duplicate waiting for its group's task."""

    key: Any
    request: Request
    journaled: bool = False  # recorded `submitted` with the group's task id


@attrs.define
class _Group:
    """Private: the items of one fingerprint pending in a batch (one task answers all)."""

    fingerprint: str
    key: Any  # the first item's, the one that submits
    request: Request
    task_id: str | None = None
    retried: bool = False
    members: list[_Member] = attrs.Factory(list)
    shared_with: Any = None  # a finished task polled again for a later duplicate: its key


@attrs.frozen
class _Recent:
    """Private: a finished fingerprint's answer, for later duplicates in the batch."""

    key: Any
    task_id: str
    kind: TaskKind
    submitted_at: float | None
    cached_at: float | None



class _Sharing:
    """Private: the sharing half of a batch (groups, recent windows, cache hits).

    :class:`~fto_async.batch._engine._Batch` inherits it and sets these attributes.
    """

    client: BatchClient
    counters: _Counters
    journaling: _Journaling | None
    scheduler: PollScheduler
    room: asyncio.Event
    max_pending: int
    fatal: FtoError | None
    stopping: bool
    dedupe: bool
    cache: AnswerCache | None
    groups: dict[str, _Group]  # fingerprint -> its group pending here
    by_task: dict[str, _Group]  # task id -> its group, while polled
    recent: OrderedDict[str, _Recent]  # LRU, RECENT_TASKS
    reports: OrderedDict[str, ImageSearchReport]  # RECENT_REPORTS, RECENT_REPORT_BYTES
    report_sizes: dict[str, int]
    report_bytes: int
    followers: int  # duplicates waiting in groups (bounded by max_pending)

    async def emit(self, outcome: Outcome) -> None:
        raise NotImplementedError  # pragma: no cover - the engine's

    # -- sharing: duplicates in the batch, the report cache ---------------------------

    def _track(self, task: PendingTask, fingerprint: str | None, request: Request) -> None:
        """Register a resumed task as its fingerprint's group (its duplicates join it)."""
        if fingerprint is None:
            return
        group = _Group(fingerprint, task.key, request, task_id=task.task_id)
        self.by_task[task.task_id] = group
        if self.dedupe and fingerprint not in self.groups:
            self.groups[fingerprint] = group

    async def _resume_shared(self, task: PendingTask, fingerprint: str) -> bool:
        """A resumed shared row: join its group's task, or take its finished report."""
        if not self.dedupe:
            return False
        group = self.groups.get(fingerprint)
        if group is not None and group.task_id == task.task_id:
            group.members.append(_Member(task.key, task.request, journaled=True))
            self.followers += 1
            return True
        recent = self.recent.get(fingerprint)
        report = self.reports.get(fingerprint)
        if recent is not None and report is not None and recent.task_id == task.task_id:
            if self.journaling is not None:
                await self.journaling.result(task.key, report, None)
            await self._emit_shared(task.key, task.request, recent, report)
            return True
        return False

    async def _share(self, key: Any, request: Request, fingerprint: str) -> bool:
        """Answer a duplicate from its pending group or a recent report; False if none."""
        if not self.dedupe:
            return False
        if fingerprint in self.groups:
            while (self.followers >= self.max_pending and self.fatal is None
                   and not self.stopping):  # fmt: skip
                self.room.clear()
                await self.room.wait()
        group = self.groups.get(fingerprint)
        if group is not None:
            member = _Member(key, request)
            group.members.append(member)
            self.followers += 1
            if group.task_id is not None and self.journaling is not None:
                member.journaled = True
                await self.journaling.shared(key, group.task_id)
            return True
        recent = self.recent.get(fingerprint)
        if recent is None:
            return False
        self.recent.move_to_end(fingerprint)
        report = self.reports.get(fingerprint)
        if report is None and self.cache is not None:
            report = await self._cached_report(fingerprint, request)  # no call
        if report is None:
            # Past the report window: poll the finished task once, for this row.
            if self.journaling is not None:
                await self.journaling.shared(key, recent.task_id)
            group = _Group(fingerprint, key, request, task_id=recent.task_id,
                           shared_with=recent.key)  # fmt: skip
            self.by_task[recent.task_id] = self.groups[fingerprint] = group
            self.scheduler.add(PendingTask(key, recent.task_id, recent.kind, request,
                                           submitted_wall=recent.submitted_at))  # fmt: skip
            return True
        if fingerprint in self.reports:
            self.reports.move_to_end(fingerprint)
        if self.journaling is not None:
            await self.journaling.shared(key, recent.task_id)
            await self.journaling.result(key, report, None)
        await self._emit_shared(key, request, recent, report)
        return True

    async def _emit_shared(
        self, key: Any, request: Request, recent: _Recent, report: ImageSearchReport
    ) -> None:
        self.counters.shared += 1
        await self.emit(Outcome(
            key, request, recent.task_id, report, None, submitted_at=recent.submitted_at,
            shared_with=recent.key, from_cache=recent.cached_at is not None,
            cached_at=recent.cached_at,
        ))  # fmt: skip

    async def _from_cache(self, key: Any, request: Request, fingerprint: str) -> bool:
        """Answer an item from the report cache; False on a miss."""
        if self.cache is None:
            return False
        platform, account = provenance_of(self.client)
        hit = await self.cache.get(fingerprint, platform=platform, account=account)
        if hit is None:
            return False
        try:
            report = self.client.decode_report(hit.report, request_kind(request))
        except FtoError:
            return False  # an unreadable entry: screen the item again
        task_id = hit.task_id or "cached"
        if self.journaling is not None:
            await self.journaling.shared(key, task_id)
            await self.journaling.result(key, report, None)
        self.counters.from_cache += 1
        outcome = Outcome(key, request, task_id, report, None, from_cache=True,
                          cached_at=hit.created_at)  # fmt: skip
        self._remember(fingerprint, outcome)
        await self.emit(outcome)
        return True

    async def _cached_report(self, fingerprint: str, request: Request) -> ImageSearchReport | None:
        assert self.cache is not None
        platform, account = provenance_of(self.client)
        hit = await self.cache.get(fingerprint, platform=platform, account=account)
        if hit is None:
            return None
        try:
            return self.client.decode_report(hit.report, request_kind(request))
        except FtoError:
            return None

    def _remember(self, fingerprint: str, outcome: Outcome) -> None:
        if not self.dedupe or outcome.report is None or outcome.task_id is None:
            return
        self.recent[fingerprint] = _Recent(outcome.key, outcome.task_id, _kind_of(outcome),
                                           outcome.submitted_at, outcome.cached_at)  # fmt: skip
        self.recent.move_to_end(fingerprint)
        if len(self.recent) > RECENT_TASKS:
            self.recent.popitem(last=False)
        size = report_size(outcome.report)
        self.report_bytes -= self.report_sizes.pop(fingerprint, 0)
        self.reports.pop(fingerprint, None)
        if size > RECENT_REPORT_BYTES:
            return
        self.reports[fingerprint] = outcome.report
        self.report_sizes[fingerprint] = size
        self.report_bytes += size
        while len(self.reports) > RECENT_REPORTS or self.report_bytes > RECENT_REPORT_BYTES:
            old, _report = self.reports.popitem(last=False)
            self.report_bytes -= self.report_sizes.pop(old, 0)

    def _ungroup(self, group: _Group) -> list[_Member]:
        """Take a finished group out of the batch; return its waiting duplicates."""
        if self.groups.get(group.fingerprint) is group:
            del self.groups[group.fingerprint]
        members, group.members = group.members, []
        self.followers -= len(members)
        self.room.set()
        return members

    async def _fail_group(self, group: _Group | None, exc: FtoError) -> None:
        """The group's submit failed for good: each waiting duplicate gets the same error."""
        if group is None:
            return
        for member in self._ungroup(group):
            if self.journaling is not None:
                await self.journaling.shared_failed(member.key, exc)
            self.counters.shared += 1
            await self.emit(Outcome(member.key, member.request, None, None, exc,
                                    shared_with=group.key))  # fmt: skip

    def _retry_group(self, group: _Group | None, exc: FtoError) -> bool:
        """Whether the group makes its one retry (duplicates wait; the error is transient
        and cannot have created a task; the batch goes on)."""
        if group is None or not group.members or group.retried:
            return False
        if not exc.retryable or exc.fatal or may_have_created_task(exc):
            return False
        if self.fatal is not None or self.stopping:
            return False
        group.retried = True
        return True


def provenance_of(client: object) -> tuple[str, str]:
    """The ``platform`` and ``account`` a cache entry of ``client`` records (a client that
    does not say, such as a test double, uses the unscoped part of the cache)."""
    platform, account = getattr(client, "provenance", ("", ""))
    return str(platform), str(account)


def report_size(report: object) -> int:
    """About how many bytes of JSON a typed report came from (its ``raw``)."""
    raw = getattr(report, "raw", None)
    return len(json.dumps(raw, default=str)) if raw else 0


def _kind_of(outcome: Outcome) -> TaskKind:
    return "image_search" if outcome.request is None else request_kind(outcome.request)
