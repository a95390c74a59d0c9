"""Helpers of the CLI tests: run ``fto-async`` in a worker thread, small catalogs, records.

The ``emu`` and ``env`` fixtures they pair with live in ``tests/conftest.py``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from fto_async.cli import main

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "fto_async" / "data" / "sample_catalog.csv"
SAMPLE_ROWS, SAMPLE_BAD = 45, 3
SAMPLE_DUPLICATES = 4  # rows of the sample that repeat another row's image and options
FAST = ["--time-scale", "0.001"]


async def cli(*args: str) -> int:
    """Run ``fto-async ARGS`` in a worker thread; return its exit code."""
    return await asyncio.to_thread(main, list(args))


def records(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def catalog(tmp_path: Path, rows: list[str], header: str = "sku,image_url,country") -> Path:
    """Write a small CSV catalog."""
    path = tmp_path / "catalog.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def good_rows(n: int) -> list[str]:
    """``n`` valid rows with distinct images."""
    return [f"K{i},https://example.com/p{i}.png,US" for i in range(n)]
