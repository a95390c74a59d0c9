"""``FtoClient``: one method per endpoint, typed requests in, typed reports out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from os import PathLike
from types import TracebackType
from typing import Any, Literal, Self, Unpack
from urllib.parse import urlsplit

import aiohttp
import attrs

from . import _serde
from . import batch as _batch
from ._endpoints import MAX_REPORT_LIST as MAX_REPORT_LIST  # re-exported
from ._endpoints import _Endpoints, _require, _text
from ._kinds import KINDS, report_class, request_kind
from ._observe import Observer
from ._reserve import PollReserve
from ._screen import ScreenHub, ScreenStats
from ._screen_image import ImageKind, image_question
from ._uploads import UploadLedger
from ._views import UNSET, Unset, with_options
from .auth import ApiKey, env_credentials, resolve_credentials
from .batch import BatchOptions, Item, Items, Outcome, TaskIds, screen_with_follow_ups
from .cache import AnswerCache
from .config import ClientConfig, PollConfig, RetryConfig, env_settings
from .errors import ConfigurationError, FtoError
from .hooks import Hooks
from .models import ImageSearchReport, Request, TaskKind
from .polling import TaskDurations, TaskPoller
from .ratelimit import RateGateProtocol
from .rediscache import own_cache
from .redisgate import RedisRateGate
from .retry import RetryHook, retries_limited
from .transport import BeforeSend, HttpSender, Transport, TransportStats

__all__ = ["FtoClient"]


class FtoClient(_Endpoints):
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
        self._max_retries: int | None = None  # with_options(max_retries=...): every call's
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
        #: Under ``max_calls``/``daily_limit``: the calls kept to read paid tasks (_reserve).
        self.poll_reserve = PollReserve(self._transport.gate, self.durations)

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
        with retries_limited(self._max_retries):  # the flight's task inherits the limit
            return await self._screens.screen(request, key=key, timeout=deadline,
                                              cache=self.cache)  # fmt: skip

    async def screen_image(
        self,
        image: bytes | str | PathLike[str],
        *,
        kind: ImageKind = "image_search",
        key: Any = None,
        timeout: float | None = None,
        **filters: Any,
    ) -> Outcome:
        """Screen a local image (its bytes, or a path); see :meth:`screen` for sharing,
        the cache, deadlines and ``max_waiting``.

        The image is checked first (a PNG or JPEG of at most 4 MiB that decodes; no call
        otherwise). For ``image_search`` it is uploaded (P010) only if a task must be
        submitted, once per content hash per client, and its URL is reused while valid
        (9 h, renewed 10 minutes before); concurrent calls with the same image upload
        once. For ``workflow`` it is sent as ``target_image_base64``: no upload and no
        public URL. See :mod:`fto_async._screen_image`.

        Args:
            image: PNG/JPEG bytes or the path of a local file (read once).
            kind: ``"image_search"`` (default) or ``"workflow"``.
            key, timeout: as for :meth:`screen`.
            filters: the request's other fields (``country``, ``lang``, ``loc_items``, ...).

        Raises:
            InvalidRequestError: a bad image, kind or filter (no call made).
            OverloadedError, DeadlineExceededError: as for :meth:`screen`.
        """
        if self.closed:
            raise RuntimeError("the client is closed")
        request, fingerprint, local = await image_question(image, kind, filters)
        deadline = self._deadline if timeout is None else timeout
        with retries_limited(self._max_retries):
            return await self._screens.screen(request, key=key, timeout=deadline,
                                              cache=self.cache, fingerprint=fingerprint,
                                              local=local)  # fmt: skip

    def with_options(
        self, *, timeout: float | Unset | None = UNSET, max_retries: int | Unset | None = UNSET
    ) -> FtoClient:
        """A view of this client with other per-call options; it shares the pool, the
        gate, the cache, the durations and the flights (closing the view closes nothing).
        An option not given keeps this client's (or view's) value.

        Args:
            timeout: seconds for each :meth:`screen` call in all, retries and polls
                included (``None``: no deadline).
            max_retries: retries per call, for every call of the view (``0``: a
                retryable error surfaces at once; ``None``: ``RetryConfig.max_attempts``).
                A flight of :meth:`screen` runs with the options of the caller who
                started it; callers who join it share its calls.

        Raises:
            ConfigurationError: a negative or non-int ``max_retries``.
        """
        return with_options(self, timeout=timeout, max_retries=max_retries)

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
