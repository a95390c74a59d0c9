"""The figures a run reports are honest: "calls used" counts calls that reached the platform,
attempts that never connected are counted apart, resends after a token refresh are retries,
"may have created a task" counts only truly unknown submits, and the summary says why each
row that is not done is not done."""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp import web

from fto_async import ClientConfig, FtoClient, MalformedResponseError, PollConfig, RetryConfig
from fto_async.cli._catalog import Catalog, Defaults
from fto_async.cli._display import Summary, summary_sections
from fto_async.cli._results import write_output
from fto_async.errors import may_have_created_task
from fto_async.journal import Journal
from tests._cli import cli
from tests._shared import API_KEY, SUBMIT, collect
from tests.client._support import base_url, handcrafted, image_request, make_client, running
from tests.reliability._support import request


async def test_calls_used_counts_only_answered_calls():
    """Dropped connections are attempts, not calls used; progress shows the same figure."""
    snapshots = []
    async with running("sk", emu_config={"drop_rate": 0.3, "seed": 5}) as (_emu, client):
        outcomes, _ = await collect(client.screen_many(
            [request(i) for i in range(40)], on_progress=snapshots.append,
            progress_interval=0.01, poll=PollConfig().scaled(0.001),
        ))  # fmt: skip
        stats = client.stats
        assert len(outcomes) == 40
        assert stats.unanswered > 0
        assert stats.calls == stats.answered + stats.unanswered + stats.unconnected
        assert snapshots[-1].calls == stats.answered < stats.calls


async def test_attempts_that_never_connected_are_counted_apart(refused_port):
    """A refused connection is 'unconnected', never a call used."""
    async with make_client(f"http://127.0.0.1:{refused_port}", "sk",
                           retry=RetryConfig.for_testing(3)) as client:  # fmt: skip
        outcomes, _ = await collect(client.screen_many([request(1)]))
        assert outcomes[0].error is not None
        assert (client.stats.answered, client.stats.unconnected) == (0, 3)
        assert client.stats.ambiguous_submits == 0


async def test_a_resend_after_a_token_refresh_is_a_retry():
    """67200003 then success: one retry, though the retry policy itself did not retry."""
    async with running() as (emu, client):
        await client.submit_image_search(image_request())
        emu.expire_tokens()
        await client.submit_image_search(image_request("https://img.example/2.png"))
        assert client.retries == 1


async def test_an_html_answer_to_a_submit_is_not_a_maybe_created_task():
    """A whole HTML page answering a submit is not 'may have created a task'; a drop is."""

    async def page(_request: web.Request) -> web.Response:
        return web.Response(text="<html>maintenance</html>", content_type="text/html")

    async with handcrafted({SUBMIT: page}) as server, make_client(
        base_url(server), "sk", retry=RetryConfig.for_testing(3)
    ) as client:
        outcomes, _ = await collect(client.screen_many([image_request()]))
        assert isinstance(outcomes[0].error, MalformedResponseError)
        assert not may_have_created_task(outcomes[0].error)
        assert client.stats.ambiguous_submits == 0
    async with running("sk", emu_config={"drop_rate": 1.0}) as (_emu, client):
        outcomes, _ = await collect(client.screen_many([image_request()]))
        assert may_have_created_task(outcomes[0].error)
        assert client.stats.ambiguous_submits > 0


async def test_the_summary_says_why_rows_are_not_done(tmp_path: Path):
    """Paid-and-not-polled, not-submitted-because and never-reached rows each get a reason."""
    path = tmp_path / "c.csv"
    path.write_text("sku,image_url,country\n" + "\n".join(
        f"K{i},https://example.com/{i}.png,US" for i in range(4)) + "\n", encoding="utf-8")
    async with await Journal.open(tmp_path / "j.db") as journal:
        for key in ("K0", "K1", "K2"):
            await journal.add_pending(key, 0, {"url": key}, "image_search")
        await journal.mark_submitting("K0")
        await journal.mark_submitted("K0", "task-0")
        await journal.mark_submitting("K1")
        await journal.mark_submit_failed("K1", "/ai/image-search/submit: cannot connect "
                                         "(Connection refused)", "ConnectError", True)
        tally = await write_output(Catalog(path, Defaults(country=("US",))), journal,
                                   tmp_path / "o")
    summary = Summary(tally=tally, calls=3, retries=0, ambiguous=0, resubmitted_unknown=0,
                      recovered_unknown=0, uploads=0, elapsed=1.0, out=tmp_path / "o",
                      journal=tmp_path / "j.db", unconnected=7)  # fmt: skip
    _sections, footer = summary_sections(summary)
    lines = [f"{label}: {value}" for label, value in footer]
    assert "not done: 1 rows paid and not yet polled: the next run polls them" in lines
    assert any(line.startswith("not done: 1 rows not submitted: ") and "cannot connect" in line
               for line in lines), lines  # fmt: skip
    assert "not done: 2 rows not submitted yet: the next run submits them" in lines
    assert any("7 attempts never connected" in line for line in lines)


async def test_cli_summary_counts_no_calls_used_against_a_refused_port(
    tmp_path, monkeypatch, capsys, refused_port
):
    """The CLI's "calls used" is 0 when nothing answered; the reason for pending rows shows."""
    url = f"http://127.0.0.1:{refused_port}"
    path = tmp_path / "c.csv"
    path.write_text("sku,image_url,country\nA,https://example.com/a.png,US\n", encoding="utf-8")
    monkeypatch.setenv("PATSNAP_API_KEY", API_KEY)
    original = FtoClient.from_env.__func__  # type: ignore[attr-defined]

    def from_env(cls, environ=None, **options):  # no waiting between attempts
        return original(cls, environ, config=ClientConfig(base_url=url),
                        retry=RetryConfig.for_testing(3), **options)  # fmt: skip

    monkeypatch.setattr(FtoClient, "from_env", classmethod(from_env))
    out = tmp_path / "o.jsonl"
    assert await cli("screen", str(path), "--out", str(out)) == 1
    text = capsys.readouterr().out
    assert "calls used:" in text
    line = next(x for x in text.splitlines() if x.startswith("calls used:"))
    assert line.split(":", 1)[1].split()[0] == "0", line
    assert "3 attempts never connected" in line
    assert "rows not submitted: " in text
    assert "cannot connect" in text
    assert json.loads(out.read_text())["status"] == "pending"
