"""fto-async: asyncio SDK for PatSnap design-patent freedom-to-operate screening.

Example::

    import fto_async

    async with fto_async.FtoClient.from_env() as client:
        request = fto_async.ImageSearchRequest(
            url="https://example.com/lamp.png", country=["US", "EU"], lang="en"
        )
        task_id = await client.submit_image_search(request)
        report = await client.wait_image_search(task_id)
"""

from typing import Any as _Any  # aliased: a public name here would join the API

import attrs

from .auth import ApiKey, ClientCredentials
from .batch import Outcome, Progress
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
    PathNotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitedError,
    RecordedError,
    RequestTimeout,
    ResponseDecodeError,
    ServerError,
    ServiceError,
    TaskFailedError,
    TaskTimeoutError,
    TLSError,
    TransportError,
    UnknownSubmissionError,
    ValidationError,
)
from .models import (
    Comparison,
    ImageSearchReport,
    ImageSearchRequest,
    LegalStatus,
    LocItem,
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
    "ClientConfig",
    "ClientCredentials",
    "ClientExpiredError",
    "Comparison",
    "ConfigurationError",
    "ConnectError",
    "FileSpecError",
    "FtoClient",
    "FtoError",
    "IllegalRequestError",
    "ImageSearchReport",
    "ImageSearchRequest",
    "InsufficientBalanceError",
    "InvalidParameterError",
    "InvalidRequestError",
    "LegalStatus",
    "LocItem",
    "MalformedResponseError",
    "Outcome",
    "PatentInfo",
    "PatentMessages",
    "PathNotFoundError",
    "PermissionDeniedError",
    "PollConfig",
    "Progress",
    "QuotaExceededError",
    "RRFFusionResponse",
    "RRFItem",
    "RateConfig",
    "RateGate",
    "RateLimitedError",
    "RecordedError",
    "Report",
    "RequestTimeout",
    "ResponseDecodeError",
    "RetryConfig",
    "RetryEvent",
    "RiskLevel",
    "ServerError",
    "ServiceError",
    "SimpleLegalStatus",
    "TLSError",
    "TaskDurations",
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

# Show public classes as ``fto_async.X`` in reprs and tracebacks (as httpx does). attrs
# classes resolve their string annotations first, against their defining module.
_public_types = [o for o in map(globals().__getitem__, __all__) if isinstance(o, type)]
for _cls in _public_types:
    if attrs.has(_cls):
        attrs.resolve_types(_cls)
for _cls in _public_types:
    _cls.__module__ = "fto_async"
del _public_types, _cls


def __getattr__(name: str) -> _Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("fto-async")
    raise AttributeError(f"module 'fto_async' has no attribute {name!r}")
