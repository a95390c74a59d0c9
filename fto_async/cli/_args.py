"""The ``fto-async`` command's argument types and defaults. Strictly private.

Each type parses one option's text or raises :class:`argparse.ArgumentTypeError` (the
parser prints it as a usage error, exit 2): nothing is called for a bad value.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import platformdirs

from .. import _validate
from ..batch import FollowUp
from ..config import DEFAULT_BASE_URL, _base_url_problem
from ..errors import InvalidRequestError
from ..models import RiskLevel

__all__ = [
    "DEFAULT_MAX_AGE",
    "MIN_QPS",
    "base_url_arg",
    "default_cache_path",
    "follow_up_arg",
    "parse_duration",
    "patent_link",
    "patent_link_arg",
    "qps_arg",
    "time_scale_arg",
]


_DURATION: Final = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", re.IGNORECASE)


_UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


DEFAULT_MAX_AGE: Final = "7d"


def parse_duration(text: str) -> float:
    """Seconds in ``7d``, ``12h``, ``30m``, ``3600s`` or ``3600`` (argparse type)."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: use a number with s, m, h, d or w, e.g. 7d or 12h"
        )
    return float(match.group(1)) * _UNITS[match.group(2).lower()]


def default_cache_path(base_url: str | None) -> Path:
    """The default report cache file: one per platform (its host), in the user cache folder
    (``platformdirs.user_cache_path``: ``$XDG_CACHE_HOME/fto-async`` on Linux)."""
    parts = urlsplit(base_url or DEFAULT_BASE_URL)
    netloc = parts.netloc.rpartition("@")[2]  # never user info (refused before, anyway)
    host = re.sub(r"[^A-Za-z0-9.-]+", "_", netloc or "platform")[:60]
    tag = hashlib.sha256((base_url or DEFAULT_BASE_URL).encode()).hexdigest()[:8]
    return platformdirs.user_cache_path("fto-async") / f"reports-{host}-{tag}.db"


#: The lowest ``--qps`` accepted: below it a run of any size would take for ever.
MIN_QPS = 0.01


def qps_arg(text: str) -> float:
    """``--qps``: a number of calls per second, at least :data:`MIN_QPS`."""
    value = _finite(text)
    if value < MIN_QPS:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_QPS} calls per second, "
                                         f"got {text!r}")  # fmt: skip
    return value


def max_calls_arg(text: str) -> int:
    """``--max-calls``: a whole number of calls, at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of calls, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def time_scale_arg(text: str) -> float:
    """``--time-scale``: a factor above 0."""
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text!r}")
    return value


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text[:40]!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def base_url_arg(text: str) -> str:
    """``--base-url``: an http(s) URL of at most 8 KiB, without user info (checked before
    any call)."""
    problem = _base_url_problem(text)
    if problem is not None:  # never echo the URL: it may hold a password
        raise argparse.ArgumentTypeError(problem)
    try:
        return _validate.url("url", text)
    except InvalidRequestError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("url: ")) from None


def follow_up_arg(text: str) -> FollowUp:
    """``--follow-up high:3`` (a level, and an optional top N, default 3) as a FollowUp."""
    level, _, top = text.partition(":")
    try:
        return FollowUp(min_risk=RiskLevel(level), top=int(top) if top else 3)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected LEVEL[:N] with LEVEL high, medium or low and N >= 1, got {text!r}"
        ) from None


def patent_link_arg(text: str) -> str:
    """``--patent-link``: a link template with ``{pn}`` (``http(s)`` only)."""
    from ..outputs._links import check_template

    try:
        return check_template(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def patent_link(args: argparse.Namespace) -> str | None:
    """The link template of a command: ``--patent-link``, else ``FTO_PATENT_LINK``.

    Raises:
        ValueError: ``FTO_PATENT_LINK`` is not a usable template.
    """
    from ..outputs._links import ENV_VAR, template_from_env

    given: str | None = getattr(args, "patent_link", None)
    if given is not None:
        return given
    try:
        return template_from_env()
    except ValueError as exc:
        raise ValueError(f"{ENV_VAR}: {exc}") from None
