"""The Emulator lifecycle, create_app with TestServer, the config and the public surface."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

import fto_async.emulator as emulator_package
from fto_async.emulator import Emulator, EmulatorConfig, create_app
from tests._shared import REPORT

from ._helpers import fast


def test_public_names_are_exported_and_sorted():
    """__all__ is sorted and lists every public name of the package."""
    public = {name for name in dir(emulator_package) if not name.startswith("_")}
    assert emulator_package.__all__ == sorted(emulator_package.__all__)
    assert public == set(emulator_package.__all__)
    assert Emulator.__module__ == "fto_async.emulator"


def test_config_defaults():
    """The documented defaults hold."""
    config = EmulatorConfig()
    assert dict(config.clients) == {"demo-client": "demo-secret"}
    assert config.api_keys == frozenset({"sk-demo"})
    assert (config.token_ttl, config.qps, config.time_scale) == (1799.0, 10.0, 1.0)
    assert (config.daily_limit, config.total_limit, config.balance) == (None, None, None)
    assert (config.submit_latency, config.poll_latency, config.upload_latency) == (5.0, 0.3, 0.5)
    assert (config.task_duration, config.task_duration_sigma) == (30.0, 0.0)
    assert (config.hang_seconds, config.seed) == (30.0, 0)
    assert config.workflow_result_path == "/api/mcp/workflow-result"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"busy_rate": 1.5}, "busy_rate"),
        ({"qps": 0}, "qps"),
        ({"time_scale": -1}, "time_scale"),
        ({"clients": {"sk-x": "y"}}, "client_id"),
        ({"api_keys": {"plain"}}, "sk-"),
        ({"workflow_result_path": "no-slash"}, "workflow_result_path"),
    ],
)
def test_config_rejects_invalid_values(changes, message):
    """Out-of-range rates, non-positive qps and malformed credentials raise ValueError."""
    with pytest.raises(ValueError, match=message):
        EmulatorConfig(**changes)


def test_config_repr_hides_secrets():
    """The repr shows client ids but neither secrets nor keys."""
    text = repr(EmulatorConfig())
    assert "demo-client" in text
    assert "demo-secret" not in text
    assert "sk-demo" not in text


async def test_emulator_lifecycle():
    """base_url needs a started emulator; it binds a real port and cannot start twice."""
    emu = Emulator(fast())
    with pytest.raises(RuntimeError):
        _ = emu.base_url
    async with emu:
        assert emu.base_url == f"http://127.0.0.1:{emu.port}"
        assert emu.port > 0
        assert "127.0.0.1" in repr(emu)
        with pytest.raises(RuntimeError):
            await emu.start()
    await emu.close()
    assert "closed" in repr(emu)
    with pytest.raises(RuntimeError):
        await emu.start()


async def test_create_app_runs_under_test_server():
    """create_app works with aiohttp's TestServer."""
    async with (
        TestServer(create_app(fast())) as server,
        aiohttp.ClientSession() as session,
        session.post(server.make_url(REPORT), json={}, params={"apikey": "sk-demo"}) as response,
    ):
        assert (await response.json())["error_code"] == 68300004
