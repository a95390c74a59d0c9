"""The ``fto-async`` command: screen a product catalog, resume, inspect and export.

Usage::

    fto-async screen products.csv --out results.jsonl --country US,EU --loc 06-01
    fto-async screen products.csv --out results.jsonl      # again: resumes, pays nothing twice
    fto-async screen products.csv --out results.jsonl --dry-run
    fto-async screen products.csv --out results.jsonl --follow-up high:3   # + 1-vs-1 (AI67)
    fto-async screen products.csv --out results.jsonl --max-age 12h   # or --no-cache
    fto-async status results.jsonl.journal.db
    fto-async export results.jsonl.journal.db --format csv --out results.csv
    fto-async export results.jsonl.journal.db --all   # also rows no longer in the catalog
    fto-async demo                                          # a local emulator, a sample catalog
    fto-async emulator --port 8765 --time-scale 0.1

Credentials come from the environment: ``PATSNAP_API_KEY``, or ``PATSNAP_CLIENT_ID`` and
``PATSNAP_CLIENT_SECRET``; ``PATSNAP_BASE_URL`` and ``PATSNAP_QPS`` are optional (see
:meth:`fto_async.FtoClient.from_env`). The catalog format is described in
``fto_async/_catalog.py`` and in ``fto-async screen --help``.

Exit codes: 0 every row done; 1 some rows failed, were invalid or are unfinished; 2 a
usage, input or configuration error; 3 stopped by a fatal platform error (quota,
balance, credentials); 130 stopped by Ctrl-C or SIGTERM (rerun the same command to
resume).

``status`` and ``export`` only read the journal (see :mod:`fto_async.journal`); ``--out``
never names an input (the catalog, the journal, a catalog image: see ``_paths.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import hashlib
import io
import os
import re
import shlex
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any, Final, TextIO
from urllib.parse import urlsplit

import platformdirs

from .. import _validate
from ..cache import ReportCache
from ..client import FtoClient
from ..config import (
    DEFAULT_BASE_URL,
    DEFAULT_QPS,
    DEFAULT_SUBMIT_LATENCY,
    PollConfig,
    env_settings,
    redact_url_credentials,
)
from ..errors import ConfigurationError, InvalidRequestError
from ..fingerprint import request_fingerprint
from ..followup import FollowUp
from ..journal import ItemState, Journal
from ..models import RiskLevel
from ._catalog import Catalog, CatalogError, check_defaults
from ._display import Section, clean, format_duration, render_sections
from ._paths import clash, same_file, sqlite_files
from ._report import add_report_command, export_xlsx, html_path
from ._results import INVALID_TYPE, atomic_write, records_from_journal, write_csv, write_jsonl
from ._screen import (
    CACHE_SLACK,
    EXIT_OK,
    EXIT_ROWS,
    EXIT_USAGE,
    Job,
    last_run,
    open_journal,
    row_identity,
    run_screen,
    say_error,
    stored_fingerprint,
)

__all__ = ["build_parser", "main"]

_CATALOG_HELP = """\
CATALOG is a CSV file with a header, or JSONL (.jsonl/.ndjson) with the same fields:
  sku or id            the row's key (unique)
  image_url or url     an http(s) URL of the product image
  image_path           a local JPG/PNG (relative to the catalog), uploaded for you
  country, loc         comma lists overriding --country / --loc
  since, lang          override --since / --lang
  main_field, title    a search keyword; the product's name
Bad rows are reported with their line number and skipped. Results go to --out (one
JSON object per row) and a journal (default OUT.journal.db): rerun the same command
after an interruption to resume without paying for anything twice.

Never paying twice: rows asking the same question (same image, same options; a local
image by its file's hash) share one task, and finished reports are kept in a cache
(default: a file per platform in the user cache folder) for --max-age, so screening
the catalog again next week costs no call for what did not change.
"""

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
    host = re.sub(r"[^A-Za-z0-9.-]+", "_", parts.netloc or "platform")[:60]
    tag = hashlib.sha256((base_url or DEFAULT_BASE_URL).encode()).hexdigest()[:8]
    return platformdirs.user_cache_path("fto-async") / f"reports-{host}-{tag}.db"


#: The lowest ``--qps`` accepted: below it a run of any size would take for ever.
MIN_QPS = 0.01


def _qps(text: str) -> float:
    """``--qps``: a number of calls per second, at least :data:`MIN_QPS`."""
    value = _finite(text)
    if value < MIN_QPS:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_QPS} calls per second, "
                                         f"got {text!r}")  # fmt: skip
    return value


def _time_scale(text: str) -> float:
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


def _base_url(text: str) -> str:
    """``--base-url``: an http(s) URL of at most 8 KiB (checked before any call)."""
    try:
        return _validate.url("url", text)
    except InvalidRequestError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("url: ")) from None


def build_parser() -> argparse.ArgumentParser:
    """The ``fto-async`` argument parser (one subcommand per job)."""
    parser = argparse.ArgumentParser(
        prog="fto-async", description="Design-patent FTO screening of product catalogs.",
        epilog="Exit codes: 0 all done, 1 some rows failed, 2 usage/input error, "
               "3 fatal platform error, 130 interrupted.",
    )  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    screen = commands.add_parser(
        "screen", help="screen a catalog (resumable)", description=_CATALOG_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    screen.add_argument("catalog", metavar="CATALOG", type=Path)
    screen.add_argument("--out", required=True, type=Path, help="results file (JSONL)")
    screen.add_argument("--journal", type=Path, help="journal file (default OUT.journal.db)")
    screen.add_argument("--country", help="authority codes, e.g. US,EU (rows may override)")
    screen.add_argument("--lang", default="en", help="report language: en or cn (default en)")
    screen.add_argument("--loc", help="Locarno codes, e.g. 14-02,06-01 (default: all)")
    screen.add_argument("--since", help="first filing date, yyyyMMdd")
    screen.add_argument("--qps", type=_qps,
                        help="the account's QPS, at least 0.01 (default PATSNAP_QPS or 5)")
    screen.add_argument("--base-url", type=_base_url,
                        help="platform URL (default PATSNAP_BASE_URL)")
    screen.add_argument("--image-root", type=Path, metavar="DIR",
                        help="folder image_path files may come from (default: the "
                             "catalog's folder; paths leading outside it are refused)")
    screen.add_argument("--retry-failed", action="store_true",
                        help="submit again the rows whose task failed in an earlier run")
    screen.add_argument("--workflow", action="store_true",
                        help="use the full FTO workflow endpoint (local images sent as base64)")
    screen.add_argument("--dry-run", action="store_true",
                        help="validate the catalog and estimate calls and time; call nothing")
    screen.add_argument("--redis-url", metavar="URL",
                        help="share the account's QPS and daily limit with every process "
                             "through Redis (default: PATSNAP_REDIS_URL; a password in the "
                             "URL is never printed)")
    screen.add_argument("--cache", type=Path, metavar="PATH",
                        help="report cache file (default: one per platform in the user "
                             "cache folder, e.g. ~/.cache/fto-async/)")
    screen.add_argument("--max-age", type=parse_duration, default=DEFAULT_MAX_AGE,
                        metavar="AGE",
                        help="reuse cached reports younger than AGE, e.g. 7d, 12h, 3600s "
                             f"(default {DEFAULT_MAX_AGE})")
    screen.add_argument("--no-cache", action="store_true",
                        help="neither read nor write the report cache")
    screen.add_argument("--unknown", choices=("resubmit", "skip"), default="resubmit",
                        help="rows an earlier run may have submitted before it died "
                             "(default resubmit)")
    screen.add_argument("--time-scale", type=_time_scale, default=1.0,
                        help="scale the poll schedule, for an emulator run with the same "
                             "--time-scale (default 1)")
    screen.add_argument("--no-report", action="store_true",
                        help="do not write the HTML report OUT.html beside --out")
    screen.add_argument("--follow-up", metavar="LEVEL[:N]", type=_follow_up_arg,
                        help="compare each row's top N matches at LEVEL or above (high, "
                             "medium, low) 1-vs-1 with the product image (default N 3)")
    screen.set_defaults(func=_cmd_screen)

    status = commands.add_parser("status", help="show a journal's progress")
    status.add_argument("journal", metavar="JOURNAL", type=Path)
    status.set_defaults(func=_cmd_status)

    export = commands.add_parser("export", help="export a journal's results")
    export.add_argument("journal", metavar="JOURNAL", type=Path)
    export.add_argument("--format", choices=("jsonl", "csv", "xlsx"), default="jsonl",
                        help="xlsx needs --out")
    export.add_argument("--out", type=Path, help="file to write (default: standard output)")
    export.add_argument("--all", action="store_true",
                        help="also rows that were not in the last run's catalog")
    export.set_defaults(func=_cmd_export)

    add_report_command(commands)

    demo = commands.add_parser("demo", help="screen a sample catalog on a local emulator")
    demo.add_argument("--rows", type=int, default=None, help="rows to screen (default: all)")
    demo.add_argument("--time-scale", type=_time_scale, default=0.02,
                      help="emulator speed: 0.02 makes a 30 s task take 0.6 s")
    demo.set_defaults(func=_cmd_demo)

    # The emulator (and aiohttp.web) loads only when this command runs: its options are
    # parsed by the emulator's own parser, the one ``python -m fto_async.emulator`` uses.
    # main() hands ``emulator ...`` straight to it; this entry is for --help.
    commands.add_parser("emulator", help="run the local platform emulator", add_help=False)
    return parser


def _follow_up_arg(text: str) -> FollowUp:
    """``--follow-up high:3`` (a level, and an optional top N, default 3) as a FollowUp."""
    level, _, top = text.partition(":")
    try:
        return FollowUp(min_risk=RiskLevel(level), top=int(top) if top else 3)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected LEVEL[:N] with LEVEL high, medium or low and N >= 1, got {text!r}"
        ) from None


def main(argv: list[str] | None = None) -> int:
    """Run ``fto-async`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["emulator"]:
        return _cmd_emulator(argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    args.argv = argv
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:  # before the signal handlers were in place
        say_error("interrupted")
        return 130
    except BrokenPipeError:  # `fto-async export ... | head`: the reader has gone
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ROWS


# -- screen -------------------------------------------------------------------------------


def _prepare(args: argparse.Namespace) -> Job | None:
    try:
        defaults = check_defaults(args.country, args.lang, args.loc, args.since, args.workflow)
    except InvalidRequestError as exc:
        say_error(str(exc))
        return None
    if not args.out.parent.is_dir():
        say_error(f"--out: the folder {args.out.parent} does not exist")
        return None
    if not os.access(args.out.parent, os.W_OK):
        say_error(f"--out: the folder {args.out.parent} is not writable")
        return None
    if args.image_root is not None and not args.image_root.is_dir():
        say_error(f"--image-root: {args.image_root} is not a folder")
        return None
    catalog = Catalog(args.catalog, defaults, image_root=args.image_root)
    try:
        total = catalog.scan()
    except CatalogError as exc:
        say_error(str(exc))
        return None
    journal = args.journal or args.out.with_name(args.out.name + ".journal.db")
    refused = _output_clash(catalog, args.out, journal)
    if refused is not None:
        say_error(refused)
        return None
    cache: Path | None = None
    if not args.no_cache:
        try:
            base_url = args.base_url or str(env_settings().get("base_url") or "") or None
        except ConfigurationError as exc:
            say_error(str(exc))
            return None
        cache = args.cache or default_cache_path(base_url)
        others = {"the catalog": args.catalog, "--out": args.out, "the journal": journal}
        for name, other in others.items():  # same file: by inode, as for the other outputs
            if same_file(cache.expanduser(), Path(other).expanduser()):
                say_error(f"--cache: {cache} is {name}; give the cache a file of its own")
                return None
    return Job(catalog, total, args.out, journal, unknown_policy=args.unknown,
               resume=shlex.join(["fto-async", *map(redact_url_credentials, args.argv)]),
               report=not args.no_report, follow_up=args.follow_up, cache=cache,
               max_age=args.max_age, retry_failed=args.retry_failed)  # fmt: skip


def _output_clash(catalog: Catalog, out: Path, journal: Path) -> str | None:
    """Why ``--out`` or the journal would overwrite an input (``None``: they would not)."""

    def images() -> Iterator[tuple[str, Path]]:
        for image in catalog.image_paths():
            yield "an image of the catalog", image

    def out_inputs() -> Iterator[tuple[str, Path]]:
        yield "the catalog", catalog.path
        for path in sqlite_files(journal):
            yield "the journal", path
        if out.exists():  # a file that does not exist yet is no image
            yield from images()

    def journal_inputs() -> Iterator[tuple[str, Path]]:
        yield "the catalog", catalog.path
        if journal.exists():
            yield from images()

    refused = clash(("--out", out), out_inputs()) or clash(("--journal", journal),
                                                             journal_inputs())
    if refused is None and _is_sqlite(out):
        refused = (f"--out {out} is a SQLite database (a journal?): an output never "
                   "overwrites one; choose another --out")
    return refused


def _is_sqlite(path: Path) -> bool:
    """Whether ``path`` is an existing SQLite file (a journal of another run, say)."""
    try:
        with path.open("rb") as handle:
            return handle.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def _cmd_screen(args: argparse.Namespace) -> int:
    job = _prepare(args)
    if job is None:
        return EXIT_USAGE
    if args.dry_run:
        return asyncio.run(_dry_run(job, args))

    def make_client() -> FtoClient:
        options: dict[str, Any] = {}
        if args.base_url:
            options["base_url"] = args.base_url
        if args.qps:
            options["qps"] = args.qps
        else:
            env_qps = env_settings().get("qps")
            if isinstance(env_qps, float) and not env_qps >= MIN_QPS:
                raise ConfigurationError(f"PATSNAP_QPS must be at least {MIN_QPS} calls per "
                                         f"second, got {env_qps:g}")  # fmt: skip
        if args.time_scale != 1.0:
            options["poll"] = PollConfig().scaled(args.time_scale)
        if args.redis_url:
            options["redis_url"] = args.redis_url
        return FtoClient.from_env(**options)

    return asyncio.run(run_screen(job, make_client))


async def _dry_run(job: Job, args: argparse.Namespace) -> int:
    """Validate every row and count the calls a run would make; no client, no call."""
    try:
        qps = args.qps or env_settings().get("qps") or DEFAULT_QPS
    except ConfigurationError as exc:
        say_error(str(exc))
        return EXIT_USAGE
    journal = await open_journal(job.journal, readonly=True) if job.journal.exists() else None
    if job.journal.exists() and journal is None:
        return EXIT_USAGE
    # Read-only: a missing cache file is not created by a dry run.
    cache = (ReportCache(job.cache, max_age=job.max_age)
             if job.cache is not None and job.cache.is_file() else None)  # fmt: skip
    count: Counter[str] = Counter()
    seen: set[str] = set()  # fingerprints answered in this run (as the batch shares them)
    distinct: set[str] = set()  # every good row's fingerprint
    uploaded: set[str] = set()  # files uploaded in this run (by digest)
    try:
        for row in job.catalog.rows():
            count["rows"] += 1
            kept = journal.get(row.jkey) if journal is not None and row.image_gone else None
            if kept is not None and kept.state is ItemState.DONE:
                count["finished"] += 1  # the run keeps its result though the image has gone
                continue
            if not row.ok:
                count["invalid"] += 1
                if count["invalid"] <= 50:
                    sys.stderr.write(clean(f"line {row.line}: {row.key or '-'}: {row.error}")
                                     + "\n")
                continue
            jrow = journal.get(row.jkey) if journal is not None else None
            if jrow is not None and row.request is not None and jrow.state is not \
                    ItemState.PENDING and stored_fingerprint(row, jrow) not in (
                        None, request_fingerprint(row.request)):
                count["changed"] += 1  # the run screens it again
                jrow = None
            state = jrow.state if jrow is not None else None
            try:
                fingerprint, digest = await row_identity(row)
            except (OSError, InvalidRequestError) as exc:
                if state not in (ItemState.DONE, ItemState.SUBMITTED, ItemState.FAILED):
                    count["invalid"] += 1
                    sys.stderr.write(f"line {row.line}: {row.key}: cannot read the image "
                                     f"({exc})\n")  # fmt: skip
                    continue
                fingerprint, digest = f"row:{row.jkey}", None  # as the run does
            distinct.add(fingerprint)
            if state is ItemState.DONE or (
                state is ItemState.FAILED and jrow is not None and jrow.error_type != INVALID_TYPE
            ):
                count["finished"] += 1
                count["reported"] += state is ItemState.DONE  # may still need its follow-ups
                if state is ItemState.DONE:
                    seen.add(fingerprint)  # the batch remembers its report for duplicates
                continue
            if job.unknown_policy == "skip" and state in (ItemState.UNKNOWN,
                                                          ItemState.SUBMITTING):
                count["skipped_unknown"] += 1  # left alone: neither submitted nor polled
                continue
            if fingerprint in seen:
                count["shared"] += 1  # shares the task (or report) of an equal row
                continue
            seen.add(fingerprint)
            count["polls"] += 1  # the scheduler's aim: one poll per task
            if state is ItemState.SUBMITTED:
                continue
            if cache is not None and await cache.get(fingerprint,
                                                     max_age=job.max_age - CACHE_SLACK):
                count["cached"] += 1
                count["polls"] -= 1
                continue
            count["submits"] += 1
            if digest is not None and not row.workflow and digest not in uploaded:
                uploaded.add(digest)
                count["uploads"] += 1
    finally:
        if journal is not None:
            await journal.close()
        if cache is not None:
            await cache.aclose()
    calls = count["submits"] + count["polls"] + count["uploads"]
    # Follow-ups depend on the reports: none, or up to N per row, a submit and a poll each.
    follow_up_max = (count["polls"] + count["reported"]) * job.follow_up.top * 2 \
        if job.follow_up is not None else 0
    task = PollConfig().initial_estimate
    seconds = calls / float(qps) + (DEFAULT_SUBMIT_LATENCY + task if calls else 0)
    sections = [Section("Dry run (no call made)", ["", "rows"], [
        ["rows", str(count["rows"])], ["invalid (skipped)", str(count["invalid"])],
        ["already finished (journal)", str(count["finished"])],
        *([["unknown, skipped (--unknown skip)", str(count["skipped_unknown"])]]
          if count["skipped_unknown"] else []),
        *([["changed since the last run (submitted again)", str(count["changed"])]]
          if count["changed"] else []),
        ["shared with an equal row", str(count["shared"])],
        ["from the cache", str(count["cached"])],
        ["to submit", str(count["submits"])],
    ])]  # fmt: skip
    footer = [
        ("calls needed", f"about {calls} (submits {count['submits']}, polls ~{count['polls']}, "
                         f"uploads {count['uploads']})"),
        ("time at", f"{qps:g} QPS: about {format_duration(seconds)} (calls / QPS, plus "
                    f"~{DEFAULT_SUBMIT_LATENCY + task:.0f} s for the last submit and task)"),
        *([("follow-up calls", f"0 .. {follow_up_max} (up to {job.follow_up.top} per row "
                                f"at {job.follow_up.min_risk.value} risk or above, a submit "
                                "and a poll each; depends on the reports)")]
          if job.follow_up is not None else []),
        ("requests", f"{count['rows']} rows, {len(distinct)} distinct requests, "
                     f"{count['cached']} from cache, calls needed {calls}"),
        ("cache", _cache_line(job)),
        ("output", str(job.out)), ("journal", str(job.journal)),
    ]  # fmt: skip
    render_sections(sections, footer, sys.stdout)
    return EXIT_ROWS if count["invalid"] else EXIT_OK


def _cache_line(job: Job) -> str:
    if job.cache is None:
        return "off (--no-cache)"
    return f"{job.cache} (reports younger than {format_duration(job.max_age)})"


# -- status and export --------------------------------------------------------------------


def _cmd_status(args: argparse.Namespace) -> int:
    if not args.journal.is_file():
        say_error(f"no journal at {args.journal}")
        return EXIT_USAGE
    return asyncio.run(_status(args.journal))


async def _status(path: Path) -> int:
    journal = await open_journal(path, readonly=True)
    if journal is None:
        return EXIT_USAGE
    live = Journal.is_held(path)  # else rows left `submitting` are from a run that died
    died = 0
    try:
        run = last_run(journal)
        outside = journal.count_before_run(run) if run else 0
        states: Counter[str] = Counter()
        failures: Counter[str] = Counter()
        oldest: tuple[float, str, str] | None = None
        last = 0.0
        shared = 0  # rows answered by another row's task or a cached report (attempts 0)
        for row in journal.rows():
            shared += row.task_id is not None and row.attempts == 0
            name = str(row.state)
            if row.state is ItemState.FAILED:
                name = "invalid" if row.error_type == INVALID_TYPE else "failed"
                failures[row.error_type or "error"] += 1
            if row.state is ItemState.SUBMITTING and not live:
                name = "unknown"
                died += 1
            states[name] += 1
            last = max(last, row.updated_at)
            if row.state is ItemState.SUBMITTED and row.submitted_at is not None and (
                oldest is None or row.submitted_at < oldest[0]
            ):
                oldest = (row.submitted_at, row.key, row.task_id or "?")
        follow_ups = {str(k): n for k, n in journal.follow_up_counts().items() if n}
    finally:
        await journal.close()
    order = ("done", "failed", "invalid", "pending", "submitting", "submitted", "unknown")
    rows = [[name, str(states[name])] for name in order if states[name]]
    rows.append(["total", str(sum(states.values()))])
    sections = [Section(f"Journal {path}", ["state", "items"], rows)]
    if follow_ups:
        sections.append(Section("Follow-ups (1-vs-1)", ["state", "patents"],
                                [[k, str(n)] for k, n in sorted(follow_ups.items())]))
    if failures:
        sections.append(Section("Failures by type", ["error", "items"],
                                [[k, str(n)] for k, n in failures.most_common()]))
    now = time.time()
    footer = [("last activity", f"{format_duration(now - last)} ago" if last else "never")]
    if shared:
        footer.append(("shared", f"{shared} rows share the task of an equal row or a cached "
                                 "report (never submitted by themselves)"))
    if oldest is not None:
        footer.append(("oldest unfinished task", f"{oldest[1]} (task {oldest[2]}), submitted "
                                              f"{format_duration(now - oldest[0])} ago"))
    if states["submitting"]:
        footer.append(("submitting", f"{states['submitting']} items are being submitted by "
                       "the run that holds the journal"))
    if states["unknown"]:
        footer.append(("unknown", f"{states['unknown']} items may hold a task on the platform "
                       f"({died} left mid-submit by a run that died); the next run resubmits "
                       "them unless --unknown skip"))
    if outside:
        footer.append(("not in the last run", f"{outside} items were not in the last run's "
                       "catalog (export leaves them out unless --all)"))
    render_sections(sections, footer, sys.stdout)
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    if not args.journal.is_file():
        say_error(f"no journal at {args.journal}")
        return EXIT_USAGE
    if args.out is not None:
        journal_files = (("the journal", path) for path in sqlite_files(args.journal))
        refused = clash(("--out", args.out), journal_files)
        if refused is not None:
            say_error(refused)
            return EXIT_USAGE
    if args.format == "xlsx":
        if args.out is None:
            say_error("--format xlsx needs --out FILE.xlsx")
            return EXIT_USAGE
        return export_xlsx(args.journal, args.out)
    return asyncio.run(_export(args.journal, args.format, args.out, everything=args.all))


async def _export(path: Path, fmt: str, out: Path | None, *, everything: bool = False) -> int:
    journal = await open_journal(path, readonly=True)
    if journal is None:
        return EXIT_USAGE
    try:
        since = None if everything else last_run(journal) or None
        if out is None:
            _write_records(journal, fmt, sys.stdout, since)
        else:
            try:
                with atomic_write(out) as handle:
                    _write_records(journal, fmt, handle, since)
            except OSError as exc:
                say_error(f"cannot write {out}: {exc.strerror or exc}")
                return EXIT_USAGE
        outside = journal.count_before_run(since) if since else 0
    finally:
        await journal.close()
    if outside:
        say_error(f"{outside} rows in the journal were not in the last run's catalog; "
                  "left out (use --all to include)")
    return EXIT_OK


def _write_records(journal: Journal, fmt: str, handle: TextIO, since_run: int | None) -> None:
    records = records_from_journal(journal, since_run=since_run)
    (write_csv if fmt == "csv" else write_jsonl)(records, handle)


# -- demo and emulator --------------------------------------------------------------------


def _demo_catalog(folder: Path, rows: int | None) -> Path:
    """Write the bundled sample catalog (first ``rows`` rows, repeated if more) to ``folder``."""
    text = resources.files("fto_async").joinpath("data/sample_catalog.csv").read_text("utf-8")
    reader = csv.DictReader(io.StringIO(text))
    sample = list(reader)
    wanted = len(sample) if rows is None else max(1, rows)
    path = folder / "catalog.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=reader.fieldnames or [])
        writer.writeheader()
        for n in range(wanted):
            row = dict(sample[n % len(sample)])
            copy = n // len(sample)
            if copy:
                row["sku"] = f"{row['sku']}-{copy + 1}"
                row["image_url"] = f"{row['image_url']}?copy={copy + 1}" if row["image_url"] else ""
            writer.writerow(row)
    return path


def _cmd_demo(args: argparse.Namespace) -> int:
    from ..emulator import Emulator, EmulatorConfig

    scale = args.time_scale
    folder = Path(tempfile.mkdtemp(prefix="fto-async-demo-"))
    catalog = Catalog(_demo_catalog(folder, args.rows), check_defaults("US", "en", None, None,
                                                                        False))  # fmt: skip
    out = folder / "results.jsonl"
    job = Job(catalog, catalog.scan(), out, folder / "results.jsonl.journal.db",
              resume="fto-async demo (a demo does not resume; it starts afresh)",
              follow_up=FollowUp(min_risk=RiskLevel.HIGH, top=1),
              cache=folder / "reports.cache.db")  # fmt: skip  # never the user's cache
    config = EmulatorConfig(time_scale=scale, qps=20, fail_rate=0.05, task_duration_sigma=0.4,
                            seed=7)  # fmt: skip

    async def demo() -> int:
        async with Emulator(config) as emu:
            sys.stderr.write(f"fto-async demo: emulator at {emu.base_url} (time scale {scale}), "
                             f"{job.total} catalog rows\n")  # fmt: skip
            return await run_screen(job, lambda: FtoClient(
                api_key="sk-demo", base_url=emu.base_url, qps=20,
                poll=PollConfig().scaled(scale),
            ))  # fmt: skip

    code = asyncio.run(demo())
    sys.stdout.write(f"\nDemo files in {folder}:\n  catalog  {catalog.path}\n  results  {out}\n"
                     f"  journal  {job.journal}\n  report   {html_path(out)}\n"
                     f"Try: fto-async status {job.journal}\n")
    return EXIT_OK if code in (EXIT_OK, EXIT_ROWS) else code  # failed rows are part of the show


def _cmd_emulator(argv: list[str]) -> int:
    from ..emulator._cli import main as emulator_main

    return emulator_main(argv, prog="fto-async emulator")
