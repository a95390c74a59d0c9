"""The follow-up stage: a closer look at each item's riskiest matches, 1-vs-1 (AI67).

``client.screen_many(items, follow_up=FollowUp(min_risk=RiskLevel.HIGH, top=3))`` wraps
:func:`fto_async.batch.screen_many`: when an item's report is in, its comparisons at or
above ``min_risk``, the ``top`` best by score, each get a 1-vs-1 task (the item's image
against that patent). The item's :class:`~fto_async.batch.Outcome` is yielded once its
follow-ups have ended, with one :class:`~fto_async.FollowUpResult` per patent in
``outcome.follow_ups``::

    item report in --> pick patents --> image URL --> submit_1v1 (journal first) --+
                                                                                    |
    Outcome(follow_ups=...) <-- every follow-up ended <-- PollScheduler <-----------+

Rules:

* A failed follow-up never fails the item: its error is in its ``FollowUpResult``.
* Every call goes through the same client, hence the same rate gate; polls go through
  one :class:`~fto_async.polling.PollScheduler` with the batch's poll config.
* The image URL is the request's ``url``; a workflow request with only base64 gets one
  P010 upload of the decoded bytes per item. :attr:`FollowUp.image_url` overrides this
  (the CLI uses it to upload a local file again once its P010 URL may have expired).
* With a journal, each follow-up is a row of its ``follow_ups`` table keyed by the item
  and the patent: ``submitting`` is committed before the call, the task id before it is
  polled, the report when done. A rerun yields done ones from the journal, polls
  submitted ones and submits only the rest: nothing is paid twice. A row left
  ``submitting``/``unknown`` by a dead run follows the batch's ``unknown_policy``.
  What a row says and what a result records is the items' policy
  (:mod:`fto_async.batch._journaling`): an answer that could not be read (too large,
  not the documented shape) keeps the follow-up for the next run, as it keeps an item.
  A journaled task older than 8 h (the AI67 validity) ends with
  :class:`~fto_async.errors.TaskExpiredError` without a call; it is not resubmitted.
* A fatal error (quota, auth) stops new follow-ups, ends pending polls with it, lets
  every outcome out, then raises :class:`~fto_async.errors.BatchAbortedError`.
* A ``stop`` event (graceful stop): in-flight submits finish and are journaled, nothing
  new is submitted, and items whose follow-ups have not ended are not yielded (the
  journal resumes them next run), as the batch does with pending tasks.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final, Protocol, Unpack

import attrs

from .. import _otel
from .._lanes import STARTED, work_class
from .._observe import observer_of
from ..errors import (
    BatchAbortedError,
    FtoError,
    InvalidRequestError,
    RecordedError,
    TaskExpiredError,
    UnknownSubmissionError,
)
from ..fingerprint import follow_up_fingerprint
from ..journal import ItemState, Journal
from ..models import (
    ImageSearchReport,
    ImageSearchRequest,
    OneVsOneReport,
    OneVsOneRequest,
    UploadedImage,
    WorkflowRequest,
)
from ..polling import PendingTask, PollScheduler
from ._engine import _Batch, _drive
from ._journaling import plan, result_state, submit_failed_state, transient
from ._sharing import provenance_of
from ._stream import _END, _pump
from ._values import (
    BatchClient,
    BatchOptions,
    FollowUp,
    FollowUpResult,
    Items,
    Outcome,
    Progress,
    _Options,
)

__all__ = ["FollowUpClient", "screen_with_follow_ups"]

#: AI67 task ids are valid for this many seconds (reference §5.1).
TASK_VALIDITY: Final = 8 * 3600.0
#: Items whose follow-ups run at once (the batch waits beyond: bounded memory).
_MAX_ITEMS: Final = 256
_RECENT_FOLLOW_UPS: Final = 4096  # finished follow-ups remembered for equal items

class FollowUpClient(BatchClient, Protocol):
    """What the stage uses of a client: a batch client plus the AI67 and P010 methods."""

    async def submit_1v1(self, request: OneVsOneRequest) -> str:
        """Submit a 1-vs-1 task; return its id."""

    async def get_1v1_report(self, task_id: str) -> OneVsOneReport:
        """Poll a 1-vs-1 task once."""

    async def upload_image(
        self, image: Any, *, filename: str | None = None
    ) -> UploadedImage:
        """Upload image bytes (P010); return the public URL."""


class _Stopped(FtoError):
    """Private: a graceful stop ended this poll; the journal keeps the task."""


_STOPPED = _Stopped("stopped")


@attrs.define
class _Counts:
    running: int = 0
    done: int = 0
    failed: int = 0
    resubmitted: int = 0  # follow-ups a dead run left mid-submit, submitted again


class _Stage:
    """Private: one run of the follow-up stage over one batch."""

    def __init__(self, client: FollowUpClient, spec: FollowUp, options: BatchOptions) -> None:
        self.client = client
        self.spec = spec
        self.options = dict(options)
        self.journal: Journal | None = options.get("journal")
        self.cache = options.get("cache")
        # follow-up fingerprint -> its result, while asked and for a while after (LRU):
        # equal items of one batch pay one 1-vs-1 task per patent, not one each
        self.flights: OrderedDict[str, asyncio.Future[FollowUpResult | None]] = OrderedDict()
        self.stop: asyncio.Event | None = options.get("stop")
        self.unknown_policy = options.get("unknown_policy", "resubmit")
        self.user_progress = options.get("on_progress")
        self.counts = _Counts()
        self.latest: Progress | None = None
        self.fatal: FtoError | None = None
        self.stopping = False
        self.out: asyncio.Queue[Any] = asyncio.Queue(maxsize=options.get("buffer", 256))
        self.slots = asyncio.Semaphore(_MAX_ITEMS)
        poll = options.get("poll") or client.config.poll
        self.scheduler = PollScheduler(  # its own kind, "one_vs_one", in the shared durations
            self._fetch, self._deliver, poll, durations=client.durations
        )
        self.inner_abort: BatchAbortedError | None = None
        self.aborting: asyncio.Task[None] | None = None
        self.observer = observer_of(client)  # follow-up task spans: children of the item's
        self.observer.keep_spans = True
        if self.user_progress is not None:
            self.options["on_progress"] = self._progress

    # -- progress -------------------------------------------------------------------

    def _progress(self, progress: Progress | None = None) -> None:
        if progress is not None:
            self.latest = progress
        if self.user_progress is not None and self.latest is not None:
            c = self.counts
            self.user_progress(attrs.evolve(
                self.latest, follow_ups_running=c.running, follow_ups_done=c.done,
                follow_ups_failed=c.failed, follow_ups_resubmitted=c.resubmitted,
                calls=self.client.stats.calls,
            ))  # fmt: skip

    def _ended(self, result: FollowUpResult) -> FollowUpResult:
        if result.error is None:
            self.counts.done += 1
        else:
            self.counts.failed += 1
        self._progress()
        return result

    # -- the driver -----------------------------------------------------------------

    async def drive(self, items: Items) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                runner = tg.create_task(self.scheduler.run())
                watcher = tg.create_task(self._watch_stop()) if self.stop is not None else None
                try:
                    async with asyncio.TaskGroup() as follows:
                        await self._consume(items, follows)
                finally:
                    self.scheduler.close()
                    if watcher is not None:
                        watcher.cancel()
                await runner
        finally:
            if self.journal is not None:
                with contextlib.suppress(RuntimeError):
                    await self.journal.flush()
            self._progress()
        await self.out.put(_END)

    async def _consume(self, items: Items, follows: asyncio.TaskGroup) -> None:
        options: Any = self.options
        try:
            batch = _Batch(self.client, _Options.of(options))
            outcomes = _drive(batch, lambda submits: batch.feed_requests(items, submits))
            async for outcome in outcomes:
                picks = self.spec.select(outcome.report) if outcome.error is None else []
                if not picks:
                    await self.out.put(outcome)
                    continue
                await self.slots.acquire()
                follows.create_task(self._follow(outcome, picks))
        except BatchAbortedError as exc:
            self.inner_abort = exc

    async def _watch_stop(self) -> None:
        assert self.stop is not None
        await self.stop.wait()
        self.stopping = True
        await self.scheduler.abort(_STOPPED)

    def _stop_for(self, error: FtoError) -> None:
        if self.fatal is None:
            self.fatal = error
            self.aborting = asyncio.get_running_loop().create_task(self.scheduler.abort(error))

    # -- one item ---------------------------------------------------------------------

    async def _follow(self, outcome: Outcome, picks: list[str]) -> None:
        try:
            url: asyncio.Future[str] | None = None

            async def image_url() -> str:
                nonlocal url
                if url is None:  # one resolution (at most one upload) per item
                    url = asyncio.ensure_future(self._image_url(outcome))
                return await asyncio.shield(url)

            parent = self.observer.kept_span(outcome.task_id)
            with _otel.use_span(parent):  # the follow-ups' task spans are its children
                results = await asyncio.gather(
                    *(self._one(outcome, pn, image_url) for pn in picks)
                )
            if any(r is None for r in results):
                return  # stopped: the journal resumes this item next run
            done = tuple(r for r in results if r is not None)
            await self.out.put(attrs.evolve(outcome, follow_ups=done))
        finally:
            self.slots.release()

    async def _image_url(self, outcome: Outcome) -> str:
        if self.spec.image_url is not None:
            return await self.spec.image_url(outcome.key, outcome.request)
        request = outcome.request
        if isinstance(request, ImageSearchRequest):
            return request.url
        if isinstance(request, WorkflowRequest):
            if request.url is not None:
                return request.url
            if request.target_image_base64 is not None:
                data = base64.b64decode(request.target_image_base64)
                return (await self.client.upload_image(data)).url
        raise InvalidRequestError("request", "the item has no image to compare")

    # -- one follow-up ----------------------------------------------------------------

    async def _one(
        self, outcome: Outcome, pn: str, image_url: Callable[[], Awaitable[str]]
    ) -> FollowUpResult | None:
        key, journal = str(outcome.key), self.journal
        row = journal.follow_up(key, pn) if journal is not None else None
        ident = self._identity(outcome, pn)
        if journal is not None and row is not None and None not in (ident, row.fingerprint) \
                and row.fingerprint != ident:
            await journal.replace_follow_up(key, pn)  # asked otherwise now (report language)
            row = None
        action = plan(row, unknown_policy=self.unknown_policy)  # the items' policy
        if journal is None or row is None:
            return await self._ask(outcome, pn, image_url)
        if action == "done":
            try:
                report = self.client.decode_report(row.report, "one_vs_one")
            except FtoError as exc:  # an unreadable record: say so, pay nothing again
                return self._ended(FollowUpResult(pn, row.task_id, None, exc, True))
            one = report if isinstance(report, OneVsOneReport) else None
            return self._ended(FollowUpResult(pn, row.task_id, one, None, True))
        if action == "failed":
            err = RecordedError(row.error or "failed", error_type=row.error_type)
            return self._ended(FollowUpResult(pn, row.task_id, None, err, True))
        if action == "poll":
            assert row.task_id is not None
            return await self._resume_poll(key, pn, row.task_id, row.submitted_at)
        if action == "skip":
            unknown = UnknownSubmissionError(
                f"follow-up {key!r}/{pn}: an earlier run died while submitting it; "
                "a task may exist on the platform (skipped by policy)"
            )
            return self._ended(FollowUpResult(pn, None, None, unknown))
        if action == "resubmit":
            self.counts.resubmitted += 1  # announced, as for items
            if row.state is ItemState.SUBMITTING:
                await journal.mark_follow_up(key, pn, ItemState.UNKNOWN)
            await journal.mark_follow_up(key, pn, ItemState.PENDING)
        return await self._ask(outcome, pn, image_url)

    def _identity(self, outcome: Outcome, pn: str) -> str | None:
        """What the follow-up asks (``None``: its item's record cannot be checked)."""
        if outcome.fingerprint is None:
            return None
        return follow_up_fingerprint(outcome.fingerprint, pn, self.spec.report_lang)

    async def _ask(
        self, outcome: Outcome, pn: str, image_url: Callable[[], Awaitable[str]]
    ) -> FollowUpResult | None:
        """A follow-up to pay for, unless an equal one (same checked item fingerprint,
        patent and report language) is asked in this batch or answered by the cache."""
        key = str(outcome.key)
        ident = self._identity(outcome, pn)
        if ident is None:  # cannot be checked: its own task, shared with none
            return await self._submit(key, pn, image_url)
        flight = self.flights.get(ident)
        if flight is not None:
            self.flights.move_to_end(ident)
            shared = await asyncio.shield(flight)
            if shared is not None and shared.report is not None:
                await self._adopt(key, pn, shared.task_id, shared.report, ident)
                return self._ended(FollowUpResult(pn, shared.task_id, shared.report, None))
            return await self._submit(key, pn, image_url, ident)  # it failed: ask alone
        flight = self.flights[ident] = asyncio.get_running_loop().create_future()
        while len(self.flights) > _RECENT_FOLLOW_UPS:
            self.flights.popitem(last=False)
        result: FollowUpResult | None = None
        try:
            cached = await self._cached(ident, pn)
            if cached is not None and cached.report is not None:
                await self._adopt(key, pn, cached.task_id, cached.report, ident)
                result = self._ended(cached)
            else:
                result = await self._submit(key, pn, image_url, ident)
                if result is not None and result.report is not None and self.cache:
                    platform, account = provenance_of(self.client)
                    await self.cache.put(ident, "one_vs_one", dict(result.report.raw),
                                         result.task_id, platform=platform,
                                         account=account)  # fmt: skip
            return result
        finally:
            if not flight.done():
                flight.set_result(result)

    async def _cached(self, ident: str, pn: str) -> FollowUpResult | None:
        if self.cache is None:
            return None
        platform, account = provenance_of(self.client)
        hit = await self.cache.get(ident, platform=platform, account=account)
        if hit is None:
            return None
        try:
            report = self.client.decode_report(hit.report, "one_vs_one")
        except FtoError:
            return None  # an unreadable entry: ask again
        one = report if isinstance(report, OneVsOneReport) else None
        return None if one is None else FollowUpResult(pn, hit.task_id, one, None)

    async def _adopt(
        self, key: str, pn: str, task_id: str | None, report: OneVsOneReport, ident: str
    ) -> None:
        """Journal a follow-up answered by an equal one's task or by the cache."""
        journal = self.journal
        if journal is None:
            return
        await journal.add_follow_up(key, pn, fingerprint=ident)
        await journal.mark_follow_up(key, pn, ItemState.SUBMITTING)
        await journal.mark_follow_up(key, pn, ItemState.SUBMITTED, task_id=task_id or "cached")
        await journal.mark_follow_up(key, pn, ItemState.DONE, report=dict(report.raw))

    async def _submit(
        self, key: str, pn: str, image_url: Callable[[], Awaitable[str]],
        ident: str | None = None,
    ) -> FollowUpResult | None:
        journal = self.journal
        if self.stopping:
            return None
        if self.fatal is not None:
            return self._ended(FollowUpResult(pn, None, None, self.fatal))
        self.counts.running += 1
        reserve = getattr(self.client, "poll_reserve", None)
        claimed = False  # holds a part of the client's poll reserve (handed to _poll)
        try:
            try:
                with work_class(STARTED):  # the item was screened: its next step
                    request = OneVsOneRequest(pn, await image_url(), self.spec.report_lang)
                if reserve is not None:  # under a call budget: the polls of paid tasks first
                    await reserve.claim("one_vs_one", 1)
                    claimed = True
            except FtoError as exc:  # a bad patent number, an upload that failed
                if exc.fatal:
                    self._stop_for(exc)
                elif journal is not None and not transient(exc):
                    await journal.add_follow_up(key, pn, fingerprint=ident)
                    await journal.mark_follow_up(key, pn, ItemState.FAILED, error=str(exc),
                                                 error_type=type(exc).__name__)  # fmt: skip
                return self._ended(FollowUpResult(pn, None, None, exc))
            if journal is not None:
                await journal.add_follow_up(key, pn, fingerprint=ident)
                await journal.mark_follow_up(key, pn, ItemState.SUBMITTING)
            span = self.observer.task_started("one_vs_one")
            try:
                with _otel.use_span(span), work_class(STARTED):
                    task_id = await self.client.submit_1v1(request)
            except BaseException as exc:
                error = exc if isinstance(exc, FtoError) else None
                self.observer.task_ended(span, (key, pn), None, None, error, 0)
                if error is None:
                    raise
                if journal is not None:
                    await self._submit_failed(key, pn, error)
                if error.fatal:
                    self._stop_for(error)
                return self._ended(FollowUpResult(pn, None, None, error))
            if journal is not None:
                await journal.mark_follow_up(key, pn, ItemState.SUBMITTED, task_id=task_id)
            claimed = False  # _poll gives it back
            return await self._poll(key, pn, task_id, time.time(), span, held=True)
        finally:
            if claimed:  # no task to poll
                assert reserve is not None
                reserve.release()
            self.counts.running -= 1

    async def _submit_failed(self, key: str, pn: str, exc: FtoError) -> None:
        assert self.journal is not None
        state = submit_failed_state(exc)  # the items' rule: unknown, pending or failed
        await self.journal.mark_follow_up(key, pn, state, error=str(exc),
                                          error_type=type(exc).__name__)  # fmt: skip

    async def _resume_poll(
        self, key: str, pn: str, task_id: str, submitted_at: float | None
    ) -> FollowUpResult | None:
        if submitted_at is not None and time.time() - submitted_at >= TASK_VALIDITY:
            err = TaskExpiredError(task_id, "submitted more than 8 h ago (no call made)")
            await self._record(key, pn, None, err)
            return self._ended(FollowUpResult(pn, task_id, None, err))
        self.counts.running += 1
        try:
            return await self._poll(key, pn, task_id, submitted_at)
        finally:
            self.counts.running -= 1

    async def _poll(
        self, key: str, pn: str, task_id: str, submitted_wall: float | None,
        span: Any = None, *, held: bool = False,
    ) -> FollowUpResult | None:
        reserve = getattr(self.client, "poll_reserve", None)
        if reserve is not None and not held:
            reserve.hold()  # a paid task to read: keep its polls
        polls = [0]  # the polls the task needed, once read
        try:
            return await self._poll_held(key, pn, task_id, submitted_wall, span, polls)
        finally:
            if reserve is not None:
                reserve.release(polls[0])

    async def _poll_held(
        self, key: str, pn: str, task_id: str, submitted_wall: float | None, span: Any,
        polls: list[int],
    ) -> FollowUpResult | None:
        if self.stopping:
            return None
        if self.fatal is not None:
            return self._ended(FollowUpResult(pn, task_id, None, self.fatal))
        loop = asyncio.get_running_loop()
        done: asyncio.Future[tuple[ImageSearchReport | None, FtoError | None]]
        done = loop.create_future()
        age = None if submitted_wall is None else max(0.0, time.time() - submitted_wall)
        task = PendingTask(
            (key, pn), task_id, "one_vs_one", done,
            submitted_at=None if age is None else loop.time() - age,
            submitted_wall=submitted_wall, span=span,
        )  # fmt: skip
        self.scheduler.add(task)
        try:
            report, error = await done
        finally:
            polls[0] = task.polls
        if error is _STOPPED:
            return None
        await self._record(key, pn, report, error)
        if error is not None and error.fatal:
            self._stop_for(error)
        one = report if isinstance(report, OneVsOneReport) and error is None else None
        return self._ended(FollowUpResult(pn, task_id, one, error))

    async def _record(
        self, key: str, pn: str, report: ImageSearchReport | None, error: FtoError | None
    ) -> None:
        journal = self.journal
        if journal is None:
            return
        state = result_state(report, error)  # the items' rule (batch._journaling)
        if state is ItemState.DONE:
            assert report is not None
            await journal.mark_follow_up(key, pn, ItemState.DONE, report=dict(report.raw))
        elif state is ItemState.FAILED:
            await journal.mark_follow_up(key, pn, ItemState.FAILED, error=str(error),
                                         error_type=type(error).__name__)  # fmt: skip
        # else it stays `submitted`: the next run polls it (timeouts, fatal and transient
        # errors, answers that could not be read)

    async def _fetch(self, task: PendingTask) -> ImageSearchReport:
        if task.span is None:  # resumed: its span starts here
            task.span = self.observer.task_started("one_vs_one")
        with _otel.use_span(task.span):
            return await self.client.get_1v1_report(task.task_id)

    async def _deliver(
        self, task: PendingTask, report: ImageSearchReport | None, error: FtoError | None
    ) -> None:
        self.observer.task_ended(task.span, task.key, task.task_id, report, error, task.polls)
        task.span = None
        done: asyncio.Future[Any] = task.request
        if not done.done():
            done.set_result((report, error))


def _results(stage: _Stage, items: Items) -> AsyncIterator[Outcome]:
    def verdict() -> None:
        if stage.inner_abort is not None:
            raise stage.inner_abort
        if stage.fatal is not None:
            raise BatchAbortedError(stage.fatal, not_attempted=0)

    return _pump(stage.out, lambda: stage.drive(items), verdict)


def screen_with_follow_ups(
    client: FollowUpClient, items: Items, **options: Unpack[BatchOptions]
) -> AsyncIterator[Outcome]:
    """:func:`fto_async.batch.screen_many` plus 1-vs-1 follow-ups (the module docstring).

    ``client.screen_many(items, follow_up=...)`` calls this. The other options are those
    of :func:`~fto_async.batch.screen_many`; ``journal`` also records the follow-ups and
    ``on_progress`` also counts them (``Progress.follow_ups_*``).

    Raises:
        InvalidRequestError: ``follow_up`` is not a :class:`FollowUp`.
        BatchAbortedError: after the last outcome, when a fatal error stopped the batch
            or its follow-ups.
    """
    follow_up = options.get("follow_up")
    if not isinstance(follow_up, FollowUp):
        got = type(follow_up).__name__
        raise InvalidRequestError("follow_up", f"must be a FollowUp, got {got}")
    rest: Any = {k: v for k, v in options.items() if k != "follow_up"}
    return _results(_Stage(client, follow_up, rest), items)
