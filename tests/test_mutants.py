"""Rules a planted bug once slipped past (issue 26): each test here fails with that bug.

One test per rule, through the public surface: the fingerprint's workflow fields, the
default cache file per platform, the journal's and the follow-ups' transition tables, a
follow-up never reset by ``add_follow_up``, platform text escaped in the HTML report, and
``--cache`` refused when it is another output by any name (a hard link included).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from fto_async import WorkflowRequest
from fto_async.cli._args import default_cache_path
from fto_async.fingerprint import request_fingerprint
from fto_async.journal import InvalidTransitionError, ItemState, Journal
from fto_async.report import write_html
from tests._cli import FAST, catalog, cli
from tests.outputs.conftest import XSS_IMG, XSS_SCRIPT

URL = "https://example.com/a.png"
S = ItemState


# -- the fingerprint: every field of a workflow is part of the question ----------------

@pytest.mark.parametrize("change", [
    {"url": "https://example.com/b.png"},
    {"country": ["US", "CN"]},
    {"loc_items": ["06-01"]},
    {"loc_items": ["09-01", "06-01"]},
    {"apply_start_time": "20200101"},
    {"apply_end_time": "20231231"},
    {"simple_legal_status": "0,1,2"},
    {"title": "another title"},
    {"user_id": "u-2"},
])
def test_every_field_of_a_workflow_changes_its_fingerprint(change):
    """A report for one date range or Locarno class never answers for another."""
    base: dict[str, Any] = {"url": URL, "country": ["US"], "loc_items": ["09-01"],
                            "apply_start_time": "20190101", "apply_end_time": "20221231",
                            "title": "cup", "user_id": "u-1"}  # fmt: skip
    assert request_fingerprint(WorkflowRequest(**base)) != request_fingerprint(
        WorkflowRequest(**{**base, **change})
    )


def test_the_v1_rule_gives_the_same_fingerprints_forever():
    """Journals and report caches written by earlier versions hold v1 fingerprints: the
    rule's text (key order, separators, non-ASCII text, the image digest) never drifts
    while the prefix stays ``v1``. Pinned values; a deliberate change bumps the prefix."""
    import base64

    from fto_async import ImageSearchRequest
    from fto_async.fingerprint import image_digest
    from tests._shared import PNG

    search = ImageSearchRequest(URL, ["US", "CN"], "en", loc_items=["06-01"],
                                main_field="lampe \u00e0 poser")  # fmt: skip
    workflow = WorkflowRequest(target_image_base64=base64.b64encode(PNG).decode(),
                               country=["US"], apply_start_time="20190101",
                               apply_end_time="20221231", title="tasse \u00e0 caf\u00e9")
    upload = ImageSearchRequest("https://cdn.example/upload/1.png", ["US"], "en")
    assert image_digest(b"abc") == (
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert request_fingerprint(search) == (
        "v1:45b37ee7f6877cd509a2ac286688b1f7dca811d1a34ecbec5d2564532b2fb94d"
    )
    assert request_fingerprint(workflow) == (
        "v1:8607b3c0ff07586c982db70b8c54667d19f92b19c5fddd009fbb008470c5a526"
    )
    assert request_fingerprint(upload, image_sha256=image_digest(b"abc")) == (
        "v1:23c929ecfac3a0617a453c173cf86efd53924148a93c4ee2b6b652b685bd4461"
    )


def test_fields_the_rule_does_not_know_yet_still_count_and_order_does_not():
    """A wire field added by the platform later is part of the question; the order of a
    body's keys is not."""
    from fto_async.fingerprint import wire_fingerprint

    body = {"url": URL, "country": ["US"], "lang": "en"}
    assert wire_fingerprint("image_search", body) != wire_fingerprint(
        "image_search", {**body, "new_field": 1}
    )
    assert wire_fingerprint("image_search", {**body, "new_field": 1}) == wire_fingerprint(
        "image_search", {"new_field": 1, **dict(reversed(body.items()))}
    )


def test_a_non_request_is_refused_naming_the_request():
    from fto_async import InvalidRequestError

    with pytest.raises(InvalidRequestError, match="cannot fingerprint a dict") as caught:
        request_fingerprint({"url": URL})
    assert caught.value.field == "request"


# -- the default cache file: one per platform, the base URL's path included -------------

def test_two_platforms_behind_one_host_get_two_cache_files():
    one = default_cache_path("https://gateway.example/patsnap")
    two = default_cache_path("https://gateway.example/staging")
    assert one != two
    assert one.parent == two.parent
    assert default_cache_path("https://gateway.example/patsnap") == one


# -- the journal's transition table, written out here on purpose --------------------------

ROW_STATES = (S.PENDING, S.SUBMITTING, S.SUBMITTED, S.UNKNOWN, S.DONE, S.FAILED)
ROW_ALLOWED = {  # op -> the states it may start from (the documented table)
    "mark_submitting": {S.PENDING},
    "mark_submitted": {S.SUBMITTING, S.UNKNOWN},
    "mark_shared": {S.PENDING},
    "mark_submit_failed": {S.PENDING, S.SUBMITTING},
    "mark_unknown": {S.SUBMITTING, S.UNKNOWN},
    "mark_done": {S.SUBMITTED, S.FAILED, S.DONE},
    "mark_failed": {S.PENDING, S.SUBMITTING, S.SUBMITTED, S.UNKNOWN, S.FAILED},
    "reset_to_pending": {S.PENDING, S.UNKNOWN, S.FAILED},
}
ROW_ARGS: dict[str, tuple[Any, ...]] = {
    "mark_submitting": (), "mark_submitted": ("t-2",), "mark_shared": ("t-3",),
    "mark_submit_failed": ("boom", "PlatformError", False), "mark_unknown": (),
    "mark_done": ({"task_status": 2},), "mark_failed": ("boom", "TaskFailedError"),
    "reset_to_pending": (),
}


async def _row_in(journal: Journal, key: str, state: ItemState) -> None:
    """Walk a new row to ``state`` by the documented path (a failed row holds a task)."""
    await journal.add_pending(key, 0, {"url": URL}, "image_search")
    if state is S.PENDING:
        return
    await journal.mark_submitting(key)
    if state is S.UNKNOWN:
        await journal.mark_unknown(key)
    elif state is not S.SUBMITTING:
        await journal.mark_submitted(key, "t-1")
        if state is S.DONE:
            await journal.mark_done(key, {"task_status": 2})
        elif state is S.FAILED:
            await journal.mark_failed(key, "timed out", "TaskTimeoutError")
    row = journal.get(key)
    assert row is not None
    assert row.state is state


@pytest.mark.parametrize("op", sorted(ROW_ALLOWED))
async def test_each_journal_mark_moves_only_from_its_documented_states(tmp_path: Path, op: str):
    """A done row is never submitted (paid) again; every mark refuses every other state."""
    async with await Journal.open(tmp_path / "j.db") as journal:
        for state in ROW_STATES:
            key = f"k-{state}"
            await _row_in(journal, key, state)
            mark = getattr(journal, op)
            if state in ROW_ALLOWED[op]:
                await mark(key, *ROW_ARGS[op])
            else:
                with pytest.raises(InvalidTransitionError, match=f"{op} needs"):
                    await mark(key, *ROW_ARGS[op])
                row = journal.get(key)
                assert row is not None
                assert row.state is state


# -- the follow-ups' transition table --------------------------------------------------------

FU_ALLOWED = {  # target state -> the states it may come from (the items' table, shared)
    S.SUBMITTING: {S.PENDING},
    S.SUBMITTED: {S.SUBMITTING, S.UNKNOWN},
    S.UNKNOWN: {S.SUBMITTING, S.UNKNOWN},
    S.PENDING: {S.PENDING, S.SUBMITTING, S.UNKNOWN, S.FAILED},
    S.DONE: {S.SUBMITTED, S.FAILED, S.DONE},
    S.FAILED: {S.PENDING, S.SUBMITTING, S.SUBMITTED, S.UNKNOWN, S.FAILED},
}
FU_ARGS: dict[ItemState, dict[str, Any]] = {
    S.SUBMITTED: {"task_id": "t-2"}, S.DONE: {"report": {"task_status": 2}},
    S.FAILED: {"error": "boom", "error_type": "TaskFailedError"},
}


async def _follow_up_in(journal: Journal, pn: str, state: ItemState) -> None:
    await journal.add_follow_up("k", pn)
    path = {
        S.PENDING: [], S.SUBMITTING: [S.SUBMITTING], S.UNKNOWN: [S.SUBMITTING, S.UNKNOWN],
        S.SUBMITTED: [S.SUBMITTING, S.SUBMITTED], S.DONE: [S.SUBMITTING, S.SUBMITTED, S.DONE],
        S.FAILED: [S.FAILED],
    }[state]
    for step in path:
        await journal.mark_follow_up("k", pn, step, **FU_ARGS.get(step, {}))
    row = journal.follow_up("k", pn)
    assert row is not None
    assert row.state is state


@pytest.mark.parametrize("target", sorted(FU_ALLOWED))
async def test_each_follow_up_state_comes_only_from_its_documented_states(
    tmp_path: Path, target: ItemState
):
    """A done follow-up is never submitted (paid) again, nor any other state skipped."""
    async with await Journal.open(tmp_path / "j.db") as journal:
        for state in ROW_STATES:
            pn = f"US{state}S"
            await _follow_up_in(journal, pn, state)
            if state in FU_ALLOWED[target]:
                await journal.mark_follow_up("k", pn, target, **FU_ARGS.get(target, {}))
            else:
                with pytest.raises(InvalidTransitionError, match="cannot become"):
                    await journal.mark_follow_up("k", pn, target, **FU_ARGS.get(target, {}))
                row = journal.follow_up("k", pn)
                assert row is not None
                assert row.state is state


async def test_adding_a_follow_up_again_never_resets_it(tmp_path: Path):
    """A paid follow-up (submitted or done) is not forgotten by a second add_follow_up,
    in this run or the next."""
    path = tmp_path / "j.db"
    async with await Journal.open(path) as journal:
        await _follow_up_in(journal, "USD1S", S.DONE)
        await _follow_up_in(journal, "USD2S", S.SUBMITTED)
        for pn in ("USD1S", "USD2S"):
            await journal.add_follow_up("k", pn)
        done, submitted = journal.follow_up("k", "USD1S"), journal.follow_up("k", "USD2S")
        assert done is not None
        assert submitted is not None
        assert (done.state, done.task_id, done.report) == (S.DONE, "t-2", {"task_status": 2})
        assert (submitted.state, submitted.task_id) == (S.SUBMITTED, "t-2")
    async with await Journal.open(path) as journal:
        await journal.add_follow_up("k", "USD1S")
        again = journal.follow_up("k", "USD1S")
        assert again is not None
        assert (again.state, again.task_id) == (S.DONE, "t-2")


# -- the HTML report: a patent number and a task id are platform text, escaped -------------

def test_patent_numbers_and_task_ids_from_the_platform_are_escaped(tmp_path: Path):
    comparison = {"score": 0.9, "title": "Design", "img_id": "img-1", "status": 1,
                  "country": "US", "similar": "alike", "confusion": "some", "patent_id": "p",
                  "patent_pn": XSS_SCRIPT, "risk_desc": "risk", "difference": "differs",
                  "risk_level": "High", "suggestion": "review"}  # fmt: skip
    pms = [{"img_id": "img-1", "patent_pn": XSS_SCRIPT, "score": 0.9,
            "url_120": "https://img.example/1_120.png", "url": "https://img.example/1.png"}]
    record = {"key": "k1", "line": 2, "task_id": XSS_IMG, "status": "done", "error": None,
              "highest_risk": None, "high_risk_countries": [], "middle_risk_countries": [],
              "report": {"task_status": 2, "patent_messages": {"patent_messages": pms,
                         "total_search_result_count": 40},
                         "report": {"country": ["US"], "comparisons": [comparison]}}}  # fmt: skip
    html = write_html([record], tmp_path / "r.html").path.read_text("utf-8")
    assert "&lt;script&gt;window.__pwned=2&lt;/script&gt;</a></strong>" in html  # the linked pn
    assert XSS_SCRIPT not in html
    assert XSS_IMG not in html
    assert "&lt;img src=x onerror=" in html


# -- --cache: never another file of the run, whatever its name -------------------------------

@pytest.mark.parametrize("link", ["hard", "symbolic"])
async def test_cache_naming_the_journal_by_a_link_is_refused(
    emu, env, tmp_path, capsys, link
):
    """A hard link (or symlink) to the journal given as --cache is the journal: refused
    before any call, the journal left as it was (no ``reports`` table written into it)."""
    path = catalog(tmp_path, ["K1,https://example.com/1.png,US"])
    out = tmp_path / "r.jsonl"
    assert await cli("screen", str(path), "--out", str(out), "--no-cache", *FAST) == 0
    journal = tmp_path / "r.jsonl.journal.db"
    before = journal.read_bytes()
    calls = emu.stats.count()
    alias = tmp_path / "alias.db"
    (os.link if link == "hard" else os.symlink)(journal, alias)
    capsys.readouterr()
    assert await cli("screen", str(path), "--out", str(out), "--cache", str(alias), *FAST) == 2
    assert "--cache:" in capsys.readouterr().err
    assert emu.stats.count() == calls
    assert journal.read_bytes() == before


# -- the error table: what error_from_code keeps, and may_have_created_task ----------------

def test_an_http_422_keeps_its_code_status_and_request_id():
    from fto_async.errors import ValidationError, error_from_code

    err = error_from_code(None, "bad body", http_status=422, request_id="req-1")
    assert isinstance(err, ValidationError)
    assert (err.code, err.http_status, err.request_id) == (None, 422, "req-1")
    err = error_from_code(12345, "bad body", http_status=422, request_id="req-2")
    assert isinstance(err, ValidationError)  # a code the table does not know
    assert (err.code, err.http_status, err.request_id) == (12345, 422, "req-2")
    assert ValidationError(None, "bad").http_status == 422  # its documented default


def test_a_whole_non_json_answer_created_no_task():
    """An HTML page came back whole: whatever answered is not the platform, no task."""
    from fto_async.errors import MalformedResponseError, may_have_created_task

    assert not may_have_created_task(MalformedResponseError("<html>", http_status=502))
