"""The engine of a batch: flow control.

It admits submits (slots, room among pending tasks, the client's poll reserve under a
call budget: :mod:`fto_async._reserve`), runs the poll scheduler, and stops on a fatal
error or gracefully on the ``stop`` event. A submit after its item's upload, or tried
again, is sent as work already started (:mod:`fto_async._lanes`): the gate admits it
before new items' first calls. Counting belongs to
:class:`~fto_async.batch._journaling._Counters`, the journal policy to
:mod:`fto_async.batch._journaling`, sharing to :mod:`fto_async.batch._sharing`, and the
pump that hands outcomes to the caller to :mod:`fto_async.batch._stream`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs

from .. import _otel
from .._kinds import request_kind
from .._lanes import STARTED, work_class
from .._observe import observer_of
from ..cache import forget_failed, submit_once
from ..errors import (
    BatchAbortedError,
    FtoError,
    InvalidRequestError,
    ResponseDecodeError,
    TaskFailedError,
)
from ..fingerprint import request_fingerprint
from ..models import ImageSearchReport, Request, TaskKind
from ..polling import PendingTask, PollScheduler
from ._journaling import _Counters, _Journaling, bind_provenance
from ._sharing import _Group, _Recent, _Sharing, provenance_of
from ._stream import _END, _pairs, _pump
from ._values import BatchClient, Item, Items, LocalImage, Outcome, Progress, TaskIds, _Options

__all__: list[str] = []

log = logging.getLogger("fto_async.batch")


class _Batch(_Sharing):
    """Private: the machinery behind :func:`screen_many` and its siblings.

    Its own job is flow control: admitting submits (slots, room among pending tasks),
    the poll scheduler, fatal and graceful stops. Counting belongs to :class:`_Counters`,
    the journal policy to :class:`_Journaling`, and the shape of what is yielded to the
    ``shape`` callable.
    """

    def __init__(
        self,
        client: BatchClient,
        options: _Options,
        *,
        shape: Callable[[Outcome], Any] = lambda outcome: outcome,
        poll_after_submit: bool = True,
    ) -> None:
        self.client = client
        self.shape = shape
        self.poll_after_submit = poll_after_submit
        in_flight = client.config.rate.in_flight_limit
        self.submit_slots = asyncio.Semaphore(options.submit_concurrency or in_flight)
        self.max_pending = options.max_pending or max(1000, 20 * in_flight)
        self.out: asyncio.Queue[Any] = asyncio.Queue(maxsize=options.buffer)
        if options.journal is not None:  # durations learnt by earlier runs, unless known here
            client.durations.restore(options.journal.load_durations())
        self.scheduler = PollScheduler(
            self._fetch, self._deliver, options.poll or client.config.poll,
            max_concurrent=max(8, in_flight), on_release=self._room_changed,
            durations=client.durations,
        )
        self.room = asyncio.Event()
        self.feed_done = asyncio.Event()
        self.unsent: set[asyncio.Task[Any]] = set()  # submits still waiting in the gate
        self.fatal: FtoError | None = None
        self.polls_aborted = False
        self.on_progress = options.on_progress
        self.progress_interval = options.progress_interval
        self.total = options.total
        self.count_remaining = options.count_remaining
        self.started = time.monotonic()
        self.counters = _Counters()
        self.journaling = (
            None if options.journal is None
            else _Journaling(options.journal, client, self.counters, options.unknown_policy)
        )
        self.fingerprinter = options.fingerprint
        self.stop = options.stop
        self.stopping = False
        # Dedupe: the batch asks for submits, so only it may share them.
        self.dedupe = options.dedupe and poll_after_submit
        self.cache = options.cache if poll_after_submit else None
        self.groups: dict[str, _Group] = {}  # fingerprint -> its group pending here
        self.by_task: dict[str, _Group] = {}  # task id -> its group, while polled
        self.recent: OrderedDict[str, _Recent] = OrderedDict()  # LRU, RECENT_TASKS
        self.reports: OrderedDict[str, ImageSearchReport] = OrderedDict()  # RECENT_REPORTS
        self.report_sizes: dict[str, int] = {}  # fingerprint -> JSON bytes of its report
        self.report_bytes = 0  # their sum, at most RECENT_REPORT_BYTES
        self.followers = 0  # duplicates waiting in groups (bounded by max_pending)
        self.identities: dict[Any, str] = {}  # key -> checked fingerprint, until emitted
        self.observer = observer_of(client)  # task spans, on_result hooks
        self.requests = 0  # distinct requests submitted (the batch span's count)
        self.open_spans: set[Any] = set()  # task spans started here and not ended yet
        # The client's poll reserve (None: a client without one), and the tasks of this
        # batch that hold a part of it, each given back when the task is delivered.
        self.reserve = getattr(client, "poll_reserve", None)
        self.held: set[PendingTask] = set()

    # -- progress -------------------------------------------------------------------

    def progress(self) -> Progress:
        c = self.counters
        elapsed = time.monotonic() - self.started
        finished = c.done + c.failed
        eta = None
        if self.total is not None and finished and elapsed > 0:
            eta = max(0, self.total - finished - c.not_attempted) * elapsed / finished
        return Progress(
            read=c.read, submitting=c.submitting, running=self.scheduler.pending,
            done=c.done, failed=c.failed, not_attempted=c.not_attempted,
            resumed=c.resumed, resubmitted_unknown=c.resubmitted_unknown,
            calls=self.client.stats.answered, retries=self.client.retries,
            rate=self.client.gate.rate, elapsed=elapsed, total=self.total, eta=eta,
            shared=c.shared, from_cache=c.from_cache,
            deferred=c.deferred,
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
        log.info("batch started%s", "" if self.total is None else f": {self.total} items")
        span = _otel.start_span("fto_async.batch")
        try:
            with _otel.use_span(span):  # task spans are its children
                await self._run(feed)
        finally:
            for open_span in list(self.open_spans):  # stopped: polled by the next run
                self._end_open(open_span)
            c = self.counters
            log.info("batch ended: %d read, %d done, %d failed, %d not attempted, "
                     "%d from cache, %d calls", c.read, c.done, c.failed, c.not_attempted,
                     c.from_cache, self.client.stats.answered)  # fmt: skip
            _otel.end_span(span, self.fatal, **{
                "fto_async.batch.items": c.read, "fto_async.batch.requests": self.requests,
                "fto_async.batch.from_cache": c.from_cache, "fto_async.batch.done": c.done,
                "fto_async.batch.failed": c.failed,
                "fto_async.batch.not_attempted": c.not_attempted,
            })  # fmt: skip

    async def _run(self, feed: Callable[[asyncio.TaskGroup], Awaitable[None]]) -> None:
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
            if self.reserve is not None:  # not read here (a stop): not polled by us
                for _ in range(len(self.held)):
                    self.reserve.release()
                self.held.clear()
            if self.journaling is not None:
                with contextlib.suppress(Exception):  # a hint: never fail a batch over it
                    await self.journaling.journal.save_durations(
                        self.client.durations.snapshot()
                    )
                await self.journaling.journal.flush()
        await self.out.put(_END)

    def _task_started(self, kind: str) -> Any:
        span = self.observer.task_started(kind)
        self.open_spans.add(span)
        return span

    def _task_ended(self, span: Any, *args: Any) -> None:
        self.open_spans.discard(span)
        self.observer.task_ended(span, *args)

    def _end_open(self, span: Any) -> None:
        """End a task span whose task did not end in this batch (a stop, a fatal error)."""
        self.open_spans.discard(span)
        _otel.tasks_in_flight(-1)
        _otel.end_span(span, None, **{"patsnap.outcome": "not ended"})

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
        self.counters.count(outcome)
        checked = self.identities.pop(outcome.key, None) if self.identities else None
        if checked is not None:
            outcome = attrs.evolve(outcome, fingerprint=checked)
        await self.out.put(self.shape(outcome))

    async def _admit(self) -> bool:
        """Wait for a submit slot and room among pending tasks; False after a fatal stop."""
        await self.submit_slots.acquire()
        while (
            self.fatal is None
            and not self.stopping
            and self.scheduler.pending + self.counters.submitting >= self.max_pending
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
        self.counters.not_attempted += 1
        if self.count_remaining:
            async for _ in rest:
                self.counters.not_attempted += 1

    # -- submitting -----------------------------------------------------------------

    async def feed_requests(self, items: Items, submits: asyncio.TaskGroup) -> None:
        if self.journaling is not None:  # its answers are this platform's and account's
            await bind_provenance(self.journaling.journal, *provenance_of(self.client))
        pairs = _pairs(items)
        async for key, value in pairs:
            self.counters.read += 1
            request, fingerprint = (
                (value.request, value.fingerprint) if isinstance(value, Item) else (value, None)
            )
            if not isinstance(request, Request):
                got = type(request).__name__
                err = InvalidRequestError(
                    "item", f"must be an ImageSearchRequest or WorkflowRequest, got {got}"
                )
                await self.emit(Outcome(key, None, None, None, err))
                continue
            if fingerprint is None and (self.dedupe or self.cache is not None
                                        or self.journaling is not None):
                # The item's identity, for sharing, the cache and the journal (computed
                # only when one of them is on: no extra work on a plain batch).
                fingerprint = request_fingerprint(request)
            if self.journaling is not None:
                # What the journal compares with its record: the same rule, unless the
                # ``fingerprint`` option says otherwise (``None``: keep the record).
                checked = (fingerprint if self.fingerprinter is None
                           else self.fingerprinter(key, request))
                found = await self.journaling.resume(
                    key, request, self.counters.read - 1, checked
                )
                # A record kept unchecked (``checked`` None: an older journal, say) keeps
                # its own result, but never answers another item nor feeds the cache.
                shareable = None if checked is None or checked != fingerprint else fingerprint
                if shareable is not None:
                    self.identities[key] = shareable
                if isinstance(found, Outcome):
                    if shareable is not None and found.ok:
                        self._remember(shareable, found)
                    await self.emit(found)
                    continue
                if found is not None:
                    if shareable is None or not await self._resume_shared(found, shareable):
                        self._track(found, shareable, request)
                        self._hold(found)
                        self.scheduler.add(found)
                    continue
            if fingerprint is not None:
                if self.journaling is None:
                    self.identities[key] = fingerprint
                if await self._share(key, request, fingerprint):
                    continue
                if await self._from_cache(key, request, fingerprint):
                    continue
            if not await self._admit():
                await self._skip_rest(pairs)
                return
            group = None
            if fingerprint is not None:
                group = _Group(fingerprint, key, request)
                if self.dedupe:
                    self.groups[fingerprint] = group
            self.counters.submitting += 1
            local = value.local if isinstance(value, Item) else None  # Item.from_path
            submits.create_task(self._submit(key, request, group, local))

    # -- submitting (continued) -------------------------------------------------------

    def _hold(self, task: PendingTask) -> None:
        """A task paid already (resumed, handed over) keeps its polls in the reserve."""
        if self.reserve is not None:
            self.reserve.hold()
            self.held.add(task)

    async def _submit(
        self, key: Any, request: Request, group: _Group | None = None,
        local: LocalImage | None = None,
    ) -> None:
        journaling = self.journaling
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
                if journaling is not None:
                    await journaling.sending(key)

        self.requests += 1
        kind = request_kind(request)
        span = self._task_started(kind)  # submit to result
        claimed = False  # holds a part of the client's poll reserve
        started = False  # a call of this item went out: its next ones are started work
        try:
            while True:
                try:
                    if self.reserve is not None and not claimed:
                        # Under a call budget: a new task only while the calls left
                        # also read the tasks already paid (waits, or refuses).
                        await self.reserve.claim(kind, 1 + (local is not None))
                        claimed = True

                    async def send() -> str:
                        nonlocal request, local, started
                        if local is not None:  # upload the local image now, once per
                            # digest, and only if this process submits (not a follower)
                            request = await local.resolve(self.client, request)
                            local = None
                            started = True
                        with work_class(STARTED) if started else contextlib.nullcontext():
                            return await self.client.submit(request, before_send=before_send)

                    # the submit's HTTP spans are children of the task span
                    with _otel.use_span(span), work_class(STARTED) if started \
                            else contextlib.nullcontext():
                        shared = group.fingerprint if group and self.dedupe else None
                        # once across processes too, if the cache keeps single flight
                        task_id = await submit_once(self.cache, shared, request_kind(request),
                                                    send, provenance_of(self.client))
                    other = self.by_task.get(task_id)
                    if group is not None and other is not None and (
                            other.fingerprint != group.fingerprint):  # fmt: skip
                        # a replayed answer: its report answers the other question only
                        raise ResponseDecodeError(
                            f"the platform gave task {task_id!r} to another request of this "
                            "batch too: its report cannot answer this one", raw=None)
                    break
                except asyncio.CancelledError:
                    if not sent and self.fatal is not None:
                        self.counters.not_attempted += 1  # cancelled by stop_for, never sent
                    raise
                except FtoError as exc:
                    if journaling is not None:
                        await journaling.submit_failed(key, exc, sent)
                    if exc.fatal:
                        self.stop_for(exc)
                    if self._retry_group(group, exc):
                        sent = False  # its row is `pending` again: the retry journals anew
                        started = True
                        self.unsent.add(me)
                        continue
                    self._task_ended(span, key, None, None, exc, 0)
                    span = None
                    await self.emit(Outcome(key, request, None, None, exc))
                    await self._fail_group(group, exc)
                    return
            if not self.poll_after_submit:
                if claimed:  # not polled by this batch
                    claimed = False
                    assert self.reserve is not None
                    self.reserve.release()
                self._task_ended(span, key, task_id, None, None, 0)
                span = None
                await self.emit(Outcome(key, request, task_id, None, None))
                return
            if journaling is not None:  # not sent: another process's task (shared)
                await (journaling.submitted if sent else journaling.shared)(key, task_id)
            if group is not None:
                group.task_id = task_id
                self.by_task[task_id] = group
                for member in list(group.members):  # those who came while it was in flight
                    if journaling is not None and not member.journaled:
                        member.journaled = True
                        await journaling.shared(member.key, task_id)
            loop = asyncio.get_running_loop()
            pending = PendingTask(
                key, task_id, kind, request, submitted_at=loop.time(), span=span
            )  # fmt: skip
            if claimed:
                claimed = False
                self.held.add(pending)  # given back when delivered
            self.scheduler.add(pending)
            span = None  # the scheduler's now: ended when delivered
        finally:
            if claimed:  # no task to poll (failed, cancelled)
                assert self.reserve is not None
                self.reserve.release()
            if span is not None:  # cancelled (a stop): no result to tell
                self._end_open(span)
            self.unsent.discard(me)
            self.counters.submitting -= 1
            self.submit_slots.release()
            self.room.set()

    async def feed_task_ids(
        self, task_ids: TaskIds, kind: TaskKind, submits: asyncio.TaskGroup
    ) -> None:
        async for key, task_id in _pairs(task_ids):
            if self.stopping:
                return  # a graceful stop: the rest is not read
            self.counters.read += 1
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
                self.counters.not_attempted += 1
                continue
            task = PendingTask(key, task_id, kind, submitted_wall=None)
            self._hold(task)
            self.scheduler.add(task)

    # -- polling --------------------------------------------------------------------

    async def _fetch(self, task: PendingTask) -> ImageSearchReport:
        async def before_send() -> None:
            task.sent = True  # past the gate: an abort lets this poll finish (it is paid for)

        if task.span is None:  # resumed, or a task id handed over: its span starts here
            task.span = self._task_started(task.kind)
        with _otel.use_span(task.span):  # polls are children of the task span
            return await self.client.get_report(task.task_id, task.kind, before_send=before_send)

    async def _deliver(
        self, task: PendingTask, report: ImageSearchReport | None, error: FtoError | None
    ) -> None:
        if task in self.held:  # read (or given up): its reserved polls come back
            self.held.discard(task)
            assert self.reserve is not None
            self.reserve.release(task.polls)
        if error is not None and error.fatal and not self.polls_aborted:
            self.stop_for(error)
            self.polls_aborted = True
            await self.scheduler.abort(error)  # polling is refused too: end the rest now
        self._task_ended(task.span, task.key, task.task_id, report, error, task.polls)
        task.span = None
        if self.journaling is not None and task.request is not None:
            await self.journaling.result(task.key, report, error)
        group = self.by_task.pop(task.task_id, None) if self.by_task else None
        shared_with = None if group is None else group.shared_with
        if shared_with is not None:
            self.counters.shared += 1
        outcome = Outcome(
            task.key, task.request, task.task_id, report if error is None else None, error,
            submitted_at=task.submitted_wall, polls=task.polls, shared_with=shared_with,
        )
        if group is not None and outcome.ok:
            assert outcome.report is not None
            if self.cache is not None:
                platform, account = provenance_of(self.client)
                await self.cache.put(group.fingerprint, task.kind, dict(outcome.report.raw),
                                     task.task_id, platform=platform,
                                     account=account)  # fmt: skip
            self._remember(group.fingerprint, outcome)
        elif group is not None and isinstance(error, TaskFailedError) and self.dedupe:
            # never hand this failed task to the next asker (another process, a retry)
            await forget_failed(self.cache, group.fingerprint, task.task_id,
                                provenance_of(self.client))  # fmt: skip
        await self.emit(outcome)
        if group is None:
            return
        for member in self._ungroup(group):
            if self.journaling is not None:
                await self.journaling.result(member.key, outcome.report, error)
            self.counters.shared += 1
            await self.emit(Outcome(
                member.key, member.request, task.task_id, outcome.report, error,
                submitted_at=task.submitted_wall, shared_with=group.key,
            ))  # fmt: skip


def _drive(
    batch: _Batch, feed: Callable[[asyncio.TaskGroup], Awaitable[None]]
) -> AsyncIterator[Any]:
    def verdict() -> None:
        if batch.fatal is not None:
            raise BatchAbortedError(batch.fatal, not_attempted=batch.counters.not_attempted)

    return _pump(batch.out, lambda: batch.run(feed), verdict)
