"""Privacy of local images (reference §6): one notice when the CLI makes P010 URLs public,
P010 URLs renewed before they expire on every submit path, and image URLs never logged
above DEBUG nor with their query string."""

from __future__ import annotations

import logging

from fto_async import FollowUp, ImageSearchRequest, OneVsOneRequest, WorkflowRequest
from fto_async.cli._images import UPLOAD_NOTICE
from tests._cli import FAST, catalog, cli, good_rows, records
from tests._shared import png_of_size
from tests.client._support import running

UPLOAD = "/image-search/image-upload"


async def test_the_cli_says_once_that_uploaded_images_are_public(emu, env, tmp_path, capsys):
    """Three local images screened by image search: the notice appears exactly once."""
    for i in range(3):
        (tmp_path / f"p{i}.png").write_bytes(png_of_size(300 + i))
    rows = [f"K{i},p{i}.png,US" for i in range(3)]
    path = catalog(tmp_path, rows, header="sku,image_path,country")
    out = tmp_path / "r.jsonl"
    assert await cli("screen", str(path), "--out", str(out), *FAST) == 0
    captured = capsys.readouterr()
    assert (captured.out + captured.err).count("public URL for 9 hours") == 1
    assert emu.stats.count(UPLOAD) == 3


async def test_no_notice_without_an_upload(emu, env, tmp_path, capsys):
    """Image URLs, or local images through --workflow (base64): no P010 upload, no notice."""
    out = tmp_path / "r.jsonl"
    assert await cli("screen", str(catalog(tmp_path, good_rows(2))), "--out", str(out),
                     *FAST) == 0  # fmt: skip
    (tmp_path / "p.png").write_bytes(png_of_size(300))
    local = catalog(tmp_path, ["K,p.png,US"], header="sku,image_path,country")
    assert await cli("screen", str(local), "--out", str(tmp_path / "w.jsonl"), "--workflow",
                     *FAST) == 0  # fmt: skip
    captured = capsys.readouterr()
    assert UPLOAD_NOTICE not in captured.out + captured.err
    assert emu.stats.count(UPLOAD) == 0


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_an_expiring_p010_url_is_uploaded_again_before_any_submit(tmp_path):
    """A URL this client uploaded from a file, 5 minutes from expiry, is uploaded again before
    an image-search, workflow or 1-vs-1 submit; a fresh one, or one from bytes, is not."""
    from fto_async._uploads import UploadLedger

    image = tmp_path / "p.png"
    image.write_bytes(png_of_size(400))
    clock = _Clock()
    async with running("sk") as (emu, client):
        client._uploads = UploadLedger(clock)
        url = (await client.upload_image(image)).url
        search = ImageSearchRequest(url=url, country=["US"], lang="en")
        await client.submit_image_search(search)
        assert emu.stats.count(UPLOAD) == 1  # fresh: reused
        for submit in (
            lambda u: client.submit_image_search(ImageSearchRequest(url=u, country=["US"],
                                                                    lang="en")),
            lambda u: client.submit_workflow(WorkflowRequest(url=u, country=["US"])),
            lambda u: client.submit_1v1(OneVsOneRequest(url=u, patent_number="USD1055174S1")),
        ):  # fmt: skip
            uploads = emu.stats.count(UPLOAD)
            clock.now += 32_400 - 300  # 5 minutes left of the last upload's 9 h
            assert await submit(url)
            assert emu.stats.count(UPLOAD) == uploads + 1
        raw = (await client.upload_image(png_of_size(401))).url
        clock.now += 32_400 * 2
        await client.submit_image_search(ImageSearchRequest(url=raw, country=["US"], lang="en"))
        assert emu.stats.count(UPLOAD) == 5  # bytes are not kept: nothing to upload again


async def test_image_urls_are_never_logged_above_debug_nor_with_a_query(caplog):
    """A batch with follow-ups under busy faults (retries log at INFO): no record above DEBUG
    names an image URL, and none at all carries its query string."""
    caplog.set_level(logging.DEBUG, logger="fto_async")
    urls = [f"https://img.example/p{i}.png?sig=SECRET{i}" for i in range(12)]
    async with running("sk", {"busy_rate": 0.3, "seed": 2}) as (_emu, client):
        items = [ImageSearchRequest(url=u, country=["US"], lang="en") for u in urls]
        outcomes = [o async for o in client.screen_many(items, follow_up=FollowUp(top=1))]
        assert len(outcomes) == len(urls)
        assert client.retries > 0
    for record in caplog.records:
        text = record.getMessage()
        assert "sig=SECRET" not in text, text
        if record.levelno > logging.DEBUG:
            assert "img.example" not in text, text


async def test_cli_results_keep_working_with_p010_urls(emu, env, tmp_path):
    """The renewal is invisible to the CLI: a local-image run ends done, one upload per file."""
    (tmp_path / "p.png").write_bytes(png_of_size(500))
    path = catalog(tmp_path, ["A,p.png,US", "B,p.png,US"], header="sku,image_path,country")
    out = tmp_path / "r.jsonl"
    assert await cli("screen", str(path), "--out", str(out), *FAST) == 0
    assert {r["status"] for r in records(out)} == {"done"}
    assert emu.stats.count(UPLOAD) == 1
