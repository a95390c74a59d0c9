"""A changed row is screened again, never answered from an old result; a done row stays done
when its image goes; rows no longer in the catalog are left out of what is reported."""

from __future__ import annotations

import contextlib
import sqlite3
import struct
import zlib

from fto_async import ImageSearchRequest
from fto_async.journal import ItemState, Journal
from tests._shared import collect
from tests.reliability._cli import FAST, cli, point_at, records, write_catalog
from tests.reliability._support import make_client


def png(gray: int) -> bytes:
    """A valid 1x1 grayscale PNG of the given shade (distinct bytes per shade)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(bytes([0, gray]))) + chunk(b"IEND", b""))


async def test_a_changed_url_row_is_screened_again(emu, monkeypatch, tmp_path, capsys):
    """X1 given a new image and CN,JP is screened again (not reported with the old image's
    US report); its earlier record moves to the journal's history; the summary says so."""
    point_at(monkeypatch, emu)
    path = write_catalog(tmp_path / "c.csv", ["X1,https://example.com/old.png,US",
                                              "X2,https://example.com/two.png,US"])
    out = tmp_path / "r.jsonl"
    assert await cli("screen", str(path), "--out", str(out), *FAST) == 0
    old = records(out)[0]
    capsys.readouterr()

    write_catalog(path, ['X1,https://example.com/new.png,"CN,JP"',
                         "X2,https://example.com/two.png,US"])
    assert await cli("screen", str(path), "--out", str(out), "--dry-run") == 0
    assert "changed since the last run (submitted again)  1" in capsys.readouterr().out
    assert await cli("screen", str(path), "--out", str(out), *FAST) == 0
    assert "1 rows changed since the last run: screened again" in capsys.readouterr().out
    assert [s.image for s in emu.stats.submits][-1] == "https://example.com/new.png"
    assert len(emu.stats.submits) == 3  # X2 was not paid again
    new = records(out)[0]
    assert new["status"] == "done"
    assert new["task_id"] != old["task_id"]
    async with await Journal.open(tmp_path / "r.jsonl.journal.db", readonly=True) as journal:
        row = journal.get("X1")
        assert row is not None
        assert row.request["url"] == "https://example.com/new.png"
        assert row.request["country"] == ["CN", "JP"]
        (earlier,) = journal.history("X1")
        assert (earlier.task_id, earlier.state) == (old["task_id"], ItemState.DONE)
        assert earlier.request["url"] == "https://example.com/old.png"


async def test_a_local_image_replaced_in_place_is_screened_again(emu, monkeypatch, tmp_path,
                                                                 capsys):
    """Same file name, new bytes: the row is uploaded and screened again; same bytes: not."""
    point_at(monkeypatch, emu)
    image = tmp_path / "lamp.png"
    image.write_bytes(png(10))
    path = write_catalog(tmp_path / "c.csv", ["L1,lamp.png,US"], header="sku,image_path,country")
    out = tmp_path / "r.jsonl"
    assert await cli("screen", str(path), "--out", str(out), *FAST) == 0
    first = records(out)[0]["task_id"]
    assert await cli("screen", str(path), "--out", str(out), *FAST) == 0
    assert len(emu.stats.submits) == 1  # unchanged: answered from the journal
    capsys.readouterr()

    image.write_bytes(png(200))
    assert await cli("screen", str(path), "--out", str(out), *FAST) == 0
    assert "1 rows changed" in capsys.readouterr().out
    assert len(emu.stats.submits) == 2
    assert emu.stats.count("/image-search/image-upload", 0) == 2
    assert records(out)[0]["task_id"] != first


async def test_a_done_row_keeps_its_result_when_its_image_is_gone(emu, monkeypatch, tmp_path,
                                                                  capsys):
    """A done row whose local image was deleted keeps its result (not `invalid`), with a
    warning; a row never screened whose image is missing is invalid as before."""
    point_at(monkeypatch, emu)
    image = tmp_path / "lamp.png"
    image.write_bytes(png(10))
    path = write_catalog(tmp_path / "c.csv", ["L1,lamp.png,US"], header="sku,image_path,country")
    out = tmp_path / "r.jsonl"
    assert await cli("screen", str(path), "--out", str(out), *FAST) == 0
    before = records(out)
    capsys.readouterr()

    image.unlink()
    assert await cli("screen", str(path), "--out", str(out), "--dry-run") == 0
    assert "already finished (journal)  1" in capsys.readouterr().out
    assert await cli("screen", str(path), "--out", str(out), *FAST) == 0
    assert records(out) == before
    assert "1 done rows' images are gone; results kept" in capsys.readouterr().out
    assert len(emu.stats.submits) == 1

    write_catalog(path, ["L1,lamp.png,US", "L2,gone.png,US"], header="sku,image_path,country")
    assert await cli("screen", str(path), "--out", str(out), *FAST) == 1
    assert [r["status"] for r in records(out)] == ["done", "invalid"]


async def test_rows_gone_from_the_catalog_are_left_out(emu, monkeypatch, tmp_path, capsys):
    """A row removed from the catalog leaves the output; export leaves it out and says how
    many it left, unless --all."""
    point_at(monkeypatch, emu)
    path = write_catalog(tmp_path / "c.csv", ["A,https://example.com/a.png,US",
                                              "B,https://example.com/b.png,US"])
    out = tmp_path / "r.jsonl"
    assert await cli("screen", str(path), "--out", str(out), *FAST) == 0
    write_catalog(path, ["B,https://example.com/b.png,US"])
    assert await cli("screen", str(path), "--out", str(out), *FAST) == 0
    assert [r["key"] for r in records(out)] == ["B"]
    capsys.readouterr()

    journal = str(tmp_path / "r.jsonl.journal.db")
    assert await cli("export", journal) == 0
    captured = capsys.readouterr()
    assert [line for line in captured.out.splitlines() if line]
    assert '"A"' not in captured.out
    assert ("1 rows in the journal were not in the last run's catalog; left out "
            "(use --all to include)") in captured.err
    assert await cli("export", journal, "--all") == 0
    assert '"key": "A"' in capsys.readouterr().out


async def test_batch_with_a_journal_rescreens_a_changed_request(emu, tmp_path):
    """Library users get the same protection: screen_many with a journal screens a key
    again when its request's fingerprint changed, and resumes it when it did not."""
    first = ImageSearchRequest(url="https://example.com/a.png", country=["US"], lang="en")
    second = ImageSearchRequest(url="https://example.com/a.png", country=["US", "CN"], lang="en")
    async with make_client(emu, "sk") as client, await Journal.open(tmp_path / "j.db") as journal:
        (done,), _ = await collect(client.screen_many([("k", first)], journal=journal))
        (again,), _ = await collect(client.screen_many([("k", first)], journal=journal))
        (changed,), _ = await collect(client.screen_many([("k", second)], journal=journal))
        assert again.resumed
        assert again.task_id == done.task_id
        assert not changed.resumed
        assert changed.ok
        assert changed.task_id != done.task_id
        assert [row.task_id for row in journal.history("k")] == [done.task_id]
    assert len(emu.stats.submits) == 2


async def test_a_journal_from_before_fingerprints_is_compared_by_its_request(
        emu, monkeypatch, tmp_path, capsys):
    """An old (schema 1) journal gains the column; a URL row whose stored request differs
    from the catalog is screened again, an identical one is kept."""
    point_at(monkeypatch, emu)
    path = write_catalog(tmp_path / "c.csv", ["A,https://example.com/a.png,US",
                                              "B,https://example.com/b.png,US"])
    out = tmp_path / "r.jsonl"
    assert await cli("screen", str(path), "--out", str(out), *FAST) == 0
    journal = tmp_path / "r.jsonl.journal.db"
    with contextlib.closing(sqlite3.connect(journal)) as db:  # back to schema 1
        db.execute("ALTER TABLE items DROP COLUMN fingerprint")
        db.execute("ALTER TABLE items DROP COLUMN run")
        db.execute("DROP TABLE history")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
        db.execute("DELETE FROM meta WHERE key = 'last_run'")
        db.commit()
    write_catalog(path, ["A,https://example.com/a.png,US", "B,https://example.com/b2.png,US"])
    assert await cli("screen", str(path), "--out", str(out), *FAST) == 0
    assert "1 rows changed" in capsys.readouterr().out
    assert [s.image for s in emu.stats.submits][2:] == ["https://example.com/b2.png"]


async def test_an_unreadable_done_record_is_screened_again(emu, tmp_path):
    """A done record whose report cannot be decoded is screened again (it used to crash the
    batch: mark_submitting from done), the unreadable record kept in the history."""
    request = ImageSearchRequest(url="https://example.com/a.png", country=["US"], lang="en")
    async with make_client(emu, "sk") as client, await Journal.open(tmp_path / "j.db") as journal:
        body = client.encode_request(request)
        await journal.add_pending("k", 0, body, "image_search")
        await journal.mark_submitting("k")
        await journal.mark_submitted("k", "t-old")
        await journal.mark_done("k", {"task_status": "not a status"})
        (outcome,), raised = await collect(client.screen_many([("k", request)], journal=journal))
        assert raised is None
        assert outcome.ok
        assert not outcome.resumed
        assert [row.task_id for row in journal.history("k")] == ["t-old"]
