"""HTML report benchmark: generation time, file size and first paint in headless Chromium.

Run:  python benchmarks/report.py                 # 5,000 rows, both image scenarios
      python benchmarks/report.py --rows 20000

Rows are the emulator's own reports (``build_result``: 10-30 patents, 0-8 analysed
comparisons, a line drawing each; every tenth row in Chinese), with 3% failed and 2%
invalid rows, as ``fto-async screen`` writes them to its JSONL. Scenarios:

* url: every product image is a remote URL (shown lazily, nothing embedded).
* local, 50 shared files: every product image is a local file (photo-like: four in five
  1000x1000 JPEGs, one in five 900x700 PNGs), 50 files shared by the rows, embedded as
  a <=200 px thumbnail; no cache file, so each distinct file is encoded once per report.
* local, distinct files, first: every row has its own file (hard links to those 50, so
  each is a distinct path: every one is decoded, scaled and encoded), with an empty
  thumbnail cache file, as the first report of a ``screen`` run.
* local, distinct files, cached: the same again, the cache file now full, as every later
  report of the same catalog (a rerun or a resumed run) is, and as ``screen``'s own
  report is: ``screen`` fills the cache on a background thread while the platform works.

First paint is Chromium's ``first-contentful-paint`` of the file (image requests are
answered at once with a tiny PNG; the bounds are for a local file, not the network).
"Filters work" is when the page's script has run (its ``fto-filters-ready`` mark): from
then on the filters act on the cards parsed so far, and on all of them at
DOMContentLoaded. Bounds (issue 14): generate <= 5 s, <= 25 MB, first paint <= 2 s,
for 5,000 rows.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table

from fto_async.emulator._reports import ReportInputs, build_result
from fto_async.outputs import write_html

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
BOUNDS = {"generate_s": 5.0, "mb": 25.0, "paint_ms": 2000.0}


def _photo(n: int, size: tuple[int, int]) -> Image.Image:
    """A product-photo-like image: a gradient, two shapes, sensor noise, a slight blur."""
    ramp = Image.linear_gradient("L").resize(size)
    image = Image.merge("RGB", [ramp.point(lambda v, k=k: 185 + v // k) for k in (4, 5, 7)])
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.ellipse((w // 5, h // 6, w * 4 // 5, h * 5 // 6), fill=(150 + n % 90, 90, 60 + n % 50))
    draw.rectangle((w // 2 - 70, 40, w // 2 + 70, h // 3), fill=(70, 70, 80))
    noise = Image.effect_noise(size, 24).convert("RGB")
    return Image.blend(image, noise, 0.12).filter(ImageFilter.GaussianBlur(1.0))


def _images(folder: Path, count: int = 50) -> list[Path]:
    """``count`` files: four in five 1000x1000 JPEGs (q 88), one in five 900x700 PNGs."""
    paths = []
    for n in range(count):
        png = n % 5 == 4
        image = _photo(n, (900, 700) if png else (1000, 1000))
        path = folder / f"p{n}.{'png' if png else 'jpg'}"
        image.save(path, "PNG" if png else "JPEG", quality=88)
        paths.append(path)
    return paths


def records(rows: int, images: list[Path] | None) -> list[dict[str, Any]]:
    """``rows`` result records as the CLI's JSONL holds them (plus catalog fields)."""
    out = []
    for n in range(rows):
        key = f"SKU-{n:06d}"
        base: dict[str, Any] = {"key": key, "line": n + 2, "title": f"Product {n}"}
        if images is None:
            base["image_url"] = f"https://shop.example/img/{key}.jpg"
        else:
            base["image_path"] = str(images[n % len(images)])
        if n % 50 == 7:
            out.append({**base, "status": "invalid", "error": "country: bad code", "report": None})
            continue
        if n % 33 == 5:
            out.append({**base, "status": "failed", "task_id": f"t{n}", "report": None,
                        "error": f"task t{n} failed on the platform (task_status 3)"})
            continue
        lang = "cn" if n % 10 == 3 else "en"
        inputs = ReportInputs(image=f"https://shop.example/img/{key}.jpg",
                              countries=("US", "EU", "CN"), lang=lang, loc=("26-05",))
        result = dict(build_result(inputs))
        result["report"] = {**result["report"], "operate_date": 1_764_000_000_000 + n}
        out.append({**base, "status": "done", "task_id": f"t{n}", "error": None,
                    "report": {"task_id": f"t{n}", "task_status": 2, **result}})
    return out


def _distinct(folder: Path, images: list[Path], rows: int) -> list[Path]:
    """``rows`` distinct paths (hard links, else copies) cycling through ``images``."""
    folder.mkdir()
    paths = []
    for n in range(rows):
        image = images[n % len(images)]
        path = folder / f"d{n}{image.suffix}"
        try:
            os.link(image, path)
        except OSError:
            shutil.copyfile(image, path)
        paths.append(path)
    return paths


async def first_paint(path: Path) -> tuple[float, float, float]:
    """(first-contentful-paint, filters work, DOMContentLoaded) in ms, headless Chromium."""
    from playwright.async_api import async_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no Chromium binary on PATH")
    buf = io.BytesIO()
    Image.new("RGB", (1, 1), (255, 255, 255)).save(buf, "PNG")
    png = buf.getvalue()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1440, "height": 900})

            async def route(route: Any) -> None:
                if route.request.url.startswith("file:"):
                    await route.continue_()
                else:
                    await route.fulfill(status=200, content_type="image/png", body=png)

            await page.route("**/*", route)
            await page.goto(path.as_uri(), wait_until="load", timeout=120_000)
            paint = await page.evaluate("""() => {
                const p = performance.getEntriesByName('first-contentful-paint')[0];
                const r = performance.getEntriesByName('fto-filters-ready')[0];
                const n = performance.getEntriesByType('navigation')[0];
                return [p ? p.startTime : -1, r ? r.startTime : -1,
                        n ? n.domContentLoadedEventEnd : -1];
            }""")
            return float(paint[0]), float(paint[1]), float(paint[2])
        finally:
            await browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="fto-report-bench-"))
    table_rows = []
    try:
        images = _images(folder)
        distinct = _distinct(folder / "distinct", images, args.rows)
        cache = folder / "distinct.thumbs.db"
        scenarios = [("url", None, None), ("local, 50 shared files", images, None),
                     ("local, distinct files, first", distinct, cache),
                     ("local, distinct files, cached", distinct, cache)]  # fmt: skip
        for n, (scenario, files, thumbs) in enumerate(scenarios):
            recs = records(args.rows, files)
            source = folder / f"s{n}.jsonl"
            with source.open("w", encoding="utf-8") as handle:
                for rec in recs:
                    handle.write(json.dumps(rec, ensure_ascii=False) + "\n")
            del recs
            out = folder / f"s{n}.html"
            started = time.perf_counter()  # read, render, write
            written = write_html(source, out, calls=2 * args.rows, thumb_cache=thumbs)
            seconds = time.perf_counter() - started
            mb = written.bytes / 1e6
            paint, ready, dcl = asyncio.run(first_paint(out))
            ok = (seconds <= BOUNDS["generate_s"] and mb <= BOUNDS["mb"]
                  and 0 <= paint <= BOUNDS["paint_ms"])
            table_rows.append([scenario, written.rows, round(seconds, 2), round(mb, 1),
                               round(paint), round(ready), round(dcl), "yes" if ok else "NO"])
            print(*table_rows[-1], sep=" | ", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(table(
        f"HTML report, {args.rows} rows (bounds: generate <= {BOUNDS['generate_s']:g} s, "
        f"<= {BOUNDS['mb']:g} MB, first paint <= {BOUNDS['paint_ms']:g} ms)",
        ["images", "rows", "generate s", "MB", "first paint ms", "filters work ms",
         "DOMContentLoaded ms", "within bounds"], table_rows))


if __name__ == "__main__":
    main()
