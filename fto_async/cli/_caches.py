"""The run's report cache: the SQLite file, the shared one in Redis (``--shared-cache``)
or none, opened before any call (a cache that cannot open is exit 2, said why), and how
the summary names it. Strictly private to :mod:`fto_async.cli`."""

from __future__ import annotations

import sqlite3
from typing import Literal

from ..cache import AnswerCache, ReportCache
from ..config import redact_url_credentials
from ..errors import ConfigurationError, SharedCacheError
from ._common import say_error
from ._job import Job

__all__ = ["cache_text", "open_cache"]


async def _open_shared(job: Job, url: str) -> AnswerCache | Literal[False]:
    """``--shared-cache``: the cache in Redis, or ``False`` after saying why not (the URL
    redacted)."""
    from ..rediscache import RedisReportCache

    try:
        cache = RedisReportCache(url, max_age=0.0 if job.rescreen else job.max_age)
    except ConfigurationError as exc:
        say_error(f"--shared-cache: {exc}")
        return False
    try:
        await cache.ping()
    except SharedCacheError as exc:
        await cache.aclose()
        say_error(f"{exc} (or run without --shared-cache)")
        return False
    return cache


async def open_cache(job: Job) -> AnswerCache | Literal[False] | None:
    """The run's report cache (``None``: off), or ``False`` after saying why it cannot open.

    ``--rescreen`` opens it with a max age of 0: no report is read from it, new ones are
    written."""
    if job.shared_cache is not None:
        return await _open_shared(job, job.shared_cache)
    if job.cache is None:
        return None
    cache = ReportCache(job.cache, max_age=0.0 if job.rescreen else job.max_age)
    try:
        await cache.get("v1:probe")  # creates the file and its table, or fails now
        if cache.last_error is not None:
            raise cache.last_error
    except (OSError, sqlite3.Error, RuntimeError) as exc:
        await cache.aclose()
        say_error(f"cannot open the report cache {job.cache}: {exc} (or run with --no-cache)")
        return False
    return cache


def cache_text(job: Job) -> str:
    """How the summary names the run's cache (a Redis URL redacted)."""
    if job.shared_cache is not None:
        shown = redact_url_credentials(job.shared_cache)
        return f"Redis {shown} (shared; reports younger than {job.max_age:g} s reused)"
    if job.cache is None:
        return "off (--no-cache)"
    if job.rescreen:
        return f"{job.cache} (not read: --rescreen; new reports written)"
    days = job.max_age / 86400
    age = f"{days:g} d" if days >= 1 else f"{job.max_age / 3600:g} h"
    return f"{job.cache} (reports younger than {age} reused)"
