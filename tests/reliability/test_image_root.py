"""Local files leave the machine only from the image root: by default the catalog's folder,
widened by ``--image-root DIR``. Absolute paths, ``..``, ``~`` and symlinks that lead out
are refused per row, with a clear message and no call."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fto_async.cli._catalog import Catalog, Defaults
from tests._cli import cli
from tests._shared import API_KEY, PNG
from tests.client._support import running


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """``shop/`` holds the catalog and one image; ``secret/`` sits beside it."""
    shop, secret = tmp_path / "shop", tmp_path / "secret"
    shop.mkdir()
    secret.mkdir()
    (shop / "inside.png").write_bytes(PNG)
    (shop / "sub").mkdir()
    (shop / "sub" / "deep.png").write_bytes(PNG)
    (secret / "id_rsa.png").write_bytes(PNG)  # a valid image: only its place is wrong
    os.symlink(secret / "id_rsa.png", shop / "link.png")
    os.symlink(shop / "inside.png", shop / "sub" / "inner-link.png")
    return {"shop": shop, "secret": secret}


def _catalog(shop: Path, paths: list[str]) -> Path:
    path = shop / "c.jsonl"
    lines = [json.dumps({"sku": f"R{n}", "image_path": p, "country": "US"})
             for n, p in enumerate(paths)]  # fmt: skip
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


ESCAPES = ["../secret/id_rsa.png", "link.png", "sub/../../secret/id_rsa.png"]
INSIDE = ["inside.png", "sub/deep.png", "sub/inner-link.png", "./sub/../inside.png"]


def test_paths_leading_out_of_the_catalog_folder_are_refused(layout):
    """Absolute, ``..``, ``~`` and symlinked paths outside the catalog's folder are invalid."""
    shop, secret = layout["shop"], layout["secret"]
    paths = [*ESCAPES, str(secret / "id_rsa.png"), "~/id_rsa.png", *INSIDE]
    rows = list(Catalog(_catalog(shop, paths), Defaults()).rows())
    escaping = rows[: len(paths) - len(INSIDE)]
    for row in escaping:
        assert not row.ok, row
        assert "outside the image folder" in (row.error or ""), row.error
        assert "--image-root" in (row.error or "")
    assert all(row.ok for row in rows[len(escaping):]), rows


def test_image_root_widens_the_folder(layout):
    """``image_root`` lets images come from a wider folder, and only from there."""
    shop, secret = layout["shop"], layout["secret"]
    paths = [*ESCAPES, str(secret / "id_rsa.png"), *INSIDE]
    rows = list(Catalog(_catalog(shop, paths), Defaults(), image_root=shop.parent).rows())
    assert all(row.ok for row in rows), [row.error for row in rows]
    narrow = list(Catalog(_catalog(shop, paths), Defaults(), image_root=shop / "sub").rows())
    # only sub/deep.png is inside sub/ (sub/inner-link.png leads back out to inside.png)
    assert [row.ok for row in narrow] == [False] * (len(paths) - 3) + [True, False, False]


async def test_cli_uploads_nothing_from_outside_the_root(layout, monkeypatch):
    """``fto-async screen`` refuses escaping rows with no call; ``--image-root`` allows them."""
    shop = layout["shop"]
    path = _catalog(shop, ["../secret/id_rsa.png", "link.png"])
    monkeypatch.setenv("PATSNAP_API_KEY", API_KEY)
    async with running() as (emu, _client):
        monkeypatch.setenv("PATSNAP_BASE_URL", emu.base_url)
        out = shop / "o.jsonl"
        code = await cli("screen", str(path), "--out", str(out), "--time-scale", "0.001")
        assert code == 1
        assert emu.stats.count() == 0
        recs = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["status"] for r in recs] == ["invalid", "invalid"]
        assert all("outside the image folder" in r["error"] for r in recs)
        code = await cli("screen", str(path), "--out", str(out), "--time-scale", "0.001",
                         "--image-root", str(shop.parent))  # fmt: skip
        assert code == 0
        # link.png is a symlink to ../secret/id_rsa.png: one file, uploaded once per run
        # and its two rows share one task (never paying twice).
        assert emu.stats.count("/image-search/image-upload") == 1
        recs = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["status"] for r in recs] == ["done", "done"]


async def test_cli_refuses_a_missing_image_root(layout, capsys):
    """``--image-root`` naming no folder is a usage error (exit 2)."""
    path = _catalog(layout["shop"], ["inside.png"])
    code = await cli("screen", str(path), "--out", str(layout["shop"] / "o.jsonl"),
                     "--image-root", str(layout["shop"] / "nope"))  # fmt: skip
    assert code == 2
    assert "--image-root: " in (err := capsys.readouterr().err)
    assert "is not a folder" in err
