"""The HTML report of a real screening run, in headless Chromium (Playwright)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio

from tests.outputs._browser import answer_images, watch_problems
from tests.outputs.conftest import XSS_IMG, XSS_KEY, XSS_SCRIPT, expected_risk

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"

# One Chromium per module (tests/outputs/conftest.py), so the tests share its event loop.
pytestmark = pytest.mark.asyncio(loop_scope="module")


def _image_urls(records: list[dict[str, Any]]) -> set[str]:
    """Every image URL the results (or the catalog) name."""
    urls = {f"https://shop.example/img/{name}.png" for name in ("x1", "x2", "q", "cn")}
    urls |= {f"https://shop.example/img/lamp-{n}.png" for n in range(1, 13)}
    for rec in records:
        report = rec.get("report") or {}
        for block in ("patent_messages", "rrffusion_response"):
            for item in (report.get(block) or {}).get("patent_messages", []):
                urls.update(u for u in (item.get("url"), item.get("url_120")) if u)
    return urls


class Opened:
    """The report open in a page, with every request and console problem it made."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.requests: list[str] = []
        self.problems: list[str] = []

    async def visible(self) -> list[str]:
        return await self.page.eval_on_selector_all(
            "article.card:not([hidden])", "els => els.map(e => e.dataset.key)")


@pytest_asyncio.fixture(loop_scope="module")
async def opened(browser: Any, screened: dict[str, Any]) -> Opened:
    """The screened run's report in headless Chromium; image requests get a small PNG."""
    page = await browser.new_page(viewport={"width": 1440, "height": 1000})
    seen = Opened(page)
    await answer_images(page, seen=seen.requests)
    watch_problems(page, seen.problems)
    await page.goto(screened["html"].as_uri())
    return seen


async def test_one_card_per_row_with_its_risk(opened, screened):
    """Every catalog row has one card whose data-risk follows its result."""
    page, records = opened.page, screened["records"]
    cards = await page.eval_on_selector_all(
        "article.card", "els => els.map(e => [e.dataset.key, e.dataset.risk])")
    assert sorted(map(tuple, cards)) == sorted((r["key"], expected_risk(r)) for r in records)
    assert await page.locator("#summary").count() == 1
    risks = {risk for _key, risk in cards}
    assert {"invalid", "high"} <= risks
    assert risks <= {"high", "medium", "low", "none", "failed", "invalid"}
    summary = await page.inner_text("#summary")
    assert f"{len(records)} catalog rows" in summary
    assert "platform calls" in summary
    src = await page.locator('article[data-key="LOCAL-1"] .frame img').get_attribute("src")
    assert src.startswith(("data:image/webp;base64,", "data:image/jpeg;base64,"))
    assert await page.evaluate("document.characterSet") == "UTF-8"
    assert opened.problems == []


async def test_risk_filter_country_filter_and_search_hide_cards(opened, screened):
    """The risk checkboxes, the country select and the search box really hide cards."""
    page, records = opened.page, screened["records"]
    for box in await page.query_selector_all("input[name=risk]"):
        if await box.get_attribute("value") != "high":
            await box.uncheck()
    high = sorted(r["key"] for r in records if expected_risk(r) == "high")
    assert high
    assert sorted(await opened.visible()) == high
    assert await page.inner_text("#shown") == str(len(high))
    assert await page.is_hidden("#empty")

    await page.select_option("#country", "US")
    us_high = sorted(r["key"] for r in records if r["status"] == "done" and any(
        c["country"] == "US" and c["risk_level"] == "High"
        for c in r["report"]["report"]["comparisons"]))
    assert sorted(await opened.visible()) == us_high

    await page.select_option("#country", "")
    for box in await page.query_selector_all("input[name=risk]"):
        await box.check()
    await page.fill("#search", "lamp-01")
    await page.press("#search", "Enter")
    assert sorted(await opened.visible()) == ["LAMP-010", "LAMP-011", "LAMP-012"]
    await page.fill("#search", "中文")
    await page.press("#search", "Enter")
    assert await opened.visible() == ["CN-1"]
    await page.fill("#search", "no such product")
    await page.press("#search", "Enter")
    assert await opened.visible() == []
    assert await page.is_visible("#empty")
    await page.fill("#search", "")
    await page.press("#search", "Enter")
    assert len(await opened.visible()) == len(records)
    assert opened.problems == []


async def test_sort_by_key_and_by_risk(opened):
    """Sorting reorders the cards: by key (A-Z), then by risk (High first)."""
    page = opened.page
    await page.select_option("#sort", "key")
    assert await page.evaluate("""() => {
        const keys = [...document.querySelectorAll('article.card')].map(e => e.dataset.key);
        const sorted = [...keys].sort((a, b) => a.localeCompare(b, undefined, {numeric: true}));
        return JSON.stringify(keys) === JSON.stringify(sorted);
    }""")
    await page.select_option("#sort", "risk")
    order = ["high", "medium", "low", "none", "pending", "failed", "invalid"]
    risks = await page.eval_on_selector_all(
        "article.card", "els => els.map(e => e.dataset.risk)")
    ranks = [order.index(risk) for risk in risks]
    assert ranks == sorted(ranks)
    assert opened.problems == []


async def test_injected_markup_never_runs_and_nothing_else_is_fetched(opened, screened):
    """Titles and keys carrying <script> or onerror= stay text; only result images load."""
    page = opened.page
    for _ in range(12):
        await page.mouse.wheel(0, 4000)
        await page.wait_for_timeout(50)
    await page.fill("#search", "xss")
    await page.press("#search", "Enter")
    await page.wait_for_timeout(200)
    assert await page.evaluate("window.__pwned") is None
    titles = await page.eval_on_selector_all(
        "article.card .title", "els => els.map(e => e.textContent)")
    assert XSS_IMG in titles
    assert XSS_SCRIPT in titles
    assert await page.locator("article.card script").count() == 0
    assert await page.locator("article.card [onerror], article.card [onload]").count() == 0
    assert await page.evaluate(
        "k => [...document.querySelectorAll('article.card')].some(e => e.dataset.key === k)",
        XSS_KEY)
    allowed = _image_urls(screened["records"])
    assert opened.requests, "no lazy image was requested"
    assert [url for url in opened.requests if url not in allowed] == []
    assert {urlsplit(u).scheme for u in opened.requests} <= {"http", "https"}
    assert opened.problems == []


async def test_screenshot_artifact(opened):
    """A screenshot of the report is written as a test artifact (its path is printed)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "report.png"
    await opened.page.wait_for_timeout(200)
    await opened.page.screenshot(path=str(path), full_page=False)
    print(f"report screenshot: {path}")
    assert path.stat().st_size > 10_000
    assert opened.problems == []


async def test_filters_work_while_the_cards_are_still_arriving(browser, screened):
    """The page is served in two parts, the second held back: a filter chosen while the
    document is still loading hides the cards parsed so far, and once the rest arrives,
    every card (the late ones too) follows it."""
    from aiohttp import web

    html = screened["html"].read_bytes()
    cut = html.index(b"<article", html.index(b"<article") + 1)  # after the first card
    held = asyncio.Event()

    async def page_in_two_parts(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/html; charset=utf-8"})
        await response.prepare(request)
        await response.write(html[:cut])
        await held.wait()
        await response.write(html[cut:])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/report.html", page_in_two_parts)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    records = screened["records"]
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await answer_images(page, own="http://127.0.0.1")
        await page.goto(f"http://127.0.0.1:{port}/report.html", wait_until="commit")
        await page.wait_for_selector("article.card")
        await page.uncheck("input[name=risk][value=high]")
        state = await page.evaluate("""() => [document.readyState,
            [...document.querySelectorAll('article.card')].map(
                c => [c.dataset.risk, c.hidden])]""")
        assert state[0] == "loading"
        assert state[1] == [["high", True]]  # the one card parsed so far
        held.set()
        await page.wait_for_load_state("domcontentloaded")
        cards = await page.evaluate("""() => [...document.querySelectorAll(
            'article.card')].map(c => [c.dataset.risk, c.hidden])""")
        assert len(cards) == len(records)
        assert all(hidden == (risk == "high") for risk, hidden in cards)
        high = sum(expected_risk(r) == "high" for r in records)
        assert await page.inner_text("#shown") == str(len(records) - high)
    finally:
        held.set()
        await context.close()
        await runner.cleanup()
