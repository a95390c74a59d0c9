"""fto-async: asyncio SDK for PatSnap design-patent freedom-to-operate screening.

Example::

    import fto_async

    async with fto_async.FtoClient.from_env() as client:
        request = fto_async.ImageSearchRequest(
            url="https://example.com/lamp.png", country=["US", "EU"], lang="en"
        )
        task_id = await client.submit_image_search(request)
        report = await client.wait_image_search(task_id)

The package, one job per module (imports run one way, downwards: ``cli/`` -> ``client``
-> ``batch``, ``polling/``, ``transport`` -> ``ratelimit``, ``auth``,
``retry``, ``_envelope``, ``_http`` -> ``models``, ``_validate``, ``errors``, ``config``;
``batch`` and the pollers know no client, only small Protocols)::

    __init__       this public surface
    config         options as frozen values; from_env() reads the environment
    auth           the two credential schemes; token cache, single-flight refresh
    errors         the error tree and the platform's code table
    models         wire requests (validated, attrs) and reports; the TaskKind names
    _enums         the platform's enumerations (RiskLevel, TaskStatus, ...), in models
    _kinds         THE table of task kinds: request/result class, paths, fingerprint
                   fields, journal table (a new kind is a row there + its models)
    _validate      field rules, and the one image rule (PNG/JPEG of at most 4,194,304 bytes)
    _serde         the one cattrs converter (CONVERTER)
    fingerprint    the request fingerprint (canonical body, images by SHA-256)
    _envelope      reading a platform answer
    _http          one POST (aiohttp); testing.MockTransport is its handler-style fake
    ratelimit      the local rate gate: paced, never over the limit, adaptive
    redisgate      RedisRateGate: the same gate with its state in Redis, for many processes
    _gate_scripts  its two Lua scripts (run atomically on the Redis server)
    _redis         Redis plumbing of the gate and the cache: connect, the account's key
                   stem, a URL's secrets
    _lanes         the classes of work a gate admits (due polls, started work, new work),
                   their order, and work_class() to mark a task's calls
    _reserve       the poll reserve: under a call budget, calls kept to read paid tasks
    retry          what is retried, how long to wait, the retry budget
    hooks          Hooks (on_call, on_retry, on_poll, on_result) and their events
    _otel          OpenTelemetry through the API only (the otel extra), no-ops without it
    _observe       fans each call, poll and task out to hooks, _otel and the call ledger
    transport      the single place a call goes out: gate -> auth -> HTTP -> envelope
    _reach         is the platform there at all: unreachable or not-the-platform, early
    polling/       polling: learnt durations (_durations), the scheduler of many pending
                   tasks (_scheduler), one task: wait_for_task and TaskPoller (_poller)
    batch/         screen_many and friends over any iterable: __init__ (entry points),
                   _values (Item, Outcome, Progress, FollowUp, options), _engine (flow
                   control), _sharing (dedupe, single flight, windows, cache hits),
                   _journaling (the ONE resume and record policy, items and follow-ups),
                   _stream (the pump), _followup (the 1-vs-1 follow-up stage)
    _sqlite        file + flock, WAL, read-only opening, one-thread executor, group
                   commit: the plumbing of the journal, the cache and the thumbnails
    journal        the durable record of every item and follow-up
    _journal_rows  the journal's states, ONE transition table, rows and file format
    _journal_follow_ups  the journal's follow-ups table (a part of Journal)
    _journal_ledger  the journal's call ledger: calls by run, day, path and result (own table)
    _journal_store  the journal's storage: opening the file, the group-commit writer
                   thread, the paged row stream (a part of Journal, over _sqlite)
    _statement     the platform's usage statement (client_secret in the body only)
    cache          ReportCache: reports by fingerprint, with their provenance; the
                   AnswerCache protocol and the freshness rule every cache applies
    rediscache     RedisReportCache: the cache in Redis, with single flight across
                   processes (a lease per question, task ids shared)
    client         FtoClient: options, lifecycle, any kind of task; builds batches, pollers
    _endpoints     FtoClient's per-endpoint methods (a mixin) and the submit/poll/wait
                   wire helpers and body checks they share
    _screen        FtoClient.screen: single flight across callers, max_waiting, deadlines
    _screen_image  FtoClient.screen_image: a local image's question (upload once, or base64)
    _uploads       the P010 URLs a client uploaded, renewed before they expire
    _views         FtoClient.with_options: a view with its own timeout and max_retries
    testing        MockTransport, for tests with no server
    outputs/       the one record rule (journal row -> flat record, one status word, the
                   last run's row set) and its writers: JSONL, CSV, XLSX, the HTML report
                   (cards, thumbnails, templates); never imported by the modules above
    report         the HTML report's old name (README): re-exports outputs.write_html
    cli/           the fto-async command (never imported by the modules above)
    emulator/      the local platform
"""

import inspect as _inspect  # aliased: a public name here would join the API
import typing as _typing
from typing import Any as _Any

import attrs

from .auth import ApiKey, ClientCredentials
from .batch import FollowUp, FollowUpResult, Item, Outcome, Progress
from .cache import CachedReport, ReportCache
from .client import FtoClient
from .config import (
    DEFAULT_BASE_URL,
    DEFAULT_QPS,
    DEFAULT_WORKFLOW_RESULT_PATH,
    ClientConfig,
    PollConfig,
    RateConfig,
    RetryConfig,
)
from .errors import (
    ApiError,
    AuthenticationError,
    BatchAbortedError,
    BudgetExhaustedError,
    BusyError,
    ClientExpiredError,
    ConfigurationError,
    ConnectError,
    DeadlineExceededError,
    FileSpecError,
    FtoError,
    IllegalRequestError,
    InsufficientBalanceError,
    InvalidParameterError,
    InvalidRequestError,
    MalformedResponseError,
    NotThePlatformError,
    OverloadedError,
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
)
from .fingerprint import image_digest, request_fingerprint
from .hooks import CallEvent, Hooks, PollEvent, ResultEvent
from .journal import Journal, JournalLockedError, NotAJournalError
from .models import (
    Comparison,
    ImageSearchReport,
    ImageSearchRequest,
    LegalStatus,
    LocItem,
    OneVsOneComparison,
    OneVsOneReport,
    OneVsOneRequest,
    PatentInfo,
    PatentMessages,
    Report,
    RiskLevel,
    RRFFusionResponse,
    RRFItem,
    SimpleLegalStatus,
    TaskStatus,
    UploadedImage,
    WorkflowReport,
    WorkflowRequest,
)
from .polling import TaskDurations, TaskPoller
from .ratelimit import RateGate
from .rediscache import RedisReportCache
from .redisgate import RedisRateGate
from .retry import RetryEvent
from .transport import TransportStats

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_QPS",
    "DEFAULT_WORKFLOW_RESULT_PATH",
    "ApiError",
    "ApiKey",
    "AuthenticationError",
    "BatchAbortedError",
    "BudgetExhaustedError",
    "BusyError",
    "CachedReport",
    "CallEvent",
    "ClientConfig",
    "ClientCredentials",
    "ClientExpiredError",
    "Comparison",
    "ConfigurationError",
    "ConnectError",
    "DeadlineExceededError",
    "FileSpecError",
    "FollowUp",
    "FollowUpResult",
    "FtoClient",
    "FtoError",
    "Hooks",
    "IllegalRequestError",
    "ImageSearchReport",
    "ImageSearchRequest",
    "InsufficientBalanceError",
    "InvalidParameterError",
    "InvalidRequestError",
    "Item",
    "Journal",
    "JournalLockedError",
    "LegalStatus",
    "LocItem",
    "MalformedResponseError",
    "NotAJournalError",
    "NotThePlatformError",
    "OneVsOneComparison",
    "OneVsOneReport",
    "OneVsOneRequest",
    "Outcome",
    "OverloadedError",
    "PatentInfo",
    "PatentMessages",
    "PathNotFoundError",
    "PermissionDeniedError",
    "PlatformUnreachableError",
    "PollConfig",
    "PollEvent",
    "Progress",
    "QuotaExceededError",
    "RRFFusionResponse",
    "RRFItem",
    "RateConfig",
    "RateGate",
    "RateLimitedError",
    "RecordedError",
    "RedisRateGate",
    "RedisReportCache",
    "Report",
    "ReportCache",
    "RequestTimeout",
    "ResponseDecodeError",
    "ResponseTooLargeError",
    "ResultEvent",
    "RetryConfig",
    "RetryEvent",
    "RiskLevel",
    "ServerError",
    "ServiceError",
    "SharedCacheError",
    "SharedGateError",
    "SimpleLegalStatus",
    "TLSError",
    "TaskDurations",
    "TaskExpiredError",
    "TaskFailedError",
    "TaskPoller",
    "TaskStatus",
    "TaskTimeoutError",
    "TransportError",
    "TransportStats",
    "UnknownSubmissionError",
    "UploadedImage",
    "ValidationError",
    "WorkflowReport",
    "WorkflowRequest",
    "image_digest",
    "request_fingerprint",
]

# Show public classes as ``fto_async.X`` in reprs and tracebacks (as httpx does). Their
# string annotations are resolved first, against their defining module, and stored back
# evaluated: typing.get_type_hints(cls) looks names up in sys.modules[cls.__module__],
# which is this package from then on (tests/test_type_hints.py checks every class).
_public_types = [o for o in map(globals().__getitem__, __all__) if isinstance(o, type)]
_resolved = {
    _cls: _typing.get_type_hints(_cls, include_extras=True)
    for _cls in _public_types
    if not _typing.is_typeddict(_cls)
}
for _cls, _hints in _resolved.items():
    _own = _inspect.get_annotations(_cls)
    if _own:
        _cls.__annotations__ = {_name: _hints[_name] for _name in _own}
    if attrs.has(_cls):
        attrs.resolve_types(_cls)
for _cls in _public_types:
    _cls.__module__ = "fto_async"
del _public_types, _resolved, _cls, _hints, _own


def __getattr__(name: str) -> _Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("fto-async")
    raise AttributeError(f"module 'fto_async' has no attribute {name!r}")
