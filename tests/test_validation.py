"""Request validation: every documented rule refuses bad input with the field's name."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest

from fto_async import _validate
from fto_async.errors import FtoError, InvalidRequestError
from fto_async.models import (
    ImageSearchRequest,
    LocItem,
    SimpleLegalStatus,
    WorkflowRequest,
)
from tests._shared import JPEG, PNG, png_of_size  # real, decodable images

URL = "https://static-open.zhihuiya.com/sample/common_demo.png"

PNG_B64 = base64.b64encode(PNG).decode()
JPEG_B64 = base64.b64encode(JPEG).decode()
MAX = _validate.MAX_IMAGE_BYTES
TOO_BIG_B64 = base64.b64encode(PNG + bytes(MAX)).decode()
TEXT_B64 = base64.b64encode(b"hello, this is a text file\n").decode()

BASES: dict[str, tuple[type, dict[str, Any]]] = {
    "search": (ImageSearchRequest, {"url": URL, "country": ["US"], "lang": "en"}),
    "workflow": (WorkflowRequest, {"url": URL}),
    "loc": (LocItem, {"id": "14-02"}),
}


def build(kind: str, **changes: Any) -> Any:
    """Build a request of ``kind`` from a valid base, with ``changes`` applied (``...`` deletes)."""
    cls, base = BASES[kind]
    kwargs = {**base, **changes}
    kwargs = {k: v for k, v in kwargs.items() if v is not ...}
    return cls(**kwargs)


BAD: list[tuple[str, dict[str, Any], str]] = [
    # ImageSearchRequest.url
    ("search", {"url": 42}, "url"),
    ("search", {"url": None}, "url"),
    ("search", {"url": "ftp://example.com/a.png"}, "url"),
    ("search", {"url": "http://a b/c.png"}, "url"),
    ("search", {"url": "https://example.com/a\n.png"}, "url"),
    ("search", {"url": "example.com/a.png"}, "url"),
    ("search", {"url": "https:///a.png"}, "url"),
    ("search", {"url": "http://[::1/a.png"}, "url"),
    ("search", {"url": ""}, "url"),
    # ImageSearchRequest.country
    ("search", {"country": "US"}, "country"),
    ("search", {"country": []}, "country"),
    ("search", {"country": ()}, "country"),
    ("search", {"country": None}, "country"),
    ("search", {"country": ["us"]}, "country"),
    ("search", {"country": ["USA"]}, "country"),
    ("search", {"country": ["U"]}, "country"),
    ("search", {"country": ["US", "US"]}, "country"),
    ("search", {"country": [1, 2]}, "country"),
    ("search", {"country": {"US": 1}}, "country"),
    ("search", {"country": ["U1"]}, "country"),
    ("search", {"country": ["ÜS"]}, "country"),
    ("search", {"country": ["US "]}, "country"),
    # ImageSearchRequest.lang
    ("search", {"lang": "fr"}, "lang"),
    ("search", {"lang": "EN"}, "lang"),
    ("search", {"lang": {"lang": "en"}}, "lang"),
    ("search", {"lang": None}, "lang"),
    # ImageSearchRequest.loc_items
    ("search", {"loc_items": []}, "loc_items"),
    ("search", {"loc_items": "14-02"}, "loc_items"),
    ("search", {"loc_items": ["1402"]}, "loc_items"),
    ("search", {"loc_items": ["14-2"]}, "loc_items"),
    ("search", {"loc_items": ["33-01"]}, "loc_items"),
    ("search", {"loc_items": ["00-01"]}, "loc_items"),
    ("search", {"loc_items": [1402]}, "loc_items"),
    ("search", {"loc_items": ["14-02", "١٤-٠٢"]}, "loc_items"),
    ("search", {"loc_items": 14}, "loc_items"),
    # ImageSearchRequest.apply_start_time
    ("search", {"apply_start_time": "20230230"}, "apply_start_time"),
    ("search", {"apply_start_time": "2023-01-01"}, "apply_start_time"),
    ("search", {"apply_start_time": "20231301"}, "apply_start_time"),
    ("search", {"apply_start_time": "20230101 "}, "apply_start_time"),
    ("search", {"apply_start_time": 20230101}, "apply_start_time"),
    ("search", {"apply_start_time": "00000101"}, "apply_start_time"),
    # ImageSearchRequest.main_field
    ("search", {"main_field": ""}, "main_field"),
    ("search", {"main_field": "   "}, "main_field"),
    ("search", {"main_field": "x" * 201}, "main_field"),
    ("search", {"main_field": ["phone"]}, "main_field"),
    # WorkflowRequest: url / base64
    ("workflow", {"url": ...}, "url"),
    ("workflow", {"url": None, "target_image_base64": None}, "url"),
    ("workflow", {"url": "ftp://example.com/a.png"}, "url"),
    ("workflow", {"url": 3.5}, "url"),
    ("workflow", {"target_image_base64": "not base64!"}, "target_image_base64"),
    ("workflow", {"target_image_base64": PNG_B64[:-1]}, "target_image_base64"),
    (
        "workflow",
        {"target_image_base64": PNG_B64[:10] + "\n" + PNG_B64[10:]},
        "target_image_base64",
    ),
    ("workflow", {"target_image_base64": TEXT_B64}, "target_image_base64"),
    ("workflow", {"target_image_base64": TOO_BIG_B64}, "target_image_base64"),
    ("workflow", {"target_image_base64": ""}, "target_image_base64"),
    ("workflow", {"target_image_base64": PNG}, "target_image_base64"),
    (
        "workflow",
        {"target_image_base64": "data:image/gif;base64," + PNG_B64},
        "target_image_base64",
    ),
    (
        "workflow",
        {"target_image_base64": "data:image/png;base64," + JPEG_B64},
        "target_image_base64",
    ),
    ("workflow", {"target_image_base64": "data:image/png;base64,"}, "target_image_base64"),
    # WorkflowRequest: country, loc_items
    ("workflow", {"country": "CN"}, "country"),
    ("workflow", {"country": []}, "country"),
    ("workflow", {"country": ["cn"]}, "country"),
    ("workflow", {"loc_items": []}, "loc_items"),
    ("workflow", {"loc_items": ["9-01"]}, "loc_items"),
    ("workflow", {"loc_items": [{"desc": "包装容器"}]}, "loc_items"),
    ("workflow", {"loc_items": [{"id": "09-01", "name": "x"}]}, "loc_items"),
    ("workflow", {"loc_items": [{"id": "09-01", "desc": 5}]}, "loc_items"),
    ("workflow", {"loc_items": [42]}, "loc_items"),
    ("workflow", {"loc_items": "09-01"}, "loc_items"),
    # WorkflowRequest: dates
    ("workflow", {"apply_start_time": "20230230"}, "apply_start_time"),
    ("workflow", {"apply_end_time": "2023-01-01"}, "apply_end_time"),
    ("workflow", {"apply_end_time": dt.datetime(2023, 1, 1).timestamp()}, "apply_end_time"),
    (
        "workflow",
        {"apply_start_time": "20240102", "apply_end_time": "20240101"},
        "apply_end_time",
    ),
    (
        "workflow",
        {"apply_start_time": dt.date(2025, 1, 1), "apply_end_time": "20241231"},
        "apply_end_time",
    ),
    # WorkflowRequest: simple_legal_status, title, user_id
    ("workflow", {"simple_legal_status": "3"}, "simple_legal_status"),
    ("workflow", {"simple_legal_status": "1,1"}, "simple_legal_status"),
    ("workflow", {"simple_legal_status": "a"}, "simple_legal_status"),
    ("workflow", {"simple_legal_status": ""}, "simple_legal_status"),
    ("workflow", {"simple_legal_status": "1,,2"}, "simple_legal_status"),
    ("workflow", {"simple_legal_status": []}, "simple_legal_status"),
    ("workflow", {"simple_legal_status": [True]}, "simple_legal_status"),
    ("workflow", {"simple_legal_status": [1, 3]}, "simple_legal_status"),
    ("workflow", {"simple_legal_status": 1.0}, "simple_legal_status"),
    ("workflow", {"simple_legal_status": {1: 2}}, "simple_legal_status"),
    ("workflow", {"title": ""}, "title"),
    ("workflow", {"title": 5}, "title"),
    ("workflow", {"user_id": ""}, "user_id"),
    ("workflow", {"user_id": ["user_1"]}, "user_id"),
    # LocItem
    ("loc", {"id": "1402"}, "id"),
    ("loc", {"id": "33-01"}, "id"),
    ("loc", {"id": None}, "id"),
    ("loc", {"desc": 7}, "desc"),
]


def _case_id(case: tuple[str, dict[str, Any], str]) -> str:
    kind, changes, _ = case
    shown = ",".join(f"{k}={v!r:.24}" for k, v in changes.items())
    return f"{kind}:{shown}"


@pytest.mark.parametrize(("kind", "changes", "field"), BAD, ids=[_case_id(c) for c in BAD])
def test_bad_input_is_refused_with_the_field_name(kind, changes, field):
    """A bad value raises InvalidRequestError (a ValueError) whose ``field`` names it."""
    with pytest.raises(InvalidRequestError) as info:
        build(kind, **changes)
    exc = info.value
    assert isinstance(exc, ValueError)
    assert isinstance(exc, FtoError)
    assert exc.field == field
    assert field in str(exc)
    assert str(exc).startswith(f"{field}: ")


def test_bad_table_is_large_enough():
    """The table covers at least 45 bad inputs across all three request classes."""
    assert len(BAD) >= 45
    assert {kind for kind, _, _ in BAD} == set(BASES)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"country": ["us"]}, "country: each code must be two upper-case letters, got 'us'"),
        ({"country": "US"}, "pass ['US']"),
        ({"country": ["US", "US"]}, "'US' appears twice"),
        ({"lang": "fr"}, "lang: must be 'cn' or 'en', got 'fr'"),
        ({"loc_items": ["33-01"]}, "class 01-32"),
        ({"apply_start_time": "20230230"}, "real calendar date"),
        ({"apply_start_time": "2023-01-01"}, "'yyyyMMdd'"),
        ({"url": "ftp://x.org/a.png"}, "http or https"),
        ({"url": "http://a b"}, "whitespace"),
    ],
)
def test_messages_state_the_rule(changes, message):
    """The message states the broken rule and the offending value."""
    with pytest.raises(InvalidRequestError, match=None) as info:
        build("search", **changes)
    assert message in str(info.value)


def test_missing_image_message_names_both_fields():
    """Without url and base64 the error names both alternatives."""
    with pytest.raises(InvalidRequestError) as info:
        WorkflowRequest(title="no image")
    assert "url" in str(info.value)
    assert "target_image_base64" in str(info.value)


def test_long_values_are_cut_in_messages():
    """A huge bad value does not end up whole in the error message."""
    with pytest.raises(InvalidRequestError) as info:
        build("search", url="ftp://" + "x" * 10_000)
    assert len(str(info.value)) < 200


def test_loc_item_error_inside_workflow_names_the_item():
    """A bad item in ``loc_items`` is reported on ``loc_items`` with its index."""
    with pytest.raises(InvalidRequestError) as info:
        WorkflowRequest(url=URL, loc_items=["09-01", {"id": "99-99"}])
    assert info.value.field == "loc_items"
    assert "item 1" in str(info.value)


GOOD = [
    ("search", {"country": ["US", "CN", "EU"]}, "country", ("US", "CN", "EU")),
    ("search", {"country": ("JP",)}, "country", ("JP",)),
    ("search", {"lang": "cn"}, "lang", "cn"),
    ("search", {"loc_items": ["14-02", "14-03"]}, "loc_items", ("14-02", "14-03")),
    ("search", {"loc_items": ("32-00", "01-99")}, "loc_items", ("32-00", "01-99")),
    ("search", {"loc_items": None}, "loc_items", None),
    ("search", {"apply_start_time": dt.date(2020, 1, 1)}, "apply_start_time", "20200101"),
    ("search", {"apply_start_time": "20240229"}, "apply_start_time", "20240229"),
    ("search", {"apply_start_time": dt.datetime(2021, 5, 6, 7, 8)}, "apply_start_time", "20210506"),
    ("search", {"main_field": "智能手机"}, "main_field", "智能手机"),
    ("search", {"main_field": "x" * 200}, "main_field", "x" * 200),
    (
        "search",
        {"url": "http://127.0.0.1:8080/a.jpg?x=1"},
        "url",
        "http://127.0.0.1:8080/a.jpg?x=1",
    ),
    ("search", {"url": "HTTPS://Example.COM/a.png"}, "url", "HTTPS://Example.COM/a.png"),
    ("workflow", {"url": None, "target_image_base64": PNG_B64}, "target_image_base64", PNG_B64),
    (
        "workflow",
        {"url": None, "target_image_base64": "data:image/png;base64," + PNG_B64},
        "target_image_base64",
        PNG_B64,
    ),
    (
        "workflow",
        {"url": None, "target_image_base64": "data:image/jpeg;base64," + JPEG_B64},
        "target_image_base64",
        JPEG_B64,
    ),
    (
        "workflow",
        {"url": None, "target_image_base64": base64.b64encode(png_of_size(MAX - 1)).decode()},
        "url",
        None,
    ),
    ("workflow", {"target_image_base64": PNG_B64}, "url", URL),
    ("workflow", {"country": ["CN", "US", "EU"]}, "country", ("CN", "US", "EU")),
    ("workflow", {"loc_items": ["09-01"]}, "loc_items", (LocItem("09-01"),)),
    (
        "workflow",
        {"loc_items": [{"id": "09-01", "desc": "包装容器"}, LocItem("07-01"), {"id": "07-02"}]},
        "loc_items",
        (LocItem("09-01", "包装容器"), LocItem("07-01"), LocItem("07-02")),
    ),
    ("workflow", {"simple_legal_status": "1,2"}, "simple_legal_status", "1,2"),
    ("workflow", {"simple_legal_status": " 2 , 0 ,1"}, "simple_legal_status", "0,1,2"),
    ("workflow", {"simple_legal_status": [2, 1]}, "simple_legal_status", "1,2"),
    (
        "workflow",
        {"simple_legal_status": (SimpleLegalStatus.PENDING, SimpleLegalStatus.INACTIVE)},
        "simple_legal_status",
        "0,2",
    ),
    ("workflow", {"simple_legal_status": SimpleLegalStatus.ACTIVE}, "simple_legal_status", "1"),
    ("workflow", {"simple_legal_status": 0}, "simple_legal_status", "0"),
    (
        "workflow",
        {"apply_start_time": "20240101", "apply_end_time": "20240101"},
        "apply_end_time",
        "20240101",
    ),
    (
        "workflow",
        {"apply_start_time": dt.date(2020, 1, 1), "apply_end_time": dt.date(2026, 5, 22)},
        "apply_end_time",
        "20260522",
    ),
    ("workflow", {"apply_end_time": "20260522"}, "apply_start_time", None),
    ("workflow", {"title": "FTO 图像检索任务-2026-05-22"}, "title", "FTO 图像检索任务-2026-05-22"),
    ("workflow", {"user_id": "user_123456"}, "user_id", "user_123456"),
    ("loc", {"id": "09-01", "desc": "包装容器"}, "desc", "包装容器"),
    ("loc", {"id": "09-01", "desc": ""}, "desc", ""),
    ("loc", {"id": "32-99"}, "id", "32-99"),
]


@pytest.mark.parametrize(("kind", "changes", "attr", "expected"), GOOD)
def test_good_input_is_normalised(kind, changes, attr, expected):
    """A valid value is accepted and stored in its normalised form."""
    assert getattr(build(kind, **changes), attr) == expected


def test_image_search_request_positional_order():
    """ImageSearchRequest takes url, country, lang, loc_items, apply_start_time, main_field."""
    req = ImageSearchRequest(URL, ["US"], "en", ["14-02"], "20200101", "toys")
    assert (req.url, req.country, req.lang) == (URL, ("US",), "en")
    assert (req.loc_items, req.apply_start_time, req.main_field) == (("14-02",), "20200101", "toys")


def test_from_image_bytes_encodes_the_image():
    """``from_image_bytes`` base64-encodes the image and passes the other fields through."""
    req = WorkflowRequest.from_image_bytes(PNG, title="cup", country=["CN"])
    assert base64.b64decode(req.target_image_base64 or "") == PNG
    assert (req.title, req.country, req.url) == ("cup", ("CN",), None)


@pytest.mark.parametrize(
    ("data", "kwargs"),
    [
        (b"plain text", {}),
        ("not bytes", {}),
        (PNG + bytes(MAX), {}),
        (PNG, {"target_image_base64": PNG_B64}),
        (PNG, {"apply_start_time": "20230230"}),
    ],
)
def test_from_image_bytes_refuses_bad_input(data, kwargs):
    """``from_image_bytes`` refuses non-images, non-bytes, oversized images and bad fields."""
    with pytest.raises(InvalidRequestError):
        WorkflowRequest.from_image_bytes(data, **kwargs)


def test_workflow_repr_does_not_dump_the_image():
    """The repr of a request with a big image shows its length, not its content."""
    req = WorkflowRequest.from_image_bytes(png_of_size(10_000))
    assert "chars>" in repr(req)
    assert len(repr(req)) < 500


def test_workflow_request_is_keyword_only():
    """WorkflowRequest refuses positional arguments."""
    with pytest.raises(TypeError):
        WorkflowRequest(URL)  # type: ignore[call-arg]


async def test_one_image_rule_for_bytes_uploads_and_catalog_files(tmp_path):
    """One byte over 4 MiB is refused by every path; exactly 4 MiB is P010's inclusive maximum."""
    from fto_async import FtoClient
    from fto_async.cli._catalog import Catalog, check_defaults

    at_limit = png_of_size(MAX + 1)
    under = png_of_size(MAX)
    with pytest.raises(InvalidRequestError, match="at most 4194304 bytes"):
        WorkflowRequest.from_image_bytes(at_limit, country=["US"])
    WorkflowRequest.from_image_bytes(under, country=["US"])
    async with FtoClient(api_key="sk-x", base_url="http://127.0.0.1:9") as client:
        with pytest.raises(InvalidRequestError, match="at most 4194304 bytes"):
            await client.upload_image(at_limit)
    (tmp_path / "big.png").write_bytes(at_limit)
    (tmp_path / "ok.png").write_bytes(under)
    (tmp_path / "c.csv").write_text("sku,image_path\nA,big.png\nB,ok.png\n")
    rows = list(Catalog(tmp_path / "c.csv", check_defaults("US", "en", None, None, False)).rows())
    assert "at most 4194304 bytes" in (rows[0].error or "")
    assert rows[1].ok
