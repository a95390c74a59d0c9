"""The emulator's AI67 1-vs-1 endpoints: validation, gateway rules, reports, 8 h validity."""

from __future__ import annotations

import asyncio

import pytest

from fto_async.emulator import Emulator

from ._helpers import call, fast

CREATE = "/ai/infringement-detection-1v1-creation"
QUERY = "/ai/infringement-detection-1v1-query"
URL = "https://img.example/product.png"


def body(**changes: object) -> dict[str, object]:
    """A valid creation body with ``changes``."""
    return {"patent_number": "EU0065350760001S", "url": URL, "report_lang": "en", **changes}


BAD_BODIES = [
    ([1], "JSON object"),
    ({"url": URL}, "patent_number"),
    (body(patent_number=""), "patent_number"),
    (body(patent_number=12), "patent_number"),
    (body(patent_number="EU 006"), "patent_number"),
    ({"patent_number": "EU0065350760001S"}, "url"),
    (body(url="ftp://img.example/a.png"), "url"),
    (body(report_lang="fr"), "report_lang"),
]


@pytest.mark.parametrize(("payload", "field"), BAD_BODIES)
async def test_invalid_1v1_creation_is_68300004(session, emu, payload, field):
    """Each invalid creation body gets 68300004 naming the field, and creates no task."""
    status, answer = await call(session, emu, CREATE, payload)
    assert status == 200
    assert (answer["status"], answer["error_code"]) == (False, 68300004)
    assert field in answer["error_msg"]
    assert emu.stats.submits == []


async def test_1v1_report_mentions_the_patent(session, emu):
    """A finished 1-vs-1 task compares the requested patent, without img_id."""
    _, created = await call(session, emu, CREATE, body())
    task_id = created["data"]["task_id"]
    await asyncio.sleep(0.05)
    _, answer = await call(session, emu, QUERY, {"task_id": task_id})
    data = answer["data"]
    assert data["task_status"] == 2
    assert data["user_image"] == URL
    [comparison] = data["comparisons"]
    assert comparison["patent_pn"] == "EU0065350760001S"
    assert comparison["country"] == "EU"
    assert "img_id" not in comparison
    assert comparison["patent_image_url"].startswith("https://")


async def test_1v1_task_expires(session):
    """A task id older than task_validity (emulator time) is answered as unknown."""
    async with Emulator(fast(task_validity=10.0, task_duration=1.0)) as emu:
        _, created = await call(session, emu, CREATE, body())
        task_id = created["data"]["task_id"]
        await asyncio.sleep(0.02)  # 10 emulator seconds at time_scale 0.001
        _, answer = await call(session, emu, QUERY, {"task_id": task_id})
        assert answer["error_code"] == 68300004
        assert "task_id does not exist" in answer["error_msg"]


async def test_1v1_goes_through_the_gateway(session):
    """Quotas apply to the 1-vs-1 paths like every other business path."""
    async with Emulator(fast(daily_limit=1)) as emu:
        _, first = await call(session, emu, CREATE, body())
        assert first["status"] is True
        _, second = await call(session, emu, QUERY, {"task_id": first["data"]["task_id"]})
        assert second["error_code"] == 67200007
        status, _ = await call(session, emu, CREATE, body(), key="sk-wrong")
        assert status in (200, 401)
