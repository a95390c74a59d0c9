"""Helpers of the reliability suites that run the ``fto-async`` command in-process.

``main()`` runs its own event loop, so it runs in a worker thread while the emulator
serves on the test's loop (as in tests/cli/test_cli.py).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from fto_async.cli import main
from fto_async.emulator import Emulator

#: Poll schedule factor matching an emulator at time scale 0.001.
FAST = ["--time-scale", "0.001"]


async def cli(*args: str) -> int:
    """Run ``fto-async ARGS`` in a worker thread; return its exit code."""
    return await asyncio.to_thread(main, list(args))


def records(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_catalog(path: Path, rows: list[str], header: str = "sku,image_url,country") -> Path:
    """Write a small CSV catalog at ``path``."""
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def point_at(monkeypatch: pytest.MonkeyPatch, emu: Emulator | str, **env: str) -> None:
    """PATSNAP_* variables for the emulator's ``sk-demo`` account (or ``env`` instead)."""
    for name in ("PATSNAP_API_KEY", "PATSNAP_CLIENT_ID", "PATSNAP_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    base = emu if isinstance(emu, str) else emu.base_url
    settings = {"PATSNAP_API_KEY": "sk-demo", "PATSNAP_BASE_URL": base, "PATSNAP_QPS": "500"}
    if env:
        settings = {"PATSNAP_BASE_URL": base, "PATSNAP_QPS": "500", **env}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
