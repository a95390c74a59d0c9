"""The batch's public values: items in, outcomes and progress out, and the options.

:class:`Item`, :class:`Outcome` and :class:`Progress` are what a caller of
:func:`~fto_async.batch.screen_many` hands in and gets back; :class:`FollowUp` and
:class:`FollowUpResult` are the follow-up stage's option and result
(:mod:`fto_async.batch._followup` runs it); :class:`BatchOptions` lists the keyword
options, checked once by ``_Options.of``. Nothing here runs a batch.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, Literal, Protocol, TypeAlias, TypedDict

import attrs

from .. import _serde
from .. import _validate as v
from ..cache import AnswerCache  # at run time too: get_type_hints resolves BatchOptions
from ..config import ClientConfig, PollConfig
from ..errors import FtoError, InvalidRequestError
from ..fingerprint import image_digest, request_fingerprint
from ..journal import (  # at run time, so get_type_hints resolves BatchOptions
    FollowUpRow,
    ItemState,
    Journal,
    JournalRow,
)
from ..models import (
    ImageSearchReport,
    ImageSearchRequest,
    OneVsOneReport,
    Report,
    Request,
    RiskLevel,
    TaskKind,
)
from ..polling import TaskDurations
from ..ratelimit import RateGateProtocol
from ..transport import BeforeSend, TransportStats

__all__ = [
    "BatchClient",
    "BatchOptions",
    "Fingerprinter",
    "FollowUp",
    "FollowUpResult",
    "ImageUrlHook",
    "Item",
    "Items",
    "Outcome",
    "Progress",
    "ProgressCallback",
    "TaskIds",
]

@attrs.frozen
class FollowUpResult:
    """One 1-vs-1 follow-up of a screened item (``Outcome.follow_ups``): the batch stage
    of :mod:`fto_async.batch._followup` compared the item's image with ``patent_pn``.

    Usage::

        for fu in outcome.follow_ups:
            if fu.ok:
                print(fu.patent_pn, fu.highest_risk, fu.high_risk_countries)
            else:
                print(fu.patent_pn, "failed:", fu.error)

    Attributes:
        patent_pn: the compared patent (from the item's report).
        task_id: the 1-vs-1 task id, once submitted.
        report: the finished :class:`OneVsOneReport`, else ``None``.
        error: why the follow-up failed (it never fails the item itself), else ``None``.
        resumed: the result comes from the journal of an earlier run (no call made).
    """

    patent_pn: str
    task_id: str | None
    report: OneVsOneReport | None
    error: FtoError | None
    resumed: bool = False

    @property
    def ok(self) -> bool:
        """True when the 1-vs-1 task succeeded and its report is here."""
        return self.error is None and self.report is not None

    @property
    def highest_risk(self) -> RiskLevel | None:
        """The 1-vs-1 report's highest risk level, if any."""
        return None if self.report is None else self.report.highest_risk

    @property
    def high_risk_countries(self) -> tuple[str, ...]:
        """The 1-vs-1 report's ``high_risk_country`` (empty without a report)."""
        return () if self.report is None else self.report.high_risk_country


# -- the follow-up stage's choice (fto_async.batch._followup runs it) --------------------

#: ``async (key, request) -> url``: the public image URL for an item's follow-ups.
ImageUrlHook = Callable[[Any, Any], Awaitable[str]]


def _follow_up_risk(value: RiskLevel | str) -> RiskLevel:
    try:
        return RiskLevel(value)
    except ValueError:
        reason = f"must be High, Medium or Low, got {value!r}"
        raise InvalidRequestError("min_risk", reason) from None


def _follow_up_top(_inst: object, _attr: object, value: object) -> None:
    if type(value) is not int or value < 1:
        raise InvalidRequestError("top", f"must be an int of at least 1, got {value!r}")


def _follow_up_lang(value: str | None) -> str | None:
    return None if value is None else v.lang("report_lang", value)


@attrs.frozen
class FollowUp:
    """Which matches of a screening report get a 1-vs-1 task.

    Usage::

        FollowUp()                                  # High risk, top 3 by score
        FollowUp(min_risk=RiskLevel.MEDIUM, top=1, report_lang="en")

    Attributes:
        min_risk: the lowest ``risk_level`` followed up (a :class:`RiskLevel` or its name).
        top: at most this many patents per item, the highest ``score`` first (>= 1).
        report_lang: ``"cn"``/``"en"`` for the 1-vs-1 reports; ``None`` leaves it out.
        image_url: optional ``async (key, request) -> url`` giving the image URL (see the
            module docstring); ``None`` uses the request's image.

    Raises:
        InvalidRequestError: a bad ``min_risk``, ``top`` or ``report_lang``.
    """

    min_risk: RiskLevel = attrs.field(default=RiskLevel.HIGH, converter=_follow_up_risk)
    top: int = attrs.field(default=3, validator=_follow_up_top)
    report_lang: str | None = attrs.field(default=None, converter=_follow_up_lang)
    image_url: ImageUrlHook | None = attrs.field(default=None, eq=False, repr=False)

    def select(self, report: ImageSearchReport | None) -> list[str]:
        """The patents to follow up in ``report``: at or above ``min_risk``, best first."""
        found: Report | None = None if report is None else report.report
        if found is None:
            return []
        picked: list[str] = []
        ranked = sorted(
            (c for c in found.comparisons if c.risk_level >= self.min_risk),
            key=lambda c: (-c.score, c.patent_pn),
        )
        for comparison in ranked:
            if comparison.patent_pn not in picked:
                picked.append(comparison.patent_pn)
            if len(picked) == self.top:
                break
        return picked


@attrs.frozen
class LocalImage:
    """A local image behind an :class:`Item`: uploaded by :meth:`resolve` at submit time.

    ``data``, when given, holds the image's bytes (those ``digest`` hashes): they are
    uploaded, not the file read again (``FtoClient.screen_image``)."""

    path: Path | None
    digest: str
    data: bytes | None = attrs.field(default=None, repr=False)

    async def resolve(self, client: object, request: Request) -> Request:
        """``request`` with the URL of this image, uploaded once per client and digest."""
        upload = getattr(client, "upload_once", None)
        if upload is None:
            raise InvalidRequestError("item", "a local image needs an FtoClient to upload it")
        url: str = await upload(self.data if self.data is not None else self.path, self.digest)
        return attrs.evolve(request, url=url)


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
    #: A local image to upload before the submit (:meth:`from_path`); ``None``: none.
    local: LocalImage | None = attrs.field(default=None, kw_only=True, eq=False, repr=False)

    @classmethod
    def from_path(cls, key: Any, path: str | os.PathLike[str], **filters: Any) -> Item:
        """An image-search item for a local JPG/PNG, uploaded (P010) only if the batch
        submits it: not when the journal or the cache answers it, or an equal item's
        task does. Its fingerprint is the file's SHA-256, so a rerun (journal, cache)
        knows it without uploading; a client uploads each content hash once while its
        URL is valid. ``filters`` are the other :class:`~fto_async.ImageSearchRequest`
        fields (``country``, ``lang``, ...).

        Raises:
            InvalidRequestError: not a readable JPG/PNG of at most 4 MiB, or a bad filter
                (checked now: no call).
        """
        data, _ = v.read_image_file("path", path)
        digest = image_digest(data)
        placeholder = f"https://local.invalid/{digest.removeprefix('sha256:')}"
        request = ImageSearchRequest(url=placeholder, **filters)
        fingerprint = request_fingerprint(request, image_sha256=digest)
        return cls(key, request, fingerprint, local=LocalImage(Path(path), digest))


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
            option compared 1-vs-1 (see :mod:`fto_async.batch._followup`); empty without it.
        shared_with: the key of the item whose task answered this one (an equal request
            in the same batch), else ``None``.
        from_cache: the report comes from the :class:`~fto_async.cache.ReportCache`.
        cached_at: epoch seconds when that cached report was stored (else ``None``).
        fingerprint: the checked fingerprint of the question this outcome answers
            (``None``: not known, or a journal record that cannot be checked); the item's
            follow-ups are keyed by it and shared or cached only with one.
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
    fingerprint: str | None = attrs.field(default=None, repr=False)

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

    def to_record(self) -> dict[str, Any]:
        """The flat, JSON-safe record of this outcome: the fields of a row of the CLI's
        JSONL and CSV outputs (``key``, ``line`` (``None``), ``task_id``, ``status``,
        ``highest_risk``, ``high_risk_countries``, ``middle_risk_countries``, ``error``,
        ``report``, ``follow_ups``).

        The one record rule (:mod:`fto_async.outputs._record`) reads journal rows; this
        outcome is put in that shape and handed to it. It is imported here, when called,
        not with this module: the outputs sit above the core (they import the journal,
        and their package loads the writers: CSV, XLSX, HTML), so ``import fto_async``
        never loads them.
        """
        from ..outputs._record import record_from_journal  # lazily: see the docstring

        record = record_from_journal(_as_row(self), follow_ups=_follow_up_rows(self))
        record["key"] = self.key if isinstance(self.key, str | int) else str(self.key)
        record["line"] = None
        return record


def _as_row(outcome: Outcome) -> JournalRow:
    """The journal row an outcome would leave (what the record rule reads)."""
    if outcome.report is not None and outcome.error is None:
        state = ItemState.DONE
    elif outcome.error is not None:
        state = ItemState.FAILED
    else:
        state = ItemState.SUBMITTED
    now = outcome.completed_at
    kind = None if outcome.request is None else type(outcome.request).__name__
    return JournalRow(
        key=str(outcome.key), seq=0, state=state, task_id=outcome.task_id, kind=kind,
        attempts=0, error=None if outcome.error is None else str(outcome.error),
        error_type=None if outcome.error is None else type(outcome.error).__name__,
        created_at=now, updated_at=now, submitted_at=outcome.submitted_at,
        completed_at=now, request_json=json.dumps(
            {} if outcome.request is None
            else _serde.unstructure(_serde.CONVERTER, outcome.request)),
        report_json=None if outcome.report is None else json.dumps(dict(outcome.report.raw)),
    )  # fmt: skip


def _follow_up_rows(outcome: Outcome) -> list[FollowUpRow]:
    rows = []
    for fu in outcome.follow_ups:
        state = (ItemState.DONE if fu.report is not None
                 else ItemState.FAILED if fu.error is not None else ItemState.SUBMITTED)
        rows.append(FollowUpRow(
            key=str(outcome.key), patent_pn=fu.patent_pn, state=state, task_id=fu.task_id,
            error=None if fu.error is None else str(fu.error),
            error_type=None if fu.error is None else type(fu.error).__name__,
            created_at=outcome.completed_at, updated_at=outcome.completed_at,
            submitted_at=None,
            report_json=None if fu.report is None else json.dumps(dict(fu.report.raw)),
        ))  # fmt: skip
    return rows


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
        follow_ups_resubmitted: follow-ups an earlier run died while submitting, submitted
            again (``unknown_policy="resubmit"``): a task may exist twice.
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
    follow_ups_resubmitted: int = 0
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
    cache: AnswerCache | None


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
    cache: AnswerCache | None = None

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
                            "(or fto_async.batch.screen_with_follow_ups)")  # fmt: skip
        return made
