"""The command line: ``python -m fto_async.emulator``."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp

from fto_async.emulator._cli import add_arguments, config_from_args, main

REPO = Path(__file__).resolve().parents[2]


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_options_build_a_config():
    """Options map onto EmulatorConfig fields; omitted ones keep the defaults."""
    config = config_from_args(
        _parse(
            "--qps",
            "none",
            "--busy-rate",
            "0.5",
            "--daily-limit",
            "100",
            "--seed",
            "3",
            "--client",
            "a:b",
            "--api-key",
            "sk-x",
            "--time-scale",
            "0.1",
        )
    )
    assert config.qps is None
    assert (config.busy_rate, config.daily_limit, config.seed, config.time_scale) == (
        0.5,
        100,
        3,
        0.1,
    )
    assert dict(config.clients) == {"a": "b"}
    assert config.api_keys == frozenset({"sk-x"})
    assert config.task_duration == 30.0
    assert config_from_args(_parse()).qps == 10.0


def test_invalid_options_exit_with_usage_error():
    """An out-of-range rate or a malformed --client is a usage error (exit 2)."""
    for argv in (["--busy-rate", "3"], ["--client", "nosecret"]):
        assert main(argv) == 2


async def test_module_serves_on_port_0_and_stops_on_sigint():
    """`python -m fto_async.emulator --port 0` prints its URL, serves, and exits 0 on SIGINT."""
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fto_async.emulator",
        "--port",
        "0",
        "--time-scale",
        "0.001",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        first = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
        base_url = first.rsplit(" ", 1)[1].strip()
        assert base_url.startswith("http://127.0.0.1:")
        assert not base_url.endswith(":0")
        banner = (await asyncio.wait_for(process.stdout.read(200), 5)).decode()
        for credential in ("demo-client", "demo-secret", "sk-demo"):
            assert credential in banner
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                base_url + "/ai/image-search/report",
                json={"task_id": "x"},
                params={"apikey": "sk-demo"},
            ) as response,
        ):
            assert (await response.json())["error_code"] == 68300004
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 10) == 0
        stderr = await process.stderr.read()
        assert b"Traceback" not in stderr
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
