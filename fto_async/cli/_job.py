"""What a ``screen`` command asks for, checked before any call: :class:`Job`. Strictly private.

:func:`prepare` turns the parsed command line into a :class:`Job` (or says why not:
bad defaults, a missing folder, an ``--out`` or ``--journal`` that would overwrite an
input, a cache file that is another file of the run); the run and the dry run read it.
"""

from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import attrs

from ..batch import FollowUp
from ..config import _base_url_problem, env_settings, redact_url_credentials
from ..errors import ConfigurationError, InvalidRequestError
from ._args import default_cache_path, patent_link
from ._catalog import Catalog, CatalogError, check_defaults
from ._common import say_error
from ._machine import FailOn
from ._paths import clash, is_sqlite, same_file, sqlite_files, writable_by_others
from ._pipes import STDOUT, default_journal, is_dash, is_stream, spool_stdin

__all__ = ["Job", "prepare"]


@attrs.frozen
class Job:
    """What to screen and where the results go.

    Attributes:
        catalog: the catalog (already scanned). total: its number of rows.
        out: the output JSONL file. journal: the journal file.
        unknown_policy: ``"resubmit"`` or ``"skip"`` rows an earlier run may have submitted.
        resume: the command that resumes this run (shown after a stop).
        tty: force (or forbid) terminal rendering; ``None`` asks the streams.
        report: write the HTML report ``OUT.html`` beside ``out`` at the end.
        follow_up: 1-vs-1 follow-ups of each row's riskiest matches (``--follow-up``).
        cache: the report cache file (``None``: no cache). max_age: seconds a cached
            report stays good.
        shared_cache: the Redis URL of a shared report cache (``--shared-cache``; then
            ``cache`` is ``None``); never shown.
        retry_failed: submit again rows whose task failed in an earlier run
            (``--retry-failed``; rows refused as invalid are retried once fixed anyway).
        rescreen: screen every row again, done rows included (``--rescreen``): their
            earlier result moves to the journal's history, and the report cache is not
            read (its reports are still written).
        patent_link: the patent link template (``--patent-link``/``FTO_PATENT_LINK``).
        fail_on: which rows make the exit code 1 (``--fail-on``, see :mod:`._machine`).
        summary_json: where to write the summary for machines (``--summary-json``).
    """

    catalog: Catalog
    total: int
    out: Path
    journal: Path
    unknown_policy: Literal["resubmit", "skip"] = "resubmit"
    resume: str = ""
    tty: bool | None = None
    report: bool = True
    follow_up: FollowUp | None = None
    cache: Path | None = None
    max_age: float = 7 * 86400.0
    shared_cache: str | None = attrs.field(default=None, repr=False)

    retry_failed: bool = False
    rescreen: bool = False
    patent_link: str | None = None
    fail_on: FailOn = "invalid"
    summary_json: Path | None = None


def prepare(args: argparse.Namespace) -> Job | None:
    try:
        defaults = check_defaults(args.country, args.lang, args.loc, args.since, args.workflow)
    except InvalidRequestError as exc:
        say_error(str(exc))
        return None
    pipes = default_cache_path(None).parent  # stdin catalogs, journals of streamed runs
    if is_dash(args.catalog):
        args.catalog = spool_stdin(pipes / "stdin")
    streamed = is_stream(args.out)  # --out -, /dev/stdout, a FIFO: see cli._pipes
    if is_dash(args.out):
        args.out = STDOUT
    if not streamed and not args.out.parent.is_dir():
        say_error(f"--out: the folder {args.out.parent} does not exist")
        return None
    if not streamed and not os.access(args.out.parent, os.W_OK):
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
    journal = args.journal or (
        default_journal(pipes / "journals", args.catalog) if streamed
        else args.out.with_name(args.out.name + ".journal.db"))  # fmt: skip
    refused = _output_clash(catalog, args.out, journal, _report_files(args))
    summary_json: Path | None = getattr(args, "summary_json", None)
    if refused is None and summary_json is not None:  # another output: never an input
        refused = clash(("--summary-json", summary_json), [
            ("the catalog", catalog.path), ("--out", args.out), ("the journal", journal),
            *_report_files(args),
        ])  # fmt: skip
    if refused is not None:
        say_error(refused)
        return None
    try:
        template = patent_link(args)
    except ValueError as exc:
        say_error(str(exc))
        return None
    cache: Path | None = None
    shared = _shared_cache(args)
    if shared is False:
        return None
    if not args.no_cache and shared is None:
        try:
            base_url = args.base_url or str(env_settings().get("base_url") or "") or None
        except ConfigurationError as exc:
            say_error(str(exc))
            return None
        if base_url is not None and _base_url_problem(base_url) is not None:
            say_error(f"PATSNAP_BASE_URL {_base_url_problem(base_url)}")  # never the URL
            return None
        cache = args.cache or default_cache_path(base_url)
        unsafe = writable_by_others(cache.expanduser())
        if unsafe is not None:
            say_error(f"--cache: {unsafe} (or run with --no-cache)")
            return None
        others = {"the catalog": args.catalog, "--out": args.out, "the journal": journal,
                  **dict(_report_files(args)),
                  **({"--summary-json": summary_json} if summary_json else {})}
        for name, other in others.items():  # same file: by inode, as for the other outputs
            if same_file(cache.expanduser(), Path(other).expanduser()):
                say_error(f"--cache: {cache} is {name}; give the cache a file of its own")
                return None
    return Job(catalog, total, args.out, journal, unknown_policy=args.unknown,
               resume=resume_command(args.argv),
               report=not args.no_report and not streamed, follow_up=args.follow_up,
               cache=cache, max_age=args.max_age, retry_failed=args.retry_failed,
               shared_cache=shared,
               rescreen=getattr(args, "rescreen", False), patent_link=template,
               fail_on=getattr(args, "fail_on", None) or "invalid",
               summary_json=summary_json)  # fmt: skip


def _shared_cache(args: argparse.Namespace) -> str | Literal[False] | None:
    """``--shared-cache``'s Redis URL (``None``: not asked), or ``False`` after saying why
    it cannot be used."""
    if not getattr(args, "shared_cache", False):
        return None
    if args.no_cache:
        say_error("--shared-cache and --no-cache contradict each other: choose one")
        return False
    try:
        url = args.redis_url or env_settings().get("redis_url")
    except ConfigurationError as exc:
        say_error(str(exc))
        return False
    if not isinstance(url, str) or not url:
        say_error("--shared-cache keeps the cache in Redis: give --redis-url (or set "
                  "PATSNAP_REDIS_URL)")
        return False
    return url


def resume_command(argv: list[str]) -> str:
    """The command that resumes a run of ``fto-async ARGV``, pasteable into a shell.

    A ``--redis-url`` that holds a password becomes ``"$PATSNAP_REDIS_URL"`` (the shell
    fills it in; set the variable first); other arguments have URL passwords redacted.
    """
    words = ["fto-async"]
    secret = False
    for n, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        if n and argv[n - 1] == "--redis-url" and _has_secret(arg):
            words.append('"$PATSNAP_REDIS_URL"')
            secret = True
        elif name == "--redis-url" and eq and _has_secret(value):
            words.append('--redis-url="$PATSNAP_REDIS_URL"')
            secret = True
        else:
            words.append(shlex.quote(redact_url_credentials(arg)))
    command = " ".join(words)
    return f"{command}    # with PATSNAP_REDIS_URL set to the Redis URL" if secret else command


def _has_secret(url: str) -> bool:
    return redact_url_credentials(url) != url


def _report_files(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """The HTML report and its thumbnail cache a run writes beside ``--out`` (if any)."""
    if args.no_report:
        return []
    from ..outputs._thumbs import cache_path  # Pillow: only when a report is written
    from ._report import html_path

    return [("the HTML report", html_path(args.out)),
            ("the thumbnail cache", cache_path(args.out))]  # fmt: skip


def _output_clash(
    catalog: Catalog, out: Path, journal: Path, report: list[tuple[str, Path]]
) -> str | None:
    """Why ``--out``, the journal or the report files would overwrite an input or each
    other (``None``: they would not)."""

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

    def report_inputs(path: Path) -> Iterator[tuple[str, Path]]:
        yield "--out", out
        yield "the catalog", catalog.path
        for sqlite in sqlite_files(journal):
            yield "the journal", sqlite
        if path.exists():
            yield from images()

    refused = clash(("--out", out), out_inputs()) or clash(("--journal", journal),
                                                             journal_inputs())
    for what, path in report:
        refused = refused or clash((what, path), report_inputs(path),
                                   fix="choose another --out or --journal, or --no-report")
    for what, path in [("--out", out), *report[:1]]:  # the text outputs
        if refused is None and is_sqlite(path):
            refused = (f"{what} {path} is a SQLite database (a journal?): an output never "
                       "overwrites one; choose another --out")
    return refused
