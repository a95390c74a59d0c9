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
  in memory for ~30 KB of JSON, so ~6 MB at most; 256 grew a soak's RSS by 26 MB). Most
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
import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Final, Literal, Protocol, TypeAlias, TypedDict, Unpack

import attrs

from .cache import ReportCache  # at run time too: get_type_hints resolves BatchOptions
from .config import ClientConfig, PollConfig
from .errors import (
    BatchAbortedError,
    FtoError,
    InvalidRequestError,
    RecordedError,
    ResponseDecodeError,
    TaskFailedError,
    TaskTimeoutError,
    TransportError,
    UnknownSubmissionError,
    may_have_created_task,
)
from .fingerprint import request_fingerprint, wire_fingerprint
from .journal import Journal  # at run time, so get_type_hints resolves BatchOptions
from .models import (
    FollowUp,
    FollowUpResult,
    ImageSearchReport,
    Request,
    RiskLevel,
    TaskKind,
    request_kind,
)
from .polling import PendingTask, PollScheduler, TaskDurations
from .ratelimit import RateGateProtocol
from .transport import BeforeSend, TransportStats

__all__ = [
    "RECENT_REPORTS",
    "RECENT_TASKS",
    "BatchClient",
    "BatchOptions",
    "Fingerprinter",
    "Item",
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

#: Finished fingerprints a batch remembers (first key and task id) for later duplicates.
RECENT_TASKS: Final = 10_000
#: Finished fingerprints whose typed reports a batch keeps for later duplicates (LRU).
RECENT_REPORTS: Final = 64


@attrs.frozen
class Item:
    """One input item: its key, its request and, optionally, its fingerprint.

    Usage: ``screen_many([Item("sku-1", request), Item("sku-2", request, fingerprint=fp)])``.
    Plain requests and ``(key, request)`` pairs work too; an ``Item`` is needed only to
    hand over a precomputed fingerprint, e.g. for a request whose ``url`` is a temporary
    upload URL of a local file: ``request_fingerprint(request, image_sha256=image_digest(data))``.

    Attributes:
        key: the item's key (as in a ``(key, request)`` pair).
        request: an ``ImageSearchRequest`` or ``WorkflowRequest``.
        fingerprint: its :func:`~fto_async.fingerprint.request_fingerprint`; ``None``
            (default) computes it from ``request``.
    """

    key: Any
    request: Request
    fingerprint: str | None = None


Items: TypeAlias = (
    Iterable[Request | tuple[Any, Request] | Item]
    | AsyncIterable[Request | tuple[Any, Request] | Item]
)
TaskIds: TypeAlias = Iterable[str | tuple[Any, str]] | AsyncIterable[str | tuple[Any, str]]


class BatchClient(Protocol):
    """What a batch uses of a client (:class:`~fto_async.FtoClient` is one).

    A test can hand a batch any object with these members: no server, no client needed.
    """

    @property
    def config(self) -> ClientConfig:
        """The options: ``rate.in_flight_limit`` sizes the batch, ``poll`` paces polls."""

    @property
    def stats(self) -> TransportStats:
        """Traffic counters (``calls`` feeds :class:`Progress`)."""

    @property
    def retries(self) -> int:
        """Retries performed so far."""

    @property
    def gate(self) -> RateGateProtocol:
        """The rate gate (its ``rate`` feeds :class:`Progress`)."""

    @property
    def durations(self) -> TaskDurations:
        """The learned task durations every scheduler of the client shares."""

    def encode_request(self, request: Request) -> dict[str, Any]:
        """The request's wire body, for the journal."""

    def decode_report(self, data: object, kind: TaskKind = "image_search") -> ImageSearchReport:
        """A typed report from the journal's JSON."""

    async def submit(self, request: Request, *, before_send: BeforeSend | None = None) -> str:
        """Submit one request; return its task id."""

    async def get_report(
        self,
        task_id: str,
        kind: TaskKind = "image_search",
        *,
        before_send: BeforeSend | None = None,
    ) -> ImageSearchReport:
        """Poll one task once (``before_send`` as for :meth:`submit`)."""


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
        follow_ups: one :class:`~fto_async.FollowUpResult` per patent the ``follow_up``
            option compared 1-vs-1 (see :mod:`fto_async.followup`); empty without it.
        shared_with: the key of the item whose task answered this one (an equal request
            in the same batch), else ``None``.
        from_cache: the report comes from the :class:`~fto_async.cache.ReportCache`.
        cached_at: epoch seconds when that cached report was stored (else ``None``).
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
    follow_ups: tuple[FollowUpResult, ...] = ()
    shared_with: Any = None
    from_cache: bool = False
    cached_at: float | None = None

    @property
    def cache_age(self) -> float | None:
        """Seconds the cached report was old when this outcome was decided."""
        return None if self.cached_at is None else max(0.0, self.completed_at - self.cached_at)

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
        calls: calls of this client that reached the platform (an HTTP answer came
            back, any status: ``TransportStats.answered``); attempts that never connected
            or got no answer are not counted.
        retries: retries this client made.
        rate: the rate gate's pace in calls per second.
        elapsed: seconds since the batch started.
        total: the number of items, if the caller said (for the ETA).
        eta: seconds left, estimated from the completion rate (``None`` if unknown).
        follow_ups_running: 1-vs-1 follow-ups started and not ended (``follow_up`` option).
        follow_ups_done: follow-ups ended with a report (resumed ones included).
        follow_ups_failed: follow-ups ended with an error.
        shared: outcomes answered by another item's task or report (no call of their own).
        from_cache: requests answered by the report cache (cache hits; no call).
        deferred: of ``failed``, items whose error was not theirs (a fatal stop, a
            transient fault, an unreadable answer): a journal leaves them for the next run.
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
    follow_ups_running: int = 0
    follow_ups_done: int = 0
    follow_ups_failed: int = 0
    shared: int = 0
    from_cache: int = 0
    deferred: int = 0

    @property
    def finished(self) -> int:
        """Items with an outcome."""
        return self.done + self.failed


ProgressCallback: TypeAlias = Callable[[Progress], None]
#: ``(key, request) -> fingerprint`` for the journal (``None``: unknown, never compared).
Fingerprinter: TypeAlias = Callable[[Any, Request], str | None]
_END = object()


class BatchOptions(TypedDict, total=False):
    """The options of :func:`screen_many`, :func:`submit_many` and :func:`wait_many`
    (documented on :func:`screen_many`); keyword arguments checked by the type checker."""

    poll: PollConfig | None
    max_pending: int | None
    submit_concurrency: int | None
    buffer: int
    on_progress: ProgressCallback | None
    progress_interval: float
    total: int | None
    count_remaining: bool
    journal: Journal | None
    unknown_policy: Literal["resubmit", "skip"]
    stop: asyncio.Event | None
    fingerprint: Fingerprinter | None
    follow_up: FollowUp | None
    dedupe: bool
    cache: ReportCache | None


@attrs.frozen(kw_only=True)
class _Options:
    """Private: :class:`BatchOptions` with defaults filled in and checked once."""

    poll: PollConfig | None = None
    max_pending: int | None = None
    submit_concurrency: int | None = None
    buffer: int = 256
    on_progress: ProgressCallback | None = None
    progress_interval: float = 0.5
    total: int | None = None
    count_remaining: bool = True
    journal: Journal | None = None
    unknown_policy: str = "resubmit"
    stop: asyncio.Event | None = None
    fingerprint: Fingerprinter | None = None
    follow_up: FollowUp | None = None
    dedupe: bool = True
    cache: ReportCache | None = None

    @classmethod
    def of(cls, options: BatchOptions) -> _Options:
        unknown = set(options) - set(attrs.fields_dict(cls))
        if unknown:
            raise TypeError(f"unexpected options: {', '.join(sorted(unknown))}")
        made = cls(**options)
        if made.unknown_policy not in ("resubmit", "skip"):
            raise InvalidRequestError("unknown_policy", "must be 'resubmit' or 'skip'")
        if made.follow_up is not None:  # the stage wraps screen_many: FtoClient routes it
            raise TypeError("follow_up is an option of FtoClient.screen_many "
                            "(or fto_async.followup.screen_with_follow_ups)")  # fmt: skip
        return made


@attrs.define
class _Counters:
    """Private: the batch's progress counters (one job: counting)."""

    read: int = 0
    submitting: int = 0
    done: int = 0
    failed: int = 0
    not_attempted: int = 0
    resumed: int = 0
    resubmitted_unknown: int = 0
    shared: int = 0
    from_cache: int = 0

    deferred: int = 0

    def count(self, outcome: Outcome) -> None:
        if outcome.error is None:
            self.done += 1
        else:
            self.failed += 1
            if _transient(outcome.error):
                self.deferred += 1


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
    if isinstance(item, Item):
        return item.key, item
    if isinstance(item, tuple) and len(item) == 2:
        return item[0], item[1]
    return position, item


class _Journaling:
    """Private: the journal policy of a batch (one job: what the journal says and records).

    It decides what an item needs (yield from the record, poll its task, or submit it)
    and records each step; the batch makes the calls.
    """

    def __init__(
        self, journal: Journal, client: BatchClient, counters: _Counters, unknown_policy: str
    ) -> None:
        self.journal = journal
        self.client = client
        self.counters = counters
        self.unknown_policy = unknown_policy

    async def resume(
        self, key: Any, request: Request, position: int, fingerprint: str | None
    ) -> Outcome | PendingTask | None:
        """What the journal holds for one item: an outcome to yield without a call, a task
        to poll, or ``None`` when the item must be submitted now.

        ``fingerprint`` is the item's (``None``: unknown, so the record is kept as it is).
        """
        journal, counters = self.journal, self.counters
        row = journal.get(str(key))
        kind = request_kind(request)
        body = self.client.encode_request(request)
        if row is None:
            await journal.add_pending(str(key), position, body, kind, fingerprint=fingerprint)
            return None
        was = row.fingerprint
        if was is None and row.kind is not None:  # schema 1: from the stored wire body
            was = wire_fingerprint("workflow" if row.kind == "workflow" else "image_search",
                                   row.request)
        state = str(row.state)
        if fingerprint is not None and fingerprint != was and state != "submitting":
            # The request changed: its old result must never answer for the new one.
            # (A row `submitting` here is a live submit of this process: a repeated key.)
            await journal.replace(str(key), position, body, kind, fingerprint=fingerprint)
            return None
        if state == "done":
            try:
                report = self.client.decode_report(row.report, kind)
            except FtoError:  # an unreadable record: screen the item again
                await journal.replace(str(key), position, body, kind, fingerprint=fingerprint)
                return None
            counters.resumed += 1
            return Outcome(key, request, row.task_id, report, None,
                           submitted_at=row.submitted_at, resumed=True)
        if state == "failed":
            counters.resumed += 1
            err = RecordedError(row.error or "failed", error_type=row.error_type)
            return Outcome(key, request, row.task_id, None, err,
                           submitted_at=row.submitted_at, resumed=True)
        if state == "submitted" and row.task_id:
            return self._pending(key, request, kind, row)
        if state in ("submitting", "unknown"):
            if self.unknown_policy == "skip":
                unknown = UnknownSubmissionError(
                    f"item {key!r}: an earlier run died while submitting it; a task may "
                    "exist on the platform (skipped by policy)"
                )
                return Outcome(key, request, None, None, unknown)
            counters.resubmitted_unknown += 1
            await journal.reset_to_pending(str(key))
        return None

    async def shared(self, key: Any, task_id: str) -> None:
        await self.journal.mark_shared(str(key), task_id)

    async def shared_failed(self, key: Any, exc: FtoError) -> None:
        """A duplicate whose group's submit failed: recorded like its first item."""
        if not (exc.fatal or exc.retryable or may_have_created_task(exc)):
            await self.journal.mark_failed(str(key), str(exc), type(exc).__name__)
        # else it stays `pending`: the next run submits its group again

    @staticmethod
    def _pending(key: Any, request: Request, kind: TaskKind, row: Any) -> PendingTask:
        """The task of a journal row, to poll (its age from the recorded submit time)."""
        loop = asyncio.get_running_loop()
        age = time.time() - row.submitted_at if row.submitted_at else None
        return PendingTask(
            key, row.task_id, kind, request,
            submitted_at=None if age is None else loop.time() - max(0.0, age),
            submitted_wall=row.submitted_at,
        )

    async def sending(self, key: Any) -> None:
        await self.journal.mark_submitting(str(key))

    async def submitted(self, key: Any, task_id: str) -> None:
        await self.journal.mark_submitted(str(key), task_id)

    async def submit_failed(self, key: Any, exc: FtoError, sent: bool = True) -> None:
        if sent and may_have_created_task(exc):
            await self.journal.mark_unknown(str(key))  # the platform may hold a task for it
        else:
            # Never sent (a token failure before the gate), or refused: no task exists.
            retry_later = _transient(exc)  # not the item's fault: try again next run
            await self.journal.mark_submit_failed(
                str(key), str(exc), type(exc).__name__, retry_later
            )

    async def result(
        self, key: Any, report: ImageSearchReport | None, error: FtoError | None
    ) -> None:
        if error is None and report is not None:
            await self.journal.mark_done(str(key), dict(report.raw))
        elif isinstance(error, TaskFailedError) or (error is not None and not (
            _transient(error) or isinstance(error, TaskTimeoutError)
        )):
            await self.journal.mark_failed(str(key), str(error), type(error).__name__)
        # timeouts, fatal and transient errors leave the task `submitted`: the next run polls it


def _transient(error: FtoError) -> bool:
    """Not the item's fault: the next run tries it again (a fatal stop, a retryable error,
    an answer that could not be read: too large, not JSON, not the documented shape)."""
    return (
        error.fatal or error.retryable or isinstance(error, TransportError | ResponseDecodeError)
    )


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


class _Batch:
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
        self.followers = 0  # duplicates waiting in groups (bounded by max_pending)

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
            if self.journaling is not None:
                with contextlib.suppress(Exception):  # a hint: never fail a batch over it
                    await self.journaling.journal.save_durations(
                        self.client.durations.snapshot()
                    )
                await self.journaling.journal.flush()
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
        self.counters.count(outcome)
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
                if isinstance(found, Outcome):
                    if fingerprint is not None and found.ok:
                        self._remember(fingerprint, found)
                    await self.emit(found)
                    continue
                if found is not None:
                    if fingerprint is None or not await self._resume_shared(found, fingerprint):
                        self._track(found, fingerprint, request)
                        self.scheduler.add(found)
                    continue
            if fingerprint is not None:
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
            submits.create_task(self._submit(key, request, group))

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
        hit = await self.cache.get(fingerprint)
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
        hit = await self.cache.get(fingerprint)
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
        self.reports[fingerprint] = outcome.report
        self.reports.move_to_end(fingerprint)
        if len(self.reports) > RECENT_REPORTS:
            self.reports.popitem(last=False)

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

    # -- submitting (continued) -------------------------------------------------------

    async def _submit(self, key: Any, request: Request, group: _Group | None = None) -> None:
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

        try:
            while True:
                try:
                    task_id = await self.client.submit(request, before_send=before_send)
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
                        self.unsent.add(me)
                        continue
                    await self.emit(Outcome(key, request, None, None, exc))
                    await self._fail_group(group, exc)
                    return
            if not self.poll_after_submit:
                await self.emit(Outcome(key, request, task_id, None, None))
                return
            if journaling is not None:
                await journaling.submitted(key, task_id)
            if group is not None:
                group.task_id = task_id
                self.by_task[task_id] = group
                for member in list(group.members):  # those who came while it was in flight
                    if journaling is not None and not member.journaled:
                        member.journaled = True
                        await journaling.shared(member.key, task_id)
            loop = asyncio.get_running_loop()
            self.scheduler.add(
                PendingTask(key, task_id, request_kind(request), request, submitted_at=loop.time())
            )
        finally:
            self.unsent.discard(me)
            self.counters.submitting -= 1
            self.submit_slots.release()
            self.room.set()

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
            self.scheduler.add(PendingTask(key, task_id, kind, submitted_wall=None))

    # -- polling --------------------------------------------------------------------

    async def _fetch(self, task: PendingTask) -> ImageSearchReport:
        async def before_send() -> None:
            task.sent = True  # past the gate: an abort lets this poll finish (it is paid for)

        return await self.client.get_report(task.task_id, task.kind, before_send=before_send)

    async def _deliver(
        self, task: PendingTask, report: ImageSearchReport | None, error: FtoError | None
    ) -> None:
        if error is not None and error.fatal and not self.polls_aborted:
            self.stop_for(error)
            self.polls_aborted = True
            await self.scheduler.abort(error)  # polling is refused too: end the rest now
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
                await self.cache.put(group.fingerprint, task.kind, dict(outcome.report.raw),
                                     task.task_id)  # fmt: skip
            self._remember(group.fingerprint, outcome)
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


def _kind_of(outcome: Outcome) -> TaskKind:
    return "image_search" if outcome.request is None else request_kind(outcome.request)


async def _drive(
    batch: _Batch, feed: Callable[[asyncio.TaskGroup], Awaitable[None]]
) -> AsyncIterator[Any]:
    driver = asyncio.create_task(batch.run(feed))
    try:
        while (item := await _next(batch.out, driver)) is not _END:
            yield item
        await driver
        if batch.fatal is not None:
            raise BatchAbortedError(batch.fatal, not_attempted=batch.counters.not_attempted)
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
        follow_up: a :class:`~fto_async.followup.FollowUp`: compare each item's riskiest
            patents 1-vs-1 before its outcome is yielded (``Outcome.follow_ups``). Only
            through :meth:`FtoClient.screen_many` (the stage needs the AI67 methods):
            see :func:`fto_async.followup.screen_with_follow_ups`.
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

    feeder = asyncio.create_task(feed())
    try:
        while (item := await _next(results, feeder)) is not _END:
            yield item
        await feeder
    finally:
        if not feeder.done():
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)
