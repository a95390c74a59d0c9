"""The report shows what was screened (issue 19, item 8).

* Thumbnails are keyed by the content's hash: a photo edited in place, given back its
  size and modification time, shows its new picture (the key was path, size and mtime).
* ``report --catalog`` shows, for a row whose catalog image changed since it was
  screened, the journal's image, and says so on the card.
* ``report results.jsonl`` embeds only local images inside the image root (as ``screen``
  confines them), never any file a results file names.
* Bidi controls in platform strings are shown as visible escapes.
* Images on loopback, private or link-local addresses are not loaded; the card says why.
* A line drawing is decoded only below about 4 Mpx (a tiny PNG can claim far more).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from fto_async.cli import main
from fto_async.fingerprint import request_fingerprint
from fto_async.journal import Journal
from fto_async.models import ImageSearchRequest
from fto_async.outputs import write_html

from ._cli import write_catalog

_FRAME = re.compile(r'<div class="frame"><img src="([^"]+)"')


def _record(key: str, **extra: Any) -> dict[str, Any]:
    return {"key": key, "line": 2, "status": "done", "error": None, "highest_risk": None,
            "report": {"task_status": 2, "report": {"country": ["US"], "comparisons": []}},
            **extra}  # fmt: skip


def _png(colour: tuple[int, int, int], size: tuple[int, int] = (64, 64)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG", compress_level=0)  # size: pixels only
    return out.getvalue()


def test_thumbnail_follows_the_bytes_not_the_mtime(tmp_path: Path) -> None:
    """A photo replaced by another of the same size and mtime shows the new picture."""
    photo = tmp_path / "p.png"
    photo.write_bytes(_png((250, 10, 10)))
    before = photo.stat()
    cache = tmp_path / "r.thumbs.db"
    first = write_html([_record("A", image_path=str(photo))], tmp_path / "1.html",
                       thumb_cache=cache).path.read_text("utf-8")  # fmt: skip
    photo.write_bytes(_png((10, 10, 250)))
    assert photo.stat().st_size == before.st_size
    os.utime(photo, ns=(before.st_atime_ns, before.st_mtime_ns))
    second = write_html([_record("A", image_path=str(photo))], tmp_path / "2.html",
                        thumb_cache=cache).path.read_text("utf-8")  # fmt: skip
    (old,), (new,) = _FRAME.findall(first), _FRAME.findall(second)
    assert old != new
    fresh = write_html([_record("A", image_path=str(photo))], tmp_path / "3.html")
    assert _FRAME.findall(fresh.path.read_text("utf-8")) == [new]


def _screened_journal(path: Path, url: str) -> Path:
    """A journal whose row ``A`` was screened (done) with the image at ``url``."""
    request = ImageSearchRequest(url=url, country=["US"], lang="en")
    body = {"url": url, "country": ["US"], "lang": "en"}
    report = {"task_status": 2, "report": {"country": ["US"], "comparisons": []}}

    async def make() -> None:
        async with await Journal.open(path) as journal:
            await journal.add_pending("A", 2, body, "image_search",
                                      fingerprint=request_fingerprint(request))  # fmt: skip
            await journal.mark_submitting("A")
            await journal.mark_submitted("A", "task-1")
            await journal.mark_done("A", report)

    asyncio.run(make())
    return path


def test_report_catalog_shows_the_screened_image_of_a_changed_row(tmp_path: Path) -> None:
    """The catalog now names another image: the card keeps the screened one, with a note."""
    journal = _screened_journal(tmp_path / "r.journal.db", "https://shop.example/old.png")
    catalog = write_catalog(tmp_path / "c.csv", ["A,https://shop.example/new.png,US"])
    out = tmp_path / "r.html"
    assert main(["report", str(journal), "--out", str(out), "--catalog", str(catalog)]) == 0
    html = out.read_text("utf-8")
    assert "https://shop.example/old.png" in html
    assert "https://shop.example/new.png" not in html
    assert "catalog entry changed since this row was screened" in html
    write_catalog(catalog, ["A,https://shop.example/old.png,US"])  # unchanged: no note
    assert main(["report", str(journal), "--out", str(out), "--catalog", str(catalog)]) == 0
    assert "catalog entry changed" not in out.read_text("utf-8")


def test_report_of_results_confines_local_images(tmp_path: Path) -> None:
    """``report results.jsonl`` embeds an image inside its folder, not one outside it."""
    secret = tmp_path / "private" / "secret.png"
    secret.parent.mkdir()
    secret.write_bytes(_png((1, 2, 3)))
    work = tmp_path / "work"
    work.mkdir()
    (work / "ok.png").write_bytes(_png((200, 200, 0)))
    results = work / "r.jsonl"
    rows = [_record("OUT", image_path=str(secret)),
            _record("DOTS", image_path="../private/secret.png"),
            _record("IN", image_path="ok.png")]  # fmt: skip
    results.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    out = work / "r.html"
    assert main(["report", str(results), "--out", str(out)]) == 0
    html = out.read_text("utf-8")
    cards = dict(re.findall(r'data-key="([^"]+)"[^>]*>\s*<div class="product"><div class="frame">'
                            r'(<img src="data:[^"]+")?', html))  # fmt: skip
    assert cards["IN"]
    assert not cards["OUT"]
    assert not cards["DOTS"]
    # --image-root widens the folder, as screen's does.
    assert main(["report", str(results), "--out", str(out), "--image-root", str(tmp_path)]) == 0
    assert len(_FRAME.findall(out.read_text("utf-8"))) == 3


def _match(pn: str, **extra: Any) -> dict[str, Any]:
    return {"score": 0.9, "title": "t", "img_id": f"i-{pn}", "status": 1, "country": "US",
            "patent_pn": pn, "risk_level": "High", **extra}


def test_bidi_controls_are_visible(tmp_path: Path) -> None:
    """A patent number with U+202E (right-to-left override) shows ``\\u202e``, not the control."""
    record = _record("A")
    record["report"]["report"]["comparisons"] = [_match("US\u202e123D", title="a\u2067b")]
    html = write_html([record], tmp_path / "r.html").path.read_text("utf-8")
    assert "\u202e" not in html
    assert "\u2067" not in html
    assert "US\\u202e123D" in html
    assert "a\\u2067b" in html


@pytest.mark.parametrize("host", [
    "127.0.0.1", "127.1", "2130706433", "0x7f.1", "1.2.3.4.5", "10.1.2.3", "192.168.0.9",
    "169.254.169.254", "[::1]", "[fe80::1]", "localhost",
])  # fmt: skip
def test_private_addresses_are_not_loaded(tmp_path: Path, host: str) -> None:
    """A product or patent image on a non-public address: no ``src``, a note saying why."""
    url = f"http://{host}/beacon.png"
    record = _record("A", image_url=url)
    record["report"]["report"]["comparisons"] = [_match("US1", patent_image_url=url)]
    html = write_html([record], tmp_path / "r.html").path.read_text("utf-8")
    assert "beacon.png" not in html
    assert html.count("Image not loaded") == 2
    public = _record("B", image_url="https://shop.example/p.png")
    html = write_html([public], tmp_path / "s.html").path.read_text("utf-8")
    assert 'src="https://shop.example/p.png"' in html


def test_line_drawing_bomb_is_not_decoded(tmp_path: Path) -> None:
    """A 9 Mpx line drawing (a few KB of PNG) is left out; a small one is embedded."""
    def drawing(size: tuple[int, int]) -> str:
        out = io.BytesIO()
        Image.new("L", size, 255).save(out, "PNG", optimize=True)
        return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()

    big, small = _record("BIG"), _record("SMALL")
    big["report"]["line_drawing_base64"] = drawing((3000, 3000))
    small["report"]["line_drawing_base64"] = drawing((400, 300))
    assert len(big["report"]["line_drawing_base64"]) < 40_000
    html = write_html([big, small], tmp_path / "r.html").path.read_text("utf-8")
    assert html.count('alt="platform line drawing"') == 1


async def test_report_catalog_notes_a_local_image_edited_after_screening(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real run: an unchanged local image gets no note; the same file with new bytes
    gets one (its fingerprint with the journal's own request no longer matches)."""
    from ._cli import FAST, cli, point_at
    from ._support import emulator

    (tmp_path / "a.png").write_bytes(_png((250, 10, 10)))
    (tmp_path / "b.png").write_bytes(_png((10, 250, 10)))
    catalog = write_catalog(tmp_path / "c.csv", ["A,a.png", "B,b.png"], header="sku,image_path")
    out, html = tmp_path / "r.jsonl", tmp_path / "again.html"
    async with emulator() as emu:
        point_at(monkeypatch, emu)
        assert await cli("screen", str(catalog), "--out", str(out), "--country", "US,EU",
                         "--no-cache", *FAST) == 0  # fmt: skip
    journal = str(tmp_path / "r.jsonl.journal.db")
    assert await cli("report", journal, "--out", str(html), "--catalog", str(catalog)) == 0
    assert "catalog entry changed" not in html.read_text("utf-8")
    (tmp_path / "b.png").write_bytes(_png((10, 10, 250)))
    assert await cli("report", journal, "--out", str(html), "--catalog", str(catalog)) == 0
    text = html.read_text("utf-8")
    assert text.count("catalog entry changed") == 1
    assert re.search(r'data-key="B"[^§]*?catalog entry changed', text)


def test_a_rerun_reads_no_unchanged_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The digests are kept by stat (ctime included): a rerun's report reads no unchanged
    image, and one rewritten with its old size and mtime is read (and shown) anew."""
    from fto_async.outputs import _thumbs

    photos = [tmp_path / f"p{n}.png" for n in range(3)]
    for n, photo in enumerate(photos):
        photo.write_bytes(_png((80 * n, 10, 10)))
    rows = [_record(f"K{n}", image_path=str(p)) for n, p in enumerate(photos)]
    cache = tmp_path / "r.thumbs.db"
    write_html(rows, tmp_path / "1.html", thumb_cache=cache)
    reads: list[str] = []
    real = _thumbs._read
    monkeypatch.setattr(_thumbs, "_read", lambda path: reads.append(path.name) or real(path))
    write_html(rows, tmp_path / "2.html", thumb_cache=cache)
    assert reads == []
    before = photos[1].stat()
    photos[1].write_bytes(_png((1, 200, 1)))
    os.utime(photos[1], ns=(before.st_atime_ns, before.st_mtime_ns))
    html = write_html(rows, tmp_path / "3.html", thumb_cache=cache).path.read_text("utf-8")
    assert reads == ["p1.png"]
    fresh = write_html(rows[1:2], tmp_path / "4.html").path.read_text("utf-8")
    assert _FRAME.findall(fresh)[0] in _FRAME.findall(html)
