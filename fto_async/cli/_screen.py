"""One screening run of the ``fto-async`` command (catalog -> batch -> journal -> output).

Strictly private: :mod:`fto_async.cli` parses the command line and calls :func:`run_screen`.

The catalog is read lazily; each good row is recorded ``pending`` in the journal (its
catalog line as ``seq``) before it is handed to :func:`~fto_async.batch.screen_many`,
``image_path`` rows are uploaded (or read, for the workflow) only when the batch asks
for them and only if the journal has not got past ``pending`` with them, and rows that
cannot be screened are recorded ``failed`` with ``error_type`` ``InvalidRequestError``.
At the end (also after Ctrl-C or a fatal error) the output file is rewritten from the
journal, one line per catalog row.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Final, Literal, TextIO

import attrs

from ..batch import screen_many
from ..client import FtoClient
from ..errors import (
    AuthenticationError,
    BatchAbortedError,
    BudgetExhaustedError,
    ConfigurationError,
    FtoError,
    InvalidRequestError,
    PermissionDeniedError,
    QuotaExceededError,
)
from ..journal import ItemState, Journal, JournalRow
from ..models import ImageSearchRequest, WorkflowRequest
from ._catalog import PLACEHOLDER_URL, Catalog, CatalogError, Row
from ._common import (
    EXIT_FATAL,
    EXIT_OK,
    EXIT_ROWS,
    EXIT_STOPPED,
    EXIT_USAGE,
    open_journal,
    say_error,
)
from ._display import ProgressView, Summary, render_sections, summary_sections
from ._results import INVALID_TYPE, Tally, invalid_body, write_output

__all__ = ["EXIT_FATAL", "EXIT_OK", "EXIT_ROWS", "EXIT_STOPPED", "EXIT_USAGE", "Job",
           "open_journal", "run_screen", "say_error"]  # fmt: skip

_PAST_PENDING: Final = frozenset({ItemState.DONE, ItemState.SUBMITTED, ItemState.FAILED})


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
    """

    catalog: Catalog
    total: int
    out: Path
    journal: Path
    unknown_policy: Literal["resubmit", "skip"] = "resubmit"
    resume: str = ""
    tty: bool | None = None
    report: bool = True


@contextlib.contextmanager
def _signal_handlers(callback: Callable[[], None]) -> Iterator[None]:
    """Route SIGINT and SIGTERM to ``callback`` while in the block (main thread only)."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, callback)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, Windows
            continue
        installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _fatal_hint(error: FtoError) -> str:
    if isinstance(error, QuotaExceededError):
        return "the account's call quota or balance is used up; rerun when it is reset"
    if isinstance(error, AuthenticationError | PermissionDeniedError):
        return "check the credentials (PATSNAP_API_KEY or PATSNAP_CLIENT_ID/SECRET)"
    if isinstance(error, BudgetExhaustedError):
        return "a client-side call budget is spent"
    return "fix the cause, then rerun"


class _Run:
    """Private: the state of one run (signals, uploads, the fatal error)."""

    def __init__(
        self, job: Job, client: FtoClient, journal: Journal, view: ProgressView
    ) -> None:
        self.job = job
        self.client = client
        self.journal = journal
        self.view = view
        self.stop = asyncio.Event()
        self.signals = 0
        self.uploads = 0
        self.fatal: FtoError | None = None
        self.catalog_error: CatalogError | None = None
        self.work: asyncio.Task[None] | None = None

    def on_signal(self) -> None:
        self.signals += 1
        if self.signals == 1:
            self.stop.set()
            n = self._submits_in_flight()
            self.view.log(f"stopping: waiting for {n} in-flight submits… "
                          "(press Ctrl-C again to stop at once)")  # fmt: skip
        elif self.work is not None and not self.work.done():
            self.view.log("stopping now")
            self.work.cancel()

    def _submits_in_flight(self) -> int:
        """Submits sent and not answered yet (those still queued at the gate are dropped)."""
        latest = self.view.latest
        stats = self.client.stats
        unanswered = max(0, stats.calls - stats.by_code.total())
        return min(latest.submitting, unanswered) if latest is not None else unanswered

    async def consume(self) -> None:
        batch = screen_many(
            self.client, self.items(), journal=self.journal, stop=self.stop,
            unknown_policy=self.job.unknown_policy, on_progress=self.view.update,
            progress_interval=0.25, count_remaining=False,
        )  # fmt: skip
        try:
            async for _outcome in batch:
                pass  # the output is rebuilt from the journal at the end
        except BatchAbortedError as exc:
            self.fatal = exc.cause

    # -- the input of the batch -------------------------------------------------------

    async def items(self) -> AsyncIterator[tuple[str, ImageSearchRequest | WorkflowRequest]]:
        try:
            for n, row in enumerate(self.job.catalog.rows()):
                if self.stop.is_set():
                    return
                if n % 256 == 255:
                    await asyncio.sleep(0)
                if not row.ok:
                    await self._invalid(row, row.error or "invalid")
                    continue
                jrow = self.journal.get(row.jkey)
                if jrow is not None and jrow.state is ItemState.FAILED \
                        and jrow.error_type == INVALID_TYPE:
                    await self.journal.reset_to_pending(row.jkey)  # the row was fixed
                    jrow = self.journal.get(row.jkey)
                request = row.request or await self._image_request(row, jrow)
                if request is None:
                    continue
                if jrow is None:
                    body = self.client.encode_request(request)
                    await self.journal.add_pending(row.jkey, row.line, body, row.kind)
                yield row.jkey, request
        except CatalogError as exc:  # the file changed under us
            self.catalog_error = exc
            self.stop.set()

    async def _invalid(self, row: Row, reason: str) -> None:
        self.view.invalid += 1
        self.view.row_message(f"line {row.line}: {row.key or '-'}: {reason} (skipped)")
        jrow = self.journal.get(row.jkey)
        if jrow is None:
            await self._add_unsendable(row)
            jrow = self.journal.get(row.jkey)
        if jrow is not None and jrow.state is ItemState.PENDING:
            await self.journal.mark_failed(row.jkey, reason, INVALID_TYPE)

    async def _add_unsendable(self, row: Row) -> None:
        """Journal a row that has no request to send (the failure is marked next)."""
        await self.journal.add_pending(row.jkey, row.line, invalid_body(row.key, row.line),
                                       row.kind)  # fmt: skip

    async def _image_request(
        self, row: Row, jrow: JournalRow | None
    ) -> ImageSearchRequest | WorkflowRequest | None:
        """The request of an ``image_path`` row: uploaded (or read) only when needed."""
        state = jrow.state if jrow is not None else None
        skip_unknown = self.job.unknown_policy == "skip" and state in (
            ItemState.UNKNOWN, ItemState.SUBMITTING
        )
        if state in _PAST_PENDING or skip_unknown:
            return row.make_request(url=PLACEHOLDER_URL)  # never sent: the journal has it
        assert row.image_path is not None
        try:
            if row.workflow:
                data = await asyncio.to_thread(row.image_path.read_bytes)
                return row.make_request(image=data)
            uploaded = await self.client.upload_image(row.image_path)
            self.uploads += 1
            return row.make_request(url=uploaded.url)
        except OSError as exc:
            await self._invalid(row, f"image_path: cannot read {row.image_path.name} ({exc})")
        except InvalidRequestError as exc:
            await self._invalid(row, str(exc))
        except FtoError as exc:
            if exc.fatal:
                self.fatal = exc
                self.stop.set()
                return None
            self.view.row_message(f"line {row.line}: {row.key}: upload failed: {exc}")
            if not exc.retryable:
                if jrow is None:
                    await self._add_unsendable(row)
                await self.journal.mark_failed(row.jkey, f"upload: {exc}", type(exc).__name__)
        return None


async def run_screen(job: Job, make_client: Callable[[], FtoClient]) -> int:
    """Screen ``job``'s catalog with a client from ``make_client``; return the exit code."""
    try:
        client = make_client()
    except ConfigurationError as exc:
        say_error(str(exc))
        if "credentials" in str(exc):
            say_error("set PATSNAP_API_KEY, or PATSNAP_CLIENT_ID and PATSNAP_CLIENT_SECRET "
                 "(and PATSNAP_BASE_URL / PATSNAP_QPS if needed)")  # fmt: skip
        return EXIT_USAGE
    journal = await open_journal(job.journal)
    if journal is None:
        await client.aclose()
        return EXIT_USAGE
    started = time.monotonic()
    view = ProgressView(job.total, tty=job.tty)
    run = _Run(job, client, journal, view)
    if journal.recovered_unknown:
        view.log(f"{journal.recovered_unknown} rows were mid-submit when the last run died: "
                 f"{'resubmitting' if job.unknown_policy == 'resubmit' else 'skipping'} them")
    hard = False
    try:
        async with client:
            with view, _signal_handlers(run.on_signal):
                run.work = asyncio.create_task(run.consume())
                try:
                    await run.work
                except asyncio.CancelledError:
                    if run.signals < 2:
                        raise
                    hard = True
        tally = write_output(job.catalog, journal, job.out)
        report = _write_report(job, client.stats.calls)
    finally:
        with contextlib.suppress(RuntimeError):
            await journal.close()
    latest = view.latest
    _print_summary(job, Summary(
        tally=tally, calls=client.stats.calls, retries=client.retries,
        ambiguous=client.stats.ambiguous_submits,
        resubmitted_unknown=latest.resubmitted_unknown if latest else 0,
        recovered_unknown=journal.recovered_unknown, uploads=run.uploads,
        elapsed=time.monotonic() - started, out=job.out, journal=job.journal,
    ))  # fmt: skip
    if report is not None:
        sys.stdout.write(f"report:            {report}\n")
    return _exit_code(job, run, tally, hard)


def _write_report(job: Job, calls: int) -> Path | None:
    """The HTML report beside ``job.out`` (``None``: not asked for, or not written)."""
    if not job.report:
        return None
    from ._report import screen_report  # lazily: the report's libraries load only here

    return screen_report(job.catalog, job.out, calls)


def _print_summary(job: Job, summary: Summary) -> None:
    sections, footer = summary_sections(summary)
    stream: TextIO = sys.stdout
    stream.write("\n")
    render_sections(sections, footer, stream, tty=job.tty)


def _exit_code(job: Job, run: _Run, tally: Tally, hard: bool) -> int:
    left = tally.status["pending"] + tally.status["unknown"]
    if run.catalog_error is not None:
        say_error(str(run.catalog_error))
        return EXIT_USAGE
    if run.fatal is not None:
        say_error(f"stopped by a fatal platform error: {run.fatal} ({type(run.fatal).__name__})")
        say_error(f"{_fatal_hint(run.fatal)}; {left} rows left. Resume with:\n  {job.resume}")
        return EXIT_FATAL
    if run.signals:
        how = "at once" if hard else "after the in-flight submits"
        say_error(f"stopped {how}; {left} rows left (the journal keeps every task id). "
             f"Resume with the same command:\n  {job.resume}")
        return EXIT_STOPPED
    return EXIT_OK if tally.status["done"] == tally.rows else EXIT_ROWS
