"""One record rule: every output lists the same rows with the same status word.

A journal holds a row in every state a run can leave (pending, submitting, unknown,
submitted, done, failed, invalid, shared, from the cache, changed since the last run,
dropped from the catalog), built with the Journal API as the batch and the command
write it. JSONL, CSV and XLSX (``export``), the HTML report (``report``), ``status``
and the end-of-run summary (:class:`~fto_async.cli._results.Tally`) must agree, row by
row, with :func:`fto_async.outputs.status_of` and the run filter.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from fto_async.cli import main
from fto_async.cli._catalog import Catalog, check_defaults
from fto_async.cli._results import write_output
from fto_async.journal import Journal, JournalRow
from fto_async.models import normalize_score
from fto_async.outputs import STATUSES, write_html
from fto_async.outputs._cards import card
from fto_async.outputs._record import INVALID_TYPE, invalid_body
from tests._cli import FAST, catalog, cli, records
from tests.outputs._xlsx import load_workbook

_REPORT = {"task_status": 2, "report": {"comparisons": [], "high_risk_country": [],
                                        "middle_risk_country": []}}  # fmt: skip

#: key -> the status word every output must show (the last run's rows, catalog order).
EXPECTED = {
    "A-pending": "pending",  # never submitted
    "B-submitting": "unknown",  # a run died mid-submit (the journal is not held)
    "C-unknown": "unknown",  # a busy answer after the task may have been created
    "D-submitted": "pending",  # paid, not polled yet
    "E-done": "done",
    "F-failed": "failed",  # the platform's task failed
    "G-invalid": "invalid",  # refused before any call
    "H-shared": "done",  # answered by E's task (attempts 0)
    "I-shared-waiting": "pending",  # shares a task still running
    "J-cache": "done",  # answered by the report cache (attempts 0)
    "K-changed": "done",  # changed since the last run: screened again, history kept
}
DROPPED = "Z-dropped"  # done in run 1, no longer in run 2's catalog


def _url(key: str) -> str:
    return f"https://img.example.com/{key}.png"


def _body(key: str) -> dict[str, Any]:
    return {"url": _url(key), "country": ["US"], "lang": "en"}


async def _build(path: Path) -> None:
    keys = [*EXPECTED, DROPPED]
    async with await Journal.open(path) as j:
        for seq, key in enumerate(keys, start=2):
            body = invalid_body(key, seq) if key == "G-invalid" else _body(key)
            await j.add_pending(key, seq, body, "image_search")
        for key in ("B-submitting", "C-unknown", "D-submitted", "E-done", "F-failed",
                    "K-changed", DROPPED):
            await j.mark_submitting(key)
        await j.mark_unknown("C-unknown")
        for key in ("D-submitted", "E-done", "F-failed", "K-changed", DROPPED):
            await j.mark_submitted(key, f"task-{key}")
        for key in ("E-done", "K-changed", DROPPED):
            await j.mark_done(key, _REPORT)
        await j.mark_failed("F-failed", "task failed on the platform", "TaskFailedError")
        await j.mark_failed("G-invalid", "image_url: not an http(s) URL", INVALID_TYPE)
        await j.mark_shared("H-shared", "task-E-done")
        await j.mark_done("H-shared", _REPORT)
        await j.mark_shared("I-shared-waiting", "task-running")
        await j.mark_shared("J-cache", "task-from-cache")
        await j.mark_done("J-cache", _REPORT)
        for key in keys:
            await j.stamp_run(key, 1)
        await j.set_meta("last_run", "1")
        # Run 2: K's request changed (screened again), Z left the catalog.
        changed = {**_body("K-changed"), "lang": "cn"}
        await j.replace("K-changed", 12, changed, "image_search", fingerprint=None)
        await j.mark_submitting("K-changed")
        await j.mark_submitted("K-changed", "task-K-again")
        await j.mark_done("K-changed", _REPORT)
        for key in EXPECTED:
            await j.stamp_run(key, 2)
        await j.set_meta("last_run", "2")
        assert j.history("K-changed")


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    path = tmp_path / "results.jsonl.journal.db"
    asyncio.run(_build(path))
    return path


def _export(journal: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    capsys.readouterr()
    assert main(["export", str(journal), *extra]) == 0
    return capsys.readouterr().out


def _jsonl(journal: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, str]:
    lines = _export(journal, capsys, *extra).splitlines()
    return {(r := json.loads(line))["key"]: r["status"] for line in lines}


def _csv(journal: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, str]:
    text = _export(journal, capsys, "--format", "csv", *extra)
    return {r["key"]: r["status"] for r in csv.DictReader(io.StringIO(text))}


def _xlsx(journal: Path, tmp_path: Path, *extra: str) -> dict[str, str]:
    out = tmp_path / "results.xlsx"
    assert main(["export", str(journal), "--format", "xlsx", "--out", str(out), *extra]) == 0
    book = load_workbook(out, read_only=True)
    rows = list(book["Rows"].iter_rows(values_only=True))
    book.close()
    header = list(rows[0])
    return {r[header.index("key")]: r[header.index("status")] for r in rows[1:]}


_CARD = re.compile(r'<article class="card [^"]*" data-key="([^"]*)" data-risk="([^"]*)"')


def _html(journal: Path, tmp_path: Path, *extra: str) -> dict[str, str]:
    out = tmp_path / "report.html"
    assert main(["report", str(journal), "--out", str(out), *extra]) == 0
    cards = dict(_CARD.findall(out.read_text(encoding="utf-8")))
    # A done row's data-risk is its risk level; any other row's is its status word.
    return {k: "done" if r in ("high", "medium", "low", "none") else r for k, r in cards.items()}


def _status_counts(journal: Path, capsys: pytest.CaptureFixture[str]) -> Counter[str]:
    capsys.readouterr()
    assert main(["status", str(journal)]) == 0
    counts: Counter[str] = Counter()
    table = capsys.readouterr().out.split("\n\n")[0]  # the first table: items by state
    for line in table.splitlines():
        match = re.fullmatch(r"\s+(\w+)\s+(\d+)", line)
        if match and match.group(1) != "total":
            # status tells "submitted" (paid, a pending row) apart from "pending"
            name = "pending" if match.group(1) == "submitted" else match.group(1)
            counts[name] += int(match.group(2))
    return counts


def _summary(journal: Path, tmp_path: Path) -> Counter[str]:
    """What the end-of-run summary counts, over the catalog of run 2."""
    path = tmp_path / "catalog.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sku", "image_url"])
        for key in EXPECTED:
            writer.writerow([key, "ftp://bad" if key == "G-invalid" else _url(key)])
    catalog = Catalog(path, check_defaults("US", "en", None, None, False))
    catalog.scan()

    async def run() -> Counter[str]:
        async with await Journal.open(journal) as j:
            tally = await write_output(catalog, j, tmp_path / "results.jsonl")
        return tally.status

    return asyncio.run(run())


def test_every_output_lists_the_same_rows_with_the_same_status(journal, tmp_path, capsys):
    """JSONL, CSV, XLSX, the HTML report, status and the summary agree on every state."""
    assert set(EXPECTED.values()) <= set(STATUSES)
    expected_counts = Counter(EXPECTED.values())
    assert _jsonl(journal, capsys) == EXPECTED
    assert _csv(journal, capsys) == EXPECTED
    assert _xlsx(journal, tmp_path) == EXPECTED
    assert _html(journal, tmp_path) == EXPECTED
    assert _status_counts(journal, capsys) == expected_counts
    assert _summary(journal, tmp_path) == expected_counts


def test_all_adds_the_dropped_row_to_every_export(journal, tmp_path, capsys):
    """``--all`` brings the row dropped from the catalog back, in every format alike."""
    everything = {**EXPECTED, DROPPED: "done"}
    assert _jsonl(journal, capsys, "--all") == everything
    assert _csv(journal, capsys, "--all") == everything
    assert _xlsx(journal, tmp_path, "--all") == everything
    assert _html(journal, tmp_path, "--all") == everything


# -- the drifts (each failed before the record rule had one home) ------------------------


def test_xlsx_export_applies_the_run_filter(journal, tmp_path, capsys):
    """``export --format xlsx`` leaves out the row dropped from the catalog, as csv does."""
    assert DROPPED not in _xlsx(journal, tmp_path)
    assert set(_xlsx(journal, tmp_path)) == set(_csv(journal, capsys))


def test_report_leaves_out_rows_dropped_from_the_catalog(journal, tmp_path):
    """``report`` (and write_html on a journal) shows the rows ``export`` writes."""
    assert DROPPED not in _html(journal, tmp_path)
    written = write_html(journal, tmp_path / "lib.html")
    assert written.rows == len(EXPECTED)


@pytest.mark.parametrize("key", ["B-submitting", "C-unknown"])
def test_a_row_left_mid_submit_is_unknown_in_the_report(journal, tmp_path, key):
    """A submitting or unknown row is ``unknown`` on its card, as in CSV and JSONL."""
    async def row() -> JournalRow:
        async with await Journal.open(journal, readonly=True) as j:
            found = j.get(key)
        assert found is not None
        return found

    values = card(asyncio.run(row()), None)
    assert (values["status"], values["risk"]) == ("unknown", "unknown")
    assert card({"key": key, "status": "unknown"}, None)["risk"] == "unknown"


@pytest.mark.parametrize("raw", [150, 80, 0.93, 1, -3])
def test_the_report_reads_an_ai67_score_as_the_model_does(raw):
    """A comparison's score on a card is :func:`normalize_score` of the wire value."""
    comparison = {"score": raw, "patent_pn": "USD1", "risk_level": "High", "country": "US"}
    record = {"key": "X", "status": "done",
              "report": {"report": {"comparisons": [comparison]}}}
    (match,) = card(record, None)["matches"]
    assert match["score"] == normalize_score(raw)
    assert 0.0 <= match["score"] <= 1.0


# -- the same agreement on a journal the command wrote (the emulator, two runs) ----------


async def test_two_real_runs_agree_in_every_output(emu, env, tmp_path, capsys):
    """Run 1 screens six rows (one shares another's task, one is invalid); run 2 drops a
    row, changes one, and adds one the report cache answers. The screen's own JSONL, the
    exports, the report and status then list the same rows with the same status."""
    cache = ["--cache", str(tmp_path / "cache.db")]
    out = tmp_path / "results.jsonl"
    journal = tmp_path / "results.jsonl.journal.db"
    first = ["A,https://example.com/a.png,US", "B,https://example.com/a.png,US",
             "C,https://example.com/c.png,US", "D,ftp://example.com/d.png,US",
             "E,https://example.com/e.png,US", "F,https://example.com/f.png,US"]
    path = catalog(tmp_path, first)
    assert await cli("screen", str(path), "--out", str(out), *cache, *FAST) == 1
    second = [row for row in first if not row.startswith(("E,", "F,"))]
    second += ["F,https://example.com/f.png,EU", "G,https://example.com/c.png,US"]
    path = catalog(tmp_path, second)
    submits = len(emu.stats.submits)
    assert await cli("screen", str(path), "--out", str(out), *cache, *FAST) == 1
    assert len(emu.stats.submits) == submits + 1  # F again; G came from the cache
    screened = {r["key"]: r["status"] for r in records(out)}
    assert screened == {"A": "done", "B": "done", "C": "done", "D": "invalid", "F": "done",
                        "G": "done"}  # fmt: skip

    def check() -> None:
        assert _jsonl(journal, capsys) == screened
        assert _csv(journal, capsys) == screened
        assert _xlsx(journal, tmp_path) == screened
        assert _html(journal, tmp_path) == screened
        assert _status_counts(journal, capsys) == Counter(screened.values())
        assert set(_jsonl(journal, capsys, "--all")) == {*screened, "E"}

    await asyncio.to_thread(check)
