"""The HTML risk report: one self-contained file, each product beside its matched designs.

Usage::

    from fto_async.outputs import write_html

    write_html("results.jsonl.journal.db", "report.html", title="Spring catalog")
    write_html(journal, "report.html")                 # an open Journal
    write_html(records, "report.html", calls=412)      # JournalRows or JSONL records

The file works offline and alone: styles and the small script are inline, a strict
Content-Security-Policy allows no host and only the script and style whose hashes it
names, and the only things loaded from elsewhere are the product and patent images, from
their own ``http(s)`` URLs, lazily. Local product images and the platform's line drawings
are embedded as small thumbnails, after Pillow decodes them (never a file as it is);
given ``thumb_cache``, a local image's thumbnail is kept for the next report (see
:mod:`fto_async.outputs._thumbs`). Every string from the catalog or the platform is escaped by
Jinja2's autoescape, and bidi controls in it show as visible ``\\u202e`` escapes; an
``http(s)`` image on a loopback, private or link-local address is never loaded (the card
says why). The script sits before the cards: the filters work while a large
file is still being parsed.

The DOM has stable hooks for scripts and tests: each row is an ``article.card`` with
``data-key`` and ``data-risk`` (``high``, ``medium``, ``low``, ``none``, ``failed``,
``invalid``, ``pending`` for a row a stopped run has not finished, or ``unknown`` for
one a run left mid-submit: the status words of :mod:`fto_async.outputs._record`), the
header is
``#summary``, the search box ``input#search``; the filters are ``input[name=risk]``
checkboxes, ``select#country`` and ``select#sort``.

Rows are rendered one at a time into temporary files, one per risk level, and joined
under the header at the end: memory stays flat and the riskiest rows come first.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import datetime as dt
import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeAlias, TypeVar

import attrs
from markupsafe import Markup

from ..journal import ItemState, Journal, JournalRow
from ._cards import (
    DEFAULT_PX,
    RISKS,
    Product,
    Tally,
    card,
    has_local_image,
    local_image,
    most,
)
from ._matches import compare
from ._record import previous_result, run_filter
from ._thumbs import ThumbCache

if TYPE_CHECKING:  # Jinja2 is imported when a report is written (a faster CLI start)
    import jinja2

__all__ = ["HtmlReport", "Product", "write_html"]

Rows: TypeAlias = Iterable[JournalRow | Mapping[str, Any] | tuple[JournalRow, dict[str, Any]]]
Source: TypeAlias = Journal | str | os.PathLike[str] | Rows
_T = TypeVar("_T")
_SQLITE_MAGIC = b"SQLite format 3\x00"
_MARK = "<!--fto-async:cards-->"
_CHART_WIDTH = 260  # px of the longest bar
_WORKERS = min(4, os.cpu_count() or 1)  # threads that build cards (and thumbnails)
_WINDOW = 64  # cards built ahead of the writer
_MAX_GROUPED = 100_000  # product images remembered for "same image as" (bounded memory)


@attrs.frozen
class HtmlReport:
    """What :func:`write_html` wrote.

    Attributes:
        path: the report file. rows: its cards. bytes: its size.
        risk: cards per ``data-risk`` value.
    """

    path: Path
    rows: int
    bytes: int
    risk: Mapping[str, int]


def write_html(
    source: Source,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    products: Mapping[str, Product] | None = None,
    calls: int | None = None,
    filters: Mapping[str, Iterable[str] | str | None] | None = None,
    thumb_px: int = DEFAULT_PX,
    thumb_cache: str | os.PathLike[str] | None = None,
    all_rows: bool = False,
    patent_link: str | None = None,
    calls_run: int | None = None,
) -> HtmlReport:
    """Write the HTML risk report of ``source`` to ``path`` (atomically).

    Args:
        source: an open :class:`~fto_async.journal.Journal`; the path of a journal file
            or of a JSONL results file (as ``fto-async screen --out`` writes); or an
            iterable of :class:`~fto_async.journal.JournalRow` or result records
            (dicts with ``key``, ``status``, ``error``, ``report`` ... and, optionally,
            ``title``, ``image_url`` and ``image_path``). Read once, streaming.
        path: the HTML file to write.
        title: the report's heading (default "Design-patent FTO risk report").
        products: catalog details by row key (name, image), for rows that lack them.
        calls: the platform calls the screening used, across its runs, if known (shown
            in the header). calls_run: those of the last run, if known.
        filters: the filters to show (``country``, ``loc``, ``since``, ``until``,
            ``lang``); by default they are read from the rows' requests and reports.
        thumb_px: the largest side of an embedded product thumbnail, in px (default
            200, the size the page shows it at).
        thumb_cache: a file (SQLite) that keeps local images' thumbnails for the next
            report; ``fto-async screen --out OUT`` uses ``OUT.thumbs.db``. Keyed by the
            SHA-256 of each file's bytes; without it, a report still encodes
            each distinct file once.
        all_rows: from a journal, also the rows its last run's catalog no longer had
            (by default a journal's report shows the rows ``export`` writes:
            :func:`~fto_async.outputs.run_filter`).
        patent_link: the patent link template (:mod:`~fto_async.outputs._links`);
            ``None``: the defaults.

    Returns:
        What was written (:class:`HtmlReport`).

    Raises:
        FileNotFoundError: ``source`` names a file that does not exist.
        fto_async.JournalLockedError: the journal is open in another run.
    """
    out = Path(path)
    options = _Options(title, products, calls, calls_run, filters, thumb_px, thumb_cache,
                       patent_link)  # fmt: skip
    if isinstance(source, str | os.PathLike):
        return _from_file(Path(source), lambda rows: _write(rows, out, options),
                          all_rows=all_rows)  # fmt: skip
    rows = _run_rows(source, all_rows) if isinstance(source, Journal) else source
    return _write(rows, out, options)


@attrs.frozen
class _Options:
    """Private: what :func:`write_html` was asked for, besides the rows."""

    title: str | None
    products: Mapping[str, Product] | None
    calls: int | None
    calls_run: int | None
    filters: Mapping[str, Any] | None
    thumb_px: int
    thumb_cache: str | os.PathLike[str] | None
    template: str | None


def _run_rows(journal: Journal, all_rows: bool) -> Iterator[tuple[JournalRow, dict[str, Any]]]:
    """The journal's row set (its last run's rows; every row with ``all_rows``), each with
    what changed since its previous result."""
    for row in journal.rows(since_run=run_filter(journal, everything=all_rows)):
        previous = previous_result(journal, row.key) if row.state is ItemState.DONE else None
        if previous is None:
            yield row, {"risk_change": "first"}
        else:
            when = previous.completed_at or previous.updated_at
            yield row, {**compare(previous.report, row.report), "previous_screening":
                        dt.datetime.fromtimestamp(when, dt.UTC).strftime("%Y-%m-%d")}


def _from_file(source: Path, use: Callable[[Rows], _T], *, all_rows: bool = False) -> _T:
    """Call ``use`` with the rows of a journal (its row set) or JSONL file."""
    with source.open("rb") as handle:
        magic = handle.read(len(_SQLITE_MAGIC))
    if magic != _SQLITE_MAGIC:
        with source.open(encoding="utf-8") as text:
            return use(json.loads(line) for line in text if line.strip())

    async def with_journal() -> _T:
        async with await Journal.open(source, readonly=True) as journal:
            return use(_run_rows(journal, all_rows))

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(with_journal())
    with ThreadPoolExecutor(1, thread_name_prefix="fto-report") as pool:  # a loop runs here
        return pool.submit(asyncio.run, with_journal()).result()


#: Bidirectional controls: they reorder what is shown (a patent number read backwards).
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _visible_bidi(value: object) -> object:
    """Every ``{{ }}`` output's last step: bidi controls become visible ``\\u202e``
    escapes (text the autoescape has escaped, or will, stays so: the escape is ASCII)."""
    if not isinstance(value, str) or _BIDI.search(value) is None:
        return value
    text = _BIDI.sub(lambda m: f"\\u{ord(m.group()):04x}", value)
    return Markup(text) if isinstance(value, Markup) else text  # noqa: S704 - ASCII added


@functools.cache
def _environment() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("fto_async.outputs", "templates"),
        autoescape=True, trim_blocks=True, lstrip_blocks=True,
        undefined=jinja2.StrictUndefined, finalize=_visible_bidi,
    )  # fmt: skip


@functools.cache
def _assets() -> tuple[Markup, Markup, str]:
    """The inline style and script, and the Content-Security-Policy that allows them."""
    env = _environment()
    loader = env.loader  # the environment's own PackageLoader: one place names the templates
    assert loader is not None
    css = loader.get_source(env, "report.css")[0]
    js = loader.get_source(env, "report.js")[0]

    def digest(text: str) -> str:
        return base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode()

    csp = (f"default-src 'none'; img-src data: http: https:; style-src 'sha256-{digest(css)}'; "
           f"script-src 'sha256-{digest(js)}'; base-uri 'none'; form-action 'none'")
    return Markup(css), Markup(js), csp  # noqa: S704 - our own files, hashed into the CSP


def _write(rows: Rows, out: Path, options: _Options) -> HtmlReport:
    env = _environment()
    module = env.get_template("card.html.j2").module
    render_card, render_line = module.card, module.line  # type: ignore[attr-defined]
    tally = Tally()
    with contextlib.ExitStack() as stack:
        thumbs = stack.enter_context(ThumbCache(options.thumb_cache))
        buckets: dict[str, IO[str]] = {
            risk: stack.enter_context(tempfile.TemporaryFile("w+", encoding="utf-8"))
            for risk in RISKS
        }
        lines = {risk: stack.enter_context(tempfile.TemporaryFile("w+", encoding="utf-8"))
                 for risk in RISKS}  # fmt: skip
        seen: dict[str, tuple[str, tuple[str, ...]]] = {}
        for values in _cards(rows, options, thumbs):
            _group(values, seen)
            tally.add(values)
            buckets[values["risk"]].write(str(render_card(values)))
            lines[values["risk"]].write(str(render_line(values)))
        head, middle, tail = _page(env, tally, options).split(_MARK)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        try:
            with tmp.open("w", encoding="utf-8") as handle:
                handle.write(head)
                for part in lines.values():
                    part.seek(0)
                    shutil.copyfileobj(part, handle, 1 << 20)
                handle.write(middle)
                for bucket in buckets.values():
                    bucket.seek(0)
                    shutil.copyfileobj(bucket, handle, 1 << 20)
                handle.write(tail)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    return HtmlReport(out, tally.rows, out.stat().st_size, dict(tally.risk))


def _group(values: dict[str, Any], seen: dict[str, tuple[str, tuple[str, ...]]]) -> None:
    """Mark a card whose product image and matches equal an earlier card's ("same image
    as P-001"): the template shows a line instead of repeating the matches."""
    image = values.get("image")
    if not image or values["status"] != "done" or len(seen) >= _MAX_GROUPED:
        return
    digest = hashlib.sha256(str(image).encode()).hexdigest()
    pns = tuple(m["pn"] for m in values["matches"])
    first = seen.setdefault(digest, (values["key"], pns))
    if first[0] != values["key"] and first[1] == pns:
        values["same_as"] = first[0]


def _cards(rows: Rows, options: _Options, thumbs: ThumbCache) -> Iterator[dict[str, Any]]:
    """The cards' values in row order.

    A row with a local image to decode is built on a worker thread (Pillow decodes and
    scales without the GIL, so such catalogs use every core); the rest, and rows whose
    thumbnail is cached, are built here, where threads would only fight over the GIL.
    The window of futures keeps the order and bounds memory: at most ``_WINDOW`` cards
    wait for the writer.
    """
    products, thumb_px = options.products, options.thumb_px
    with ThreadPoolExecutor(_WORKERS, thread_name_prefix="fto-report") as pool:
        window: collections.deque[Future[dict[str, Any]]] = collections.deque()
        for item in rows:
            row, changes = item if isinstance(item, tuple) else (item, None)
            key = row.key if isinstance(row, JournalRow) else str(row.get("key"))
            product = None if products is None else products.get(key)
            build = functools.partial(card, row, product, thumb_px=thumb_px,
                                      thumbs=thumbs.thumbnail, template=options.template,
                                      changes=changes)  # fmt: skip
            if has_local_image(row, product) and not thumbs.ready(
                    local_image(row, product), thumb_px):  # fmt: skip
                window.append(pool.submit(build))
            else:
                done: Future[dict[str, Any]] = Future()
                done.set_result(build())
                window.append(done)
            if len(window) >= _WINDOW:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()


def _page(env: jinja2.Environment, tally: Tally, options: _Options) -> str:
    css, js, csp = _assets()
    chart = tally.chart()
    top = max((h + m for _c, h, m in chart), default=0) or 1
    bars = [{"country": c, "high": h, "medium": m,
             "hw": round(h / top * _CHART_WIDTH, 1), "mw": round(m / top * _CHART_WIDTH, 1)}
            for c, h, m in chart]  # fmt: skip
    return env.get_template("page.html.j2").render(
        title=options.title or "Design-patent FTO risk report", css=css, js=js, csp=csp,
        tally=tally, risks=RISKS, bars=bars, chart_width=_CHART_WIDTH,
        filters=_filters(tally, options.filters), calls=options.calls,
        calls_run=options.calls_run, countries=tally.filter_countries(),
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        screened=_dates(tally), cards=Markup(_MARK),  # noqa: S704 - a fixed marker
        lines=Markup(_MARK),  # noqa: S704 - a fixed marker
    )  # fmt: skip


def _filters(tally: Tally, given: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """``(label, text)`` pairs of the filters the rows were screened with."""
    def show(name: str, counter: Any) -> str | None:
        if given is not None and name in given:
            value = given[name]
            if value is None:
                return None
            return value if isinstance(value, str) else ", ".join(map(str, value))
        names = list(most(counter, 12))
        if not names:
            return None
        extra = len(counter) - len(names)
        # a value only some rows used says how many (a per-row filter, honestly)
        shown = [n if counter[n] >= tally.rows else f"{n} ({counter[n]} of {tally.rows} rows)"
                 for n in names]  # fmt: skip
        return ", ".join(shown) + (f" and {extra} more" if extra > 0 else "")

    pairs = [("Countries", show("country", tally.countries) or "as each row asked"),
             ("LOC classes", show("loc", tally.locs) or "all"),
             ("Filed from", show("since", tally.since) or "any date"),
             ("Filed until", show("until", tally.until)),
             ("Report language", show("lang", tally.langs))]  # fmt: skip
    return [(label, text) for label, text in pairs if text]


def _dates(tally: Tally) -> str | None:
    if tally.first is None or tally.last is None:
        return None

    def day(ms: int) -> str:
        return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d")

    first, last = day(tally.first), day(tally.last)
    return first if first == last else f"{first} to {last}"
