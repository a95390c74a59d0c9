"""Class 5, malformed answers are refused, cheaply: a ``NaN``/``Infinity`` in an answer
is refused at decode (``json.loads`` accepts them); a report longer than
``MAX_REPORT_LIST`` comparisons or patents is refused before it is structured, and
reports are structured off the event loop; the dedupe window of typed reports is bounded
by the bytes of their JSON, not only by their count. A refused answer leaves its row
``submitted`` for the next run (transient), and a run never crashes on one."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path

import pytest

from fto_async import ResponseDecodeError, _serde
from fto_async._envelope import decode_answer
from fto_async.batch import _sharing
from fto_async.client import MAX_REPORT_LIST
from fto_async.journal import ItemState, Journal
from tests._shared import collect
from tests.reliability._cli import FAST, cli, point_at, records, write_catalog
from tests.reliability._support import emulator, make_client, request


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused_at_decode(constant: str):
    """An answer holding NaN or Infinity is a ResponseDecodeError, never a float."""
    body = b'{"status": true, "error_code": 0, "data": {"score": %s}}' % constant.encode()
    with pytest.raises(ResponseDecodeError, match="finite"):
        decode_answer(200, body, {})


async def test_nan_scores_leave_rows_for_the_next_run(tmp_path: Path):
    """Every report holds a NaN score: no row is done, each is left submitted."""
    items = [(f"k{i}", request(i)) for i in range(3)]
    async with (
        emulator(nan_rate=1.0) as emu,
        make_client(emu) as client,
        Journal(tmp_path / "j.db") as journal,
    ):
        outcomes, raised = await collect(client.screen_many(items, journal=journal))
        assert raised is None
        assert all(isinstance(o.error, ResponseDecodeError) for o in outcomes)
        assert {journal.get(k).state for k, _ in items} == {ItemState.SUBMITTED}


async def test_the_cli_survives_a_nan_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """fto-async screen against NaN reports ends without a traceback; the rows are left
    for the next run, and the summary says why."""
    catalog = write_catalog(tmp_path / "c.csv", ["A,https://img.example/a.png,US"])
    async with emulator(nan_rate=1.0, time_scale=0.001) as emu:
        point_at(monkeypatch, emu)
        out = tmp_path / "out.jsonl"
        code = await cli("screen", str(catalog), "--out", str(out), "--journal",
                         str(tmp_path / "j.db"), *FAST)  # fmt: skip
    assert code != 0
    assert all(r.get("status") != "done" for r in records(out)) if out.exists() else True
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "1 answers were refused as malformed" in err
    assert "not a finite number" in err


async def test_an_oversized_report_is_refused_before_structuring():
    """A report with more comparisons than MAX_REPORT_LIST is refused, and the loop is not
    stalled while a large (but allowed) one is structured."""
    async with emulator(report_padding=MAX_REPORT_LIST + 5) as emu, make_client(emu) as client:
        task = await client.submit_image_search(request(1))
        with pytest.raises(ResponseDecodeError, match="comparisons holds"):
            await client.wait_image_search(task, timeout=5)


async def test_a_finished_report_is_structured_off_the_loop(monkeypatch: pytest.MonkeyPatch):
    """A finished report is structured in a worker thread, never on the event loop's."""
    threads: list[str] = []
    real = _serde.structure

    def spy(conv: object, data: object, cls: type) -> object:
        threads.append(threading.current_thread().name)
        return real(conv, data, cls)  # type: ignore[arg-type]

    monkeypatch.setattr(_serde, "structure", spy)
    async with emulator() as emu, make_client(emu) as client:
        task = await client.submit_image_search(request(1))
        report = await client.wait_image_search(task, timeout=5)
    assert report.task_id == task
    assert threads[-1] != threading.main_thread().name


class _Window(_sharing._Sharing):
    def __init__(self) -> None:
        self.dedupe = True
        self.recent = OrderedDict()
        self.reports = OrderedDict()
        self.report_sizes = {}
        self.report_bytes = 0


class _Report:
    def __init__(self, size: int) -> None:
        self.raw = {"blob": "x" * size}


class _Outcome:
    def __init__(self, key: str, size: int) -> None:
        self.key, self.task_id, self.report = key, f"t-{key}", _Report(size)
        self.submitted_at = self.cached_at = None
        self.request = request(key)


def test_the_report_window_is_bounded_by_bytes():
    """Huge reports do not fill the window up to its count: their bytes bound it."""
    window = _Window()
    big = _sharing.RECENT_REPORT_BYTES // 3
    for i in range(10):
        window._remember(f"f{i}", _Outcome(str(i), big))  # type: ignore[arg-type]
    assert window.report_bytes <= _sharing.RECENT_REPORT_BYTES
    assert len(window.reports) <= 3
    window._remember("huge", _Outcome("h", _sharing.RECENT_REPORT_BYTES + 1))  # type: ignore[arg-type]
    assert "huge" not in window.reports
    assert json.dumps(window.report_sizes)  # sizes tracked per fingerprint
