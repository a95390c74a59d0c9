"""Request and response classes for the design-patent FTO endpoints.

Requests are validated when they are built: a broken rule raises
:class:`~fto_async.errors.InvalidRequestError` (a ``ValueError``) naming the field, and
never costs a call. Responses are built by the client's converter (``_serde``); they keep
the wire names as attribute names, ignore unknown keys and keep the JSON object they came
from in ``raw``. No class here knows how it is serialised.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, Self, TypeAlias, get_args

import attrs

from . import _validate as v
from ._enums import LegalStatus, RiskLevel, SimpleLegalStatus, TaskStatus
from .errors import InvalidRequestError

__all__ = [
    "TASK_KINDS",
    "Comparison",
    "ImageSearchReport",
    "ImageSearchRequest",
    "LegalStatus",
    "LocItem",
    "OneVsOneComparison",
    "OneVsOneReport",
    "OneVsOneRequest",
    "PatentInfo",
    "PatentMessages",
    "RRFFusionResponse",
    "RRFItem",
    "Report",
    "Request",
    "RiskLevel",
    "SimpleLegalStatus",
    "TaskKind",
    "TaskStatus",
    "UploadedImage",
    "WorkflowReport",
    "WorkflowRequest",
    "normalize_score",
    "task_kind",
]


def _short(value: str | None) -> str:
    """Repr of a possibly huge base64 field: its length, not its content."""
    return repr(value) if value is None or len(value) <= 40 else f"<{len(value)} chars>"


# -- field converters: each applies a rule from _validate under its wire name -------------


def _url(value: str) -> str:
    return v.url("url", value)


def _optional_url(value: str | None) -> str | None:
    return None if value is None else v.url("url", value)


def _country(value: Sequence[str]) -> tuple[str, ...]:
    return v.country_codes("country", value)


def _optional_country(value: Sequence[str] | None) -> tuple[str, ...] | None:
    return None if value is None else v.country_codes("country", value)


def _lang(value: str) -> str:
    return v.lang("lang", value)


def _loc_codes(value: Sequence[str] | None) -> tuple[str, ...] | None:
    return None if value is None else v.loc_codes("loc_items", value)


def _start(value: dt.date | str | None) -> str | None:
    return None if value is None else v.yyyymmdd("apply_start_time", value)


def _end(value: dt.date | str | None) -> str | None:
    return None if value is None else v.yyyymmdd("apply_end_time", value)


def _main_field(value: str | None) -> str | None:
    return None if value is None else v.text("main_field", value, max_len=v.MAX_MAIN_FIELD)


def _title(value: str | None) -> str | None:
    return None if value is None else v.text("title", value)


def _user_id(value: str | None) -> str | None:
    return None if value is None else v.text("user_id", value)


def _image(value: str | None) -> str | None:
    return None if value is None else v.image_base64("target_image_base64", value)


def _legal_status(value: str | int | Sequence[int] | None) -> str | None:
    return None if value is None else v.simple_legal_status("simple_legal_status", value)


def _loc_id(value: str) -> str:
    return v.loc_code("id", value)


def _desc(value: str | None) -> str | None:
    if value is not None and not isinstance(value, str):
        raise InvalidRequestError("desc", f"must be a str or None, got {type(value).__name__}")
    return value


def _loc_item(value: object) -> LocItem:
    if isinstance(value, LocItem):
        return value
    if isinstance(value, str):
        return LocItem(value)
    if isinstance(value, Mapping):
        if "id" not in value or not set(value) <= {"id", "desc"}:
            raise InvalidRequestError(
                "loc_items",
                f"a mapping needs 'id' and at most 'desc', got keys {sorted(map(str, value))}",
            )
        return LocItem(value["id"], value.get("desc"))
    raise InvalidRequestError(
        "loc_items",
        f"each item must be a LocItem, a code or a mapping, got {type(value).__name__}",
    )


def _loc_items(
    value: Sequence[LocItem | str | Mapping[str, str | None]] | None,
) -> tuple[LocItem, ...] | None:
    if value is None:
        return None
    items = []
    for index, item in enumerate(v.non_empty_sequence("loc_items", value, "Locarno items")):
        try:
            items.append(_loc_item(item))
        except InvalidRequestError as exc:
            if exc.field == "loc_items":
                raise
            raise InvalidRequestError("loc_items", f"item {index}: {exc}") from None
    return tuple(items)


# -- requests ----------------------------------------------------------------------------


@attrs.frozen
class ImageSearchRequest:
    """The body of ``/ai/image-search/submit``: a product image URL and search filters.

    Usage::

        ImageSearchRequest("https://example.com/chair.png", ["US", "CN"], "en",
                           loc_items=["06-01"], apply_start_time=datetime.date(2020, 1, 1))

    Attributes:
        url: http(s) URL of a JPG/PNG product image the platform can fetch.
        country: distinct two-letter authority codes (``"US"``, ``"EU"``), stored as a tuple.
        lang: report language, ``"cn"`` or ``"en"``.
        loc_items: Locarno codes like ``"14-02"`` (class 01-32), or ``None`` for all.
        apply_start_time: keep patents filed from this date; a ``datetime.date`` or
            ``"yyyyMMdd"``, stored as ``"yyyyMMdd"``. ``None`` means no limit.
        main_field: a keyword for auxiliary search (1 to 200 characters), or ``None``.

    Raises:
        InvalidRequestError: a field breaks its rule; ``exc.field`` names it.
    """

    url: str = attrs.field(converter=_url)
    country: tuple[str, ...] = attrs.field(converter=_country)
    lang: str = attrs.field(converter=_lang)
    loc_items: tuple[str, ...] | None = attrs.field(default=None, converter=_loc_codes)
    apply_start_time: str | None = attrs.field(default=None, converter=_start)
    main_field: str | None = attrs.field(default=None, converter=_main_field)


@attrs.frozen
class LocItem:
    """One Locarno class in a workflow request: ``LocItem("09-01", desc="包装容器")``.

    Attributes:
        id: the Locarno code ``"NN-NN"`` (class 01-32).
        desc: an optional description, sent as is; left out of the body when ``None``.
    """

    id: str = attrs.field(converter=_loc_id)
    desc: str | None = attrs.field(default=None, converter=_desc)


@attrs.frozen(kw_only=True)
class WorkflowRequest:
    """The body of ``/api/mcp/submit-workflow`` (full FTO workflow). Keyword arguments only.

    Usage::

        WorkflowRequest(url="https://example.com/cup.jpg", country=["CN", "US"],
                        loc_items=["09-01", LocItem("07-01", desc="cups")],
                        simple_legal_status=[SimpleLegalStatus.ACTIVE])
        WorkflowRequest.from_image_bytes(Path("cup.png").read_bytes(), title="cup")

    At least one of ``url`` and ``target_image_base64`` is required; the platform uses
    ``url`` when both are given. ``None`` leaves a field out of the body.

    Attributes:
        url: http(s) URL of the target image.
        target_image_base64: strict base64 of a PNG or JPEG of at most 4 MiB decoded; a
            ``data:image/png;base64,`` or ``data:image/jpeg;base64,`` prefix is stripped.
        country: distinct two-letter authority codes, stored as a tuple.
        loc_items: :class:`LocItem` objects, codes like ``"09-01"`` or mappings
            ``{"id": ..., "desc": ...}``; stored as a tuple of :class:`LocItem`.
        apply_start_time: first filing date, a ``datetime.date`` or ``"yyyyMMdd"``; stored
            as ``"yyyyMMdd"``.
        apply_end_time: last filing date, same forms; not before ``apply_start_time``.
        simple_legal_status: statuses to keep (0 inactive, 1 active, 2 pending) as ``"1,2"``,
            a list of ints or :class:`SimpleLegalStatus`; stored sorted as ``"1,2"``. The
            platform's default is ``"1,2"``.
        title: a task title. user_id: the platform user to file the task under.

    Raises:
        InvalidRequestError: a field breaks its rule; ``exc.field`` names it.
    """

    url: str | None = attrs.field(default=None, converter=_optional_url)
    target_image_base64: str | None = attrs.field(default=None, converter=_image, repr=_short)
    country: tuple[str, ...] | None = attrs.field(default=None, converter=_optional_country)
    loc_items: tuple[LocItem, ...] | None = attrs.field(default=None, converter=_loc_items)
    apply_start_time: str | None = attrs.field(default=None, converter=_start)
    apply_end_time: str | None = attrs.field(default=None, converter=_end)
    simple_legal_status: str | None = attrs.field(default=None, converter=_legal_status)
    title: str | None = attrs.field(default=None, converter=_title)
    user_id: str | None = attrs.field(default=None, converter=_user_id)

    def __attrs_post_init__(self) -> None:
        if self.url is None and self.target_image_base64 is None:
            raise InvalidRequestError("url", "give url or target_image_base64 (at least one)")
        v.date_order(
            "apply_start_time", self.apply_start_time, "apply_end_time", self.apply_end_time
        )

    @classmethod
    def from_image_bytes(cls, data: bytes, **kwargs: Any) -> Self:
        """Build a request whose ``target_image_base64`` encodes ``data`` (PNG or JPEG bytes).

        ``kwargs`` are the other fields, as for the constructor.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidRequestError(
                "target_image_base64", f"image data must be bytes, got {type(data).__name__}"
            )
        if "target_image_base64" in kwargs:
            raise InvalidRequestError(
                "target_image_base64", "give image bytes or target_image_base64, not both"
            )
        encoded = base64.b64encode(data).decode("ascii")
        return cls(target_image_base64=encoded, **kwargs)


# -- responses ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class PatentInfo:
    """One patent of the traditional image search (``patent_messages.patent_messages[]``).

    Usage::

        for hit in report.patent_messages.patent_messages:
            print(hit.patent_pn, hit.score, hit.risk_level)

    ``apdt`` / ``pbdt`` are ``yyyyMMdd`` as integers; ``score`` is 0-1; ``loc_match`` is
    1 when the Locarno class matched. ``raw`` holds the JSON object, unknown keys included.
    """

    score: float
    title: str
    img_id: str
    authority: str
    patent_id: str
    patent_pn: str
    loc: tuple[str, ...] = ()
    url: str | None = None
    url_120: str | None = None
    apdt: int | None = None
    pbdt: int | None = None
    apno: str | None = None
    inventor: str | None = None
    loc_match: int | None = None
    risk_level: RiskLevel | None = None
    current_assignee: str | None = None
    original_assignee: str | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class RRFItem(PatentInfo):
    """A :class:`PatentInfo` ranked by RRF fusion of the AI rerank and the traditional search.

    Usage: ``best = min(resp.patent_messages, key=lambda item: item.rerank_rank)``.
    Ranks are 1-based; ``rerank_score`` is on a 0-100 scale, ``traditional_score`` 0-1.
    """

    rrf_score: float
    rerank_rank: int
    rerank_score: float
    traditional_rank: int
    traditional_score: float


@attrs.frozen(kw_only=True)
class PatentMessages:
    """Traditional image-search results: ``report.patent_messages.total_search_result_count``."""

    patent_messages: tuple[PatentInfo, ...]
    total_search_result_count: int
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class RRFFusionResponse:
    """RRF fusion results (``rrffusion_response``).

    Usage: ``[item.patent_pn for item in resp.patent_messages]`` (sorted by ``rrf_score``).
    """

    k_value: int
    rerank_count: int
    traditional_count: int
    patent_messages: tuple[RRFItem, ...]
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class Comparison:
    """One patent compared in depth by the report (``report.comparisons[]``); all fields required.

    Usage::

        for c in report.comparisons:
            if c.risk_level is RiskLevel.HIGH and c.status is LegalStatus.VALID:
                print(c.patent_pn, c.country, c.risk_desc, c.suggestion)

    ``score`` is 0-1. ``similar``, ``difference``, ``confusion``, ``risk_desc`` and
    ``suggestion`` are model-written text in the report language.
    """

    score: float
    title: str
    img_id: str
    status: LegalStatus
    country: str
    similar: str
    confusion: str
    patent_id: str
    patent_pn: str
    risk_desc: str
    difference: str
    risk_level: RiskLevel
    suggestion: str
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class Report:
    """The risk analysis of a finished task (``report``, ReportV2).

    Usage: ``if report.highest_risk is RiskLevel.HIGH: print(report.high_risk_country)``.

    ``operate_date`` is epoch milliseconds. ``apply_start_time`` is ``"yyyyMMdd"``; the
    platform sends it as a number, which is kept as its decimal string.
    """

    country: tuple[str, ...]
    comparisons: tuple[Comparison, ...]
    loc: tuple[str, ...] = ()
    operate_date: int | None = None
    apply_start_time: str | None = None
    high_risk_country: tuple[str, ...] = ()
    middle_risk_country: tuple[str, ...] = ()
    suspected_infringement_count: int | None = None
    suspected_infringement_country: tuple[str, ...] = ()
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)

    @property
    def highest_risk(self) -> RiskLevel | None:
        """The highest ``risk_level`` among the comparisons, ``None`` when there are none."""
        return RiskLevel.max(c.risk_level for c in self.comparisons)


@attrs.frozen(kw_only=True)
class ImageSearchReport:
    """The result of ``/ai/image-search/report``: task state and, once done, the results.

    Usage::

        result = await client.image_search_report(task_id)
        if result.succeeded and result.highest_risk is RiskLevel.HIGH:
            ...

    Only ``task_id`` and ``task_status`` are always present; the rest arrive with
    ``task_status`` 2. A ``task_status`` outside 1-3 is not guessed at: decoding raises
    :class:`~fto_async.errors.ResponseDecodeError` whose ``raw`` holds the answer.
    """

    task_id: str
    task_status: TaskStatus
    line_drawing_base64: str | None = attrs.field(default=None, repr=_short)
    patent_messages: PatentMessages | None = None
    rrffusion_response: RRFFusionResponse | None = None
    report: Report | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)

    @property
    def done(self) -> bool:
        """True when the task has finished, successfully or not (status 2 or 3)."""
        return self.task_status in (TaskStatus.SUCCESS, TaskStatus.FAILED)

    @property
    def succeeded(self) -> bool:
        """True when the task finished successfully (status 2)."""
        return self.task_status is TaskStatus.SUCCESS

    @property
    def failed(self) -> bool:
        """True when the platform reports the task failed (status 3)."""
        return self.task_status is TaskStatus.FAILED

    @property
    def highest_risk(self) -> RiskLevel | None:
        """The report's highest risk level; ``None`` without a report or comparisons."""
        return None if self.report is None else self.report.highest_risk


@attrs.frozen(kw_only=True)
class WorkflowReport(ImageSearchReport):
    """The result of a ``/api/mcp/submit-workflow`` task.

    UNVERIFIED: the platform has not published the workflow result schema. We assume the
    ``/ai/image-search/report`` shape (:class:`ImageSearchReport`); anything else it sends
    stays reachable in ``raw``. Usage is the same as for :class:`ImageSearchReport`.
    """


@attrs.frozen(kw_only=True)
class UploadedImage:
    """A product image uploaded with ``/image-search/image-upload``.

    Usage: ``ImageSearchRequest(uploaded.url, ["US"], "en")``. ``url`` is public for
    ``expire`` seconds (32,400 s, 9 h, per the platform).
    """

    url: str
    expire: int | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)


# -- task kinds: their names (the table of their rules is _kinds.KINDS) --------------------

#: The kinds of task the platform runs (the journal stores them by these names).
TaskKind = Literal["image_search", "workflow", "one_vs_one"]
TASK_KINDS: Final[tuple[TaskKind, ...]] = get_args(TaskKind)

Request: TypeAlias = ImageSearchRequest | WorkflowRequest


def task_kind(field: str, value: object) -> TaskKind:
    """``value`` as a :data:`TaskKind`, or :class:`InvalidRequestError` naming ``field``."""
    for kind in TASK_KINDS:
        if value == kind:
            return kind
    raise InvalidRequestError(field, f"must be {' or '.join(map(repr, TASK_KINDS))}")


# -- AI67: 1-vs-1 infringement detection (one product image against one patent) ----------


def _patent_number(value: str) -> str:
    return v.patent_number("patent_number", value)


def _report_lang(value: str | None) -> str | None:
    return None if value is None else v.lang("report_lang", value)


@attrs.frozen
class OneVsOneRequest:
    """The body of ``/ai/infringement-detection-1v1-creation`` (AI67-1).

    Usage::

        OneVsOneRequest("USD1055174S1", "https://example.com/santa.png", report_lang="en")

    Attributes:
        patent_number: the publication number of the design patent to compare against:
            two upper-case letters (the authority), then 4 to 30 upper-case letters or
            digits, e.g. ``"EU0065350760001S"``, ``"USD1055174S1"``, ``"CN305123456S"``.
            A ``patent_pn`` from a report's comparisons always fits.
        url: http(s) URL of the product image (a P010 upload URL for a local file).
        report_lang: ``"cn"`` or ``"en"``; ``None`` leaves it out (the platform's default).

    The task id it returns is valid for 8 hours; a query after that raises
    :class:`~fto_async.errors.TaskExpiredError`.

    Raises:
        InvalidRequestError: a field breaks its rule; ``exc.field`` names it.
    """

    patent_number: str = attrs.field(converter=_patent_number)
    url: str = attrs.field(converter=_url)
    report_lang: str | None = attrs.field(default=None, converter=_report_lang)


def normalize_score(raw: float | None) -> float | None:
    """An AI67 comparison score on the 0-1 scale.

    The platform's examples show both ``0.93`` and ``80`` (reference §5.2), so the rule
    is: a value above 1 is a percentage and is divided by 100; a value from 0 to 1 is
    kept. The result is clamped to 0..1; ``None`` stays ``None``. (An exact ``1`` reads
    as 1.0, not 1 %.)
    """
    if raw is None:
        return None
    value = raw / 100 if raw > 1 else raw
    return min(1.0, max(0.0, value))


@attrs.frozen(kw_only=True)
class OneVsOneComparison:
    """One compared patent of a 1-vs-1 report (``comparisons[]``): no ``img_id``, a
    ``patent_image_url`` instead. The platform marks no field required: all are optional.

    ``score`` is the similarity on the 0-1 scale (see :func:`normalize_score`); the value
    as sent is ``raw_score`` (the wire's ``score``, 0-1 or 0-100).
    """

    raw_score: float | None = None
    title: str | None = None
    status: LegalStatus | None = None
    country: str | None = None
    similar: str | None = None
    confusion: str | None = None
    patent_id: str | None = None
    patent_pn: str | None = None
    risk_desc: str | None = None
    difference: str | None = None
    risk_level: RiskLevel | None = None
    suggestion: str | None = None
    patent_image_url: str | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)

    @property
    def score(self) -> float | None:
        """The similarity, 0-1, whatever scale the platform used."""
        return normalize_score(self.raw_score)


@attrs.frozen(kw_only=True)
class OneVsOneReport(ImageSearchReport):
    """The result of ``/ai/infringement-detection-1v1-query`` (AI67-2).

    Usage::

        result = await client.wait_1v1(task_id)
        for c in result.comparisons:
            print(c.patent_pn, c.score, c.risk_level, c.suggestion)

    It shares the task envelope of :class:`ImageSearchReport` (``task_id``,
    ``task_status``, ``done``/``succeeded``/``failed``, ``raw``) so pollers and schedulers
    handle every kind alike; the image-search fields (``patent_messages``,
    ``rrffusion_response``, ``report``, ``line_drawing_base64``) are always ``None`` here.
    No field of the answer is marked required by the platform; only ``task_status`` must
    be present to tell a running task from a finished one.
    """

    task_id: str = ""
    loc: tuple[str, ...] = ()
    country: tuple[str, ...] = ()
    user_image: str | None = None
    comparisons: tuple[OneVsOneComparison, ...] = ()
    high_risk_country: tuple[str, ...] = ()
    middle_risk_country: tuple[str, ...] = ()
    suspected_infringement_count: int | None = None
    suspected_infringement_country: tuple[str, ...] = ()

    @property
    def highest_risk(self) -> RiskLevel | None:
        """The highest ``risk_level`` among the comparisons, ``None`` when there are none."""
        return RiskLevel.max(c.risk_level for c in self.comparisons)
