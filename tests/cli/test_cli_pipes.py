"""Pipes: ``fto-async screen - --out -`` in a real pipe; no output path may hang."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from fto_async.cli._pipes import spool_stdin
from fto_async.emulator import Emulator

ROOT = Path(__file__).resolve().parents[2]
CSV = "sku,image_url,country\nA,https://example.com/a.png,US\nB,https://example.com/b.png,US\n"
JSONL = '{"sku": "C", "image_url": "https://example.com/c.png", "country": "US"}\n'


def child_env(emu: Emulator, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATSNAP_")}
    env.update(PATSNAP_API_KEY="sk-demo", PATSNAP_BASE_URL=emu.base_url,
               PATSNAP_QPS="500", XDG_CACHE_HOME=str(tmp_path / "xdg"),
               PYTHONPATH=str(ROOT))  # fmt: skip
    return env


async def run_cli(env: dict[str, str], stdin: str, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fto_async.cli", *args, "--time-scale", "0.001",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        async with asyncio.timeout(60):
            out, err = await proc.communicate(stdin.encode())
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize(("catalog", "keys"), [(CSV, ["A", "B"]), (JSONL, ["C"])])
async def test_screen_stdin_to_stdout_in_a_pipe(emu, tmp_path, catalog, keys):
    """A CSV or JSONL catalog on stdin, one JSON record per row on stdout, the summary on
    stderr; the journal defaults under the cache folder, so a rerun pays nothing."""
    env = child_env(emu, tmp_path)
    code, out, err = await run_cli(env, catalog, "screen", "-", "--out", "-")
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]  # nothing else on stdout
    assert [r["key"] for r in records] == keys
    assert {r["status"] for r in records} == {"done"}
    assert "journal:" in err
    journals = list((tmp_path / "xdg" / "fto-async" / "journals").glob("*.journal.db"))
    assert len(journals) == 1
    submits = emu.stats.count("/ai/image-search/submit", 0)
    code, again, _ = await run_cli(env, catalog, "screen", "-", "--out", "/dev/stdout")
    assert code == 0
    assert [json.loads(line)["task_id"] for line in again.splitlines()] == [
        r["task_id"] for r in records
    ]
    assert emu.stats.count("/ai/image-search/submit", 0) == submits


async def test_out_fifo_is_written_through_never_replaced(emu, tmp_path):
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    catalog = tmp_path / "c.csv"
    catalog.write_text(CSV, encoding="utf-8")
    code, _, err = await run_cli(child_env(emu, tmp_path), "", "screen", str(catalog),
                                 "--out", str(fifo))  # fmt: skip
    reader.join(10)
    assert code == 0, err
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # still the FIFO the reader opened
    assert [json.loads(line)["key"] for line in got[0].decode().splitlines()] == ["A", "B"]


def test_the_sqlite_check_never_opens_a_fifo(tmp_path):
    """It used to open --out for reading: a FIFO (or /dev/stdout on a pipe) blocked for
    ever. A child process, so a hang is killed by the timeout, not the test run."""
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    code = f"from pathlib import Path; from fto_async.cli._paths import is_sqlite; " \
           f"print(is_sqlite(Path({str(fifo)!r})))"  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,  # noqa: S603
                          timeout=20, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert done.stdout.strip() == "False"


def test_stdin_format_is_detected(tmp_path):
    import io

    assert spool_stdin(tmp_path, io.BytesIO(JSONL.encode())).suffix == ".jsonl"
    assert spool_stdin(tmp_path, io.BytesIO(b"\xef\xbb\xbf" + CSV.encode())).suffix == ".csv"
