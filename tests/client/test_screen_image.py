"""``FtoClient.screen_image``: a local image screened, uploaded once per content hash."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from fto_async import InvalidRequestError, ReportCache
from tests._batch import emulator, make_client
from tests._shared import JPEG, PNG, SUBMIT, UPLOAD, WORKFLOW, png_of_size


async def test_concurrent_calls_with_one_image_upload_once_and_share_one_task() -> None:
    """Ten concurrent calls, same bytes: one upload, one task, every caller answered;
    the same image with other filters reuses the upload (another question, no new URL)."""
    async with emulator() as emu, make_client(emu) as client:
        outcomes = await asyncio.gather(*(
            client.screen_image(PNG, key=i, country=["US"], lang="en") for i in range(10)
        ))  # fmt: skip
        other = await client.screen_image(PNG, country=["EU"], lang="en")
    assert all(o.ok for o in [*outcomes, other])
    assert [o.key for o in outcomes] == list(range(10))
    assert len({o.task_id for o in outcomes}) == 1
    assert emu.stats.count(UPLOAD, 0) == 1
    assert emu.stats.count(SUBMIT, 0) == 2
    sent = {rec.image for rec in emu.stats.submits}
    assert len(sent) == 1  # both tasks got the one uploaded URL
    assert not any("local.invalid" in url for url in sent)


async def test_a_path_and_its_bytes_are_one_question(tmp_path: Path) -> None:
    """A file and the same bytes share the upload and, with a cache, the answer."""
    (tmp_path / "lamp.png").write_bytes(PNG)
    async with (
        emulator() as emu,
        ReportCache(tmp_path / "c.db") as cache,
        make_client(emu, cache=cache) as client,
    ):
        first = await client.screen_image(tmp_path / "lamp.png", country=["US"], lang="en")
        again = await client.screen_image(PNG, country=["US"], lang="en")
        fresh = await client.screen_image(str(tmp_path / "lamp.png"), country=["US"],
                                          lang="cn")  # fmt: skip
    assert first.ok
    assert again.from_cache  # answered by the cache: no upload, no call
    assert fresh.ok
    assert emu.stats.count(UPLOAD, 0) == 1
    assert emu.stats.count(SUBMIT, 0) == 2


async def test_an_expiring_url_is_uploaded_again() -> None:
    """A P010 URL is reused while valid; with less than 10 minutes left it is not."""
    async with emulator() as emu, make_client(emu) as client:
        await client.screen_image(PNG, country=["US"], lang="en")
        await client.screen_image(PNG, country=["CN"], lang="en")
        assert emu.stats.count(UPLOAD, 0) == 1
        client._uploads._clock = lambda: time.monotonic() + 32_400 - 599  # 9 h later
        await client.screen_image(PNG, country=["EU"], lang="en")
    assert emu.stats.count(UPLOAD, 0) == 2
    assert emu.stats.count(SUBMIT, 0) == 3


async def test_workflow_sends_base64_and_uploads_nothing() -> None:
    """For the workflow kind the image travels as target_image_base64: no P010 URL."""
    async with emulator() as emu, make_client(emu) as client:
        outcomes = await asyncio.gather(
            client.screen_image(JPEG, kind="workflow", country=["US", "CN"]),
            client.screen_image(JPEG, kind="workflow", country=["US", "CN"]),
        )
    assert all(o.ok for o in outcomes)
    assert emu.stats.count(UPLOAD, 0) == 0
    assert emu.stats.count(WORKFLOW, 0) == 1
    (record,) = emu.stats.submits
    assert record.image.startswith("sha256:")  # the emulator saw a base64 body


@pytest.mark.parametrize(("image", "kind", "filters", "field"), [
    (b"not an image", "image_search", {"country": ["US"], "lang": "en"}, "image"),
    (png_of_size(4_194_305), "image_search", {"country": ["US"], "lang": "en"}, "image"),
    ("/no/such/file.png", "image_search", {"country": ["US"], "lang": "en"}, "image"),
    (12, "image_search", {"country": ["US"], "lang": "en"}, "image"),
    (PNG, "image_search", {"country": ["usa"], "lang": "en"}, "country"),
    (PNG, "image_search", {"country": ["US"]}, "lang"),
    (PNG, "image_search", {"country": ["US"], "lang": "en", "colour": "red"}, "colour"),
    (PNG, "image_search", {"country": ["US"], "lang": "en", "url": "https://x/y.png"}, "url"),
    (PNG, "one_vs_one", {}, "kind"),
    (b"not an image", "workflow", {"country": ["US"]}, "image"),
])  # fmt: skip
async def test_bad_input_is_a_typed_error_with_zero_calls(image, kind, filters, field) -> None:
    async with emulator() as emu, make_client(emu) as client:
        with pytest.raises(InvalidRequestError) as caught:
            await client.screen_image(image, kind=kind, **filters)
        assert client.stats.calls == 0
    assert caught.value.field == field
    assert emu.stats.count(UPLOAD, 0) == 0


async def test_an_upload_url_given_to_two_images_answers_neither_wrongly(
    tmp_path: Path,
) -> None:
    """A gateway that replays the first upload's answer gives a second image the first
    one's URL: screening it would file the first image's answer under the second's
    fingerprint. The second image is refused (typed, no submit), nothing cached for it."""
    from fto_async import FtoError

    async with (
        emulator() as emu,
        ReportCache(tmp_path / "c.db") as cache,
        make_client(emu, cache=cache) as client,
    ):
        real = client.upload_image
        first: list[object] = []

        async def replaying(image: object, **options: object) -> object:
            uploaded = await real(image, **options)  # type: ignore[arg-type]
            first.append(uploaded)
            return first[0]

        client.upload_image = replaying  # type: ignore[assignment,method-assign]
        a = await client.screen_image(PNG, country=["US"], lang="en")
        b = await client.screen_image(png_of_size(200), country=["US"], lang="en")
    assert a.ok
    assert isinstance(b.error, FtoError)
    assert emu.stats.count(SUBMIT, 0) == 1
