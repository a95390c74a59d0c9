"""One journal, one run, whatever the path: a journal held by another process (through a
symlink or a hard link) refuses a second run, which exits 2 without a call."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from fto_async.journal import Journal, JournalLockedError
from tests._shared import unmeasured_env
from tests.reliability._cli import FAST, cli, point_at, write_catalog

HOLDER = """
import asyncio, sys
from fto_async.journal import Journal

async def hold(path):
    async with await Journal.open(path):
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(hold(sys.argv[1]))
"""


def symlink(path: Path) -> Path:
    link = path.with_name("link-" + path.name)
    link.symlink_to(path)
    return link


def hard_link(path: Path) -> Path:
    link = path.with_name("hard-" + path.name)
    os.link(path, link)
    return link


async def hold(path: Path) -> asyncio.subprocess.Process:
    """Start a process that holds the journal at ``path`` until its stdin closes."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, str(path), env=unmeasured_env(),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert line.strip() == b"ready"
    return proc


async def release(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize("way", [pytest.param(symlink, id="symlink"),
                                 pytest.param(hard_link, id="hard-link")])
async def test_a_held_journal_refuses_a_run_through_another_name(
        way: Callable[[Path], Path], emu, monkeypatch, tmp_path, capsys):
    """Another process holds the journal through a link: this run exits 2 'in use', makes
    no call, and the journal opens again once the other process is gone."""
    point_at(monkeypatch, emu)
    journal = tmp_path / "j.db"
    async with await Journal.open(journal):
        pass  # create it
    other = way(journal)
    path = write_catalog(tmp_path / "c.csv", ["K1,https://example.com/a.png,US"])
    out = tmp_path / "r.jsonl"
    holder = await hold(other)
    try:
        assert await cli("screen", str(path), "--out", str(out), "--journal", str(journal),
                         *FAST) == 2
        assert "in use by another fto-async run" in capsys.readouterr().err
        assert emu.stats.count() == 0
        assert not out.exists()
        with pytest.raises(JournalLockedError):
            await Journal.open(journal)
    finally:
        await release(holder)
    assert await cli("screen", str(path), "--out", str(out), "--journal", str(other),
                     *FAST) == 0


async def test_the_lock_is_on_the_file_in_one_process(tmp_path):
    """In one process too, a second Journal on a symlink or hard link of an open one is
    refused."""
    journal = tmp_path / "j.db"
    async with await Journal.open(journal):
        for other in (symlink(journal), hard_link(journal)):
            with pytest.raises(JournalLockedError):
                await Journal.open(other)
