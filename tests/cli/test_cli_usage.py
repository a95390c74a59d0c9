"""``fto-async usage``: the call ledger per run and per path equals the emulator's counts."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fto_async.cli import main
from fto_async.emulator import Emulator, EmulatorConfig
from fto_async.journal import Journal

FAST = ["--time-scale", "0.001", "--no-cache", "--no-report"]


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    """Faults that make some calls refused (busy) and one task fail."""
    config = EmulatorConfig(time_scale=0.001, qps=None, busy_rate=0.15, seed=5)
    async with Emulator(config) as emulator:
        yield emulator


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, emu: Emulator) -> None:
    for name in ("PATSNAP_CLIENT_ID", "PATSNAP_CLIENT_SECRET", "PATSNAP_MAX_CALLS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATSNAP_API_KEY", "sk-demo")
    monkeypatch.setenv("PATSNAP_BASE_URL", emu.base_url)
    monkeypatch.setenv("PATSNAP_QPS", "500")


async def cli(*args: str) -> int:
    return await asyncio.to_thread(main, list(args))


def _catalog(tmp_path: Path, n: int, start: int = 0) -> Path:
    path = tmp_path / "catalog.csv"
    rows = [f"K{i},https://example.com/p{i}.png,US" for i in range(start, start + n)]
    path.write_text("\n".join(["sku,image_url,country", *rows]) + "\n", encoding="utf-8")
    return path


def _emulator_by_path(emu: Emulator) -> Counter[str]:
    counted: Counter[str] = Counter()
    for (path, _code), n in emu.stats.calls.items():
        counted[path] += n
    return counted


@pytest.mark.parametrize("every", [0.0, 3600.0])
async def test_usage_json_equals_the_emulators_counts(emu, env, tmp_path, capsys, monkeypatch,
                                                      every):  # fmt: skip
    """Two runs: per run and per path, the ledger equals what the emulator counted, whether
    it is recorded as the run goes (after each outcome) or at its end."""
    monkeypatch.setattr("fto_async.cli._screen._LEDGER_EVERY", every)
    out = tmp_path / "r.jsonl"
    assert await cli("screen", str(_catalog(tmp_path, 8)), "--out", str(out), *FAST) == 0
    first = _emulator_by_path(emu)
    assert await cli("screen", str(_catalog(tmp_path, 12)), "--out", str(out), *FAST) == 0
    capsys.readouterr()
    journal = tmp_path / "r.jsonl.journal.db"
    assert await cli("usage", str(journal), "--json") == 0
    usage = json.loads(capsys.readouterr().out)
    counted = _emulator_by_path(emu)
    assert {p: t["reached"] for p, t in usage["paths"].items()} == dict(counted)
    assert usage["total"]["reached"] == sum(counted.values())
    assert [r["run"] for r in usage["runs"]] == [1, 2]
    assert {p: t["reached"] for p, t in usage["runs"][0]["paths"].items()} == dict(first)
    busy = sum(n for (_p, code), n in emu.stats.calls.items() if code == 67200100)
    assert busy, "the seed gives busy answers"
    assert sum(t["refused_by_code"].get("67200100", 0) for t in usage["paths"].values()) == busy
    # The text form shows the same totals.
    assert await cli("usage", str(journal)) == 0
    text = capsys.readouterr().out
    assert "run 1" in text
    assert "run 2" in text
    assert f"total {'':<31}{usage['total']['calls']:>6} calls" in text
    # The platform's statement (the emulator's own counts) shows no difference.
    before = emu.stats.count()
    assert await cli("usage", str(journal), "--reconcile", "--json") == 0
    found = json.loads(capsys.readouterr().out)
    assert found["differences"] == 0
    assert "08:00" in found["note"]
    assert set(found["paths"]) == set(counted)
    # One statement answered (the seed's busy answers may make it retry first).
    statement = "/open-user/statement/v2"
    assert emu.stats.count(path=statement, code=0) == 1
    assert emu.stats.count() == before + emu.stats.count(path=statement)
    assert await cli("usage", str(journal), "--reconcile") == 0
    assert "no difference" in capsys.readouterr().out
    # Another day's ledger lines are not compared with today's statement: all differ.
    assert await cli("usage", str(journal), "--reconcile", "--from", "20200101",
                     "--to", "20200102") == 1  # fmt: skip
    assert "paths differ" in capsys.readouterr().out


@pytest.mark.parametrize("dates", [["--from", "2026-01-01"], ["--from", "20260231"],
                                   ["--from", "20260102", "--to", "20260101"]])
async def test_reconcile_refuses_bad_dates_with_zero_calls(emu, env, tmp_path, capsys, dates):
    """A malformed, impossible or reversed range: exit 2, no call made."""
    path = tmp_path / "j.db"
    async with await Journal.open(path):
        pass
    assert await cli("usage", str(path), "--reconcile", *dates) == 2
    assert "--from/--to" in capsys.readouterr().err
    assert emu.stats.count() == 0


async def test_the_statement_never_logs_the_client_secret(emu, caplog):
    """OAuth credentials: the secret travels in the body only; no log line, no event holds it."""
    import logging

    from fto_async import FtoClient, Hooks
    from fto_async._statement import STATEMENT_PATH

    events: list[object] = []
    with caplog.at_level(logging.DEBUG, logger="fto_async"):
        async with FtoClient(client_id="demo-client", client_secret="demo-secret",
                             base_url=emu.base_url, hooks=Hooks(on_call=events.append)) as c:
            statement = await c.usage_statement("20260101", "20260101")
    assert statement.usage == ()  # nothing billed yet (token and statement are not)
    assert emu.stats.calls[(STATEMENT_PATH, 0)] == 1
    assert any(STATEMENT_PATH in r.getMessage() for r in caplog.records)
    for text in [r.getMessage() for r in caplog.records] + [repr(e) for e in events]:
        assert "demo-secret" not in text
    assert "demo-secret" not in repr(statement)


async def test_a_journal_without_a_ledger_reads_as_empty(tmp_path, capsys):
    """A journal written before the ledger existed: no calls, no error, nothing created."""
    path = tmp_path / "old.journal.db"
    async with await Journal.open(path):
        pass
    assert await cli("usage", str(path), "--json") == 0
    assert json.loads(capsys.readouterr().out)["total"]["calls"] == 0
    assert await cli("usage", str(path)) == 0
    assert "no calls recorded" in capsys.readouterr().out
    assert await cli("usage", str(tmp_path / "missing.db")) == 2


# -- the call budget (--max-calls, PATSNAP_MAX_CALLS) -----------------------------------


@pytest.fixture
async def calm() -> AsyncIterator[Emulator]:
    """No faults: every call counts once."""
    async with Emulator(EmulatorConfig(time_scale=0.001, qps=None)) as emulator:
        yield emulator


@pytest.fixture
def calm_env(monkeypatch: pytest.MonkeyPatch, calm: Emulator) -> None:
    for name in ("PATSNAP_CLIENT_ID", "PATSNAP_CLIENT_SECRET", "PATSNAP_MAX_CALLS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATSNAP_API_KEY", "sk-demo")
    monkeypatch.setenv("PATSNAP_BASE_URL", calm.base_url)
    monkeypatch.setenv("PATSNAP_QPS", "500")


def _unpolled(emu: Emulator) -> set[str]:
    """Tasks the emulator created that no poll saw ended."""
    return {s.task_id for s in emu.stats.submits} - set(emu.stats.seen_done)


async def test_max_calls_40_on_60_rows_spends_at_most_40_and_polls_every_paid_task(
    calm, calm_env, tmp_path, capsys
):
    """Exit 4 with the resume command; no paid task left unpolled; reruns finish the job."""
    cat, out = _catalog(tmp_path, 60), tmp_path / "r.jsonl"
    assert await cli("screen", str(cat), "--out", str(out), "--max-calls", "40", *FAST) == 4
    err = capsys.readouterr().err
    assert calm.stats.count() <= 40
    assert _unpolled(calm) == set()
    assert "every paid task was polled" in err
    assert "rows left" in err
    assert "--max-calls 40" in err  # the resume command
    done = len(calm.stats.submits)
    assert 0 < done < 60
    for _ in range(10):  # each rerun spends at most 40 more, and goes on where it stopped
        before = calm.stats.count()
        code = await cli("screen", str(cat), "--out", str(out), "--max-calls", "40", *FAST)
        assert calm.stats.count() - before <= 40
        assert _unpolled(calm) == set()
        if code == 0:
            break
        assert code == 4
    assert code == 0
    assert len(calm.stats.submits) == 60  # nothing paid twice


async def test_patsnap_max_calls_is_the_default_budget(calm, calm_env, tmp_path, monkeypatch,
                                                       capsys):  # fmt: skip
    """PATSNAP_MAX_CALLS sets the budget; a bad value is a usage error with zero calls."""
    cat, out = _catalog(tmp_path, 20), tmp_path / "r.jsonl"
    monkeypatch.setenv("PATSNAP_MAX_CALLS", "nope")
    assert await cli("screen", str(cat), "--out", str(out), *FAST) == 2
    assert "PATSNAP_MAX_CALLS" in capsys.readouterr().err
    assert await cli("screen", str(cat), "--out", str(out), "--max-calls", "0", *FAST) == 2
    assert calm.stats.count() == 0
    monkeypatch.setenv("PATSNAP_MAX_CALLS", "12")
    assert await cli("screen", str(cat), "--out", str(out), *FAST) == 4
    assert calm.stats.count() <= 12
    assert _unpolled(calm) == set()


async def test_dry_run_takes_polls_per_task_from_the_ledger(calm, calm_env, tmp_path, capsys):
    """After a run, --dry-run counts the polls a task took there, not one per task."""
    import re

    out = tmp_path / "r.jsonl"
    assert await cli("screen", str(_catalog(tmp_path, 10)), "--out", str(out), *FAST) == 0
    capsys.readouterr()
    polls = calm.stats.count("/ai/image-search/report")
    submits = calm.stats.count("/ai/image-search/submit", 0)
    assert await cli("screen", str(_catalog(tmp_path, 30)), "--out", str(out),
                     "--dry-run") == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "from the journal's call ledger" in text
    found = re.search(r"submits (\d+), polls ~(\d+)", text)
    assert found is not None, text
    assert int(found[1]) == 20
    assert int(found[2]) == round(20 * polls / submits)
