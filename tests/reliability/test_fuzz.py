"""Property tests at the edges: what arrives from the wire or from users never crashes.

* Response decoding: arbitrary JSON, and objects shaped with each class's own field
  names, decoded with a client's converter (``fto_async._serde.structure``) into every
  response class of :mod:`fto_async.models` (9 of them) and through
  ``client.decode_report``, either builds the class (``raw`` is the input) or raises
  :class:`~fto_async.errors.ResponseDecodeError`; nothing else.
* Requests: valid requests round-trip through ``client.encode_request`` -> JSON -> the
  constructor unchanged; constructors fed arbitrary JSON-ish values for their fields
  raise only :class:`~fto_async.errors.InvalidRequestError`, and the converter turning
  arbitrary JSON into a request raises only ``ResponseDecodeError``.
* The envelope parser: ``tests/test_envelope.py`` samples envelopes at random. Here every
  one of the 2**7 = 128 present/absent combinations of ``status``, ``error_code``,
  ``error_msg``, ``data``, ``success``, ``message`` and ``detail`` is run (odd types for
  each: nested lists and objects, floats, NaN, huge and negative integers, numeric and
  non-ASCII-digit strings), at random HTTP statuses and headers, with an oracle: a known
  non-zero ``error_code`` always gives exactly its class from ``CODE_TABLE``; a status
  >= 400 never returns data; a returned value is ``data`` (or the whole object); every
  error keeps ``http_status``, has a ``str``/``repr`` and survives pickling.
* Continuation tokens: any text builds a poller or raises ``InvalidRequestError``.

Figures: about 3,300 examples per run (128 masks x 12 envelopes, 9 x 50 + 2 x 50
responses, 120 round-trips, 3 x 100 constructor calls, 3 x 100 request structurings,
300 tokens, 200 non-object bodies); no failure found in the code under test.
Runtime about 15 s.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import json
import math
import pickle
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from fto_async import (
    FtoClient,
    ImageSearchRequest,
    LocItem,
    TaskPoller,
    WorkflowRequest,
    _serde,
    models,
)
from fto_async._envelope import decode_answer
from fto_async.errors import (
    CODE_TABLE,
    ApiError,
    FtoError,
    InvalidRequestError,
    MalformedResponseError,
    ResponseDecodeError,
)
from tests._shared import API_KEY
from tests.test_serde import requests as valid_requests

# Fuzzing checks what any input does, not which lines run: untraced by coverage (the
# tracer made this module 3x slower, a third of the suite's CPU), the lines are covered
# by the behaviour tests.
pytestmark = pytest.mark.untraced

CLIENT = FtoClient(api_key=API_KEY)  # never opened: only its converter is used
CONV = CLIENT._converter
QUICK = settings(max_examples=100, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
RESPONSES = [getattr(models, name) for name in models.__all__
             if _serde._is_response(getattr(models, name))]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["", "0", "2", "1.5", "²", "٣", "High", "low", "20200101", "1e400"])
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def field_names(cls: type) -> list[str]:
    """Wire names of a response class and of every response class it nests."""
    return sorted({f.name for c in RESPONSES for f in attrs.fields(c)} | {
        f.name for f in attrs.fields(cls)})


@functools.cache  # built once per class: a strategy built inside a test is built per example
def shaped(cls: type) -> st.SearchStrategy[Any]:
    """Any JSON, or objects keyed by ``cls``'s field names (and its nested classes'), any
    values."""
    keys = st.sampled_from(field_names(cls))
    return json_values | st.recursive(
        st.dictionaries(keys, json_values, max_size=10),
        lambda children: st.dictionaries(keys, children | st.lists(children, max_size=3),
                                         max_size=10),
        max_leaves=8,
    )


def attempt(function: Any, *args: Any) -> tuple[Any, FtoError | None]:
    """``function(*args)`` and ``None``, or ``None`` and the FtoError it raised (any other
    exception propagates and fails the test)."""
    try:
        return function(*args), None
    except FtoError as exc:
        return None, exc


def decodes_or_decode_error(data: Any, cls: type) -> None:
    result, error = attempt(_serde.structure, CONV, data, cls)
    if error is None:
        assert isinstance(result, cls)
        assert result.raw is data
        return
    assert isinstance(error, ResponseDecodeError)
    assert error.raw is data
    assert str(error).startswith(f"cannot read {cls.__name__}: ")
    repr(error)


# -- responses ----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", RESPONSES, ids=[c.__name__ for c in RESPONSES])
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_json_decodes_or_raises_decode_error(cls: type, data: st.DataObject) -> None:
    """Arbitrary JSON or objects shaped like the class decode, or raise ResponseDecodeError."""
    value = data.draw(shaped(cls))
    decodes_or_decode_error(value, cls)


@pytest.mark.parametrize("kind", ["image_search", "workflow"])
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_decode_report_raises_only_decode_errors(kind: str, data: st.DataObject) -> None:
    """client.decode_report (the journal's resume path) returns a report or raises an FtoError."""
    value = data.draw(shaped(models.ImageSearchReport))
    report, error = attempt(CLIENT.decode_report, value, kind)
    if error is None:
        assert report.raw is value
    else:
        assert isinstance(error, ResponseDecodeError)


# -- requests -----------------------------------------------------------------------------


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_requests)
def test_request_round_trips_through_encode_request(request: Any) -> None:
    """client.encode_request -> JSON -> the constructor gives back an equal request."""
    body = CLIENT.encode_request(request)
    wire = json.loads(json.dumps(body, ensure_ascii=False, allow_nan=False))
    assert type(request)(**wire) == request
    assert CLIENT.encode_request(type(request)(**wire)) == body


odd_inputs = (
    json_values
    | st.binary(max_size=12)
    | st.dates()
    | st.builds(LocItem, st.sampled_from(["09-01", "14-02"]))
    | st.tuples(st.text(max_size=4))
    | st.frozensets(st.integers(0, 3), max_size=3)
)
CONSTRUCTORS: dict[str, tuple[Any, tuple[str, ...]]] = {
    "ImageSearchRequest": (ImageSearchRequest, ("url", "country", "lang", "loc_items",
                                                 "apply_start_time", "main_field")),
    "WorkflowRequest": (WorkflowRequest, tuple(f.name for f in attrs.fields(WorkflowRequest))),
    "LocItem": (LocItem, ("id", "desc")),
}


@pytest.mark.parametrize("name", sorted(CONSTRUCTORS))
@QUICK
@given(data=st.data())
def test_constructors_refuse_odd_values_with_invalid_request_error(
    name: str, data: st.DataObject
) -> None:
    """Any JSON-ish value in any field gives a valid request or an InvalidRequestError."""
    cls, names = CONSTRUCTORS[name]
    chosen = data.draw(st.lists(st.sampled_from(names), unique=True, min_size=1))
    kwargs = {field: data.draw(odd_inputs, label=field) for field in chosen}
    required = {"ImageSearchRequest": ("url", "country", "lang"), "LocItem": ("id",)}
    for field in required.get(name, ()):
        kwargs.setdefault(field, data.draw(odd_inputs, label=field))
    made, error = attempt(lambda: cls(**kwargs))
    if error is not None:
        assert isinstance(error, InvalidRequestError)
        assert str(error).startswith(f"{error.field}: ")
        return
    assert isinstance(made, cls)
    if name != "LocItem":
        assert json.dumps(_serde.unstructure(CONV, made), allow_nan=False)


@functools.cache
def keyed_by_fields(cls: type) -> st.SearchStrategy[Any]:
    """Any JSON, or objects keyed by ``cls``'s own field names."""
    names = [f.name for f in attrs.fields(cls)]
    return json_values | st.dictionaries(st.sampled_from(names), json_values)


@pytest.mark.parametrize("cls", [ImageSearchRequest, WorkflowRequest, LocItem],
                         ids=["ImageSearchRequest", "WorkflowRequest", "LocItem"])
@QUICK
@given(data=st.data())
def test_structuring_any_json_into_a_request_raises_only_decode_errors(
    cls: type, data: st.DataObject
) -> None:
    """The converter builds requests through their constructors: bad JSON is a decode error."""
    value = data.draw(keyed_by_fields(cls))
    made, error = attempt(_serde.structure, CONV, value, cls)
    if error is None:
        assert isinstance(made, cls)
    else:
        assert isinstance(error, ResponseDecodeError)
        assert error.raw is value


# -- the envelope, every combination of its fields -------------------------------------

FIELDS = ("status", "error_code", "error_msg", "data", "success", "message", "detail")
MASKS = list(itertools.product([False, True], repeat=len(FIELDS)))
KNOWN_CODES = sorted(CODE_TABLE)
flags = st.sampled_from([True, False, "true", "false", " FALSE ", "False", 0, 1, "", None,
                         "yes", [], {}, 1.0, math.nan])
codes = (
    st.sampled_from(KNOWN_CODES)
    | st.sampled_from(KNOWN_CODES).map(str)
    | st.sampled_from([0, "0", "00", -1, " 67200002 ", "67200002.0", 67200002.0, 10**30,
                       "²", "٣٣", True, False, None, "", [67200002], {"code": 1}, math.inf])
    | st.integers()
)
details = (
    json_values
    | st.lists(st.fixed_dictionaries({}, optional={"loc": json_values, "msg": json_values,
                                                    "type": json_values}), max_size=3)
)
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "status": flags, "success": flags, "error_code": codes, "error_msg": json_values,
    "message": json_values, "data": json_values, "detail": details,
}
statuses = st.sampled_from([200, 201, 204, 299, 301, 400, 401, 403, 404, 409, 422, 429, 500,
                            502, 503, 504]) | st.integers(100, 599)
header_sets = st.dictionaries(
    st.sampled_from(["x-request-id", "x-trace-id", "retry-after", "content-type"]),
    st.text(max_size=20) | st.sampled_from(["1", "-1", "nan", "1e999", "Wed, 21 Oct 2015"]),
    max_size=3,
)


def code_of(value: Any) -> int | None:
    """The oracle's reading of ``error_code``: an int (not bool) or its decimal string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value or None
    if isinstance(value, str):
        try:
            return int(value) or None
        except ValueError:
            return None
    return None


@pytest.mark.parametrize("mask", MASKS, ids=["".join("01"[m] for m in mask) for mask in MASKS])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), http_status=statuses, headers=header_sets)
def test_every_envelope_combination_returns_data_or_a_typed_error(
    mask: tuple[bool, ...], data: st.DataObject, http_status: int, headers: dict[str, str]
) -> None:
    """Each present/absent combination of the 7 envelope fields, with odd values, returns
    data or raises the FtoError the code table and the HTTP status call for."""
    obj = {name: data.draw(VALUES[name], label=name)
           for name, present in zip(FIELDS, mask, strict=True) if present}
    body = json.dumps(obj).encode()
    result, exc = attempt(decode_answer, http_status, body, CIMultiDict(headers))
    finite: list[str] = []
    json.loads(body, parse_constant=finite.append)
    if finite and isinstance(exc, ResponseDecodeError) and "not a finite number" in str(exc):
        return  # issue 19: data holding NaN/Infinity is refused (error answers are not)
    if exc is None:
        assert http_status < 400, "an HTTP error status returned data"
        assert code_of(obj.get("error_code")) is None
        expected = obj.get("data")
        same = json.dumps(expected if expected is not None else obj)
        assert json.dumps(result) == same  # (NaN != NaN, so compare the JSON)
        return
    assert str(exc)
    repr(exc)
    again = pickle.loads(pickle.dumps(exc))  # noqa: S301 - our own object
    assert type(again) is type(exc)
    assert str(again) == str(exc)
    code = code_of(obj.get("error_code"))
    if code in CODE_TABLE:
        assert type(exc) is CODE_TABLE[code], (code, type(exc))
    if isinstance(exc, ApiError):
        assert exc.code is None or isinstance(exc.code, int)
        assert exc.http_status == http_status
        assert exc.retry_after is None or 0 <= exc.retry_after < math.inf
    elif isinstance(exc, MalformedResponseError):
        assert exc.http_status == http_status


@settings(max_examples=200, deadline=None)
@given(http_status=statuses, value=json_values.filter(lambda v: not isinstance(v, dict)))
def test_json_that_is_not_an_object_is_a_typed_error(http_status: int, value: Any) -> None:
    """A JSON list, string, number or null is never taken for an envelope."""
    with pytest.raises(FtoError) as info:
        decode_answer(http_status, json.dumps(value).encode(), CIMultiDict())
    if http_status < 400:
        assert isinstance(info.value, ResponseDecodeError)


# -- continuation tokens ------------------------------------------------------------------

token_objects = st.fixed_dictionaries({}, optional={
    "version": st.sampled_from([1, 2, 0, "1", None, 1.0]) | json_values,
    "kind": st.sampled_from(["image_search", "workflow", "video", ""]) | json_values,
    "task_id": st.text(max_size=12) | json_values,
    "endpoint": st.sampled_from(["/ai/image-search/report", "/api/mcp/workflow-result",
                                 "/evil"]) | json_values,
})


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60) | token_objects.map(json.dumps) | json_values.map(json.dumps))
def test_any_continuation_token_gives_a_poller_or_invalid_request(token: str) -> None:
    """Garbage, foreign or tampered continuation tokens raise InvalidRequestError only."""
    poller, error = attempt(TaskPoller.from_continuation_token, CLIENT, token)
    if error is not None:
        assert isinstance(error, InvalidRequestError)
        assert error.field in ("token", "task_id", "kind")
        return
    assert poller.task_id
    assert json.loads(poller.continuation_token())["task_id"] == poller.task_id


def test_dates_and_loc_items_survive_the_journal_body() -> None:
    """A request with a date object and LocItem objects encodes to plain JSON and back."""
    request = WorkflowRequest(url="https://img.example/cup.png",
                              apply_start_time=dt.date(2020, 2, 29),
                              loc_items=[LocItem("09-01", desc="cups"), "07-01"])
    body = CLIENT.encode_request(request)
    assert body["apply_start_time"] == "20200229"
    assert body["loc_items"] == [{"id": "09-01", "desc": "cups"}, {"id": "07-01"}]
    assert WorkflowRequest(**json.loads(json.dumps(body))) == request
