"""Outputs never overwrite inputs: ``--out`` (and ``--journal``) naming the catalog, the
journal or an image, directly or through a symlink or a hard link, exit 2 before anything
is written; so does ``export --out`` naming the journal."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests._shared import PNG
from tests.reliability._cli import FAST, cli, point_at, records, write_catalog


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file in ``folder`` (symlinks as their target's name) and its bytes."""
    return {p.name: (os.readlink(p).encode() if p.is_symlink() else p.read_bytes())
            for p in sorted(folder.iterdir())}  # fmt: skip


def same(path: Path) -> Path:
    return path


def symlink(path: Path) -> Path:
    link = path.with_name("link-" + path.name)
    link.symlink_to(path.name)
    return link


def hard_link(path: Path) -> Path:
    link = path.with_name("hard-" + path.name)
    os.link(path, link)
    return link


WAYS = [pytest.param(same, id="same-path"), pytest.param(symlink, id="symlink"),
        pytest.param(hard_link, id="hard-link")]  # fmt: skip


@pytest.mark.parametrize("way", WAYS)
async def test_out_is_never_the_catalog(way: Callable[[Path], Path], emu, monkeypatch,
                                        tmp_path, capsys):
    """``screen cat.csv --out cat.csv`` (or a link to it) exits 2 and changes nothing."""
    point_at(monkeypatch, emu)
    path = write_catalog(tmp_path / "cat.csv", ["K1,https://example.com/a.png,US"])
    out = way(path)
    before = snapshot(tmp_path)
    assert await cli("screen", str(path), "--out", str(out), *FAST) == 2
    assert "is the catalog" in capsys.readouterr().err
    assert snapshot(tmp_path) == before  # no journal either
    assert emu.stats.count() == 0


@pytest.mark.parametrize("way", WAYS)
async def test_out_is_never_the_journal(way: Callable[[Path], Path], emu, monkeypatch,
                                        tmp_path, capsys):
    """--out naming the journal of the run (given, or a link to it) exits 2, journal intact."""
    point_at(monkeypatch, emu)
    path = write_catalog(tmp_path / "cat.csv", ["K1,https://example.com/a.png,US"])
    journal = tmp_path / "j.db"
    assert await cli("screen", str(path), "--out", str(tmp_path / "r.jsonl"),
                     "--journal", str(journal), *FAST) == 0
    out = way(journal)
    before = snapshot(tmp_path)
    assert await cli("screen", str(path), "--out", str(out), "--journal", str(journal),
                     *FAST) == 2
    assert "is the journal" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


async def test_out_is_never_the_default_journal_of_another_out(emu, monkeypatch, tmp_path,
                                                               capsys):
    """--out X with --journal X (the journal file named like an output) is refused."""
    point_at(monkeypatch, emu)
    path = write_catalog(tmp_path / "cat.csv", ["K1,https://example.com/a.png,US"])
    out = tmp_path / "r.jsonl"
    assert await cli("screen", str(path), "--out", str(out), "--journal", str(out),
                     *FAST) == 2
    assert not out.exists()
    assert "is the journal" in capsys.readouterr().err


async def test_journal_is_never_the_catalog(emu, monkeypatch, tmp_path, capsys):
    """--journal naming the catalog (through a symlink) is refused, the catalog intact."""
    point_at(monkeypatch, emu)
    path = write_catalog(tmp_path / "cat.csv", ["K1,https://example.com/a.png,US"])
    before = snapshot(tmp_path)
    link = symlink(path)
    before[link.name] = os.readlink(link).encode()
    assert await cli("screen", str(path), "--out", str(tmp_path / "r.jsonl"),
                     "--journal", str(link), *FAST) == 2
    assert "--journal" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("way", [pytest.param(same, id="same-path"),
                                 pytest.param(hard_link, id="hard-link")])
async def test_out_is_never_an_image_of_the_catalog(way: Callable[[Path], Path], emu,
                                                    monkeypatch, tmp_path, capsys):
    """--out naming a local image the catalog screens exits 2; the image keeps its bytes."""
    point_at(monkeypatch, emu)
    image = tmp_path / "lamp.png"
    image.write_bytes(PNG)
    path = write_catalog(tmp_path / "cat.csv", ["K1,lamp.png,US"],
                         header="sku,image_path,country")
    assert await cli("screen", str(path), "--out", str(way(image)), *FAST) == 2
    assert "image of the catalog" in capsys.readouterr().err
    assert image.read_bytes() == PNG


@pytest.mark.parametrize("way", WAYS)
async def test_export_out_is_never_the_journal(way: Callable[[Path], Path], emu, monkeypatch,
                                               tmp_path, capsys):
    """``export J --out J`` (or a link to J) exits 2 and the journal keeps its bytes."""
    point_at(monkeypatch, emu)
    path = write_catalog(tmp_path / "cat.csv", ["K1,https://example.com/a.png,US"])
    out = tmp_path / "r.jsonl"
    assert await cli("screen", str(path), "--out", str(out), *FAST) == 0
    journal = tmp_path / "r.jsonl.journal.db"
    target = way(journal)
    before = journal.read_bytes()
    assert await cli("export", str(journal), "--out", str(target)) == 2
    assert "is the journal" in capsys.readouterr().err
    assert journal.read_bytes() == before
    assert await cli("export", str(journal), "--out", str(tmp_path / "e.jsonl")) == 0
    assert records(tmp_path / "e.jsonl") == records(out)


async def test_out_is_never_another_runs_journal(emu, monkeypatch, tmp_path, capsys):
    """--out naming an existing journal (another run's OUT.journal.db) exits 2, unchanged."""
    point_at(monkeypatch, emu)
    path = write_catalog(tmp_path / "cat.csv", ["K1,https://example.com/a.png,US"])
    assert await cli("screen", str(path), "--out", str(tmp_path / "a.jsonl"), *FAST) == 0
    other = tmp_path / "a.jsonl.journal.db"
    before = other.read_bytes()
    assert await cli("screen", str(path), "--out", str(other),
                     "--journal", str(tmp_path / "b.db"), *FAST) == 2
    assert "is a SQLite database" in capsys.readouterr().err
    assert other.read_bytes() == before
