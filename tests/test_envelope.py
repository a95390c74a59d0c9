"""Decoding one HTTP answer into data or a typed error (``fto_async._envelope``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from fto_async._envelope import decode_answer, format_detail, parse_retry_after
from fto_async.errors import (
    ApiError,
    AuthenticationError,
    BusyError,
    FtoError,
    InvalidParameterError,
    MalformedResponseError,
    PathNotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ResponseDecodeError,
    ServerError,
    ServiceError,
    ValidationError,
)

NO_HEADERS: CIMultiDict[str] = CIMultiDict()
HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


def _json(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


def _raises(status: int, body: bytes, headers: Any = NO_HEADERS, **kw: Any) -> FtoError:
    with pytest.raises(FtoError) as info:
        decode_answer(status, body, headers, **kw)
    return info.value


# -- successes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"data": {"task_id": "t1"}, "status": True, "error_code": 0}, {"task_id": "t1"}),
        ({"data": [1, 2], "status": True, "error_code": 0}, [1, 2]),
        ({"data": {"url": "u"}, "status": True, "error_code": "0"}, {"url": "u"}),
        ({"data": {"x": 1}, "status": "true", "error_code": 0}, {"x": 1}),
    ],
)
def test_success_returns_data(body: dict[str, Any], expected: Any) -> None:
    """A success answer gives its ``data`` (error_code 0 as int or string)."""
    assert decode_answer(200, _json(body), NO_HEADERS) == expected


def test_workflow_success_returns_top_level_object() -> None:
    """The submit-workflow answer has no ``data``: the whole object (with task_id) comes back."""
    body = {"status": True, "message": "任务提交成功", "success": True, "task_id": "w1",
            "error_code": 0}
    assert decode_answer(200, _json(body), NO_HEADERS)["task_id"] == "w1"


def test_success_without_data_returns_object() -> None:
    """``data: null`` on success gives the whole object."""
    body = {"data": None, "status": True, "error_code": 0, "task_id": "x"}
    assert decode_answer(200, _json(body), NO_HEADERS) == body


# -- platform error codes ------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (200, 67200002, RateLimitedError),
        (200, "67200100", BusyError),
        (200, " 68300008 ", ServiceError),
        (401, 67200003, AuthenticationError),
        (403, "67200004", PermissionDeniedError),
        (404, 67200101, PathNotFoundError),
        (200, 68300004, InvalidParameterError),
        (503, 67200002, RateLimitedError),
        (200, 99999999, ApiError),
    ],
)
def test_error_code_decides_class(status: int, code: Any, cls: type[ApiError]) -> None:
    """A non-zero error_code (int or numeric string) picks the class, whatever the HTTP status."""
    body = {"status": False, "error_code": code, "error_msg": "platform says no"}
    err = _raises(status, _json(body))
    assert type(err) is cls
    assert isinstance(err, ApiError)
    assert err.code == int(code)
    assert err.message == "platform says no"
    assert err.http_status == status


def test_status_false_string_without_code_is_an_error() -> None:
    """``status: "false"`` (a string, as S11's examples show) is an error, not a success."""
    body = {"status": "false", "error_code": "0", "error_msg": "nope", "data": {"x": 1}}
    err = _raises(200, _json(body))
    assert type(err) is ApiError
    assert err.message == "nope"


def test_status_false_boolean_without_code_is_an_error() -> None:
    """``status: false`` with no code and no message is still an error."""
    err = _raises(200, _json({"status": False}))
    assert type(err) is ApiError
    assert "HTTP 200" in err.message


def test_success_false_with_message() -> None:
    """The workflow envelope's ``success: false`` + ``message`` is an error carrying the message."""
    err = _raises(200, _json({"success": False, "message": "task rejected"}))
    assert type(err) is ApiError
    assert err.message == "task rejected"


# -- FastAPI detail ------------------------------------------------------------------


def test_422_detail_list_gives_readable_validation_error() -> None:
    """A 422 ``detail`` list gives ValidationError with "field: msg" text and the entries."""
    detail = [
        {"loc": ["body", "url"], "msg": "Input should be a valid URL", "type": "url_parsing"},
        {"loc": ["body", "loc_items", 0, "id"], "msg": "Field required", "type": "missing"},
        {"loc": [], "msg": "Bad body", "type": "x"},
    ]
    err = _raises(422, _json({"detail": detail}))
    assert type(err) is ValidationError
    assert isinstance(err, InvalidParameterError)
    assert err.message == (
        "url: Input should be a valid URL; loc_items.0.id: Field required; request: Bad body"
    )
    assert err.details == detail
    assert err.http_status == 422
    assert err.code is None


def test_422_detail_string() -> None:
    """A 422 ``detail`` string is the ValidationError's message, with no entries."""
    err = _raises(422, _json({"detail": "Unprocessable"}))
    assert type(err) is ValidationError
    assert err.message == "Unprocessable"
    assert err.details == []


def test_detail_on_other_status_uses_that_status() -> None:
    """A ``detail`` on a 401 is an authentication error with the detail as message."""
    err = _raises(401, _json({"detail": "Not authenticated"}))
    assert type(err) is AuthenticationError
    assert err.message == "Not authenticated"


def test_format_detail_tolerates_odd_shapes() -> None:
    """format_detail never fails on odd detail values."""
    assert format_detail("x") == ("x", [])
    assert format_detail(5) == ("5", [])
    assert format_detail([1, "a"]) == ("validation error", [])
    assert format_detail([{"msg": "m"}]) == ("request: m", [{"msg": "m"}])
    assert format_detail([{"loc": "url"}])[0] == "u.r.l: invalid"


# -- bodies that are not the envelope ------------------------------------------------


def test_html_502_is_server_error() -> None:
    """An HTML 502 page is a retryable ServerError whose message quotes the page's text."""
    err = _raises(502, HTML_502)
    assert type(err) is ServerError
    assert err.retryable
    assert "502 Bad Gateway" in err.message
    assert "<" not in err.message


def test_plain_text_503_is_server_error() -> None:
    """A plain-text 503 is a ServerError."""
    err = _raises(503, b"Service Unavailable")
    assert type(err) is ServerError
    assert err.http_status == 503


def test_html_at_other_4xx_is_plain_api_error() -> None:
    """An HTML page with an unmapped 4xx status is a plain ApiError carrying that status."""
    err = _raises(400, b"<html><body>Bad Request</body></html>")
    assert type(err) is ApiError
    assert err.http_status == 400
    assert "Bad Request" in err.message


def test_truncated_json_at_200_is_malformed() -> None:
    """A cut JSON body with HTTP 200 is a retryable MalformedResponseError."""
    err = _raises(200, b'{"data":{"task_id":"3f2a')
    assert type(err) is MalformedResponseError
    assert err.retryable
    assert err.http_status == 200


@pytest.mark.parametrize("body", [b"[1, 2, 3]", b'"text"', b"42", b"null", b""])
def test_json_that_is_not_an_object_is_decode_error(body: bytes) -> None:
    """JSON that is not an object (or no body) at HTTP 200 is a ResponseDecodeError."""
    err = _raises(200, body)
    assert type(err) is ResponseDecodeError
    assert err.raw == (json.loads(body) if body else None)


def test_empty_401_is_authentication_error() -> None:
    """A 401 with no body at all is an AuthenticationError (fatal)."""
    err = _raises(401, b"")
    assert type(err) is AuthenticationError
    assert err.code is None
    assert err.http_status == 401
    assert err.fatal


def test_json_array_at_4xx_uses_status() -> None:
    """A JSON array with an error status gives that status's class."""
    assert type(_raises(403, b"[]")) is PermissionDeniedError


# -- headers -------------------------------------------------------------------------


def test_retry_after_seconds() -> None:
    """``Retry-After: 2`` reaches the error as 2.0 seconds."""
    body = _json({"status": False, "error_code": 67200002, "error_msg": "slow"})
    err = _raises(200, body, CIMultiDict({"Retry-After": "2"}))
    assert isinstance(err, RateLimitedError)
    assert err.retry_after == 2.0


def test_retry_after_http_date() -> None:
    """``Retry-After`` as an HTTP date gives the seconds from ``now`` to that date."""
    now = 1_700_000_000.0
    date = format_datetime(datetime.fromtimestamp(now + 30, UTC), usegmt=True)
    body = _json({"status": False, "error_code": 67200100, "error_msg": "busy"})
    err = _raises(200, body, CIMultiDict({"Retry-After": date}), now=now)
    assert isinstance(err, BusyError)
    assert err.retry_after == pytest.approx(30.0)


def test_retry_after_on_5xx_without_body() -> None:
    """A 503 with Retry-After carries the hint."""
    err = _raises(503, b"", CIMultiDict({"Retry-After": "0.5"}))
    assert isinstance(err, ServerError)
    assert err.retry_after == 0.5


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("3", 3.0),
        (" 0.25 ", 0.25),
        ("-4", 0.0),
        ("soon", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        ("inf", None),
        ("nan", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    """parse_retry_after reads seconds or a date, clamps the past to 0 and ignores junk."""
    assert parse_retry_after(value, now=1_700_000_000.0) == expected


def test_request_id_header_reaches_error() -> None:
    """The gateway's request id header is kept on the error and shown in its message."""
    body = _json({"status": False, "error_code": 68300008, "error_msg": "service error"})
    err = _raises(200, body, CIMultiDict({"X-Request-Id": "req-42"}))
    assert isinstance(err, ApiError)
    assert err.request_id == "req-42"
    assert "req-42" in str(err)


def test_trace_id_header_for_http_errors() -> None:
    """A trace id header reaches errors built from the HTTP status alone."""
    err = _raises(502, HTML_502, CIMultiDict({"X-Trace-Id": "tr-1"}))
    assert isinstance(err, ApiError)
    assert err.request_id == "tr-1"


# -- properties ----------------------------------------------------------------------

_ABSENT = object()
_STATUS = st.sampled_from([True, False, "true", "false", "False", " FALSE ", 0, 1, None, "x"])
_CODE = st.one_of(
    st.sampled_from([0, "0", 67200002, "67200100", "68300008", -1, "-5", 10**20, 1.5, True,
                     None, "", "abc", "²", "٣"]),
    st.integers(),
    st.text(max_size=8),
)
_TEXT: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.text(max_size=20), st.integers(), st.just({}), st.just([])
)
_DATA: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.just({}), st.just([]), st.text(max_size=5),
    st.just({"task_id": "t", "task_status": 2}),
)
_DETAIL = st.one_of(
    st.none(),
    st.text(max_size=10),
    st.integers(),
    st.just({}),
    st.lists(
        st.one_of(
            st.integers(),
            st.text(max_size=5),
            st.fixed_dictionaries(
                {},
                optional={
                    "loc": st.one_of(
                        st.lists(st.one_of(st.text(max_size=5), st.integers()), max_size=3),
                        st.text(max_size=5), st.none(), st.integers(),
                    ),
                    "msg": _TEXT,
                    "type": _TEXT,
                },
            ),
        ),
        max_size=3,
    ),
)
_HTTP = st.one_of(
    st.sampled_from([200, 201, 204, 400, 401, 403, 404, 413, 422, 429, 500, 502, 503, 504]),
    st.integers(100, 599),
)
_RETRY_AFTER = st.one_of(
    st.none(), st.text(max_size=30), st.sampled_from(["1", "1e400", "-inf", "Mon, 01 Jan 2001"]),
)


def _field(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(_ABSENT), values)


@pytest.mark.untraced  # fuzzing: what any input does, not which lines run
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    http_status=_HTTP,
    status=_field(_STATUS),
    error_code=_field(_CODE),
    error_msg=_field(_TEXT),
    data=_field(_DATA),
    success=_field(_STATUS),
    message=_field(_TEXT),
    detail=_field(_DETAIL),
    retry_after=_RETRY_AFTER,
)
def test_any_envelope_returns_or_raises_fto_error(
    http_status: int, retry_after: str | None, **fields: Any
) -> None:
    """Every combination of envelope fields, statuses and headers returns or raises FtoError."""
    obj = {k: v for k, v in fields.items() if v is not _ABSENT}
    headers = CIMultiDict({"Retry-After": retry_after} if retry_after is not None else {})
    try:
        decode_answer(http_status, _json(obj), headers, now=1_700_000_000.0)
    except FtoError as exc:
        str(exc)
        retry = getattr(exc, "retry_after", None)
        assert retry is None or 0 <= retry < float("inf")


@pytest.mark.untraced  # fuzzing: what any input does, not which lines run
@settings(max_examples=300, deadline=None)
@given(http_status=_HTTP, body=st.one_of(st.binary(max_size=64), st.text(max_size=40).map(
    str.encode)))
def test_any_bytes_return_or_raise_fto_error(http_status: int, body: bytes) -> None:
    """Arbitrary bytes at any HTTP status return or raise FtoError, never anything else."""
    try:
        decode_answer(http_status, body, NO_HEADERS)
    except FtoError as exc:
        str(exc)


def test_deeply_nested_json_raises_fto_error() -> None:
    """A pathologically nested body is refused as an FtoError, not a RecursionError."""
    with pytest.raises(FtoError):
        decode_answer(200, b"[" * 100_000 + b"]" * 100_000, NO_HEADERS)


@pytest.mark.parametrize("code", ["²", "abc", "", "1.5", True, 1.5, None, [], {}])
def test_non_numeric_error_code_counts_as_no_code(code: Any) -> None:
    """An error_code that is not an integer (or its decimal string) is ignored, never a crash."""
    err = _raises(200, _json({"status": False, "error_code": code, "error_msg": "odd"}))
    assert type(err) is ApiError
    assert err.code is None
