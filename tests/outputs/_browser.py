"""Headless Chromium for the report tests: found on PATH, driven by Playwright.

A missing Chromium or Playwright skips the browser tests with the reason, except under
``CI=true``, where it fails them: CI must really run them.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
from typing import Any

import pytest
from PIL import Image

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


@functools.cache
def small_png() -> bytes:
    """The PNG every image request of a report page gets."""
    out = io.BytesIO()
    Image.new("RGB", (120, 120), (200, 210, 220)).save(out, "PNG")
    return out.getvalue()


async def answer_images(page: Any, *, own: str = "file:", seen: list[str] | None = None
                        ) -> None:  # fmt: skip
    """Let the page's own requests (URLs starting with ``own``) through and answer every
    other one, the report's images, with :func:`small_png` (recorded in ``seen``)."""

    async def route(route: Any) -> None:
        url = route.request.url
        if url.startswith(own):
            await route.continue_()
            return
        if seen is not None:
            seen.append(url)
        await route.fulfill(status=200, content_type="image/png", body=small_png())

    await page.route("**/*", route)


def watch_problems(page: Any, problems: list[str]) -> None:
    """Collect the page's console errors and warnings and its uncaught exceptions."""
    page.on("console", lambda msg: msg.type in ("error", "warning")
            and problems.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
