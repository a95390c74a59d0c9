"""Generated reports: deterministic per image, and internally consistent."""

from __future__ import annotations

import base64
import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from fto_async.emulator._reports import K_VALUE, ReportInputs, build_result, risk_level
from tests._shared import REPORT, SUBMIT

from ._helpers import call, image_body, wait_done

COMPARISON_FIELDS = {
    "score",
    "title",
    "img_id",
    "status",
    "country",
    "similar",
    "confusion",
    "patent_id",
    "patent_pn",
    "risk_desc",
    "difference",
    "risk_level",
    "suggestion",
}
PATENT_FIELDS = {"score", "title", "img_id", "authority", "patent_id", "patent_pn"}
RRF_FIELDS = {"rrf_score", "rerank_rank", "rerank_score", "traditional_rank", "traditional_score"}


def _inputs(image: str, **changes) -> ReportInputs:
    values = {"image": image, "countries": ("US", "CN", "JP"), "lang": "en", **changes}
    return ReportInputs(**values)


def _without_volatile(data: dict) -> dict:
    """Drop the fields that differ between two tasks of the same image."""
    data = dict(data)
    del data["task_id"]
    data["report"] = {k: v for k, v in data["report"].items() if k != "operate_date"}
    return data


def test_risk_level_thresholds():
    """High from 0.8, Medium from 0.6, else Low."""
    assert [risk_level(s) for s in (0.99, 0.8, 0.79, 0.6, 0.59, 0.0)] == [
        "High",
        "High",
        "Medium",
        "Medium",
        "Low",
        "Low",
    ]


async def test_same_image_gets_the_same_report_and_another_image_a_different_one(session, emu):
    """Two tasks of one image share their report; a different image gets another one."""
    results = []
    for url in (
        "https://img.example/a.png",
        "https://img.example/a.png",
        "https://img.example/b.png",
    ):
        _, submitted = await call(session, emu, SUBMIT, image_body(url=url))
        results.append(await wait_done(session, emu, submitted["data"]["task_id"]))
    first, second, other = (_without_volatile(r) for r in results)
    assert first == second
    assert first != other
    assert results[0]["task_id"] != results[1]["task_id"]
    operate_date = results[0]["report"]["operate_date"]
    assert abs(operate_date - dt.datetime.now().timestamp() * 1000) < 60_000
    assert emu.stats.polls_by_task[results[0]["task_id"]] >= 1
    _, again = await call(session, emu, REPORT, {"task_id": results[0]["task_id"]})
    assert again["data"] == results[0]


def test_language_changes_the_texts():
    """lang="cn" writes the LLM fields in Chinese, lang="en" in English."""
    for image in (f"https://img.example/{i}.png" for i in range(40)):
        cn = build_result(_inputs(image, lang="cn"))["report"]["comparisons"]
        en = build_result(_inputs(image, lang="en"))["report"]["comparisons"]
        if cn and en:
            assert not cn[0]["similar"].isascii()
            assert all(c[f].isascii() for c in en for f in ("similar", "risk_desc", "suggestion"))
            return
    raise AssertionError("no image with comparisons in 40 tries")


def test_some_images_are_clean_and_some_are_risky():
    """Across many images, both clean reports and High-risk reports occur."""
    reports = [build_result(_inputs(f"img-{i}"))["report"] for i in range(60)]
    assert any(r["suspected_infringement_count"] == 0 for r in reports)
    assert any(r["high_risk_country"] for r in reports)
    assert any(r["middle_risk_country"] for r in reports)
    assert {len(r["comparisons"]) for r in reports} <= set(range(9))


def test_legal_status_filter_limits_comparison_statuses():
    """statuses restricts comparisons[].status (workflow simple_legal_status)."""
    for i in range(30):
        for comparison in build_result(_inputs(f"s-{i}", statuses=(1,)))["report"]["comparisons"]:
            assert comparison["status"] == 1


@settings(max_examples=60, deadline=None)
@given(
    image=st.text(min_size=1, max_size=40),
    countries=st.lists(
        st.sampled_from(["US", "CN", "JP", "KR", "AU", "EU", "DE"]),
        min_size=1,
        max_size=4,
        unique=True,
    ),
    lang=st.sampled_from(["cn", "en"]),
    start=st.one_of(st.none(), st.dates(dt.date(2000, 1, 1), dt.date(2035, 1, 1))),
    loc=st.lists(st.sampled_from(["14-02", "21-01", "09-01"]), max_size=2, unique=True),
)
def test_reports_are_plausible(image, countries, lang, start, loc):
    """Scores, levels, countries, dates, RRF scores and risk lists are mutually consistent."""
    start_text = start.strftime("%Y%m%d") if start else None
    inputs = ReportInputs(
        image=image,
        countries=tuple(countries),
        lang=lang,
        loc=tuple(loc),
        apply_start_time=start_text,
    )
    result = build_result(inputs)
    assert result == build_result(
        ReportInputs(
            image=image,
            countries=tuple(countries),
            lang=lang,
            loc=tuple(loc),
            apply_start_time=start_text,
        )
    )
    png = base64.b64decode(result["line_drawing_base64"].removeprefix("data:image/png;base64,"))
    assert result["line_drawing_base64"].startswith("data:image/png;base64,")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")

    traditional = result["patent_messages"]
    patents = traditional["patent_messages"]
    assert traditional["total_search_result_count"] >= len(patents) > 0
    for patent in patents:
        assert set(patent) >= PATENT_FIELDS
        assert 0 <= patent["score"] <= 1
        assert patent["risk_level"] == risk_level(patent["score"])
        assert patent["authority"] in countries
        assert patent["patent_pn"].startswith(patent["authority"])
        assert patent["pbdt"] > patent["apdt"]
        if start_text:
            assert patent["apdt"] >= int(start_text)
        assert patent["loc_match"] in (0, 1)

    fusion = result["rrffusion_response"]
    assert fusion["k_value"] == K_VALUE == 60
    assert fusion["rerank_count"] == fusion["traditional_count"] == len(patents)
    fused = fusion["patent_messages"]
    assert [i["rrf_score"] for i in fused] == sorted((i["rrf_score"] for i in fused), reverse=True)
    assert sorted(i["rerank_rank"] for i in fused) == list(range(1, len(fused) + 1))
    for item in fused:
        assert set(item) >= RRF_FIELDS | PATENT_FIELDS
        expected = 1 / (60 + item["rerank_rank"]) + 1 / (60 + item["traditional_rank"])
        assert abs(item["rrf_score"] - expected) < 1e-12
        assert 0 <= item["rerank_score"] <= 100

    report = result["report"]
    assert report["country"] == list(countries)
    if loc:
        assert report["loc"] == list(loc)
    else:
        assert len(report["loc"]) == 1
    assert report.get("apply_start_time") == start_text
    comparisons = report["comparisons"]
    assert 0 <= len(comparisons) <= 8
    for comparison in comparisons:
        assert set(comparison) == COMPARISON_FIELDS
        assert comparison["risk_level"] == risk_level(comparison["score"])
        assert comparison["country"] in countries
        assert comparison["status"] in (1, 2, 3)
    high = {c["country"] for c in comparisons if c["risk_level"] == "High"}
    middle = {c["country"] for c in comparisons if c["risk_level"] == "Medium"}
    assert set(report["high_risk_country"]) == high
    assert set(report["middle_risk_country"]) == middle
    assert set(report["suspected_infringement_country"]) == high | middle
    assert report["suspected_infringement_count"] == sum(
        c["risk_level"] != "Low" for c in comparisons
    )
