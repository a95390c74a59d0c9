"""What each error says and carries (issue 26: mutants of ``errors.py`` that survived).

A user reads an error's message and a program reads its attributes (``task_id``,
``not_attempted``, ``url``...); both survive pickling (a process pool, a job queue).
Each case here pins them for one class, so a constructor that drops one fails.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import pytest

from fto_async import errors as e

CAUSE = e.AuthenticationError(None, "bad secret", http_status=401)
#: Each error is built inside its test (mutation testing maps the tests that call a
#: constructor; an error built at import would be built once, by the unmutated code).
CASES: list[tuple[Callable[[], e.FtoError], str, dict[str, Any]]] = [
    (lambda: e.BatchAbortedError(CAUSE, not_attempted=7),
     "batch stopped by a fatal error ([HTTP 401] bad secret); 7 items not attempted",
     {"cause": CAUSE, "not_attempted": 7}),
    (lambda: e.BatchAbortedError(CAUSE, not_attempted=None),
     "batch stopped by a fatal error ([HTTP 401] bad secret); an unknown number of items"
     " not attempted", {"not_attempted": None}),
    (lambda: e.BatchAbortedError(CAUSE, not_attempted=0),
     "batch stopped by a fatal error ([HTTP 401] bad secret); 0 items not attempted",
     {"not_attempted": 0}),
    (lambda: e.BudgetExhaustedError("max_calls 5 spent", budget="max_calls"), "max_calls 5 spent",
     {"budget": "max_calls"}),
    (lambda: e.MalformedResponseError("not JSON", http_status=200), "not JSON",
     {"http_status": 200}),
    (lambda: e.PlatformUnreachableError("refused", url="https://p.example"), "refused",
     {"url": "https://p.example", "request_sent": False}),
    (lambda: e.PlatformUnreachableError("cut", url="https://p.example", request_sent=True), "cut",
     {"request_sent": True}),
    (lambda: e.ResponseDecodeError("no task_id", raw={"a": 1}), "no task_id", {"raw": {"a": 1}}),
    (lambda: e.SharedGateError("redis down", url="redis://h:6379/0"), "redis down",
     {"url": "redis://h:6379/0"}),
    (lambda: e.TaskFailedError("t-1"), "task t-1 failed on the platform (task_status 3)",
     {"task_id": "t-1"}),
    (lambda: e.TaskExpiredError("t-2"),
     "task t-2 is unknown to the platform or expired (valid 8 h)", {"task_id": "t-2"}),
    (lambda: e.TaskExpiredError("t-3", "68300004"),
     "task t-3 is unknown to the platform or expired (valid 8 h): 68300004",
     {"task_id": "t-3"}),
    (lambda: e.TaskTimeoutError("t-4", 12.345), "task t-4 not finished after 12.3 s",
     {"task_id": "t-4", "waited": 12.345}),
    (lambda: e.RecordedError("boom", error_type="TaskFailedError"),
     "TaskFailedError (recorded by an earlier run): boom", {"error_type": "TaskFailedError"}),
    (lambda: e.RecordedError("boom", error_type=None), "error (recorded by an earlier run): boom",
     {"error_type": None}),
    (lambda: e.ValidationError(None, "bad field", details=[{"field": "url"}], request_id="r-1"),
     "[HTTP 422] bad field (request id r-1)",
     {"code": None, "http_status": 422, "request_id": "r-1", "details": [{"field": "url"}]}),
    (lambda: e.ValidationError(67200005, "bad field", http_status=400),
     "[67200005] bad field", {"code": 67200005, "http_status": 400, "details": []}),
    (lambda: e.OverloadedError(3, 12.4), "overloaded: 3 questions already wait; retry in 12 s",
     {"waiting": 3, "retry_after": 12.4}),
    (lambda: e.DeadlineExceededError(2.5, "t-5"), "no answer within the 2.5 s deadline",
     {"timeout": 2.5, "task_id": "t-5"}),
    (lambda: e.DeadlineExceededError(30), "no answer within the 30 s deadline",
     {"task_id": None}),
]  # fmt: skip


@pytest.mark.parametrize(("build", "message", "attributes"), CASES)
def test_each_error_says_and_carries_what_it_was_given(
    build: Callable[[], e.FtoError], message: str, attributes: dict[str, Any]
) -> None:
    err = build()
    def plain(value: Any) -> Any:  # an exception compares by identity: by type and text
        return (type(value), str(value)) if isinstance(value, BaseException) else value

    for again in (err, pickle.loads(pickle.dumps(err))):  # noqa: S301 - our own bytes
        assert type(again) is type(err)
        assert str(again) == message
        got = {name: plain(getattr(again, name)) for name in attributes}
        assert got == {name: plain(value) for name, value in attributes.items()}

def test_an_unknown_code_with_http_422_keeps_its_code_and_request_id() -> None:
    """The table knows no code for a 422; the error still carries the code, status and
    request id the answer had (a support ticket quotes them)."""
    err = e.error_from_code(67209999, "bad field", http_status=422, request_id="r-9")
    assert type(err) is e.ValidationError
    assert (err.code, err.http_status, err.request_id) == (67209999, 422, "r-9")
    assert str(err) == "[67209999] bad field (request id r-9)"


def test_a_whole_answer_that_is_not_json_created_no_task() -> None:
    """An HTML page answered the submit: whatever answered is not the platform, so the
    submit is not counted as possibly duplicated (a transport error without a whole answer
    is)."""
    assert not e.may_have_created_task(e.MalformedResponseError("html", http_status=200))
    assert e.may_have_created_task(e.MalformedResponseError("cut body"))
