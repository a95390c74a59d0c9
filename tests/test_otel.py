"""OpenTelemetry: batch, task and HTTP spans, metrics, no secret anywhere, no-op without it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from fto_async import FtoClient, ImageSearchRequest, PollConfig, RetryConfig
from fto_async.emulator import Emulator, EmulatorConfig
from fto_async.testing import MockResponse, MockTransport
from tests._shared import API_KEY, CLIENT_SECRET, collect, credentials

SCALE = 0.005
_EXPORTER = InMemorySpanExporter()
_READER = InMemoryMetricReader()
_INSTALLED: list[bool] = []


Points = dict[tuple[str, frozenset[tuple[str, Any]]], float]


class Metrics:
    """The metrics recorded since it was made (the SDK's readers are cumulative)."""

    def __init__(self, reader: InMemoryMetricReader) -> None:
        self.reader = reader
        self.base = self._read()

    def _read(self) -> Points:
        found: Points = Counter()
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for p in metric.data.data_points:
                        value = getattr(p, "value", None)
                        key = (metric.name, frozenset(p.attributes.items()))
                        found[key] += p.count if value is None else value
        return found

    def points(self) -> dict[str, list[tuple[dict[str, Any], float]]]:
        now = self._read()
        found: dict[str, list[tuple[dict[str, Any], float]]] = {}
        for (name, labels), value in now.items():
            delta = value - self.base.get((name, labels), 0)
            found.setdefault(name, []).append((dict(labels), delta))
        return found


@pytest.fixture
def otel() -> Iterator[tuple[InMemorySpanExporter, Metrics]]:
    """The global providers (set once per process: OpenTelemetry allows no override)."""
    if not _INSTALLED:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[_READER]))
        _INSTALLED.append(True)
    _EXPORTER.clear()
    yield _EXPORTER, Metrics(_READER)
    _EXPORTER.clear()


def _sum(points: list[tuple[dict[str, Any], float]], **labels: Any) -> float:
    return sum(value for found, value in points
               if all(found.get(k) == v for k, v in labels.items()))  # fmt: skip


def _image(i: int) -> ImageSearchRequest:
    # A query string standing for a signed URL's secret: it must appear nowhere.
    return ImageSearchRequest(url=f"https://img.example/{i}.png?sig=SIGSECRET{i}",
                              country=["US"], lang="en")  # fmt: skip


def _client(emu: Emulator, scheme: str, **options: Any) -> FtoClient:
    return FtoClient(
        **credentials(scheme), base_url=emu.base_url, qps=1000.0, timeout=10.0,
        retry=RetryConfig.for_testing(), poll=PollConfig(initial_estimate=20.0).scaled(SCALE),
        **options,
    )  # fmt: skip


def _texts(spans: tuple[ReadableSpan, ...], reader_points: dict[str, list[Any]]) -> list[str]:
    """Every span name, attribute and metric label, as text."""
    texts = []
    for span in spans:
        texts.append(span.name)
        texts.extend(f"{k}={v}" for k, v in (span.attributes or {}).items())
        texts.extend(f"{e.name} {dict(e.attributes or {})}" for e in span.events)
    for name, points in reader_points.items():
        texts.append(name)
        texts.extend(f"{k}={v}" for labels, _value in points for k, v in labels.items())
    return texts


@pytest.mark.parametrize("scheme", ["oauth", "sk"])
async def test_a_batch_of_30_is_traced_with_no_secret(
    otel: tuple[InMemorySpanExporter, Metrics], scheme: str
) -> None:
    """A batch span, one task span per task with its id, an HTTP span per call counted."""
    exporter, reader = otel
    config = EmulatorConfig(time_scale=SCALE, qps=None, busy_rate=0.1, fail_rate=0.1, seed=3)
    async with Emulator(config) as emu, _client(emu, scheme) as client:
        outcomes, error = await collect(client.screen_many([_image(i) for i in range(30)]))
        token = getattr(client.transport._auth, "_token", None)
    assert error is None
    assert len(outcomes) == 30
    spans = exporter.get_finished_spans()
    batches = [s for s in spans if s.name == "fto_async.batch"]
    tasks = [s for s in spans if s.name == "fto_async.task"]
    https = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert len(batches) == 1
    attrs = batches[0].attributes or {}
    assert attrs["fto_async.batch.items"] == 30
    assert attrs["fto_async.batch.requests"] == 30
    assert attrs["fto_async.batch.done"] + attrs["fto_async.batch.failed"] == 30
    assert attrs["fto_async.batch.failed"] == sum(not o.ok for o in outcomes)
    # One task span per task the emulator created, carrying its id, under the batch span.
    created = {record.task_id for record in emu.stats.submits}
    assert sorted(s.attributes["patsnap.task_id"] for s in tasks) == sorted(created)  # type: ignore[index]
    assert all(s.parent and s.parent.span_id == batches[0].context.span_id for s in tasks)
    assert all((s.attributes or {})["patsnap.task_kind"] == "image_search" for s in tasks)
    polls = Counter({s.attributes["patsnap.task_id"]: s.attributes["patsnap.polls"]  # type: ignore[index]
                     for s in tasks})  # fmt: skip
    assert polls == emu.stats.polls_by_task
    # An HTTP span per call the emulator counted, each a child of its task span.
    by_path = Counter((s.attributes or {})["url.path"] for s in https)
    counted = Counter[str]()
    for (path, _code), n in emu.stats.calls.items():
        counted[path] += n
    assert by_path == counted
    task_ids = {s.context.span_id for s in tasks}
    assert all(s.parent is not None and s.parent.span_id in task_ids for s in https)
    busy = [s for s in https if (s.attributes or {}).get("patsnap.error_code") == 67200100]
    assert busy, "the seed gives busy answers"
    resent = [s for s in https if (s.attributes or {}).get("http.request.resend_count")]
    assert len(resent) == len(busy)  # each busy answer is sent again
    for span in https:
        a = span.attributes or {}
        assert span.name == f"POST {a['url.path']}"
        assert a["http.request.method"] == "POST"
        assert a["server.address"] == "127.0.0.1"
        assert a["http.response.status_code"] == 200
    # Metrics: calls by path and code, as the emulator counted them.
    points = reader.points()
    for (path, code), n in emu.stats.calls.items():
        assert _sum(points["fto_async.calls"], **{"url.path": path,
                                                   "patsnap.error_code": code}) == n
    assert _sum(points["fto_async.retries"], **{"patsnap.error_code": 67200100}) == len(busy)
    assert _sum(points["fto_async.tasks.in_flight"]) == 0
    assert _sum(points["fto_async.gate.waiting"]) == 0
    gated = [s for s in https if (s.attributes or {})["url.path"] != "/oauth/token"]
    assert _sum(points["fto_async.gate.wait"]) == len(gated)  # not tokens
    # Nothing secret in any name, attribute or label.
    secrets = [CLIENT_SECRET, API_KEY, "SIGSECRET", "sig=", "apikey", "Bearer", "?"]
    if token:
        secrets.append(str(token))
    for text in _texts(spans, points):
        assert not any(secret in text for secret in secrets), text


async def test_cache_lookups_are_counted(
    otel: tuple[InMemorySpanExporter, Metrics], tmp_path: Any
) -> None:
    """The second batch over the same requests is answered from the cache: hits counted."""
    from fto_async.cache import ReportCache

    _exporter, reader = otel
    async with Emulator(EmulatorConfig(time_scale=SCALE, qps=None)) as emu, \
            _client(emu, "sk") as client, ReportCache(tmp_path / "c.db") as cache:
        for _ in range(2):
            _outcomes, error = await collect(
                client.screen_many([_image(i) for i in range(3)], cache=cache)
            )
            assert error is None
    points = reader.points()["fto_async.cache.lookups"]
    assert _sum(points, **{"fto_async.cache.result": "miss"}) == 3
    assert _sum(points, **{"fto_async.cache.result": "hit"}) == 3


async def test_an_unanswered_attempt_has_a_span_without_status(
    otel: tuple[InMemorySpanExporter, Metrics],
) -> None:
    """A dropped connection: a span with error.type, no status code, then a resend."""
    exporter, _reader = otel
    answers = iter([ConnectionResetError, None])

    def handler(_request: Any) -> MockResponse:
        if next(answers) is not None:
            import aiohttp

            raise aiohttp.ServerDisconnectedError()
        return MockResponse.ok({"task_id": "t-1"})

    async with FtoClient(api_key=API_KEY, transport=MockTransport(handler),
                         retry=RetryConfig.for_testing()) as client:  # fmt: skip
        assert await client.submit(_image(1)) == "t-1"
    first, second = sorted(exporter.get_finished_spans(), key=lambda s: s.start_time or 0)
    assert "http.response.status_code" not in (first.attributes or {})
    assert (first.attributes or {})["error.type"] == "ConnectError"
    assert not first.status.is_ok
    assert (second.attributes or {})["http.request.resend_count"] == 1
    assert (second.attributes or {})["patsnap.error_code"] == 0


async def test_a_stopped_batch_ends_every_task_span(
    otel: tuple[InMemorySpanExporter, Metrics],
) -> None:
    """A graceful stop with tasks still running: their spans end ("not ended"), and the
    tasks-in-flight gauge comes back to zero."""
    import asyncio

    exporter, reader = otel
    stop = asyncio.Event()
    config = EmulatorConfig(time_scale=SCALE, qps=None, task_duration=2000.0)  # 10 s
    async with Emulator(config) as emu, _client(emu, "sk") as client:

        async def stop_once_submitted() -> None:
            while len(emu.stats.submits) < 5:
                await asyncio.sleep(0.01)
            stop.set()

        stopper = asyncio.create_task(stop_once_submitted())
        outcomes, _error = await collect(
            client.screen_many([_image(i) for i in range(5)], stop=stop)
        )
        await stopper
    assert outcomes == []
    tasks = [s for s in exporter.get_finished_spans() if s.name == "fto_async.task"]
    assert len(tasks) == len(emu.stats.submits) == 5
    assert {(s.attributes or {})["patsnap.outcome"] for s in tasks} == {"not ended"}
    assert _sum(reader.points()["fto_async.tasks.in_flight"]) == 0


async def test_follow_ups_are_child_tasks(otel: tuple[InMemorySpanExporter, Metrics]) -> None:
    """Each 1-vs-1 follow-up has a task span whose parent is its item's task span."""
    from fto_async import FollowUp

    exporter, _metrics = otel
    async with Emulator(EmulatorConfig(time_scale=SCALE, qps=None, seed=3)) as emu, \
            _client(emu, "sk") as client:
        requests = [ImageSearchRequest(f"https://img.example/p{i}.png", ["US", "EU"], "en")
                    for i in range(16)]  # fmt: skip
        outcomes = [o async for o in client.screen_many(requests, follow_up=FollowUp(top=2))]
    follow_ups = {f.task_id: o.task_id for o in outcomes for f in o.follow_ups}
    assert follow_ups, "the seed gives high-risk matches"
    tasks = {(s.attributes or {})["patsnap.task_id"]: s for s in exporter.get_finished_spans()
             if s.name == "fto_async.task"}  # fmt: skip
    for child, parent in follow_ups.items():
        span = tasks[child]
        assert (span.attributes or {})["patsnap.task_kind"] == "one_vs_one"
        assert span.parent is not None
        assert span.parent.span_id == tasks[parent].context.span_id
        assert span.context.trace_id == tasks[parent].context.trace_id


def test_without_opentelemetry_nothing_is_imported() -> None:
    """With opentelemetry hidden, the SDK imports, calls and batches; all is a no-op."""
    script = textwrap.dedent("""
        import asyncio, sys
        sys.modules["opentelemetry"] = None  # import opentelemetry -> ImportError
        import fto_async
        from fto_async import _otel
        from fto_async.testing import MockResponse, MockTransport
        assert not _otel.ENABLED

        def handler(request):
            if request.path.endswith("submit"):
                return MockResponse.ok({"task_id": "t-1"})
            return MockResponse.ok({"task_id": "t-1", "task_status": 2})

        async def main():
            async with fto_async.FtoClient(api_key="sk-x", transport=MockTransport(handler),
                                           poll=fto_async.PollConfig(interval=0.01)) as c:
                request = fto_async.ImageSearchRequest(url="https://i.example/a.png",
                                                       country=["US"], lang="en")
                outcomes = [o async for o in c.screen_many([request])]
                assert outcomes[0].ok, outcomes
        asyncio.run(main())
        loaded = [m for m in sys.modules if m.startswith("opentelemetry") and sys.modules[m]]
        assert not loaded, loaded
        print("ok")
    """)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,  # noqa: S603
                          env=env, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
