"""The ``fto-async`` command: screen a product catalog, resume, inspect and export.

Usage::

    fto-async screen products.csv --out results.jsonl --country US,EU --loc 06-01
    fto-async screen products.csv --out results.jsonl      # again: resumes, pays nothing twice
    fto-async screen products.csv --out results.jsonl --dry-run
    fto-async screen products.csv --out results.jsonl --follow-up high:3   # + 1-vs-1 (AI67)
    fto-async screen products.csv --out results.jsonl --max-age 12h   # or --no-cache
    fto-async status results.jsonl.journal.db
    fto-async usage results.jsonl.journal.db --json      # calls per run and per path
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
balance, credentials); 4 the ``--max-calls`` budget is spent (the rest is left pending;
rerun the same command to go on); 130 stopped by Ctrl-C or SIGTERM (rerun the same
command to resume).

``status`` and ``export`` only read the journal (see :mod:`fto_async.journal`); ``--out``
never names an input (the catalog, the journal, a catalog image: see ``_paths.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..client import FtoClient
from ..config import PollConfig, env_settings
from ..errors import ConfigurationError
from ._args import (
    DEFAULT_MAX_AGE,
    MIN_QPS,
    base_url_arg,
    follow_up_arg,
    max_calls_arg,
    parse_duration,
    patent_link_arg,
    qps_arg,
    time_scale_arg,
)
from ._common import EXIT_ROWS, EXIT_USAGE, say_error
from ._demo import cmd_demo
from ._doctor import add_doctor_command
from ._dryrun import dry_run
from ._export import cmd_export
from ._job import prepare
from ._machine import FAIL_ON
from ._report import add_report_command
from ._screen import run_screen
from ._status import cmd_status
from ._usage import add_usage_command

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


_LINK_HELP = ("link each patent to TEMPLATE, an http(s) URL with {pn} and optionally "
              "{authority}, e.g. 'https://patents.google.com/patent/{pn}' (default: "
              "FTO_PATENT_LINK, else Google Patents, and EUIPO eSearch for EU designs)")


def build_parser() -> argparse.ArgumentParser:
    """The ``fto-async`` argument parser (one subcommand per job)."""
    parser = argparse.ArgumentParser(
        prog="fto-async", description="Design-patent FTO screening of product catalogs.",
        epilog="Exit codes: 0 all done, 1 some rows failed, 2 usage/input error, "
               "3 fatal platform error, 4 call budget spent, 130 interrupted.",
    )  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    screen = commands.add_parser(
        "screen", help="screen a catalog (resumable)", description=_CATALOG_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    screen.add_argument("catalog", metavar="CATALOG", type=Path,
                        help="CSV or JSONL catalog; - reads it from stdin")
    screen.add_argument("--out", required=True, type=Path,
                        help="results file (JSONL); - writes the records to stdout")
    screen.add_argument("--journal", type=Path, help="journal file (default OUT.journal.db; "
                        "for stdin or a stream, one in the user cache folder)")
    screen.add_argument("--country", help="authority codes, e.g. US,EU (rows may override)")
    screen.add_argument("--lang", default="en", help="report language: en or cn (default en)")
    screen.add_argument("--loc", help="Locarno codes, e.g. 14-02,06-01 (default: all)")
    screen.add_argument("--since", help="first filing date, yyyyMMdd")
    screen.add_argument("--qps", type=qps_arg,
                        help="the account's QPS, at least 0.01 (default PATSNAP_QPS or 5)")
    screen.add_argument("--base-url", type=base_url_arg,
                        help="platform URL (default PATSNAP_BASE_URL)")
    screen.add_argument("--image-root", type=Path, metavar="DIR",
                        help="folder image_path files may come from (default: the "
                             "catalog's folder; paths leading outside it are refused)")
    screen.add_argument("--retry-failed", action="store_true",
                        help="submit again the rows whose task failed in an earlier run")
    screen.add_argument("--workflow", action="store_true",
                        help="use the full FTO workflow endpoint (local images sent as base64)")
    screen.add_argument("--max-calls", type=max_calls_arg, metavar="N",
                        help="spend at most N calls in this run (default PATSNAP_MAX_CALLS): "
                             "new rows stop early enough that every paid task is still "
                             "polled; exit code 4, rerun to go on")
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
    screen.add_argument("--shared-cache", action="store_true",
                        help="keep the report cache in Redis (--redis-url) instead of a "
                             "file: processes screening overlapping catalogs pay once per "
                             "distinct question")
    screen.add_argument("--unknown", choices=("resubmit", "skip"), default="resubmit",
                        help="rows an earlier run may have submitted before it died "
                             "(default resubmit)")
    screen.add_argument("--time-scale", type=time_scale_arg, default=1.0,
                        help="scale the poll schedule, for an emulator run with the same "
                             "--time-scale (default 1)")
    screen.add_argument("--no-report", action="store_true",
                        help="do not write the HTML report OUT.html beside --out")
    screen.add_argument("--follow-up", metavar="LEVEL[:N]", type=follow_up_arg,
                        help="compare each row's top N matches at LEVEL or above (high, "
                             "medium, low) 1-vs-1 with the product image (default N 3)")
    screen.add_argument("--rescreen", action="store_true",
                        help="screen every row again, done rows included (the report cache "
                             "is not read; each earlier result moves to the journal's "
                             "history, and the outputs say what is new since it)")
    screen.add_argument("--patent-link", type=patent_link_arg, metavar="TEMPLATE",
                        help=_LINK_HELP)
    screen.add_argument("--fail-on", choices=FAIL_ON, default=None,
                        help="which rows make the exit code 1: invalid (default: any row "
                             "not done), failed (failed or unfinished rows; invalid ones "
                             "alone exit 0) or never; a dry run fails only with invalid. "
                             "Codes 2, 3, 4 and 130 keep their meaning")
    screen.add_argument("--summary-json", type=Path, metavar="PATH",
                        help="also write the end-of-run summary to PATH as JSON (exit "
                             "code, rows by status and risk, calls, cache hits, outputs)")
    screen.set_defaults(func=_cmd_screen)

    status = commands.add_parser("status", help="show a journal's progress")
    status.add_argument("journal", metavar="JOURNAL", type=Path)
    status.set_defaults(func=cmd_status)

    export = commands.add_parser("export", help="export a journal's results")
    export.add_argument("journal", metavar="JOURNAL", type=Path)
    export.add_argument("--format", choices=("jsonl", "csv", "xlsx"), default="jsonl",
                        help="xlsx needs --out")
    export.add_argument("--out", type=Path, help="file to write (default: standard output)")
    export.add_argument("--all", action="store_true",
                        help="also rows that were not in the last run's catalog")
    export.add_argument("--catalog", type=Path,
                        help="the catalog, for product titles and local image paths")
    export.add_argument("--live-only", action="store_true",
                        help="leave out matched designs whose right is invalid (lapsed); "
                             "the platform's highest risk is kept as it is")
    export.add_argument("--changed", action="store_true",
                        help="only the rows whose result changed since their previous "
                             "screening (new or dropped matches, risk up or down)")
    export.add_argument("--patent-link", type=patent_link_arg, metavar="TEMPLATE",
                        help=_LINK_HELP)
    export.set_defaults(func=cmd_export)

    add_report_command(commands)
    add_doctor_command(commands)
    add_usage_command(commands)

    demo = commands.add_parser("demo", help="screen a sample catalog on a local emulator")
    demo.add_argument("--rows", type=int, default=None, help="rows to screen (default: all)")
    demo.add_argument("--time-scale", type=time_scale_arg, default=0.02,
                      help="emulator speed: 0.02 makes a 30 s task take 0.6 s")
    demo.set_defaults(func=cmd_demo)

    # The emulator (and aiohttp.web) loads only when this command runs: its options are
    # parsed by the emulator's own parser, the one ``python -m fto_async.emulator`` uses.
    # main() hands ``emulator ...`` straight to it; this entry is for --help.
    commands.add_parser("emulator", help="run the local platform emulator", add_help=False)
    return parser


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


def _cmd_screen(args: argparse.Namespace) -> int:
    job = prepare(args)
    if job is None:
        return EXIT_USAGE
    if args.dry_run:
        return asyncio.run(dry_run(job, args))

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
        if args.max_calls:
            options["max_calls"] = args.max_calls  # else PATSNAP_MAX_CALLS, if set
        return FtoClient.from_env(**options)

    return asyncio.run(run_screen(job, make_client))


# -- emulator -----------------------------------------------------------------------------


def _cmd_emulator(argv: list[str]) -> int:
    from ..emulator._cli import main as emulator_main

    return emulator_main(argv, prog="fto-async emulator")
