"""OpenTelemetry traces and metrics, through the API only (the ``otel`` extra).

Without ``opentelemetry-api`` installed every function here is a no-op and nothing is
imported. With it, the SDK never configures a provider: it asks the global ones (a
library's manners), so nothing is recorded until the application installs an SDK.

Spans (all from the tracer ``fto_async``):

- ``fto_async.batch``: one per batch; ``fto_async.batch.items``, ``.requests`` (distinct
  requests submitted), ``.from_cache``, ``.done``, ``.failed``, ``.not_attempted``.
- ``fto_async.task``: one per task, from its submit to its result, child of the batch
  span; ``patsnap.task_id``, ``patsnap.task_kind``, ``patsnap.polls``,
  ``patsnap.outcome`` (``done`` or the error's class name). Follow-ups are its children.
- ``POST {url.path}`` (CLIENT): one per HTTP attempt, HTTP client semantic conventions:
  ``http.request.method``, ``url.path`` (never the query), ``server.address``,
  ``server.port``, ``http.response.status_code``, ``http.request.resend_count`` (from
  the second attempt of a call), ``error.type``, plus ``patsnap.error_code``.

Metrics (meter ``fto_async``): ``fto_async.calls`` (by ``url.path`` and
``patsnap.error_code``: 0 success, -1 no answer), ``fto_async.gate.wait`` (seconds, a
histogram), ``fto_async.gate.waiting`` (callers waiting), ``fto_async.tasks.in_flight``,
``fto_async.retries`` (by ``patsnap.error_code``) and ``fto_async.cache.lookups`` (by
``fto_async.cache.result``: ``hit`` or ``miss``).

Nothing secret is ever an attribute: paths are the fixed endpoint paths, and no URL,
query string, header, body, key, token or image is recorded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

try:
    from opentelemetry import metrics as _metrics
    from opentelemetry import trace as _trace
except ImportError:  # the otel extra is not installed: everything below is a no-op
    _trace = None  # type: ignore[assignment]
    _metrics = None  # type: ignore[assignment]

__all__ = [
    "ENABLED",
    "NO_SPAN",
    "cache_lookup",
    "count_call",
    "count_retry",
    "end_span",
    "gate_waited",
    "http_span",
    "start_span",
    "tasks_in_flight",
    "use_span",
    "waiting",
]

#: Whether ``opentelemetry-api`` is importable.
ENABLED = _trace is not None


class _NoSpan:
    """What a span is without OpenTelemetry: every method does nothing."""

    __slots__ = ()

    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def set_status(self, *args: Any, **kwargs: Any) -> None:
        pass

    def end(self, *args: Any, **kwargs: Any) -> None:
        pass

    def is_recording(self) -> bool:
        return False


NO_SPAN: Any = _NoSpan()

if ENABLED:
    from importlib.metadata import PackageNotFoundError, version

    try:
        _VERSION: str | None = version("fto-async")
    except PackageNotFoundError:  # running from a source tree
        _VERSION = None
    # Proxies: they follow the global providers, even ones set after this import.
    _TRACER = _trace.get_tracer("fto_async", _VERSION)
    _METER = _metrics.get_meter("fto_async", _VERSION or "")
    _CALLS = _METER.create_counter(
        "fto_async.calls", unit="{call}", description="HTTP calls by path and platform code"
    )
    _GATE_WAIT = _METER.create_histogram(
        "fto_async.gate.wait", unit="s", description="Time a call waited in the rate gate"
    )
    _WAITING = _METER.create_up_down_counter(
        "fto_async.gate.waiting", unit="{call}", description="Calls waiting in the rate gate"
    )
    _IN_FLIGHT = _METER.create_up_down_counter(
        "fto_async.tasks.in_flight", unit="{task}", description="Tasks submitted, not ended"
    )
    _RETRIES = _METER.create_counter(
        "fto_async.retries", unit="{retry}", description="Retries by platform code"
    )
    _CACHE = _METER.create_counter(
        "fto_async.cache.lookups", unit="{lookup}", description="Report cache hits and misses"
    )
    _CLIENT = _trace.SpanKind.CLIENT
    _ERROR = _trace.StatusCode.ERROR


def start_span(name: str, attributes: dict[str, Any] | None = None) -> Any:
    """A started INTERNAL span, child of the current one (end it with :func:`end_span`)."""
    if not ENABLED:
        return NO_SPAN
    return _TRACER.start_span(name, attributes=attributes)


def end_span(span: Any, error: BaseException | None = None, **attributes: Any) -> None:
    """Set ``attributes`` (``None`` values skipped) and end ``span``; an error sets its
    status (the class name only: an error's text may quote a request)."""
    if not ENABLED or not span.is_recording():
        span.end()
        return
    for key, value in attributes.items():
        if value is not None:
            span.set_attribute(key, value)
    if error is not None:
        span.set_attribute("error.type", type(error).__name__)
        span.set_status(_ERROR, type(error).__name__)
    span.end()


@contextlib.contextmanager
def use_span(span: Any) -> Iterator[None]:
    """Make ``span`` the current one inside the block (not ended on exit; ``None``: no-op)."""
    if not ENABLED or span is None or span is NO_SPAN:
        yield
        return
    with _trace.use_span(span, end_on_exit=False, record_exception=False,
                         set_status_on_exception=False):  # fmt: skip
        yield


def http_span(path: str, server: str, port: int | None, resend: int) -> Any:
    """A started CLIENT span for one HTTP attempt to ``path`` (end it with
    :func:`end_span`, giving ``http.response.status_code`` and ``patsnap.error_code``)."""
    if not ENABLED:
        return NO_SPAN
    attributes: dict[str, Any] = {
        "http.request.method": "POST", "url.path": path, "server.address": server,
    }  # fmt: skip
    if port is not None:
        attributes["server.port"] = port
    if resend:
        attributes["http.request.resend_count"] = resend
    return _TRACER.start_span(f"POST {path}", kind=_CLIENT, attributes=attributes)


def count_call(path: str, code: int) -> None:
    """One call to ``path`` ended with platform code ``code`` (0 ok, -1 no answer)."""
    if ENABLED:
        _CALLS.add(1, {"url.path": path, "patsnap.error_code": code})


def gate_waited(path: str, seconds: float) -> None:
    """A call to ``path`` waited ``seconds`` in the rate gate."""
    if ENABLED:
        _GATE_WAIT.record(seconds, {"url.path": path})


def waiting(delta: int) -> None:
    """Callers waiting in the rate gate changed by ``delta``."""
    if ENABLED:
        _WAITING.add(delta)


def tasks_in_flight(delta: int) -> None:
    """Tasks submitted and not yet ended changed by ``delta``."""
    if ENABLED:
        _IN_FLIGHT.add(delta)


def count_retry(code: int | None) -> None:
    """A retry after a failure with platform code ``code`` (-1: none)."""
    if ENABLED:
        _RETRIES.add(1, {"patsnap.error_code": -1 if code is None else code})


def cache_lookup(hit: bool) -> None:
    """One report-cache lookup."""
    if ENABLED:
        _CACHE.add(1, {"fto_async.cache.result": "hit" if hit else "miss"})
