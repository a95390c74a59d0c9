"""Class 3, follow-ups belong to their item's screening: when an item's request changes
(a re-shot photo of the same product, whose report names the same patents: the
emulator's ``same_matches``), its follow-ups move to history with its old record and are
asked again for the new image; the old photo's 1-vs-1 comparisons never answer for it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from fto_async import FollowUp, ImageSearchRequest, RiskLevel
from fto_async.journal import ItemState, Journal
from tests._shared import collect
from tests.reliability._support import emulator, make_client

SPEC = FollowUp(min_risk=RiskLevel.LOW, top=3)


def _photo(name: str) -> ImageSearchRequest:
    return ImageSearchRequest(url=f"https://img.example/{name}.png", country=["EU"], lang="en")


async def test_a_reshot_photo_gets_its_own_follow_ups(tmp_path: Path):
    """Same key, same matches, new photo: new 1-vs-1 tasks; the old ones are in history."""
    path = tmp_path / "j.db"
    async with emulator(same_matches=True) as emu, make_client(emu) as client:
        async with Journal(path) as journal:
            (first,), _ = await collect(
                client.screen_many([("sku", _photo("old"))], journal=journal, follow_up=SPEC)
            )
        async with Journal(path) as journal:
            (second,), _ = await collect(
                client.screen_many([("sku", _photo("new"))], journal=journal, follow_up=SPEC)
            )
            rows = journal.follow_ups("sku")
    old = {fu.patent_pn: fu for fu in first.follow_ups}
    new = {fu.patent_pn: fu for fu in second.follow_ups}
    assert old
    assert set(old) == set(new)  # a re-shot photo: the same matches
    for pn, fu in new.items():
        assert not fu.resumed, pn
        assert fu.task_id != old[pn].task_id
        assert fu.report is not None
        assert fu.report.user_image == "https://img.example/new.png"
    assert {row.task_id for row in rows} == {fu.task_id for fu in new.values()}
    assert all(row.state is ItemState.DONE for row in rows)
    with sqlite3.connect(path) as db:
        retired = db.execute("SELECT patent_pn, task_id FROM follow_up_history").fetchall()
    assert dict(retired) == {pn: fu.task_id for pn, fu in old.items()}


async def test_replace_moves_follow_ups_to_history(tmp_path: Path):
    """Journal.replace takes the item's follow-ups out with its old record, in one commit."""
    path = tmp_path / "j.db"
    async with Journal(path) as journal:
        await journal.add_pending("k", 1, {"url": "a"}, "image_search", fingerprint="f1")
        await journal.add_follow_up("k", "USD1")
        await journal.mark_follow_up("k", "USD1", ItemState.SUBMITTING)
        await journal.mark_follow_up("k", "USD1", ItemState.SUBMITTED, task_id="t1")
        await journal.replace("k", 1, {"url": "b"}, "image_search", fingerprint="f2")
        assert journal.follow_up("k", "USD1") is None
        assert journal.follow_ups("k") == []
    async with Journal(path) as journal:
        assert journal.follow_ups("k") == []


def _one_vs_one_tasks(emu) -> int:
    return sum(1 for record in emu.stats.submits if record.kind == "one-vs-one")


async def test_equal_items_share_their_follow_ups_and_the_cache_answers_them(tmp_path: Path):
    """Three equal items pay one 1-vs-1 task per patent, not three; a later run with the
    cache pays none, and each item still gets (and journals) every follow-up."""
    from fto_async.cache import ReportCache

    items = [(f"sku{i}", _photo("same")) for i in range(3)]
    async with emulator() as emu, make_client(emu) as client:
        async with Journal(tmp_path / "j1.db") as journal, ReportCache(tmp_path / "c.db") as cache:
            outcomes, raised = await collect(
                client.screen_many(items, journal=journal, cache=cache, follow_up=SPEC)
            )
            assert raised is None
            picks = {fu.patent_pn for fu in outcomes[0].follow_ups}
            assert picks
            assert _one_vs_one_tasks(emu) == len(picks)
            for outcome in outcomes:
                assert {fu.patent_pn for fu in outcome.follow_ups} == picks
                assert all(fu.ok for fu in outcome.follow_ups)
                rows = journal.follow_ups(str(outcome.key))
                assert {row.state for row in rows} == {ItemState.DONE}
        async with Journal(tmp_path / "j2.db") as journal, ReportCache(tmp_path / "c.db") as cache:
            again, _ = await collect(
                client.screen_many(items, journal=journal, cache=cache, follow_up=SPEC)
            )
        assert _one_vs_one_tasks(emu) == len(picks)  # nothing paid again
        assert all(len(o.follow_ups) == len(picks) for o in again)
        assert all(fu.ok for o in again for fu in o.follow_ups)


async def test_another_report_language_asks_again(tmp_path: Path):
    """A follow-up done in English is not reused for a run that asks for Chinese: it
    moves to history and is asked again; the same language is resumed, not paid twice."""
    path = tmp_path / "j.db"
    items = [("sku", _photo("lang"))]
    english = FollowUp(min_risk=RiskLevel.LOW, top=2, report_lang="en")
    chinese = FollowUp(min_risk=RiskLevel.LOW, top=2, report_lang="cn")
    async with emulator() as emu, make_client(emu) as client:
        async with Journal(path) as journal:
            (first,), _ = await collect(client.screen_many(items, journal=journal,
                                                           follow_up=english))  # fmt: skip
        async with Journal(path) as journal:
            (same,), _ = await collect(client.screen_many(items, journal=journal,
                                                          follow_up=english))  # fmt: skip
        async with Journal(path) as journal:
            (other,), _ = await collect(client.screen_many(items, journal=journal,
                                                           follow_up=chinese))  # fmt: skip
    assert first.follow_ups
    assert all(fu.resumed for fu in same.follow_ups)
    assert not any(fu.resumed for fu in other.follow_ups)
    assert {fu.task_id for fu in other.follow_ups}.isdisjoint(
        {fu.task_id for fu in first.follow_ups}
    )
    with sqlite3.connect(path) as db:
        retired = {row[0] for row in db.execute("SELECT task_id FROM follow_up_history")}
    assert retired == {fu.task_id for fu in first.follow_ups}


async def test_the_dry_run_counts_follow_ups_of_cached_rows(tmp_path: Path, monkeypatch, capsys):
    """Rows the cache answers still get follow-ups: the dry run counts them (it said 0)."""
    from tests.reliability._cli import FAST, cli, point_at, write_catalog

    catalog = write_catalog(tmp_path / "c.csv", ["A,https://img.example/a.png,EU",
                                                 "B,https://img.example/a.png,EU"])  # fmt: skip
    cache = str(tmp_path / "cache.db")
    async with emulator(time_scale=0.001) as emu:
        point_at(monkeypatch, emu)
        assert await cli("screen", str(catalog), "--out", str(tmp_path / "a.jsonl"),
                         "--cache", cache, *FAST) == 0  # fmt: skip
        capsys.readouterr()
        assert await cli("screen", str(catalog), "--out", str(tmp_path / "b.jsonl"), "--cache",
                         cache, "--follow-up", "low:2", "--dry-run") == 0  # fmt: skip
    text = capsys.readouterr().out
    line = next(line for line in text.splitlines() if "follow-up calls" in line)
    assert "0 .. 4 " in line  # one distinct request from the cache, 2 patents x 2 calls


async def test_a_follow_up_left_mid_submit_is_announced(tmp_path: Path, capsys):
    """A follow-up a dead run left ``submitting`` shows in ``status`` and, when the next
    run resubmits it, in that run's progress (as items are)."""
    from tests.reliability._cli import cli

    path = tmp_path / "j.db"
    items = [("sku", _photo("crash"))]
    async with emulator() as emu, make_client(emu) as client:
        async with Journal(path) as journal:
            (first,), _ = await collect(client.screen_many(items, journal=journal,
                                                           follow_up=SPEC))  # fmt: skip
        assert first.follow_ups
        with sqlite3.connect(path) as db:
            db.execute("UPDATE follow_ups SET state = 'submitting', task_id = NULL,"
                       " report = NULL WHERE rowid = (SELECT MIN(rowid) FROM follow_ups)")
        capsys.readouterr()
        assert await cli("status", str(path)) == 0
        assert "1 follow-ups may hold a task" in capsys.readouterr().out
        seen = []
        async with Journal(path) as journal:
            await collect(client.screen_many(items, journal=journal, follow_up=SPEC,
                                             on_progress=seen.append))  # fmt: skip
    assert seen[-1].follow_ups_resubmitted == 1
