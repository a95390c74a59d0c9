"""Shared report cache benchmark: N CLI processes screening overlapping catalogs.

Run:  python benchmarks/shared_cache.py [--processes 3] [--distinct 100] [--qps 40]

Needs redis-server on PATH (started here on a free port, no persistence). Every scenario
starts a fresh in-process emulator (QPS limit ``--qps``, 5 s submits scaled to 100 ms)
and real ``fto-async screen`` processes, all on one account through the shared rate gate
(``--redis-url``), each screening every one of ``--distinct`` images in its own order:

* one process: the whole catalog once (``--no-cache``): the baseline.
* N processes, no sharing (``--no-cache``): every process pays for every image.
* N processes, ``--shared-cache``: the answers and submits are shared through Redis.

The emulator's record of created tasks gives the submits per distinct image.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import redis
from _common import table
from shared_gate import start_redis

from fto_async.emulator import Emulator, EmulatorConfig

SCALE = 0.02  # 5 s submits take 100 ms


def write_catalog(path: Path, seed: int, distinct: int) -> Path:
    """Every image once, in the order of ``seed``."""
    order = list(range(distinct))
    random.Random(seed).shuffle(order)
    path.write_text("sku,image_url\n" + "".join(
        f"P{seed}-{n},https://img.example/{n}.png\n" for n in order))
    return path


async def scenario(procs: int, distinct: int, qps: float, redis_url: str,
                   *flags: str) -> dict[str, Any]:
    with redis.Redis.from_url(redis_url) as r:
        r.flushall()
    async with Emulator(EmulatorConfig(qps=qps, time_scale=SCALE)) as emu:
        env = {**os.environ, "PATSNAP_API_KEY": "sk-demo", "PATSNAP_BASE_URL": emu.base_url}
        env.pop("PATSNAP_CLIENT_ID", None)
        with tempfile.TemporaryDirectory() as tmp:
            runs = []
            for p in range(procs):
                catalog = write_catalog(Path(tmp, f"c{p}.csv"), p, distinct)
                runs.append(["screen", str(catalog), "--out", str(Path(tmp, f"o{p}.jsonl")),
                             "--country", "US", "--no-report", "--qps", str(qps),
                             "--time-scale", str(SCALE), "--redis-url", redis_url, *flags])
            started = time.monotonic()
            workers = [await asyncio.create_subprocess_exec(
                sys.executable, "-m", "fto_async.cli", *args, env=env,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            ) for args in runs]  # fmt: skip
            codes = [await w.wait() for w in workers]
            wall = time.monotonic() - started
        per_image = Counter(record.image for record in emu.stats.submits)
    return {"codes": codes, "wall": wall, "submits": len(emu.stats.submits),
            "max_per_image": max(per_image.values()), "images": len(per_image)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--distinct", type=int, default=100)
    parser.add_argument("--qps", type=float, default=40.0)
    args = parser.parse_args()
    server, url = start_redis()
    try:
        n, d, q = args.processes, args.distinct, args.qps
        rows = []
        for name, procs, flags in [("1 process", 1, ("--no-cache",)),
                                   (f"{n} processes, no sharing", n, ("--no-cache",)),
                                   (f"{n} processes, --shared-cache", n, ("--shared-cache",))]:
            result = await scenario(procs, d, q, url, *flags)
            rows.append([name, procs * d, result["images"], result["submits"],
                         f"{result['submits'] / result['images']:.2f}",
                         result["max_per_image"], f"{result['wall']:.1f}",
                         ",".join(map(str, set(result["codes"])))])
        print(table(f"{n} processes x {d} overlapping images, qps {q:g}, emulator scale "
                    f"{SCALE}", ["scenario", "rows", "distinct", "submits", "per question",
                                 "max", "wall s", "exit"], rows))  # fmt: skip
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    asyncio.run(main())
