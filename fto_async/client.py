"""``FtoClient``: one method per endpoint, typed requests in, typed reports out."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Mapping, Sequence
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar, Unpack
from urllib.parse import urlsplit

import aiohttp
import attrs

from . import _serde, _validate
from . import batch as _batch
from ._kinds import KINDS, UPLOAD_PATH, report_class, request_kind
from ._observe import Observer
from ._screen import ScreenHub, ScreenStats
from ._statement import STATEMENT_PATH, UsageStatement, check_days
from ._uploads import UploadLedger
from .auth import ApiKey, ClientCredentials, env_credentials, resolve_credentials
from .batch import BatchOptions, Item, Items, Outcome, TaskIds, screen_with_follow_ups
from .cache import AnswerCache
from .config import ClientConfig, PollConfig, RetryConfig, env_settings
from .errors import (
    ConfigurationError,
    FtoError,
    InvalidParameterError,
    InvalidRequestError,
    ResponseDecodeError,
    TaskExpiredError,
)
from .hooks import Hooks
from .models import (
    ImageSearchReport,
    ImageSearchRequest,
    OneVsOneReport,
    OneVsOneRequest,
    Request,
    TaskKind,
    UploadedImage,
    WorkflowReport,
    WorkflowRequest,
)
from .polling import TaskDurations, TaskPoller, poll_priority, wait_for_task
from .ratelimit import RateGateProtocol
from .rediscache import own_cache
from .redisgate import RedisRateGate
from .retry import RetryHook
from .transport import BeforeSend, FileField, HttpSender, Transport, TransportStats

__all__ = ["FtoClient"]

_SUBMIT_PATH = KINDS["image_search"].submit_path
_REPORT_PATH = KINDS["image_search"].result_path
_WORKFLOW_SUBMIT_PATH = KINDS["workflow"].submit_path
_ONE_VS_ONE_SUBMIT_PATH = KINDS["one_vs_one"].submit_path
_ONE_VS_ONE_REPORT_PATH = KINDS["one_vs_one"].result_path

_R = TypeVar("_R", bound=ImageSearchReport)


class FtoClient:
    """An async client for the PatSnap design-patent FTO endpoints.

    Use one client per account, shared by every task of the program: it owns the HTTP
    connection pool, the token and the account's rate gate.

    Example::

        async with FtoClient(client_id="...", client_secret="...", qps=10) as client:
            task_id = await client.submit_image_search(
                ImageSearchRequest(url="https://example.com/lamp.png", country=["US"], lang="en")
            )
            report = await client.wait_image_search(task_id)
            print(report.highest_risk)

    Args:
        client_id: enterprise client id (OAuth client credentials), with ``client_secret``.
        client_secret: the matching secret.
        api_key: an ``sk-`` API key, instead of the two above.
        base_url: see :class:`~fto_async.config.ClientConfig`.
        qps: the account's QPS limit (see :class:`~fto_async.config.RateConfig`; default 5).
        workflow_result_path: UNVERIFIED default ``/api/mcp/workflow-result``; see
            :class:`~fto_async.config.ClientConfig`.
        max_in_flight, max_calls, daily_limit: see :class:`~fto_async.config.RateConfig`.
        redis_url: share the rate gate (``qps``, ``daily_limit``) with every process of the
            account through Redis; see :class:`~fto_async.config.RateConfig`.
        timeout: seconds per HTTP request, see :class:`~fto_async.config.ClientConfig`.
        retry: see :class:`~fto_async.config.RetryConfig`.
        poll: see :class:`~fto_async.config.PollConfig`.
        config: a whole :class:`~fto_async.config.ClientConfig`; the keyword options above
            override its fields.
        retry_hooks: callables receiving a :class:`~fto_async.retry.RetryEvent` per retry.
        gate: a rate gate to share with other clients of the same account.
        session: an aiohttp session to use (not closed by the client).
        transport: the HTTP layer to use instead of aiohttp, e.g.
            :class:`fto_async.testing.MockTransport` (tests with no server).
        durations: learnt task durations to start from (default: new ones, seeded by
            ``poll.initial_estimate`` if given). The client keeps them in
            :attr:`durations`, shared by every batch, poller and ``begin_*`` task.
        key_auth: how an ``sk-`` key travels: ``"both"`` (default), ``"query"`` or
            ``"bearer"``; see :class:`~fto_async.config.ClientConfig`.
        hooks: a :class:`~fto_async.hooks.Hooks`: callables told of every call, retry,
            poll and result (sync or async; one that raises never breaks a call).
        cache: a :class:`~fto_async.cache.ReportCache` for :meth:`screen`, and for
            :meth:`screen_many` when it is given no ``cache=``; a
            :class:`~fto_async.rediscache.RedisReportCache`, or ``"redis"`` for one on
            ``redis_url`` (closed with the client), shares answers and submits with
            every process of the account.
        max_waiting: at most this many distinct questions answered by :meth:`screen` at
            once; one more raises :class:`~fto_async.errors.OverloadedError` at once.

    With no credentials at all, the client reads them from the environment as
    :meth:`from_env` does (``PATSNAP_CLIENT_ID``/``PATSNAP_CLIENT_SECRET`` or
    ``PATSNAP_API_KEY``), and, unless ``config`` is given, ``PATSNAP_BASE_URL``,
    ``PATSNAP_QPS``, ``PATSNAP_REDIS_URL`` and ``PATSNAP_KEY_AUTH`` for the options not
    passed.
    """

    def __init__(
        self,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        qps: float | None = None,
        workflow_result_path: str | None = None,
        max_in_flight: int | None = None,
        max_calls: int | None = None,
        daily_limit: int | None = None,
        timeout: float | None = None,
        retry: RetryConfig | None = None,
        poll: PollConfig | None = None,
        config: ClientConfig | None = None,
        retry_hooks: Sequence[RetryHook] = (),
        gate: RateGateProtocol | None = None,
        session: aiohttp.ClientSession | None = None,
        transport: HttpSender | None = None,
        redis_url: str | None = None,
        durations: TaskDurations | None = None,
        key_auth: str | None = None,
        hooks: Hooks | None = None,
        cache: AnswerCache | Literal["redis"] | None = None,
        max_waiting: int | None = None,
    ) -> None:
        from_env = client_id is None and client_secret is None and api_key is None
        if from_env:
            client_id, client_secret, api_key = env_credentials()
            if config is None:  # the rest of the environment too, as from_env() reads it
                env = env_settings()
                base_url = base_url if base_url is not None else _text(env["base_url"])
                redis_url = redis_url if redis_url is not None else _text(env["redis_url"])
                key_auth = key_auth if key_auth is not None else _text(env["key_auth"])
                env_qps = env["qps"]
                qps = qps if qps is not None or not isinstance(env_qps, float) else env_qps
        self._credentials = resolve_credentials(
            client_id, client_secret, api_key, from_env=from_env
        )
        if max_waiting is not None and (not isinstance(max_waiting, int) or max_waiting < 1):
            raise ConfigurationError(f"max_waiting must be a positive int, got {max_waiting!r}")
        self._deadline: float | None = None  # with_options(timeout=...): each screen call's
        self._view_of: FtoClient | None = None
        self._by_digest: dict[str, asyncio.Future[str]] = {}  # upload_once: digest -> URL
        cfg = config or ClientConfig()
        rate_changes: dict[str, Any] = {
            k: v
            for k, v in {
                "qps": qps,
                "max_in_flight": max_in_flight,
                "max_calls": max_calls,
                "daily_limit": daily_limit,
                "redis_url": redis_url,
            }.items()
            if v is not None
        }
        changes: dict[str, Any] = {
            k: v
            for k, v in {
                "base_url": base_url,
                "workflow_result_path": workflow_result_path,
                "timeout": timeout,
                "retry": retry,
                "poll": poll,
                "key_auth": key_auth,
            }.items()
            if v is not None
        }
        if rate_changes:
            changes["rate"] = attrs.evolve(cfg.rate, **rate_changes)
        self.config: ClientConfig = attrs.evolve(cfg, **changes) if changes else cfg
        if self.config.key_auth != "both" and not isinstance(self._credentials, ApiKey):
            raise ConfigurationError(
                f"key_auth={self.config.key_auth!r} applies to sk- API keys only: client "
                "credentials always send apikey= and a Bearer token (reference §7.1)"
            )
        self._converter = _serde.CONVERTER
        #: P010 URLs this client uploaded: renewed before a submit when about to expire.
        self._uploads = UploadLedger()
        #: The report cache :meth:`screen` and :meth:`screen_many` use (``None``: none).
        self.cache, self._owned_cache = own_cache(cache, self.config.rate)
        self._owned_gate: RedisRateGate | None = None
        if gate is None and self.config.rate.redis_url:
            gate = self._owned_gate = RedisRateGate(
                self.config.rate, account=self._credentials.account_id
            )
        #: How long tasks take, learnt per task kind from every task this client polled
        #: (see :class:`~fto_async.polling.TaskDurations`); save its ``snapshot()`` to
        #: start the next process warm (batches with a journal do that themselves).
        self.durations = durations if durations is not None else TaskDurations()
        self.durations.seed_unknown(self.config.poll.seed_estimate)
        self._observer = Observer(hooks, self.config.base_url)
        self._transport = Transport(
            self._credentials,
            self.config,
            gate=gate,
            retry_hooks=(*retry_hooks, self._observer.retried),
            session=session,
            task_paths=frozenset(k.submit_path for k in KINDS.values()),
            sender=transport,
            observer=self._observer,
        )
        self._screens = ScreenHub(self._run_one, self.durations, max_waiting,
                                  self._transport.stats)  # fmt: skip

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **options: Any
    ) -> FtoClient:
        """Build a client from ``PATSNAP_CLIENT_ID`` / ``PATSNAP_CLIENT_SECRET`` or
        ``PATSNAP_API_KEY``, ``PATSNAP_BASE_URL``, ``PATSNAP_QPS``,
        ``PATSNAP_REDIS_URL``, ``PATSNAP_KEY_AUTH`` (``both``/``query``/``bearer``, see
        :attr:`~fto_async.config.ClientConfig.key_auth`) and ``PATSNAP_MAX_CALLS`` (see
        :attr:`~fto_async.config.RateConfig.max_calls`).

        Keyword ``options`` override the environment.

        Raises:
            ConfigurationError: no credentials in the environment.
        """
        settings: dict[str, Any] = {k: v for k, v in env_settings(environ).items() if v is not None}
        if "api_key" in settings and "client_id" in settings:
            settings.pop("client_id")  # an sk- key wins: it needs no token exchange
            settings.pop("client_secret", None)
        settings.update(options)
        return cls(**settings)

    # -- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (only if the client created it). Idempotent.

        Flights of :meth:`screen` still running are cancelled first."""
        if self._view_of is not None:
            return  # a with_options() view: its client owns the pool
        await self._screens.aclose()
        await self._transport.aclose()
        if self._owned_gate is not None:
            await self._owned_gate.aclose()
        if self._owned_cache is not None:
            await self._owned_cache.aclose()

    @property
    def closed(self) -> bool:
        """True once the client is closed; using it then raises ``RuntimeError``."""
        return self._transport.closed

    @property
    def stats(self) -> TransportStats:
        """Traffic counters: calls, token requests, answers by code, ambiguous submits."""
        return self._transport.stats

    @property
    def gate(self) -> RateGateProtocol:
        """The account's rate gate (its ``rate`` is the pace in force)."""
        return self._transport.gate

    @property
    def transport(self) -> Transport:
        """The transport every call goes through (private API; for the batch layer)."""
        return self._transport

    @property
    def observer(self) -> Observer:
        """Hooks, OpenTelemetry and the call ledger of this client (private API)."""
        return self._observer

    @property
    def retries(self) -> int:
        """Calls sent again so far by this client: retries after a failure, and resends
        after a refused token was refreshed."""
        return self._transport.retry.retries + self._transport.stats.refresh_resends

    @property
    def provenance(self) -> tuple[str, str]:
        """``(platform, account)`` that every stored answer of this client records and is
        looked up by: the base URL, and the account's non-secret identity (the client
        id, or ``sk:`` and a hash of the API key; never the key)."""
        return provenance(self.config.base_url, self._credentials.account_id)

    def __repr__(self) -> str:
        kind = "api_key" if isinstance(self._credentials, ApiKey) else "client_credentials"
        state = "closed" if self.closed else "open"
        return f"<FtoClient {self.config.base_url} auth={kind} qps={self.config.rate.qps} {state}>"

    # -- image search (AI39 current) ------------------------------------------------

    async def submit_image_search(self, request: ImageSearchRequest) -> str:
        """Submit an image-search FTO task (``POST /ai/image-search/submit``).

        Returns:
            The task id.

        Raises:
            InvalidRequestError: ``request`` is not an :class:`ImageSearchRequest`.
            FtoError: the platform refused the call (see :mod:`fto_async.errors`).
        """
        _require(request, ImageSearchRequest, "request")
        return await self._submit(_SUBMIT_PATH, request)

    async def get_image_search_report(self, task_id: str) -> ImageSearchReport:
        """Poll an image-search task once (``POST /ai/image-search/report``)."""
        return await self._report(_REPORT_PATH, task_id, ImageSearchReport)

    async def wait_image_search(
        self, task_id: str, timeout: float | None = None
    ) -> ImageSearchReport:
        """Poll until the task succeeds; see :meth:`wait_workflow` for the rules."""
        return await self._wait(_REPORT_PATH, task_id, ImageSearchReport, timeout)

    # -- full FTO workflow (AI39 enhanced) ------------------------------------------

    async def submit_workflow(self, request: WorkflowRequest) -> str:
        """Submit a full FTO workflow task (``POST /api/mcp/submit-workflow``)."""
        _require(request, WorkflowRequest, "request")
        return await self._submit(_WORKFLOW_SUBMIT_PATH, request)

    async def get_workflow_report(self, task_id: str) -> WorkflowReport:
        """Poll a workflow task once, at ``workflow_result_path`` (UNVERIFIED path)."""
        return await self._report(self.config.workflow_result_path, task_id, WorkflowReport)

    async def wait_workflow(self, task_id: str, timeout: float | None = None) -> WorkflowReport:
        """Poll until the task is done, every ``poll.interval`` seconds (2-5 s recommended).

        Args:
            task_id: the id returned by the submit call.
            timeout: seconds to wait in all (default ``poll.timeout``; ``None`` there
                means forever).

        Returns:
            The report of a task with ``task_status`` 2.

        Raises:
            TaskFailedError: the task ended with ``task_status`` 3.
            TaskTimeoutError: still running when the timeout passed.
        """
        path = self.config.workflow_result_path
        return await self._wait(path, task_id, WorkflowReport, timeout)

    # -- upload (P010) --------------------------------------------------------------

    async def upload_image(
        self, image: str | PathLike[str] | bytes, *, filename: str | None = None
    ) -> UploadedImage:
        """Upload a local JPG/PNG of at most 4,194,304 bytes (reference §6); returns its public
        ``url`` and ``expire``.

        The URL is public for 9 hours: anyone holding it can open the image (reference §6;
        :class:`~fto_async.WorkflowRequest` with ``target_image_base64`` creates none).
        A URL uploaded from a file is uploaded again when a submit would send it with
        less than 10 minutes left.

        Raises:
            InvalidRequestError: not a decodable JPG/PNG, too large, or the file cannot be
                read (a path must name a regular file: see
                :func:`fto_async._validate.read_image_file`).
        """
        if isinstance(image, bytes):
            data, name = image, filename
            kind = await asyncio.to_thread(_validate.image_bytes, "image", data)
        elif isinstance(image, str | PathLike):
            path = Path(image)
            # Off the event loop: the file is checked (a regular file, at most 4 MiB read)
            # and decoded in a worker thread.
            data, kind = await asyncio.to_thread(_validate.read_image_file, "image", path)
            name = filename or path.name
        else:
            got = type(image).__name__
            raise InvalidRequestError("image", f"must be a path or bytes, got {got}")
        field = FileField("image", name or f"image.{kind.ext}", data, kind.mime)
        answer = await self._transport.call(UPLOAD_PATH, files=(field,))
        uploaded = _serde.structure(self._converter, answer, UploadedImage)
        source = None if isinstance(image, bytes) else Path(image)
        self._uploads.remember(uploaded.url, uploaded.expire, source)
        return uploaded

    async def upload_once(self, path: str | PathLike[str], digest: str) -> str:
        """The P010 URL of a local image whose content hash is ``digest``: uploaded on
        the first call, reused by later ones while the URL is valid (concurrent callers
        share one upload). :meth:`fto_async.batch.Item.from_path` items use it."""
        pending = self._by_digest.get(digest)
        if pending is not None and pending.done() and (
            pending.cancelled() or pending.exception() is not None
            or self._uploads.stale(pending.result()) is not None
        ):  # fmt: skip
            pending = None  # failed, or about to expire: upload again
        if pending is None:
            pending = self._by_digest[digest] = asyncio.ensure_future(self._upload_url(path))
        return await asyncio.shield(pending)

    async def _upload_url(self, path: str | PathLike[str]) -> str:
        return (await self.upload_image(path)).url

    async def usage_statement(self, time_start: str, time_end: str) -> UsageStatement:
        """The platform's usage statement from ``time_start`` to ``time_end``
        (``yyyyMMdd``); see :mod:`fto_async._statement` (records lag up to a day)."""
        check_days(time_start, time_end)
        creds = self._credentials
        body = {"apikey": creds.key if isinstance(creds, ApiKey) else creds.client_id,
                "time_start": time_start, "time_end": time_end}  # fmt: skip
        if isinstance(creds, ClientCredentials):
            body["client_secret"] = creds.client_secret  # in the body only; never logged
        return UsageStatement.from_data(await self._transport.call(STATEMENT_PATH, body))

    # -- any kind of task -----------------------------------------------------------

    def report_path(self, kind: TaskKind) -> str:
        """The path a task's report is read from (``kind``: image_search or workflow)."""
        if kind == "workflow":
            return self.config.workflow_result_path
        return KINDS[kind].result_path

    async def submit(self, request: Request, *, before_send: BeforeSend | None = None) -> str:
        """Submit either kind of request; returns the task id.

        Args:
            request: what to submit.
            before_send: awaited each time the rate gate admits an attempt, just before
                it goes out (see :meth:`fto_async.transport.Transport.call`).
        """
        _require(request, Request, "request")
        return await self._submit(KINDS[request_kind(request)].submit_path, request, before_send)

    async def get_report(
        self,
        task_id: str,
        kind: TaskKind = "image_search",
        *,
        before_send: BeforeSend | None = None,
    ) -> ImageSearchReport:
        """Poll a task of any kind once (``before_send`` as for :meth:`submit`;
        ``"one_vs_one"``: see :meth:`get_1v1_report`)."""
        if kind == "one_vs_one":
            return await self.get_1v1_report(task_id, before_send=before_send)
        return await self._report(
            self.report_path(kind), task_id, report_class(kind), before_send
        )

    async def wait_report(
        self, task_id: str, kind: TaskKind = "image_search", timeout: float | None = None
    ) -> ImageSearchReport:
        """Wait for a task of either kind; see :meth:`wait_workflow` for the rules."""
        return await self._wait(self.report_path(kind), task_id, report_class(kind), timeout)

    def poller(self, task_id: str, kind: TaskKind = "image_search") -> TaskPoller:
        """A :class:`~fto_async.polling.TaskPoller` for an existing task."""
        return TaskPoller(self, task_id, kind)

    async def begin_screening(self, request: Request) -> TaskPoller:
        """Submit a request and return a poller for its task (azure-core's ``begin_*``)."""
        task_id = await self.submit(request)
        now = asyncio.get_running_loop().time()
        return TaskPoller(self, task_id, request_kind(request), submitted_at=now)

    # -- one question at a time (see fto_async._screen) ------------------------------

    async def screen(
        self, request: Request, *, key: Any = None, timeout: float | None = None
    ) -> Outcome:
        """Screen one request of any kind; concurrent calls for the same question share
        one task.

        A report younger than the client cache's ``max_age`` answers with no call. The
        task is polled while the client is open even when every caller has gone (its
        report then goes to the cache). Task errors come back in ``Outcome.error``, as
        from :meth:`screen_many`.

        Args:
            request: an ``ImageSearchRequest`` or ``WorkflowRequest``.
            key: the returned outcome's ``key``.
            timeout: seconds for the whole call, retries and polls included (default:
                the ``with_options(timeout=...)`` of this view, else none).

        Raises:
            InvalidRequestError: not a request (no call made).
            OverloadedError: ``max_waiting`` questions already wait (no call made).
            DeadlineExceededError: ``timeout`` passed.
        """
        if self.closed:
            raise RuntimeError("the client is closed")
        deadline = self._deadline if timeout is None else timeout
        return await self._screens.screen(request, key=key, timeout=deadline, cache=self.cache)

    def with_options(self, *, timeout: float | None = None) -> FtoClient:
        """A view of this client whose :meth:`screen` calls have a deadline of ``timeout``
        seconds each; it shares the pool, the gate, the cache, the durations and the
        flights (closing the view closes nothing)."""
        view = copy.copy(self)
        view._deadline = timeout
        view._view_of = self._view_of or self
        return view

    @property
    def screen_stats(self) -> ScreenStats:
        """Counters of :meth:`screen`: waiting callers, questions in flight, refusals."""
        return self._screens.stats

    def _run_one(self, items: list[Item], cache: AnswerCache | None) -> AsyncIterator[Outcome]:
        return _batch.screen_many(self, items, cache=cache, count_remaining=False)

    # -- batches (see fto_async.batch) ----------------------------------------------

    def screen_many(
        self, items: Items, **options: Unpack[BatchOptions]
    ) -> AsyncIterator[Outcome]:
        """Submit and poll many requests; yields an :class:`~fto_async.batch.Outcome` per item
        as each completes. All options are documented on :func:`fto_async.batch.screen_many`;
        ``follow_up=FollowUp(...)`` adds 1-vs-1 follow-ups (:mod:`fto_async.batch._followup`).
        """
        if "cache" not in options and self.cache is not None:
            options["cache"] = self.cache
        if options.get("follow_up") is not None:
            return screen_with_follow_ups(self, items, **options)
        return _batch.screen_many(self, items, **options)

    def submit_many(
        self, items: Items, **options: Unpack[BatchOptions]
    ) -> AsyncIterator[tuple[Any, str | FtoError]]:
        """Submit many requests; yields ``(key, task_id or error)``. See
        :func:`fto_async.batch.submit_many`.
        """
        return _batch.submit_many(self, items, **options)

    def wait_many(
        self,
        task_ids: TaskIds,
        *,
        kind: TaskKind = "image_search",
        **options: Unpack[BatchOptions],
    ) -> AsyncIterator[Outcome]:
        """Wait for many existing tasks; yields outcomes as they complete. See
        :func:`fto_async.batch.wait_many`.
        """
        return _batch.wait_many(self, task_ids, kind=kind, **options)

    def poll_many(
        self, task_ids: TaskIds, *, kind: TaskKind = "image_search", concurrency: int = 32
    ) -> AsyncIterator[tuple[Any, ImageSearchReport | FtoError]]:
        """Poll many existing tasks once each. See :func:`fto_async.batch.poll_many`."""
        return _batch.poll_many(self, task_ids, kind=kind, concurrency=concurrency)

    # -- (de)serialisation for the journal ------------------------------------------

    def encode_request(self, request: Request) -> dict[str, Any]:
        """The request's wire body (what the journal stores)."""
        return _serde.unstructure(self._converter, request)

    def decode_report(self, data: object, kind: TaskKind = "image_search") -> ImageSearchReport:
        """A typed report from its JSON (what the journal stores).

        Raises:
            ResponseDecodeError: ``data`` is not a report.
        """
        return _serde.structure(self._converter, data, report_class(kind))

    # -- 1-vs-1 infringement detection (AI67) ---------------------------------------

    async def submit_1v1(self, request: OneVsOneRequest) -> str:
        """Compare a product image with one design patent
        (``POST /ai/infringement-detection-1v1-creation``).

        Returns:
            The task id, valid for 8 hours.

        Raises:
            InvalidRequestError: ``request`` is not a :class:`~fto_async.OneVsOneRequest`.
            FtoError: the platform refused the call (see :mod:`fto_async.errors`).
        """
        _require(request, OneVsOneRequest, "request")
        return await self._submit(_ONE_VS_ONE_SUBMIT_PATH, request)

    async def get_1v1_report(
        self, task_id: str, *, before_send: BeforeSend | None = None
    ) -> OneVsOneReport:
        """Poll a 1-vs-1 task once (``POST /ai/infringement-detection-1v1-query``).

        Raises:
            TaskExpiredError: the platform does not know the task id (68300004 to a query
                that holds nothing but the id): it expired (8 h) or never existed.
        """
        try:
            return await self._report(
                _ONE_VS_ONE_REPORT_PATH, task_id, OneVsOneReport, before_send
            )
        except InvalidParameterError as exc:
            raise TaskExpiredError(task_id, exc.message) from exc

    async def wait_1v1(self, task_id: str, timeout: float | None = None) -> OneVsOneReport:
        """Poll a 1-vs-1 task until it succeeds; see :meth:`wait_workflow` for the rules.

        Raises:
            TaskFailedError: task_status 3. TaskExpiredError: see :meth:`get_1v1_report`.
            TaskTimeoutError: still running when ``timeout`` passed.
        """
        return await wait_for_task(lambda: self.get_1v1_report(task_id), task_id,
                                   self.config.poll, timeout)

    # -- shared plumbing ------------------------------------------------------------

    async def _submit(
        self,
        path: str,
        request: Request | OneVsOneRequest,
        before_send: BeforeSend | None = None,
    ) -> str:
        url = getattr(request, "url", None)
        source = self._uploads.stale(url) if isinstance(url, str) else None
        if source is not None:  # our P010 URL would expire before use: upload it again
            request = attrs.evolve(request, url=(await self.upload_image(source)).url)
        body = _serde.unstructure(self._converter, request)
        _refuse_placeholder(body)
        answer = await self._transport.call(path, body, before_send=before_send)
        task_id = answer.get("task_id") if isinstance(answer, Mapping) else None
        if not isinstance(task_id, str) or not task_id:
            raise ResponseDecodeError(f"{path}: the answer holds no task_id", raw=answer)
        return task_id

    async def _report(
        self, path: str, task_id: str, cls: type[_R], before_send: BeforeSend | None = None
    ) -> _R:
        if not isinstance(task_id, str) or not task_id.strip():
            raise InvalidRequestError("task_id", "must be a non-empty string")
        # Polls are for tasks already paid for: they go before queued submits (unless
        # the batch's PollConfig.order is "makespan").
        try:
            answer = await self._transport.call(
                path, {"task_id": task_id}, before_send=before_send, priority=poll_priority()
            )
            report = await _structure_report(self._converter, answer, cls)
            answered = getattr(report, "task_id", "")
            if answered and answered != task_id:  # a gateway or proxy mixed answers up
                raise ResponseDecodeError(
                    f"{path}: the answer is for another task ({answered!r}, polled "
                    f"{task_id!r})", raw=answer,
                )  # fmt: skip
        except FtoError as exc:
            self._observer.polled(task_id, path, None, exc)
            raise
        self._observer.polled(task_id, path, report, None)
        return report

    async def _wait(self, path: str, task_id: str, cls: type[_R], timeout: float | None) -> _R:
        try:
            report = await wait_for_task(lambda: self._report(path, task_id, cls), task_id,
                                         self.config.poll, timeout)  # fmt: skip
        except FtoError as exc:
            self._observer.task_ended(None, None, task_id, None, exc, 0)
            raise
        self._observer.task_ended(None, None, task_id, report, None, 0)
        return report


#: Longest list a report may hold (comparisons, patents): a longer one is refused unread.
MAX_REPORT_LIST = 1_000
_REPORT_LISTS = (  # the paths of a report's lists, in every report shape
    ("report", "comparisons"), ("comparisons",), ("patent_messages", "patent_messages"),
    ("rrffusion_response", "patent_messages"),
)  # fmt: skip


async def _structure_report(conv: Any, answer: object, cls: type[_R]) -> _R:
    """Structure a poll's answer: a finished report is checked for list lengths first,
    then structured in a worker thread (a large one takes long: never on the loop)."""
    if not isinstance(answer, Mapping) or len(answer) <= 3:
        return _serde.structure(conv, answer, cls)  # a running task: a few fields
    for path in _REPORT_LISTS:
        node: object = answer
        for name in path:
            node = node.get(name) if isinstance(node, Mapping) else None
        if isinstance(node, list) and len(node) > MAX_REPORT_LIST:
            raise ResponseDecodeError(
                f"the report's {'.'.join(path)} holds {len(node)} entries "
                f"(at most {MAX_REPORT_LIST} are read)", raw=None,
            )  # fmt: skip
    return await asyncio.to_thread(_serde.structure, conv, answer, cls)


def provenance(base_url: str, account_id: str) -> tuple[str, str]:
    """The ``(platform, account)`` of :attr:`FtoClient.provenance` (base URL without a
    trailing slash, lower-case scheme and host)."""
    parts = urlsplit(base_url.strip())
    host = parts.hostname or ""  # never the user info of a URL
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        port = ""
    return f"{parts.scheme.lower()}://{host}{port}{parts.path.rstrip('/')}", account_id


def _refuse_placeholder(body: Mapping[str, Any]) -> None:
    """The last guard: a request naming a stand-in image (a URL on an ``.invalid`` host,
    RFC 2606, such as the CLI's ``upload.invalid``) never leaves. Its answer would be
    another image's, filed under the real one."""
    url = body.get("url")
    if isinstance(url, str):
        host = (urlsplit(url).hostname or "").rstrip(".")
        if host == "invalid" or host.endswith(".invalid"):
            raise InvalidRequestError("url", f"{url!r} is a placeholder, not an image")


def _require(value: object, cls: Any, field: str) -> None:
    if not isinstance(value, cls):
        name = " or ".join(c.__name__ for c in getattr(cls, "__args__", (cls,)))
        raise InvalidRequestError(field, f"must be a {name}, got {type(value).__name__}")


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
