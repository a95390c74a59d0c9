"""Render the demo's HTML report and save ``docs/img/report.png`` (README and docs use it).

Rerun it whenever the report changes::

    python scripts/screenshot.py            # or --out somewhere.png --rows 12

It runs ``fto-async demo`` (the embedded emulator, no credentials), reads the report's
path from the demo's "open the report: PATH" line, opens the file in Debian's Chromium
through Playwright (``executable_path``; no browser download) and screenshots the top
of the page: the summary and the first cards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "open the report: "


def chromium() -> str:
    """Path of the system Chromium."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    sys.exit("no chromium on PATH (apt-get install chromium)")


def demo_report(rows: int) -> Path:
    """Run the demo and return the path of the report it wrote."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    done = subprocess.run(  # noqa: S603  # our own interpreter and arguments
        [sys.executable, "-m", "fto_async.cli", "demo", "--rows", str(rows)],
        capture_output=True, text=True, env=env, check=True, cwd=ROOT,
    )
    for line in done.stdout.splitlines():
        if line.startswith(PREFIX):
            return Path(line.removeprefix(PREFIX))
    sys.exit(f"the demo printed no {PREFIX!r} line:\n{done.stdout}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "report.png")
    parser.add_argument("--rows", type=int, default=45, help="demo rows (default: all 45)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args()
    report = demo_report(args.rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as play:
        browser = play.chromium.launch(executable_path=chromium())
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        page.goto(report.as_uri(), wait_until="load")
        page.wait_for_selector("article.card")
        page.screenshot(path=str(args.out))
        browser.close()
    print(f"{args.out} ({args.out.stat().st_size:,} bytes) from {report}")  # noqa: T201


if __name__ == "__main__":
    main()
