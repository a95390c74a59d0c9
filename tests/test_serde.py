"""The converter: request bodies round-trip, and no JSON at all makes decoding crash."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
from typing import Any

import cattrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fto_async import _serde
from fto_async.errors import ResponseDecodeError
from fto_async.models import (
    ImageSearchReport,
    ImageSearchRequest,
    LocItem,
    Report,
    SimpleLegalStatus,
    UploadedImage,
    WorkflowReport,
    WorkflowRequest,
)
from tests._shared import JPEG, PNG
from tests.test_models import sample_report

CONV = _serde.make_converter()
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies for valid requests ------------------------------------------------------

hosts = st.from_regex(r"[a-z][a-z0-9-]{0,12}\.(com|cn|org|io)", fullmatch=True)
paths = st.from_regex(
    r"(/[A-Za-z0-9._~-]{1,12}){0,3}(\?[a-z]{1,5}=[A-Za-z0-9]{1,8})?", fullmatch=True
)
urls = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}{path}",
    st.sampled_from(["http", "https"]),
    hosts,
    paths,
)
countries = st.lists(
    st.from_regex(r"[A-Z]{2}", fullmatch=True), min_size=1, max_size=6, unique=True
)
loc_codes = st.builds(
    lambda cls, sub: f"{cls:02d}-{sub:02d}",
    st.integers(1, 32),
    st.integers(0, 99),
)
dates = st.dates(min_value=dt.date(1900, 1, 1))
date_inputs = dates.flatmap(lambda d: st.sampled_from([d, d.strftime("%Y%m%d")]))
words = st.text(min_size=1, max_size=40).filter(str.strip)
images_b64 = st.builds(  # real images: the one image rule decodes them
    lambda image, prefix: prefix(image) + base64.b64encode(image).decode(),
    st.sampled_from([PNG, JPEG]),
    st.sampled_from(
        [
            lambda image: "",
            lambda image: (
                "data:image/png;base64," if image == PNG else "data:image/jpeg;base64,"
            ),
        ]
    ),
)
loc_item_inputs = st.one_of(
    loc_codes,
    st.builds(LocItem, loc_codes, st.none() | words),
    st.builds(lambda code, desc: {"id": code, "desc": desc}, loc_codes, st.none() | words),
)
legal_status_inputs: st.SearchStrategy[str | list[int] | tuple[SimpleLegalStatus, ...]]
legal_status_inputs = st.sets(st.sampled_from([0, 1, 2]), min_size=1).flatmap(
    lambda chosen: st.sampled_from(
        [
            ",".join(map(str, chosen)),
            sorted(chosen, reverse=True),
            tuple(SimpleLegalStatus(s) for s in chosen),
        ]
    )
)

image_search_requests = st.builds(
    ImageSearchRequest,
    url=urls,
    country=countries,
    lang=st.sampled_from(["cn", "en"]),
    loc_items=st.none() | st.lists(loc_codes, min_size=1, max_size=5),
    apply_start_time=st.none() | date_inputs,
    main_field=st.none() | st.text(min_size=1, max_size=200).filter(str.strip),
)


@st.composite
def workflow_requests(draw: st.DrawFn) -> WorkflowRequest:
    """Draw a valid WorkflowRequest, with dates in order and at least one image source."""
    url = draw(st.none() | urls)
    image = draw(images_b64) if url is None else draw(st.none() | images_b64)
    start, end = sorted(draw(st.lists(dates, min_size=2, max_size=2)))
    return WorkflowRequest(
        url=url,
        target_image_base64=image,
        country=draw(st.none() | countries),
        loc_items=draw(st.none() | st.lists(loc_item_inputs, min_size=1, max_size=4)),
        apply_start_time=draw(st.sampled_from([None, start, start.strftime("%Y%m%d")])),
        apply_end_time=draw(st.sampled_from([None, end, end.strftime("%Y%m%d")])),
        simple_legal_status=draw(st.none() | legal_status_inputs),
        title=draw(st.none() | words),
        user_id=draw(st.none() | words),
    )


requests = st.one_of(image_search_requests, workflow_requests())


def _no_none_anywhere(value: Any) -> bool:
    if isinstance(value, dict):
        return all(v is not None and _no_none_anywhere(v) for v in value.values())
    if isinstance(value, list):
        return all(_no_none_anywhere(v) for v in value)
    return value is not None


@given(requests)
@settings(deadline=None, max_examples=120)
def test_request_round_trips_through_json(request):
    """A valid request survives unstructure -> JSON -> constructor unchanged."""
    body = _serde.unstructure(CONV, request)
    wire = json.loads(json.dumps(body, ensure_ascii=False))
    assert type(request)(**wire) == request
    assert _serde.structure(CONV, wire, type(request)) == request


@given(requests)
@settings(deadline=None, max_examples=60)
def test_request_body_is_plain_json_without_none(request):
    """Bodies hold only JSON types: no None, no tuples, no enums, no ``raw``."""
    body = _serde.unstructure(CONV, request)
    assert _no_none_anywhere(body)
    assert "raw" not in body
    assert json.loads(json.dumps(body)) == body  # tuples would come back as lists


def test_image_search_body_matches_the_reference():
    """The submit body uses the wire names and types of reference §2.1."""
    request = ImageSearchRequest(
        "https://static-open.zhihuiya.com/sample/common_demo.png",
        ["US", "CN"],
        "cn",
        loc_items=["14-01", "14-02"],
        apply_start_time="20200101",
    )
    assert _serde.unstructure(CONV, request) == {
        "url": "https://static-open.zhihuiya.com/sample/common_demo.png",
        "country": ["US", "CN"],
        "lang": "cn",
        "loc_items": ["14-01", "14-02"],
        "apply_start_time": "20200101",
    }


def test_workflow_body_matches_the_reference():
    """The workflow body has loc_items as objects (no ``desc`` when None) and a status string."""
    image = base64.b64encode(PNG).decode()
    request = WorkflowRequest(
        target_image_base64=image,
        country=("CN", "US", "EU"),
        loc_items=[LocItem("09-01", desc="包装容器"), "07-01"],
        apply_start_time="20200101",
        apply_end_time="20260522",
        simple_legal_status=[SimpleLegalStatus.ACTIVE, SimpleLegalStatus.PENDING],
        user_id="user_123456",
    )
    assert _serde.unstructure(CONV, request) == {
        "target_image_base64": image,
        "country": ["CN", "US", "EU"],
        "loc_items": [{"id": "09-01", "desc": "包装容器"}, {"id": "07-01"}],
        "apply_start_time": "20200101",
        "apply_end_time": "20260522",
        "simple_legal_status": "1,2",
        "user_id": "user_123456",
    }


def test_minimal_workflow_body_omits_every_none():
    """A workflow request with only a url sends only the url."""
    request = WorkflowRequest(url="https://example.com/target-image.jpg")
    assert _serde.unstructure(CONV, request) == {"url": "https://example.com/target-image.jpg"}


def test_make_converter_configures_a_cattrs_converter():
    """``make_converter`` returns a fresh detailed-validation cattrs Converter each call."""
    first, second = _serde.make_converter(), _serde.make_converter()
    assert isinstance(first, cattrs.Converter)
    assert first is not second
    assert first.detailed_validation


def test_hooks_are_generated_once():
    """The structure hook of a class is built once and reused on later calls."""
    conv = _serde.make_converter()
    _serde.structure(conv, sample_report(), ImageSearchReport)
    hook = conv.get_structure_hook(ImageSearchReport)
    assert conv.get_structure_hook(ImageSearchReport) is hook


def test_unstructure_refuses_non_objects():
    """``unstructure`` only produces JSON objects."""
    with pytest.raises(TypeError):
        _serde.unstructure(CONV, ["not", "an", "object"])


# -- fuzzing the decoder ----------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
KNOWN_KEYS = sorted(
    {
        "task_id", "task_status", "line_drawing_base64", "patent_messages", "rrffusion_response",
        "report", "total_search_result_count", "k_value", "rerank_count", "traditional_count",
        "country", "comparisons", "loc", "operate_date", "apply_start_time", "score", "title",
        "img_id", "status", "risk_level", "patent_id", "patent_pn", "authority", "url", "expire",
        "rrf_score", "rerank_rank", "rerank_score", "traditional_rank", "traditional_score",
    }
)  # fmt: skip
shaped_objects = st.recursive(
    st.dictionaries(st.sampled_from(KNOWN_KEYS), json_values, max_size=8),
    lambda children: st.dictionaries(
        st.sampled_from(KNOWN_KEYS), children | st.lists(children, max_size=3), max_size=8
    ),
    max_leaves=6,
)
TARGETS = [ImageSearchReport, WorkflowReport, Report, UploadedImage]


def _decode_or_decode_error(data: Any, cls: type[Any]) -> Any:
    try:
        result = _serde.structure(CONV, data, cls)
    except ResponseDecodeError as exc:
        error = exc
    else:
        assert isinstance(result, cls)
        assert result.raw is data
        return result
    assert error.raw is data
    assert " @ $" in str(error)  # the message names the failing path
    return None


@pytest.mark.untraced  # fuzzing: what any input does, not which lines run
@FUZZ
@given(st.one_of(json_values, shaped_objects), st.sampled_from(TARGETS))
def test_arbitrary_json_only_raises_decode_errors(data, cls):
    """Any JSON value decodes or raises ResponseDecodeError, never another exception."""
    _decode_or_decode_error(data, cls)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


SAMPLE_PATHS = _paths(sample_report())


@st.composite
def mutated_samples(draw: st.DrawFn) -> dict[str, Any]:
    """Draw the valid sample with one to three keys deleted or values swapped for other JSON."""
    data = copy.deepcopy(sample_report())
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(SAMPLE_PATHS))
        parent: Any = data
        try:
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed this path
        if draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_values)
    return data


@pytest.mark.untraced  # fuzzing: what any input does, not which lines run
@FUZZ
@given(mutated_samples(), st.sampled_from([ImageSearchReport, WorkflowReport]))
def test_mutated_sample_only_raises_decode_errors(data, cls):
    """Deleting keys or swapping types anywhere in a valid report never crashes the decoder."""
    _decode_or_decode_error(data, cls)


@pytest.mark.untraced  # fuzzing: what any input does, not which lines run
@FUZZ
@given(mutated_samples())
def test_mutated_report_section_only_raises_decode_errors(data):
    """The same holds when the ``report`` object is decoded on its own."""
    _decode_or_decode_error(data.get("report"), Report)


def test_huge_integer_for_a_float_is_a_decode_error():
    """An integer too large for a float is a decode error, not an OverflowError."""
    data = sample_report()
    data["report"]["comparisons"][0]["score"] = 10**400
    with pytest.raises(ResponseDecodeError, match=r"\$\.report\.comparisons\[0\]\.score"):
        _serde.structure(CONV, data, ImageSearchReport)


def test_text_for_an_integer_is_a_decode_error():
    """``expire`` sent as text is a decode error naming the field."""
    with pytest.raises(ResponseDecodeError, match=r"\$\.expire"):
        _serde.structure(CONV, {"url": "https://x.org/a.png", "expire": "9h"}, UploadedImage)
