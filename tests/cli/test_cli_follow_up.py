"""``fto-async screen --follow-up``: 1-vs-1 follow-ups in the CLI, its output and export."""

from __future__ import annotations

import csv
import io
import tempfile
from typing import Any

from fto_async.emulator._state import STATE_KEY
from tests._cli import FAST, catalog, cli, good_rows, records
from tests._shared import png_of_size

UPLOAD = "/image-search/image-upload"


def one_vs_one(emulator: Any) -> list[tuple[str, str]]:
    """(image, patent) of every 1-vs-1 task the emulator created."""
    tasks = emulator.app[STATE_KEY].tasks
    return [(rec.image, tasks[rec.task_id].inputs.patent_number)
            for rec in emulator.stats.submits if rec.kind == "one-vs-one"]  # fmt: skip


def top(rec: dict[str, Any], n: int, levels: tuple[str, ...]) -> list[str]:
    """The patents of a record's report that the run should have followed up."""
    comparisons = (rec["report"] or {}).get("report", {}).get("comparisons", [])
    risky = [c for c in comparisons if c["risk_level"] in levels]
    risky.sort(key=lambda c: -c["score"])
    return [c["patent_pn"] for c in risky[:n]]


async def test_follow_up_rows_carry_their_1v1_results(emu, env, tmp_path, capsys):
    """--follow-up high:2: each row's top-2 High patents get one 1-vs-1 task; the JSONL,
    the summary and export show them; a rerun pays nothing."""
    path = catalog(tmp_path, [f"K{i},https://example.com/p{i}.png,\"US,EU\"" for i in range(20)])
    out = tmp_path / "r.jsonl"
    assert await cli("screen", str(path), "--out", str(out), "--follow-up", "high:2",
                     *FAST) == 0  # fmt: skip
    recs = records(out)
    total = 0
    for rec in recs:
        want = top(rec, 2, ("High",))
        assert [fu["patent_pn"] for fu in rec["follow_ups"]] == want
        for fu in rec["follow_ups"]:
            assert set(fu) == {"patent_pn", "task_id", "highest_risk", "high_risk_countries",
                               "error", "report"}
            assert fu["task_id"]
            assert fu["error"] is None
            assert fu["report"]["comparisons"][0]["patent_pn"] == fu["patent_pn"]
        total += len(want)
    assert total > 0
    assert len(one_vs_one(emu)) == total
    assert "Follow-ups (1-vs-1" in capsys.readouterr().out
    calls = emu.stats.count()
    assert await cli("screen", str(path), "--out", str(out), "--follow-up", "high:2",
                     *FAST) == 0  # fmt: skip
    assert emu.stats.count() == calls
    journal = tmp_path / "r.jsonl.journal.db"
    capsys.readouterr()
    assert await cli("status", str(journal)) == 0
    status = capsys.readouterr().out
    assert "Follow-ups (1-vs-1)" in status
    assert f"done   {total}" in status
    exported = tmp_path / "e.jsonl"
    assert await cli("export", str(journal), "--out", str(exported)) == 0
    assert [r["follow_ups"] for r in records(exported)] == [r["follow_ups"] for r in recs]
    csv_out = tmp_path / "e.csv"
    assert await cli("export", str(journal), "--format", "csv", "--out", str(csv_out)) == 0
    rows = list(csv.DictReader(io.StringIO(csv_out.read_text(encoding="utf-8"))))
    assert sum(len(r["follow_ups"].split(";")) for r in rows if r["follow_ups"]) == total


async def test_follow_ups_added_later_upload_local_images_again(emu, env, tmp_path):
    """Rows screened without --follow-up, then rerun with it: each followed-up local
    image is uploaded again (its old P010 URL is not in the journal) and nothing else is
    paid twice."""
    for i in range(12):
        (tmp_path / f"p{i}.png").write_bytes(png_of_size(100 + i))
    path = catalog(tmp_path, [f"L{i},p{i}.png,US" for i in range(12)],
                   header="sku,image_path,country")
    out = tmp_path / "r.jsonl"
    assert await cli("screen", str(path), "--out", str(out), *FAST) == 0
    assert emu.stats.count(UPLOAD, 0) == 12
    submits = len(emu.stats.submits)
    assert await cli("screen", str(path), "--out", str(out), "--follow-up", "low:1",
                     *FAST) == 0  # fmt: skip
    recs = records(out)
    followed = [r for r in recs if r["follow_ups"]]
    assert followed
    assert emu.stats.count(UPLOAD, 0) == 12 + len(followed)
    assert len(emu.stats.submits) == submits + len(followed)
    for rec in followed:
        [fu] = rec["follow_ups"]
        assert fu["report"]["user_image"].startswith(emu.base_url)  # a fresh upload URL


async def test_dry_run_estimates_follow_up_calls_as_a_range(emu, env, tmp_path, capsys):
    """--dry-run with --follow-up shows 0 .. rows x top x 2 follow-up calls, calls nothing."""
    path = catalog(tmp_path, good_rows(5))
    assert await cli("screen", str(path), "--out", str(tmp_path / "r.jsonl"), "--dry-run",
                     "--follow-up", "medium:3") == 0  # fmt: skip
    assert "0 .. 30 (up to 3 per row at Medium risk" in capsys.readouterr().out
    assert emu.stats.count() == 0


async def test_bad_follow_up_flag_is_a_usage_error(emu, env, tmp_path, capsys):
    """An unknown level or a bad N exits 2 with a clear message and no call."""
    path = catalog(tmp_path, good_rows(1))
    for bad in ("severe", "high:0", "high:x", ""):
        assert await cli("screen", str(path), "--out", str(tmp_path / "r.jsonl"),
                         "--follow-up", bad) == 2  # fmt: skip
        assert "--follow-up: expected LEVEL[:N]" in capsys.readouterr().err
    assert emu.stats.count() == 0


async def test_demo_shows_follow_ups(monkeypatch, tmp_path, capsys):
    """fto-async demo follows up each row's best High match and its summary says so."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert await cli("demo", "--time-scale", "0.002") == 0
    assert "Follow-ups (1-vs-1 on the riskiest matches)" in capsys.readouterr().out
    (folder,) = tmp_path.glob("fto-async-demo-*")
    recs = records(folder / "results.jsonl")
    assert any(r["follow_ups"] for r in recs)
    assert all(len(r["follow_ups"]) <= 1 for r in recs)
