"""The ``fto-async`` command: screen a product catalog, resume, inspect and export.

Usage::

    fto-async screen products.csv --out results.jsonl --country US,EU --loc 06-01
    fto-async screen products.csv --out results.jsonl      # again: resumes, pays nothing twice
    fto-async screen products.csv --out results.jsonl --dry-run
    fto-async status results.jsonl.journal.db
    fto-async export results.jsonl.journal.db --format csv --out results.csv
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
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import os
import shlex
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from ..client import FtoClient
from ..config import (
    DEFAULT_QPS,
    DEFAULT_SUBMIT_LATENCY,
    PollConfig,
    env_settings,
    redact_url_credentials,
)
from ..errors import ConfigurationError, InvalidRequestError
from ..journal import ItemState, Journal
from ._catalog import Catalog, CatalogError, check_defaults
from ._display import Section, format_duration, render_sections
from ._report import add_report_command, export_xlsx, html_path
from ._results import INVALID_TYPE, atomic_write, records_from_journal, write_csv, write_jsonl
from ._screen import (
    EXIT_OK,
    EXIT_ROWS,
    EXIT_USAGE,
    Job,
    open_journal,
    run_screen,
    say_error,
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
"""


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
    screen.add_argument("--qps", type=float, help="the account's QPS (default PATSNAP_QPS or 5)")
    screen.add_argument("--base-url", help="platform URL (default PATSNAP_BASE_URL)")
    screen.add_argument("--workflow", action="store_true",
                        help="use the full FTO workflow endpoint (local images sent as base64)")
    screen.add_argument("--dry-run", action="store_true",
                        help="validate the catalog and estimate calls and time; call nothing")
    screen.add_argument("--redis-url", metavar="URL",
                        help="share the account's QPS and daily limit with every process "
                             "through Redis (default: PATSNAP_REDIS_URL; a password in the "
                             "URL is never printed)")
    screen.add_argument("--unknown", choices=("resubmit", "skip"), default="resubmit",
                        help="rows an earlier run may have submitted before it died "
                             "(default resubmit)")
    screen.add_argument("--time-scale", type=float, default=1.0,
                        help="scale the poll schedule, for an emulator run with the same "
                             "--time-scale (default 1)")
    screen.add_argument("--no-report", action="store_true",
                        help="do not write the HTML report OUT.html beside --out")
    screen.set_defaults(func=_cmd_screen)

    status = commands.add_parser("status", help="show a journal's progress")
    status.add_argument("journal", metavar="JOURNAL", type=Path)
    status.set_defaults(func=_cmd_status)

    export = commands.add_parser("export", help="export a journal's results")
    export.add_argument("journal", metavar="JOURNAL", type=Path)
    export.add_argument("--format", choices=("jsonl", "csv", "xlsx"), default="jsonl",
                        help="xlsx needs --out")
    export.add_argument("--out", type=Path, help="file to write (default: standard output)")
    export.set_defaults(func=_cmd_export)

    add_report_command(commands)

    demo = commands.add_parser("demo", help="screen a sample catalog on a local emulator")
    demo.add_argument("--rows", type=int, default=None, help="rows to screen (default: all)")
    demo.add_argument("--time-scale", type=float, default=0.02,
                      help="emulator speed: 0.02 makes a 30 s task take 0.6 s")
    demo.set_defaults(func=_cmd_demo)

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


def _prepare(args: argparse.Namespace) -> Job | None:
    try:
        defaults = check_defaults(args.country, args.lang, args.loc, args.since, args.workflow)
    except InvalidRequestError as exc:
        say_error(str(exc))
        return None
    if not args.out.parent.is_dir():
        say_error(f"--out: the folder {args.out.parent} does not exist")
        return None
    catalog = Catalog(args.catalog, defaults)
    try:
        total = catalog.scan()
    except CatalogError as exc:
        say_error(str(exc))
        return None
    journal = args.journal or args.out.with_name(args.out.name + ".journal.db")
    return Job(catalog, total, args.out, journal, unknown_policy=args.unknown,
               resume=shlex.join(["fto-async", *map(redact_url_credentials, args.argv)]),
               report=not args.no_report)  # fmt: skip


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
    journal = await open_journal(job.journal) if job.journal.exists() else None
    count: Counter[str] = Counter()
    try:
        for row in job.catalog.rows():
            count["rows"] += 1
            if not row.ok:
                count["invalid"] += 1
                if count["invalid"] <= 50:
                    sys.stderr.write(f"line {row.line}: {row.key or '-'}: {row.error}\n")
                continue
            jrow = journal.get(row.jkey) if journal is not None else None
            state = jrow.state if jrow is not None else None
            if state is ItemState.DONE or (
                state is ItemState.FAILED and jrow is not None and jrow.error_type != INVALID_TYPE
            ):
                count["finished"] += 1
                continue
            if job.unknown_policy == "skip" and state in (ItemState.UNKNOWN,
                                                          ItemState.SUBMITTING):
                count["skipped_unknown"] += 1  # left alone: neither submitted nor polled
                continue
            count["polls"] += 1  # the scheduler's aim: one poll per task
            if state is ItemState.SUBMITTED:
                continue
            count["submits"] += 1
            count["uploads"] += row.image_path is not None and not row.workflow
    finally:
        if journal is not None:
            await journal.close()
    calls = count["submits"] + count["polls"] + count["uploads"]
    task = PollConfig().initial_estimate
    seconds = calls / float(qps) + (DEFAULT_SUBMIT_LATENCY + task if calls else 0)
    sections = [Section("Dry run (no call made)", ["", "rows"], [
        ["rows", str(count["rows"])], ["invalid (skipped)", str(count["invalid"])],
        ["already finished (journal)", str(count["finished"])],
        *([["unknown, skipped (--unknown skip)", str(count["skipped_unknown"])]]
          if count["skipped_unknown"] else []),
        ["to submit", str(count["submits"])],
    ])]  # fmt: skip
    footer = [
        ("calls needed", f"about {calls} (submits {count['submits']}, polls ~{count['polls']}, "
                         f"uploads {count['uploads']})"),
        ("time at", f"{qps:g} QPS: about {format_duration(seconds)} (calls / QPS, plus "
                    f"~{DEFAULT_SUBMIT_LATENCY + task:.0f} s for the last submit and task)"),
        ("output", str(job.out)), ("journal", str(job.journal)),
    ]  # fmt: skip
    render_sections(sections, footer, sys.stdout)
    return EXIT_ROWS if count["invalid"] else EXIT_OK


# -- status and export --------------------------------------------------------------------


def _cmd_status(args: argparse.Namespace) -> int:
    if not args.journal.is_file():
        say_error(f"no journal at {args.journal}")
        return EXIT_USAGE
    return asyncio.run(_status(args.journal))


async def _status(path: Path) -> int:
    journal = await open_journal(path)
    if journal is None:
        return EXIT_USAGE
    try:
        states: Counter[str] = Counter()
        failures: Counter[str] = Counter()
        oldest: tuple[float, str, str] | None = None
        last = 0.0
        for row in journal.rows():
            name = str(row.state)
            if row.state is ItemState.FAILED:
                name = "invalid" if row.error_type == INVALID_TYPE else "failed"
                failures[row.error_type or "error"] += 1
            states[name] += 1
            last = max(last, row.updated_at)
            if row.state is ItemState.SUBMITTED and row.submitted_at is not None and (
                oldest is None or row.submitted_at < oldest[0]
            ):
                oldest = (row.submitted_at, row.key, row.task_id or "?")
        recovered = journal.recovered_unknown
    finally:
        await journal.close()
    order = ("done", "failed", "invalid", "pending", "submitted", "unknown")
    rows = [[name, str(states[name])] for name in order if states[name]]
    rows.append(["total", str(sum(states.values()))])
    sections = [Section(f"Journal {path}", ["state", "items"], rows)]
    if failures:
        sections.append(Section("Failures by type", ["error", "items"],
                                [[k, str(n)] for k, n in failures.most_common()]))
    now = time.time()
    footer = [("last activity", f"{format_duration(now - last)} ago" if last else "never")]
    if oldest is not None:
        footer.append(("oldest unfinished task", f"{oldest[1]} (task {oldest[2]}), submitted "
                                              f"{format_duration(now - oldest[0])} ago"))
    if states["unknown"]:
        footer.append(("unknown", f"{states['unknown']} items may hold a task on the platform "
                       f"({recovered} found mid-submit now); the next run resubmits them "
                       "unless --unknown skip"))
    render_sections(sections, footer, sys.stdout)
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    if not args.journal.is_file():
        say_error(f"no journal at {args.journal}")
        return EXIT_USAGE
    if args.format == "xlsx":
        if args.out is None:
            say_error("--format xlsx needs --out FILE.xlsx")
            return EXIT_USAGE
        return export_xlsx(args.journal, args.out)
    return asyncio.run(_export(args.journal, args.format, args.out))


async def _export(path: Path, fmt: str, out: Path | None) -> int:
    journal = await open_journal(path)
    if journal is None:
        return EXIT_USAGE
    try:
        if out is None:
            _write_records(journal, fmt, sys.stdout)
        else:
            with atomic_write(out) as handle:
                _write_records(journal, fmt, handle)
    finally:
        await journal.close()
    return EXIT_OK


def _write_records(journal: Journal, fmt: str, handle: TextIO) -> None:
    records = records_from_journal(journal)
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
              resume="fto-async demo (a demo does not resume; it starts afresh)")  # fmt: skip
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
