"""The ``fto-async`` command, run in-process against an in-process emulator.

``main()`` runs its own event loop, so each test calls it in a worker thread
(``asyncio.to_thread``) while the emulator serves on the test's loop.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import shutil
import signal
import sys
import tempfile

import pytest

from fto_async.cli import main
from fto_async.journal import Journal
from fto_async.outputs._record import FLAT_COLUMNS
from tests._cli import (
    FAST,
    SAMPLE,
    SAMPLE_BAD,
    SAMPLE_DUPLICATES,
    SAMPLE_ROWS,
    catalog,
    cli,
    good_rows,
    records,
)
from tests._shared import PNG, png_of_size


async def test_full_run_then_rerun_pays_nothing_twice(emu, env, tmp_path, capsys):
    """A run writes one line per row; rerunning it makes no call and rewrites the same lines."""
    shutil.copy(SAMPLE, tmp_path / "c.csv")
    out = tmp_path / "results.jsonl"
    assert await cli("screen", str(tmp_path / "c.csv"), "--out", str(out), *FAST) == 1
    first = out.read_bytes()
    recs = records(out)
    assert len(recs) == SAMPLE_ROWS
    with SAMPLE.open(encoding="utf-8") as handle:
        keys = [row["sku"] for row in csv.DictReader(handle)]
    assert [r["key"] for r in recs] == keys
    assert [r["line"] for r in recs] == list(range(2, SAMPLE_ROWS + 2))
    statuses = [r["status"] for r in recs]
    assert statuses.count("invalid") == SAMPLE_BAD
    assert statuses.count("done") == SAMPLE_ROWS - SAMPLE_BAD
    for rec in recs:
        assert set(rec) >= {"key", "line", "task_id", "status", "highest_risk",
                            "high_risk_countries", "middle_risk_countries", "error", "report"}
        if rec["status"] == "done":
            assert rec["task_id"]
            assert rec["report"]["task_status"] == 2
            assert rec["highest_risk"] in ("High", "Medium", "Low", "none")
        else:
            assert rec["error"]
    # the duplicate rows share their twin's task: one submit per distinct request
    assert len(emu.stats.submits) == SAMPLE_ROWS - SAMPLE_BAD - SAMPLE_DUPLICATES
    calls = emu.stats.count()
    captured = capsys.readouterr()
    assert "Rows by result" in captured.out
    assert "line 16: BOTTLE-043" in captured.err
    assert (tmp_path / "results.jsonl.journal.db").is_file()

    assert await cli("screen", str(tmp_path / "c.csv"), "--out", str(out), *FAST) == 1
    assert emu.stats.count() == calls
    assert out.read_bytes() == first


async def test_clean_catalog_exits_0_and_keeps_secrets_out(emu, env, tmp_path, capsys):
    """Every row done exits 0; no output, journal or message holds the API key."""
    out = tmp_path / "r.jsonl"
    journal = tmp_path / "j.db"
    path = catalog(tmp_path, good_rows(6))
    code = await cli("screen", str(path), "--out", str(out), "--journal", str(journal), *FAST)
    assert code == 0
    assert [r["status"] for r in records(out)] == ["done"] * 6
    captured = capsys.readouterr()
    assert "sk-demo" not in captured.out + captured.err
    assert b"sk-demo" not in out.read_bytes()
    for path in tmp_path.iterdir():
        assert b"sk-demo" not in path.read_bytes()


async def test_dry_run_makes_no_call(emu, env, tmp_path, capsys):
    """--dry-run reports bad rows and the calls needed, and calls nothing; invalid rows
    alone do not fail it (exit 0, their count in the output)."""
    out = tmp_path / "r.jsonl"
    assert await cli("screen", str(SAMPLE), "--out", str(out), "--dry-run", "--qps", "10") == 0
    assert emu.stats.count() == 0
    assert emu.stats.token_requests == 0
    assert not out.exists()
    assert not (tmp_path / "r.jsonl.journal.db").exists()
    captured = capsys.readouterr()
    good = SAMPLE_ROWS - SAMPLE_BAD - SAMPLE_DUPLICATES
    assert f"about {2 * good} (submits {good}" in captured.out
    assert f"{SAMPLE_ROWS} rows, {good} distinct requests, 0 from cache" in captured.out
    assert "10 QPS" in captured.out
    assert "line 26: TOY-073" in captured.err
    assert re.search(rf"invalid \(skipped\)\s+{SAMPLE_BAD}\b", captured.out)


async def test_dry_run_counts_what_the_journal_finished(emu, env, tmp_path, capsys):
    """After a run, --dry-run says nothing is left to submit."""
    out = tmp_path / "r.jsonl"
    path = catalog(tmp_path, good_rows(4))
    assert await cli("screen", str(path), "--out", str(out), *FAST) == 0
    capsys.readouterr()
    assert await cli("screen", str(path), "--out", str(out), "--dry-run") == 0
    text = capsys.readouterr().out
    assert "about 0 (submits 0" in text
    assert "already finished (journal)  4" in text


async def test_status_and_export(emu, env, tmp_path, capsys):
    """status counts the journal's states; export writes JSONL or flattened CSV."""
    out = tmp_path / "r.jsonl"
    await cli("screen", str(SAMPLE), "--out", str(out), *FAST)
    journal = str(tmp_path / "r.jsonl.journal.db")
    capsys.readouterr()

    assert await cli("status", journal) == 0
    status = capsys.readouterr().out
    assert f"done     {SAMPLE_ROWS - SAMPLE_BAD}" in status
    assert f"invalid  {SAMPLE_BAD}" in status
    assert "InvalidRequestError" in status

    assert await cli("export", journal) == 0
    exported = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert exported == records(out)

    assert await cli("export", journal, "--format", "csv") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0]) == list(FLAT_COLUMNS)
    assert list(rows[0])[:6] == ["key", "line", "title", "image", "status", "highest_risk"]
    assert len(rows) == SAMPLE_ROWS
    by_key = {r["key"]: r for r in rows}
    for rec in records(out):
        assert by_key[rec["key"]]["high_risk_countries"] == ";".join(rec["high_risk_countries"])

    target = tmp_path / "export.csv"
    assert await cli("export", journal, "--format", "csv", "--out", str(target)) == 0
    assert target.read_text().count("\n") == SAMPLE_ROWS + 1


async def test_status_and_export_need_an_existing_journal(tmp_path, capsys):
    """status and export of a missing journal exit 2 and create nothing."""
    missing = tmp_path / "nope.db"
    assert await cli("status", str(missing)) == 2
    assert await cli("export", str(missing)) == 2
    assert not missing.exists()
    assert "no journal" in capsys.readouterr().err


async def test_missing_credentials_exit_2(monkeypatch, tmp_path, capsys):
    """Without credentials the command names the variables to set and exits 2."""
    for name in ("PATSNAP_API_KEY", "PATSNAP_CLIENT_ID", "PATSNAP_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    path = catalog(tmp_path, good_rows(2))
    assert await cli("screen", str(path), "--out", str(tmp_path / "r.jsonl")) == 2
    err = capsys.readouterr().err
    assert "PATSNAP_API_KEY" in err
    assert "PATSNAP_CLIENT_ID" in err


@pytest.mark.parametrize(
    ("text", "args", "message"),
    [
        ("name,image_url\nx,https://e.com/x.png\n", [], "columns found: 'name', 'image_url'"),
        ("", [], "empty"),
        ("sku,image_url,country\nx,https://e.com/\xe9.png,US\n", ["latin-1"], "not UTF-8"),
        ("sku,image_url,country\nx,https://e.com/x.png,US\n", ["--country", "usa"], "--country"),
        ("sku,image_url\nx,https://e.com/x.png\n", [], "--country"),
    ],
)
async def test_input_errors_exit_2(tmp_path, capsys, text, args, message):
    """A catalog or option that cannot be used exits 2 with a message saying why."""
    path = tmp_path / "c.csv"
    encoding = "latin-1" if "latin-1" in args else "utf-8"
    path.write_bytes(text.encode(encoding))
    flags = [a for a in args if a != "latin-1"]
    assert await cli("screen", str(path), "--out", str(tmp_path / "r.jsonl"), *flags) == 2
    assert message in capsys.readouterr().err


async def test_out_folder_must_exist(tmp_path, capsys):
    """--out in a missing folder is a usage error."""
    path = catalog(tmp_path, good_rows(1))
    assert await cli("screen", str(path), "--out", str(tmp_path / "no" / "r.jsonl")) == 2
    assert "does not exist" in capsys.readouterr().err


async def test_quota_mid_run_exits_3_then_resumes(emu, env, tmp_path, capsys):
    """A daily quota hit mid-run exits 3 saying why; after the reset a rerun finishes the rest."""
    emu.reconfigure(daily_limit=25)
    path = catalog(tmp_path, good_rows(20))
    out = tmp_path / "r.jsonl"
    assert await cli("screen", str(path), "--out", str(out), *FAST) == 3
    err = capsys.readouterr().err
    assert "QuotaExceededError" in err
    assert "67200007" in err
    assert "Resume with" in err
    assert len(records(out)) == 20

    emu.reconfigure(daily_limit=None)
    assert await cli("screen", str(path), "--out", str(out), *FAST) == 0
    images = [s.image for s in emu.stats.submits]
    assert len(images) == len(set(images)) == 20
    assert [r["status"] for r in records(out)] == ["done"] * 20


async def test_image_path_rows_are_uploaded_once(emu, env, tmp_path):
    """Local images are uploaded lazily, and a rerun uploads nothing again."""
    for i in range(3):
        (tmp_path / f"p{i}.png").write_bytes(png_of_size(100 + i))  # three distinct files
    path = catalog(tmp_path, [f"L{i},p{i}.png,US" for i in range(3)] + ["L9,missing.png,US"],
                   header="sku,image_path,country")
    out = tmp_path / "r.jsonl"
    assert await cli("screen", str(path), "--out", str(out), *FAST) == 1
    upload = "/image-search/image-upload"
    assert emu.stats.count(upload, 0) == 3
    assert [r["status"] for r in records(out)] == ["done", "done", "done", "invalid"]
    assert await cli("screen", str(path), "--out", str(out), *FAST) == 1
    assert emu.stats.count(upload, 0) == 3
    assert len(emu.stats.submits) == 3


async def test_equal_local_files_are_uploaded_once_and_share_a_task(emu, env, tmp_path, capsys):
    """Three files with the same bytes (other names, other SKUs): one upload, one task."""
    for i in range(3):
        (tmp_path / f"p{i}.png").write_bytes(PNG)
    rows = [f"L{i},p{i}.png,US" for i in range(3)] + ["L3,p0.png,EU"]
    path = catalog(tmp_path, rows, header="sku,image_path,country")
    out = tmp_path / "r.jsonl"
    assert await cli("screen", str(path), "--out", str(out), "--dry-run") == 0
    dry = capsys.readouterr().out
    assert "submits 2, polls ~2, uploads 1" in dry
    assert await cli("screen", str(path), "--out", str(out), *FAST) == 0
    assert emu.stats.count("/image-search/image-upload", 0) == 1
    assert len(emu.stats.submits) == 2  # US and EU are two questions about one file
    recs = records(out)
    assert [r["status"] for r in recs] == ["done"] * 4
    assert recs[0]["task_id"] == recs[1]["task_id"] == recs[2]["task_id"] != recs[3]["task_id"]
    assert "4 rows, 2 distinct requests, 0 from cache" in capsys.readouterr().out


async def test_workflow_sends_local_images_as_base64(emu, env, tmp_path):
    """--workflow submits local images as base64 workflow tasks, without uploads."""
    (tmp_path / "p.png").write_bytes(PNG)
    path = catalog(tmp_path, ["W1,p.png,,Lamp", "W2,,https://example.com/chair.png,Chair",
                              "W3,,,Stool"], header="sku,image_path,url,title")
    out = tmp_path / "r.jsonl"
    assert await cli("screen", str(path), "--out", str(out), "--workflow", *FAST) == 1
    assert [r["status"] for r in records(out)] == ["done", "done", "invalid"]
    kinds = {(s.kind, s.image.split(":")[0]) for s in emu.stats.submits}
    assert kinds == {("workflow", "sha256"), ("workflow", "https")}
    assert emu.stats.count("/image-search/image-upload") == 0


async def test_unknown_rows_follow_the_policy(emu, env, tmp_path):
    """A row left mid-submit is left alone with --unknown skip and resubmitted by default."""
    path = catalog(tmp_path, good_rows(3))
    out = tmp_path / "r.jsonl"
    journal = await Journal.open(tmp_path / "r.jsonl.journal.db")
    body = {"url": "https://example.com/p1.png", "country": ["US"], "lang": "en"}
    await journal.add_pending("K1", 3, body, "image_search")
    await journal.mark_submitting("K1")
    await journal.aclose()

    assert await cli("screen", str(path), "--out", str(out), "--unknown", "skip", *FAST) == 1
    assert [r["status"] for r in records(out)] == ["done", "unknown", "done"]
    assert "https://example.com/p1.png" not in {s.image for s in emu.stats.submits}

    assert await cli("screen", str(path), "--out", str(out), *FAST) == 0
    assert [r["status"] for r in records(out)] == ["done"] * 3
    assert len(emu.stats.submits) == 3


async def test_dry_run_follows_the_unknown_policy(emu, env, tmp_path, capsys):
    """--dry-run counts a row left mid-submit as a submit, unless --unknown skip."""
    path = catalog(tmp_path, good_rows(3))
    out = tmp_path / "r.jsonl"
    journal = await Journal.open(tmp_path / "r.jsonl.journal.db")
    body = {"url": "https://example.com/p1.png", "country": ["US"], "lang": "en"}
    await journal.add_pending("K1", 3, body, "image_search")
    await journal.mark_submitting("K1")
    await journal.aclose()

    assert await cli("screen", str(path), "--out", str(out), "--dry-run") == 0
    assert "about 6 (submits 3" in capsys.readouterr().out
    assert await cli("screen", str(path), "--out", str(out), "--dry-run",
                     "--unknown", "skip") == 0
    text = capsys.readouterr().out
    assert "about 4 (submits 2" in text
    assert "unknown, skipped (--unknown skip)  1" in text
    assert emu.stats.count() == 0


async def test_a_fixed_row_is_screened_on_the_next_run(emu, env, tmp_path):
    """An invalid row corrected in the catalog is screened by the next run, alone."""
    path = catalog(tmp_path, [*good_rows(2), "K9,https://example.com/p9.png,us"])
    out = tmp_path / "r.jsonl"
    assert await cli("screen", str(path), "--out", str(out), *FAST) == 1
    assert records(out)[2]["status"] == "invalid"
    path.write_text(path.read_text().replace(",us", ",US"))
    assert await cli("screen", str(path), "--out", str(out), *FAST) == 0
    assert [r["status"] for r in records(out)] == ["done"] * 3
    assert len(emu.stats.submits) == 3


async def test_jsonl_catalog(emu, env, tmp_path):
    """A JSONL catalog is screened like a CSV one, bad lines reported with their number."""
    path = tmp_path / "c.jsonl"
    path.write_text(
        '{"id": "J1", "url": "https://example.com/j1.png", "country": ["US"]}\n'
        "{oops\n"
        '{"id": "J2", "url": "https://example.com/j2.png", "country": "CN,JP"}\n'
    )
    out = tmp_path / "r.jsonl"
    assert await cli("screen", str(path), "--out", str(out), *FAST) == 1
    recs = records(out)
    assert [(r["line"], r["status"]) for r in recs] == [(1, "done"), (2, "invalid"), (3, "done")]


async def test_demo_runs_and_exits_0(monkeypatch, tmp_path, capsys):
    """fto-async demo screens the bundled sample on an in-process emulator and exits 0."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert await cli("demo", "--rows", "45", "--time-scale", "0.002") == 0
    out = capsys.readouterr().out
    assert "Rows by result" in out
    assert "Demo files in" in out
    (folder,) = tmp_path.glob("fto-async-demo-*")
    assert len(records(folder / "results.jsonl")) == 45
    assert "45 rows, 38 distinct requests, 0 from cache" in out  # the sample's 4 duplicates
    assert "4 rows shared an equal row's task" in out


def test_help_exits_0(capsys):
    """--help prints the commands and exits 0."""
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for command in ("screen", "status", "export", "demo", "emulator"):
        assert command in text


def test_unknown_command_exits_2(capsys):
    """An unknown subcommand is a usage error."""
    assert main(["frobnicate"]) == 2


async def test_emulator_subcommand_serves_until_sigint():
    """fto-async emulator prints its URL, serves and stops cleanly on SIGINT."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from fto_async.cli import main; raise SystemExit(main())",
        "emulator", "--port", "0", "--qps", "none",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:  # generous guards: a start under coverage on a loaded machine takes seconds
        assert proc.stdout is not None
        banner = await asyncio.wait_for(proc.stdout.readline(), 120)
        assert b"listening on http://127.0.0.1:" in banner
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.communicate()  # reads both pipes to their end, which closes them


@pytest.mark.parametrize("tty", [True, False])
def test_progress_and_tables_render_on_terminals_and_logs(tty):
    """Progress, row messages and tables render with rich on a terminal and as plain lines else."""
    from fto_async.batch import Progress
    from fto_async.cli._display import ProgressView, Section, render_sections

    snapshot = Progress(read=5, submitting=1, running=2, done=3, failed=1, not_attempted=0,
                        resumed=0, resubmitted_unknown=0, calls=9, retries=1, rate=4.5,
                        elapsed=2.0, total=None, eta=None)
    stream = io.StringIO()
    with ProgressView(10, stream=stream, tty=tty, interval=0) as view:
        view.invalid = 1
        view.update(snapshot)
        view.log("line 3: bad row")
        assert view.finished == 5
        assert view.eta() == pytest.approx(2.5)
    text = stream.getvalue()
    assert "line 3: bad row" in text
    assert "retries 1" in text
    assert "done 3" in text
    stream = io.StringIO()
    render_sections([Section("Rows by result", ["result", "rows"], [["high risk", "2"]])],
                    [("calls used", "9")], stream, tty=tty)
    text = stream.getvalue()
    assert "Rows by result" in text
    assert "high risk" in text
    assert "calls used" in text


@pytest.mark.parametrize("tty", [True, False])
def test_summary_labels_align_and_a_long_title_does_not_wrap(tty):
    """On a terminal as in a log, the summary's values start in one column, and a table's
    title wider than its columns stays on one line."""
    from fto_async.cli._display import Section, render_sections

    title = "Follow-ups (1-vs-1 on the riskiest matches)"
    stream = io.StringIO()
    render_sections([Section(title, ["result", "patents"], [["done", "10"]])],
                    [("retries", "0"), ("ambiguous submits", "0 retried"), ("report", "r.html")],
                    stream, tty=tty)  # fmt: skip
    lines = stream.getvalue().splitlines()
    assert title in lines
    footer = [line for line in lines if line.split(":")[0] in ("retries", "ambiguous submits",
                                                               "report")]  # fmt: skip
    assert len(footer) == 3
    assert len({line.index(value) for line, value in zip(footer, ["0", "0 retried", "r.html"],
                                                         strict=True)}) == 1
