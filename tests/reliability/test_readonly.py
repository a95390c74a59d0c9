"""Read-only access never writes: ``status``, ``export`` and ``--dry-run`` read a journal
without changing a byte beside it, while a run holds it, on read-only files and folders;
a SQLite file that is not a journal is refused (exit 2) and left as it was."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from fto_async.emulator import Emulator
from fto_async.journal import Journal, NotAJournalError
from tests.reliability._cli import FAST, cli, point_at, records, write_catalog


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file in ``folder`` with its bytes and modification time."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


@contextlib.contextmanager
def read_only(*paths: Path) -> Iterator[None]:
    """chmod the files 0444 and folders 0555 for the block (root is not stopped by it;
    the snapshot comparisons are what proves nothing was written)."""
    modes = {path: stat.S_IMODE(path.stat().st_mode) for path in paths}
    for path in paths:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        yield
    finally:
        for path, mode in modes.items():
            path.chmod(mode)


async def screened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, emu: Emulator) -> Path:
    """The journal of a run that died while submitting K0, alone in its folder (the output
    is elsewhere): a writer opening it would turn K0 into ``unknown``."""
    point_at(monkeypatch, emu)
    path = write_catalog(tmp_path / "c.csv", [f"K{i},https://example.com/{i}.png,US"
                                              for i in range(3)] + ["K9,bad,US"])
    folder = tmp_path / "journal"
    folder.mkdir()
    journal = folder / "j.db"
    assert await cli("screen", str(path), "--out", str(tmp_path / "r.jsonl"),
                     "--journal", str(journal), *FAST) == 1
    with contextlib.closing(sqlite3.connect(journal)) as db:
        db.execute("UPDATE items SET state = 'submitting', task_id = NULL WHERE key = 'K0'")
        db.commit()
    return journal


async def test_status_and_export_write_nothing(emu, monkeypatch, tmp_path, capsys):
    """status and export leave the journal's folder byte for byte as it was (no -wal, no
    -shm, no lock file), also with the file 0444 and its folder 0555."""
    journal = await screened(tmp_path, monkeypatch, emu)
    before = snapshot(journal.parent)
    capsys.readouterr()
    with read_only(journal, journal.parent):
        assert await cli("status", str(journal)) == 0
        text = capsys.readouterr().out
        assert re.search(r"done\s+2\n", text)
        assert re.search(r"unknown\s+1\n", text)  # no run holds it: K0's run died
        assert "1 left mid-submit by a run that died" in text
        assert await cli("export", str(journal)) == 0
        exported = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [r["status"] for r in exported] == ["unknown", "done", "done", "invalid"]
        assert exported[1:] == records(tmp_path / "r.jsonl")[1:]
        assert await cli("export", str(journal), "--format", "csv",
                         "--out", str(tmp_path / "e.csv")) == 0
    assert snapshot(journal.parent) == before


async def test_dry_run_writes_nothing_to_the_journal(emu, monkeypatch, tmp_path):
    """--dry-run reads the journal without changing its folder."""
    journal = await screened(tmp_path, monkeypatch, emu)
    before = snapshot(journal.parent)
    assert await cli("screen", str(tmp_path / "c.csv"), "--out", str(tmp_path / "r.jsonl"),
                     "--journal", str(journal), "--dry-run") == 0  # invalid rows: counted
    assert snapshot(journal.parent) == before


async def test_status_and_export_work_while_a_run_holds_the_journal(tmp_path, capsys):
    """A run holding the journal (its lock, uncheckpointed WAL writes) does not stop status
    or export, which see what it committed."""
    path = tmp_path / "j.db"
    body = {"url": "https://example.com/a.png", "country": ["US"], "lang": "en"}
    async with await Journal.open(path) as journal:
        for key in ("a", "b"):
            await journal.add_pending(key, 1, body, "image_search")
        await journal.add_pending("c", 2, body, "image_search")
        await journal.mark_submitting("a")
        await journal.mark_submitted("a", "task-1")
        await journal.mark_submitting("c")  # a live submit, not an unknown one
        await journal.flush()
        assert await cli("status", str(path)) == 0
        text = capsys.readouterr().out
        assert re.search(r"submitted\s+1\n", text)
        assert re.search(r"pending\s+1\n", text)
        assert re.search(r"submitting\s+1\n", text)
        assert "unknown" not in text
        assert await cli("export", str(path)) == 0
        assert [line.count('"task_id": "task-1"') for line in
                capsys.readouterr().out.splitlines()] == [1, 0, 0]
        await journal.mark_done("a", {"task_status": 2})


def other_database(path: Path) -> bytes:
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        db.execute("INSERT INTO invoices (total) VALUES (12.5)")
        db.commit()
    return path.read_bytes()


def fake_journal(path: Path) -> bytes:
    """An items table but no meta schema version."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE items (key TEXT)")
        db.execute("CREATE TABLE meta (key TEXT, value TEXT)")
        db.commit()
    return path.read_bytes()


def text_file(path: Path) -> bytes:
    path.write_text("sku,image_url\nA,https://example.com/a.png\n")
    return path.read_bytes()


@pytest.mark.parametrize("make", [other_database, fake_journal, text_file])
async def test_a_file_that_is_not_a_journal_is_refused_unchanged(make, emu, monkeypatch,
                                                                 tmp_path, capsys):
    """status, export and screen --journal on another SQLite file (or not SQLite at all)
    exit 2 saying it is not a journal; its bytes are identical and no -wal/-shm is left."""
    point_at(monkeypatch, emu)
    folder = tmp_path / "db"
    folder.mkdir()
    path = folder / "other.db"
    data = make(path)
    catalog = write_catalog(tmp_path / "c.csv", ["K1,https://example.com/a.png,US"])
    for args in (["status", str(path)], ["export", str(path)],
                 ["screen", str(catalog), "--out", str(tmp_path / "r.jsonl"),
                  "--journal", str(path), *FAST]):
        assert await cli(*args) == 2, args
        assert "not an fto-async journal" in capsys.readouterr().err
        assert path.read_bytes() == data
        assert sorted(os.listdir(folder)) == ["other.db"]
    assert emu.stats.count() == 0
    with pytest.raises(NotAJournalError):
        await Journal.open(path, readonly=True)


async def test_read_only_journal_refuses_writes(tmp_path):
    """A journal opened read-only raises on every write."""
    path = tmp_path / "j.db"
    async with await Journal.open(path):
        pass
    async with await Journal.open(path, readonly=True) as journal:
        with pytest.raises(RuntimeError, match="read-only"):
            await journal.add_pending("a", 0, {"url": "u"}, "image_search")
        assert len(journal) == 0
