"""``fto-async doctor`` with a shared gate's Redis: ✔ when it answers PING."""

from __future__ import annotations

import pytest

from fto_async.emulator import Emulator, EmulatorConfig
from tests.reliability._cli import cli


async def test_doctor_checks_a_live_redis(redis_url: str, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """PATSNAP_REDIS_URL pointing at a running Redis: a ✔ redis line, exit 0."""
    async with Emulator(EmulatorConfig(time_scale=0.001, qps=None)) as emu:
        monkeypatch.delenv("PATSNAP_CLIENT_ID", raising=False)
        monkeypatch.setenv("PATSNAP_API_KEY", "sk-demo")
        monkeypatch.setenv("PATSNAP_BASE_URL", emu.base_url)
        monkeypatch.setenv("PATSNAP_REDIS_URL", redis_url)
        assert await cli("doctor") == 0
    assert "✔ redis:" in capsys.readouterr().out
