"""Class 1, every answer bound to its question. A cache entry records, and is looked up
by, the request fingerprint, the platform (base URL) and the account (client id, or a
hash of the ``sk-`` key): one cache file used against two platforms, or by two accounts,
never answers one with the other's report; entries of the old format (no platform, no
account) and entries stamped in the future are never served. A report is accepted only
for the task id that was polled. A platform that answers a poll with another task's result (the
emulator's ``wrong_task_rate``, as a misbehaving gateway or caching proxy would) is
refused as malformed: the row is not journaled as done, not cached, and left
``submitted`` for the next run, which polls it again and gets the true answer."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from fto_async import FtoClient, ResponseDecodeError
from fto_async.cache import ReportCache
from fto_async.fingerprint import request_fingerprint as client_fingerprint
from fto_async.journal import ItemState, Journal
from tests._shared import collect
from tests.reliability._support import emulator, make_client, request


async def test_an_answer_for_another_task_is_refused():
    """get_image_search_report raises ResponseDecodeError when the answer names another task."""
    async with emulator(wrong_task_rate=1.0) as emu, make_client(emu) as client:
        first = await client.submit_image_search(request(1))
        await client.submit_image_search(request(2))
        report = None
        with pytest.raises(ResponseDecodeError, match="another task"):
            report = await client.wait_image_search(first, timeout=5)
        assert report is None


async def test_a_lying_platform_never_serves_a_wrong_answer(tmp_path: Path):
    """Every poll lies: no row is done, nothing is cached, every row is left for the next
    run (deferred); the next run against an honest platform answers each row with its own
    task's report."""
    items = [(f"k{i}", request(i)) for i in range(4)]
    async with emulator(wrong_task_rate=1.0) as emu:
        async with make_client(emu) as client, Journal(tmp_path / "j.db") as journal:
            async with ReportCache(tmp_path / "c.db") as cache:
                outcomes, raised = await collect(
                    client.screen_many(items, journal=journal, cache=cache)
                )
                assert raised is None
                assert all(o.error is not None for o in outcomes)
                assert all(isinstance(o.error, ResponseDecodeError) for o in outcomes)
                platform, account = client.provenance
                for _key, req in items:
                    fingerprint = client_fingerprint(req)
                    assert await cache.get(fingerprint, platform=platform, account=account) is None
            rows = {key: journal.get(key) for key, _ in items}
            assert {row.state for row in rows.values() if row} == {ItemState.SUBMITTED}
        emu.reconfigure(wrong_task_rate=0.0)
        async with make_client(emu) as client, Journal(tmp_path / "j.db") as journal:
            outcomes, raised = await collect(client.screen_many(items, journal=journal))
            assert raised is None
            for outcome in outcomes:
                assert outcome.error is None
                row = journal.get(outcome.key)
                assert row is not None
                assert row.state is ItemState.DONE
                assert outcome.report is not None
                assert outcome.report.task_id == row.task_id


async def _screen_once(emu, tmp_path: Path, cache_path: Path, **options):
    async with make_client(emu, **options) as client, ReportCache(cache_path) as cache:
        outcomes, raised = await collect(client.screen_many([("k", request(1))], cache=cache))
    assert raised is None
    return outcomes[0]


async def test_one_cache_file_never_mixes_platforms(tmp_path: Path):
    """A report cached from platform A is not served to a run against platform B."""
    cache_path = tmp_path / "c.db"
    async with emulator() as first, emulator() as second:
        assert not (await _screen_once(first, tmp_path, cache_path)).from_cache
        assert (await _screen_once(first, tmp_path, cache_path)).from_cache
        other = await _screen_once(second, tmp_path, cache_path)
        assert not other.from_cache
        assert len(second.stats.submits) == 1


async def test_one_cache_file_never_mixes_accounts(tmp_path: Path):
    """Two accounts on one machine do not share answers; a wrong key is not "answered"."""
    cache_path = tmp_path / "c.db"
    async with emulator() as emu:
        assert not (await _screen_once(emu, tmp_path, cache_path, scheme="sk")).from_cache
        oauth = await _screen_once(emu, tmp_path, cache_path, scheme="oauth")
        assert not oauth.from_cache
        async with ReportCache(cache_path) as cache:
            client = FtoClient(api_key="sk-wrong", base_url=emu.base_url, qps=100.0)
            async with client:
                (outcome,), _raised = await collect(
                    client.screen_many([("k", request(1))], cache=cache)
                )
        assert not outcome.from_cache
        assert outcome.error is not None


async def test_old_and_future_entries_are_never_served(tmp_path: Path):
    """An entry of the first cache format, or one stamped a day ahead, is a miss."""
    cache_path = tmp_path / "c.db"
    async with emulator() as emu:
        async with make_client(emu) as client, ReportCache(cache_path) as cache:
            (done,), _ = await collect(client.screen_many([("k", request(1))], cache=cache))
            platform, account = client.provenance
        fingerprint = client_fingerprint(request(1))
        with sqlite3.connect(cache_path) as db:
            db.execute("CREATE TABLE reports (fingerprint TEXT PRIMARY KEY, kind TEXT NOT NULL,"
                       " report TEXT NOT NULL, created_at REAL NOT NULL, task_id TEXT)")
            db.execute("INSERT INTO reports SELECT fingerprint, kind, report, created_at,"
                       " task_id FROM answers")
            db.execute("UPDATE answers SET created_at = created_at + 86400")
        async with ReportCache(cache_path) as cache:
            assert await cache.get(fingerprint, platform=platform, account=account) is None
            assert await cache.get(fingerprint) is None
        assert done.report is not None


async def test_a_local_image_is_read_once_and_sent_as_hashed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The CLI hashes and uploads the same buffer: an edit of the file after it was hashed
    does not change what is uploaded (the answer is filed under the bytes it answers)."""
    from fto_async.cli import _images
    from tests._shared import PNG, png_of_size
    from tests.reliability._cli import FAST, cli, point_at, records

    image = tmp_path / "a.png"
    image.write_bytes(PNG)
    catalog = tmp_path / "c.csv"
    catalog.write_text("sku,image_path,country\nA,a.png,US\n", encoding="utf-8")
    real = _images.Images.request

    async def edit_then_request(self, row, *args):
        image.write_bytes(png_of_size(500))  # edited after its digest was taken
        return await real(self, row, *args)

    monkeypatch.setattr(_images.Images, "request", edit_then_request)
    async with emulator(time_scale=0.001) as emu:
        point_at(monkeypatch, emu)
        out = tmp_path / "out.jsonl"
        assert await cli("screen", str(catalog), "--out", str(out), "--no-cache", *FAST) == 0
        uploaded = [data for data, _mime in emu._state.images.values()]
    assert uploaded == [PNG]
    assert [r["status"] for r in records(out)] == ["done"]


async def test_the_cli_never_serves_another_tasks_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """Against a platform whose every answer is another task's, no row is done and the
    summary says why; the next run, against an honest platform, finishes every row."""
    from tests.reliability._cli import FAST, cli, point_at, records, write_catalog

    catalog = write_catalog(tmp_path / "c.csv", [f"K{i},https://img.example/{i}.png,US"
                                                 for i in range(3)])  # fmt: skip
    out = tmp_path / "out.jsonl"
    async with emulator(wrong_task_rate=1.0, time_scale=0.001) as emu:
        point_at(monkeypatch, emu)
        code = await cli("screen", str(catalog), "--out", str(out), *FAST)
        assert code != 0
        assert all(r["status"] != "done" for r in records(out))
        assert "answers were refused as malformed" in capsys.readouterr().err
        emu.reconfigure(wrong_task_rate=0.0)
        assert await cli("screen", str(catalog), "--out", str(out), *FAST) == 0
    assert [r["status"] for r in records(out)] == ["done"] * 3


async def test_a_journal_holds_one_platforms_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """A journal filled against one platform is refused against another (exit 2, no
    call): its done rows would otherwise be shown as the other platform's answers. A
    library batch raises ConfigurationError before any call."""
    from fto_async import ConfigurationError
    from tests.reliability._cli import FAST, cli, point_at, records, write_catalog

    catalog = write_catalog(tmp_path / "c.csv", ["K1,https://img.example/1.png,US"])
    out = tmp_path / "out.jsonl"
    async with emulator(time_scale=0.001) as first, emulator(time_scale=0.001) as second:
        point_at(monkeypatch, first)
        assert await cli("screen", str(catalog), "--out", str(out), *FAST) == 0
        point_at(monkeypatch, second)
        capsys.readouterr()
        assert await cli("screen", str(catalog), "--out", str(out), *FAST) == 2
        assert "holds answers from" in capsys.readouterr().err
        assert second.stats.count() == 0
        assert [r["status"] for r in records(out)] == ["done"]
        journal_path = tmp_path / "out.jsonl.journal.db"
        async with make_client(second) as client, Journal(journal_path) as journal:
            _outcomes, raised = await collect(
                client.screen_many([("K9", request(9))], journal=journal)
            )
        assert isinstance(raised, ConfigurationError)
        assert second.stats.submits == []
