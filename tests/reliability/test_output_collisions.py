"""Outputs never overwrite inputs, for every output (issue 19, item 7).

``screen``'s ``--journal``, ``--cache``, ``OUT.html`` and ``OUT.thumbs.db``, and
``report --out``, never name each other, the catalog, the results, an image or a SQLite
file: the same rule (``cli/_paths.py``: the same inode, then the resolved path) refuses
each, with exit 2 and nothing written. ``--dry-run`` refuses what the run would.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from fto_async.cli import main
from fto_async.journal import Journal
from tests.outputs.conftest import product_png

from ._cli import point_at, write_catalog


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture
def catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    point_at(monkeypatch, "http://127.0.0.1:9")
    (tmp_path / "a.png").write_bytes(product_png((60, 40)))
    return write_catalog(tmp_path / "c.csv", ["A,,US,a.png", "B,https://img.example/b.png,US,"],
                         header="sku,image_url,country,image_path")  # fmt: skip


def _journal(path: Path) -> Path:
    async def make() -> None:
        async with await Journal.open(path) as journal:
            await journal.add_pending("A", 2, {"url": "https://img.example/a.png"},
                                      "image_search")  # fmt: skip

    asyncio.run(make())
    return path


@pytest.mark.parametrize("option", ["--journal", "--cache"])
@pytest.mark.parametrize("target", ["out.jsonl.html", "out.jsonl.thumbs.db"])
def test_screen_journal_or_cache_never_names_a_report_file(
    tmp_path: Path, catalog: Path, capsys: pytest.CaptureFixture[str], option: str,
    target: str,
) -> None:
    """``--journal OUT.html`` (or the thumbnail cache, or ``--cache`` as either): exit 2."""
    code, text = _run(capsys, "screen", str(catalog), "--out", str(tmp_path / "out.jsonl"),
                      option, str(tmp_path / target), "--dry-run")  # fmt: skip
    assert code == 2, text
    assert "HTML report" in text or "thumbnail cache" in text
    assert not (tmp_path / target).exists()


def test_screen_report_never_overwrites_a_sqlite_file(
    tmp_path: Path, catalog: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An existing ``OUT.html`` that is a SQLite file (another run's journal) is refused."""
    other = _journal(tmp_path / "out.jsonl.html")
    before = other.read_bytes()
    code, text = _run(capsys, "screen", str(catalog), "--out", str(tmp_path / "out.jsonl"),
                      "--no-cache", "--dry-run")  # fmt: skip
    assert code == 2, text
    assert "SQLite" in text
    assert other.read_bytes() == before


def test_screen_report_never_names_the_catalog(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A catalog named ``OUT.html`` (or a hard link of it) is refused for ``--out OUT``."""
    point_at(monkeypatch, "http://127.0.0.1:9")
    catalog = write_catalog(tmp_path / "c.csv", ["A,https://img.example/a.png,US"])
    os.link(catalog, tmp_path / "out.jsonl.html")
    code, text = _run(capsys, "screen", str(catalog), "--out", str(tmp_path / "out.jsonl"),
                      "--no-cache", "--dry-run")  # fmt: skip
    assert code == 2, text
    assert "the catalog" in text


@pytest.mark.parametrize("victim", ["journal", "wal", "results", "catalog", "catalog-link",
                                    "image", "thumbs", "other-sqlite"])
def test_report_out_never_names_an_input(
    tmp_path: Path, catalog: Path, capsys: pytest.CaptureFixture[str], victim: str
) -> None:
    """``report --out`` may not be the journal (or its -wal), the results beside it, the
    catalog (also through a hard link), a catalog image, the thumbnails or a SQLite file."""
    journal = _journal(tmp_path / "out.jsonl.journal.db")
    results = tmp_path / "out.jsonl"
    results.write_text(json.dumps({"key": "A", "status": "pending"}) + "\n", "utf-8")
    thumbs = tmp_path / "out.jsonl.thumbs.db"
    thumbs.write_bytes(b"")
    targets = {
        "journal": journal, "wal": tmp_path / "out.jsonl.journal.db-wal", "results": results,
        "catalog": catalog, "catalog-link": tmp_path / "link.html", "image": tmp_path / "a.png",
        "thumbs": thumbs, "other-sqlite": _journal(tmp_path / "old.db"),
    }  # fmt: skip
    if victim == "catalog-link":
        os.link(catalog, targets[victim])
    target = targets[victim]
    before = target.read_bytes() if target.exists() else None
    code, text = _run(capsys, "report", str(journal), "--out", str(target),
                      "--catalog", str(catalog))  # fmt: skip
    assert code == 2, text
    assert "never overwrites" in text or "SQLite" in text
    assert (target.read_bytes() if target.exists() else None) == before


def test_report_of_results_never_overwrites_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``report results.jsonl --out`` a hard link of the results is refused."""
    results = tmp_path / "r.jsonl"
    results.write_text(json.dumps({"key": "A", "status": "pending"}) + "\n", "utf-8")
    os.link(results, tmp_path / "r.html")
    code, text = _run(capsys, "report", str(results), "--out", str(tmp_path / "r.html"))
    assert code == 2, text
    assert results.read_text("utf-8").startswith("{")


def test_report_out_elsewhere_is_written(
    tmp_path: Path, catalog: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same report to a file of its own is written (the rule refuses only clashes)."""
    journal = _journal(tmp_path / "out.jsonl.journal.db")
    code, text = _run(capsys, "report", str(journal), "--out", str(tmp_path / "r.html"),
                      "--catalog", str(catalog))  # fmt: skip
    assert code == 0, text
    assert (tmp_path / "r.html").read_text("utf-8").startswith("<!DOCTYPE html>")
