"""The error hierarchy, and the table that maps platform codes to it.

Every exception the SDK raises hangs under :class:`FtoError`::

    FtoError
    ├── InvalidRequestError (ValueError)     bad input, caught before any call
    ├── ConfigurationError (ValueError)      missing or contradictory client options
    ├── TransportError                       no usable answer from the platform
    │   ├── ConnectError (ConnectionError)   connection refused, reset or dropped
    │   │   └── TLSError                     TLS handshake or certificate refused (fatal)
    │   ├── RequestTimeout (TimeoutError)    no answer in time
    │   ├── MalformedResponseError           body is not JSON (an HTML 502 page, a cut body)
    │   │   └── ResponseTooLargeError        body over ``max_response_bytes`` (not retried)
    │   └── PlatformUnreachableError         no answer at all for a while (fatal)
    │       └── NotThePlatformError          only non-JSON answers, never an envelope (fatal)
    ├── ResponseDecodeError                  JSON that does not fit the documented shape
    ├── ApiError                             the platform answered with an error code
    │   ├── RateLimitedError                 67200002: over the account's QPS (retryable)
    │   ├── BusyError                        67200100: gateway busy (retryable)
    │   ├── ServerError                      HTTP 5xx without an error code (retryable)
    │   ├── ServiceError                     68300005-8: backend failure (68300008 retryable)
    │   ├── InvalidParameterError            68300004 / 68300007: the platform refused the input
    │   │   └── ValidationError              HTTP 422 with a FastAPI ``detail`` list
    │   ├── FileSpecError                    68300010: upload is not a JPG/PNG under 4 MB
    │   ├── IllegalRequestError              67200012
    │   ├── PathNotFoundError                67200101: wrong path (fatal)
    │   ├── AuthenticationError              67200003/8/9/15/202, HTTP 401 (fatal)
    │   ├── PermissionDeniedError            67200004 (fatal)
    │   ├── ClientExpiredError               67200006 (fatal)
    │   └── QuotaExceededError               67200000/1/5/7 (fatal)
    │       └── InsufficientBalanceError     67200005
    ├── BudgetExhaustedError                 a client-side call budget is spent (fatal)
    ├── SharedGateError                      the shared rate gate's Redis is unusable (fatal)
    │   └── SharedCacheError                 the shared report cache's Redis is unusable
    ├── TaskFailedError                      the task ended with task_status 3
    │   └── TaskExpiredError                 the platform no longer knows the task (AI67: 8 h)
    ├── TaskTimeoutError (TimeoutError)      a task did not finish before its deadline
    ├── BatchAbortedError                    a fatal error stopped a batch
    ├── OverloadedError                      ``max_waiting`` callers already wait (retryable)
    ├── DeadlineExceededError (TimeoutError) a ``screen`` call's deadline passed (retryable)
    ├── RecordedError                        an item's failure, as an earlier run journaled it
    └── UnknownSubmissionError               an earlier run died mid-submit; skipped by policy

So does :class:`~fto_async.journal.JournalLockedError` (another process holds the journal
file). :class:`~fto_async.journal.InvalidTransitionError` is left out on purpose: it
reports a bug, which must not be caught as one item's failure.

Every instance says whether it is worth retrying (``retryable``) and whether it
must stop a whole batch (``fatal``)::

    try:
        report = await client.wait_image_search(task_id)
    except fto_async.FtoError as exc:
        if exc.fatal:
            raise          # credentials, quota or balance: nothing else will work either
        log.warning("item failed: %s", exc)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

__all__ = [
    "CODE_TABLE",
    "ApiError",
    "AuthenticationError",
    "BatchAbortedError",
    "BudgetExhaustedError",
    "BusyError",
    "ClientExpiredError",
    "ConfigurationError",
    "ConnectError",
    "DeadlineExceededError",
    "FileSpecError",
    "FtoError",
    "IllegalRequestError",
    "InsufficientBalanceError",
    "InvalidParameterError",
    "InvalidRequestError",
    "MalformedResponseError",
    "NotThePlatformError",
    "OverloadedError",
    "PathNotFoundError",
    "PermissionDeniedError",
    "PlatformUnreachableError",
    "QuotaExceededError",
    "RateLimitedError",
    "RecordedError",
    "RequestTimeout",
    "ResponseDecodeError",
    "ResponseTooLargeError",
    "ServerError",
    "ServiceError",
    "SharedCacheError",
    "SharedGateError",
    "TLSError",
    "TaskExpiredError",
    "TaskFailedError",
    "TaskTimeoutError",
    "TransportError",
    "UnknownSubmissionError",
    "ValidationError",
    "error_from_code",
    "may_have_created_task",
]


class FtoError(Exception):
    """Root of every error the SDK raises. Catch this to handle them all."""

    #: Whether calling again may succeed (the transport retries these by itself).
    retryable: ClassVar[bool] = False
    #: Whether the error stops a whole batch (credentials, quota, balance).
    fatal: ClassVar[bool] = False

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take other constructor arguments than ``args``: rebuild without
        # calling ``__init__`` and restore the attributes (code, task_id, details...).
        return (_rebuild, (type(self), self.args), self.__dict__)


def _rebuild(cls: type[FtoError], args: tuple[Any, ...]) -> FtoError:
    err = cls.__new__(cls, *args)
    err.args = args
    return err


class InvalidRequestError(FtoError, ValueError):
    """The request broke a documented rule; it was refused before any call was made.

    ``field`` names the offending attribute; the message states the rule.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class ConfigurationError(FtoError, ValueError):
    """The client options are missing or contradict each other (e.g. no credentials)."""


class TransportError(FtoError):
    """The call got no usable answer: the connection failed, timed out or was garbled.

    ``request_sent`` is false when the request never left (no connection, failed TLS
    handshake): then the platform cannot have acted on it.
    """

    retryable = True
    request_sent: bool = True


class ConnectError(TransportError, ConnectionError):
    """The connection was refused, reset or dropped before a full answer arrived."""


class TLSError(ConnectError):
    """The TLS handshake failed: the certificate could not be verified, or the server does
    not speak TLS. Every call to that host would fail the same way, so it is not retried and
    it stops a batch. Pass ``ssl=`` an :class:`ssl.SSLContext` that trusts the server's
    certificate authority (for example a corporate proxy's) rather than turning checks off.
    """

    retryable = False
    fatal = True
    request_sent = False  # the handshake comes before the request


class RequestTimeout(TransportError, TimeoutError):
    """No answer arrived within the request timeout."""


class MalformedResponseError(TransportError):
    """The body was not JSON (an HTML error page, a truncated body). Usually transient.

    ``http_status`` is set when a whole answer came back (it is not JSON): the request
    was answered, so a submit did not leave a task behind unseen. ``None`` means the body
    was cut off mid-way: then the outcome is unknown.
    """

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


class ResponseTooLargeError(MalformedResponseError):
    """The answer's body exceeded ``ClientConfig.max_response_bytes`` and was not read.

    Not retried (the same call would bring the same body back); a batch leaves the item
    for the next run.
    """

    retryable = False


class PlatformUnreachableError(TransportError):
    """No call got any answer for a while (connection refused, or no answer in time).

    Every call would fail the same way, so it stops a batch (fatal). ``url`` is the
    platform URL tried (``apikey`` redacted). Check the base URL and the network.
    """

    retryable = False
    fatal = True

    def __init__(self, message: str, *, url: str, request_sent: bool = False) -> None:
        super().__init__(message)
        self.url = url
        self.request_sent = request_sent


class NotThePlatformError(PlatformUnreachableError):
    """The server answers, but never once with the platform's JSON envelope (an HTML page,
    a captive portal, a wrong base URL). Fatal; nothing it answered created a task."""


class ResponseDecodeError(FtoError):
    """The answer was JSON but did not have the documented shape; ``raw`` holds it."""

    def __init__(self, message: str, *, raw: object = None) -> None:
        super().__init__(message)
        self.raw = raw


class ApiError(FtoError):
    """The platform answered with an error code.

    Attributes:
        code: the body's ``error_code`` (``None`` when the answer carried only an HTTP status).
        message: the body's ``error_msg`` (or a description of the HTTP status).
        http_status: the HTTP status of the answer.
        request_id: the gateway's request or trace id, when a header carried one.
        retry_after: seconds the platform asked us to wait (``Retry-After``), if any.
    """

    def __init__(
        self,
        code: int | None,
        message: str,
        *,
        http_status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.http_status = http_status
        self.request_id = request_id
        self.retry_after = retry_after
        super().__init__(self._describe())

    def _describe(self) -> str:
        parts = [f"[{self.code}]" if self.code is not None else f"[HTTP {self.http_status}]"]
        parts.append(self.message)
        if self.request_id:
            parts.append(f"(request id {self.request_id})")
        return " ".join(parts)


class RateLimitedError(ApiError):
    """67200002: the account's QPS was exceeded. Retried after a pause; the rate gate slows down."""

    retryable = True


class BusyError(ApiError):
    """67200100: the gateway is busy. Retried; a retried submit may have created a task."""

    retryable = True


class ServerError(ApiError):
    """HTTP 5xx with no platform error code. Transient: retried."""

    retryable = True


class ServiceError(ApiError):
    """68300005-68300008: a backend service failed. Only 68300008 asks for a retry."""

    @property
    def retryable(self) -> bool:  # type: ignore[override]  # depends on the code
        return self.code == 68300008


class InvalidParameterError(ApiError):
    """68300004 / 68300007: the platform refused the request's parameters. Fix the input."""


class ValidationError(InvalidParameterError):
    """HTTP 422 from a FastAPI-style endpoint; ``details`` lists each field's problem."""

    def __init__(
        self,
        code: int | None,
        message: str,
        *,
        details: Sequence[Mapping[str, Any]] = (),
        http_status: int | None = 422,
        request_id: str | None = None,
    ) -> None:
        self.details = [dict(d) for d in details]
        super().__init__(code, message, http_status=http_status, request_id=request_id)


class FileSpecError(ApiError):
    """68300010: the uploaded file is not a JPG/PNG under 4 MB."""


class IllegalRequestError(ApiError):
    """67200012: the gateway judged the request illegal."""


class PathNotFoundError(ApiError):
    """67200101: the path does not exist (check ``base_url`` and ``workflow_result_path``)."""

    fatal = True


class AuthenticationError(ApiError):
    """Credentials refused (67200003/8/9, bad grant, HTTP 401). Check the id, secret or key."""

    fatal = True


class PermissionDeniedError(ApiError):
    """67200004: no permission for this API, or the API package is used up."""

    fatal = True


class ClientExpiredError(ApiError):
    """67200006: the client's activation period is over."""

    fatal = True


class QuotaExceededError(ApiError):
    """67200000/1/7: the total or daily call limit is reached. Nothing will pass until it resets."""

    fatal = True


class InsufficientBalanceError(QuotaExceededError):
    """67200005: the account's balance or call count is used up."""


class BudgetExhaustedError(FtoError):
    """A client-side budget (``max_calls``, ``daily_limit``) would be exceeded; nothing was sent."""

    fatal = True

    def __init__(self, message: str, *, budget: str) -> None:
        super().__init__(message)
        self.budget = budget


class SharedGateError(FtoError):
    """The shared rate gate could not use Redis (unreachable at the first call, or it
    refused the gate's script); nothing was sent. Check ``redis_url`` (shown redacted)."""

    fatal = True

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


class SharedCacheError(SharedGateError):
    """The shared report cache (:class:`~fto_async.rediscache.RedisReportCache`) could not
    reach Redis to share a submit; it was not sent. Check the Redis URL (shown redacted)."""


class TaskFailedError(FtoError):
    """The platform reported ``task_status`` 3 (failed) for the task."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id} failed on the platform (task_status 3)")
        self.task_id = task_id


class TaskExpiredError(TaskFailedError):
    """The platform no longer knows the task: an AI67 (1-vs-1) task id is valid for 8 hours.

    The platform documents no code for an expired task; a query of one is answered like an
    unknown id (68300004, kept as ``__cause__``). Submit the request again for a new task.
    """

    def __init__(self, task_id: str, detail: str = "") -> None:
        FtoError.__init__(
            self, f"task {task_id} is unknown to the platform or expired (valid 8 h)"
            + (f": {detail}" if detail else "")
        )
        self.task_id = task_id


class TaskTimeoutError(FtoError, TimeoutError):
    """The task was still running when its deadline passed; poll it again later."""

    def __init__(self, task_id: str, waited: float) -> None:
        super().__init__(f"task {task_id} not finished after {waited:.1f} s")
        self.task_id = task_id
        self.waited = waited


class BatchAbortedError(FtoError):
    """A fatal error stopped a batch; ``cause`` says why, ``not_attempted`` how many were left."""

    fatal = True

    def __init__(self, cause: FtoError, *, not_attempted: int | None) -> None:
        left = "an unknown number of" if not_attempted is None else str(not_attempted)
        super().__init__(f"batch stopped by a fatal error ({cause}); {left} items not attempted")
        self.cause = cause
        self.not_attempted = not_attempted


class OverloadedError(FtoError):
    """``FtoClient(max_waiting=N)``: N questions already wait for their answers, so this
    call was refused at once, with no call made. Try again after ``retry_after`` seconds
    (an estimate from the learned task durations); a web app answers 429."""

    retryable = True

    def __init__(self, waiting: int, retry_after: float) -> None:
        super().__init__(
            f"overloaded: {waiting} questions already wait; retry in {retry_after:.0f} s"
        )
        self.waiting = waiting
        self.retry_after = retry_after


class DeadlineExceededError(FtoError, TimeoutError):
    """A :meth:`~fto_async.FtoClient.screen` call's deadline (``timeout``) passed. A task
    already paid is still polled while the client is open and its report goes to the
    client's cache: calling again later costs no second task."""

    retryable = True

    def __init__(self, timeout: float, task_id: str | None = None) -> None:
        super().__init__(f"no answer within the {timeout:g} s deadline")
        self.timeout = timeout
        self.task_id = task_id


class RecordedError(FtoError):
    """An item's failure as an earlier run recorded it in the journal; no call was made.

    ``error_type`` names the original error class.
    """

    def __init__(self, message: str, *, error_type: str | None) -> None:
        super().__init__(f"{error_type or 'error'} (recorded by an earlier run): {message}")
        self.error_type = error_type


class UnknownSubmissionError(FtoError):
    """An earlier run died while submitting this item: a task may exist on the platform.

    Raised for such items under the ``"skip"`` policy; resubmit them knowingly.
    """


#: Platform ``error_code`` -> error class (reference §8).
CODE_TABLE: Mapping[int, type[ApiError]] = {
    67200000: QuotaExceededError,
    67200001: QuotaExceededError,
    67200002: RateLimitedError,
    67200003: AuthenticationError,
    67200004: PermissionDeniedError,
    67200005: InsufficientBalanceError,
    67200006: ClientExpiredError,
    67200007: QuotaExceededError,
    67200008: AuthenticationError,
    67200009: AuthenticationError,
    67200012: IllegalRequestError,
    67200015: AuthenticationError,
    67200100: BusyError,
    67200101: PathNotFoundError,
    67200202: AuthenticationError,
    68300004: InvalidParameterError,
    68300005: ServiceError,
    68300006: ServiceError,
    68300007: InvalidParameterError,
    68300008: ServiceError,
    68300010: FileSpecError,
}

_HTTP_TABLE: Mapping[int, type[ApiError]] = {
    429: RateLimitedError,  # undocumented on the platform; the usual meaning elsewhere
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: PathNotFoundError,
    422: ValidationError,
}


def may_have_created_task(exc: FtoError) -> bool:
    """Could a submit that failed with ``exc`` have created a task on the platform anyway?

    Yes when the outcome is really unknown: sent with no (whole) answer back (a timeout, a
    dropped connection, a cut body), busy, or 5xx (a gateway may have forwarded it). No for
    refusals, for requests that never left, and for whole answers that are not JSON (an
    HTML page: whatever answered it is not the platform).
    """
    if isinstance(exc, MalformedResponseError) and exc.http_status is not None:
        return False  # a whole answer came back: it said no task id
    if isinstance(exc, TransportError):
        return exc.request_sent
    return isinstance(exc, BusyError | ServerError)


def error_from_code(
    code: int | None,
    message: str,
    *,
    http_status: int | None = None,
    request_id: str | None = None,
    retry_after: float | None = None,
) -> ApiError:
    """Build the error for a platform answer: the body's code first, the HTTP status second.

    Unknown codes give a plain :class:`ApiError`; this function never raises.
    """
    cls: type[ApiError] | None = CODE_TABLE.get(code) if code else None
    if cls is None and http_status is not None:
        cls = _HTTP_TABLE.get(http_status) or (ServerError if http_status >= 500 else None)
    cls = cls or ApiError
    if cls is ValidationError:
        return ValidationError(code, message, http_status=http_status, request_id=request_id)
    return cls(
        code or None,
        message,
        http_status=http_status,
        request_id=request_id,
        retry_after=retry_after,
    )
