"""Settings of the emulator: credentials, limits, latencies and fault rates.

Every parameter is documented once, on :class:`EmulatorConfig`. The CLI
(``python -m fto_async.emulator``) and the admin route ``POST /_emulator/config``
change the same fields.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

import attrs

__all__ = [
    "DEFAULT_API_KEYS",
    "DEFAULT_CLIENTS",
    "EmulatorConfig",
    "config_to_json",
    "evolve_config",
]

#: OAuth client credentials the emulator accepts out of the box (client_id -> client_secret).
DEFAULT_CLIENTS: Mapping[str, str] = MappingProxyType({"demo-client": "demo-secret"})
#: API keys (``sk-`` scheme) the emulator accepts out of the box.
DEFAULT_API_KEYS: frozenset[str] = frozenset({"sk-demo"})


def _freeze_clients(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(value))


def _freeze_keys(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset({value})
    return frozenset(value)


def _to_float(value: float) -> float:
    return float(value)


def _to_opt_float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _to_int(value: int) -> int:
    return int(value)


def _to_opt_int(value: int | None) -> int | None:
    return None if value is None else int(value)


def _non_negative(_inst: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _positive(_inst: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def _probability(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be within 0..1, got {value!r}")


def _check_clients(
    _inst: object, _attribute: attrs.Attribute[Any], value: Mapping[str, str]
) -> None:
    for client_id, secret in value.items():
        if not isinstance(client_id, str) or not isinstance(secret, str) or not client_id:
            raise TypeError("clients must map non-empty client_id strings to secret strings")
        if client_id.startswith("sk-"):
            raise ValueError(f"client_id {client_id!r} must not start with 'sk-'")


def _check_keys(_inst: object, _attribute: attrs.Attribute[Any], value: frozenset[str]) -> None:
    for key in value:
        if not isinstance(key, str) or not key.startswith("sk-"):
            raise ValueError(f"API keys must be strings starting with 'sk-', got {key!r}")


def _check_path(_inst: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"{attribute.name} must be a path starting with '/', got {value!r}")


def _one_of(*allowed: str) -> Any:
    def check(_inst: object, attribute: attrs.Attribute[Any], value: str) -> None:
        if value not in allowed:
            raise ValueError(f"{attribute.name} must be one of {', '.join(allowed)}, got {value!r}")

    return check


def _mask_clients(value: Mapping[str, str]) -> str:
    return repr(sorted(value))


def _rate_field() -> Any:
    return attrs.field(default=0.0, converter=_to_float, validator=_probability)


@attrs.define(frozen=True, kw_only=True)
class EmulatorConfig:
    """How the emulated PatSnap open platform behaves.

    Usage forms::

        EmulatorConfig()                               # demo credentials, 10 QPS, real latencies
        EmulatorConfig(time_scale=0.001)               # every latency and task 1000x faster
        EmulatorConfig(qps=None, daily_limit=500)      # no rate limit, 500 calls per UTC day
        EmulatorConfig(busy_rate=0.1, fail_rate=0.05)  # inject faults, reproducibly (``seed``)

    All times are in seconds. Token lifetimes and ``hang_seconds`` are real seconds; the submit,
    poll and upload latencies and the task durations are multiplied by ``time_scale``.

    Attributes:
        clients: OAuth client credentials, client_id -> client_secret. Default
            ``{"demo-client": "demo-secret"}``. A client_id is one account.
        api_keys: Accepted ``sk-`` API keys. Default ``{"sk-demo"}``. A key is one account.
        token_ttl: Lifetime of an OAuth token and its ``expires_in`` (rounded down), default 1799.
        qps: Calls per sliding 1-second window per account, default 10; ``None`` means unlimited.
            Every business call counts (all paths except ``/oauth/token`` and ``/_emulator/*``);
            a call that would make the window hold more than ``qps`` calls is answered 67200002
            and is not counted.
        daily_limit: Admitted business calls per account per UTC day (beyond: 67200007);
            ``None`` (default) means unlimited.
        total_limit: Admitted business calls per account over the emulator's life (beyond:
            67200001); ``None`` (default) means unlimited.
        balance: Task-creating submits per account (beyond: 67200005); ``None`` (default) means
            unlimited.
        time_scale: Factor applied to the submit, poll and upload latencies and to task
            durations, default 1.0 (0.01 makes a 5 s submit take 50 ms).
        submit_latency: Time a submit takes before it answers, default 5.0, with a uniform
            +-20% jitter drawn from the seeded RNG.
        poll_latency: Time a report poll takes, default 0.3.
        upload_latency: Time an image upload takes, default 0.5.
        task_duration: Median time from task creation to its result, default 30.0.
        task_duration_sigma: Sigma of the lognormal task duration, default 0.0 (every task
            takes exactly ``task_duration``).
        workflow_task_duration: Median duration of workflow tasks, default ``None`` (the same
            as ``task_duration``). Agent-style workflows take minutes (reference §3.2: 366.9 s
            and 276.2 s), e.g. 300.0; scaled by ``time_scale`` like every duration.
        busy_rate: Probability that an admitted business call is answered 67200100 without
            doing anything.
        ambiguous_busy_rate: Probability that a submit creates its task and is then answered
            67200100, so the client cannot know the task exists (stats record it as created).
        service_error_rate: Probability of a 68300008 answer.
        http_5xx_rate: Probability of an HTTP 503 with the plain-text body "Service Unavailable".
        http_429_rate: Probability of a bare HTTP 429 (undocumented, but PatSnap's own scripts
            retry it, reference §9): in turn an empty body, a plain-text body, and an empty
            body with ``Retry-After: 0``. Unlike the other faults it also applies to
            ``/oauth/token``, and it is drawn before the QPS window (the call is not counted).
        malformed_rate: Probability of a broken answer: half the time an HTML 502 page, half the
            time a truncated JSON body with HTTP 200.
        drop_rate: Probability that the connection is closed without any response.
        hang_rate: Probability that the call sleeps ``hang_seconds`` before answering normally.
        hang_seconds: How long a hanging call sleeps, in real seconds, default 30.0.
        fail_rate: Probability that a created task ends with ``task_status`` 3 instead of 2.
        task_validity: How long a 1-vs-1 (AI67) task id stays valid, default 28800.0 (8 h,
            as the platform documents), times ``time_scale``; a query of an older id is
            answered like an unknown id (68300004 "task_id does not exist").
        seed: Seed of the RNG that draws faults, jitter and durations, default 0.
        publish_share: Share of product images (0..1) for which each publication round
            publishes new designs, default 0.0. Which images a round hits depends only on the
            image and the round, so the same question keeps the same answer.
        publish_round: How many publication rounds have happened, default 0. Raise it (CLI
            ``--publish-round``, ``POST /_emulator/config`` or ``POST /_emulator/publish``)
            to "publish": tasks created afterwards see one or two new High designs for about
            ``publish_share`` of the images, and nothing else changes, so a rescreen shows
            exactly those rows as new.
        workflow_result_path: Path of the result endpoint for ``/api/mcp/submit-workflow`` tasks,
            default ``/api/mcp/workflow-result``. The platform publishes none: this is a guess.
            It is fixed when the app is created.
        string_status: Which kinds report ``task_status`` as ``"running"`` / ``"success"`` /
            ``"failed"`` instead of 1/2/3: ``"workflow"`` (default: agent-style workflows do,
            reference §3.2), ``"all"`` or ``"none"``.
        key_auth: How an ``sk-`` key must arrive (reference §7.2a): ``"any"`` (default: query
            parameter, Bearer header or both), ``"query"`` (only ``?apikey=`` is read; the
            header is ignored, as behind a proxy that strips it) or ``"bearer"`` (only
            ``Authorization: Bearer`` is read; the query parameter is ignored).

    The fault probabilities are drawn in the order above, once per admitted business call
    (after authentication, quotas and QPS); all default to 0.
    """

    clients: Mapping[str, str] = attrs.field(
        default=DEFAULT_CLIENTS,
        converter=_freeze_clients,
        validator=_check_clients,
        repr=_mask_clients,
        hash=False,
    )
    api_keys: frozenset[str] = attrs.field(
        default=DEFAULT_API_KEYS,
        converter=_freeze_keys,
        validator=_check_keys,
        repr=lambda keys: f"<{len(keys)} keys>",
    )
    token_ttl: float = attrs.field(default=1799.0, converter=_to_float, validator=_positive)
    qps: float | None = attrs.field(default=10.0, converter=_to_opt_float, validator=_positive)
    daily_limit: int | None = attrs.field(
        default=None, converter=_to_opt_int, validator=_non_negative
    )
    total_limit: int | None = attrs.field(
        default=None, converter=_to_opt_int, validator=_non_negative
    )
    balance: int | None = attrs.field(default=None, converter=_to_opt_int, validator=_non_negative)
    time_scale: float = attrs.field(default=1.0, converter=_to_float, validator=_non_negative)
    submit_latency: float = attrs.field(default=5.0, converter=_to_float, validator=_non_negative)
    poll_latency: float = attrs.field(default=0.3, converter=_to_float, validator=_non_negative)
    upload_latency: float = attrs.field(default=0.5, converter=_to_float, validator=_non_negative)
    task_duration: float = attrs.field(default=30.0, converter=_to_float, validator=_non_negative)
    task_duration_sigma: float = attrs.field(
        default=0.0, converter=_to_float, validator=_non_negative
    )
    workflow_task_duration: float | None = attrs.field(
        default=None, converter=_to_opt_float, validator=_non_negative
    )
    busy_rate: float = _rate_field()
    ambiguous_busy_rate: float = _rate_field()
    service_error_rate: float = _rate_field()
    http_5xx_rate: float = _rate_field()
    http_429_rate: float = _rate_field()
    malformed_rate: float = _rate_field()
    drop_rate: float = _rate_field()
    hang_rate: float = _rate_field()
    hang_seconds: float = attrs.field(default=30.0, converter=_to_float, validator=_non_negative)
    fail_rate: float = _rate_field()
    task_validity: float = attrs.field(default=28800.0, converter=_to_float, validator=_positive)
    seed: int = attrs.field(default=0, converter=_to_int)
    publish_share: float = _rate_field()
    publish_round: int = attrs.field(default=0, converter=_to_int, validator=_non_negative)
    workflow_result_path: str = attrs.field(
        default="/api/mcp/workflow-result", validator=_check_path
    )
    string_status: str = attrs.field(
        default="workflow", validator=_one_of("none", "workflow", "all")
    )
    key_auth: str = attrs.field(default="any", validator=_one_of("any", "query", "bearer"))


_FIELD_NAMES = frozenset(field.name for field in attrs.fields(EmulatorConfig))


def evolve_config(config: EmulatorConfig, changes: Mapping[str, Any]) -> EmulatorConfig:
    """Return a copy of ``config`` with ``changes`` applied and validated.

    Args:
        config: The current configuration.
        changes: Field name -> new value, e.g. ``{"busy_rate": 0.5}``.

    Returns:
        The new configuration.

    Raises:
        ValueError: An unknown field, a value out of range, or a change of
            ``workflow_result_path`` (routes are fixed when the app is created).
        TypeError: A value of the wrong type.
    """
    unknown = sorted(set(changes) - _FIELD_NAMES)
    if unknown:
        raise ValueError(f"unknown EmulatorConfig field(s): {', '.join(unknown)}")
    path = changes.get("workflow_result_path", config.workflow_result_path)
    if path != config.workflow_result_path:
        raise ValueError("workflow_result_path cannot change at runtime")
    return attrs.evolve(config, **changes)


def config_to_json(config: EmulatorConfig) -> dict[str, Any]:
    """Return ``config`` as a JSON-safe dict, with client secrets masked.

    Args:
        config: The configuration to render.

    Returns:
        Field name -> value; ``clients`` maps each client_id to ``"***"`` and ``api_keys``
        is a sorted list of masked keys.
    """
    out: dict[str, Any] = {}
    for field in attrs.fields(EmulatorConfig):
        out[field.name] = getattr(config, field.name)
    out["clients"] = dict.fromkeys(sorted(config.clients), "***")
    out["api_keys"] = sorted(f"{key[:5]}***" for key in config.api_keys)
    return out
