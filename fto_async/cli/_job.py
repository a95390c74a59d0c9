"""What a ``screen`` command asks for, checked before any call: :class:`Job`. Strictly private.

:func:`prepare` turns the parsed command line into a :class:`Job` (or says why not:
bad defaults, a missing folder, an ``--out`` or ``--journal`` that would overwrite an
input, a cache file that is another file of the run); the run and the dry run read it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import attrs

from ..batch import FollowUp
from ..config import env_settings, redact_url_credentials
from ..errors import ConfigurationError, InvalidRequestError
from ._args import default_cache_path
from ._catalog import Catalog, CatalogError, check_defaults
from ._common import say_error
from ._paths import clash, same_file, sqlite_files
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
        retry_failed: submit again rows whose task failed in an earlier run
            (``--retry-failed``; rows refused as invalid are retried once fixed anyway).
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

    retry_failed: bool = False


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
               report=not args.no_report and not streamed, follow_up=args.follow_up, cache=cache,
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
    """Whether ``path`` is an existing SQLite file (a journal of another run, say).

    Only a regular file is opened: opening a FIFO or ``/dev/stdout`` for reading would
    block for ever (no writer comes), and a pipe or a device is never a database.
    """
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return False
        with path.open("rb") as handle:
            return handle.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False
