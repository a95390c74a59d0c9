"""``fto-async screen --redis-url``: the shared gate from the command line."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fto_async.cli import main
from fto_async.emulator import Emulator

from ._support import RedisServer, free_port, require_redis_server


def catalog(tmp_path: Path) -> Path:
    path = tmp_path / "c.csv"
    rows = "".join(f"S{i},https://example.com/{i}.png\n" for i in range(4))
    path.write_text("sku,image_url\n" + rows)
    return path


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, emu: Emulator) -> None:
    for name in ("PATSNAP_CLIENT_ID", "PATSNAP_CLIENT_SECRET", "PATSNAP_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATSNAP_API_KEY", "sk-demo")
    monkeypatch.setenv("PATSNAP_BASE_URL", emu.base_url)


async def test_screen_through_a_shared_gate(tmp_path, env, emu, capfd):
    server = RedisServer(require_redis_server(), password="s3cret-pw")
    server.start()
    try:
        out = tmp_path / "r.jsonl"
        code = await asyncio.to_thread(main, [
            "screen", str(catalog(tmp_path)), "--out", str(out), "--country", "US",
            "--time-scale", "0.001", "--redis-url", server.url, "--no-report",
        ])
        assert code == 0
        assert len(out.read_text().splitlines()) == 4
    finally:
        server.stop()
    assert "s3cret-pw" not in capfd.readouterr().err


async def test_an_unreachable_redis_stops_with_exit_3_and_no_password(tmp_path, env, emu, capfd):
    url = f"redis://:hunter2-pw@127.0.0.1:{free_port()}/0"
    out = tmp_path / "r.jsonl"
    code = await asyncio.to_thread(main, [
        "screen", str(catalog(tmp_path)), "--out", str(out), "--country", "US",
        "--redis-url", url, "--no-report",
    ])
    captured = capfd.readouterr()
    assert code == 3
    assert "hunter2-pw" not in captured.err + captured.out
    assert "127.0.0.1" in captured.err
    assert emu.stats.count() == 0  # no call went out uncounted
