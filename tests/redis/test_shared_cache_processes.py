"""Replicas share answers: real processes, one emulator, one redis-server; the emulator's
record of every created task is the judge."""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from fto_async import (
    ApiKey,
    FtoClient,
    ImageSearchRequest,
    PollConfig,
    RedisReportCache,
    request_fingerprint,
)
from fto_async.client import provenance
from fto_async.emulator import Emulator, EmulatorConfig
from tests._shared import unmeasured_env

pytestmark = pytest.mark.slow

HOLDER = Path(__file__).with_name("_lease_holder.py")
SCALE = 0.05  # 5 s submits take 250 ms, tasks ~1.5 s: the processes overlap


def _env(emu: Emulator) -> dict[str, str]:
    env = {k: v for k, v in unmeasured_env().items()
           if k not in ("PATSNAP_CLIENT_ID", "PATSNAP_CLIENT_SECRET", "PATSNAP_REDIS_URL")}
    env.update(PATSNAP_API_KEY="sk-demo", PATSNAP_BASE_URL=emu.base_url, PATSNAP_QPS="200",
               PYTHONPATH=str(Path(__file__).parents[2]))  # fmt: skip
    return env


def _catalogs(tmp_path: Path, processes: int, distinct: int, rows: int) -> list[Path]:
    """One catalog per process: ``rows`` rows drawn from ``distinct`` images, in its own
    order (duplicates inside a catalog too)."""
    paths = []
    for p in range(processes):
        rng = random.Random(p)
        picks = [rng.randrange(distinct) for _ in range(rows)]
        lines = "".join(f"P{p}-{i},https://img.example/{n}.png\n" for i, n in enumerate(picks))
        path = tmp_path / f"c{p}.csv"
        path.write_text("sku,image_url\n" + lines)
        paths.append(path)
    return paths


async def _screen_in_processes(emu: Emulator, redis_url: str, catalogs: list[Path],
                               tmp_path: Path, *extra: str) -> list[int]:
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fto_async.cli", "screen", str(c), "--out",
        str(tmp_path / f"out{i}.jsonl"), "--country", "US", "--no-report",
        "--time-scale", str(SCALE), "--redis-url", redis_url, *extra,
        env=_env(emu), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    ) for i, c in enumerate(catalogs)]  # fmt: skip
    codes = []
    for proc in procs:
        _out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, err.decode()
        codes.append(proc.returncode)
    return codes


async def test_three_processes_pay_once_per_distinct_question(redis_url, tmp_path):
    """Three CLI processes with --shared-cache, overlapping catalogs: one task per image."""
    async with Emulator(EmulatorConfig(time_scale=SCALE, qps=None)) as emu:
        catalogs = _catalogs(tmp_path, 3, distinct=10, rows=12)
        asked = {line.split(",")[1] for c in catalogs for line in c.read_text().split()[1:]}
        await _screen_in_processes(emu, redis_url, catalogs, tmp_path, "--shared-cache")
        per_image = Counter(record.image for record in emu.stats.submits)
        assert set(per_image) == asked
        assert set(per_image.values()) == {1}, per_image
    for i in range(3):
        assert len((tmp_path / f"out{i}.jsonl").read_text().splitlines()) == 12


@pytest.mark.parametrize("waiting", [True, False], ids=["waiter-first", "killed-at-once"])
async def test_a_killed_holder_leaves_nothing_locked(redis_url, waiting):
    """A process SIGKILLed mid-submit while holding the lease (before its first renewal, or
    later while another waits): another process takes the question over once the lease
    expires, and completes it with one task."""
    lease_ttl = 1.0
    async with Emulator(EmulatorConfig(time_scale=0.001, qps=None)) as emu:
        request = ImageSearchRequest(url="https://img.example/k.png", country=["US"], lang="en")
        platform, account = provenance(emu.base_url, ApiKey("sk-demo").account_id)
        holder = await asyncio.create_subprocess_exec(
            sys.executable, str(HOLDER), redis_url, request_fingerprint(request), platform,
            account, str(lease_ttl), stdout=asyncio.subprocess.PIPE,
            env={**unmeasured_env(), "PYTHONPATH": str(Path(__file__).parents[2])},
        )  # fmt: skip
        assert holder.stdout is not None
        assert await asyncio.wait_for(holder.stdout.readline(), 30) == b"holding\n"
        if not waiting:  # killed before it renewed the lease even once
            holder.send_signal(signal.SIGKILL)
        cache = RedisReportCache(redis_url, lease_ttl=lease_ttl)
        async with FtoClient(api_key="sk-demo", base_url=emu.base_url, qps=500, cache=cache,
                             poll=PollConfig().scaled(0.001)) as client:  # fmt: skip
            screening = asyncio.create_task(client.screen(request))
            await asyncio.sleep(0.5)
            assert not screening.done()  # it waits for the holder's task id
            assert emu.stats.submits == []
            if waiting:
                holder.send_signal(signal.SIGKILL)
            await holder.wait()
            killed = time.monotonic()
            outcome = await asyncio.wait_for(screening, 20)
            took = time.monotonic() - killed
        await cache.aclose()
        assert outcome.ok, outcome.error
        assert len(emu.stats.submits) == 1
        assert cache.led == 1
        assert took < lease_ttl + 5
