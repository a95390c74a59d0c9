"""The CLI never pays twice: dedupe and the report cache, the dry run's counts, the flags."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from fto_async.cli._args import default_cache_path, parse_duration
from tests._cli import FAST, catalog, cli, records
from tests._shared import PNG, png_of_size

UPLOAD = "/image-search/image-upload"


def mixed_catalog(tmp_path: Path) -> Path:
    """12 rows: 4 URL images each twice, 2 local files under 4 names (one file twice)."""
    (tmp_path / "a.png").write_bytes(PNG)
    (tmp_path / "b.png").write_bytes(png_of_size(120))
    (tmp_path / "a-copy.png").write_bytes(PNG)
    rows = [f"U{i}-{c},https://example.com/u{i}.png,,US" for c in range(2) for i in range(4)]
    rows += ["P1,,a.png,US", "P2,,a-copy.png,US", "P3,,b.png,US", "P4,,a.png,US"]
    return catalog(tmp_path, rows, header="sku,image_url,image_path,country")


def dry_numbers(text: str) -> dict[str, int]:
    calls = re.search(r"about (\d+) \(submits (\d+), polls ~(\d+), uploads (\d+)\)", text)
    summary = re.search(r"(\d+) rows, (\d+) distinct requests, (\d+) from cache", text)
    assert calls is not None, text
    assert summary is not None, text
    return {"calls": int(calls[1]), "submits": int(calls[2]), "polls": int(calls[3]),
            "uploads": int(calls[4]), "rows": int(summary[1]), "distinct": int(summary[2]),
            "cached": int(summary[3])}  # fmt: skip


def run_numbers(text: str) -> dict[str, int]:
    summary = re.search(r"(\d+) rows, (\d+) distinct requests, (\d+) from cache, calls used "
                        r"(\d+) \(uploads (\d+)\)", text)  # fmt: skip
    assert summary is not None, text
    return {"rows": int(summary[1]), "distinct": int(summary[2]), "cached": int(summary[3]),
            "calls": int(summary[4]), "uploads": int(summary[5])}  # fmt: skip


async def test_dry_run_matches_the_real_run(emu, env, tmp_path, capsys):
    """The dry run's submits, uploads, distinct requests and cache hits are the real run's,
    on a cold cache and again on a half-warm one."""
    path = mixed_catalog(tmp_path)
    cache = tmp_path / "cache.db"
    for attempt, out in enumerate(("r1.jsonl", "r2.jsonl")):
        if attempt:  # warm half the cache: the first run's reports of u0, u1 only
            with sqlite3.connect(cache) as db:
                db.execute("DELETE FROM answers WHERE rowid % 2 = 0")
        args = ["screen", str(path), "--out", str(tmp_path / out), "--cache", str(cache)]
        submits, uploads = len(emu.stats.submits), emu.stats.count(UPLOAD, 0)
        assert await cli(*args, "--dry-run") == 0
        dry = dry_numbers(capsys.readouterr().out)
        assert await cli(*args, *FAST) == 0
        real = run_numbers(capsys.readouterr().out)
        assert len(emu.stats.submits) - submits == dry["submits"]
        assert emu.stats.count(UPLOAD, 0) - uploads == dry["uploads"] == real["uploads"]
        assert (dry["rows"], dry["distinct"], dry["cached"]) == (
            real["rows"], real["distinct"], real["cached"])
        if attempt == 0:
            assert dry == {"calls": 14, "submits": 6, "polls": 6, "uploads": 2, "rows": 12,
                           "distinct": 6, "cached": 0}  # fmt: skip
        else:
            assert 0 < dry["cached"] < 6
            assert dry["submits"] == 6 - dry["cached"]
        assert [r["status"] for r in records(tmp_path / out)] == ["done"] * 12


async def test_second_run_costs_no_call(emu, env, tmp_path, capsys):
    """A new run (new output, new journal) of the same catalog is answered by the cache."""
    path = mixed_catalog(tmp_path)
    assert await cli("screen", str(path), "--out", str(tmp_path / "a.jsonl"), *FAST) == 0
    first = records(tmp_path / "a.jsonl")
    calls = emu.stats.count()
    capsys.readouterr()
    assert await cli("screen", str(path), "--out", str(tmp_path / "b.jsonl"), *FAST) == 0
    assert emu.stats.count() == calls  # not an upload, not a submit, not a poll
    text = capsys.readouterr().out
    assert "12 rows, 6 distinct requests, 6 from cache, calls used 0" in text
    assert "younger than 7 d" in text
    second = records(tmp_path / "b.jsonl")
    assert [r["report"] for r in second] == [r["report"] for r in first]


async def test_default_cache_lives_in_xdg_cache_home(emu, env, tmp_path):
    """The default cache file is under $XDG_CACHE_HOME/fto-async (the conftest's temp folder)."""
    path = catalog(tmp_path, ["K1,https://example.com/1.png,US"])
    assert await cli("screen", str(path), "--out", str(tmp_path / "r.jsonl"), *FAST) == 0
    expected = default_cache_path(emu.base_url)
    assert expected.is_file()
    assert "fto-async" in expected.parts
    assert str(expected).startswith(str(Path.home() / ".cache")) is False


async def test_no_cache_and_max_age(emu, env, tmp_path, capsys):
    """--no-cache submits again and writes no cache; a report past --max-age is a miss."""
    path = catalog(tmp_path, ["K1,https://example.com/1.png,US", "K2,https://example.com/2.png,US"])
    cache = tmp_path / "c.db"
    base = ["screen", str(path), "--cache", str(cache), *FAST]
    assert await cli(*base, "--out", str(tmp_path / "a.jsonl")) == 0
    assert len(emu.stats.submits) == 2
    assert await cli("screen", str(path), "--out", str(tmp_path / "b.jsonl"), "--no-cache",
                     *FAST) == 0  # fmt: skip
    assert len(emu.stats.submits) == 4
    with sqlite3.connect(cache) as db:  # K1's report is now 2 hours old
        db.execute("UPDATE answers SET created_at = created_at - 7200 WHERE rowid = 1")
    capsys.readouterr()
    assert await cli(*base, "--out", str(tmp_path / "c.jsonl"), "--max-age", "1h") == 0
    assert len(emu.stats.submits) == 5  # the old one again, the fresh one from the cache
    assert "1 from cache" in capsys.readouterr().out


def test_max_age_parsing_and_help(capsys):
    """--max-age takes 7d, 12h, 30m, 3600s; --help shows it with its default."""
    assert parse_duration("7d") == 604800
    assert parse_duration("12h") == 43200
    assert parse_duration("3600s") == parse_duration("3600") == 3600
    from fto_async.cli import main

    assert main(["screen", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--max-age" in text
    assert "default 7d" in text
    assert "--no-cache" in text
    assert main(["screen", "x.csv", "--out", "r.jsonl", "--max-age", "soon"]) == 2
    assert "not a duration" in capsys.readouterr().err


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_default_cache_is_one_file_per_platform(scheme):
    """Reports of one platform (base URL) never answer for another."""
    one = default_cache_path(f"{scheme}://127.0.0.1:8001")
    two = default_cache_path(f"{scheme}://127.0.0.1:8002")
    assert one != two
    assert one.parent == two.parent



async def test_an_expired_upload_url_is_not_reused(emu, env, tmp_path, monkeypatch):
    """An upload URL is reused only while its ``expire`` leaves the margin; past it the
    file is uploaded again (here every URL is treated as too old)."""
    from fto_async.cli import _images

    (tmp_path / "a.png").write_bytes(PNG)
    rows = ["P1,a.png,US", "P2,a.png,EU", "P3,a.png,JP"]  # one file, three questions
    path = catalog(tmp_path, rows, header="sku,image_path,country")
    assert await cli("screen", str(path), "--out", str(tmp_path / "a.jsonl"), "--no-cache",
                     *FAST) == 0  # fmt: skip
    assert emu.stats.count(UPLOAD, 0) == 1
    monkeypatch.setattr(_images, "_UPLOAD_MARGIN", 10**9)
    assert await cli("screen", str(path), "--out", str(tmp_path / "b.jsonl"), "--no-cache",
                     *FAST) == 0  # fmt: skip
    assert emu.stats.count(UPLOAD, 0) == 4


async def test_a_cache_file_that_is_no_database_exits_2(emu, env, tmp_path, capsys):
    """--cache pointing at a file that is not a database says so, suggests --no-cache,
    exits 2 and calls nothing."""
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database" * 100)
    path = catalog(tmp_path, ["K1,https://example.com/1.png,US"])
    code = await cli("screen", str(path), "--out", str(tmp_path / "r.jsonl"), "--cache", str(bad))
    assert code == 2
    err = capsys.readouterr().err
    assert "cannot open the report cache" in err
    assert "--no-cache" in err
    assert emu.stats.count() == 0


async def test_the_cache_is_never_the_journal_or_the_output(emu, env, tmp_path, capsys):
    """--cache naming the journal, the output or the catalog is refused before any call."""
    path = catalog(tmp_path, ["K1,https://example.com/1.png,US"])
    out = tmp_path / "r.jsonl"
    for target in (tmp_path / "r.jsonl.journal.db", out, path):
        assert await cli("screen", str(path), "--out", str(out), "--cache", str(target)) == 2
        assert "--cache:" in capsys.readouterr().err
    assert emu.stats.count() == 0
    assert not (tmp_path / "r.jsonl.journal.db").exists()


async def test_rescreen_of_local_images_uploads_and_screens_them_again(emu, env, tmp_path):
    """--rescreen reads no report from the cache, so an image_path row is uploaded and
    submitted again; before, the image lookup (at --max-age) found the cached report and
    sent the stand-in URL, which the client refuses: every local image row failed."""
    path = mixed_catalog(tmp_path)
    out = tmp_path / "r.jsonl"
    cache = tmp_path / "cache.db"
    args = ["screen", str(path), "--out", str(out), "--cache", str(cache), *FAST]
    assert await cli(*args) == 0
    submits, uploads = len(emu.stats.submits), emu.stats.count(UPLOAD, 0)
    assert await cli(*args, "--rescreen") == 0
    assert [r["status"] for r in records(out)] == ["done"] * 12
    assert len(emu.stats.submits) - submits == 6
    assert emu.stats.count(UPLOAD, 0) - uploads == 2


async def test_dry_run_of_a_rescreen_counts_what_the_rescreen_pays(emu, env, tmp_path, capsys):
    """--dry-run --rescreen predicts the rescreen's submits and uploads (every distinct
    question again); before, it counted the journal's done rows as finished and the
    cache's reports as hits: about 0 calls for a run that pays for every question."""
    path = mixed_catalog(tmp_path)
    args = ["screen", str(path), "--out", str(tmp_path / "r.jsonl"), "--cache",
            str(tmp_path / "cache.db")]  # fmt: skip
    assert await cli(*args, *FAST) == 0
    capsys.readouterr()
    assert await cli(*args, "--rescreen", "--dry-run") == 0
    dry = dry_numbers(capsys.readouterr().out)
    submits, uploads = len(emu.stats.submits), emu.stats.count(UPLOAD, 0)
    assert await cli(*args, *FAST, "--rescreen") == 0
    assert dry["submits"] == len(emu.stats.submits) - submits == 6
    assert dry["uploads"] == emu.stats.count(UPLOAD, 0) - uploads == 2
    assert dry["cached"] == 0
