"""Client options as plain frozen values, and :func:`ClientConfig.from_env`.

Every duration is a float in seconds. Each option is documented once, here; the
entry points (``FtoClient``, the CLI) point to this module.
"""

from __future__ import annotations

import math
import os
import re
import ssl as _ssl
from collections.abc import Mapping
from typing import Any

import attrs

from .errors import ConfigurationError

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_QPS",
    "DEFAULT_SUBMIT_LATENCY",
    "DEFAULT_TASK_GUESS",
    "DEFAULT_TIMEOUT",
    "DEFAULT_WORKFLOW_RESULT_PATH",
    "ClientConfig",
    "PollConfig",
    "RateConfig",
    "RetryConfig",
    "env_settings",
    "redact_url_credentials",
]

#: The platform's host.
DEFAULT_BASE_URL = "https://connect.patsnap.com"
#: Calls per second when the user states none. The platform publishes no number; 5 is
#: a conservative guess that most paid packages allow. Set ``qps`` to your account's limit.
DEFAULT_QPS = 5.0
#: The typical duration of a submit call (the seed documents: 5 s normal, 10 s max).
DEFAULT_SUBMIT_LATENCY = 5.0
#: Per-request timeout. Must exceed the documented 10 s maximum submit time.
DEFAULT_TIMEOUT = 30.0
#: UNVERIFIED. The platform has not published where the result of a ``submit-workflow``
#: task is read; this guess follows the ``/api/mcp/`` prefix. Override it per client.
DEFAULT_WORKFLOW_RESULT_PATH = "/api/mcp/workflow-result"
#: The largest answer body read: 32 MiB (a report is about 30 KB).
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024


def _number(attribute: attrs.Attribute[Any], value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(f"{attribute.name} must be a finite number, got {value!r}")
    return float(value)


def _positive(_inst: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not _number(attribute, value) > 0:
        raise ConfigurationError(f"{attribute.name} must be > 0, got {value!r}")


def _non_negative(_inst: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not _number(attribute, value) >= 0:
        raise ConfigurationError(f"{attribute.name} must be >= 0, got {value!r}")


def _int_at_least(low: int) -> Any:
    def check(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigurationError(
                f"{attribute.name} must be an integer >= {low}, got {value!r}"
            )

    return check


def redact_url_credentials(url: str) -> str:
    """``url`` with the password of its user-info (and any ``password=`` parameter) as ``***``.

    ``redis://:s3cret@host:6379/0`` becomes ``redis://:***@host:6379/0``.
    """
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}:***@{host}" if sep else f"***@{host}"
    query = re.sub(r"(?i)(password=)[^&]*", r"\1***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _redis_url(_inst: object, attribute: attrs.Attribute[str | None], v: str | None) -> None:
    if v is not None and (
        not isinstance(v, str) or not v.startswith(("redis://", "rediss://", "unix://"))
    ):
        shown = redact_url_credentials(v) if isinstance(v, str) else type(v).__name__
        raise ConfigurationError(
            f"{attribute.name} must be a redis://, rediss:// or unix:// URL, got {shown!r}"
        )
    if isinstance(v, str) and v.startswith(("redis://", "rediss://")):
        from urllib.parse import urlsplit

        try:
            urlsplit(v).port  # noqa: B018 - parsed for its ValueError
        except ValueError as exc:  # a port that is not a number, or out of range
            raise ConfigurationError(f"{attribute.name} is not a valid Redis URL: {exc} "
                                     f"(in {redact_url_credentials(v)!r})") from None


def _base_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a platform URL without printing it (``None``: it can).

    User info (``https://user:password@host``) is refused: credentials go in
    ``api_key`` or ``client_id``/``client_secret``, and a password in the URL would end
    up in logs and file names. The message never repeats the URL.
    """
    from urllib.parse import urlsplit

    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return "is not a valid URL"
    if "@" in netloc:
        return ("must not contain user info (user:password@): give credentials through "
                "PATSNAP_API_KEY or PATSNAP_CLIENT_ID/PATSNAP_CLIENT_SECRET")
    return None


def _optional_positive_int(
    _inst: object, attribute: attrs.Attribute[int | None], v: int | None
) -> None:
    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
        raise ConfigurationError(f"{attribute.name} must be a positive integer or None, got {v!r}")


@attrs.frozen(kw_only=True)
class RetryConfig:
    """How failed calls are retried (full-jitter exponential backoff).

    Usage::

        RetryConfig()                          # defaults below
        RetryConfig(max_attempts=3)            # give up sooner
        RetryConfig(base=0, cap=0)             # no waiting (tests)

    The wait before retry ``n`` (1-based) is ``uniform(0, min(cap, base * 2**(n-1)))``;
    a ``Retry-After`` answer waits that long plus ``uniform(0, base)`` instead.

    Attributes:
        max_attempts: attempts per call, the first included (1 = never retry).
        base: seconds; the first backoff's upper bound.
        cap: seconds; no single wait is longer.
        max_time: seconds; the overall time budget of one call, retries included.
        budget: the client-wide retry quota in tokens (botocore standard mode). When
            it is empty, errors surface instead of being retried.
        retry_cost: tokens one retry takes.
        timeout_cost: tokens one retry after a timeout takes.
        success_refund: tokens a successful call gives back (up to ``budget``).
    """

    max_attempts: int = attrs.field(default=8, validator=_int_at_least(1))
    base: float = attrs.field(default=0.5, validator=_non_negative)
    cap: float = attrs.field(default=20.0, validator=_non_negative)
    max_time: float = attrs.field(default=300.0, validator=_positive)
    budget: int = attrs.field(default=500, validator=_int_at_least(0))
    retry_cost: int = attrs.field(default=5, validator=_int_at_least(0))
    timeout_cost: int = attrs.field(default=10, validator=_int_at_least(0))
    success_refund: int = attrs.field(default=1, validator=_int_at_least(0))

    @classmethod
    def for_testing(cls, max_attempts: int = 5) -> RetryConfig:
        """A policy that retries without waiting (like stamina's testing mode)."""
        return cls(max_attempts=max_attempts, base=0.0, cap=0.0)


@attrs.frozen(kw_only=True)
class RateConfig:
    """The account's rate gate: pacing, the in-flight bound and call budgets.

    Usage::

        RateConfig(qps=10)                               # the account's QPS limit
        RateConfig(qps=10, max_calls=5000)               # and stop after 5000 calls
        RateConfig(qps=10, endpoint_qps={"/ai/image-search/report": 4})
        RateConfig(qps=10, redis_url="redis://localhost:6379/0")  # shared by many processes

    Attributes:
        qps: the platform's limit for this account, in calls per second. The gate
            never lets more than ``qps`` calls into any sliding 1-second window.
        headroom: fraction of ``qps`` the gate paces at (0.96 leaves a margin for network
            jitter between our clock and the gateway's; see :mod:`fto_async.ratelimit`).
        max_in_flight: calls allowed to be waiting for an answer at once. ``None`` follows
            Little's law: ``ceil(qps * submit_latency * 1.5)``, at least 8.
        submit_latency: seconds a submit takes on the platform (for the default above).
        adaptive: lower the rate when the platform answers 67200002, then climb back.
        min_rate_fraction: the adaptive rate never drops below ``qps`` times this.
        recovery: seconds the adaptive rate takes to climb back to the rate it was
            throttled at; above that it probes slowly (5% of ``qps`` per second).
        max_calls: refuse the call that would exceed this many calls (None: no budget).
        daily_limit: refuse the call that would exceed this many calls in one UTC day.
        endpoint_qps: extra per-path limits (calls per second) layered on the account gate
            (per process, also with ``redis_url``).
        redis_url: share this gate with every process and host of the account through
            Redis (``redis://[:password@]host:6379/0``; needs ``pip install
            'fto-async[redis]'``): ``qps`` and ``daily_limit`` then hold for all of them
            together, while ``max_in_flight`` and ``max_calls`` stay per client. ``None``
            (the default): a local gate. Never shown in reprs, logs or errors with its
            password. See :mod:`fto_async.redisgate`.
        redis_prefix: prepended to the gate's Redis keys (several applications on one
            Redis); the keys also carry the account's non-secret identity.
        redis_fallback: when Redis is lost mid-run, pace locally at
            ``qps / expected_processes`` (logged) instead of waiting for it (the default:
            fail closed, no call goes out uncounted).
        expected_processes: how many processes share the account, for the fallback above.
    """

    qps: float = attrs.field(default=DEFAULT_QPS, validator=_positive)
    headroom: float = attrs.field(default=0.96, validator=_positive)
    max_in_flight: int | None = attrs.field(default=None, validator=_optional_positive_int)
    submit_latency: float = attrs.field(default=DEFAULT_SUBMIT_LATENCY, validator=_positive)
    adaptive: bool = True
    min_rate_fraction: float = attrs.field(default=0.05, validator=_positive)
    recovery: float = attrs.field(default=5.0, validator=_positive)
    max_calls: int | None = attrs.field(default=None, validator=_optional_positive_int)
    daily_limit: int | None = attrs.field(default=None, validator=_optional_positive_int)
    endpoint_qps: Mapping[str, float] = attrs.field(factory=dict)
    redis_url: str | None = attrs.field(
        default=None,
        validator=_redis_url,
        repr=lambda v: repr(None if v is None else redact_url_credentials(v)),
    )
    redis_prefix: str = ""
    redis_fallback: bool = False
    expected_processes: int = attrs.field(default=1, validator=_int_at_least(1))

    @property
    def in_flight_limit(self) -> int:
        """The in-flight bound in force (``max_in_flight`` or its Little's-law default)."""
        if self.max_in_flight is not None:
            return self.max_in_flight
        return max(8, math.ceil(self.qps * self.submit_latency * 1.5))


def _one_of(*choices: str) -> Any:
    def check(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value not in choices:
            raise ConfigurationError(f"{attribute.name} must be one of {choices}, got {value!r}")

    return check


def _optional_non_negative(
    _inst: object, attribute: attrs.Attribute[Any], v: float | None
) -> None:
    if v is not None and not _number(attribute, v) >= 0:
        raise ConfigurationError(f"{attribute.alias} must be >= 0 or None, got {v!r}")


def _optional_positive(_inst: object, attribute: attrs.Attribute[Any], v: float | None) -> None:
    if v is not None and not _number(attribute, v) > 0:
        raise ConfigurationError(f"{attribute.alias} must be > 0 or None, got {v!r}")


#: A typical task duration in seconds, for planning only (dry runs, ETAs before any
#: task finished). The scheduler never waits on it: it learns durations instead.
DEFAULT_TASK_GUESS = 60.0


@attrs.frozen(kw_only=True)
class PollConfig:
    """How tasks are polled: by ``wait_*``, pollers and the batch scheduler.

    Usage::

        PollConfig()                      # learn task durations from the first tasks on
        PollConfig(initial_estimate=30)   # seed: tasks take about 30 s (no scouting)
        PollConfig(interval=5)            # gentler wait_* on tasks of unknown age
        PollConfig(calls_per_task=3)      # spend more polls in a batch's tail

    Attributes:
        interval: seconds between polls of a task whose age is unknown (``wait_*`` on a
            bare task id; the platform recommends 2-5 s).
        min_interval: seconds; no task is ever polled sooner than this after its submit
            or its last poll. Unset (the default): 2 s (the platform's lower bound)
            after a submit and for tasks of a kind not learnt yet; between two polls of
            a learnt kind, a quarter of its median, within 0.5-2 s (tasks of a 2 s
            median are not re-polled a whole median later).
        max_interval: seconds; the longest gap between two polls of a slow task. Unset
            (the default): 30 s, or twice the learnt median of its kind if longer (the
            re-polls of 2-minute tasks are not capped at 30 s). Set, it is a ceiling.
        timeout: seconds a ``wait_*`` call (or a batch, per task) waits before giving a
            ``TaskTimeoutError`` (``None``: forever).
        initial_estimate: seconds; a seed for the learned durations: the first poll
            of a task comes this long after its submit until real tasks have finished
            (``None``, the default: unknown; the scheduler scouts, see
            :mod:`fto_async.polling`). Learned durations, restored from a journal or
            kept by the client, win over it. Stored as ``seed_estimate``; reading
            ``initial_estimate`` gives the seed or :data:`DEFAULT_TASK_GUESS`.
        quantile: a task is first polled when this fraction of tasks of its kind is
            expected to be done (0.87: most tasks cost one poll, a task done is seen
            within about half a median duration).
        backoff: factor by which a slow task's age grows between polls while nothing
            is known of the durations beyond the seed.
        scouts: tasks of a kind polled from ``min_interval`` on, backing off by 10% of
            their age, while that kind's durations are unknown (4).
        calls_per_task: the calls per task (submit included) a batch spends: its
            scheduler aims first polls at the quantile ``1 / (calls_per_task - 1)``
            (0.83 for 2.2; ``quantile`` is then for single-task waits) and a controller
            holds the calls there; more calls, results sooner (see
            ``benchmarks/frontier.py``). In its tail (every submit done) the scheduler
            polls the last tasks more often while it stays under this target.
        order: on a saturated rate gate, ``"results"`` (default): a batch's due polls go
            before queued submits (results flow during submission), taking at most 3
            admissions in 4 while submits wait; ``"makespan"``: polls take no priority
            (they queue with submits, first come first served), for jobs that only
            care when the whole batch ends.
    """

    interval: float = attrs.field(default=3.0, validator=_positive)
    min_interval_set: float | None = attrs.field(
        default=None, alias="min_interval", validator=_optional_non_negative
    )
    max_interval_set: float | None = attrs.field(
        default=None, alias="max_interval", validator=_optional_positive
    )
    timeout: float | None = 1800.0
    seed_estimate: float | None = attrs.field(
        default=None, alias="initial_estimate", validator=_optional_positive
    )
    quantile: float = attrs.field(default=0.87, validator=_positive)
    backoff: float = attrs.field(default=1.5, validator=_positive)
    scouts: int = attrs.field(default=4, validator=_int_at_least(1))
    calls_per_task: float = attrs.field(default=2.2, validator=_positive)
    order: str = attrs.field(default="results", validator=_one_of("results", "makespan"))
    #: Private: the factor :meth:`scaled` applied (the unset intervals' 2 s and 30 s).
    time_scale: float = attrs.field(default=1.0, validator=_positive)

    @property
    def min_interval(self) -> float:
        """Seconds: ``min_interval`` as set, else 2 s (scaled): the floor after a submit."""
        found = self.min_interval_set
        return 2.0 * self.time_scale if found is None else found

    @property
    def max_interval(self) -> float:
        """Seconds: ``max_interval`` as set, else 30 s (scaled): the unset ceiling's
        least value (see the class docstring)."""
        found = self.max_interval_set
        return 30.0 * self.time_scale if found is None else found

    @property
    def initial_estimate(self) -> float:
        """The seed in seconds, or :data:`DEFAULT_TASK_GUESS` without one (planning)."""
        return DEFAULT_TASK_GUESS if self.seed_estimate is None else self.seed_estimate

    def scaled(self, factor: float) -> PollConfig:
        """This config with every duration multiplied by ``factor`` (for emulator runs)."""
        seed = self.seed_estimate
        return attrs.evolve(
            self,
            interval=self.interval * factor,
            min_interval=None if self.min_interval_set is None else self.min_interval * factor,
            max_interval=None if self.max_interval_set is None else self.max_interval * factor,
            time_scale=self.time_scale * factor,
            timeout=None if self.timeout is None else self.timeout * factor,
            initial_estimate=None if seed is None else seed * factor,
        )


@attrs.frozen(kw_only=True)
class ClientConfig:
    """Everything an :class:`~fto_async.FtoClient` needs besides credentials.

    Usage::

        ClientConfig()                                   # production defaults
        ClientConfig(base_url=emu.base_url, rate=RateConfig(qps=50))

    Attributes:
        base_url: the platform's scheme and host (``https://connect.patsnap.com``).
        workflow_result_path: where ``submit-workflow`` results are read; UNVERIFIED,
            see :data:`DEFAULT_WORKFLOW_RESULT_PATH`.
        timeout: seconds one HTTP request may take, answer included.
        connect_timeout: seconds to open a connection.
        ssl: ``True`` (verify with the system store), an ``ssl.SSLContext`` of your own
            (custom CA), or ``False`` (no verification; never in production).
        rate: the rate gate, see :class:`RateConfig`.
        retry: the retry policy, see :class:`RetryConfig`.
        poll: polling of single tasks, see :class:`PollConfig`.
        user_agent: sent as ``User-Agent``.
        max_response_bytes: the largest answer body read (32 MiB; a report is ~30 KB).
            A larger one is not buffered: it raises ``ResponseTooLargeError``.
        unreachable_after: seconds without a single answer (from the first attempt that
            got none) before calls give up with the fatal ``PlatformUnreachableError``...
        unreachable_attempts: ...and at least this many attempts got none. Both must hold
            (whichever comes later): a burst of failures during a short blip never stops
            a batch, and neither does one slow attempt. Any HTTP answer resets both.
        not_platform_after: consecutive whole answers that are not JSON (an HTML page),
            with no platform envelope ever seen, before calls give up with the fatal
            ``NotThePlatformError`` (a wrong base URL, a captive portal).
        key_auth: how an ``sk-`` API key travels (reference §7.2a): ``"both"`` (default:
            ``?apikey=`` and ``Authorization: Bearer``, which works wherever either does),
            ``"query"`` (``?apikey=`` only, as PatSnap's FTO script) or ``"bearer"`` (the
            header only; the URL then carries no secret). For a proxy that strips one.
            Client credentials always send both (§7.1): anything but ``"both"`` is refused.
    """

    base_url: str = DEFAULT_BASE_URL
    workflow_result_path: str = DEFAULT_WORKFLOW_RESULT_PATH
    timeout: float = attrs.field(default=DEFAULT_TIMEOUT, validator=_positive)
    connect_timeout: float = attrs.field(default=10.0, validator=_positive)
    ssl: bool | _ssl.SSLContext = True
    rate: RateConfig = attrs.field(factory=RateConfig)
    retry: RetryConfig = attrs.field(factory=RetryConfig)
    poll: PollConfig = attrs.field(factory=PollConfig)
    user_agent: str = "fto-async"
    max_response_bytes: int = attrs.field(
        default=DEFAULT_MAX_RESPONSE_BYTES, validator=_int_at_least(1024)
    )
    unreachable_after: float = attrs.field(default=30.0, validator=_non_negative)
    unreachable_attempts: int = attrs.field(default=20, validator=_int_at_least(1))
    not_platform_after: int = attrs.field(default=5, validator=_int_at_least(1))
    key_auth: str = "both"

    def __attrs_post_init__(self) -> None:
        if self.key_auth not in KEY_AUTH_STYLES:
            raise ConfigurationError(
                f"key_auth must be one of {', '.join(KEY_AUTH_STYLES)}, got {self.key_auth!r}"
            )
        if not isinstance(self.base_url, str) or not self.base_url.startswith(
            ("http://", "https://")
        ):
            raise ConfigurationError(f"base_url must be http(s), got {self.base_url!r}")
        if _base_url_problem(self.base_url) is not None:
            raise ConfigurationError(f"base_url {_base_url_problem(self.base_url)}")
        if not isinstance(self.workflow_result_path, str) or not (
            self.workflow_result_path.startswith("/")
        ):
            raise ConfigurationError("workflow_result_path must start with '/'")


#: How an ``sk-`` key may be sent (see ``ClientConfig.key_auth``).
KEY_AUTH_STYLES = ("both", "query", "bearer")


def env_settings(environ: Mapping[str, str] | None = None) -> dict[str, str | float | None]:
    """Read the ``PATSNAP_*`` variables (the only code that reads the environment).

    Returns a dict with ``client_id``, ``client_secret``, ``api_key``, ``base_url``,
    ``qps``, ``redis_url`` (from ``PATSNAP_REDIS_URL``), ``key_auth`` (from
    ``PATSNAP_KEY_AUTH``, lower-cased) and ``max_calls`` (from ``PATSNAP_MAX_CALLS``, a
    whole number at least 1); ``None`` where unset.
    """
    max_calls = _env_max_calls(os.environ if environ is None else environ)
    env = os.environ if environ is None else environ
    qps_text = env.get("PATSNAP_QPS")
    qps: float | None = None
    if qps_text:
        try:
            qps = float(qps_text)
        except ValueError:
            raise ConfigurationError(f"PATSNAP_QPS must be a number, got {qps_text!r}") from None
    return {
        "client_id": env.get("PATSNAP_CLIENT_ID") or None,
        "client_secret": env.get("PATSNAP_CLIENT_SECRET") or None,
        "api_key": env.get("PATSNAP_API_KEY") or None,
        "base_url": env.get("PATSNAP_BASE_URL") or None,
        "qps": qps,
        "redis_url": env.get("PATSNAP_REDIS_URL") or None,
        "key_auth": (env.get("PATSNAP_KEY_AUTH") or "").strip().lower() or None,
        "max_calls": max_calls,
    }


def _env_max_calls(env: Mapping[str, str]) -> int | None:
    text = (env.get("PATSNAP_MAX_CALLS") or "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigurationError(f"PATSNAP_MAX_CALLS must be a whole number at least 1, "
                                 f"got {text!r}")  # fmt: skip
    return value
