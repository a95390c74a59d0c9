"""Interrupting ``fto-async screen`` (SIGINT, twice, SIGKILL) loses nothing and pays little twice.

Both the emulator and the command run as subprocesses, the way a user runs them. The
emulator is slowed so that a submit takes ~0.3 s and a task ~1 s; the interrupted runs
send 40 calls per second, so a run of 150 rows would take about 8 s, long enough to
interrupt it in the middle, and the runs that complete send 120 (the emulator's limit).

No wall-clock bound judges a stop: on a loaded machine a process may take seconds to
start or to exit. A stop is judged by what happened: exit code 130, its message, and
fewer tasks created than rows (the run did not go on to the end). A stop that hangs
still fails: :func:`finish` kills the process after its timeout, and the code is not 130.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests._shared import unmeasured_env

ROWS = 150
EMULATOR = ["--port", "0", "--qps", "120", "--time-scale", "0.06", "--task-duration", "16",
            "--seed", "3"]  # fmt: skip
SCREEN = ["--qps", "40", "--time-scale", "0.06"]  # a run to interrupt
FINISH = ["--qps", "120", "--time-scale", "0.06"]  # a run to complete
CLI = [sys.executable, "-c", "from fto_async.cli import main; raise SystemExit(main())"]

pytestmark = pytest.mark.slow


@pytest.fixture
async def emulator() -> AsyncIterator[str]:
    """An emulator subprocess on a free 127.0.0.1 port; yields its base URL."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fto_async.emulator", *EMULATOR,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        # Not measured: it is killed at the end, and a killed process saves no coverage.
        env={**unmeasured_env(), "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        banner = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode()
        match = re.search(r"http://127\.0\.0\.1:\d+", banner)
        assert match, banner
        yield match.group(0)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    """A catalog of 150 rows, each with its own image."""
    path = tmp_path / "catalog.csv"
    lines = ["sku,image_url,country"]
    lines += [f"SKU-{i:03d},https://example.com/items/{i}.png,US" for i in range(ROWS)]
    path.write_text("\n".join(lines) + "\n")
    return path


def environment(base_url: str, *, measured: bool = True) -> dict[str, str]:
    """The command's environment: the emulator's demo account (and, unless
    ``measured``, no coverage measurement)."""
    env = {k: v for k, v in (os.environ if measured else unmeasured_env()).items()
           if not k.startswith("PATSNAP_")}
    return {**env, "PATSNAP_API_KEY": "sk-demo", "PATSNAP_BASE_URL": base_url,
            "PYTHONUNBUFFERED": "1"}


async def stats(base_url: str) -> dict[str, Any]:
    """The emulator's stats snapshot."""
    async with aiohttp.ClientSession() as session, \
            session.get(f"{base_url}/_emulator/stats") as resp:
        return dict(await resp.json())


async def start(args: list[str], base_url: str, *, measured: bool = True
                ) -> asyncio.subprocess.Process:  # fmt: skip
    """Start ``fto-async ARGS`` with its output in pipes (unmeasured by coverage when it
    is to be killed: a killed process saves no coverage)."""
    return await asyncio.create_subprocess_exec(
        *CLI, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=environment(base_url, measured=measured),
    )


async def finish(proc: asyncio.subprocess.Process, timeout: float) -> tuple[int, str, str]:
    """Wait for ``proc`` (killing it if it overstays); return code, stdout, stderr."""
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def run(args: list[str], base_url: str, timeout: float = 120) -> tuple[int, str, str]:
    """Run ``fto-async ARGS`` to its end."""
    return await finish(await start(args, base_url), timeout)


async def until_submits(base_url: str, proc: asyncio.subprocess.Process, more_than: int) -> None:
    """Wait until the emulator has created more than ``more_than`` tasks (a guard of 120 s
    against a stalled run: the command's start alone takes seconds on a loaded machine)."""
    deadline = time.monotonic() + 120
    while (await stats(base_url))["tasks_created"] <= more_than:
        assert proc.returncode is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline, "no progress"
        await asyncio.sleep(0.05)


def finishing(screen: list[str]) -> list[str]:
    """``screen`` with :data:`FINISH`'s options instead of :data:`SCREEN`'s."""
    assert screen[-len(SCREEN):] == SCREEN
    return [*screen[:-len(SCREEN)], *FINISH]


def output_keys(out: Path) -> list[str]:
    """The keys of the output file, in order."""
    return [line.split('"key": "')[1].split('"')[0] for line in out.read_text().splitlines()]


def unknown_count(status: str) -> int:
    """The ``unknown`` count in ``fto-async status`` output (0 if absent)."""
    match = re.search(r"^\s*unknown\s+(\d+)\s*$", status, re.MULTILINE)
    return int(match.group(1)) if match else 0


async def complete_and_check(
    emulator: str, catalog: Path, out: Path, screen: list[str]
) -> dict[str, Any]:
    """Rerun to completion (at the emulator's full rate); check one done line per row;
    return the emulator's stats."""
    code, _out, err = await run(finishing(screen), emulator)
    assert code == 0, err
    assert output_keys(out) == [f"SKU-{i:03d}" for i in range(ROWS)]
    assert out.read_text().count('"status": "done"') == ROWS
    return await stats(emulator)


async def test_sigint_stops_gracefully_and_the_rerun_submits_nothing_twice(
    emulator, catalog, tmp_path
):
    """Ctrl-C lets in-flight submits finish, exits 130 with a resume hint; no duplicate submits."""
    out = tmp_path / "results.jsonl"
    screen = ["screen", str(catalog), "--out", str(out), *SCREEN]
    proc = await start(screen, emulator)
    await until_submits(emulator, proc, 20)
    proc.send_signal(signal.SIGINT)
    code, _stdout, err = await finish(proc, 60)
    assert code == 130, err
    assert "stopping: waiting for" in err
    assert "Resume with the same command" in err
    assert "fto-async screen" in err
    assert len(output_keys(out)) == ROWS
    created = (await stats(emulator))["tasks_created"]
    assert created < ROWS

    # A second run, stopped hard with two signals: its in-flight submits become unknown.
    proc = await start(screen, emulator)
    await until_submits(emulator, proc, created + 10)
    proc.send_signal(signal.SIGINT)
    await asyncio.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    code, _stdout, err = await finish(proc, 60)
    assert code == 130, err
    assert (await stats(emulator))["tasks_created"] < ROWS
    code, status, _err = await run(["status", str(out) + ".journal.db"], emulator)
    assert code == 0
    unknown = unknown_count(status)

    snapshot = await complete_and_check(emulator, catalog, out, screen)
    images = [record["image"] for record in snapshot["submits"]]
    assert len(set(images)) == ROWS
    assert len(images) - ROWS <= unknown


async def test_sigkill_loses_nothing(emulator, catalog, tmp_path):
    """After SIGKILL every row still gets its line; duplicates are at most the unknown rows."""
    out = tmp_path / "results.jsonl"
    screen = ["screen", str(catalog), "--out", str(out), *SCREEN]
    proc = await start(screen, emulator, measured=False)
    await until_submits(emulator, proc, 30)
    proc.kill()
    await finish(proc, 60)

    code, status, err = await run(["status", str(out) + ".journal.db"], emulator)
    assert code == 0, err
    unknown = unknown_count(status)

    snapshot = await complete_and_check(emulator, catalog, out, screen)
    images = [record["image"] for record in snapshot["submits"]]
    assert len(set(images)) == ROWS
    assert len(images) - ROWS <= unknown
