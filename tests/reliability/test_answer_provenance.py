"""Class 1, every answer bound to its question: a report is accepted only for the task id
that was polled. A platform that answers a poll with another task's result (the
emulator's ``wrong_task_rate``, as a misbehaving gateway or caching proxy would) is
refused as malformed: the row is not journaled as done, not cached, and left
``submitted`` for the next run, which polls it again and gets the true answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from fto_async import ResponseDecodeError
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
                for _key, req in items:
                    assert await cache.get(client_fingerprint(req)) is None
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
