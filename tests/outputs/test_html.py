"""write_html without a browser: sources, escaping, the CSP, thumbnails, card contents."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from fto_async.journal import Journal
from fto_async.outputs import Product, write_html
from tests.outputs.conftest import XSS_IMG, XSS_SCRIPT, expected_risk, product_png


def _cards(html: str) -> list[tuple[str, str]]:
    return re.findall(r'<article class="card [^"]*" data-key="([^"]*)" data-risk="([^"]*)"', html)


def _done(key: str, comparisons: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    pms = [{"img_id": c["img_id"], "patent_pn": c["patent_pn"], "score": c["score"],
            "url_120": f"https://img.example/{c['img_id']}_120.png",
            "url": f"https://img.example/{c['img_id']}.png"} for c in comparisons]
    return {"key": key, "line": 2, "task_id": "t-1", "status": "done", "error": None,
            "highest_risk": None, "high_risk_countries": [], "middle_risk_countries": [],
            "report": {"task_status": 2, "patent_messages": {"patent_messages": pms,
                       "total_search_result_count": 40},
                       "report": {"country": ["US"], "comparisons": comparisons}}, **extra}


def _comparison(pn: str, risk: str, score: float, **extra: Any) -> dict[str, Any]:
    return {"score": score, "title": f"Design {pn}", "img_id": f"img-{pn}", "status": 1,
            "country": "US", "similar": "alike", "confusion": "some", "patent_id": "p",
            "patent_pn": pn, "risk_desc": "risk", "difference": "differs",
            "risk_level": risk, "suggestion": "review", **extra}


def test_every_source_gives_one_card_per_row(screened, tmp_path):
    """A journal path, a JSONL path and an iterable of records make the same cards."""
    expected = sorted((r["key"], expected_risk(r)) for r in screened["records"])
    from_jsonl = write_html(screened["out"], tmp_path / "a.html")
    from_journal = write_html(screened["journal"], tmp_path / "b.html")
    from_records = write_html(iter(screened["records"]), tmp_path / "c.html")
    for written in (from_jsonl, from_journal, from_records):
        html = written.path.read_text("utf-8")
        assert sorted((_unescape(k), r) for k, r in _cards(html)) == expected
        assert written.rows == len(expected)


async def test_an_open_journal_in_a_running_loop(screened, tmp_path):
    """An open Journal is read as it is; a journal path works inside a running loop too."""
    async with await Journal.open(screened["journal"]) as journal:
        written = write_html(journal, tmp_path / "j.html")
    assert written.rows == len(screened["records"])
    assert write_html(screened["journal"], tmp_path / "k.html").rows == written.rows


def _unescape(text: str) -> str:
    import html

    return html.unescape(text)


def test_the_csp_hashes_the_inline_script_and_style_and_names_no_host(screened, tmp_path):
    """One inline script and style, both allowed by hash; no external resource at all."""
    html = write_html(screened["out"], tmp_path / "r.html").path.read_text("utf-8")
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', html)
    assert csp is not None
    policy = _unescape(csp.group(1))
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    styles = re.findall(r"<style>(.*?)</style>", html, re.S)
    assert len(scripts) == 1
    assert len(styles) == 1

    def digest(text: str) -> str:
        return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()

    assert f"script-src 'sha256-{digest(scripts[0])}'" in policy
    assert f"style-src 'sha256-{digest(styles[0])}'" in policy
    assert "default-src 'none'" in policy
    assert "img-src data: http: https:" in policy
    assert not re.search(r"https?://", policy)
    assert "<link" not in html
    assert "<script src" not in html
    assert " style=" not in html  # an inline style attribute would break the CSP
    assert html.count("<script") == 1


def test_catalog_and_platform_text_is_escaped(tmp_path):
    """Titles, keys, errors and platform texts are escaped; bad image URLs are dropped."""
    evil = _comparison("US1", "High", 0.9, similar=XSS_SCRIPT, title=XSS_IMG)
    records = [
        _done("<b>k1</b>", [evil], title=XSS_SCRIPT, image_url="javascript:alert(1)"),
        {"key": "k2", "status": "failed", "error": XSS_IMG, "report": None,
         "image_url": "data:text/html,<script>alert(1)</script>"},
    ]
    html = write_html(records, tmp_path / "r.html", title=XSS_SCRIPT).path.read_text("utf-8")
    assert XSS_SCRIPT not in html
    assert XSS_IMG not in html
    assert "&lt;script&gt;window.__pwned=2&lt;/script&gt;" in html
    assert 'data-key="&lt;b&gt;k1&lt;/b&gt;"' in html
    assert "javascript:" not in html
    assert "data:text/html" not in html


def test_local_images_are_embedded_as_small_thumbnails_only_if_pillow_decodes_them(tmp_path):
    """A local PNG becomes a <=240 px WebP data URI; a fake or non-image file never embeds."""
    good = tmp_path / "good.png"
    good.write_bytes(product_png((1600, 1200)))
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n" + b"<script>alert(1)</script>" * 10)
    text = tmp_path / "page.html"
    text.write_text("<html><script>alert(1)</script></html>")
    products = {"G": Product(title="good", image_path=good),
                "F": Product(title="fake", image_path=fake),
                "T": Product(title="text", image_path=text)}
    records = [_done(key, []) for key in products]
    html = write_html(records, tmp_path / "r.html", products=products).path.read_text("utf-8")
    uris = re.findall(r'src="(data:image/(?:webp|jpeg);base64,[^"]+)"', html)
    assert len(uris) == 1
    image = Image.open(io.BytesIO(base64.b64decode(uris[0].split(",", 1)[1])))
    assert image.format in ("WEBP", "JPEG")
    assert max(image.size) <= 240
    assert "alert(1)" not in html
    assert base64.b64encode(b"<script>").decode()[:8] not in html


def test_line_drawings_are_verified_and_downscaled(tmp_path):
    """A large line drawing is re-encoded at <=120 px; a non-image one is left out."""
    big = io.BytesIO()
    Image.new("L", (1000, 800), 255).save(big, "PNG")
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'
    ok = _done("A", [])
    ok["report"]["line_drawing_base64"] = "data:image/png;base64," + base64.b64encode(
        big.getvalue()).decode()
    bad = _done("B", [])
    bad["report"]["line_drawing_base64"] = "data:image/png;base64," + base64.b64encode(
        svg).decode()
    html = write_html([ok, bad], tmp_path / "r.html").path.read_text("utf-8")
    uris = re.findall(r'<img src="(data:image/png;base64,[^"]+)" alt="platform line drawing"', html)
    assert len(uris) == 1
    image = Image.open(io.BytesIO(base64.b64decode(uris[0].split(",", 1)[1])))
    assert max(image.size) <= 120
    assert base64.b64encode(svg).decode() not in html


def test_matches_are_sorted_by_risk_then_score_with_their_thumbnails(tmp_path):
    """Matched designs list High before Medium before Low, higher scores first."""
    comparisons = [_comparison("LOW1", "Low", 0.95), _comparison("MED1", "Medium", 0.61),
                   _comparison("HIGH1", "High", 0.81), _comparison("HIGH2", "High", 0.93),
                   _comparison("MED2", "Medium", 0.7)]
    rec = _done("K", comparisons)
    rec["report"]["report"]["comparisons"][4]["img_id"] = "unknown"
    html = write_html([rec], tmp_path / "r.html").path.read_text("utf-8")
    order = re.findall(r'<strong><a href="[^"]+"[^>]*>([A-Z0-9]+)</a></strong>', html)
    assert order == ["HIGH2", "HIGH1", "MED2", "MED1", "LOW1"]
    assert 'src="https://img.example/img-HIGH2_120.png" alt="HIGH2" loading="lazy"' in html
    # MED2's img_id is unknown: its thumbnail is found by patent_pn.
    assert 'src="https://img.example/img-MED2_120.png"' in html
    assert 'data-risk="high"' in html
    assert "of 40 searched" in html
    assert html.count("<details") == 5


def test_statuses_map_to_data_risk(tmp_path):
    """done without matches is none, failed and invalid say why, unfinished rows are pending,
    rows left mid-submit unknown (the status word of CSV and JSONL)."""
    records = [
        _done("clean", []),
        _done("low", [_comparison("L", "Low", 0.3)]),
        {"key": "f", "status": "failed", "error": "task failed (task_status 3)", "report": None},
        {"key": "i", "status": "invalid", "error": "country: bad code", "report": None},
        {"key": "p", "status": "pending", "error": None, "report": None},
        {"key": "u", "status": "unknown", "error": None, "report": None},
    ]
    written = write_html(records, tmp_path / "r.html")
    html = written.path.read_text("utf-8")
    assert _cards(html) == [("low", "low"), ("clean", "none"), ("p", "pending"),
                            ("u", "unknown"), ("f", "failed"), ("i", "invalid")]
    assert "task failed (task_status 3)" in html
    assert "country: bad code" in html
    assert written.risk == {"low": 1, "none": 1, "pending": 1, "unknown": 1, "failed": 1,
                            "invalid": 1}


def test_header_shows_calls_filters_and_the_country_chart(tmp_path):
    """The header counts rows by risk, charts high/medium per country, names the filters."""
    rec = _done("K", [_comparison("A", "High", 0.9), _comparison("B", "Medium", 0.7,
                                                                country="EU")])
    rec["report"]["report"].update(high_risk_country=["US"], middle_risk_country=["EU"],
                                   loc=["26-05"], apply_start_time="20200101")
    html = write_html([rec], tmp_path / "r.html", calls=7).path.read_text("utf-8")
    header = html.split('id="summary"', 1)[1].split("</header>", 1)[0]
    assert "7 platform calls" in header
    assert "26-05" in header
    assert "20200101" in header
    assert "<title>US: 1 high</title>" in header
    assert "<title>EU: 1 medium</title>" in header
    assert '<meta charset="utf-8">' in html


def test_cjk_text_is_written_as_utf8(tmp_path):
    """Chinese platform texts are kept as UTF-8 and marked lang=zh for the CJK fonts."""
    cn = _comparison("CN1", "High", 0.9, similar="两者整体造型均为台灯", country="CN")
    rec = _done("CN", [cn], title="中文台灯")
    path = write_html([rec], tmp_path / "r.html").path
    html = path.read_bytes().decode("utf-8")
    assert "两者整体造型均为台灯" in html
    assert "中文台灯" in html
    assert '<details lang="zh">' in html
    assert "Noto Sans CJK SC" in html


def test_json_lines_results_file_with_blank_lines(tmp_path):
    """A JSONL results file is read line by line; blank lines are skipped."""
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [_done("A", []), _done("B", [])]) + "\n\n")
    assert write_html(path, tmp_path / "r.html").rows == 2


def test_a_missing_source_raises(tmp_path):
    """A source path that does not exist raises FileNotFoundError, and writes nothing."""
    with pytest.raises(FileNotFoundError):
        write_html(tmp_path / "nope.db", tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()
    assert list(Path(tmp_path).iterdir()) == []
