"""Annotations resolve at run time: ``typing.get_type_hints`` works on the whole public API.

Tools read annotations at run time (cattrs, attrs.resolve_types, typer, sphinx-autodoc,
``inspect.get_annotations(eval_str=True)``); a string annotation that names something only
imported under ``TYPE_CHECKING``, or that the package's ``__module__ = "fto_async"``
rewrite hides from its module, breaks them.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import fto_async


def _is_typeddict(value: Any) -> bool:
    return isinstance(value, type) and typing.is_typeddict(value)


def _typeddicts_in(hint: Any) -> Iterator[type]:
    """TypedDicts inside a hint (``Unpack[Options]``, ``Options | None``, ...)."""
    if _is_typeddict(hint):
        yield hint
    for arg in typing.get_args(hint):
        yield from _typeddicts_in(arg)


def _members(cls: type) -> Iterator[tuple[str, Callable[..., Any]]]:
    """The public methods and properties of ``cls`` (its own and inherited from fto_async)."""
    for klass in cls.__mro__:
        if not klass.__module__.startswith("fto_async"):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_") and name not in ("__init__", "__call__"):
                continue
            if isinstance(value, property):
                if value.fget is not None:
                    yield name, value.fget
            elif isinstance(value, staticmethod | classmethod):
                yield name, value.__func__
            elif inspect.isfunction(value):
                yield name, value


def _targets() -> Iterator[tuple[str, Any]]:
    for name in fto_async.__all__:
        value = getattr(fto_async, name)
        if isinstance(value, type):
            yield name, value
            for member, func in _members(value):
                yield f"{name}.{member}", func
        elif callable(value):
            yield name, value


TARGETS = dict(_targets())


def test_the_api_has_annotated_members() -> None:
    """The walk finds the classes and their methods (it is not vacuous)."""
    assert "FtoClient" in TARGETS
    assert "FtoClient.screen_many" in TARGETS
    assert "Outcome" in TARGETS
    assert len(TARGETS) > 150


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_get_type_hints_resolves(name: str) -> None:
    """``typing.get_type_hints`` resolves every annotation of a public name, and of every
    TypedDict its annotations unpack (the batch options)."""
    hints = typing.get_type_hints(TARGETS[name], include_extras=True)
    for hint in hints.values():
        for options in _typeddicts_in(hint):
            typing.get_type_hints(options, include_extras=True)


def test_signatures_resolve_with_eval_str() -> None:
    """``inspect.signature(..., eval_str=True)`` works on every public callable."""
    for name, value in TARGETS.items():
        if callable(value) and not isinstance(value, type):
            inspect.signature(value, eval_str=True)
        elif isinstance(value, type):
            try:
                inspect.signature(value)
            except ValueError:  # a builtin-backed constructor without a signature
                continue
            inspect.signature(value, eval_str=True), name
