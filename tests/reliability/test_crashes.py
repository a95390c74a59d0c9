"""Failures that used to crash ``fto-async screen`` end with a clear message, the right exit
code and the output written: token failures, colliding stand-in keys, an output folder
that becomes unwritable."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from fto_async import FtoClient, RetryConfig
from fto_async.emulator import Emulator, EmulatorConfig
from fto_async.journal import ItemState, Journal
from tests._shared import CLIENT_ID, CLIENT_SECRET, PNG
from tests.reliability._cli import FAST, cli, point_at, records, write_catalog


def rows(n: int) -> list[str]:
    """``n`` valid catalog rows with distinct images."""
    return [f"K{i},https://example.com/p{i}.png,US" for i in range(n)]


async def test_wrong_oauth_secret_exits_3_and_names_the_variable(emu, monkeypatch, tmp_path,
                                                                  capsys):
    """A wrong client secret stops the run with exit 3 and 'check PATSNAP_CLIENT_SECRET',
    writes the output (rows pending, never sent) and a rerun with the right one finishes."""
    point_at(monkeypatch, emu, PATSNAP_CLIENT_ID=CLIENT_ID, PATSNAP_CLIENT_SECRET="wrong")
    (tmp_path / "lamp.png").write_bytes(PNG)
    path = write_catalog(tmp_path / "c.csv", [f"{row}," for row in rows(4)]
                         + ["K9,,US,lamp.png"], header="sku,image_url,country,image_path")
    out = tmp_path / "r.jsonl"
    assert await cli("screen", str(path), "--out", str(out), *FAST) == 3
    err = capsys.readouterr().err
    assert "check PATSNAP_CLIENT_SECRET" in err
    assert "Traceback" not in err
    assert "Resume with" in err
    assert [r["status"] for r in records(out)] == ["pending"] * 5
    assert emu.stats.submits == []
    async with await Journal.open(tmp_path / "r.jsonl.journal.db", readonly=True) as journal:
        assert journal.counts()[ItemState.PENDING] == len(journal)  # never sent: no task

    monkeypatch.setenv("PATSNAP_CLIENT_SECRET", CLIENT_SECRET)
    assert await cli("screen", str(path), "--out", str(out), *FAST) == 0
    assert [r["status"] for r in records(out)] == ["done"] * 5
    assert len(emu.stats.submits) == 5


@pytest.fixture
async def html_token_endpoint() -> AsyncIterator[str]:
    """A server whose token endpoint answers an HTML page (a captive portal, a proxy)."""

    async def token(_request: web.Request) -> web.Response:
        return web.Response(text="<html><body>Sign in</body></html>", content_type="text/html")

    app = web.Application()
    app.router.add_post("/oauth/token", token)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("")).rstrip("/")


def fast_retries(monkeypatch: pytest.MonkeyPatch, attempts: int = 2) -> None:
    """Make the command's client try each call ``attempts`` times without waiting."""
    original: Any = FtoClient.from_env.__func__  # type: ignore[attr-defined]

    def from_env(cls: type[FtoClient], environ: Any = None, **options: Any) -> FtoClient:
        return original(cls, environ, **{"retry": RetryConfig.for_testing(attempts), **options})

    monkeypatch.setattr(FtoClient, "from_env", classmethod(from_env))


@pytest.mark.parametrize("where", ["html", "unreachable"])
async def test_token_endpoint_failures_leave_rows_pending(where, html_token_endpoint,
                                                          monkeypatch, tmp_path, capsys):
    """A token endpoint that answers HTML or cannot be reached: no crash, the output is
    written with every row pending, and the message says why and how to retry."""
    base = html_token_endpoint if where == "html" else "http://127.0.0.1:9"
    point_at(monkeypatch, base, PATSNAP_CLIENT_ID=CLIENT_ID, PATSNAP_CLIENT_SECRET="s")
    # One attempt per row: 3 HTML answers stay under not_platform_after (5). With retries,
    # whether 5 come in a row depends on how the rows' token fetches interleave (then the
    # run stops as 'not the platform', exit 3: also right, but not this test's path).
    fast_retries(monkeypatch, attempts=1)
    path = write_catalog(tmp_path / "c.csv", rows(3))
    out = tmp_path / "r.jsonl"
    assert await cli("screen", str(path), "--out", str(out), *FAST) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "3 rows could not be sent" in err
    assert "rerun the same command" in err
    recs = records(out)
    assert [r["status"] for r in recs] == ["pending"] * 3
    assert all(r["error"] for r in recs)


async def test_user_keys_never_collide_with_stand_in_keys(emu, monkeypatch, tmp_path):
    """A user key spelled like the old stand-in of a keyless row ('#line3') is screened as
    itself, and the keyless row on line 3 is invalid on its own."""
    point_at(monkeypatch, emu)
    path = write_catalog(tmp_path / "c.csv", ["#line3,https://example.com/a.png,US",
                                              ",https://example.com/b.png,US",
                                              "K2#line4,https://example.com/c.png,US",
                                              "K2,https://example.com/d.png,US",
                                              "K2,https://example.com/e.png,US"])
    out = tmp_path / "r.jsonl"
    assert await cli("screen", str(path), "--out", str(out), *FAST) == 1
    recs = records(out)
    assert [(r["key"], r["status"]) for r in recs] == [
        ("#line3", "done"), (None, "invalid"), ("K2#line4", "done"), ("K2", "done"),
        ("K2", "invalid"),
    ]
    assert len(emu.stats.submits) == 3
    assert await cli("screen", str(path), "--out", str(out), *FAST) == 1
    assert records(out) == recs


async def test_keys_with_control_characters_are_refused(emu, monkeypatch, tmp_path):
    """A key holding a control character is an invalid row (it could pose as a stand-in)."""
    point_at(monkeypatch, emu)
    path = write_catalog(tmp_path / "c.csv", ["A\x1fline2,https://example.com/a.png,US",
                                              "B,https://example.com/b.png,US"])
    out = tmp_path / "r.jsonl"
    assert await cli("screen", str(path), "--out", str(out), *FAST) == 1
    assert [r["status"] for r in records(out)] == ["invalid", "done"]
    assert "control character" in records(out)[0]["error"]


async def test_out_folder_gone_unwritable_mid_run_exits_2(monkeypatch, tmp_path, capsys):
    """When the --out folder cannot be written at the end (here it is replaced by a file
    mid-run, which stops root too), the message names the path, the journal keeps every
    result, the resume command is printed, and exit 2; the resumed run pays nothing again."""
    config = EmulatorConfig(time_scale=0.05, qps=None)  # a task takes 1.5 s
    async with Emulator(config) as emu:
        point_at(monkeypatch, emu)
        folder = tmp_path / "out"
        folder.mkdir()
        journal = tmp_path / "j.db"
        path = write_catalog(tmp_path / "c.csv", rows(4))
        out = folder / "r.jsonl"
        args = ["screen", str(path), "--out", str(out), "--journal", str(journal),
                "--time-scale", "0.05"]
        run = asyncio.create_task(cli(*args))
        while not emu.stats.submits:
            assert not run.done(), "the run ended before its first task was created"
            await asyncio.sleep(0.005)
        os.rename(folder, tmp_path / "out.moved")
        folder.write_text("not a folder")
        assert await run == 2
        err = capsys.readouterr().err
        assert f"cannot write the output {out}" in err
        assert "Traceback" not in err
        assert "resume with the same command" in err
        assert journal.is_file()

        folder.unlink()
        os.rename(tmp_path / "out.moved", folder)
        submits = len(emu.stats.submits)
        assert await cli(*args) == 0
        assert [r["status"] for r in records(out)] == ["done"] * 4
        assert len(emu.stats.submits) == submits


async def test_export_to_an_unwritable_place_exits_2(emu, monkeypatch, tmp_path, capsys):
    """export --out into a folder that does not exist (or cannot be written) says so, exit 2."""
    point_at(monkeypatch, emu)
    path = write_catalog(tmp_path / "c.csv", rows(1))
    assert await cli("screen", str(path), "--out", str(tmp_path / "r.jsonl"), *FAST) == 0
    target = tmp_path / "missing" / "e.csv"
    assert await cli("export", str(tmp_path / "r.jsonl.journal.db"), "--out", str(target)) == 2
    err = capsys.readouterr().err
    assert f"cannot write {target}" in err
    assert "Traceback" not in err


async def test_catalog_made_unreadable_mid_run_exits_2(monkeypatch, tmp_path, capsys):
    """A catalog rewritten mid-run as non-UTF-8 bytes: when the output is rebuilt from it,
    the message says why and how to resume, exit 2, no traceback; the journal is kept."""
    async with Emulator(EmulatorConfig(time_scale=0.05, qps=None)) as emu:
        point_at(monkeypatch, emu)
        path = write_catalog(tmp_path / "c.csv", rows(3))
        good = path.read_bytes()
        args = ["screen", str(path), "--out", str(tmp_path / "r.jsonl"), "--time-scale", "0.05"]
        run = asyncio.create_task(cli(*args))
        while not emu.stats.submits:
            assert not run.done(), "the run ended before its first task was created"
            await asyncio.sleep(0.005)
        path.write_bytes(good.replace(b"K1", b"K\xe91"))
        assert await run == 2
        err = capsys.readouterr().err
        assert "not UTF-8" in err
        assert "Traceback" not in err
        assert "resume with the same command" in err
        path.write_bytes(good)
        submits = len(emu.stats.submits)
        assert await cli(*args) == 0
        assert len(emu.stats.submits) == submits
