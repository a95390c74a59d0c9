"""Batches: submit from any iterable, poll everything concurrently, yield as completed.

The package, one job per module:

* ``__init__``: the entry points (:func:`screen_many`, :func:`submit_many`,
  :func:`wait_many`, :func:`poll_many`, :func:`screen_with_follow_ups`) and the public
  names re-exported;
* ``_values``: the public values (:class:`Item`, :class:`Outcome`, :class:`Progress`,
  :class:`FollowUp`, :class:`FollowUpResult`) and the options;
* ``_engine``: flow control (admitting submits, the poll scheduler, fatal and graceful
  stops);
* ``_sharing``: dedupe, single flight, the recent windows, cache hits;
* ``_journaling``: the ONE resume and record policy for items and follow-ups;
* ``_stream``: the pump that hands what a producer queues to the caller;
* ``_followup``: the follow-up stage (1-vs-1 tasks on each item's riskiest matches).

The path of an item (DESIGN.md)::

    input (sync or async iterable, read ahead only as far as the in-flight bound)
      -> submit (through the client's transport and rate gate; journal first if any)
      -> PollScheduler (one due-time heap for every pending task)
      -> Outcome, yielded as soon as the task is complete

Memory stays flat in the number of items: at most ``submit_concurrency`` items are
read ahead, at most ``max_pending`` tasks wait for their reports, and at most
``buffer`` outcomes wait for the consumer.

Failure semantics:

* A bad item (refused by validation, an invalid parameter, a failed task, a timeout)
  yields an outcome with its ``error``; the batch goes on.
* A fatal error (quota, balance, auth, permission, spent budget) stops new submissions
  at once. Submits already in flight finish and their tasks are still polled (unless
  polling fails fatally too, which ends them with that error). Every item submitted or
  attempted gets its outcome; then the iteration raises
  :class:`~fto_async.errors.BatchAbortedError` saying why and how many items were not
  attempted.
* Leaving the loop early (``break``, cancellation, Ctrl-C) cancels every child task.

With a :class:`~fto_async.journal.Journal` (keys are stored as ``str(key)``):

* an item ``done`` or ``failed`` in the journal is yielded from it, without a call
  (``Outcome.resumed``); one ``submitted`` is polled, not resubmitted; but an item
  whose request fingerprint differs from the journal's (the request changed) is
  screened again, its earlier record moved to the journal's history;
* an item left ``submitting``/``unknown`` by a run that died mid-submit is resubmitted
  (``unknown_policy="resubmit"``, counted in ``Progress.resubmitted_unknown``) or
  yielded with :class:`~fto_async.errors.UnknownSubmissionError` (``"skip"``);
* ``submitting`` is committed before each submit goes out and the task id before the
  task is polled, so a crash never loses a paid submission.

Never paying twice (``dedupe``, on by default, and ``cache``):

* items with the same :func:`~fto_async.fingerprint.request_fingerprint` share one task:
  the first item's submit and poll series answer every duplicate, each of which still
  gets its own :class:`Outcome` (``shared_with`` = the first item's key). A duplicate
  that arrives while the first submit is in flight waits for it (single flight). If that
  submit fails retryably while duplicates wait, the group makes exactly one more submit;
  if it fails otherwise, every waiting duplicate gets the same error;
* memory stays bounded for endless inputs: the dedupe map holds only the groups pending
  in this batch; a finished fingerprint is remembered in a least-recently-used window of
  :data:`RECENT_TASKS` (10,000: its first key and task id, ~0.3 KB each), and its typed
  report in a smaller one of :data:`RECENT_REPORTS` (64: a typed report takes ~100 KB
  in memory for ~30 KB of JSON, so ~6 MB at most; 256 grew a soak's RSS by 26 MB), and
  within :data:`~fto_async.batch._sharing.RECENT_REPORT_BYTES` (4 MiB) of their JSON,
  so a few huge reports cannot hold gigabytes. Most
  duplicates arrive while their group is pending, which costs nothing. A later one
  takes the report from the window (no call), or past it from the cache if there is one
  (no call), or else polls the finished task once (one poll instead of a submit);
* a :class:`~fto_async.cache.ReportCache` answers a request whose report is younger than
  its ``max_age`` with no call (``Outcome.from_cache``, ``cached_at``); every successful
  report polled is stored in it (failed tasks, errors and ``unknown`` submits never are);
* journaled, a duplicate row is recorded ``submitted`` with its group's task id (or the
  cached report's) and ``attempts`` 0 (:meth:`~fto_async.journal.Journal.mark_shared`),
  then ``done`` with the shared report: a resume polls that task once for the whole
  group and never resubmits a shared row.

An item may carry its fingerprint: ``Item(key, request, fingerprint=...)`` (the CLI does,
for a local image uploaded under a temporary URL: the fingerprint uses the file's hash).

A ``stop`` event ends a batch gracefully: no new submissions, in-flight submits finish
(and are journaled), then the iteration ends without waiting for pending tasks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Unpack

from ..errors import FtoError
from ..models import ImageSearchReport, TaskKind
from ._engine import _Batch, _drive
from ._followup import FollowUpClient, screen_with_follow_ups
from ._sharing import RECENT_REPORTS, RECENT_TASKS
from ._stream import _END, _pairs, _pump
from ._values import (
    BatchClient,
    BatchOptions,
    Fingerprinter,
    FollowUp,
    FollowUpResult,
    ImageUrlHook,
    Item,
    Items,
    LocalImage,
    Outcome,
    Progress,
    ProgressCallback,
    TaskIds,
    _Options,
)

__all__ = [
    "RECENT_REPORTS",
    "RECENT_TASKS",
    "BatchClient",
    "BatchOptions",
    "Fingerprinter",
    "FollowUp",
    "FollowUpClient",
    "FollowUpResult",
    "ImageUrlHook",
    "Item",
    "Items",
    "LocalImage",
    "Outcome",
    "Progress",
    "ProgressCallback",
    "TaskIds",
    "poll_many",
    "screen_many",
    "screen_with_follow_ups",
    "submit_many",
    "wait_many",
]


def screen_many(
    client: BatchClient, items: Items, **options: Unpack[BatchOptions]
) -> AsyncIterator[Outcome]:
    """Submit every request and poll every task; yield an :class:`Outcome` per item.

    Outcomes come as tasks complete, not in input order. Use it as
    ``async for outcome in client.screen_many(items): ...``.

    Args:
        client: the client (its rate gate paces submits and polls alike).
        items: a sync or async iterable of requests (``ImageSearchRequest`` and
            ``WorkflowRequest`` may be mixed) or of ``(key, request)`` pairs. Never
            ``len()``-ed, never held whole.
        poll: a :class:`~fto_async.config.PollConfig` (default: the client's).
        max_pending: tasks allowed to wait for reports at once (default
            ``max(1000, 20 x in-flight bound)``); submitting pauses when it is reached.
        submit_concurrency: submits in flight at once, which is also how far the input
            is read ahead (default: the rate gate's in-flight bound).
        buffer: outcomes held for a slow consumer before the batch waits (default 256).
        on_progress: called with a :class:`Progress` every ``progress_interval`` seconds
            (default 0.5) and once at the end.
        total: the number of items, if known, for the ETA (the input is never counted).
        count_remaining: after a fatal stop, read the rest of the input to count the
            items not attempted (default True; set False for endless inputs).
        journal: a :class:`~fto_async.journal.Journal` to record every item in and to
            resume from (see the module docstring).
        unknown_policy: ``"resubmit"`` (default) or ``"skip"`` items that an earlier run
            may have submitted before it died.
        stop: an :class:`asyncio.Event`; setting it ends the batch gracefully.
        fingerprint: ``(key, request) -> str | None``, the fingerprint the journal keeps
            for an item (default: :func:`~fto_async.fingerprint.wire_fingerprint` of its
            wire body). Give it when a request's body is not its identity, e.g. a fresh
            upload URL for the same local file (``request_fingerprint(...,
            image_sha256=...)``); ``None`` means unknown: the journal's record is kept.
        follow_up: a :class:`~fto_async.batch.FollowUp`: compare each item's riskiest
            patents 1-vs-1 before its outcome is yielded (``Outcome.follow_ups``). Only
            through :meth:`FtoClient.screen_many` (the stage needs the AI67 methods):
            see :func:`fto_async.batch.screen_with_follow_ups`.
        dedupe: share one task among items with equal fingerprints (default True; see
            the module docstring for single flight, retries and the bounded windows).
        cache: a :class:`~fto_async.cache.ReportCache`: a report younger than its
            ``max_age`` answers an item with no call, and every report polled is stored
            (default ``None``: no cache).

    Raises:
        BatchAbortedError: after the last outcome, when a fatal error stopped the batch.
    """
    batch = _Batch(client, _Options.of(options))
    return _drive(batch, lambda submits: batch.feed_requests(items, submits))


def _submit_result(outcome: Outcome) -> tuple[Any, str | FtoError]:
    if outcome.error is not None:
        return outcome.key, outcome.error
    assert outcome.task_id is not None
    return outcome.key, outcome.task_id


def submit_many(
    client: BatchClient, items: Items, **options: Unpack[BatchOptions]
) -> AsyncIterator[tuple[Any, str | FtoError]]:
    """Submit every request; yield ``(key, task_id)`` or ``(key, error)`` as each returns.

    Options as for :func:`screen_many` (``poll``, ``max_pending``, ``dedupe`` and
    ``cache`` do not apply: every item asks for its own task id).
    """
    batch = _Batch(client, _Options.of(options), shape=_submit_result, poll_after_submit=False)
    return _drive(batch, lambda submits: batch.feed_requests(items, submits))


def wait_many(
    client: BatchClient,
    task_ids: TaskIds,
    *,
    kind: TaskKind = "image_search",
    **options: Unpack[BatchOptions],
) -> AsyncIterator[Outcome]:
    """Poll existing tasks until each completes; yield an :class:`Outcome` per task id.

    ``task_ids`` is an iterable of task ids or ``(key, task_id)`` pairs, all of one
    ``kind``. Options as for :func:`screen_many`.
    """
    batch = _Batch(client, _Options.of(options))
    return _drive(batch, lambda submits: batch.feed_task_ids(task_ids, kind, submits))


async def poll_many(
    client: BatchClient,
    task_ids: TaskIds,
    *,
    kind: TaskKind = "image_search",
    concurrency: int = 32,
) -> AsyncIterator[tuple[Any, ImageSearchReport | FtoError]]:
    """Poll each task once; yield ``(key, report or error)`` as answers arrive."""
    results: asyncio.Queue[Any] = asyncio.Queue()
    slots = asyncio.Semaphore(concurrency)

    async def one(key: Any, task_id: str) -> None:
        try:
            results.put_nowait((key, await client.get_report(task_id, kind)))
        except FtoError as exc:
            results.put_nowait((key, exc))
        finally:
            slots.release()

    async def feed() -> None:
        async with asyncio.TaskGroup() as tg:
            async for key, task_id in _pairs(task_ids):
                await slots.acquire()
                tg.create_task(one(key, task_id))
        results.put_nowait(_END)

    async for item in _pump(results, feed):
        yield item
