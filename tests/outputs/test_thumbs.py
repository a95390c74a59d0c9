"""The report's thumbnail cache (a rerun decodes nothing it has seen) and its worker threads."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from fto_async.cli import main
from fto_async.emulator import Emulator, EmulatorConfig
from fto_async.outputs import Product, write_html
from fto_async.outputs import _cards as _report_cards
from fto_async.outputs import _html as report
from fto_async.outputs._cards import ENCODER
from fto_async.outputs._thumbs import ThumbCache, cache_path
from tests.outputs.conftest import product_png

_SRC = re.compile(r'<div class="frame"><img src="(data:image/[^"]+)"')


def _record(key: str, **extra: Any) -> dict[str, Any]:
    return {"key": key, "line": 2, "status": "done", "error": None, "highest_risk": None,
            "report": {"task_status": 2, "report": {"country": ["US"], "comparisons": []}},
            **extra}  # fmt: skip


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every image file read and decoded for a thumbnail (``"bytes"``: a line drawing)."""
    opened: list[str] = []
    real = _report_cards.thumbnail

    def counting(source: Any, size: int, **kwargs: Any) -> str | None:
        opened.append(str(source) if isinstance(source, Path) else "bytes")
        return real(source, size, **kwargs)

    monkeypatch.setattr(_report_cards, "thumbnail", counting)
    return opened


def _photos(folder: Path, count: int) -> list[Path]:
    paths = []
    for n in range(count):
        path = folder / f"p{n}.png"
        path.write_bytes(product_png((600 + 10 * n, 400)))
        paths.append(path)
    return paths


def _rows(paths: list[Path]) -> list[dict[str, Any]]:
    return [_record(f"K{n}", image_path=str(p)) for n, p in enumerate(paths)]


def test_a_rerun_decodes_nothing_and_shows_the_same_thumbnails(tmp_path, decodes):
    """The second report of the same files reads every thumbnail from the cache file."""
    paths = _photos(tmp_path, 5)
    cache = tmp_path / "r.thumbs.db"
    first = write_html(_rows(paths), tmp_path / "1.html", thumb_cache=cache)
    made = len(decodes)
    assert made == 5
    second = write_html(_rows(paths), tmp_path / "2.html", thumb_cache=cache)
    assert len(decodes) == made  # nothing decoded again
    a, b = (_SRC.findall(w.path.read_text("utf-8")) for w in (first, second))
    assert len(a) == 5
    assert a == b
    with sqlite3.connect(cache) as db:
        assert db.execute("SELECT count(*) FROM thumbs WHERE encoder = ?",
                          (ENCODER,)).fetchone() == (5,)  # fmt: skip


def test_a_file_shared_by_rows_is_decoded_once_per_report(tmp_path, decodes):
    """Without a cache file, a report still encodes each distinct file once."""
    (path,) = _photos(tmp_path, 1)
    write_html(_rows([path] * 20), tmp_path / "r.html")
    assert len(decodes) == 1


def test_a_changed_file_misses(tmp_path, decodes):
    """The key is the content: a new mtime alone decodes nothing, new bytes (here also a
    new size) decode that file alone again."""
    paths = _photos(tmp_path, 3)
    cache = tmp_path / "r.thumbs.db"
    write_html(_rows(paths), tmp_path / "1.html", thumb_cache=cache)
    stat = paths[1].stat()
    os.utime(paths[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    decodes.clear()
    write_html(_rows(paths), tmp_path / "2.html", thumb_cache=cache)
    assert decodes == []
    paths[2].write_bytes(product_png((300, 300)))  # new content, maybe the same mtime
    os.utime(paths[2], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    decodes.clear()
    html = write_html(_rows(paths), tmp_path / "3.html", thumb_cache=cache)
    assert decodes == [str(paths[2].resolve())]  # the size changed
    assert len(_SRC.findall(html.path.read_text("utf-8"))) == 3


def test_a_file_that_is_not_an_image_is_never_cached(tmp_path, decodes):
    """A fake PNG is tried on every report and never stored; its card embeds nothing."""
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n" + b"<script>alert(1)</script>" * 10)
    (good,) = _photos(tmp_path, 1)
    cache = tmp_path / "r.thumbs.db"
    for n in range(2):
        decodes.clear()
        html = write_html(_rows([fake, good]), tmp_path / f"{n}.html", thumb_cache=cache)
        assert len(_SRC.findall(html.path.read_text("utf-8"))) == 1
        assert sorted(decodes) == ([str(fake.resolve()), str(good.resolve())] if n == 0
                                   else [str(fake.resolve())])  # fmt: skip
    with sqlite3.connect(cache) as db:
        digests = [d for (d,) in db.execute("SELECT digest FROM thumbs")]
    assert digests == [hashlib.sha256(good.read_bytes()).hexdigest()]


def test_a_tampered_entry_is_ignored(tmp_path, decodes):
    """What the cache returns must be a data: URI of ours, or the file is decoded again."""
    (path,) = _photos(tmp_path, 1)
    cache = tmp_path / "r.thumbs.db"
    write_html(_rows([path]), tmp_path / "1.html", thumb_cache=cache)
    with sqlite3.connect(cache) as db:
        db.execute("UPDATE thumbs SET uri = ?", ('data:image/svg+xml,<svg onload="x()">',))
    decodes.clear()
    html = write_html(_rows([path]), tmp_path / "2.html", thumb_cache=cache)
    text = html.path.read_text("utf-8")
    assert "svg" not in text
    assert decodes == [str(path.resolve())]
    assert re.fullmatch(r"data:image/(webp|jpeg);base64,[A-Za-z0-9+/=]+", _SRC.findall(text)[0])


def test_a_cache_that_is_not_ours_is_left_alone(tmp_path, decodes):
    """Another SQLite file, a non-SQLite file or a missing folder: no cache, same report."""
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE items (x)")
    text = tmp_path / "notes.txt"
    text.write_text("not a database")
    (path,) = _photos(tmp_path, 1)
    for n, cache in enumerate((other, text, tmp_path / "no" / "such" / "dir.db")):
        html = write_html(_rows([path]), tmp_path / f"{n}.html", thumb_cache=cache)
        assert len(_SRC.findall(html.path.read_text("utf-8"))) == 1
    with sqlite3.connect(other) as db:
        assert [n for (n,) in db.execute("SELECT name FROM sqlite_master")] == ["items"]
    assert text.read_text() == "not a database"
    assert not (tmp_path / "no").exists()


def test_a_report_without_local_images_makes_no_cache_file(tmp_path):
    cache = tmp_path / "r.thumbs.db"
    write_html([_record("A", image_url="https://shop.example/a.png")], tmp_path / "r.html",
               thumb_cache=cache)  # fmt: skip
    assert not cache.exists()


def test_cache_path_sits_beside_the_results():
    assert cache_path(Path("/x/r.jsonl")) == Path("/x/r.jsonl.thumbs.db")
    assert cache_path(Path("/x/r.jsonl.journal.db")) == Path("/x/r.jsonl.thumbs.db")


def test_thumbnails_run_on_worker_threads_and_cards_keep_row_order(tmp_path, monkeypatch):
    """Row 0's thumbnail waits until row 9's is made: rows finish out of order, on more
    than one thread, and the cards still come out in row order."""
    monkeypatch.setattr(report, "_WORKERS", 4)
    later = threading.Event()
    threads: set[int] = set()
    real = _report_cards.thumbnail

    def slow_first(source: Any, size: int, **kwargs: Any) -> str | None:
        threads.add(threading.get_ident())
        if isinstance(source, Path) and source.name == "p0.png":
            assert later.wait(30), "row 9 was not made while row 0 waited"
        uri = real(source, size, **kwargs)
        if isinstance(source, Path) and source.name == "p9.png":
            later.set()
        return uri

    monkeypatch.setattr(_report_cards, "thumbnail", slow_first)
    paths = _photos(tmp_path, 12)
    products = {f"K{n}": Product(title=f"T{n}", image_path=p) for n, p in enumerate(paths)}
    records = [_record(f"K{n}") for n in range(12)]
    html = write_html(records, tmp_path / "r.html", products=products).path.read_text("utf-8")
    assert later.is_set()
    assert len(threads) > 1
    keys = re.findall(r'<article class="card [^"]*" data-key="([^"]*)"', html)
    assert keys == [f"K{n}" for n in range(12)]
    assert len(_SRC.findall(html)) == 12
    for n, uri in enumerate(_SRC.findall(html)):  # each card holds its own image
        assert uri == ThumbCache().thumbnail(paths[n], 200)


def test_screen_keeps_thumbnails_for_the_report_command(screened, tmp_path, decodes):
    """screen --out OUT writes OUT.thumbs.db; `fto-async report` then decodes no product."""
    cache = screened["folder"] / "results.jsonl.thumbs.db"
    with sqlite3.connect(cache) as db:
        assert db.execute("SELECT count(*) FROM thumbs").fetchone() == (1,)  # LOCAL-1
    out = tmp_path / "again.html"
    assert main(["report", str(screened["journal"]), "--out", str(out),
                 "--catalog", str(screened["catalog"])]) == 0  # fmt: skip
    assert decodes == [] or all(name == "bytes" for name in decodes)  # line drawings only
    assert _SRC.search(out.read_text("utf-8"))
    assert main(["report", str(screened["journal"]), "--out", str(cache)]) == 2


async def test_screen_makes_the_thumbnails_while_it_runs(tmp_path, monkeypatch):
    """Each local image is decoded once, on the warming thread during the run: the
    report at the end of the run finds every thumbnail made."""
    made: list[tuple[str, str]] = []
    real = _report_cards.thumbnail

    def counting(source: Any, size: int, **kwargs: Any) -> str | None:
        if isinstance(source, Path):
            made.append((source.name, threading.current_thread().name))
        return real(source, size, **kwargs)

    monkeypatch.setattr(_report_cards, "thumbnail", counting)
    paths = _photos(tmp_path, 3)
    rows = [{"sku": f"L{n}", "title": f"t{n}", "image_path": p.name, "country": "US"}
            for n, p in enumerate(paths)] + [{"sku": "L9", "title": "again",
                                              "image_path": paths[0].name, "country": "US"}]
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    out = tmp_path / "r.jsonl"
    config = EmulatorConfig(time_scale=0.001, qps=None, seed=3)
    async with Emulator(config) as emu:
        monkeypatch.setenv("PATSNAP_API_KEY", "sk-demo")
        monkeypatch.setenv("PATSNAP_BASE_URL", emu.base_url)
        for name in ("PATSNAP_CLIENT_ID", "PATSNAP_CLIENT_SECRET"):
            monkeypatch.delenv(name, raising=False)
        code = await asyncio.to_thread(main, [
            "screen", str(catalog), "--out", str(out), "--time-scale", "0.001"])
    assert code == 0
    assert sorted(made) == sorted((p.name, "fto-thumbs_0") for p in paths)
    assert len(_SRC.findall((tmp_path / "r.jsonl.html").read_text("utf-8"))) == 4
