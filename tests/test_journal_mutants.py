"""The journal's rules that mutation testing found unread (issue 26; benchmarks/mutation.py).

Each test fails with a planted bug that the rest of the journal's tests let through; all
go through the public :class:`~fto_async.journal.Journal` API, so they survive any move of
its private modules.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
from pathlib import Path

import pytest

from fto_async.journal import ItemState, Journal, JournalLockedError, NotAJournalError

S = ItemState
REQUEST = {"url": "https://e.test/lampe.png", "title": "lampe \u00e0 poser \u706f"}


async def test_rows_are_stored_as_compact_utf8_json(tmp_path: Path) -> None:
    """A report is tens of kilobytes of mostly non-ASCII platform text: the journal stores
    it without spaces and without ``\\u`` escapes (an escaped CJK character takes 6 bytes
    instead of 3)."""
    path = tmp_path / "j.db"
    report = {"title": "\u676f\u5b50", "score": 0.5}
    async with await Journal.open(path) as journal:
        await journal.add_pending("a", 0, REQUEST, "image_search")
        await journal.mark_submitting("a")
        await journal.mark_submitted("a", "t-1")
        await journal.mark_done("a", report)
        row = journal.get("a")
        assert row is not None
        assert row.request_json == (
            '{"url":"https://e.test/lampe.png","title":"lampe \u00e0 poser \u706f"}'
        )
        assert row.report_json == '{"title":"\u676f\u5b50","score":0.5}'
    with contextlib.closing(sqlite3.connect(path)) as db:
        stored = db.execute("SELECT request, report FROM items").fetchall()
    assert stored == [(row.request_json, row.report_json)]


@pytest.mark.parametrize("bad", [math.nan, math.inf])
async def test_a_request_or_report_that_is_not_json_is_refused(tmp_path: Path, bad: float) -> None:
    """NaN and Infinity are not JSON: other readers of the file (``export``, ``jq``) would
    choke on them, so the write is refused and the row left as it was."""
    async with await Journal.open(tmp_path / "j.db") as journal:
        with pytest.raises(ValueError, match="JSON"):
            await journal.add_pending("a", 0, {**REQUEST, "score": bad}, "image_search")
        assert journal.get("a") is None
        await journal.add_pending("b", 0, REQUEST, "image_search")
        await journal.mark_submitting("b")
        await journal.mark_submitted("b", "t-1")
        with pytest.raises(ValueError, match="JSON"):
            await journal.mark_done("b", {"score": bad})
        row = journal.get("b")
        assert row is not None
        assert (row.state, row.report) == (S.SUBMITTED, None)
        assert json.loads(row.request_json) == REQUEST


async def test_a_second_open_names_the_file_held(tmp_path: Path) -> None:
    """The refusal says which file is held and why, so a user can find the other run."""
    path = tmp_path / "catalog.journal"
    async with await Journal.open(path):
        held = r"^journal '.*catalog\.journal' is open elsewhere$"
        with pytest.raises(JournalLockedError, match=held):
            await Journal.open(path)


async def test_a_foreign_database_is_refused_by_name(tmp_path: Path) -> None:
    """Opening another application's SQLite file for writing names the file and leaves it
    byte for byte as it was."""
    path = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE notes (body TEXT)")
        db.commit()
    before = path.read_bytes()
    with pytest.raises(NotAJournalError, match=r"^'.*other\.db' is not an fto-async journal \("):
        await Journal.open(path)
    assert path.read_bytes() == before


async def test_a_schema_3_journal_gains_follow_up_fingerprints(tmp_path: Path) -> None:
    """A file written before follow-ups had fingerprints (schema 3) keeps its follow-ups,
    reads them read-only as they are, and opened for writing gains the column: a new
    follow-up's fingerprint survives a reopen."""
    path = tmp_path / "j.db"
    async with await Journal.open(path) as journal:
        await journal.add_pending("a", 0, REQUEST, "image_search")
        await journal.add_follow_up("a", "US1S")
    with contextlib.closing(sqlite3.connect(path)) as db:  # back to schema 3
        db.execute("ALTER TABLE follow_ups DROP COLUMN fingerprint")
        db.execute("DROP TABLE follow_up_history")
        db.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
        db.commit()
    async with await Journal.open(path, readonly=True) as journal:
        old = journal.follow_up("a", "US1S")
        assert old is not None
        assert (old.state, old.fingerprint) == (S.PENDING, None)
    async with await Journal.open(path) as journal:
        assert journal.get_meta("schema_version") == "4"
        await journal.add_follow_up("a", "US2S", fingerprint="v1:fu")
    async with await Journal.open(path) as journal:
        assert [(f.patent_pn, f.fingerprint) for f in journal.follow_ups("a")] == [
            ("US1S", None), ("US2S", "v1:fu")
        ]
