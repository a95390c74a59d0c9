"""Decoding responses into models: the full §2.2 report, raw retention, enums, odd answers."""

from __future__ import annotations

import copy
from typing import Any

import attrs
import pytest

from fto_async import _serde, models
from fto_async.errors import ResponseDecodeError
from fto_async.models import (
    Comparison,
    ImageSearchReport,
    LegalStatus,
    PatentInfo,
    PatentMessages,
    Report,
    RiskLevel,
    RRFFusionResponse,
    RRFItem,
    TaskStatus,
    UploadedImage,
    WorkflowReport,
)

TASK_ID = "80d440b7-80a5-4233-a75f-ab72b0885c88"


def _patent(pn: str, score: float, risk: str, **extra: Any) -> dict[str, Any]:
    return {
        "loc": ["21-01"],
        "url": f"https://data-abstract-image.zhihuiya.com/US/S/{pn}.png",
        "url_120": f"https://data-abstract-image.zhihuiya.com/US/S/{pn}_120.png",
        "apdt": 20200115,
        "pbdt": 20210320,
        "apno": "US29/961259",
        "score": score,
        "title": "Inflatable Santa",
        "img_id": f"{pn}-D00000_ABST",
        "inventor": "LI WEI;JOHN SMITH",
        "authority": "US",
        "loc_match": 1,
        "patent_id": "0b2c7a7e-7c3b-4a0e-9a57-2f6f3c1c9d11",
        "patent_pn": pn,
        "risk_level": risk,
        "current_assignee": "SANTA TOYS INC",
        "original_assignee": "SANTA TOYS LLC",
        **extra,
    }


def _comparison(pn: str, country: str, risk: str, status: int, score: float) -> dict[str, Any]:
    return {
        "score": score,
        "title": "玩具充气圣诞老人",
        "img_id": "0001747893000002",
        "status": status,
        "country": country,
        "similar": "整体轮廓与头部造型相近",
        "confusion": "普通消费者可能混淆",
        "patent_id": "5f0e9a1c-3d2b-4c8e-a1f7-9b6d2e4c7a30",
        "patent_pn": pn,
        "risk_desc": "外观整体视觉效果近似",
        "difference": "底座形状不同",
        "risk_level": risk,
        "suggestion": "建议修改头部与底座设计",
    }


def sample_report() -> dict[str, Any]:
    """Return a fresh, realistic ``data`` object of ``/ai/image-search/report`` (reference §2.2)."""
    return {
        "task_id": TASK_ID,
        "task_status": 2,
        "line_drawing_base64": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAf",
        "patent_messages": {
            "patent_messages": [
                _patent("USD1055174S1", 0.875770605053453, "High"),
                _patent("JP1747893S", 0.61, "Medium", authority="JP", apno="2022-012345"),
            ],
            "total_search_result_count": 156,
        },
        "rrffusion_response": {
            "k_value": 60,
            "rerank_count": 200,
            "traditional_count": 200,
            "patent_messages": [
                _patent(
                    "USD1055174S1",
                    0.875770605053453,
                    "High",
                    rrf_score=0.030158730158730156,
                    rerank_rank=10,
                    rerank_score=55,
                    traditional_rank=3,
                    traditional_score=0.875770605053453,
                ),
                _patent(
                    "KR3012345S",
                    0.52,
                    "low",
                    authority="KR",
                    rrf_score=0.02857142857142857,
                    rerank_rank=12,
                    rerank_score=40.5,
                    traditional_rank=15,
                    traditional_score=0.52,
                ),
            ],
        },
        "report": {
            "loc": ["21 游戏器具、玩具、帐篷和体育用品"],
            "country": ["US", "CN", "JP", "KR", "AU", "EU"],
            "comparisons": [
                _comparison("JP1747893S", "JP", "Medium", 1, 0.45),
                _comparison("KR3012345S", "KR", "High", 3, 0.8),
                _comparison("USD1055174S1", "US", "Low", 2, 1),
            ],
            "operate_date": 1768195176553,
            "apply_start_time": 20200101,
            "high_risk_country": ["KR"],
            "middle_risk_country": ["JP"],
            "suspected_infringement_count": 1,
            "suspected_infringement_country": ["KR"],
        },
    }


@pytest.fixture(scope="module")
def conv():
    """One converter for the module, as a client keeps one."""
    return _serde.make_converter()


def test_full_report_decodes_every_level(conv):
    """A complete §2.2 answer decodes into typed objects at every level."""
    result = _serde.structure(conv, sample_report(), ImageSearchReport)
    assert result.task_id == TASK_ID
    assert result.task_status is TaskStatus.SUCCESS
    assert result.line_drawing_base64 is not None
    assert result.line_drawing_base64.startswith("data:image/png;base64,")
    pm = result.patent_messages
    assert isinstance(pm, PatentMessages)
    assert pm.total_search_result_count == 156
    assert [p.patent_pn for p in pm.patent_messages] == ["USD1055174S1", "JP1747893S"]
    first = pm.patent_messages[0]
    assert type(first) is PatentInfo
    assert first.loc == ("21-01",)
    assert (first.apdt, first.pbdt, first.loc_match) == (20200115, 20210320, 1)
    assert first.risk_level is RiskLevel.HIGH
    assert first.inventor == "LI WEI;JOHN SMITH"
    assert first.original_assignee == "SANTA TOYS LLC"


def test_rrf_items_carry_patent_info_and_ranks(conv):
    """``rrffusion_response.patent_messages`` holds RRFItem objects with every PatentInfo field."""
    rrf = _serde.structure(conv, sample_report(), ImageSearchReport).rrffusion_response
    assert isinstance(rrf, RRFFusionResponse)
    assert (rrf.k_value, rrf.rerank_count, rrf.traditional_count) == (60, 200, 200)
    item = rrf.patent_messages[0]
    assert isinstance(item, RRFItem)
    assert isinstance(item, PatentInfo)
    assert item.patent_pn == "USD1055174S1"
    assert (item.rerank_rank, item.traditional_rank) == (10, 3)
    assert item.rrf_score == pytest.approx(1 / 70 + 1 / 63)
    assert item.rerank_score == 55.0
    assert isinstance(item.rerank_score, float)
    assert rrf.patent_messages[1].risk_level is RiskLevel.LOW


def test_report_comparisons_have_all_thirteen_fields(conv):
    """Each comparison decodes its 13 fields, with ``status`` as a LegalStatus."""
    report = _serde.structure(conv, sample_report(), ImageSearchReport).report
    assert isinstance(report, Report)
    assert len(report.comparisons) == 3
    first = report.comparisons[0]
    assert isinstance(first, Comparison)
    assert first.status is LegalStatus.VALID
    assert first.risk_level is RiskLevel.MEDIUM
    assert first.country == "JP"
    assert first.similar.startswith("整体")
    assert [c.status for c in report.comparisons] == [
        LegalStatus.VALID,
        LegalStatus.PENDING,
        LegalStatus.INVALID,
    ]
    assert report.comparisons[2].score == 1.0
    fields = {f.name for f in attrs.fields(Comparison)} - {"raw"}
    assert len(fields) == 13


def test_report_scalars_and_country_lists(conv):
    """Report-level fields decode, ``apply_start_time`` sent as a number becomes a string."""
    report = _serde.structure(conv, sample_report(), ImageSearchReport).report
    assert report is not None
    assert report.country == ("US", "CN", "JP", "KR", "AU", "EU")
    assert report.loc == ("21 游戏器具、玩具、帐篷和体育用品",)
    assert report.operate_date == 1768195176553
    assert report.apply_start_time == "20200101"
    assert report.high_risk_country == ("KR",)
    assert report.middle_risk_country == ("JP",)
    assert report.suspected_infringement_count == 1
    assert report.suspected_infringement_country == ("KR",)


@pytest.mark.parametrize("value", ["20200101", 20200101, 20200101.0])
def test_apply_start_time_accepts_string_or_number(conv, value):
    """``report.apply_start_time`` is kept as ``"20200101"`` whether sent as a string or number."""
    data = {"country": ["US"], "comparisons": [], "apply_start_time": value}
    assert _serde.structure(conv, data, Report).apply_start_time == "20200101"


def test_raw_kept_at_top_level(conv):
    """The top-level object keeps the exact dict it was decoded from."""
    data = sample_report()
    result = _serde.structure(conv, data, ImageSearchReport)
    assert result.raw is data


def test_raw_kept_at_every_nested_level(conv):
    """Every nested response object keeps its own JSON object in ``raw``."""
    data = sample_report()
    result = _serde.structure(conv, data, ImageSearchReport)
    assert result.report is not None
    assert result.report.raw is data["report"]
    assert result.report.comparisons[1].raw is data["report"]["comparisons"][1]
    assert result.patent_messages is not None
    assert result.patent_messages.raw is data["patent_messages"]
    assert result.patent_messages.patent_messages[0].raw["apno"] == "US29/961259"
    assert result.rrffusion_response is not None
    assert result.rrffusion_response.patent_messages[1].raw["rerank_score"] == 40.5


def test_unknown_fields_ignored_but_reachable(conv):
    """Keys the models do not know are ignored by decoding and stay reachable in ``raw``."""
    data = sample_report()
    data["new_top_level"] = {"any": "thing"}
    data["report"]["comparisons"][0]["patent_image_url"] = "https://example.com/p.png"
    data["patent_messages"]["patent_messages"][0]["family_size"] = 7
    result = _serde.structure(conv, data, ImageSearchReport)
    assert result.raw["new_top_level"] == {"any": "thing"}
    assert result.report is not None
    assert result.report.comparisons[0].raw["patent_image_url"] == "https://example.com/p.png"
    assert result.patent_messages is not None
    assert result.patent_messages.patent_messages[0].raw["family_size"] == 7
    assert not hasattr(result, "new_top_level")


def test_raw_key_in_payload_does_not_replace_raw(conv):
    """A wire key named ``raw`` is not taken as the ``raw`` attribute."""
    data = {"url": "https://img.example.com/a.png", "expire": 32400, "raw": "surprise"}
    uploaded = _serde.structure(conv, data, UploadedImage)
    assert uploaded.raw is data


def test_running_report_has_only_status(conv):
    """A running task (``task_status`` 1, nothing else) decodes with every optional part absent."""
    data = {"task_id": TASK_ID, "task_status": 1}
    result = _serde.structure(conv, data, ImageSearchReport)
    assert result.task_status is TaskStatus.RUNNING
    assert not result.done
    assert not result.succeeded
    assert not result.failed
    assert result.report is None
    assert result.patent_messages is None
    assert result.rrffusion_response is None
    assert result.highest_risk is None


def test_failed_report(conv):
    """A failed task (``task_status`` 3) is done and failed, not succeeded."""
    result = _serde.structure(conv, {"task_id": TASK_ID, "task_status": 3}, ImageSearchReport)
    assert result.task_status is TaskStatus.FAILED
    assert (result.done, result.failed, result.succeeded) == (True, True, False)


def test_succeeded_report_flags(conv):
    """A finished task (``task_status`` 2) is done and succeeded."""
    result = _serde.structure(conv, sample_report(), ImageSearchReport)
    assert (result.done, result.failed, result.succeeded) == (True, False, True)


def test_null_optional_parts_are_none(conv):
    """JSON ``null`` for optional objects gives ``None`` and for lists an empty tuple."""
    data = {
        "task_id": TASK_ID,
        "task_status": 2,
        "line_drawing_base64": None,
        "patent_messages": None,
        "report": {"country": ["US"], "comparisons": [], "loc": None, "high_risk_country": None},
    }
    result = _serde.structure(conv, data, ImageSearchReport)
    assert result.patent_messages is None
    assert result.report is not None
    assert result.report.loc == ()
    assert result.report.high_risk_country == ()


def test_highest_risk_is_the_maximum_over_comparisons(conv):
    """``highest_risk`` is the highest level among the comparisons, not the alphabetical max."""
    result = _serde.structure(conv, sample_report(), ImageSearchReport)
    assert result.highest_risk is RiskLevel.HIGH
    data = sample_report()
    for comparison in data["report"]["comparisons"]:
        comparison["risk_level"] = "Low"
    data["report"]["comparisons"][0]["risk_level"] = "Medium"
    assert _serde.structure(conv, data, ImageSearchReport).highest_risk is RiskLevel.MEDIUM


def test_highest_risk_none_without_comparisons(conv):
    """A report with no comparisons has no highest risk."""
    data = sample_report()
    data["report"]["comparisons"] = []
    result = _serde.structure(conv, data, ImageSearchReport)
    assert result.report is not None
    assert result.report.highest_risk is None
    assert result.highest_risk is None


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("High", RiskLevel.HIGH),
        ("high", RiskLevel.HIGH),
        ("HIGH", RiskLevel.HIGH),
        ("Medium", RiskLevel.MEDIUM),
        (" medium ", RiskLevel.MEDIUM),
        ("low", RiskLevel.LOW),
        ("LoW", RiskLevel.LOW),
    ],
)
def test_risk_level_parsed_case_insensitively(conv, text, level):
    """RiskLevel accepts any letter case, both directly and from the wire."""
    assert RiskLevel(text) is level
    data = _comparison("JP1747893S", "JP", text, 1, 0.5)
    assert _serde.structure(conv, data, Comparison).risk_level is level


def test_risk_level_refuses_unknown_text():
    """An unknown risk text is a ValueError, not a silent default."""
    with pytest.raises(ValueError, match="Critical"):
        RiskLevel("Critical")


def test_risk_level_ordering():
    """RiskLevel orders by risk: rank, comparisons, sorted(), max() and RiskLevel.max agree."""
    assert [level.rank for level in (RiskLevel.LOW, RiskLevel.MEDIUM, RiskLevel.HIGH)] == [1, 2, 3]
    assert RiskLevel.LOW < RiskLevel.MEDIUM < RiskLevel.HIGH
    assert RiskLevel.HIGH >= RiskLevel.HIGH > RiskLevel.LOW
    assert RiskLevel.LOW <= RiskLevel.LOW
    assert sorted([RiskLevel.HIGH, RiskLevel.LOW, RiskLevel.MEDIUM]) == [
        RiskLevel.LOW,
        RiskLevel.MEDIUM,
        RiskLevel.HIGH,
    ]
    assert max([RiskLevel.MEDIUM, RiskLevel.LOW]) is RiskLevel.MEDIUM
    assert RiskLevel.max([None, RiskLevel.LOW, RiskLevel.HIGH, RiskLevel.MEDIUM]) is RiskLevel.HIGH
    assert RiskLevel.max([]) is None
    assert RiskLevel.max([None]) is None


def test_risk_level_is_a_string():
    """RiskLevel members are the wire strings."""
    assert isinstance(RiskLevel.HIGH, str)
    assert f"{RiskLevel.HIGH}" == "High"
    assert RiskLevel.MEDIUM.value == "Medium"


def test_enum_values_match_reference():
    """The three status encodings have the reference's numbers."""
    assert [int(s) for s in TaskStatus] == [1, 2, 3]
    assert (LegalStatus.VALID, LegalStatus.INVALID, LegalStatus.PENDING) == (1, 2, 3)
    assert [int(s) for s in models.SimpleLegalStatus] == [0, 1, 2, 220, 221, 999]


def test_workflow_report_has_the_image_search_shape(conv):
    """A workflow result decodes with the §2.2 shape into a WorkflowReport."""
    data = sample_report()
    result = _serde.structure(conv, data, WorkflowReport)
    assert type(result) is WorkflowReport
    assert isinstance(result, ImageSearchReport)
    assert result.highest_risk is RiskLevel.HIGH
    assert result.raw is data
    assert WorkflowReport.__doc__ is not None
    assert "UNVERIFIED" in WorkflowReport.__doc__


def test_uploaded_image(conv):
    """The upload answer decodes into url and expire; expire may be absent."""
    data = {"url": "https://static-open.zhihuiya.com/tmp/a.png", "expire": 32400}
    uploaded = _serde.structure(conv, data, UploadedImage)
    assert uploaded.url == data["url"]
    assert uploaded.expire == 32400
    assert uploaded.raw is data
    assert _serde.structure(conv, {"url": data["url"]}, UploadedImage).expire is None


def test_uploaded_image_without_url_is_an_error(conv):
    """An upload answer without ``url`` is a ResponseDecodeError naming the path."""
    with pytest.raises(ResponseDecodeError, match=r"\$\.url"):
        _serde.structure(conv, {"expire": 32400}, UploadedImage)


@pytest.mark.parametrize("status", [0, 4, 99, -1])
def test_unknown_task_status_is_a_decode_error(conv, status):
    """An undocumented ``task_status`` raises ResponseDecodeError that keeps the raw answer."""
    data = {"task_id": TASK_ID, "task_status": status}
    with pytest.raises(ResponseDecodeError, match=r"task_status") as info:
        _serde.structure(conv, data, ImageSearchReport)
    assert info.value.raw is data
    assert str(status) in str(info.value)


def test_unknown_legal_status_is_a_decode_error(conv):
    """An undocumented comparison ``status`` names its path in the error."""
    data = sample_report()
    data["report"]["comparisons"][1]["status"] = 7
    with pytest.raises(ResponseDecodeError, match=r"\$\.report\.comparisons\[1\]\.status"):
        _serde.structure(conv, data, ImageSearchReport)


def test_error_names_the_failing_path(conv):
    """A wrong value deep in the report is reported with its JSON path."""
    data = sample_report()
    data["report"]["comparisons"][0]["score"] = "high"
    with pytest.raises(ResponseDecodeError) as info:
        _serde.structure(conv, data, ImageSearchReport)
    assert "$.report.comparisons[0].score" in str(info.value)
    assert "expected a number" in str(info.value)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("report", "comparisons", 0, "score"), True),
        (("patent_messages", "total_search_result_count"), False),
        (("task_status",), True),
        (("rrffusion_response", "patent_messages", 0, "rerank_rank"), True),
    ],
)
def test_booleans_are_not_numbers(conv, path, value):
    """JSON ``true``/``false`` where a number is expected is a decode error."""
    data = sample_report()
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ResponseDecodeError, match="boolean"):
        _serde.structure(conv, data, ImageSearchReport)


def test_missing_required_comparison_field(conv):
    """A comparison without one of its 13 required fields is a decode error naming it."""
    data = sample_report()
    del data["report"]["comparisons"][2]["suggestion"]
    with pytest.raises(ResponseDecodeError, match=r"\$\.report\.comparisons\[2\]\.suggestion"):
        _serde.structure(conv, data, ImageSearchReport)


def test_strings_are_not_accepted_for_numbers_or_numbers_for_strings(conv):
    """Only ``apply_start_time`` takes a number for a string; other fields are strict."""
    data = sample_report()
    data["patent_messages"]["patent_messages"][0]["title"] = 12
    data["patent_messages"]["total_search_result_count"] = "156"
    with pytest.raises(ResponseDecodeError) as info:
        _serde.structure(conv, data, ImageSearchReport)
    message = str(info.value)
    assert "$.patent_messages.patent_messages[0].title" in message
    assert "$.patent_messages.total_search_result_count" in message


@pytest.mark.parametrize("data", [None, [], "report", 3, [sample_report()]])
def test_non_object_answer_is_a_decode_error(conv, data):
    """An answer that is not a JSON object is a ResponseDecodeError, never a TypeError."""
    with pytest.raises(ResponseDecodeError, match="expected an object") as info:
        _serde.structure(conv, data, ImageSearchReport)
    assert info.value.raw is data


def test_models_are_frozen(conv):
    """Decoded objects are immutable."""
    result = _serde.structure(conv, sample_report(), ImageSearchReport)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        result.task_id = "other"  # type: ignore[misc]


def test_raw_is_not_part_of_equality_or_repr(conv):
    """Two objects with the same fields are equal whatever their raw dicts; repr skips raw."""
    data = sample_report()
    other = copy.deepcopy(data)
    other["extra"] = 1
    first = _serde.structure(conv, data, ImageSearchReport)
    second = _serde.structure(conv, other, ImageSearchReport)
    assert first == second
    assert "raw=" not in repr(first)
    assert "iVBOR" not in repr(first)


def test_responses_unstructure_without_raw(conv):
    """Unstructuring a decoded report gives back its known fields, without ``raw``."""
    data = sample_report()
    result = _serde.structure(conv, data, ImageSearchReport)
    body = _serde.unstructure(conv, result)
    assert "raw" not in body
    assert "raw" not in body["report"]["comparisons"][0]
    assert body["report"]["comparisons"][0]["risk_level"] == "Medium"
    assert body["report"]["apply_start_time"] == "20200101"
    assert _serde.structure(conv, body, ImageSearchReport) == result


def _isort_key(name: str) -> tuple[int, str]:
    """ruff's RUF022 order: CONSTANTS, then Classes, then functions."""
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


def test_models_all_is_sorted():
    """``models.__all__`` is sorted (as ruff sorts it) and every name in it exists."""
    assert list(models.__all__) == sorted(models.__all__, key=_isort_key)
    for name in models.__all__:
        assert hasattr(models, name)
