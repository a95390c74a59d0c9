"""One screening run of the ``fto-async`` command (catalog -> batch -> journal -> output).

Strictly private: :mod:`fto_async.cli` parses the command line and calls :func:`run_screen`.

The catalog is read lazily; each good row is recorded ``pending`` in the journal (its
catalog line as ``seq``) before it is handed to :func:`~fto_async.batch.screen_many`,
``image_path`` rows are uploaded (or read, for the workflow) only when the batch asks
for them and only if the journal has not got past ``pending`` with them, and rows that
cannot be screened are recorded ``failed`` with ``error_type`` ``InvalidRequestError``.
At the end (also after Ctrl-C or a fatal error) the output file is rewritten from the
journal, one line per catalog row.

Each row's request fingerprint (:mod:`fto_async.fingerprint`; a local image by the
SHA-256 of its bytes, hashed in a worker thread) is compared with the journal's: a row
that changed is screened again and its earlier record moves to the journal's history.
A row the journal holds from before fingerprints (schema 1) is compared by its stored
request when it has an image URL; one with a local image cannot be checked: its result
is kept and the summary says so. A ``done`` row whose local image has gone keeps its
result (the summary says how many).

Never paying twice: each row is handed over as an :class:`~fto_async.batch.Item` with its
fingerprint (a local image by its file's SHA-256, not by its temporary upload URL), so
equal rows share one task; a local file is uploaded once per run (its URL reused while
``expire`` allows), and not at all when the report cache answers its row.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

import attrs

from ..batch import Item, screen_many, screen_with_follow_ups
from ..batch._journaling import provenance_mismatch
from ..cache import AnswerCache
from ..client import FtoClient
from ..errors import (
    AuthenticationError,
    BatchAbortedError,
    BudgetExhaustedError,
    ConfigurationError,
    FtoError,
    InvalidRequestError,
    PermissionDeniedError,
    PlatformUnreachableError,
    QuotaExceededError,
    ResponseDecodeError,
)
from ..journal import ItemState, Journal, JournalRow
from ..models import ImageSearchRequest, Request, WorkflowRequest
from ..outputs import last_run
from ..outputs._record import INVALID_TYPE, invalid_body
from ._budget import CallBudget, budget_spent
from ._caches import cache_text, open_cache
from ._catalog import PLACEHOLDER_URL, CatalogError, Row
from ._common import (
    EXIT_BUDGET,
    EXIT_FATAL,
    EXIT_STOPPED,
    EXIT_USAGE,
    open_journal,
    say_error,
)
from ._display import ProgressView, Summary, render_sections, summary_sections
from ._images import Images, readable, row_identity, stored_fingerprint, unreadable
from ._job import Job
from ._machine import rows_exit, stop_reason, summary_record, write_summary_json
from ._pipes import is_stream
from ._results import CATALOG_META, Tally, screening_calls, write_output
from ._signals import interrupts_during_rebuild, signal_handlers

if TYPE_CHECKING:
    from ..outputs._thumbs import Warmer

__all__ = ["run_screen"]

_LEDGER_EVERY: Final = 5.0  # seconds between the call ledger's records during a run
_PAST_PENDING: Final = frozenset({ItemState.DONE, ItemState.SUBMITTED, ItemState.FAILED})
_RESCREEN_META: Final = "rescreen_since"  # when an unfinished --rescreen began (epoch s)


def _past_pending(jrow: JournalRow | None) -> bool:
    return jrow is not None and jrow.state in _PAST_PENDING


def _fatal_hint(error: FtoError, oauth: bool) -> str:
    if isinstance(error, PlatformUnreachableError):
        return "check --base-url / PATSNAP_BASE_URL, the network and any proxy"
    if isinstance(error, QuotaExceededError):
        return "the account's call quota or balance is used up; rerun when it is reset"
    if isinstance(error, AuthenticationError | PermissionDeniedError):
        if oauth:
            return "check PATSNAP_CLIENT_SECRET and PATSNAP_CLIENT_ID (the OAuth client)"
        return "check PATSNAP_API_KEY (the sk- key)"
    if isinstance(error, BudgetExhaustedError):
        return "a client-side call budget is spent"
    return "fix the cause, then rerun"


class _Run:
    """Private: the state of one run (signals, uploads, the fatal error)."""

    def __init__(
        self, job: Job, client: FtoClient, journal: Journal, view: ProgressView,
        cache: AnswerCache | None = None,
    ) -> None:
        self.job = job
        self.cache = cache
        self.distinct: set[str] = set()  # fingerprints of the good rows (for the summary)
        self.client = client
        self.journal = journal
        self.view = view
        self.stop = asyncio.Event()
        self.signals = 0
        self.fatal: FtoError | None = None
        self.catalog_error: CatalogError | None = None
        self.work: asyncio.Task[None] | None = None
        self.changed = 0  #: rows whose request changed since the journal's record
        self.gone = 0  #: done rows whose local image has gone (result kept)
        self.unchecked = 0  #: rows of a schema-1 journal with a local image (result kept)
        self.unsent = 0  #: rows whose submit failed before it went out (left pending)
        self.unsent_error: FtoError | None = None
        self.refused = 0  #: answers refused as malformed (another task's, NaN, oversized)
        self.refused_error: FtoError | None = None
        self.rescreened = 0  #: rows --rescreen started again
        self.rescreen_since = 0.0  #: when the rescreen began (results older are redone)
        self.fingerprints: dict[str, str | None] = {}  # handed to the batch, then dropped
        limit = client.config.rate.max_calls  # --max-calls / PATSNAP_MAX_CALLS
        self.budget = None if limit is None else CallBudget(client, limit)
        self.unpolled = 0  #: paid tasks left unpolled at the end (the budget's message)
        self.run_no = 0  #: this run's number (the call ledger's)
        self.recorded: Counter[tuple[str, str, int]] = Counter()  # calls in the ledger
        self.recorded_at = time.monotonic()
        self.images = Images(  # --rescreen reads no report (as open_cache): none here
            client, cache, 0.0 if job.rescreen else job.max_age, job.follow_up is not None,
            notice=self.view.log,
        )
        # The report's thumbnails of local images are made while the platform works.
        self.warmer: Warmer | None = None
        if job.report:
            from ..outputs._cards import DEFAULT_PX  # Pillow: only when a report is asked for
            from ..outputs._thumbs import Warmer, cache_path

            self.warmer = Warmer(cache_path(job.out), DEFAULT_PX)

    def fingerprint_of(self, key: object, _request: Request) -> str | None:
        """The batch's ``fingerprint`` hook: what :meth:`items` computed for the row."""
        return self.fingerprints.pop(str(key), None)
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
            progress_interval=0.25, count_remaining=False, fingerprint=self.fingerprint_of,
            cache=self.cache,
        ) if self.job.follow_up is None else screen_with_follow_ups(
            self.client, self.items(), journal=self.journal, stop=self.stop,
            unknown_policy=self.job.unknown_policy, on_progress=self.view.update,
            progress_interval=0.25, count_remaining=False, fingerprint=self.fingerprint_of,
            cache=self.cache,
            follow_up=attrs.evolve(self.job.follow_up, image_url=self.images.follow_up_image),
        )  # fmt: skip
        try:
            async for outcome in batch:  # the output is rebuilt from the journal at the end
                if self.budget is not None:
                    self.budget.ended_one(outcome.polls)
                if time.monotonic() - self.recorded_at >= _LEDGER_EVERY:
                    await self.record_calls()  # a run that dies keeps most of its ledger
                self.images.forget(str(outcome.key))  # its follow-ups have ended
                error = outcome.error
                if error is not None and outcome.task_id is None and not outcome.resumed \
                        and (error.retryable or error.fatal):
                    self.unsent += 1  # left pending for the next run: say why at the end
                    self.unsent_error = error
                elif isinstance(error, ResponseDecodeError) and outcome.task_id is not None:
                    self.refused += 1  # left submitted: the next run polls it again
                    self.refused_error = error
        except BatchAbortedError as exc:
            self.fatal = exc.cause

    async def record_calls(self) -> None:
        """Add the calls made since the last record to the journal's call ledger."""
        self.recorded_at = time.monotonic()
        delta = self.client.observer.ledger - self.recorded
        if delta:
            self.recorded.update(delta)
            with contextlib.suppress(RuntimeError, sqlite3.Error):  # never fail a run on it
                await self.journal.record_calls(self.run_no, delta)

    # -- the input of the batch -------------------------------------------------------

    async def items(self) -> AsyncIterator[Item]:
        try:
            # Images are checked (regular file, inside the root) here and read, off the
            # event loop, only when a row needs them (_image_request).
            for n, row in enumerate(self.job.catalog.rows(read_images=False)):
                if self.stop.is_set():
                    return
                if n % 256 == 255:
                    await asyncio.sleep(0)
                if not row.ok:
                    if row.image_gone and self._is_done(row):
                        self.gone += 1  # its result stays: the image is not needed again
                        continue
                    await self._invalid(row, row.error or "invalid")
                    continue
                if row.image_path is not None and self.warmer is not None:
                    self.warmer.add(row.image_path)
                jrow = self.journal.get(row.jkey)
                if jrow is not None and jrow.state is ItemState.FAILED and (
                    jrow.error_type == INVALID_TYPE or self.job.retry_failed
                ):
                    # the row was fixed, or --retry-failed: submit it again (the journal
                    # keeps its attempts count; the earlier error shows until it is sent)
                    await self.journal.reset_to_pending(row.jkey)
                    jrow = self.journal.get(row.jkey)
                try:
                    fingerprint, digest, data = await row_identity(row)
                except (OSError, InvalidRequestError) as exc:
                    if self._is_done(row):  # the image went away after the scan
                        self.gone += 1  # its result stays: the image is not needed again
                        continue
                    if not _past_pending(jrow):
                        await self._invalid(row, unreadable(row, exc))
                        continue
                    # Its task is known: no upload needed. A fingerprint of its own keeps
                    # it from sharing anything through the placeholder URL, and the
                    # journal's record is kept as it is (nothing to compare it with).
                    fingerprint, digest, data, checked = f"row:{row.jkey}", None, None, None
                else:
                    checked, jrow = await self._reconcile(row, jrow, fingerprint)
                    if self.job.rescreen and self._rescreen_due(jrow):
                        assert jrow is not None
                        again = row.request or row.make_request(url=PLACEHOLDER_URL)
                        await self.journal.replace(  # the old result moves to history
                            row.jkey, row.line, self.client.encode_request(again),
                            row.kind, fingerprint=checked)  # fmt: skip
                        self.rescreened += 1
                        jrow = self.journal.get(row.jkey)
                self.distinct.add(fingerprint)
                if self.budget is not None and not _past_pending(jrow) and not \
                        await self.budget.admit(row.kind, 1 + (row.image_path is not None)):
                    continue  # past the budget: left pending for the next run
                request = row.request or await self._image_request(row, jrow, fingerprint,
                                                                   digest, data)  # fmt: skip
                del data  # held only while its request is built
                if request is None:
                    continue
                if jrow is None:
                    body = self.client.encode_request(request)
                    await self.journal.add_pending(row.jkey, row.line, body, row.kind,
                                                   fingerprint=checked)  # fmt: skip
                self.fingerprints[row.jkey] = checked  # what the journal compares
                if self.budget is not None:
                    self.budget.opened += 1
                yield Item(row.jkey, request, fingerprint=fingerprint)  # what shares a task
        except CatalogError as exc:  # the file changed under us
            self.catalog_error = exc
            self.stop.set()

    def _rescreen_due(self, jrow: JournalRow | None) -> bool:
        """Whether ``--rescreen`` starts this row again: it holds a result (done or
        failed) from before the rescreen began (a resumed rescreen keeps the new ones)."""
        if jrow is None or jrow.state not in (ItemState.DONE, ItemState.FAILED):
            return False
        return (jrow.completed_at or jrow.updated_at) < self.rescreen_since

    def _is_done(self, row: Row) -> bool:
        jrow = self.journal.get(row.jkey)
        return jrow is not None and jrow.state is ItemState.DONE

    async def _reconcile(
        self, row: Row, jrow: JournalRow | None, fingerprint: str
    ) -> tuple[str | None, JournalRow | None]:
        """Compare the row with the journal's record; restart it if its request changed.

        Returns the fingerprint to hand the batch (``None``: the record cannot be checked,
        keep it) and the journal row as it now stands.
        """
        if jrow is None or jrow.request.get("invalid") is True:
            return fingerprint, jrow
        stored = stored_fingerprint(row, jrow)
        if stored is None:
            if jrow.state is ItemState.PENDING:
                return fingerprint, jrow  # nothing to keep: the batch records it afresh
            self.unchecked += 1
            return None, jrow
        if stored == fingerprint:
            return fingerprint, jrow
        self.changed += 1
        request = row.request or row.make_request(url=PLACEHOLDER_URL)
        await self.journal.replace(row.jkey, row.line, self.client.encode_request(request),
                                   row.kind, fingerprint=fingerprint)  # fmt: skip
        return fingerprint, self.journal.get(row.jkey)

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
        self, row: Row, jrow: JournalRow | None, fingerprint: str, digest: str | None,
        data: bytes | None,
    ) -> ImageSearchRequest | WorkflowRequest | None:
        """The request of an ``image_path`` row: uploaded (or read) only when needed, and
        a file uploaded once per run (by its digest) while its URL lives."""
        state = jrow.state if jrow is not None else None
        skip_unknown = self.job.unknown_policy == "skip" and state in (
            ItemState.UNKNOWN, ItemState.SUBMITTING
        )
        assert row.image_path is not None
        if digest is not None:
            self.images.remember(row.jkey, row.image_path, digest)  # uploaded if followed up
        undecodable = state is ItemState.DONE and not readable(
            self.client, jrow.report if jrow is not None else None, row.kind
        )  # the batch screens it again: with the real image, never the placeholder
        if (state in _PAST_PENDING and not undecodable) or skip_unknown:
            return row.make_request(url=PLACEHOLDER_URL)  # never sent: the journal has it
        assert row.image_path is not None
        assert digest is not None
        assert data is not None
        try:
            return await self.images.request(row, fingerprint, digest, data)
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
    cache = await open_cache(job)
    if cache is False:
        await client.aclose()
        return EXIT_USAGE
    journal = await open_journal(job.journal)
    other = None if journal is None else provenance_mismatch(journal, *client.provenance)
    if other is not None:
        say_error(f"the journal {job.journal} holds answers from {other} (or another "
                  f"account), not from {client.provenance[0]}: use another --journal")
    if journal is None or other is not None:
        await client.aclose()
        if cache is not None:
            await cache.aclose()
        if journal is not None:
            await journal.aclose()
        return EXIT_USAGE
    started = time.monotonic()
    view = ProgressView(job.total, tty=job.tty)
    run = _Run(job, client, journal, view, cache)
    if journal.recovered_unknown:
        view.log(f"{journal.recovered_unknown} rows were mid-submit when the last run died: "
                 f"{'resubmitting' if job.unknown_policy == 'resubmit' else 'skipping'} them")
    if job.rescreen:  # an unfinished rescreen (stopped, resumed) keeps its start time
        begun = journal.get_meta(_RESCREEN_META)
        run.rescreen_since = float(begun) if begun else time.time()
        await journal.set_meta(_RESCREEN_META, repr(run.rescreen_since))
    hard = False
    run_no = run.run_no = last_run(journal) + 1
    out_error: OSError | CatalogError | None = None
    report: Path | None = None
    rebuilt = True
    try:
        async with client:
            with view, signal_handlers(run.on_signal):
                run.work = asyncio.create_task(run.consume())
                try:
                    await run.work
                except asyncio.CancelledError:
                    if run.signals < 2:
                        raise
                    hard = True
        if run.warmer is not None:
            await asyncio.to_thread(run.warmer.close)
        try:
            with interrupts_during_rebuild():
                tally = await write_output(job.catalog, journal, job.out, run=run_no,
                                           template=job.patent_link)
        except KeyboardInterrupt:  # Ctrl-C (again) or SIGTERM while the output was rebuilt
            rebuilt = False
        except (OSError, CatalogError) as exc:  # an unwritable folder, a full disk, a
            out_error = exc  # catalog changed into something unreadable mid-run, ...
        else:
            await journal.set_meta("last_run", str(run_no))
            # export finds titles and images here (a catalog moved since: --catalog)
            await journal.set_meta(CATALOG_META, str(job.catalog.path.resolve()))
            await run.record_calls()  # the ledger holds this run's calls too
            calls = screening_calls(journal)  # the screening's, every run
            if job.rescreen and not (tally.status["pending"] or tally.status["unknown"]):
                await journal.set_meta(_RESCREEN_META, "")  # every row was screened again
            report = _write_report(job, calls, screening_calls(journal, run_no))
    finally:
        if run.warmer is not None:
            run.warmer.abandon()  # (closed already unless the run raised)
        await run.record_calls()  # the rest of the call ledger
        with contextlib.suppress(RuntimeError):
            run.unpolled = journal.counts()[ItemState.SUBMITTED]
        with contextlib.suppress(RuntimeError):
            await journal.aclose()
        if cache is not None:
            await cache.aclose()
    if not rebuilt:
        say_error(f"stopped while rebuilding {job.out}: it was left as it was (the journal "
                  f"{job.journal} keeps every task id and result; 'fto-async export' writes "
                  f"them). Resume with the same command:\n  {job.resume}")  # fmt: skip
        return EXIT_STOPPED
    if isinstance(out_error, CatalogError):
        say_error(f"cannot rebuild the output from the catalog: {out_error}")
        say_error(f"the journal {job.journal} keeps every result; fix the catalog, then "
                  f"resume with the same command:\n  {job.resume}")
        return EXIT_USAGE
    if out_error is not None:
        say_error(f"cannot write the output {job.out}: {out_error.strerror or out_error}")
        say_error(f"the journal {job.journal} keeps every result; make the folder writable, "
                  f"then resume with the same command:\n  {job.resume}")
        return EXIT_USAGE
    latest = view.latest
    stats = client.stats
    summary = Summary(
        tally=tally, calls=stats.answered, retries=client.retries,
        unconnected=stats.unconnected, unanswered=stats.unanswered,
        ambiguous=client.stats.ambiguous_submits,
        resubmitted_unknown=latest.resubmitted_unknown if latest else 0,
        resubmitted_follow_ups=latest.follow_ups_resubmitted if latest else 0,
        recovered_unknown=journal.recovered_unknown, uploads=run.images.uploads,
        elapsed=time.monotonic() - started, out=job.out, journal=job.journal,
        notes=_notes(run),
        distinct=len(run.distinct), from_cache=latest.from_cache if latest else 0,
        shared=latest.shared if latest else 0,
        cache=cache_text(job),
    )  # fmt: skip
    _print_summary(job, summary)
    if report is not None:
        sys.stdout.write(f"report:            {report}\n")
    code = _exit_code(job, run, tally, hard)
    if job.summary_json is not None:  # --summary-json: for machines
        try:
            write_summary_json(job.summary_json, summary_record(
                summary, exit_code=code, fail_on=job.fail_on, report=report,
                reason=stop_reason(code, run.fatal)))  # fmt: skip
        except OSError as exc:
            say_error(f"cannot write --summary-json {job.summary_json}: {exc.strerror or exc}")
            return EXIT_USAGE
    return code


def _write_report(job: Job, calls: int | None, calls_run: int | None) -> Path | None:
    """The HTML report beside ``job.out`` (``None``: not asked for, or not written)."""
    if not job.report:
        return None
    from ._report import screen_report  # lazily: the report's libraries load only here

    return screen_report(job.catalog, job.out, calls, calls_run=calls_run,
                         template=job.patent_link)


def _notes(run: _Run) -> list[tuple[str, str]]:
    """Summary lines about rows whose journal record was not taken as it stands."""
    notes = []
    if run.changed:
        notes.append(("changed rows", f"{run.changed} rows changed since the last run: "
                      "screened again (earlier results kept in the journal's history)"))
    if run.gone:
        notes.append(("images gone", f"{run.gone} done rows' images are gone; results kept"))
    if run.unchecked:
        notes.append(("not checked", f"{run.unchecked} rows from an older journal have local "
                      "images that cannot be compared with what was screened; results kept "
                      "(delete the journal to screen them again)"))
    return notes


def _print_summary(job: Job, summary: Summary) -> None:
    sections, footer = summary_sections(summary)
    stream: TextIO = sys.stderr if is_stream(job.out) else sys.stdout  # --out -: records only
    stream.write("\n")
    render_sections(sections, footer, stream, tty=job.tty)


def _exit_code(job: Job, run: _Run, tally: Tally, hard: bool) -> int:
    left = tally.status["pending"] + tally.status["unknown"]
    if run.catalog_error is not None:
        say_error(str(run.catalog_error))
        return EXIT_USAGE
    if run.budget is not None and (run.budget.stopped
                                   or isinstance(run.fatal, BudgetExhaustedError)):
        say_error(budget_spent(run.budget, left, run.unpolled, job.resume))
        return EXIT_BUDGET
    if run.fatal is not None:
        say_error(f"stopped by a fatal platform error: {run.fatal} ({type(run.fatal).__name__})")
        oauth = run.client.stats.token_requests > 0
        say_error(f"{_fatal_hint(run.fatal, oauth)}; {left} rows left. "
                  f"Resume with:\n  {job.resume}")
        return EXIT_FATAL
    if run.signals:
        how = "at once" if hard else "after the in-flight submits"
        say_error(f"stopped {how}; {left} rows left (the journal keeps every task id). "
             f"Resume with the same command:\n  {job.resume}")
        return EXIT_STOPPED
    if run.refused and run.refused_error is not None:
        say_error(f"{run.refused} answers were refused as malformed (e.g. {run.refused_error});"
                  " their rows stay submitted: the next run polls them again")
    if run.unsent and run.unsent_error is not None:
        error = run.unsent_error
        say_error(f"{run.unsent} rows could not be sent ({type(error).__name__}: {error}); "
                  f"they stay pending: rerun the same command to retry:\n  {job.resume}")
    return rows_exit(tally, job.fail_on)  # --fail-on (cli._machine)
