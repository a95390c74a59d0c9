"""Admin routes, runtime reconfiguration and the stats snapshot."""

from __future__ import annotations

import json

import pytest

from fto_async.emulator import Emulator
from tests._shared import REPORT, SUBMIT, TOKEN

from ._helpers import call, fast, get_token, image_body, wait_done


async def _admin(session, emu, method, path, body=None):
    async with session.request(method, emu.base_url + path, json=body) as response:
        return response.status, await response.json()


async def test_config_route_changes_behaviour_at_runtime(session, emu):
    """POST /_emulator/config {"busy_rate": 1} makes the next call busy."""
    status, config = await _admin(session, emu, "POST", "/_emulator/config", {"busy_rate": 1})
    assert status == 200
    assert config["busy_rate"] == 1.0
    assert config["clients"] == {"demo-client": "***"}
    assert emu.config.busy_rate == 1.0
    _, payload = await call(session, emu, REPORT, {})
    assert payload["error_code"] == 67200100
    _, current = await _admin(session, emu, "GET", "/_emulator/config")
    assert current == config


@pytest.mark.parametrize(
    "body",
    [
        {"busy_rate": 2},
        {"nope": 1},
        {"qps": "fast"},
        [1],
        {"workflow_result_path": "/x"},
        {"api_keys": ["not-sk"]},
    ],
)
async def test_config_route_refuses_invalid_changes(session, emu, body):
    """Unknown fields, out-of-range or mistyped values and non-objects get HTTP 400."""
    status, payload = await _admin(session, emu, "POST", "/_emulator/config", body)
    assert status == 400
    assert payload["error"]
    assert emu.config == fast()


async def test_reconfigure_validates_and_reseeds(emu):
    """Emulator.reconfigure applies attrs validation and returns the new config."""
    assert emu.reconfigure(qps=3, seed=5).qps == 3.0
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        emu.reconfigure(fail_rate=-0.1)
    with pytest.raises(ValueError, match="unknown"):
        emu.reconfigure(speed=1)


async def test_expire_tokens_route(session, emu):
    """POST /_emulator/expire-tokens invalidates every token."""
    _, token = await get_token(session, emu)
    status, payload = await _admin(session, emu, "POST", "/_emulator/expire-tokens")
    assert (status, payload) == (200, {"expired": 1})
    headers = {"Authorization": f"Bearer {token['token']}"}
    _, answer = await call(session, emu, REPORT, {}, key="demo-client", headers=headers)
    assert answer["error_code"] == 67200003


async def test_admin_routes_are_not_counted_nor_rate_limited(session):
    """Admin calls pass with qps=1, and appear neither in the stats nor in the window."""
    async with Emulator(fast(qps=1)) as emu:
        for _ in range(5):
            assert (await _admin(session, emu, "GET", "/_emulator/stats"))[0] == 200
        assert emu.stats.calls == {}
        assert (await call(session, emu, REPORT, {}))[1]["error_code"] == 68300004


async def test_stats_snapshot_contents(session, emu):
    """The snapshot is JSON-safe and holds calls, tokens, submits, admissions and polls."""
    await get_token(session, emu)
    _, submitted = await call(session, emu, SUBMIT, image_body())
    task_id = submitted["data"]["task_id"]
    await wait_done(session, emu, task_id)
    await call(session, emu, SUBMIT, {"url": 1})
    _, snapshot = await _admin(session, emu, "GET", "/_emulator/stats")
    assert snapshot == json.loads(json.dumps(emu.stats.snapshot()))
    assert snapshot["token_requests"] == 1
    assert snapshot["calls"][TOKEN] == {"0": 1}
    assert snapshot["calls"][SUBMIT] == {"0": 1, "68300004": 1}
    assert snapshot["tasks_created"] == 1
    (record,) = snapshot["submits"]
    assert record["task_id"] == task_id
    assert record["account"] == "sk-demo"
    assert record["kind"] == "image-search"
    assert record["image"] == "https://img.example/product.png"
    assert record["ambiguous"] is False
    polls = snapshot["polls_by_task"][task_id]
    assert snapshot["admitted"] == {"sk-demo": 2 + polls}
    assert snapshot["max_calls_in_window"]["sk-demo"] >= 1
    emu.stats.reset()
    assert emu.stats.snapshot()["tasks_created"] == 0
    assert "submits=0" in repr(emu.stats)


def test_max_calls_in_window_uses_half_open_windows():
    """Calls exactly one second apart fall in different windows."""
    from fto_async.emulator import EmulatorStats

    stats = EmulatorStats()
    for t in (0.0, 0.5, 1.0, 1.2, 2.6):
        stats.record_admitted("a", t)
    assert stats.max_calls_in_window("a") == 3  # 0.5, 1.0, 1.2
    assert stats.max_calls_in_window("nobody") == 0
