"""Batches: submit from any iterable, poll everything concurrently, yield as completed.

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
  (``Outcome.resumed``); one ``submitted`` is polled, not resubmitted;
* an item left ``submitting``/``unknown`` by a run that died mid-submit is resubmitted
  (``unknown_policy="resubmit"``, counted in ``Progress.resubmitted_unknown``) or
  yielded with :class:`~fto_async.errors.UnknownSubmissionError` (``"skip"``);
* ``submitting`` is committed before each submit goes out and the task id before the
  task is polled, so a crash never loses a paid submission.

A ``stop`` event ends a batch gracefully: no new submissions, in-flight submits finish
(and are journaled), then the iteration ends without waiting for pending tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeAlias

import attrs

from .config import PollConfig
from .errors import (
    BatchAbortedError,
    FtoError,
    InvalidRequestError,
    RecordedError,
    TaskFailedError,
    TaskTimeoutError,
    UnknownSubmissionError,
    may_have_created_task,
)
from .models import ImageSearchReport, ImageSearchRequest, RiskLevel, WorkflowRequest
from .polling import PendingTask, PollScheduler, TaskKind, request_kind

if TYPE_CHECKING:
    from .client import FtoClient
    from .journal import Journal

__all__ = [
    "Items",
    "Outcome",
    "Progress",
    "ProgressCallback",
    "TaskIds",
    "poll_many",
    "screen_many",
    "submit_many",
    "wait_many",
]

Request: TypeAlias = ImageSearchRequest | WorkflowRequest
Items: TypeAlias = (
    Iterable[Request | tuple[Any, Request]] | AsyncIterable[Request | tuple[Any, Request]]
)
TaskIds: TypeAlias = Iterable[str | tuple[Any, str]] | AsyncIterable[str | tuple[Any, str]]


@attrs.frozen
class Outcome:
    """What became of one input item.

    Attributes:
        key: the item's key (from a ``(key, request)`` pair) or its input position.
        request: the request, if the item was one.
        task_id: the platform's task id, once submitted.
        report: the typed report when the task succeeded, else ``None``.
        error: why the item failed (an :class:`~fto_async.errors.FtoError`), else ``None``.
        submitted_at: epoch seconds of the submit's answer (``None`` if never submitted).
        completed_at: epoch seconds when the outcome was decided.
        polls: polls spent on the task by this run.
        resumed: the outcome comes from a journal of an earlier run (no call was made).
    """

    key: Any
    request: Request | None
    task_id: str | None
    report: ImageSearchReport | None
    error: FtoError | None
    submitted_at: float | None = None
    completed_at: float = attrs.field(factory=time.time)
    polls: int = 0
    resumed: bool = False

    @property
    def ok(self) -> bool:
        """True when the task succeeded and the report is here."""
        return self.error is None and self.report is not None

    @property
    def highest_risk(self) -> RiskLevel | None:
        """The report's highest risk level, if any."""
        return self.report.highest_risk if self.report is not None else None


@attrs.frozen
class Progress:
    """A snapshot of a batch's counters, for progress displays.

    Attributes:
        read: items taken from the input so far.
        submitting: submit calls in flight.
        running: tasks submitted and waiting for their reports.
        done: items finished with a report.
        failed: items finished with an error.
        not_attempted: items left alone after a fatal error.
        resumed: outcomes taken from the journal without a call.
        resubmitted_unknown: items resubmitted although an earlier run may have
            submitted them (it died mid-submit).
        calls: HTTP calls this client sent (every attempt).
        retries: retries this client made.
        rate: the rate gate's pace in calls per second.
        elapsed: seconds since the batch started.
        total: the number of items, if the caller said (for the ETA).
        eta: seconds left, estimated from the completion rate (``None`` if unknown).
    """

    read: int
    submitting: int
    running: int
    done: int
    failed: int
    not_attempted: int
    resumed: int
    resubmitted_unknown: int
    calls: int
    retries: int
    rate: float
    elapsed: float
    total: int | None
    eta: float | None

    @property
    def finished(self) -> int:
        """Items with an outcome."""
        return self.done + self.failed


ProgressCallback: TypeAlias = Callable[[Progress], None]
_END = object()


async def _pairs(items: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[tuple[Any, Any]]:
    """Yield ``(key, value)`` from plain values (keyed by position) or pairs."""
    position = 0
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield _pair(item, position)
            position += 1
    else:
        for item in items:
            yield _pair(item, position)
            position += 1
            if position % 256 == 0:
                await asyncio.sleep(0)  # a long sync input must not starve the loop


def _pair(item: Any, position: int) -> tuple[Any, Any]:
    if isinstance(item, tuple) and len(item) == 2:
        return item[0], item[1]
    return position, item


class _Batch:
    """Private: the machinery behind :func:`screen_many` and its siblings."""

    def __init__(
        self,
        client: FtoClient,
        *,
        mode: str,
        poll: PollConfig | None,
        max_pending: int | None,
        submit_concurrency: int | None,
        buffer: int,
        on_progress: ProgressCallback | None,
        progress_interval: float,
        total: int | None,
        count_remaining: bool,
        journal: Journal | None,
        unknown_policy: str,
        stop: asyncio.Event | None,
    ) -> None:
        if unknown_policy not in ("resubmit", "skip"):
            raise InvalidRequestError("unknown_policy", "must be 'resubmit' or 'skip'")
        self.client = client
        self.mode = mode
        in_flight = client.config.rate.in_flight_limit
        self.submit_slots = asyncio.Semaphore(submit_concurrency or in_flight)
        self.max_pending = max_pending or max(1000, 20 * in_flight)
        self.out: asyncio.Queue[Any] = asyncio.Queue(maxsize=buffer)
        if journal is not None:  # durations learnt by earlier runs, unless known here
            client.durations.restore(journal.load_durations())
        self.scheduler = PollScheduler(
            self._fetch, self._deliver, poll or client.config.poll,
            max_concurrent=max(8, in_flight), on_release=self._room_changed,
            durations=client.durations,
        )
        self.room = asyncio.Event()
        self.feed_done = asyncio.Event()
        self.unsent: set[asyncio.Task[Any]] = set()  # submits still waiting in the gate
        self.fatal: FtoError | None = None
        self.polls_aborted = False
        self.on_progress = on_progress
        self.progress_interval = progress_interval
        self.total = total
        self.count_remaining = count_remaining
        self.started = time.monotonic()
        self.journal = journal
        self.unknown_policy = unknown_policy
        self.stop = stop
        self.stopping = False
        self.read = self.submitting = self.done = self.failed = self.not_attempted = 0
        self.resumed = self.resubmitted_unknown = 0

    # -- progress -------------------------------------------------------------------

    def progress(self) -> Progress:
        elapsed = time.monotonic() - self.started
        finished = self.done + self.failed
        eta = None
        if self.total is not None and finished and elapsed > 0:
            eta = max(0, self.total - finished - self.not_attempted) * elapsed / finished
        return Progress(
            read=self.read, submitting=self.submitting, running=self.scheduler.pending,
            done=self.done, failed=self.failed, not_attempted=self.not_attempted,
            resumed=self.resumed, resubmitted_unknown=self.resubmitted_unknown,
            calls=self.client.stats.calls, retries=self.client.retries,
            rate=self.client.gate.rate, elapsed=elapsed, total=self.total, eta=eta,
        )

    async def _report_progress(self, stop: asyncio.Event) -> None:
        assert self.on_progress is not None
        while not stop.is_set():
            self.on_progress(self.progress())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.progress_interval)
        self.on_progress(self.progress())

    # -- the driver -----------------------------------------------------------------

    async def run(self, feed: Callable[[asyncio.TaskGroup], Awaitable[None]]) -> None:
        progress_done = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as tg:
                scheduler = tg.create_task(self.scheduler.run())
                if self.on_progress is not None:
                    tg.create_task(self._report_progress(progress_done))
                watcher = (
                    tg.create_task(self._watch_stop(self.stop, scheduler))
                    if self.stop is not None
                    else None
                )
                try:
                    async with asyncio.TaskGroup() as submits:
                        await feed(submits)
                finally:
                    self.scheduler.close()
                    self.feed_done.set()
                await asyncio.wait([scheduler])  # it ends drained, or cancelled by a stop
                progress_done.set()  # the progress loop sends its last snapshot and ends
                if watcher is not None:
                    watcher.cancel()
        finally:
            progress_done.set()
            if self.journal is not None:
                with contextlib.suppress(Exception):  # a hint: never fail a batch over it
                    await self.journal.save_durations(self.client.durations.snapshot())
                await self.journal.flush()
        await self.out.put(_END)

    async def _watch_stop(self, stop: asyncio.Event, scheduler: asyncio.Task[None]) -> None:
        await stop.wait()
        self.stopping = True
        self.room.set()
        for task in list(self.unsent):  # never sent: they stay `pending` for the next run
            task.cancel()
        await self.feed_done.wait()  # in-flight submits have returned and been journaled
        scheduler.cancel()  # pending tasks stay `submitted` in the journal

    def _room_changed(self) -> None:
        self.room.set()

    def stop_for(self, error: FtoError) -> None:
        if self.fatal is None:
            self.fatal = error
            # Submits still waiting in the rate gate were never sent: stop them now
            # rather than send each one into the same fatal answer at the gate's pace.
            for task in list(self.unsent):
                task.cancel()

    async def emit(self, outcome: Outcome) -> None:
        if outcome.error is None:
            self.done += 1
        else:
            self.failed += 1
        if self.mode == "submit":  # submit_many yields (key, task_id or error) pairs
            result = outcome.error if outcome.error is not None else outcome.task_id
            await self.out.put((outcome.key, result))
        else:
            await self.out.put(outcome)

    async def _admit(self) -> bool:
        """Wait for a submit slot and room among pending tasks; False after a fatal stop."""
        await self.submit_slots.acquire()
        while (
            self.fatal is None
            and not self.stopping
            and self.scheduler.pending + self.submitting >= self.max_pending
        ):
            self.room.clear()
            await self.room.wait()
        if self.fatal is not None or self.stopping:
            self.submit_slots.release()
            return False
        return True

    async def _skip_rest(self, rest: AsyncIterator[Any]) -> None:
        if self.stopping and self.fatal is None:
            return  # a graceful stop: the rest is for the next run
        self.not_attempted += 1
        if self.count_remaining:
            async for _ in rest:
                self.not_attempted += 1

    # -- submitting -----------------------------------------------------------------

    async def feed_requests(self, items: Items, submits: asyncio.TaskGroup) -> None:
        pairs = _pairs(items)
        async for key, request in pairs:
            self.read += 1
            if not isinstance(request, ImageSearchRequest | WorkflowRequest):
                got = type(request).__name__
                err = InvalidRequestError(
                    "item", f"must be an ImageSearchRequest or WorkflowRequest, got {got}"
                )
                await self.emit(Outcome(key, None, None, None, err))
                continue
            if self.journal is not None and not await self._resume(key, request):
                continue
            if not await self._admit():
                await self._skip_rest(pairs)
                return
            self.submitting += 1
            submits.create_task(self._submit(key, request))

    async def _resume(self, key: Any, request: Request) -> bool:
        """Apply the journal to one item; True if it must be submitted now."""
        assert self.journal is not None
        row = self.journal.get(str(key))
        kind = request_kind(request)
        if row is None:
            body = self.client.encode_request(request)
            await self.journal.add_pending(str(key), self.read - 1, body, kind)
            return True
        state = str(row.state)
        if state == "done":
            try:
                report = self.client.decode_report(row.report, kind)
            except FtoError:
                return True  # an unreadable record: screen the item again
            self.resumed += 1
            await self.emit(Outcome(key, request, row.task_id, report, None,
                                    submitted_at=row.submitted_at, resumed=True))
            return False
        if state == "failed":
            self.resumed += 1
            err = RecordedError(row.error or "failed", error_type=row.error_type)
            await self.emit(Outcome(key, request, row.task_id, None, err,
                                    submitted_at=row.submitted_at, resumed=True))
            return False
        if state == "submitted" and row.task_id:
            loop = asyncio.get_running_loop()
            age = time.time() - row.submitted_at if row.submitted_at else None
            self.scheduler.add(PendingTask(
                key, row.task_id, kind, request,
                submitted_at=None if age is None else loop.time() - max(0.0, age),
                submitted_wall=row.submitted_at,
            ))
            return False
        if state in ("submitting", "unknown"):
            if self.unknown_policy == "skip":
                unknown = UnknownSubmissionError(
                    f"item {key!r}: an earlier run died while submitting it; a task may "
                    "exist on the platform (skipped by policy)"
                )
                await self.emit(Outcome(key, request, None, None, unknown))
                return False
            self.resubmitted_unknown += 1
            await self.journal.reset_to_pending(str(key))
        return True

    async def _submit(self, key: Any, request: Request) -> None:
        journal = self.journal
        me = asyncio.current_task()
        assert me is not None
        self.unsent.add(me)
        sent = False

        async def before_send() -> None:
            # The gate admitted the call: from here on it may reach the platform.
            nonlocal sent
            if not sent:
                sent = True
                self.unsent.discard(me)
                if journal is not None:
                    await journal.mark_submitting(str(key))

        try:
            try:
                task_id = await self.client.submit(request, before_send=before_send)
            except asyncio.CancelledError:
                if not sent and self.fatal is not None:
                    self.not_attempted += 1  # cancelled by stop_for before it went out
                raise
            except FtoError as exc:
                if journal is not None:
                    await _journal_submit_error(journal, str(key), exc)
                if exc.fatal:
                    self.stop_for(exc)
                await self.emit(Outcome(key, request, None, None, exc))
                return
            if self.mode == "submit":
                await self.emit(Outcome(key, request, task_id, None, None))
                return
            if journal is not None:
                await journal.mark_submitted(str(key), task_id)
            loop = asyncio.get_running_loop()
            self.scheduler.add(
                PendingTask(key, task_id, request_kind(request), request, submitted_at=loop.time())
            )
        finally:
            self.unsent.discard(me)
            self.submitting -= 1
            self.submit_slots.release()
            self.room.set()

    async def feed_task_ids(
        self, task_ids: TaskIds, kind: TaskKind, submits: asyncio.TaskGroup
    ) -> None:
        async for key, task_id in _pairs(task_ids):
            if self.stopping:
                return  # a graceful stop: the rest is not read
            self.read += 1
            if not isinstance(task_id, str) or not task_id:
                err = InvalidRequestError("task_id", "must be a non-empty string")
                await self.emit(Outcome(key, None, None, None, err))
                continue
            while (self.fatal is None and not self.stopping
                   and self.scheduler.pending >= self.max_pending):
                self.room.clear()
                await self.room.wait()
            if self.stopping:
                return
            if self.fatal is not None:
                self.not_attempted += 1
                continue
            self.scheduler.add(PendingTask(key, task_id, kind, submitted_wall=None))

    # -- polling --------------------------------------------------------------------

    async def _fetch(self, task: PendingTask) -> ImageSearchReport:
        return await self.client.get_report(task.task_id, task.kind)

    async def _deliver(
        self, task: PendingTask, report: ImageSearchReport | None, error: FtoError | None
    ) -> None:
        if error is not None and error.fatal and not self.polls_aborted:
            self.stop_for(error)
            self.polls_aborted = True
            await self.scheduler.abort(error)  # polling is refused too: end the rest now
        if self.journal is not None and self.mode == "screen":
            await _journal_result(self.journal, str(task.key), report, error)
        outcome = Outcome(
            task.key, task.request, task.task_id, report if error is None else None, error,
            submitted_at=task.submitted_wall, polls=task.polls,
        )
        await self.emit(outcome)


async def _journal_submit_error(journal: Journal, key: str, exc: FtoError) -> None:
    if may_have_created_task(exc):
        await journal.mark_unknown(key)  # the platform may hold a task for it
    else:
        retry_later = exc.fatal or exc.retryable  # not the item's fault: try again next run
        await journal.mark_submit_failed(key, str(exc), type(exc).__name__, retry_later)


async def _journal_result(
    journal: Journal, key: str, report: ImageSearchReport | None, error: FtoError | None
) -> None:
    if error is None and report is not None:
        await journal.mark_done(key, dict(report.raw))
    elif isinstance(error, TaskFailedError) or (error is not None and not (
        error.fatal or error.retryable or isinstance(error, TaskTimeoutError)
    )):
        await journal.mark_failed(key, str(error), type(error).__name__)
    # timeouts, fatal and transient errors leave the task `submitted`: the next run polls it


async def _drive(
    batch: _Batch, feed: Callable[[asyncio.TaskGroup], Awaitable[None]]
) -> AsyncIterator[Any]:
    driver = asyncio.create_task(batch.run(feed))
    try:
        while (item := await _next(batch.out, driver)) is not _END:
            yield item
        await driver
        if batch.fatal is not None:
            raise BatchAbortedError(batch.fatal, not_attempted=batch.not_attempted)
    finally:
        if not driver.done():
            driver.cancel()
            await asyncio.gather(driver, return_exceptions=True)


async def _next(queue: asyncio.Queue[Any], producer: asyncio.Task[None]) -> Any:
    """The next queued item; if the producer dies first, raise what killed it."""
    if not queue.empty():
        return queue.get_nowait()
    getter = asyncio.ensure_future(queue.get())
    try:
        await asyncio.wait((getter, producer), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not getter.done():
            getter.cancel()
    if getter.done() and not getter.cancelled():
        return getter.result()
    try:
        producer.result()
    except BaseExceptionGroup as group:  # TaskGroups wrap: surface a lone cause as is
        raise _lone(group) from group
    return _END  # the producer ended without its end marker; nothing more will come


def _lone(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def _make(client: FtoClient, mode: str, options: dict[str, Any]) -> _Batch:
    batch = _Batch(
        client,
        mode=mode,
        poll=options.pop("poll", None),
        max_pending=options.pop("max_pending", None),
        submit_concurrency=options.pop("submit_concurrency", None),
        buffer=options.pop("buffer", 256),
        on_progress=options.pop("on_progress", None),
        progress_interval=options.pop("progress_interval", 0.5),
        total=options.pop("total", None),
        count_remaining=options.pop("count_remaining", True),
        journal=options.pop("journal", None),
        unknown_policy=options.pop("unknown_policy", "resubmit"),
        stop=options.pop("stop", None),
    )
    if options:
        raise TypeError(f"unexpected options: {', '.join(sorted(options))}")
    return batch


def screen_many(client: FtoClient, items: Items, **options: Any) -> AsyncIterator[Outcome]:
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

    Raises:
        BatchAbortedError: after the last outcome, when a fatal error stopped the batch.
    """
    batch = _make(client, "screen", dict(options))
    return _drive(batch, lambda submits: batch.feed_requests(items, submits))


def submit_many(
    client: FtoClient, items: Items, **options: Any
) -> AsyncIterator[tuple[Any, str | FtoError]]:
    """Submit every request; yield ``(key, task_id)`` or ``(key, error)`` as each returns.

    Options as for :func:`screen_many` (``poll`` and ``max_pending`` do not apply).
    """
    batch = _make(client, "submit", dict(options))
    return _drive(batch, lambda submits: batch.feed_requests(items, submits))


def wait_many(
    client: FtoClient, task_ids: TaskIds, *, kind: TaskKind = "image_search", **options: Any
) -> AsyncIterator[Outcome]:
    """Poll existing tasks until each completes; yield an :class:`Outcome` per task id.

    ``task_ids`` is an iterable of task ids or ``(key, task_id)`` pairs, all of one
    ``kind``. Options as for :func:`screen_many`.
    """
    batch = _make(client, "wait", dict(options))
    return _drive(batch, lambda submits: batch.feed_task_ids(task_ids, kind, submits))


async def poll_many(
    client: FtoClient,
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

    feeder = asyncio.create_task(feed())
    try:
        while (item := await _next(results, feeder)) is not _END:
            yield item
        await feeder
    finally:
        if not feeder.done():
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)
