"""The report cache: hits within max_age, misses past it, never failures, two processes."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest

from fto_async import ReportCache
from fto_async.journal import ItemState, Journal
from tests._batch import image, running
from tests._shared import SUBMIT, collect, unmeasured_env


class Clock:
    """An injectable wall clock that tests move by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_put_get_and_max_age(tmp_path: Path) -> None:
    """A report is a hit until it is older than max_age, then a miss; prune deletes it."""
    clock = Clock()
    async with ReportCache(tmp_path / "c.db", max_age=timedelta(hours=1), clock=clock) as cache:
        assert await cache.get("v1:x") is None
        await cache.put("v1:x", "image_search", {"task_id": "t1", "a": 1}, "t1")
        clock.now += 3599
        hit = await cache.get("v1:x")
        assert hit is not None
        assert hit.report == {"task_id": "t1", "a": 1}
        assert hit.task_id == "t1"
        assert hit.created_at == 1_000_000.0
        clock.now += 2
        assert await cache.get("v1:x") is None
        assert await cache.prune() == 1
    assert (tmp_path / "c.db").stat().st_mode & 0o777 == 0o600


async def test_closed_cache_refuses(tmp_path: Path) -> None:
    """Using a closed cache raises RuntimeError; a negative max_age is refused."""
    cache = ReportCache(tmp_path / "c.db")
    cache.close()
    with pytest.raises(RuntimeError):
        await cache.get("v1:x")
    with pytest.raises(ValueError, match="max_age"):
        ReportCache(tmp_path / "c.db", max_age=-1)


async def test_second_batch_costs_no_call(tmp_path: Path) -> None:
    """A second batch over the same requests is answered by the cache: zero calls."""
    items = [(f"k{i}", image(i % 5)) for i in range(10)]
    async with running() as (emu, client):
        async with ReportCache(tmp_path / "c.db") as cache:
            first, _ = await collect(client.screen_many(items, cache=cache))
            assert cache.puts == 5
        assert emu.stats.count(SUBMIT, 0) == 5
        calls = client.stats.calls
        async with ReportCache(tmp_path / "c.db") as cache:
            second, _ = await collect(client.screen_many(items, cache=cache))
        assert client.stats.calls == calls
    assert sorted(o.key for o in first) == sorted(o.key for o in second) == sorted(
        k for k, _ in items
    )
    assert all(o.ok and o.from_cache for o in second)
    assert all(o.cached_at is not None and o.cache_age is not None for o in second)
    reports = {o.key: o.report for o in first}
    assert all(o.report == reports[o.key] for o in second)


async def test_old_entries_miss_and_are_replaced(tmp_path: Path) -> None:
    """Past max_age the request is screened again and the new report replaces the old."""
    clock = Clock()
    clock.now = time.time()
    async with running() as (emu, client):
        cache = ReportCache(tmp_path / "c.db", max_age=timedelta(days=7), clock=clock)
        await collect(client.screen_many([image(1)], cache=cache))
        clock.now += 8 * 86400
        outcomes, _ = await collect(client.screen_many([image(1)], cache=cache))
        await cache.aclose()
    assert emu.stats.count(SUBMIT, 0) == 2
    assert not outcomes[0].from_cache
    with sqlite3.connect(tmp_path / "c.db") as db:
        rows = db.execute("SELECT created_at FROM answers").fetchall()
    assert rows == [(clock.now,)]


async def test_failures_are_never_cached(tmp_path: Path) -> None:
    """Failed tasks are not stored: the next batch submits them again."""
    async with running(fail_rate=1.0) as (emu, client):
        async with ReportCache(tmp_path / "c.db") as cache:
            first, _ = await collect(client.screen_many([image(1), image(2)], cache=cache))
            assert cache.puts == 0
            assert all(o.error is not None for o in first)
            second, _ = await collect(client.screen_many([image(1), image(2)], cache=cache))
        assert not any(o.from_cache for o in second)
        assert emu.stats.count(SUBMIT, 0) == 4
    with sqlite3.connect(tmp_path / "c.db") as db:
        assert db.execute("SELECT COUNT(*) FROM answers").fetchone() == (0,)


async def test_cache_hits_are_journaled_done(tmp_path: Path) -> None:
    """A row answered by the cache is journaled done with the cached task id, no attempt."""
    async with running() as (_emu, client), ReportCache(tmp_path / "c.db") as cache:
        await collect(client.screen_many([("a", image(1))], cache=cache))
        async with await Journal.open(tmp_path / "j.db") as journal:
            outcomes, _ = await collect(
                client.screen_many([("b", image(1))], cache=cache, journal=journal)
            )
            row = journal.get("b")
    assert outcomes[0].from_cache
    assert row is not None
    assert row.state is ItemState.DONE
    assert row.attempts == 0
    assert row.task_id == outcomes[0].task_id


_WORKER = textwrap.dedent("""
    import asyncio, sys
    from fto_async import ReportCache

    async def main(path, me, n):
        async with ReportCache(path) as cache:
            for i in range(n):
                await cache.put(f"v1:{me}-{i}", "image_search", {"task_id": f"{me}-{i}"}, "t")
                other = "b" if me == "a" else "a"
                await cache.get(f"v1:{other}-{i}")
            for i in range(n):
                hit = await cache.get(f"v1:{me}-{i}")
                assert hit is not None and hit.report == {"task_id": f"{me}-{i}"}, i

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
""")


def test_two_processes_share_one_file(tmp_path: Path) -> None:
    """Two real processes writing and reading one cache at once lose nothing, fail nothing."""
    path = tmp_path / "shared.db"
    env = {**unmeasured_env(), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [
        subprocess.Popen(  # noqa: S603 - our own worker script
            [sys.executable, "-c", _WORKER, str(path), me, "300"],
            env=env, stderr=subprocess.PIPE, text=True,
        )
        for me in ("a", "b")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM answers").fetchone() == (600,)


def test_no_credentials_in_the_file(tmp_path: Path) -> None:
    """The cache file holds reports and ids only: no credential of the client."""

    async def run() -> None:
        async with running() as (_emu, client), ReportCache(tmp_path / "c.db") as cache:
            await collect(client.screen_many([image(1)], cache=cache))

    asyncio.run(run())
    data = (tmp_path / "c.db").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("c.db-*")
    )
    assert b"demo-secret" not in data
    assert b"Bearer" not in data


async def test_a_broken_cache_never_stops_a_batch(tmp_path: Path) -> None:
    """A file that is not a database: reads are misses, writes are counted as errors,
    and the batch screens every item."""
    path = tmp_path / "c.db"
    path.write_bytes(b"this is not a database" * 100)
    async with running() as (_emu, client):
        cache = ReportCache(path)
        outcomes, raised = await collect(client.screen_many([image(1), image(2)], cache=cache))
        await cache.aclose()
    assert raised is None
    assert len(outcomes) == 2
    assert all(o.ok for o in outcomes)
    assert cache.errors >= 2
    assert cache.last_error is not None
