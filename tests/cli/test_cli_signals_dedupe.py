"""Ctrl-C in a catalog that repeats itself: shared rows resume without a submit of their own.

Same processes as tests/cli/test_cli_signals.py: the emulator and the command run as
subprocesses; 150 rows ask about 50 images (each image under three SKUs, far apart).
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from tests.cli.test_cli_signals import (
    SCREEN,
    emulator,  # noqa: F401 - fixture
    finish,
    finishing,
    output_keys,
    run,
    start,
    stats,
    until_submits,
)

ROWS, IMAGES = 150, 50

pytestmark = pytest.mark.slow


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    """150 rows over 50 images: row i shows image i % 50."""
    path = tmp_path / "catalog.csv"
    lines = ["sku,image_url,country"]
    lines += [f"SKU-{i:03d},https://example.com/items/{i % IMAGES}.png,US" for i in range(ROWS)]
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_sigint_then_resume_never_resubmits_a_shared_row(
    emulator, catalog, tmp_path  # noqa: F811
):
    """Stopped by Ctrl-C mid-run, the rerun completes with exactly one task per image."""
    out = tmp_path / "results.jsonl"
    screen = ["screen", str(catalog), "--out", str(out), "--no-cache", *SCREEN]
    proc = await start(screen, emulator)
    await until_submits(emulator, proc, 10)
    proc.send_signal(signal.SIGINT)
    code, _stdout, err = await finish(proc, 60)  # judged by its code, not a wall bound
    assert code == 130, err
    code, status, _err = await run(["status", str(out) + ".journal.db"], emulator)
    assert code == 0
    assert "shared" in status

    code, summary, err = await run(finishing(screen), emulator)
    assert code == 0, err
    assert output_keys(out) == [f"SKU-{i:03d}" for i in range(ROWS)]
    assert out.read_text().count('"status": "done"') == ROWS
    assert f"{ROWS} rows, {IMAGES} distinct requests" in summary
    images = [record["image"] for record in (await stats(emulator))["submits"]]
    assert len(images) == IMAGES  # one task per distinct image, over both runs
    assert len(set(images)) == IMAGES
    await asyncio.sleep(0)
