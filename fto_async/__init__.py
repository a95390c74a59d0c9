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
    models         attrs requests (validated) and reports; TaskKind and its endpoints
    _validate      field rules, and the one image rule (PNG/JPEG under 4 MiB)
    _serde         the one cattrs converter
    fingerprint    the request fingerprint (canonical body, images by SHA-256)
    _envelope      reading a platform answer
    _http          one POST (aiohttp); testing.MockTransport is its handler-style fake
    ratelimit      the local rate gate: paced, never over the limit, adaptive
    retry          what is retried, how long to wait, the retry budget
    transport      the single place a call goes out: gate -> auth -> HTTP -> envelope
    polling/       polling: learnt durations (_durations), the scheduler of many pending
                   tasks (_scheduler), one task: wait_for_task and TaskPoller (_poller)
    batch          screen_many and friends over any iterable
    journal        the durable record of every item
    client         FtoClient: one method per endpoint; builds batches and pollers
    testing        MockTransport, for tests with no server
    cli/           the fto-async command (never imported by the modules above)
    emulator/      the local platform
"""

import inspect as _inspect  # aliased: a public name here would join the API
import typing as _typing
from typing import Any as _Any

import attrs

from .auth import ApiKey, ClientCredentials
from .batch import Item, Outcome, Progress
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
    SharedGateError,
    TaskExpiredError,
    TaskFailedError,
    TaskTimeoutError,
    TLSError,
    TransportError,
    UnknownSubmissionError,
    ValidationError,
)
from .followup import FollowUp
from .models import (
    Comparison,
    FollowUpResult,
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
    "ClientConfig",
    "ClientCredentials",
    "ClientExpiredError",
    "Comparison",
    "ConfigurationError",
    "ConnectError",
    "FileSpecError",
    "FollowUp",
    "FollowUpResult",
    "FtoClient",
    "FtoError",
    "IllegalRequestError",
    "ImageSearchReport",
    "ImageSearchRequest",
    "InsufficientBalanceError",
    "InvalidParameterError",
    "InvalidRequestError",
    "Item",
    "LegalStatus",
    "LocItem",
    "MalformedResponseError",
    "NotThePlatformError",
    "OneVsOneComparison",
    "OneVsOneReport",
    "OneVsOneRequest",
    "Outcome",
    "PatentInfo",
    "PatentMessages",
    "PathNotFoundError",
    "PermissionDeniedError",
    "PlatformUnreachableError",
    "PollConfig",
    "Progress",
    "QuotaExceededError",
    "RRFFusionResponse",
    "RRFItem",
    "RateConfig",
    "RateGate",
    "RateLimitedError",
    "RecordedError",
    "RedisRateGate",
    "Report",
    "ReportCache",
    "RequestTimeout",
    "ResponseDecodeError",
    "ResponseTooLargeError",
    "RetryConfig",
    "RetryEvent",
    "RiskLevel",
    "ServerError",
    "ServiceError",
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
