"""Private: ``FtoClient.with_options``, a view of a client with other per-call options.

A view is a shallow copy of the client: it shares the connection pool, the rate gate,
the retry budget, the cache, the learned durations and the flights of ``screen``, and
differs only in its per-call options (``_deadline``, ``_max_retries``). Closing a view
closes nothing (``_view_of`` names the client that owns the resources).
"""

from __future__ import annotations

import copy
import enum
from typing import Any, Final, Literal, Protocol, TypeAlias, TypeVar

from .errors import ConfigurationError

__all__ = ["UNSET", "Unset", "with_options"]


class _Unset(enum.Enum):
    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


#: An option not given to ``with_options`` (the view keeps the client's value).
UNSET: Final = _Unset.UNSET
Unset: TypeAlias = Literal[_Unset.UNSET]


class _Viewable(Protocol):
    """What a view changes of a client (its per-call options); never imports the client."""

    _deadline: float | None
    _max_retries: int | None
    _view_of: Any


_C = TypeVar("_C", bound=_Viewable)


def with_options(
    client: _C,
    *,
    timeout: float | Unset | None = UNSET,
    max_retries: int | Unset | None = UNSET,
) -> _C:
    """The view of ``client`` documented on :meth:`FtoClient.with_options`."""
    if max_retries is not UNSET and max_retries is not None and (
        type(max_retries) is not int or max_retries < 0
    ):  # fmt: skip
        raise ConfigurationError(f"max_retries must be an int >= 0, got {max_retries!r}")
    if timeout is not UNSET and timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
    ):  # fmt: skip
        raise ConfigurationError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    view = copy.copy(client)
    if timeout is not UNSET:
        view._deadline = None if timeout is None else float(timeout)
    if max_retries is not UNSET:
        view._max_retries = max_retries
    view._view_of = client._view_of or client
    return view
