"""Real processes on one account, one emulator, one Redis.

Two judges. The emulator's record of every attempt counts the calls (each one reached the
platform through the gate, none twice). The rate is judged on the grants: each worker
prints the time the gate granted each call, taken on Redis's clock (``Permit.sent_at``),
and no 1-s window of all the processes' grants may hold more than the account's QPS.
Arrival times at the emulator are not a fair judge of the rate on a loaded 2-core machine:
a process or the emulator's loop held off the CPU for 100 ms delivers or stamps several
calls at once, so correctly spaced grants arrive bunched (67200002 answers in parallel
runs beside a busy loop). The emulator therefore runs without a QPS limit here, except
where the test is about its 67200002 answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis

from fto_async import ApiKey
from fto_async.emulator import Emulator, EmulatorConfig
from tests._shared import unmeasured_env

from ._support import RedisServer, worker_command

pytestmark = pytest.mark.slow

KEY = "sk-demo"
SCALE = 0.002  # 5 s submits take 10 ms
#: The clients pace at 0.9 Q, not the default 0.96 Q: at the default the proof leaves
#: 1.35 calls (35 ms at Q=40, 29 ms at Q=20) for the jitter between a grant in Redis and
#: the emulator's clock, and several processes on a loaded 2-core machine exceed that now
#: and then (load 8: one 67200002 in 50 calls). 0.9 leaves about 100 ms; the bound is the
#: same proof. benchmarks/shared_gate.py measures the default.
HEADROOM = 0.9
STATE_KEY = f"fto:{{{ApiKey(KEY).account_id}}}:gate"


@asynccontextmanager
async def emulator(**changes: Any) -> AsyncIterator[Emulator]:
    config = {"time_scale": SCALE, "qps": 40, "api_keys": {KEY, "sk-other"}, **changes}
    async with Emulator(EmulatorConfig(**config)) as emu:
        yield emu


class Worker:
    """One client process (tests/redis/_worker.py) and the JSON it prints."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.ready = asyncio.Event()  # imported, waiting for the go
        self.started = asyncio.Event()
        self.result: dict[str, Any] | None = None
        self.grants: list[float] = []  # the gate's grant times (Redis's clock)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            event = json.loads(line)
            if event["event"] == "ready":
                self.ready.set()
            elif event["event"] == "started":
                self.started.set()
            elif event["event"] == "grant":
                self.grants.append(event["at"])
            else:
                self.result = event

    async def kill(self) -> None:
        """Stop the process if it still runs, and reap it and its pipes."""
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        if self.proc.stdin is not None:
            self.proc.stdin.close()

    async def wait(self, timeout: float = 40) -> dict[str, Any]:
        await asyncio.wait_for(self.proc.wait(), timeout)
        await self._reader
        assert self.result is not None, f"worker exited {self.proc.returncode}"
        return self.result


async def spawn(n: int, base_url: str, redis_url: str | None, *, qps: float, calls: int,
                api_key: str = KEY, start: bool = True, **extra: object) -> list[Worker]:
    """Start ``n`` worker processes; they begin together once all have imported (an
    event, not a fixed delay: an import takes 0.5 s on a quiet machine, 5 s on a busy one).
    With ``start=False`` they wait for :func:`go`. They are not measured by coverage: they
    run the client through the shared gate, whose every line the in-process gate tests
    (test_gate.py) reach, and measuring them cost about 4 s of CPU (20.4 s against 16.6 s
    for this module)."""
    args = ["--base-url", base_url, "--redis-url", redis_url or "none", "--qps", str(qps),
            "--calls", str(calls), "--api-key", api_key, "--wait-go",
            "--headroom", str(HEADROOM)]
    for name, value in extra.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    workers = []
    for i in range(n):
        proc = await asyncio.create_subprocess_exec(
            *worker_command(*args, "--name", f"{api_key}-{i}"),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env=unmeasured_env(),
        )
        workers.append(Worker(proc))
    if start:
        await go(workers)
    return workers


async def go(workers: list[Worker]) -> None:
    """Wait until every worker is ready, then let them all start; if one fails to start,
    kill them all (no process or pipe is left behind)."""
    try:
        await _go(workers)
    except BaseException:
        for w in workers:
            await w.kill()
        raise


async def _go(workers: list[Worker]) -> None:
    async def ready(w: Worker) -> None:
        signals = [asyncio.ensure_future(w.ready.wait()), asyncio.ensure_future(w.proc.wait())]
        await asyncio.wait(signals, return_when=asyncio.FIRST_COMPLETED)
        for f in signals:
            f.cancel()
        assert w.ready.is_set(), f"worker exited {w.proc.returncode} before it was ready"

    await asyncio.wait_for(asyncio.gather(*(ready(w) for w in workers)), 120)
    for w in workers:
        assert w.proc.stdin is not None
        w.proc.stdin.write(b"go\n")
        await w.proc.stdin.drain()
        w.proc.stdin.close()


def grants(workers: list[Worker]) -> list[float]:
    """Every grant of ``workers``, in Redis's clock."""
    return sorted(t for w in workers for t in w.grants)


def span_rate(times: list[float]) -> float:
    return (len(times) - 1) / (max(times) - min(times))


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """The most attempts in any ``window`` seconds."""
    times = sorted(times)
    best = start = 0
    for end, t in enumerate(times):
        while times[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


# Throughput is judged against a baseline measured in the same test on the same machine
# (a lone process, or the run before an event), never against an absolute floor: under
# load (parallel workers, a busy loop) every rate drops, and only a ratio still says
# whether sharing the gate cost anything.


async def test_processes_share_the_qps_budget(redis_url: str) -> None:
    """Three processes at qps=40 each, one account: no 1-s window holds more than 40 of
    their grants, every call reached the platform once, and together they run about as
    fast as one process alone does on this machine right now (the baseline, measured
    first)."""
    async with emulator(qps=None) as emu:
        [alone] = await spawn(1, emu.base_url, redis_url, qps=40, calls=60)
        await alone.wait()
        baseline = span_rate(alone.grants)
        emu.stats.reset()
        with redis.Redis.from_url(redis_url) as r:
            r.flushall()
        workers = await spawn(3, emu.base_url, redis_url, qps=40, calls=60)
        results = [await w.wait() for w in workers]
        stats = emu.stats
        assert sum(r["ok"] for r in results) == 180
        assert sum(r["gate_calls"] for r in results) == len(stats.attempt_times[KEY]) == 180
        shared = grants(workers)
        assert len(shared) == 180
        assert max_in_window(shared) <= 40
        assert span_rate(shared) >= 0.85 * baseline


async def test_shared_daily_limit_stops_every_process_at_the_limit(redis_url: str) -> None:
    """daily_limit=50 shared by three processes: exactly 50 calls reach the platform."""
    async with emulator(qps=None) as emu:
        workers = await spawn(3, emu.base_url, redis_url, qps=200, calls=30, daily_limit=50)
        results = [await w.wait() for w in workers]
        assert len(emu.stats.attempt_times[KEY]) == 50
        assert sum(r["ok"] for r in results) == 50
        assert sum(r["refused"] for r in results) == 40
        assert emu.stats.count(code=67200007) == 0


async def test_one_process_throttled_slows_the_others(redis_url: str) -> None:
    """The platform allows 20/s but both processes are told qps=40: the 67200002 answers
    one of them gets lower the shared rate, so both slow down and the storm stays short."""
    async with emulator(qps=20) as emu:
        workers = await spawn(2, emu.base_url, redis_url, qps=40, calls=50)
        results = [await w.wait() for w in workers]
        with redis.Redis.from_url(redis_url, decode_responses=True) as r:
            state = r.hgetall(STATE_KEY)
        assert float(state["dec_rate"]) < 20
        assert sum(r["ok"] for r in results) == 100
        rejects = emu.stats.count(code=67200002)
        assert rejects <= 20  # without the shared feedback: one storm per process
        thrown = [r["throttled"] for r in results]
        assert sum(thrown) == rejects


async def test_redis_restart_mid_run_leaves_no_call_uncounted(
    redis_server: RedisServer, redis_url: str
) -> None:
    """Redis restarted (state lost) mid-run: processes wait, reconnect, pause one second,
    and go on; no 1-s window of grants holds more than Q, across the restart too, every
    call reaches the platform once, and the shared day counter holds at least every call
    the emulator saw."""
    async with emulator(qps=None) as emu:
        workers = await spawn(2, emu.base_url, redis_url, qps=40, calls=60, daily_limit=10_000)
        await asyncio.gather(*(w.started.wait() for w in workers))
        await asyncio.sleep(1.0)
        await asyncio.to_thread(redis_server.restart, 0.3)
        results = [await w.wait() for w in workers]
        stats = emu.stats
        attempts = len(stats.attempt_times[KEY])
        assert sum(r["ok"] for r in results) == 120 == attempts
        assert len(grants(workers)) == 120
        assert max_in_window(grants(workers)) <= 40
        with redis.Redis.from_url(redis_url, decode_responses=True) as r:
            count = int(r.hget(STATE_KEY, "count") or 0)
        assert count >= attempts


async def test_killed_process_leaves_nothing_stuck(redis_url: str) -> None:
    """A process killed with SIGKILL mid-run: within 1 s the survivor has the whole rate,
    and no 1-s window of grants ever holds more than Q.

    "The whole rate" is judged against a control: a lone process of another account,
    started with them, so that it runs on the same loaded machine at the same time. A
    process holds at most one grant ahead (redisgate's round trips), so woken late for
    each grant on a loaded machine it falls short of the configured rate whatever the
    victim left behind (0.65 of the pair's rate before the kill, seen in a full parallel
    run); the control falls short the same way."""
    async with emulator(qps=None) as emu:
        # About 4 s of the survivor alone after the kill (140 grants: a stall of one of
        # the two processes weighs less), and the control runs past its end.
        victim, survivor = await spawn(2, emu.base_url, redis_url, qps=40, calls=200,
                                       start=False)
        [control] = await spawn(1, emu.base_url, redis_url, qps=40, calls=270,
                                api_key="sk-other", start=False)
        await go([victim, survivor, control])
        await asyncio.gather(victim.started.wait(), survivor.started.wait())
        await asyncio.sleep(1.0)
        victim.proc.send_signal(signal.SIGKILL)
        await victim.proc.wait()
        killed_at = time.time()  # the grants' clock: Redis's TIME on this machine
        await survivor.wait()
        await control.wait()
        times = grants([victim, survivor])
        # The window both run alone in: from 1 s after the kill to the first one's end.
        start, end = killed_at + 1.0, min(max(survivor.grants), max(control.grants))
        mine = [t for t in survivor.grants if start < t <= end]
        theirs = [t for t in control.grants if start < t <= end]
        assert len(theirs) > 40
        # Stuck behind the victim's leftovers (a share, a lease) the survivor would keep
        # half the control's rate or less.
        assert len(mine) >= 0.85 * len(theirs)
        assert max_in_window(times) <= 40
        assert len(emu.stats.attempt_times[KEY]) == len(times)


async def test_two_accounts_keep_their_own_budgets(redis_url: str) -> None:
    """Two accounts on one Redis, two processes each: each account runs at its own qps."""
    async with emulator(qps=None) as emu:
        mine = await spawn(2, emu.base_url, redis_url, qps=20, calls=25, start=False)
        other = await spawn(2, emu.base_url, redis_url, qps=20, calls=25, api_key="sk-other",
                            start=False)
        await go([*mine, *other])
        for w in (*mine, *other):
            await w.wait()
        for key, workers in ((KEY, mine), ("sk-other", other)):
            assert len(emu.stats.attempt_times[key]) == len(grants(workers)) == 50
            assert max_in_window(grants(workers)) <= 20
        # One budget shared by both accounts would hold them together to 20 calls in
        # every 1-s window (the gate's bound); their own budgets let them exceed it.
        assert max_in_window(grants(mine) + grants(other)) > 20
