"""The error hierarchy and the code table (``fto_async.errors``)."""

from __future__ import annotations

import builtins
import os
import pickle
import re
from pathlib import Path
from typing import Any

import pytest

from fto_async import errors
from fto_async.emulator._wire import MESSAGES as EMULATOR_MESSAGES
from fto_async.errors import (
    ApiError,
    AuthenticationError,
    BatchAbortedError,
    BudgetExhaustedError,
    BusyError,
    ClientExpiredError,
    ConfigurationError,
    ConnectError,
    FileSpecError,
    FtoError,
    IllegalRequestError,
    InsufficientBalanceError,
    InvalidParameterError,
    InvalidRequestError,
    MalformedResponseError,
    NotThePlatformError,
    PathNotFoundError,
    PermissionDeniedError,
    PlatformUnreachableError,
    QuotaExceededError,
    RateLimitedError,
    RecordedError,
    RequestTimeout,
    ResponseDecodeError,
    ResponseTooLargeError,
    ServerError,
    ServiceError,
    SharedCacheError,
    SharedGateError,
    TaskExpiredError,
    TaskFailedError,
    TaskTimeoutError,
    TLSError,
    TransportError,
    UnknownSubmissionError,
    ValidationError,
    error_from_code,
    may_have_created_task,
)

#: The reference sits in ``shared/`` beside the repository (CI checks it out there too).
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "patsnap-api.md"
_CODE_ROW = re.compile(r"^\|\s*(67\d{6}|68\d{6})\s*\|", re.MULTILINE)
_CODE = re.compile(r"\b6[78]\d{6}\b")

#: Every documented code, its class, and (retryable, fatal) as DESIGN.md states them.
EXPECTED: dict[int, tuple[type[ApiError], bool, bool]] = {
    67200000: (QuotaExceededError, False, True),
    67200001: (QuotaExceededError, False, True),
    67200002: (RateLimitedError, True, False),
    67200003: (AuthenticationError, False, True),
    67200004: (PermissionDeniedError, False, True),
    67200005: (InsufficientBalanceError, False, True),
    67200006: (ClientExpiredError, False, True),
    67200007: (QuotaExceededError, False, True),
    67200008: (AuthenticationError, False, True),
    67200009: (AuthenticationError, False, True),
    67200012: (IllegalRequestError, False, False),
    67200015: (AuthenticationError, False, True),
    67200100: (BusyError, True, False),
    67200101: (PathNotFoundError, False, True),
    67200202: (AuthenticationError, False, True),
    68300004: (InvalidParameterError, False, False),
    68300005: (ServiceError, False, False),
    68300006: (ServiceError, False, False),
    68300007: (InvalidParameterError, False, False),
    68300008: (ServiceError, True, False),
    68300010: (FileSpecError, False, False),
}


def _reference_codes() -> list[int]:
    """The codes of the reference's tables (``| 672xxxxx |`` rows) and of its prose.

    The prose adds 67200012 and 67200100 ("the seed documents list ..."); a line saying a
    code "is not listed" (68300009) is skipped.
    """
    text = REFERENCE.read_text("utf-8")
    rows = {int(code) for code in _CODE_ROW.findall(text)}
    prose = {
        int(code)
        for line in text.splitlines()
        if "not listed" not in line
        for code in _CODE.findall(line)
    }
    assert rows <= prose
    return sorted(rows | prose)


@pytest.mark.parametrize("code", sorted(EXPECTED))
def test_code_maps_to_its_class(code: int) -> None:
    """Each documented code builds its class, with code and message, flagged as DESIGN.md says."""
    cls, retryable, fatal = EXPECTED[code]
    err = error_from_code(code, "message", http_status=200, request_id="rid-1")
    assert type(err) is cls
    assert (err.code, err.message, err.http_status, err.request_id) == (
        code,
        "message",
        200,
        "rid-1",
    )
    assert (err.retryable, err.fatal) == (retryable, fatal)


def require_reference(path: Path) -> Path:
    """``path`` if the reference is there; else skip, or fail under ``CI=true`` (CI lays
    ``shared/`` beside the clone, so a missing reference there is a broken setup)."""
    if not path.is_file():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and the reference is missing at {path}")
        pytest.skip(f"reference not checked out at {path}")
    return path


@pytest.fixture
def reference() -> Path:
    """The reference document (see :func:`require_reference`)."""
    return require_reference(REFERENCE)


def test_missing_reference_skips_locally_and_fails_under_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the reference a developer's run skips these tests; CI's run fails them."""
    missing = tmp_path / "patsnap-api.md"
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require_reference(missing)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_reference(missing)
    missing.write_text("| 67200002 |")
    assert require_reference(missing) == missing


@pytest.mark.usefixtures("reference")
def test_every_code_in_the_reference_has_a_specific_class() -> None:
    """Every 672xxxxx / 683xxxxx code of the reference maps to a non-generic class."""
    codes = _reference_codes()
    assert len(codes) >= 20, codes  # the parse found the tables
    for code in codes:
        err = error_from_code(code, "m")
        assert type(err) is not ApiError, code
        assert code in EXPECTED, f"{code} is in the reference but not in this test's table"


@pytest.mark.usefixtures("reference")
def test_reference_names_the_codes_the_brief_calls_out() -> None:
    """The reference parse includes the undocumented gateway codes and both 672001xx codes."""
    assert {67200012, 67200015, 67200202, 68300010, 67200100, 67200101} <= set(_reference_codes())


def test_every_emulator_code_has_a_specific_class() -> None:
    """Every code the emulator can answer maps to a non-generic class (the SDK's contract)."""
    for code in EMULATOR_MESSAGES:
        assert type(error_from_code(code, "m")) is not ApiError, code


def test_no_class_is_both_retryable_and_fatal() -> None:
    """A retryable error is never fatal, and every fatal one is never retried."""
    for code in EXPECTED:
        err = error_from_code(code, "m")
        assert not (err.retryable and err.fatal), code


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, PathNotFoundError),
        (422, ValidationError),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (504, ServerError),
        (599, ServerError),
    ],
)
def test_http_status_without_code_maps_to_class(status: int, cls: type[ApiError]) -> None:
    """Without a body code the HTTP status decides (a 401 with no body is an auth error)."""
    err = error_from_code(None, "no body", http_status=status)
    assert type(err) is cls
    assert err.code is None
    assert err.http_status == status


def test_server_error_is_retryable_not_fatal() -> None:
    """HTTP 5xx without a code is transient."""
    err = error_from_code(None, "oops", http_status=503)
    assert err.retryable
    assert not err.fatal


def test_unknown_code_gives_plain_api_error() -> None:
    """An unknown code gives a plain ApiError, neither retryable nor fatal."""
    err = error_from_code(12345678, "new code", http_status=200)
    assert type(err) is ApiError
    assert err.code == 12345678
    assert not err.retryable
    assert not err.fatal


def test_zero_code_and_unmapped_status_give_plain_api_error() -> None:
    """Code 0 counts as no code, and an unmapped 4xx status gives a plain ApiError."""
    err = error_from_code(0, "strange", http_status=418)
    assert type(err) is ApiError
    assert err.code is None


def test_body_code_wins_over_http_status() -> None:
    """The body's code decides before the HTTP status does."""
    assert type(error_from_code(68300004, "m", http_status=401)) is InvalidParameterError
    assert type(error_from_code(67200002, "m", http_status=503)) is RateLimitedError


def test_retry_after_is_carried() -> None:
    """The Retry-After hint reaches the error."""
    assert error_from_code(67200002, "slow", retry_after=1.5).retry_after == 1.5


def test_api_error_str_names_code_message_and_request_id() -> None:
    """The message shows the code (or HTTP status), the text and the request id."""
    assert str(error_from_code(67200002, "too fast", request_id="abc")) == (
        "[67200002] too fast (request id abc)"
    )
    assert str(error_from_code(None, "gone", http_status=502)) == "[HTTP 502] gone"


@pytest.mark.parametrize("cls", [TransportError, ConnectError, RequestTimeout])
def test_transport_errors_are_retryable(cls: type[TransportError]) -> None:
    """Transport faults are retried and never stop a batch."""
    err = cls("x")
    assert err.retryable
    assert not err.fatal


def test_malformed_response_is_retryable_transport_error() -> None:
    """A non-JSON body is a retryable transport fault."""
    err = MalformedResponseError("html", http_status=200)
    assert isinstance(err, TransportError)
    assert err.retryable
    assert err.http_status == 200


def test_invalid_request_error_is_a_value_error() -> None:
    """InvalidRequestError is a ValueError naming the field."""
    err = InvalidRequestError("lang", "must be 'en' or 'cn'")
    assert isinstance(err, ValueError)
    assert err.field == "lang"
    assert str(err) == "lang: must be 'en' or 'cn'"
    assert issubclass(ConfigurationError, ValueError)


def test_timeouts_are_timeout_errors() -> None:
    """RequestTimeout and TaskTimeoutError are TimeoutErrors."""
    assert isinstance(RequestTimeout("x"), TimeoutError)
    err = TaskTimeoutError("t1", 12.0)
    assert isinstance(err, TimeoutError)
    assert (err.task_id, err.waited) == ("t1", 12.0)


def test_connect_error_is_a_connection_error() -> None:
    """ConnectError is a ConnectionError."""
    assert isinstance(ConnectError("x"), ConnectionError)


def test_may_have_created_task() -> None:
    """Only answers that may come after the platform acted leave a submit ambiguous."""
    unsent = ConnectError("refused")
    unsent.request_sent = False
    maybe = [BusyError(67200100, "busy"), ServerError(None, "502", http_status=502),
             RequestTimeout("slow"), MalformedResponseError("html"), ConnectError("reset")]
    never = [unsent, TLSError("bad certificate"), error_from_code(67200002, "too fast"),
             error_from_code(68300004, "bad url"), error_from_code(67200005, "no balance")]
    assert all(may_have_created_task(e) for e in maybe)
    assert not any(may_have_created_task(e) for e in never)


def test_tls_error_is_fatal_and_not_retried() -> None:
    """A TLS failure would repeat on every call: a fatal ConnectError, never retried."""
    err = TLSError("certificate verify failed")
    assert isinstance(err, ConnectError)
    assert err.fatal
    assert not err.retryable


def test_everything_hangs_under_fto_error() -> None:
    """Every exception class in errors.__all__ derives from FtoError."""
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type):
            assert issubclass(obj, FtoError), name


def _samples() -> list[FtoError]:
    cause = error_from_code(67200005, "no balance", http_status=403)
    return [
        FtoError("root"),
        InvalidRequestError("url", "must be http(s)"),
        ConfigurationError("no credentials"),
        TransportError("gone"),
        ConnectError("refused"),
        TLSError("certificate verify failed"),
        RequestTimeout("slow"),
        MalformedResponseError("html", http_status=502),
        ResponseTooLargeError("huge", http_status=200),
        PlatformUnreachableError("cannot reach x", url="http://x", request_sent=True),
        NotThePlatformError("html only", url="http://x"),
        ResponseDecodeError("bad shape", raw={"a": [1]}),
        ApiError(1, "m", http_status=200, request_id="r", retry_after=2.0),
        *(error_from_code(c, f"msg {c}", http_status=200, request_id="r") for c in EXPECTED),
        ServerError(None, "502", http_status=502),
        ValidationError(
            None, "url: bad", details=[{"loc": ["body", "url"], "msg": "bad", "type": "t"}]
        ),
        BudgetExhaustedError("spent", budget="max_calls"),
        SharedGateError("no redis", url="redis://:***@h:6379/0"),
        SharedCacheError("no redis", url="redis://:***@h:6379/0"),
        TaskFailedError("task-1"),
        TaskExpiredError("task-3", "[68300004] Invalid parameter!"),
        TaskTimeoutError("task-2", 3.5),
        BatchAbortedError(cause, not_attempted=7),
        RecordedError("boom", error_type="BusyError"),
        UnknownSubmissionError("maybe created"),
        errors.OverloadedError(4, 2.5),
        errors.DeadlineExceededError(0.5, "t-1"),
    ]


def _state(err: BaseException) -> dict[str, Any]:
    state = {k: v for k, v in vars(err).items() if k != "cause"}
    if isinstance(err, BatchAbortedError):
        state["cause"] = (type(err.cause), str(err.cause))
    return state


@pytest.mark.parametrize("err", _samples(), ids=lambda e: type(e).__name__)
def test_errors_pickle_round_trip(err: FtoError) -> None:
    """Every error survives pickling with its class, message and attributes."""
    copy = pickle.loads(pickle.dumps(err))  # noqa: S301 - our own data
    assert type(copy) is type(err)
    assert str(copy) == str(err)
    assert copy.args == err.args
    assert _state(copy) == _state(err)
    assert (copy.retryable, copy.fatal) == (err.retryable, err.fatal)


def test_samples_cover_every_class() -> None:
    """The pickle samples include every exception class of errors.__all__."""
    classes = {getattr(errors, n) for n in errors.__all__ if isinstance(getattr(errors, n), type)}
    assert classes == {type(e) for e in _samples()}


def _tree() -> list[tuple[int, str, str]]:
    """(depth, class name, builtin base) for each line of the errors.py docstring tree."""
    doc = errors.__doc__ or ""
    block = doc.split("::", 1)[1].strip("\n").split("\n\n", 1)[0]
    rows = []
    for line in block.splitlines():
        m = re.search(r"[A-Z]\w+", line)
        assert m, line
        builtin = re.match(r" \((\w+)\)", line[m.end() :])
        rows.append(((m.start() - 4) // 4, m.group(), builtin.group(1) if builtin else ""))
    return rows


def test_docstring_tree_names_every_class() -> None:
    """The errors.py docstring tree names every exception class in errors.__all__."""
    named = {name for _, name, _ in _tree()}
    classes = {n for n in errors.__all__ if isinstance(getattr(errors, n), type)}
    assert classes == named


def test_docstring_tree_matches_the_hierarchy() -> None:
    """Each class in the tree sits under its real parent, with its builtin base in brackets."""
    parents: list[str] = []
    for depth, name, builtin in _tree():
        del parents[depth:]
        cls = getattr(errors, name)
        if parents:
            assert cls.__bases__[0] is getattr(errors, parents[-1]), name
        if builtin:
            assert issubclass(cls, getattr(builtins, builtin)), name
        parents.append(name)
