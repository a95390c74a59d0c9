"""A real screened catalog (CLI + in-process emulator) shared by the report tests."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image, ImageDraw

from fto_async.cli import main
from fto_async.emulator import Emulator, EmulatorConfig
from tests.outputs._browser import launch, unavailable

XSS_IMG = '<img src=x onerror="window.__pwned=1">'
XSS_SCRIPT = "<script>window.__pwned=2</script>"
XSS_KEY = 'Q"><svg onload=window.__pwned=3>'


def product_png(size: tuple[int, int] = (900, 700)) -> bytes:
    """A product-like PNG, larger than any thumbnail."""
    image = Image.new("RGB", size, (246, 246, 244))
    draw = ImageDraw.Draw(image)
    draw.ellipse((200, 120, 700, 620), fill=(196, 120, 60), outline=(60, 40, 20), width=12)
    draw.rectangle((400, 40, 500, 200), fill=(90, 90, 96))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _catalog(folder: Path) -> Path:
    (folder / "local.png").write_bytes(product_png())
    rows: list[dict[str, Any]] = [
        {"sku": f"LAMP-{n:03d}", "title": f"Table lamp model {n}",
         "image_url": f"https://shop.example/img/lamp-{n}.png", "country": "US,EU,CN"}
        for n in range(1, 13)
    ]
    rows += [
        {"sku": "XSS-1", "title": XSS_IMG, "image_url": "https://shop.example/img/x1.png"},
        {"sku": "XSS-2", "title": XSS_SCRIPT, "image_url": "https://shop.example/img/x2.png"},
        {"sku": XSS_KEY, "title": "quoted key", "image_url": "https://shop.example/img/q.png"},
        {"sku": "LOCAL-1", "title": "Local image", "image_path": "local.png"},
        {"sku": "CN-1", "title": "中文台灯", "image_url": "https://shop.example/img/cn.png",
         "lang": "cn", "country": "CN"},
        {"sku": "BAD-1", "title": "bad country", "image_url": "https://shop.example/b.png",
         "country": "XX9"},
        {"sku": "BAD-2", "title": "no image"},
    ]
    path = folder / "catalog.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


async def _screen(folder: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    config = EmulatorConfig(time_scale=0.001, qps=None, fail_rate=0.15, seed=11)
    async with Emulator(config) as emu:
        monkeypatch.setenv("PATSNAP_API_KEY", "sk-demo")
        monkeypatch.setenv("PATSNAP_BASE_URL", emu.base_url)
        monkeypatch.setenv("PATSNAP_QPS", "500")
        args = ["screen", str(folder / "catalog.jsonl"), "--out", str(folder / "results.jsonl"),
                "--country", "US,EU", "--time-scale", "0.001"]
        return await asyncio.to_thread(main, args)


@pytest.fixture(scope="session")
def screened(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Catalog, results, journal and HTML report of one real screening run."""
    folder = tmp_path_factory.mktemp("screened")
    _catalog(folder)
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name in ("PATSNAP_CLIENT_ID", "PATSNAP_CLIENT_SECRET"):
            monkeypatch.delenv(name, raising=False)
        with ThreadPoolExecutor(1) as pool:  # pytest-asyncio may run a loop in this thread
            code = pool.submit(asyncio.run, _screen(folder, monkeypatch)).result()
    assert code in (0, 1)
    out = folder / "results.jsonl"
    records = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    return {
        "folder": folder, "catalog": folder / "catalog.jsonl", "out": out,
        "journal": folder / "results.jsonl.journal.db", "html": folder / "results.jsonl.html",
        "records": records,
    }


def expected_risk(record: dict[str, Any]) -> str:
    """The ``data-risk`` a record's card must carry."""
    status = record["status"]
    if status != "done":
        return status if status in ("failed", "invalid") else "pending"
    return (record["highest_risk"] or "none").lower()


RESCREEN_SHARE = 0.3
_LOCS = ("26-05", "09-01", "06-01", "21-01", "03-01", "07-01")


def rescreen_catalog(folder: Path, rows: int = 40) -> Path:
    """``rows`` products of six LOC classes; the last two share the first row's image."""
    items = [{"sku": f"P-{n:03d}", "title": f"Product {n} ({_LOCS[n % 6]})",
              "image_url": f"https://shop.example/img/p-{n}.png", "loc": _LOCS[n % 6]}
             for n in range(1, rows - 1)]
    items += [{"sku": f"P-{n:03d}", "title": f"Product {n}, same photo as P-001",
               "image_url": "https://shop.example/img/p-1.png", "loc": _LOCS[1]}
              for n in (rows - 1, rows)]
    path = folder / "catalog.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in items), "utf-8")
    return path


async def _rescreen(folder: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    config = EmulatorConfig(time_scale=0.001, qps=None, publish_share=RESCREEN_SHARE, seed=3)
    async with Emulator(config) as emu:
        monkeypatch.setenv("PATSNAP_API_KEY", "sk-demo")
        monkeypatch.setenv("PATSNAP_BASE_URL", emu.base_url)
        monkeypatch.setenv("PATSNAP_QPS", "500")
        args = ["screen", str(folder / "catalog.jsonl"), "--out", str(folder / "results.jsonl"),
                "--country", "US,EU,CN", "--time-scale", "0.001",
                "--cache", str(folder / "cache.db")]
        first = await asyncio.to_thread(main, args)
        (folder / "first.jsonl").write_bytes((folder / "results.jsonl").read_bytes())
        (folder / "first.html").write_bytes((folder / "results.jsonl.html").read_bytes())
        emu.reconfigure(publish_round=1)
        created = len(emu.stats.submits)
        again = await asyncio.to_thread(main, [*args, "--rescreen"])
        created = len(emu.stats.submits) - created
    return {"codes": (first, again), "rescreen_tasks": created}


@pytest.fixture(scope="session")
def rescreened(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 40-row catalog screened, then (after one publication round) screened again with
    ``--rescreen``; ``changed`` holds the keys whose image the round hit."""
    from fto_async.emulator._reports import ReportInputs, _published

    folder = tmp_path_factory.mktemp("rescreened")
    catalog = rescreen_catalog(folder)
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name in ("PATSNAP_CLIENT_ID", "PATSNAP_CLIENT_SECRET", "FTO_PATENT_LINK"):
            monkeypatch.delenv(name, raising=False)
        with ThreadPoolExecutor(1) as pool:
            ran = pool.submit(asyncio.run, _rescreen(folder, monkeypatch)).result()
    assert ran["codes"] == (0, 0)
    rows = [json.loads(line) for line in catalog.read_text("utf-8").splitlines()]
    changed = {r["sku"] for r in rows if _published(ReportInputs(
        image=r["image_url"], countries=("US",), lang="en", publish_share=RESCREEN_SHARE,
        publish_round=1))}
    out = folder / "results.jsonl"
    return {
        "folder": folder, "catalog": catalog, "out": out, "changed": changed,
        "journal": folder / "results.jsonl.journal.db", "html": folder / "results.jsonl.html",
        "first": [json.loads(x) for x in (folder / "first.jsonl").read_text().splitlines()],
        "records": [json.loads(x) for x in out.read_text("utf-8").splitlines()],
        "first_html": folder / "first.html", "rescreen_tasks": ran["rescreen_tasks"],
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chromium() -> AsyncIterator[Any]:
    """One headless Chromium per test module and worker (a launch costs about a second of
    CPU). Its tests run on the module's event loop: ``pytestmark =
    pytest.mark.asyncio(loop_scope="module")``."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        unavailable("the playwright package is not installed (pip install -e '.[test]')")
    async with async_playwright() as playwright:
        browser = await launch(playwright)
        try:
            yield browser
        finally:
            await browser.close()


@pytest_asyncio.fixture(loop_scope="module")
async def browser(chromium: Any) -> AsyncIterator[Any]:
    """The module's Chromium for one test: each page it opens has a context of its own
    (storage, routes), and every context is closed when the test ends."""
    yield chromium
    for context in list(chromium.contexts):
        await context.close()
