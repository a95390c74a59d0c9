"""Class 2, never submit a placeholder: the CLI's stand-in URL for a not-yet-uploaded
image (``PLACEHOLDER_URL``) never reaches the platform. A cache entry or a journal record
that cannot be decoded sends the local-image row down the normal path (upload, then
submit); and a request that still names a placeholder (an ``.invalid`` host) is refused by
the client before it leaves, as a last guard."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from fto_async import ImageSearchRequest, InvalidRequestError, OneVsOneRequest
from fto_async.cli._catalog import PLACEHOLDER_URL
from tests._cli import FAST, catalog, cli, records
from tests._shared import PNG
from tests.reliability._support import emulator, make_client

UPLOAD = "/ai/image-upload"


def _placeholder_tasks(emulator_) -> list[str]:
    return [s.image for s in emulator_.stats.submits if "upload.invalid" in s.image]


async def _first_run(tmp_path: Path, *extra: str) -> Path:
    (tmp_path / "a.png").write_bytes(PNG)
    path = catalog(tmp_path, ["P1,a.png,US"], header="sku,image_path,country")
    assert await cli("screen", str(path), "--out", str(tmp_path / "a.jsonl"), *extra,
                     *FAST) == 0  # fmt: skip
    return path


async def test_an_undecodable_cache_entry_is_not_answered_with_the_placeholder(
    emu, env, tmp_path
):
    """A cache entry of another shape: the row is uploaded and screened, never the stand-in."""
    cache = tmp_path / "cache.db"
    path = await _first_run(tmp_path, "--cache", str(cache))
    with sqlite3.connect(cache) as db:
        db.execute("UPDATE answers SET report = ?", ('{"written_by": "another version"}',))
    out = tmp_path / "b.jsonl"
    assert await cli("screen", str(path), "--out", str(out), "--cache", str(cache),
                     "--journal", str(tmp_path / "j2.db"), *FAST) == 0  # fmt: skip
    assert _placeholder_tasks(emu) == []
    assert [r["status"] for r in records(out)] == ["done"]


async def test_an_undecodable_journal_record_is_not_answered_with_the_placeholder(
    emu, env, tmp_path
):
    """A done journal row whose report cannot be read: uploaded and screened again."""
    path = await _first_run(tmp_path, "--no-cache")
    journal = tmp_path / "a.jsonl.journal.db"
    with sqlite3.connect(journal) as db:
        db.execute("UPDATE items SET report = ?", ('{"written_by": "another version"}',))
    out = tmp_path / "a.jsonl"
    assert await cli("screen", str(path), "--out", str(out), "--no-cache", *FAST) == 0
    assert _placeholder_tasks(emu) == []
    assert [r["status"] for r in records(out)] == ["done"]


@pytest.mark.parametrize(
    "request_",
    [
        ImageSearchRequest(url=PLACEHOLDER_URL, country=["US"], lang="en"),
        OneVsOneRequest(url="https://x.invalid/a.png", patent_number="USD900001S1"),
    ],
)
async def test_the_client_refuses_a_placeholder_with_no_call(request_):
    """submit() of a request naming an ``.invalid`` host raises, and nothing is sent."""
    async with emulator() as emu_, make_client(emu_) as client:
        submit = client.submit_1v1 if isinstance(request_, OneVsOneRequest) else client.submit
        with pytest.raises(InvalidRequestError, match="placeholder"):
            await submit(request_)
        assert emu_.stats.submits == []
        assert emu_.stats.count() == 0
