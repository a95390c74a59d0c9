"""Headless Chromium for the report tests: found on PATH, driven by Playwright.

A missing Chromium or Playwright skips the browser tests with the reason, except under
``CI=true``, where it fails them: CI must really run them.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def unavailable(reason: str) -> None:
    """Skip with ``reason`` (fail under CI=true)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser tests cannot run under CI: {reason}")
    pytest.skip(reason)


def chromium_path() -> str:
    """The system Chromium binary (never a Playwright download)."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    unavailable("no Chromium binary on PATH (chromium or chromium-browser)")
    raise AssertionError("unreachable")


async def launch(playwright: Any) -> Any:
    """A headless Chromium browser."""
    return await playwright.chromium.launch(executable_path=chromium_path(), args=ARGS)
