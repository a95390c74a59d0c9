"""``fto-async doctor``: does this setup work, before a 10,000-row catalog runs? Private.

One line per check, ✔ or ✘ and what to do; ``--json`` prints the same as one JSON object.
No check spends a billable task:

* **credentials**: one cheap authenticated call, a poll of the image-search report path
  with a dummy task id (OAuth: the token is issued first). ``68300004`` ("task_id does not
  exist") means the credentials were accepted.
* **platform**: reachability, TLS and the latency of that call.
* **paths**: each kind's submit path (an empty body, which the platform refuses before any
  task exists) and result path (the dummy task id) exist: ``67200101`` means absent
  (reference §3.2: the workflow result path is unpublished; set ``workflow_result_path``),
  ``68300004``, a validation error or a task answer means present.
* **clock**: the platform's ``Date`` header against the local clock.
* **folders**: the report cache folder (and ``--journal``'s) is writable and not
  world-writable.
* **redis**: answers a PING, when ``--redis-url`` / ``PATSNAP_REDIS_URL`` is set.

Exit codes: 0 when every check passes, 3 when credentials or the platform fail, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import stat
import sys
import tempfile
import time
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import attrs
import platformdirs

from .._kinds import KINDS
from ..client import FtoClient
from ..config import RetryConfig, env_settings
from ..errors import (
    ApiError,
    AuthenticationError,
    ConfigurationError,
    FtoError,
    InvalidParameterError,
    PathNotFoundError,
    TLSError,
    TransportError,
)
from ..transport import redact_url
from ._common import EXIT_FATAL, EXIT_OK, EXIT_ROWS
from ._display import clean

__all__ = ["Check", "add_doctor_command", "run_checks"]

#: ``doctor --help``: the module docstring without its first line and its markup.
_DESCRIPTION: Final = (__doc__ or "").split("\n\n", 1)[-1].replace("``", "").replace("**", "")
#: A task id no platform has issued: polls of it never touch a real task.
DUMMY_TASK_ID: Final = "00000000-0000-0000-0000-000000000000"
#: Clock skew, in seconds, beyond which the clock check fails.
MAX_SKEW: Final = 60.0
#: Latency, in seconds, of the probe call beyond which the platform check warns in its line.
SLOW: Final = 10.0


@attrs.frozen
class Check:
    """One check's outcome (private to the CLI).

    Attributes:
        name: what was checked (``credentials``, ``path workflow result``, ...).
        ok: whether it passed.
        detail: what was found.
        fix: what to do about it (empty when ``ok``).
        fatal: a failure of credentials or the platform (exit 3), not of the setup (1).
    """

    name: str
    ok: bool
    detail: str
    fix: str = ""
    fatal: bool = False


def add_doctor_command(commands: Any) -> None:
    """Add ``fto-async doctor [--json] [--base-url URL] [--journal PATH] [--redis-url URL]``."""
    doctor = commands.add_parser(
        "doctor", help="check credentials, platform, paths, clock, folders and Redis",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    doctor.add_argument("--json", action="store_true", help="print one JSON object")
    doctor.add_argument("--base-url", help="platform URL (default PATSNAP_BASE_URL)")
    doctor.add_argument("--workflow-result-path", metavar="PATH",
                        help="a candidate result path of workflow tasks to probe")
    doctor.add_argument("--journal", type=Path, help="a journal file whose folder to check")
    doctor.add_argument("--cache", type=Path, help="the report cache file whose folder to check")
    doctor.add_argument("--redis-url", metavar="URL",
                        help="Redis of a shared rate gate (default PATSNAP_REDIS_URL)")
    doctor.add_argument("--timeout", type=float, default=15.0,
                        help="seconds per probe call (default 15)")
    doctor.set_defaults(func=_cmd_doctor)


def _cmd_doctor(args: argparse.Namespace) -> int:
    checks = asyncio.run(run_checks(args))
    if args.json:
        sys.stdout.write(json.dumps({"ok": all(c.ok for c in checks),
                                     "checks": [attrs.asdict(c) for c in checks]},
                                    ensure_ascii=False) + "\n")  # fmt: skip
    else:
        for c in checks:
            mark = "✔" if c.ok else "✘"
            line = f"{mark} {c.name}: {clean(c.detail)}"
            if c.fix:
                line += f"\n    -> {clean(c.fix)}"
            sys.stdout.write(line + "\n")
    if all(c.ok for c in checks):
        return EXIT_OK
    return EXIT_FATAL if any(c.fatal and not c.ok for c in checks) else EXIT_ROWS


async def run_checks(args: argparse.Namespace) -> list[Check]:
    """Run every check in order; the platform checks stop at the first fatal failure."""
    checks: list[Check] = []
    options: dict[str, Any] = {"retry": RetryConfig(max_attempts=1), "timeout": args.timeout}
    if args.base_url:
        options["base_url"] = args.base_url
    if args.workflow_result_path:
        options["workflow_result_path"] = args.workflow_result_path
    try:
        client = FtoClient.from_env(**options)
    except ConfigurationError as exc:
        checks.append(Check("credentials", False, str(exc),
                            "set PATSNAP_API_KEY (an sk- key) or PATSNAP_CLIENT_ID and "
                            "PATSNAP_CLIENT_SECRET", fatal=True))  # fmt: skip
    else:
        async with client:
            checks += await _platform_checks(client)
    checks += _folder_checks(args)
    redis_url = args.redis_url or env_settings().get("redis_url")
    if isinstance(redis_url, str) and redis_url:
        checks.append(await _redis_check(redis_url))
    return checks


async def _probe(client: FtoClient, path: str, payload: dict[str, Any]) -> FtoError | None:
    """One call; its error (``None``: an ordinary answer)."""
    try:
        await client.transport.call(path, payload)
    except FtoError as exc:
        return exc
    return None


async def _platform_checks(client: FtoClient) -> list[Check]:
    base = redact_url(client.config.base_url)
    started = time.monotonic()
    first = await _probe(client, KINDS["image_search"].result_path, {"task_id": DUMMY_TASK_ID})
    elapsed = time.monotonic() - started
    if isinstance(first, TLSError):
        return [Check("platform", False, f"TLS refused at {base}: {first}",
                      "check the system CA store or the proxy that intercepts TLS",
                      fatal=True)]  # fmt: skip
    if isinstance(first, TransportError):
        return [Check("platform", False, f"no answer from {base}: {first}",
                      "check PATSNAP_BASE_URL, the network, a proxy or firewall",
                      fatal=True)]  # fmt: skip
    scheme = "https (TLS verified)" if base.startswith("https") else "http (no TLS)"
    slow = f"; slow (over {SLOW:g} s)" if elapsed > SLOW else ""
    checks = [Check("platform", True, f"{base} answered in {elapsed * 1000:.0f} ms, "
                    f"{scheme}{slow}")]  # fmt: skip
    if isinstance(first, AuthenticationError):
        checks.append(Check("credentials", False, f"refused: {first}",
                            "check the key or the client id and secret (and key_auth / "
                            "PATSNAP_KEY_AUTH behind a proxy)", fatal=True))  # fmt: skip
        return checks
    if first is not None and not isinstance(first, InvalidParameterError | PathNotFoundError):
        checks.append(Check("credentials", False, f"the platform answered: {first}",
                            "see the message: quota, balance or permission of the account",
                            fatal=True))  # fmt: skip
        return checks
    kind = "token issued" if client.transport.stats.token_requests else "sk- key accepted"
    checks.append(Check("credentials", True, f"{kind} (one poll of a dummy task id)"))
    checks.append(_clock_check(client.transport.server_date))
    for task_kind, kind_row in KINDS.items():
        submit = kind_row.submit_path
        checks.append(_path_check(f"path {task_kind} submit", submit,
                                  await _probe(client, submit, {})))  # fmt: skip
        result = client.report_path(task_kind)
        checks.append(_path_check(f"path {task_kind} result", result,
                                  await _probe(client, result, {"task_id": DUMMY_TASK_ID}),
                                  workflow=task_kind == "workflow"))  # fmt: skip
    return checks


def _path_check(name: str, path: str, error: FtoError | None, *, workflow: bool = False) -> Check:
    if isinstance(error, PathNotFoundError):
        fix = (
            "the workflow result path is unpublished (reference §3.2): pass "
            "FtoClient(workflow_result_path=...) with the right one; try candidates with "
            "fto-async doctor --workflow-result-path PATH"
            if workflow
            else "this SDK's path is not on this platform: check PATSNAP_BASE_URL"
        )
        return Check(name, False, f"{path} answered 67200101 (absent)", fix, fatal=True)
    if error is None or isinstance(error, InvalidParameterError):
        return Check(name, True, f"{path} present")
    if isinstance(error, ApiError) and not error.fatal:
        return Check(name, True, f"{path} present (answered: {error})")
    return Check(name, False, f"{path}: {error}", "see the message", fatal=True)


def _clock_check(date: str | None) -> Check:
    if not date:
        return Check("clock", True, "the platform sent no Date header: not checked")
    try:
        skew = time.time() - parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        return Check("clock", True, f"unreadable Date header {date!r}: not checked")
    if abs(skew) > MAX_SKEW:
        return Check("clock", False, f"the local clock is {skew:+.0f} s off the platform's",
                     "synchronise the clock (NTP): tokens and report dates depend on it")
    return Check("clock", True, f"within {abs(skew):.0f} s of the platform's")


def _folder_checks(args: argparse.Namespace) -> list[Check]:
    folders = [("cache folder", (args.cache.parent if args.cache
                                 else platformdirs.user_cache_path("fto-async")))]
    if args.journal:
        folders.append(("journal folder", args.journal.parent))
    return [_folder_check(name, Path(folder)) for name, folder in folders]


def _folder_check(name: str, folder: Path) -> Check:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent  # the folder is created on first use: check where it would go
    try:
        mode = probe.stat().st_mode
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".fto-doctor-"):
            pass
    except OSError as exc:
        return Check(name, False, f"{folder} is not writable ({exc.strerror or exc})",
                     "choose another folder (--cache / --journal) or fix its permissions")
    if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
        return Check(name, False, f"{probe} is world-writable",
                     f"chmod o-w {probe}: anyone could replace the journal or cache")
    where = "" if probe == folder else f" (created on first use inside {probe})"
    return Check(name, True, f"{folder} writable{where}")


async def _redis_check(url: str) -> Check:
    try:
        shown = _redis_shown(url)
    except ValueError:
        shown = "the Redis URL"
    try:
        import redis.asyncio as redis_asyncio
    except ImportError:
        return Check("redis", False, "redis-py is not installed",
                     "pip install 'fto-async[redis]'")  # fmt: skip
    client = redis_asyncio.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        await client.ping()
    except Exception as exc:  # any failure of redis-py means "not usable"
        return Check("redis", False, f"{shown} did not answer PING ({type(exc).__name__})",
                     "check --redis-url / PATSNAP_REDIS_URL and that Redis runs")
    finally:
        await client.aclose()
    return Check("redis", True, f"{shown} answered PING")


def _redis_shown(url: str) -> str:
    """``url`` as scheme, host, port and database only: never a user, password or query."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"
