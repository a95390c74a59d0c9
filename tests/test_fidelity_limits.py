"""The exact upload limit (reference §6: "maximum 4096KB", 4,194,304 bytes inclusive) on every
path, and the documented ``simple_legal_status`` codes (reference §9)."""

from __future__ import annotations

import pytest

from fto_async import InvalidRequestError, WorkflowRequest
from fto_async.models import SimpleLegalStatus
from tests._cli import FAST, catalog, cli, records
from tests._shared import png_of_size
from tests.client._support import running

LIMIT = 4_194_304


async def test_exactly_4096kb_is_uploaded_and_one_byte_more_costs_no_call(tmp_path):
    """upload_image (bytes and path) sends 4,194,304 bytes and the emulator accepts them;
    4,194,305 bytes are refused locally with zero calls."""
    at_limit, over = png_of_size(LIMIT), png_of_size(LIMIT + 1)
    (tmp_path / "ok.png").write_bytes(at_limit)
    (tmp_path / "big.png").write_bytes(over)
    async with running("sk") as (emu, client):
        uploaded = await client.upload_image(at_limit)
        assert uploaded.url
        assert (await client.upload_image(tmp_path / "ok.png")).url
        before = emu.stats.count()
        for image in (over, tmp_path / "big.png"):
            with pytest.raises(InvalidRequestError, match="at most 4194304 bytes"):
                await client.upload_image(image)
        assert emu.stats.count() == before
        assert client.stats.calls == 2


async def test_workflow_base64_takes_exactly_4096kb():
    """The workflow body's base64 carries 4,194,304 bytes (the emulator accepts it);
    4,194,305 are refused at construction."""
    request = WorkflowRequest.from_image_bytes(png_of_size(LIMIT), country=["US"])
    async with running("sk") as (_emu, client):
        assert await client.submit_workflow(request)
    with pytest.raises(InvalidRequestError, match="at most 4194304 bytes"):
        WorkflowRequest.from_image_bytes(png_of_size(LIMIT + 1), country=["US"])


async def test_cli_boundary_rows(emu, env, tmp_path):
    """In a catalog, a 4,194,304-byte image is screened and a 4,194,305-byte one is an
    invalid row that never reaches the platform."""
    (tmp_path / "ok.png").write_bytes(png_of_size(LIMIT))
    (tmp_path / "big.png").write_bytes(png_of_size(LIMIT + 1))
    path = catalog(tmp_path, ["A,ok.png,US", "B,big.png,US"], header="sku,image_path,country")
    out = tmp_path / "r.jsonl"
    await cli("screen", str(path), "--out", str(out), *FAST)
    by_key = {r["key"]: r for r in records(out)}
    assert by_key["A"]["status"] == "done"
    assert by_key["B"]["status"] != "done"
    assert "at most 4194304 bytes" in (by_key["B"]["error"] or "")
    assert len(emu.stats.submits) == 1


@pytest.mark.parametrize("codes", ["0,1,2", "220,221,999", [999, 1], 220, "1, 221"])
def test_documented_legal_status_codes_are_accepted(codes):
    """0, 1, 2, 220, 221 and 999 are valid filters, sorted on the wire."""
    request = WorkflowRequest(url="https://img.example/a.png", simple_legal_status=codes)
    assert request.simple_legal_status is not None
    assert set(request.simple_legal_status.split(",")) <= {"0", "1", "2", "220", "221", "999"}
    assert SimpleLegalStatus(999) is SimpleLegalStatus.UNDETERMINED


@pytest.mark.parametrize("codes", ["3", "222", [998], "1,1", "", "-1"])
def test_other_legal_status_codes_are_refused(codes):
    """Anything else is an InvalidRequestError naming the documented codes."""
    with pytest.raises(InvalidRequestError, match=r"0, 1, 2, 220, 221 or 999|distinct"):
        WorkflowRequest(url="https://img.example/a.png", simple_legal_status=codes)


async def test_extended_legal_status_codes_are_accepted_by_the_emulator():
    """The emulator takes the extended codes too (no 422)."""
    async with running("sk") as (_emu, client):
        request = WorkflowRequest(url="https://img.example/a.png",
                                  simple_legal_status="220,221,999")  # fmt: skip
        report = await client.wait_workflow(await client.submit_workflow(request))
        assert report.succeeded
