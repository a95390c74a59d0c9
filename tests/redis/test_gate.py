"""RedisRateGate against a real redis-server: pacing, priority, shared feedback and budgets,
failures and redaction. Several gates in one loop stand for several processes here (each
has its own connections); tests/redis/test_processes.py runs real processes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from fto_async import (
    BudgetExhaustedError,
    ClientConfig,
    ConfigurationError,
    FtoClient,
    RateConfig,
    RedisRateGate,
    SharedGateError,
)
from fto_async.redisgate import account_key

from ._support import RedisServer, free_port, require_redis_server

PATH = "/ai/image-search/submit"


def gate(url: str, account: str = "acct", **options: object) -> RedisRateGate:
    return RedisRateGate(RateConfig(redis_url=url, **options), account=account)  # type: ignore[arg-type]


def max_in_window(times: list[float], window: float = 1.0) -> int:
    times = sorted(times)
    best = start = 0
    for end, t in enumerate(times):
        while times[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


async def admit(g: RedisRateGate, times: list[float], sent: list[float] | None = None,
                priority: bool = False) -> None:
    async with g.slot(PATH, priority=priority) as permit:
        times.append(time.monotonic())
        if sent is not None:
            sent.append(permit.sent_at)
    g.on_success(permit)


async def test_gates_share_one_paced_budget(redis_url: str) -> None:
    """Three gates of one account together stay under qps in every 1-s window, about as
    fast as one gate alone on this machine right now (the baseline, measured first: under
    load every rate drops), with one Redis round trip per admitted call."""
    alone = gate(redis_url, qps=50, redis_prefix="alone:")
    alone_sent: list[float] = []
    await asyncio.gather(*(admit(alone, [], alone_sent) for _ in range(60)))
    await alone.aclose()
    baseline = (len(alone_sent) - 1) / (max(alone_sent) - min(alone_sent))
    gates = [gate(redis_url, qps=50) for _ in range(3)]
    times: list[float] = []
    sent: list[float] = []
    with redis.Redis.from_url(redis_url) as r:
        r.config_resetstat()
        await asyncio.gather(*(admit(gates[i % 3], times, sent) for i in range(150)))
        evals = int(r.info("commandstats")["cmdstat_evalsha"]["calls"])
    for g in gates:
        await g.aclose()
    # The proof's bound, in Redis's clock, where the gate makes it. (The callers' own
    # clock adds each caller's scheduling delay: under load a resumed caller reads the
    # time late, and 51 of them once fell in one second of *their* clock.)
    assert max_in_window(sent) <= 49
    rate = (len(sent) - 1) / (max(sent) - min(sent))
    assert rate >= 0.85 * baseline, (rate, baseline)
    assert baseline >= 0.5 * 50  # the baseline itself is a paced gate, not a stalled one
    assert evals <= 150 * 1.1


async def test_priority_waiters_go_first(redis_url: str) -> None:
    """Within a process, a due poll (priority=True) is admitted before waiting normal calls."""
    g = gate(redis_url, qps=20)
    order: list[str] = []

    async def one(name: str, priority: bool) -> None:
        async with g.slot(PATH, priority=priority):
            order.append(name)

    normal = [asyncio.create_task(one(f"n{i}", False)) for i in range(8)]
    await asyncio.sleep(0.12)  # a few normal calls are through, the rest wait
    await asyncio.gather(one("poll", True), *normal)
    await g.aclose()
    assert order.index("poll") <= order.index("n7") - 3
    assert order.index("poll") <= 5


async def test_a_due_poll_passes_a_head_refused_for_a_full_horizon(redis_url: str) -> None:
    """Other processes hold every grant of the horizon, so this gate's head is refused and
    told to wait; a due poll arriving during that wait asks first, from the front, and the
    refused call follows it (redisgate's head hand-over; only real processes reached it
    before)."""
    qps = 1.5  # T = 0.69 s; the horizon, 2 T, holds the others' grants at +T and +2T, and
    # the refused head waits about T for room: the poll has that long to arrive
    others = [gate(redis_url, qps=qps) for _ in range(3)]
    mine = gate(redis_url, qps=qps)
    order: list[str] = []
    replies: list[int] = []  # the status of each of mine's requests (0: wait, 1: granted)
    script = mine._acquire_script

    async def recording(**kwargs: Any) -> Any:
        reply = await script(**kwargs)
        replies.append(int(reply[0]))
        return reply

    mine._acquire_script = recording

    async def one(g: RedisRateGate, name: str, priority: bool = False) -> None:
        async with g.slot(PATH, priority=priority):
            order.append(name)

    async def until(condition: Callable[[], bool], what: str) -> None:
        for _ in range(500):
            if condition():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(what)

    held = [asyncio.create_task(one(g, f"other{i}")) for i, g in enumerate(others)]
    with redis.Redis.from_url(redis_url, decode_responses=True) as r:

        def horizon_full() -> bool:  # in Redis's clock
            seconds, micros = r.time()
            tat = float(r.hget(f"{account_key('acct')}:gate", "tat") or 0)
            return tat > seconds + micros / 1e6 + 2.2 / qps

        await until(horizon_full, "the other gates never filled the horizon")
    refused = asyncio.create_task(one(mine, "refused"))
    await until(lambda: bool(replies), "this gate's head never asked")
    assert replies[0] == 0, "the head was granted at once: the horizon had room again"
    await asyncio.gather(one(mine, "poll", priority=True), refused, *held)
    for g in [*others, mine]:
        await g.aclose()
    assert order.index("poll") < order.index("refused")
    assert sorted(order) == ["other0", "other1", "other2", "poll", "refused"]


async def test_started_work_goes_before_new_work(redis_url: str) -> None:
    """Within a process, the next step of started work (work_class(STARTED)) is admitted
    before waiting new work, and a due poll before both (the local gate's order)."""
    from fto_async._lanes import STARTED, work_class

    g = gate(redis_url, qps=20)
    order: list[str] = []

    async def one(name: str, started: bool = False, priority: bool = False) -> None:
        with work_class(STARTED) if started else contextlib.nullcontext():
            async with g.slot(PATH, priority=priority):
                order.append(name)

    new = [asyncio.create_task(one(f"n{i}")) for i in range(10)]
    await asyncio.sleep(0.12)  # a few new calls are through, the rest wait
    await asyncio.gather(one("started", started=True), one("poll", priority=True), *new)
    await g.aclose()
    assert order.index("poll") < order.index("started") <= 6
    assert order.index("started") <= order.index("n9") - 3


async def test_throttle_in_one_gate_slows_all_then_recovers(redis_url: str) -> None:
    """A 67200002 seen by one gate lowers the account's shared rate for every gate; it
    climbs back to the estimate (the grants of the last second) over ``recovery`` seconds
    of Redis time, then probes above it at 5% of qps per second."""
    a, b = gate(redis_url, qps=20, recovery=0.5), gate(redis_url, qps=20, recovery=0.5)
    times: list[float] = []
    await asyncio.gather(*(admit(a, times) for _ in range(10)))
    async with a.slot(PATH) as permit:
        pass
    a.on_throttled(permit)
    await asyncio.gather(*a._tasks)
    assert a.rate <= 0.7 * 20 * 0.96 + 1e-6
    await admit(b, times)
    assert b.rate < 20 * 0.96  # b never saw a 67200002
    a.on_throttled(permit)  # the same episode: no second decrease
    await asyncio.gather(*a._tasks)
    assert a.throttled == 2
    lowered = b.rate
    await asyncio.sleep(1.5)
    await admit(b, times)
    assert lowered + 1.0 <= b.rate < 20 * 0.96
    for g in (a, b):
        await g.aclose()


async def test_daily_limit_is_shared(redis_url: str) -> None:
    """daily_limit is one Redis counter per account per UTC day: two gates together admit
    exactly the limit, then both refuse before anything is sent."""
    a, b = gate(redis_url, qps=500, daily_limit=7), gate(redis_url, qps=500, daily_limit=7)
    results = await asyncio.gather(
        *(admit(g, []) for g in (a, b) for _ in range(6)), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, BudgetExhaustedError)]
    assert len(refused) == 5
    assert a.calls + b.calls == 7
    assert refused[0].budget == "daily_limit"
    assert a.remaining_today == 0 or b.remaining_today == 0
    for g in (a, b):
        await g.aclose()


async def test_max_calls_stays_per_client(redis_url: str) -> None:
    """max_calls counts this client's calls only."""
    a, b = gate(redis_url, qps=500, max_calls=2), gate(redis_url, qps=500, max_calls=2)
    for g in (a, b):
        for _ in range(2):
            await admit(g, [])
        with pytest.raises(BudgetExhaustedError):
            await admit(g, [])
        await g.aclose()


async def test_two_accounts_are_kept_apart(redis_url: str) -> None:
    """Two accounts on one Redis never share a budget, and their keys hold no secret."""
    a = gate(redis_url, account="client-a", qps=10, daily_limit=3)
    b = gate(redis_url, account="sk:" + "0" * 32, qps=10, daily_limit=3)
    for _ in range(3):
        await admit(a, [])
    with pytest.raises(BudgetExhaustedError):
        await admit(a, [])
    times: list[float] = []
    t0 = time.monotonic()
    await asyncio.gather(*(admit(b, times) for _ in range(3)))
    assert time.monotonic() - t0 < 0.5  # a's pacing does not slow b
    with redis.Redis.from_url(redis_url, decode_responses=True) as r:
        keys = set(r.keys("*"))
    assert keys == {"fto:{client-a}:gate", "fto:{client-a}:log",
                    f"fto:{{sk:{'0' * 32}}}:gate", f"fto:{{sk:{'0' * 32}}}:log"}
    for g in (a, b):
        await g.aclose()


def test_account_identity_is_never_the_secret() -> None:
    """Keys derive from the client_id or a SHA-256 of the sk- key, plus the prefix."""
    from fto_async import ApiKey, ClientCredentials

    key = ApiKey("sk-very-secret-key")
    assert "very-secret" not in key.account_id
    assert key.account_id.startswith("sk:")
    assert ClientCredentials("cid", "secret").account_id == "cid"
    assert account_key("sk-very-secret-key", "app1:").startswith("app1:fto:{sk:")
    assert "very-secret" not in account_key("sk-very-secret-key")


async def test_redis_prefix_separates_applications(redis_url: str) -> None:
    """The same account under two prefixes has two budgets."""
    a = gate(redis_url, qps=100, daily_limit=1, redis_prefix="one:")
    b = gate(redis_url, qps=100, daily_limit=1, redis_prefix="two:")
    await admit(a, [])
    await admit(b, [])
    for g in (a, b):
        await g.aclose()


async def test_unreachable_at_first_call_is_a_typed_error_without_password() -> None:
    """Redis unreachable at the first call: SharedGateError (fatal), URL shown redacted."""
    url = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"
    g = gate(url, qps=10)
    with pytest.raises(SharedGateError) as info:
        await admit(g, [])
    await g.aclose()
    err = info.value
    assert err.fatal
    assert "hunter2" not in str(err)
    assert "hunter2" not in repr(err)
    assert f"redis://:***@127.0.0.1:{url.rsplit(':', 1)[1].split('/')[0]}/0" in str(err)
    assert err.__cause__ is None
    assert err.__context__ is not None
    assert "hunter2" not in str(err.__context__)
    assert "hunter2" not in repr(g)


class _TimesOut:
    """Wraps the gate's script: the first ``times`` calls time out as redis-py does."""

    def __init__(self, script: object, times: float) -> None:
        self.script, self.times, self.calls = script, times, 0

    async def __call__(self, **kwargs: object) -> object:
        from redis.exceptions import TimeoutError as RedisTimeoutError

        self.calls += 1
        if self.calls <= self.times:
            raise RedisTimeoutError("Timeout connecting to server")
        return await self.script(**kwargs)  # type: ignore[operator]


async def test_a_slow_first_connect_is_waited_out(redis_url: str) -> None:
    """A timeout before Redis ever answered (a loaded machine, slower than the 1 s connect
    timeout) is waited out, not a fatal SharedGateError: the call is admitted."""
    g = gate(redis_url, qps=10)
    g._acquire_script = slow = _TimesOut(g._acquire_script, times=2)  # type: ignore[assignment]
    await admit(g, [])
    assert slow.calls == 3
    await g.aclose()


async def test_first_call_timeouts_end_in_shared_gate_error(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Timeouts that go on past the first call's patience are SharedGateError."""
    monkeypatch.setattr("fto_async._redis.FIRST_PATIENCE", 0.3)
    g = gate(redis_url, qps=10)
    g._acquire_script = _TimesOut(g._acquire_script, times=float("inf"))  # type: ignore[assignment]
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(SharedGateError, match="cannot reach"):
        await admit(g, [])
    assert loop.time() - started >= 0.3
    await g.aclose()


async def test_wrong_password_is_a_typed_error(tmp_path: object) -> None:
    """A Redis that refuses the password gives SharedGateError, not a redis-py exception."""
    server = RedisServer(require_redis_server(), password="right-pass")
    server.start()
    try:
        g = gate(f"redis://:wrong-pass@127.0.0.1:{server.port}/0", qps=10)
        with pytest.raises(SharedGateError) as info:
            await admit(g, [])
        await g.aclose()
        assert "wrong-pass" not in str(info.value)
        ok = gate(server.url, qps=10)
        await admit(ok, [])
        await ok.aclose()
    finally:
        server.stop()


def test_redis_url_never_shown_with_its_password() -> None:
    """reprs of RateConfig, ClientConfig, the gate and the client hide the password."""
    url = "redis://user:pa55word@cache.internal:6380/2?password=pa55word"
    cfg = RateConfig(redis_url=url)
    assert "pa55word" not in repr(cfg)
    assert "redis://user:***@cache.internal:6380/2" in repr(cfg)
    assert "pa55word" not in repr(ClientConfig(rate=cfg))
    assert "pa55word" not in repr(RedisRateGate(cfg, account="a"))
    client = FtoClient(api_key="sk-demo", redis_url=url)
    assert "pa55word" not in repr(client)
    assert "pa55word" not in repr(client.config)
    with pytest.raises(ConfigurationError) as info:
        RateConfig(redis_url="http://:pa55word@host/")
    assert "pa55word" not in str(info.value)


def test_from_env_reads_patsnap_redis_url() -> None:
    """FtoClient.from_env() builds the shared gate from PATSNAP_REDIS_URL."""
    client = FtoClient.from_env(
        {"PATSNAP_API_KEY": "sk-demo", "PATSNAP_REDIS_URL": "redis://127.0.0.1:1/0"}
    )
    assert isinstance(client.gate, RedisRateGate)
    assert client.config.rate.redis_url == "redis://127.0.0.1:1/0"


def test_missing_extra_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without redis-py installed, redis_url gives a ConfigurationError naming the extra."""
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(ConfigurationError, match=r"fto-async\[redis\]"):
        FtoClient(api_key="sk-demo", redis_url="redis://127.0.0.1:1/0")


async def test_redis_lost_mid_run_fails_closed_and_recovers(
    redis_server: RedisServer, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis lost mid-run: calls wait (nothing is admitted uncounted), the gate reconnects
    with backoff, the account pauses one second after the restart, and each gate's calls
    of the day are added back to the shared counter."""
    a, b = gate(redis_url, qps=100, daily_limit=1000), gate(redis_url, qps=100, daily_limit=1000)
    for g in (a, b):
        for _ in range(3):
            await admit(g, [])
    redis_server.stop()
    with caplog.at_level(logging.WARNING, logger="fto_async.redisgate"):
        pending = asyncio.create_task(admit(a, []))
        await asyncio.sleep(0.4)
        assert not pending.done()  # fail closed: waiting, not sent
        redis_server.start()
        restarted = time.monotonic()
        times: list[float] = []
        await asyncio.wait_for(pending, 5)
        await admit(b, times)
    assert times[0] - restarted >= 0.9  # the gateway's window may still hold old calls
    assert "lost Redis" in caplog.text
    assert "answers again" in caplog.text
    assert redis_server.password is None
    with redis.Redis.from_url(redis_url, decode_responses=True) as r:
        count = int(r.hget("fto:{acct}:gate", "count") or 0)
    assert count == a.calls + b.calls == 8  # each gate added back exactly its own calls
    for g in (a, b):
        await g.aclose()


async def test_opt_in_fallback_paces_locally(
    redis_server: RedisServer, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With redis_fallback, a lost Redis switches to a local gate at qps / expected_processes,
    with a warning, and back to Redis when it answers again."""
    g = gate(redis_url, qps=40, redis_fallback=True, expected_processes=4)
    await admit(g, [])
    redis_server.stop()
    times: list[float] = []
    try:
        with caplog.at_level(logging.WARNING, logger="fto_async.redisgate"):
            await asyncio.gather(*(admit(g, times) for _ in range(12)))
        assert "pacing locally at 10 calls/s" in caplog.text
        assert g.rate == pytest.approx(10 * 0.96)
        rate = (len(times) - 1) / (max(times) - min(times))
        assert rate <= 10.5
    finally:
        redis_server.start()
    await asyncio.sleep(2.1)  # past the fallback's retry time
    await admit(g, [])
    assert g.rate == pytest.approx(40 * 0.96)
    await g.aclose()


async def test_turnstile_is_cancellation_safe() -> None:
    """A waiter cancelled while queued, or just as it is handed the place, leaks nothing."""
    from fto_async._lanes import POLL
    from fto_async.redisgate import _Turnstile

    t = _Turnstile(1)
    await t.acquire()
    queued = asyncio.create_task(t.acquire())
    handed = asyncio.create_task(t.acquire(POLL))
    await asyncio.sleep(0)
    queued.cancel()
    t.release()  # hands the place to the priority waiter...
    handed.cancel()  # ...which is cancelled before it runs: it passes the place on
    await asyncio.gather(queued, handed, return_exceptions=True)
    assert t.in_use == 0
    await asyncio.wait_for(t.acquire(), 1)
    assert t.in_use == 1
