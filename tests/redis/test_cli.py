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


async def test_shared_cache_needs_a_redis_url(tmp_path, env, emu, capfd):
    """--shared-cache without --redis-url (or PATSNAP_REDIS_URL) is a usage error, no call."""
    code = await asyncio.to_thread(main, [
        "screen", str(catalog(tmp_path)), "--out", str(tmp_path / "r.jsonl"),
        "--country", "US", "--shared-cache", "--no-report",
    ])
    assert code == 2
    assert "--redis-url" in capfd.readouterr().err
    assert emu.stats.count() == 0


async def test_shared_cache_on_an_unreachable_redis_is_a_usage_error(tmp_path, env, emu, capfd):
    """--shared-cache on a Redis that does not answer: exit 2, the URL shown redacted, no
    traceback and no call."""
    url = f"redis://:hunter3-pw@127.0.0.1:{free_port()}/0"
    code = await asyncio.to_thread(main, [
        "screen", str(catalog(tmp_path)), "--out", str(tmp_path / "r.jsonl"),
        "--country", "US", "--shared-cache", "--redis-url", url, "--no-report",
    ])
    captured = capfd.readouterr()
    assert code == 2
    assert "hunter3-pw" not in captured.err + captured.out
    assert "Traceback" not in captured.err
    assert "127.0.0.1" in captured.err
    assert emu.stats.count() == 0


async def test_a_rerun_with_shared_cache_is_answered_by_redis(tmp_path, env, emu, redis_url):
    """A second run (another journal) with --shared-cache pays nothing: Redis answers."""
    args = ["screen", str(catalog(tmp_path)), "--country", "US", "--time-scale", "0.001",
            "--shared-cache", "--redis-url", redis_url, "--no-report"]
    assert await asyncio.to_thread(main, [*args, "--out", str(tmp_path / "a.jsonl")]) == 0
    submits = len(emu.stats.submits)
    assert await asyncio.to_thread(main, [*args, "--out", str(tmp_path / "b.jsonl")]) == 0
    assert submits == 4
    assert len(emu.stats.submits) == 4
