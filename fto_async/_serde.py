"""The cattrs converter that turns wire JSON into models and requests into bodies. Private.

The package uses one converter, :data:`CONVERTER` (built by :func:`make_converter`); hooks are
generated once per class, on first use, so structuring does no reflection per call.
:func:`structure` and :func:`unstructure` are the only entry points the client uses.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar, get_args, get_origin

import attrs
import cattrs
from cattrs.cols import homogenous_tuple_structure_factory, iterable_unstructure_factory
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.v import format_exception

from .errors import ResponseDecodeError
from .models import OneVsOneComparison, Report, RiskLevel, TaskStatus

__all__ = ["CONVERTER", "configure_converter", "make_converter", "structure", "unstructure"]

T = TypeVar("T")

#: Fields declared as strings that the platform sends as numbers (reference §2.2).
_NUMERIC_STR_FIELDS: Mapping[type, tuple[str, ...]] = {Report: ("apply_start_time",)}
#: Fields whose wire name differs from the attribute (``OneVsOneComparison.score`` is a
#: property on the 0-1 scale; the value as sent is kept as ``raw_score``).
_RENAMED_FIELDS: Mapping[type, Mapping[str, str]] = {OneVsOneComparison: {"raw_score": "score"}}
#: How many decode problems an error message lists before it says "and N more".
_MAX_PROBLEMS = 3


class _WireError(ValueError):
    """A JSON value of the wrong type or out of range; its message is shown as is."""


def _json_type(value: object) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    names.update({list: "a list", dict: "an object", type(None): "null"})
    return names.get(type(value), type(value).__name__)


def _str(value: object, _: type) -> str:
    if isinstance(value, str):
        return value
    raise _WireError(f"expected a string, got {_json_type(value)}")


def _int(value: object, _: type = int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise _WireError(f"expected an integer, got {_json_type(value)}")


def _float(value: object, _: type) -> float:
    if isinstance(value, float):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise _WireError("number too large for a float") from None
    raise _WireError(f"expected a number, got {_json_type(value)}")


def _bool(value: object, _: type) -> bool:
    if isinstance(value, bool):
        return value
    raise _WireError(f"expected a boolean, got {_json_type(value)}")


def _str_or_number(value: object, _: type) -> str | None:
    """A string field the platform sends as a number: an integer becomes its decimal string."""
    if value is None or isinstance(value, str):
        return value
    try:
        return str(_int(value))
    except _WireError:
        raise _WireError(f"expected a string or an integer, got {_json_type(value)}") from None


def _risk_level(value: object, _: type) -> RiskLevel:
    try:
        return RiskLevel(_str(value, str))
    except ValueError:
        raise _WireError(f"expected High, Medium or Low, got {value!r:.40}") from None


#: ``task_status`` as agent-style workflows send it (reference §3.2), lower-cased.
_STATUS_WORDS: Mapping[str, TaskStatus] = {
    "running": TaskStatus.RUNNING,
    "success": TaskStatus.SUCCESS,
    "failed": TaskStatus.FAILED,
}


def _task_status(value: object, _: type) -> TaskStatus:
    """``task_status`` in either encoding: 1/2/3 or ``"running"``/``"success"``/``"failed"``.

    PatSnap's agent-style workflows (AI66, AI35) report strings and the enhanced FTO
    workflow may do the same (reference §3.2); any letter case is accepted, for every
    kind. Any other value is an error naming it (the poll leaves the row for a rerun).
    """
    if isinstance(value, str):
        status = _STATUS_WORDS.get(value.strip().lower())
        if status is None:
            raise _WireError(
                f"expected task_status 1, 2, 3, 'running', 'success' or 'failed', "
                f"got {value!r:.40}"
            )
        return status
    return _int_enum(value, TaskStatus)  # type: ignore[return-value]


def _int_enum(value: object, cls: type[enum.IntEnum]) -> enum.IntEnum:
    number = _int(value)
    try:
        return cls(number)
    except ValueError:
        allowed = ", ".join(str(member.value) for member in cls)
        raise _WireError(f"expected one of {allowed} ({cls.__name__}), got {number}") from None


def _enum_value(member: enum.Enum) -> Any:
    return member.value


def _is_homogeneous_tuple(t: Any) -> bool:
    args = get_args(t)
    return get_origin(t) is tuple and len(args) == 2 and args[1] is Ellipsis


def _is_response(t: Any) -> bool:
    return isinstance(t, type) and attrs.has(t) and "raw" in attrs.fields_dict(t)


def _is_request(t: Any) -> bool:
    return isinstance(t, type) and attrs.has(t) and "raw" not in attrs.fields_dict(t)


def configure_converter(conv: cattrs.Converter) -> None:
    """Register the wire rules on ``conv``:

    * ``str`` fields take only strings; ``Report.apply_start_time`` also takes an integer
      (the platform sends ``20200101``), kept as its decimal string.
    * ``int`` fields take integers (or integral floats such as ``60.0``); ``float`` fields
      take integers and floats. A boolean is never a number (``"score": true`` is an error).
    * ``IntEnum`` fields (``task_status``, ``status``) take their documented integers only:
      an unknown value such as ``task_status`` 4 is an error, not a guess.
    * ``TaskStatus`` also takes ``"running"`` / ``"success"`` / ``"failed"`` in any letter
      case (agent-style workflows, reference §3.2); ``"queued"`` is an error naming it.
    * ``RiskLevel`` takes ``High`` / ``Medium`` / ``Low`` in any letter case.
    * ``tuple[X, ...]`` fields take a JSON list; ``null`` gives ``()``. They are
      unstructured as lists.
    * ``OneVsOneComparison.raw_score`` is read from the wire's ``score`` (its ``score``
      property is the value on the 0-1 scale).
    * Response classes (attrs classes with a ``raw`` field), at every level: unknown keys
      are ignored, missing required keys are errors, and ``raw`` is set to the JSON object
      the instance was built from. ``raw`` is never emitted when unstructuring.
    * Request classes (the other attrs classes) are structured through their constructor,
      so the same validation runs as in user code.
    * Unstructuring leaves out fields equal to their default (``None``, ``()``), turns enums
      into their values and ``LocItem`` into ``{"id": ..., "desc": ...}`` (no ``desc`` when
      it is ``None``).
    """
    # Class hooks dispatch on the MRO, so the most specific wins: IntEnum before int,
    # RiskLevel before str.
    conv.register_structure_hook(str, _str)
    conv.register_structure_hook(int, _int)
    conv.register_structure_hook(float, _float)
    conv.register_structure_hook(bool, _bool)
    conv.register_structure_hook(enum.IntEnum, _int_enum)
    conv.register_structure_hook(RiskLevel, _risk_level)
    conv.register_structure_hook(TaskStatus, _task_status)
    conv.register_unstructure_hook(enum.IntEnum, _enum_value)
    conv.register_unstructure_hook(RiskLevel, _enum_value)

    def tuple_hook(t: Any) -> Callable[[object, type], tuple[Any, ...]]:
        build = homogenous_tuple_structure_factory(t, conv)

        def hook(value: object, cls: type) -> tuple[Any, ...]:
            if value is None:
                return ()
            if not isinstance(value, list | tuple):
                raise _WireError(f"expected a list, got {_json_type(value)}")
            return build(value, cls)  # type: ignore[no-any-return]

        return hook

    def response_hook(cls: type[T]) -> Callable[[object, type], T]:
        overrides: dict[str, Any] = {"raw": override(omit=True)}
        for name in _NUMERIC_STR_FIELDS.get(cls, ()):
            overrides[name] = override(struct_hook=_str_or_number)
        for name, wire in _RENAMED_FIELDS.get(cls, {}).items():
            overrides[name] = override(rename=wire)
        build = make_dict_structure_fn(cls, conv, **overrides)
        set_raw = object.__setattr__  # the classes are frozen; ``raw`` is set after __init__

        def hook(value: object, _: type) -> T:
            if not isinstance(value, Mapping):
                raise _WireError(f"expected an object, got {_json_type(value)}")
            instance = build(value, cls)
            set_raw(instance, "raw", value)
            return instance

        return hook

    def request_hook(cls: type[T]) -> Callable[[Any, type], T]:
        return make_dict_structure_fn(cls, conv, _cattrs_prefer_attrib_converters=True)

    def unstructure_hook(cls: type[Any]) -> Callable[[Any], dict[str, Any]]:
        overrides: dict[str, Any] = (
            {"raw": override(omit=True)} if "raw" in attrs.fields_dict(cls) else {}
        )
        return make_dict_unstructure_fn(cls, conv, _cattrs_omit_if_default=True, **overrides)

    conv.register_structure_hook_factory(_is_homogeneous_tuple, tuple_hook)
    conv.register_structure_hook_factory(_is_response, response_hook)
    conv.register_structure_hook_factory(_is_request, request_hook)
    conv.register_unstructure_hook_factory(
        _is_homogeneous_tuple, lambda t: iterable_unstructure_factory(t, conv, unstructure_to=list)
    )
    conv.register_unstructure_hook(tuple, lambda value: [conv.unstructure(item) for item in value])
    conv.register_unstructure_hook_factory(attrs.has, unstructure_hook)


def make_converter() -> cattrs.Converter:
    """Return a new converter with :func:`configure_converter`'s rules (the package uses
    the one :data:`CONVERTER`; tests build their own)."""
    conv = cattrs.Converter(detailed_validation=True, forbid_extra_keys=False)
    configure_converter(conv)
    return conv


#: THE converter: every client and the fingerprint use it (its hooks are stateless and
#: generated once per class, so sharing it saves each client that work).
CONVERTER: Final = make_converter()


def _format(exc: BaseException, type_: type | None) -> str:
    if isinstance(exc, _WireError):
        return str(exc)
    return format_exception(exc, type_)


def _describe(exc: BaseException) -> str:
    problems = cattrs.transform_error(exc, "$", format_exception=_format)
    text = "; ".join(problems[:_MAX_PROBLEMS])
    if len(problems) > _MAX_PROBLEMS:
        text += f"; and {len(problems) - _MAX_PROBLEMS} more"
    return text


def structure(conv: cattrs.Converter, data: object, cls: type[T]) -> T:
    """Build a ``cls`` from decoded JSON ``data``.

    Raises:
        ResponseDecodeError: ``data`` does not fit ``cls``, whatever the reason. The message
            names each failing path (``$.report.comparisons[0].score``); ``raw`` is ``data``.
    """
    try:
        return conv.structure(data, cls)
    except Exception as exc:  # every failure of any hook is a decode failure
        message = f"cannot read {cls.__name__}: {_describe(exc)}"
        raise ResponseDecodeError(message, raw=data) from exc


def unstructure(conv: cattrs.Converter, obj: object) -> dict[str, Any]:
    """Return the JSON body for a request object: ``None`` fields left out, tuples as lists."""
    body = conv.unstructure(obj)
    if not isinstance(body, dict):
        raise TypeError(f"{type(obj).__name__} does not unstructure to a JSON object")
    return body
