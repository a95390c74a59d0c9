"""``task_status`` in both encodings (reference §3.2): 1/2/3 and "running"/"success"/"failed",
on every kind, in the library and the CLI; an unknown value is a typed decode error naming it,
and the row stays for the next run."""

from __future__ import annotations

from typing import Any

import pytest

from fto_async import (
    FtoClient,
    ImageSearchRequest,
    OneVsOneRequest,
    ResponseDecodeError,
    TaskStatus,
    WorkflowRequest,
)
from fto_async.journal import ItemState, Journal
from fto_async.models import TASK_KINDS
from fto_async.testing import MockResponse, MockTransport
from tests._cli import FAST, catalog, cli, good_rows, records
from tests.client._support import FAST_OPTIONS, running

ENCODINGS = [(1, "running", "RUNNING"), (2, "success", "Success"), (3, "failed", "FAILED")]


@pytest.mark.parametrize("kind", TASK_KINDS)
@pytest.mark.parametrize(("number", "word", "shouted"), ENCODINGS)
def test_every_kind_decodes_both_encodings_to_one_enum(kind, number, word, shouted):
    """1/2/3 and the words (any case) give the same TaskStatus member for every kind."""
    client = FtoClient(api_key="sk-x", base_url="http://127.0.0.1:9")
    got = {client.decode_report({"task_id": "t", "task_status": value}, kind).task_status
           for value in (number, word, shouted, float(number))}  # fmt: skip
    assert got == {TaskStatus(number)}


@pytest.mark.parametrize("kind", TASK_KINDS)
@pytest.mark.parametrize("value", ["queued", "", "succeeded", 4, True, None])
def test_an_unknown_status_is_a_decode_error_naming_it(kind, value):
    """"queued", 4, a boolean, null: a ResponseDecodeError whose message names the value."""
    client = FtoClient(api_key="sk-x", base_url="http://127.0.0.1:9")
    with pytest.raises(ResponseDecodeError, match="task_status") as info:
        client.decode_report({"task_id": "t", "task_status": value}, kind)
    if isinstance(value, str) and value:
        assert repr(value) in str(info.value)


@pytest.mark.parametrize("mode", ["none", "workflow", "all"])
async def test_every_kind_finishes_with_either_encoding_from_the_emulator(mode):
    """Against --string-status none/workflow/all, image search, workflow and 1-vs-1 tasks all
    end as succeeded reports (the emulator really sends the strings)."""
    async with running("sk", {"string_status": mode}) as (_emu, client):
        image = ImageSearchRequest(url="https://img.example/a.png", country=["US"], lang="en")
        report = await client.wait_image_search(await client.submit_image_search(image))
        assert report.succeeded
        flow = WorkflowRequest(url="https://img.example/a.png", country=["US"])
        workflow = await client.wait_workflow(await client.submit_workflow(flow))
        assert workflow.succeeded
        raw = workflow.raw["task_status"]
        assert raw == (2 if mode == "none" else "success")
        pn = report.report.comparisons[0].patent_pn if report.report else "USD1055174S1"
        one = OneVsOneRequest(url="https://img.example/a.png", patent_number=pn)
        assert (await client.wait_1v1(await client.submit_1v1(one))).succeeded


async def test_a_failed_string_status_is_a_failed_task():
    """"failed" is task_status 3: the wait raises TaskFailedError, as for the number."""
    from fto_async import TaskFailedError

    async with running("sk", {"string_status": "all", "fail_rate": 1.0}) as (_emu, client):
        image = ImageSearchRequest(url="https://img.example/a.png", country=["US"], lang="en")
        with pytest.raises(TaskFailedError):
            await client.wait_image_search(await client.submit_image_search(image))


async def test_an_unknown_status_keeps_the_row_for_the_next_run(tmp_path):
    """A poll answering "queued" fails the item with a ResponseDecodeError naming "queued";
    the journal keeps the row `submitted` with its task id, and a rerun polls it (no submit)."""
    answers: dict[str, Any] = {"status": "queued"}
    submits = 0

    def handler(request: Any) -> MockResponse:
        nonlocal submits
        if request.path.endswith("/submit"):
            submits += 1
            return MockResponse.ok({"task_id": "t-1"})
        return MockResponse.ok({"task_id": "t-1", "task_status": answers["status"],
                                "report": {"risk_level": "Low", "country": ["US"],
                                           "comparisons": []}})  # fmt: skip

    options = dict(FAST_OPTIONS)
    item = ImageSearchRequest(url="https://img.example/a.png", country=["US"], lang="en")
    path = tmp_path / "j.db"
    async with FtoClient(api_key="sk-x", transport=MockTransport(handler), **options) as client:
        async with await Journal.open(path) as journal:
            outcomes = [o async for o in client.screen_many([("k", item)], journal=journal)]
            (outcome,) = outcomes
            assert isinstance(outcome.error, ResponseDecodeError)
            assert "'queued'" in str(outcome.error)
            row = journal.get("k")
            assert row is not None
            assert (row.state, row.task_id) == (ItemState.SUBMITTED, "t-1")
        answers["status"] = "Success"
        async with await Journal.open(path) as journal:
            outcomes = [o async for o in client.screen_many([("k", item)], journal=journal)]
            assert outcomes[0].error is None
            assert journal.get("k").state is ItemState.DONE  # type: ignore[union-attr]
    assert submits == 1


@pytest.mark.parametrize("mode", ["all", "none"])
async def test_cli_screens_with_either_encoding(emu, env, tmp_path, mode):
    """`fto-async screen` (image search with 1-vs-1 follow-ups, and --workflow) ends every
    row and follow-up done whichever encoding the platform uses."""
    emu.reconfigure(string_status=mode)
    path = catalog(tmp_path, good_rows(4))
    out = tmp_path / "r.jsonl"
    assert await cli("screen", str(path), "--out", str(out), "--follow-up", "low:1",
                     *FAST) == 0  # fmt: skip
    recs = records(out)
    assert {r["status"] for r in recs} == {"done"}
    follow_ups = [fu for r in recs for fu in r["follow_ups"]]
    assert follow_ups  # 1-vs-1 tasks, read in the same encoding
    assert all(fu["error"] is None and fu["report"] for fu in follow_ups)
    wf = tmp_path / "w.jsonl"
    assert await cli("screen", str(path), "--out", str(wf), "--workflow", *FAST) == 0
    assert {r["status"] for r in records(wf)} == {"done"}
