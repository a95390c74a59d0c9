"""Progress and summary rendering for the ``fto-async`` command. Strictly private.

On a terminal, progress is a ``rich`` progress bar and the summary is ``rich`` tables; on
anything else (a log file, a pipe, CI) progress is a plain line every few seconds and
the summary plain aligned text, so logs stay greppable.

Text from outside (catalog cells, platform messages, paths) is data: every message and
table cell goes through :func:`clean`, which shows control characters and bidi controls
as visible escapes, and reaches ``rich`` as :class:`~rich.text.Text`, never as markup.
"""

from __future__ import annotations

import sys
import time
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, TextIO

import attrs
from rich.console import Console, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TaskID, TextColumn
from rich.progress import Progress as RichProgress
from rich.table import Table
from rich.text import Text

from ..batch import Progress
from ._results import Tally

__all__ = ["ProgressView", "Section", "Summary", "clean", "format_duration", "render_sections",
           "summary_sections"]  # fmt: skip

#: Seconds between two plain progress lines.
LOG_INTERVAL: Final = 5.0
#: Bad rows reported one by one before the rest are only counted.
MAX_ROW_MESSAGES: Final = 50


#: Bidi embeddings, overrides, isolates and marks: they reorder what a terminal shows.
_BIDI: Final = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                         "\u2066\u2067\u2068\u2069")


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _unsafe(ch: str) -> bool:
    return ch in _BIDI or unicodedata.category(ch) in ("Cc", "Zl", "Zp")


def clean(text: object) -> str:
    """``text`` safe to show on a terminal: escape sequences are shown, never executed.

    Control characters (C0, DEL, C1: ``ESC``, ``BEL``, newlines, ...), line and paragraph
    separators and bidi controls become visible escapes (``\\x1b``, ``\\u202e``); the
    rest is kept. Use it for every string that comes from a catalog or the platform.
    """
    value = str(text)
    if value.isprintable() and not _BIDI.intersection(value):
        return value
    return "".join(_escape(ch) if _unsafe(ch) else ch for ch in value)


def format_duration(seconds: float | None) -> str:
    """``"42s"``, ``"3m 05s"``, ``"2h 10m"``; ``"?"`` for ``None``."""
    if seconds is None:
        return "?"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


class _Bar(RichProgress):
    """Private: a progress bar with a line of counters under it."""

    stats = "starting"

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        yield Text(self.stats, style="dim", overflow="ellipsis", no_wrap=True)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class ProgressView:
    """The live progress of a screening run (a context manager).

    Args:
        total: catalog rows (``None`` if unknown: no bar, no ETA).
        stream: where progress and row messages go (default ``sys.stderr``).
        tty: force the terminal (``True``) or plain (``False``) rendering; default: ask
            ``stream``.
        interval: seconds between plain progress lines.
    """

    def __init__(
        self,
        total: int | None,
        *,
        stream: TextIO | None = None,
        tty: bool | None = None,
        interval: float = LOG_INTERVAL,
    ) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = _isatty(self.stream) if tty is None else tty
        self.interval = interval
        self.invalid = 0  #: rows refused before any call, counted by the caller
        self.latest: Progress | None = None  #: the last snapshot of the batch
        self._messages = 0
        self._last_log = time.monotonic()
        self._bar: _Bar | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> ProgressView:
        if self.tty:
            self._bar = _Bar(
                SpinnerColumn(),
                TextColumn("[bold]screening"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("ETA {task.fields[eta]}"),
                console=Console(file=self.stream),
                refresh_per_second=4,
            )
            self._bar.start()
            self._task = self._bar.add_task("screening", total=self.total, eta="?")
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._refresh()
            self._bar.stop()
            self._bar = None
        elif self.latest is not None:
            self.stream.write(self._line() + "\n")
            self.stream.flush()

    # -- input ----------------------------------------------------------------------

    def update(self, progress: Progress) -> None:
        """Take a batch snapshot (an ``on_progress`` callback)."""
        self.latest = progress
        if self._bar is not None:
            self._refresh()
        elif time.monotonic() - self._last_log >= self.interval:
            self._last_log = time.monotonic()
            self.stream.write(self._line() + "\n")
            self.stream.flush()

    def log(self, message: str) -> None:
        """Print a message above the progress bar (or as a plain line)."""
        message = clean(message)
        if self._bar is not None:
            self._bar.console.print(Text(message), highlight=False)
        else:
            self.stream.write(message + "\n")
            self.stream.flush()

    def row_message(self, message: str) -> None:
        """Report a bad row; after :data:`MAX_ROW_MESSAGES` they are only counted."""
        self._messages += 1
        if self._messages <= MAX_ROW_MESSAGES:
            self.log(message)
        elif self._messages == MAX_ROW_MESSAGES + 1:
            self.log("(more bad rows: see the summary and the output file)")

    # -- rendering ------------------------------------------------------------------

    @property
    def finished(self) -> int:
        """Rows with a result (done, failed or invalid)."""
        p = self.latest
        return self.invalid + (p.finished if p is not None else 0)

    def eta(self) -> float | None:
        """Seconds left, from the pace of rows finished by calls (not journal replays)."""
        p = self.latest
        if p is None or self.total is None:
            return None
        fresh = p.finished - p.resumed
        left = self.total - self.finished
        if left <= 0:
            return 0.0
        return left * p.elapsed / fresh if fresh > 0 and p.elapsed > 0 else None

    def _stats(self) -> str:
        p = self.latest
        if p is None:
            return "starting"
        return (
            f"done {p.done}, failed {p.failed - p.deferred}, invalid {self.invalid}, "
            + (f"next run {p.deferred}, " if p.deferred else "")
            + f"running {p.running + p.submitting}{_follow_ups(p)} | {p.rate:.1f} calls/s, "
            f"calls {p.calls}, retries {p.retries}"
        )

    def _refresh(self) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.stats = self._stats()
            self._bar.update(self._task, completed=self.finished,
                             eta=format_duration(self.eta()))

    def _line(self) -> str:
        p = self.latest
        total = "?" if self.total is None else str(self.total)
        if p is None:
            return f"progress: 0/{total} rows"
        return (
            f"progress: {self.finished}/{total} rows (done {p.done}, "
            f"failed {p.failed - p.deferred}, invalid {self.invalid}, "
            + (f"left for the next run {p.deferred}, " if p.deferred else "")
            + f"resumed {p.resumed}); submitting {p.submitting}, "
            f"running {p.running}{_follow_ups(p)}; rate {p.rate:.1f} calls/s, calls {p.calls}, "
            f"retries {p.retries}; elapsed {format_duration(p.elapsed)}, "
            f"ETA {format_duration(self.eta())}"
        )


def _follow_ups(p: Progress) -> str:
    """The follow-up counters of a snapshot, or nothing when there are none."""
    if not (p.follow_ups_running or p.follow_ups_done or p.follow_ups_failed):
        return ""
    return (f", follow-ups {p.follow_ups_done} done/{p.follow_ups_failed} failed/"
            f"{p.follow_ups_running} running")  # fmt: skip


# -- tables ------------------------------------------------------------------------------


@attrs.frozen
class Section:
    """One table of a report: a title, column headings and rows of text."""

    title: str
    headers: Sequence[str]
    rows: Sequence[Sequence[str]]


def render_sections(
    sections: Sequence[Section], footer: Sequence[tuple[str, str]], stream: TextIO,
    *, tty: bool | None = None,
) -> None:
    """Print tables then ``label: value`` lines: ``rich`` on a terminal, plain text otherwise."""
    tty = _isatty(stream) if tty is None else tty
    footer = [(clean(label), clean(value)) for label, value in footer]
    width = max((len(label) for label, _ in footer), default=0)  # labels align, tty or not
    if tty:
        console = Console(file=stream)
        for section in sections:
            title = clean(section.title)
            table = Table(title=Text(title), title_justify="left", title_style="bold",
                          min_width=len(title))  # a title never wraps over a narrow table
            for header in section.headers:
                table.add_column(Text(clean(header)), overflow="fold")
            for row in section.rows:
                table.add_row(*(Text(clean(cell)) for cell in row))
            console.print(table)
        for label, value in footer:
            console.print(Text.assemble((f"{label + ':':<{width + 1}}", "bold"), " ", value),
                          highlight=False)  # fmt: skip
        return
    lines: list[str] = []
    for section in sections:
        lines.append(clean(section.title))
        cells_by_row = [[clean(c) for c in section.headers],
                        *([clean(c) for c in r] for r in section.rows)]  # fmt: skip
        widths = [max(len(r[i]) for r in cells_by_row) for i in range(len(section.headers))]
        for row in cells_by_row:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
            lines.append("  " + "  ".join(cells).rstrip())
        lines.append("")
    lines += [f"{label + ':':<{width + 1}} {value}" for label, value in footer]
    stream.write("\n".join(lines) + "\n")
    stream.flush()


@attrs.frozen
class Summary:
    """Everything the end-of-run summary shows."""

    tally: Tally
    calls: int
    retries: int
    ambiguous: int
    resubmitted_unknown: int
    recovered_unknown: int
    uploads: int
    elapsed: float
    out: Path
    journal: Path
    notes: Sequence[tuple[str, str]] = ()  #: extra footer lines (label, text)
    resubmitted_follow_ups: int = 0  #: follow-ups a dead run left mid-submit, sent again
    distinct: int = 0
    from_cache: int = 0
    shared: int = 0
    cache: str = "off"
    unconnected: int = 0
    unanswered: int = 0


_RISK_ROWS: Final = (("High", "high risk"), ("Medium", "medium risk"), ("Low", "low risk"),
                     ("none", "no risk found"))  # fmt: skip
_STATUS_ROWS: Final = (
    ("failed", "failed"),
    ("invalid", "invalid (not sent)"),
    ("pending", "pending (next run)"),
    ("unknown", "unknown (see below)"),
)


_FOLLOW_UP_ROWS: Final = (("done", "done"), ("failed", "failed"),
                          ("pending", "pending (next run)"))  # fmt: skip


def summary_sections(summary: Summary) -> tuple[list[Section], list[tuple[str, str]]]:
    """The summary as tables and footer lines (for :func:`render_sections`)."""
    tally = summary.tally
    counts = [[label, str(tally.risk[risk])] for risk, label in _RISK_ROWS if tally.risk[risk]]
    counts += [[label, str(tally.status[s])] for s, label in _STATUS_ROWS if tally.status[s]]
    counts.append(["total rows", str(tally.rows)])
    sections = [Section("Rows by result", ["result", "rows"], counts)]
    if tally.high_total:
        top = tally.top_high()
        title = f"High-risk rows ({len(top)} of {tally.high_total}, most countries first)"
        sections.append(Section(
            title, ["key", "product", "high-risk countries"],
            [[key, title_, ", ".join(countries) or "-"] for key, title_, countries in top],
        ))  # fmt: skip
    if tally.failures:
        rows = sorted(tally.failures.items(), key=lambda item: -item[1][0])
        sections.append(Section(
            "Failures", ["reason", "rows", "e.g.", "message"],
            [[group, str(n), ", ".join(examples), str(message or "")]
             for group, (n, message, examples) in rows],
        ))  # fmt: skip
    ambiguous = f"{summary.ambiguous} retried submits that may have created a task"
    unknown = summary.resubmitted_unknown + summary.recovered_unknown
    if unknown:
        ambiguous += f"; {summary.recovered_unknown} found mid-submit after a crash, " \
                     f"{summary.resubmitted_unknown} resubmitted"
    if summary.resubmitted_follow_ups:
        ambiguous += f"; {summary.resubmitted_follow_ups} follow-ups left mid-submit by a " \
                     "crash resubmitted"
    fu = tally.follow_ups
    if fu.total():
        high = f", {tally.follow_ups_high} high risk" if tally.follow_ups_high else ""
        sections.append(Section(
            "Follow-ups (1-vs-1 on the riskiest matches)", ["result", "patents"],
            [[label, str(fu[s])] for s, label in _FOLLOW_UP_ROWS if fu[s]]
            + [["total", f"{fu.total()}{high}"]],
        ))  # fmt: skip
    calls = f"{summary.calls} (uploads {summary.uploads})"
    if summary.unconnected or summary.unanswered:
        calls += (f"; not counted: {summary.unconnected} attempts never connected, "
                  f"{summary.unanswered} got no answer")  # fmt: skip
    footer = [
        ("requests", f"{tally.rows} rows, {summary.distinct} distinct requests, "
                     f"{summary.from_cache} from cache, calls used {summary.calls} "
                     f"(uploads {summary.uploads})"
                     + (f"; {summary.shared} rows shared an equal row's task or report, "
                        "no call of their own" if summary.shared else "")),
        *([("calls used", calls)] if summary.unconnected or summary.unanswered else []),
        ("cache", summary.cache),
        ("retries", str(summary.retries)),
        ("ambiguous submits", ambiguous),
        ("wall time", format_duration(summary.elapsed)),
        ("output", str(summary.out)),
        ("journal", str(summary.journal)),
        *summary.notes,
    ]
    if (changes := tally.changes()) is not None:
        footer.insert(0, ("what is new", changes))
    for reason, (n, _message) in sorted(tally.waiting.items(), key=lambda item: -item[1][0]):
        footer.append(("not done", f"{n} rows {reason}"))
    if tally.status["unknown"]:
        footer.append(("unknown rows", f"{tally.status['unknown']} may hold a task on the "
                       "platform; the next run resubmits them (--unknown skip leaves them)"))
    return sections, footer
