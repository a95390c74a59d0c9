"""``--fail-on`` chooses which rows make the exit non-zero; ``--summary-json`` writes the
summary for machines (fto_async.cli._machine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests._cli import FAST, catalog, cli, good_rows

BAD_ROW = "BAD,https://example.com/x.png,usa"  # refused by our checks: never sent


@pytest.mark.parametrize(("fail_on", "code"), [(None, 1), ("invalid", 1), ("failed", 0),
                                               ("never", 0)])  # fmt: skip
async def test_fail_on_with_an_invalid_row(emu, env, tmp_path, fail_on, code):
    """Two done rows and an invalid one: only the default and 'invalid' exit 1."""
    src = catalog(tmp_path, [*good_rows(2), BAD_ROW])
    summary = tmp_path / "summary.json"
    args = ["screen", str(src), "--out", str(tmp_path / "out.jsonl"), "--no-cache",
            "--summary-json", str(summary), *FAST]  # fmt: skip
    if fail_on is not None:
        args += ["--fail-on", fail_on]
    assert await cli(*args) == code
    record = json.loads(summary.read_text(encoding="utf-8"))
    assert record["exit_code"] == code
    assert record["fail_on"] == (fail_on or "invalid")
    assert record["rows"] == 3
    assert record["status"] == {"done": 2, "failed": 0, "invalid": 1, "pending": 0,
                                "unknown": 0}  # fmt: skip
    assert record["reason"] is None
    assert record["calls"] >= 4  # two submits and their polls
    assert record["out"] == str(tmp_path / "out.jsonl")


@pytest.mark.parametrize(("fail_on", "code"), [("invalid", 1), ("failed", 1), ("never", 0)])
async def test_fail_on_with_failed_tasks(emu, env, tmp_path, fail_on, code):
    """Tasks that end with task_status 3: 'failed' (and stricter) exit 1, 'never' 0."""
    emu.reconfigure(fail_rate=1.0)
    src = catalog(tmp_path, good_rows(2))
    summary = tmp_path / "s.json"
    assert await cli("screen", str(src), "--out", str(tmp_path / "o.jsonl"), "--no-cache",
                     "--fail-on", fail_on, "--summary-json", str(summary), *FAST) == code
    assert json.loads(summary.read_text())["status"]["failed"] == 2


async def test_a_fatal_stop_keeps_exit_3_whatever_fail_on_says(emu, env, tmp_path):
    emu.reconfigure(balance=0)
    src = catalog(tmp_path, good_rows(2))
    summary = tmp_path / "s.json"
    assert await cli("screen", str(src), "--out", str(tmp_path / "o.jsonl"), "--no-cache",
                     "--fail-on", "never", "--summary-json", str(summary), *FAST) == 3
    record = json.loads(summary.read_text())
    assert record["exit_code"] == 3
    assert record["reason"].startswith("fatal platform error")


async def test_dry_run_fails_on_invalid_rows_only_when_asked(emu, env, tmp_path):
    src = catalog(tmp_path, [*good_rows(2), BAD_ROW])
    summary = tmp_path / "dry.json"
    base = ["screen", str(src), "--out", str(tmp_path / "o.jsonl"), "--dry-run", "--no-cache"]
    assert await cli(*base) == 0
    assert await cli(*base, "--fail-on", "invalid", "--summary-json", str(summary)) == 1
    record = json.loads(summary.read_text())
    assert record["dry_run"] is True
    assert (record["rows"], record["invalid"], record["to_submit"]) == (3, 1, 2)
    assert not emu.stats.calls


async def test_summary_json_never_overwrites_an_input(emu, env, tmp_path, capsys):
    src = catalog(tmp_path, good_rows(1))
    before = src.read_bytes()
    code = await cli("screen", str(src), "--out", str(tmp_path / "o.jsonl"), "--no-cache",
                     "--summary-json", str(src), *FAST)
    assert code == 2
    assert "--summary-json" in capsys.readouterr().err
    assert src.read_bytes() == before
    assert not emu.stats.calls


async def test_bad_fail_on_is_a_usage_error(emu, env, tmp_path):
    src = catalog(tmp_path, good_rows(1))
    code = await cli("screen", str(src), "--out", str(tmp_path / "o.jsonl"),
                     "--fail-on", "sometimes")
    assert code == 2
    assert not emu.stats.calls


def test_fail_on_is_documented() -> None:
    """docs/cli.md names the choices and the default."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    assert "--fail-on" in text
    assert "--summary-json" in text
