"""A real screened catalog (CLI + in-process emulator) shared by the report tests."""

from __future__ import annotations

import asyncio
import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from fto_async.cli import main
from fto_async.emulator import Emulator, EmulatorConfig

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
