"""Shared helpers for the benchmarks: emulator subprocesses, timing, tables."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any


@contextlib.contextmanager
def emulator_process(*args: str) -> Iterator[str]:
    """Run ``python -m fto_async.emulator --port 0 ARGS`` and yield its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "fto_async.emulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 20
        url = None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
            if match:
                url = match.group(1)
                break
        if url is None:
            raise RuntimeError("the emulator did not start")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def admin(url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """GET (or POST ``body`` to) an emulator admin route."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method="POST" if data else "GET")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as resp:  # loopback only
        return json.loads(resp.read())


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table (also valid Markdown)."""
    cells = [[str(c) for c in header], *[[_fmt(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [f"### {title}", ""]
    for n, row in enumerate(cells):
        padded = (c.ljust(w) for c, w in zip(row, widths, strict=True))
        lines.append("| " + " | ".join(padded) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def image_sequence(n: int, duplicate_share: float, seed: int) -> list[int]:
    """``n`` image numbers; ``duplicate_share`` of them repeat an earlier one (seeded)."""
    import random

    rng = random.Random(seed)
    images: list[int] = []
    out = []
    for _ in range(n):
        if images and rng.random() < duplicate_share:
            image = rng.choice(images)
        else:
            image = len(images)
            images.append(image)
        out.append(image)
    return out
