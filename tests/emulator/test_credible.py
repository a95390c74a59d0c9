"""A credible emulator: LOC-consistent matches, a mix of legal statuses, stable answers, and
publication rounds that add new designs for a share of the images (issue 21, item 6)."""

from __future__ import annotations

import collections
import subprocess
import sys

import pytest

from fto_async.emulator._reports import ReportInputs, build_result
from tests._shared import REPORT, SUBMIT, unmeasured_env

from ._helpers import call, image_body, wait_done

IMAGES = [f"https://img.example/p-{n}.png" for n in range(200)]
BOTTLES = {"Water bottle", "Insulated bottle", "Drinking bottle with lid"}


def _inputs(image: str, **extra: object) -> ReportInputs:
    return ReportInputs(image=image, countries=("US", "EU"), lang="en", **extra)  # type: ignore[arg-type]


def _base(title: str) -> str:
    return title.removesuffix(" with stand").removesuffix(" (set)")


@pytest.mark.parametrize("image", IMAGES[:20])
def test_a_bottle_matches_bottles(image):
    """With LOC 09-01 every matched design is a bottle of class 09-01 with loc_match 1."""
    result = build_result(_inputs(image, loc=("09-01",)))
    for item in result["patent_messages"]["patent_messages"]:
        assert item["loc"] == ["09-01"]
        assert item["loc_match"] == 1
        assert _base(item["title"]) in BOTTLES
    assert {_base(c["title"]) for c in result["report"]["comparisons"]} <= BOTTLES
    assert result["report"]["loc"] == ["09-01"]


def test_a_class_without_products_gets_neutral_titles():
    """An unknown class answers designs of that class, titled neutrally, never a lamp."""
    result = build_result(_inputs(IMAGES[0], loc=("99-99",)))
    items = result["patent_messages"]["patent_messages"]
    assert {tuple(i["loc"]) for i in items} == {("99-99",)}
    assert all(_base(i["title"]) == "Design (LOC 99-99)" for i in items)


def test_without_a_loc_most_neighbours_share_the_product_class():
    """With no LOC requested, at least 80% of the matches share the product's class."""
    for image in IMAGES[:20]:
        result = build_result(_inputs(image))
        (own,) = result["report"]["loc"]
        items = result["patent_messages"]["patent_messages"]
        same = sum(i["loc"][0][:2] == own[:2] for i in items)
        assert same >= 0.7 * len(items)


def test_legal_statuses_are_a_realistic_mix():
    """Over 200 images: mostly valid, a fair share of pending and invalid."""
    counts: collections.Counter[int] = collections.Counter()
    for image in IMAGES:
        counts.update(c["status"] for c in build_result(_inputs(image))["report"]["comparisons"])
    total = sum(counts.values())
    assert 0.45 < counts[1] / total < 0.75
    assert 0.1 < counts[2] / total < 0.3
    assert 0.1 < counts[3] / total < 0.3


def test_the_same_question_gets_the_same_answer():
    """A rebuilt report (cache cleared) is identical."""
    first = build_result(_inputs(IMAGES[3], loc=("26-05",)))
    build_result.cache_clear()
    assert build_result(_inputs(IMAGES[3], loc=("26-05",))) == first


def _pns(result: dict) -> list[str]:
    return [c["patent_pn"] for c in result["report"]["comparisons"]]


def test_a_publication_adds_new_designs_to_a_share_of_images_only():
    """Round 1 at share 0.3 hits about 30% of images; hit images keep every old comparison
    and gain 1-2 new High ones; the others are unchanged; round 2 keeps round 1's."""
    hits = 0
    for image in IMAGES:
        before = build_result(_inputs(image, loc=("09-01",)))
        after = build_result(_inputs(image, loc=("09-01",), publish_share=0.3, publish_round=1))
        again = build_result(_inputs(image, loc=("09-01",), publish_share=0.3, publish_round=2))
        old, new = _pns(before), _pns(after)
        if old == new:
            assert after == before
            continue
        hits += 1
        added = [c for c in after["report"]["comparisons"] if c["patent_pn"] not in old]
        assert 1 <= len(added) <= 2
        assert all(c["risk_level"] == "High" for c in added)
        assert all(c["status"] in (1, 3) for c in added)  # a new design is live
        assert all(_base(c["title"]) in BOTTLES for c in added)
        kept = {c["patent_pn"]: c for c in after["report"]["comparisons"] if c["patent_pn"] in old}
        assert kept == {c["patent_pn"]: c for c in before["report"]["comparisons"]}
        assert set(new) <= set(_pns(again))
    assert 40 <= hits <= 80


async def test_publish_route_makes_a_rescreen_find_new_designs(session, emu):
    """POST /_emulator/publish bumps the round; a task created afterwards sees the news."""

    async def comparisons() -> list[str]:
        _, submitted = await call(session, emu, SUBMIT, image_body(loc_items=["09-01"]))
        task_id = submitted["data"]["task_id"]
        await wait_done(session, emu, task_id)
        _, answer = await call(session, emu, REPORT, {"task_id": task_id})
        return [c["patent_pn"] for c in answer["data"]["report"]["comparisons"]]

    before = await comparisons()
    async with session.post(emu.base_url + "/_emulator/publish", json={"share": 1.0}) as resp:
        config = await resp.json()
    assert (resp.status, config["publish_round"], config["publish_share"]) == (200, 1, 1.0)
    after = await comparisons()
    assert set(before) < set(after)
    async with session.post(emu.base_url + "/_emulator/publish", json={"share": 2}) as resp:
        assert resp.status == 400
    assert emu.config.publish_round == 1


def test_publish_options_are_in_the_help():
    """``python -m fto_async.emulator --help`` documents the publication control."""
    out = subprocess.run(
        [sys.executable, "-m", "fto_async.emulator", "--help"], env=unmeasured_env(),
        capture_output=True, text=True, check=True,
    ).stdout
    assert "--publish-share" in out
    assert "--publish-round" in out
    assert "/_emulator/publish" in out
