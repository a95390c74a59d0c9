"""The rescreened report in headless Chromium at 1400, 1024 and 390 px (issue 21): links,
new-since badges on exactly the changed rows, state kept in the URL across a reload, no
sideways scroll, no clipped or overlapping header text, and the print summary's size.
A screenshot per width is kept under the pytest tmp dir and copied to tests/artifacts/
(git-ignored); docs/img/report.png is made by scripts/screenshot.py, never by a test."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.outputs._browser import answer_images, watch_problems

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
WIDTHS = (1400, 1024, 390)

# One Chromium per module (tests/outputs/conftest.py), so the tests share its event loop.
pytestmark = pytest.mark.asyncio(loop_scope="module")


async def _open(browser: Any, path: Path, width: int, problems: list[str],
                hash_: str = "") -> Any:  # fmt: skip
    page = await browser.new_page(viewport={"width": width, "height": 900})
    await answer_images(page)
    watch_problems(page, problems)
    await page.goto(path.as_uri() + hash_)
    return page


async def _visible(page: Any) -> list[str]:
    return await page.eval_on_selector_all(
        "article.card:not([hidden])", "els => els.map(e => e.dataset.key)")


async def test_links_and_new_since_badges(browser, rescreened):
    """Every matched design links out (http(s), new tab, no referrer); the cards carrying
    data-new-matches > 0 and a 'new since' badge are exactly the changed rows."""
    problems: list[str] = []
    page = await _open(browser, rescreened["html"], 1400, problems)
    designs = await page.eval_on_selector_all(".ml > li", "els => els.length")
    links = await page.eval_on_selector_all(
        ".ml > li .pn a", "els => els.map(a => [a.href, a.target, a.rel])")
    assert designs > 0
    assert len(links) == designs
    assert all(re.match(r"https://", href) and target == "_blank" and "noreferrer" in rel
               for href, target, rel in links)
    new = await page.eval_on_selector_all(
        "article.card", "els => els.filter(e => Number(e.dataset.newMatches) > 0)"
        ".map(e => e.dataset.key)")
    assert set(new) == rescreened["changed"]
    badges = await page.eval_on_selector_all(
        "article.card:has(.newb)", "els => els.map(e => e.dataset.key)")
    assert set(badges) == rescreened["changed"]
    text = await page.inner_text("#changes")
    assert text.startswith(f"{len(rescreened['changed'])} rows with new matches")
    await page.check("#new")
    assert set(await _visible(page)) == rescreened["changed"]
    assert problems == []


async def test_first_screening_says_so(browser, rescreened):
    """The first run's report says it is a first screening, never '0 new'."""
    problems: list[str] = []
    page = await _open(browser, rescreened["first_html"], 1400, problems)
    assert "First screening" in await page.inner_text("#changes")
    assert await page.query_selector("#new") is None
    assert await page.query_selector("[data-new-matches]") is None
    assert problems == []


async def test_filters_survive_a_reload_and_a_shared_link(browser, rescreened):
    """Risk, country, search, sort, new and live state go to the URL hash; a reload, or the
    link opened in a new page, shows the same rows in the same order."""
    problems: list[str] = []
    page = await _open(browser, rescreened["html"], 1400, problems)
    await page.click("button[data-only=high]")
    await page.select_option("#country", "EU")
    await page.select_option("#sort", "key")
    await page.check("#live")
    await page.fill("#search", "product")
    await page.press("#search", "Enter")
    shown = await _visible(page)
    url = page.url
    assert "risk=high" in url
    assert "country=EU" in url
    assert "sort=key" in url
    assert "live=1" in url
    await page.reload()
    assert await _visible(page) == shown
    assert await page.is_checked("#live")
    other = await _open(browser, Path(url.split("#")[0].removeprefix("file://")), 1024,
                        problems, "#" + url.split("#", 1)[1])  # fmt: skip
    assert await _visible(other) == shown
    assert await other.input_value("#country") == "EU"
    assert problems == []


async def test_live_only_hides_invalid_rights(browser, rescreened):
    """The live toggle hides lapsed rights and filters rows on the highest live risk."""
    problems: list[str] = []
    page = await _open(browser, rescreened["html"], 1400, problems)
    dead = await page.eval_on_selector_all(".ml > li.dead", "els => els.length")
    assert dead > 0
    await page.check("#live")
    shown = await page.eval_on_selector_all(
        ".ml > li.dead", "els => els.filter(e => e.offsetParent !== null).length")
    assert shown == 0
    assert problems == []


def _pages(pdf: Path) -> int:
    """The pages of a Chromium PDF (its page objects are not compressed)."""
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf.read_bytes()))


_OVERLAPS = """() => {
  const boxes = [...document.querySelectorAll('#summary h1, #summary .meta span, #summary .changes,'
    + ' .tile, .bars text, .filters-used dt, .filters-used dd, .toolbar label, .toolbar .count')]
    .filter(e => e.offsetParent !== null || e.closest('svg'))
    .map(e => [e, e.getBoundingClientRect()]);
  const out = [];
  for (let i = 0; i < boxes.length; i++) {
    const [a, r] = boxes[i];
    // clipped: a label wider than the box that holds it (svg text against its svg)
    const holder = a.closest('svg') || a.parentElement;
    const h = holder.getBoundingClientRect();
    if (r.right > h.right + 1 || r.left < h.left - 1) {
      out.push('clipped: ' + a.textContent.trim());
    }
    for (let j = i + 1; j < boxes.length; j++) {
      const [b, s] = boxes[j];
      if (a.contains(b) || b.contains(a)) { continue; }
      const x = Math.min(r.right, s.right) - Math.max(r.left, s.left);
      const y = Math.min(r.bottom, s.bottom) - Math.max(r.top, s.top);
      if (x > 1 && y > 1) {
        out.push('overlap: ' + a.textContent.trim() + ' / ' + b.textContent.trim());
      }
    }
  }
  return out;
}"""


@pytest.mark.parametrize("width", WIDTHS)
async def test_layout_at_each_width(browser, rescreened, width, tmp_path_factory):
    """No sideways scroll, no clipped or overlapping header text; a screenshot is kept."""
    problems: list[str] = []
    page = await _open(browser, rescreened["html"], width, problems)
    await page.wait_for_timeout(100)
    scroll = await page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"sideways scroll: {scroll} px at {width} px"
    assert await page.evaluate(_OVERLAPS) == []
    folder = tmp_path_factory.mktemp("screenshots")
    shot = folder / f"report-{width}.png"
    await page.screenshot(path=str(shot), full_page=False)
    print(f"report screenshot at {width} px: {shot}")
    assert shot.stat().st_size > 10_000
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / f"report-{width}.png")
    assert problems == []


async def test_print_summary_fits_in_a_few_pages(browser, rescreened, tmp_path):
    """Printing unfiltered gives the summary table only (about 3 pages for 150 rows: here
    40 rows fit in 2); with a filter on, the analyses of the rows on screen follow."""
    problems: list[str] = []
    page = await _open(browser, rescreened["html"], 1400, problems)
    await page.emulate_media(media="print")
    assert await page.eval_on_selector_all("main#cards", "els => els[0].offsetParent") is None
    rows = await page.eval_on_selector_all("#print-summary tbody tr", "els => els.length")
    assert rows == len(rescreened["records"])
    pdf = tmp_path / "report.pdf"
    await page.pdf(path=str(pdf), format="A4")
    pages = _pages(pdf)
    assert pages <= 2, pages
    await page.emulate_media(media="screen")
    await page.click("button[data-only=high]")
    await page.pdf(path=str(pdf), format="A4")
    assert _pages(pdf) > pages
    assert problems == []


async def test_rows_sharing_an_image_are_grouped(browser, rescreened):
    """The two rows with P-001's photo say so and follow P-001, in every sort but by key."""
    problems: list[str] = []
    page = await _open(browser, rescreened["html"], 1400, problems)

    async def after_lead() -> list[str]:
        keys = await page.eval_on_selector_all("article.card", "els => els.map(e => e.dataset.key)")
        at = keys.index("P-001")
        return keys[at + 1: at + 3]

    same = await page.eval_on_selector_all(
        "article.card[data-same]", "els => els.map(e => [e.dataset.key, e.dataset.same])")
    assert sorted(same) == [["P-039", "P-001"], ["P-040", "P-001"]]
    assert "Same image as P-001" in await page.text_content("article.card[data-key='P-039']")
    assert sorted(await after_lead()) == ["P-039", "P-040"]
    await page.select_option("#sort", "seq")
    assert sorted(await after_lead()) == ["P-039", "P-040"]
    assert problems == []
