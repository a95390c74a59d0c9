"""RedisReportCache against a real redis-server: provenance, poisoned values, the lease,
Redis down, and no secret in Redis."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import redis

from fto_async import (
    BatchAbortedError,
    FtoClient,
    Item,
    RedisReportCache,
    SharedCacheError,
    request_fingerprint,
)
from fto_async.errors import ConfigurationError
from fto_async.rediscache import _tag
from tests._batch import emulator, image, make_client

from ._support import RedisServer, free_port, require_redis_server

PLATFORM, ACCOUNT = "http://127.0.0.1:1", "client-a"
REPORT = {"task_status": 2, "result": [{"patent_id": "p1"}]}


def keys_and_values(url: str) -> list[tuple[str, str]]:
    """Every key of the server with its value as text, whatever its type."""
    read = {"string": "get", "hash": "hgetall", "list": lambda r, k: r.lrange(k, 0, -1),
            "zset": lambda r, k: r.zrange(k, 0, -1, withscores=True), "set": "smembers"}
    with redis.Redis.from_url(url, decode_responses=True) as r:
        found = []
        for key in r.keys("*"):
            how = read[r.type(key)]
            found.append((key, str(getattr(r, how)(key) if isinstance(how, str)
                                   else how(r, key))))  # fmt: skip
        return found


async def test_an_answer_is_bound_to_fingerprint_platform_and_account(redis_url):
    """A stored report answers only the same fingerprint, platform and account, within
    max_age, and its key has a TTL."""
    async with RedisReportCache(redis_url, max_age=60) as cache:
        await cache.put("fp1", "image_search", REPORT, "t-1", platform=PLATFORM,
                        account=ACCOUNT)  # fmt: skip
        hit = await cache.get("fp1", platform=PLATFORM, account=ACCOUNT)
        assert hit is not None
        assert hit.report == REPORT
        assert hit.task_id == "t-1"
        assert (hit.fingerprint, hit.platform, hit.account) == ("fp1", PLATFORM, ACCOUNT)
        assert abs(hit.created_at - time.time()) < 5
        assert await cache.get("fp2", platform=PLATFORM, account=ACCOUNT) is None
        assert await cache.get("fp1", platform="http://other", account=ACCOUNT) is None
        assert await cache.get("fp1", platform=PLATFORM, account="client-b") is None
        assert await cache.get("fp1", platform=PLATFORM, account=ACCOUNT, max_age=-1) is None
    with redis.Redis.from_url(redis_url) as r:
        (key,) = r.keys("*")
        assert 0 < r.pttl(key) <= 7 * 86400 * 1000
        assert key.startswith(b"fto:{client-a}:answer:")


async def test_an_old_answer_is_a_miss(redis_url):
    """An answer older than max_age (by the cache's clock) is never served."""
    now = [1000.0]
    async with RedisReportCache(redis_url, max_age=10, clock=lambda: now[0]) as cache:
        await cache.put("fp", "image_search", REPORT, "t", platform=PLATFORM, account=ACCOUNT)
        now[0] += 11
        assert await cache.get("fp", platform=PLATFORM, account=ACCOUNT) is None
        now[0] -= 2
        assert await cache.get("fp", platform=PLATFORM, account=ACCOUNT) is not None


@pytest.mark.parametrize("poison", ["other fingerprint", "other account", "other platform",
                                    "garbage", "nan", "not an object", "no stamp",
                                    "report not an object"])  # fmt: skip
async def test_a_poisoned_answer_is_never_served(redis_url, poison):
    """A value that does not say it answers this question (or cannot be read) is a miss."""
    async with RedisReportCache(redis_url) as cache:
        await cache.put("fp-other", "image_search", {"evil": 1}, "t-evil", platform=PLATFORM,
                        account=ACCOUNT)  # fmt: skip
        await cache.put("fp", "image_search", REPORT, "t", platform=PLATFORM, account=ACCOUNT)
        with redis.Redis.from_url(redis_url, decode_responses=True) as r:
            target = cache._key("answer", "fp", PLATFORM, ACCOUNT)
            good = json.loads(r.get(target))
            value: Any = {
                "other fingerprint": r.get(cache._key("answer", "fp-other", PLATFORM, ACCOUNT)),
                "other account": json.dumps({**good, "account": _tag("client-b")}),
                "other platform": json.dumps({**good, "platform": "http://evil"}),
                "garbage": "\x00not json{",
                "nan": json.dumps(good).replace('"at": ', '"at": NaN, "x": '),
                "not an object": "[1, 2]",
                "no stamp": json.dumps({k: v for k, v in good.items() if k != "at"}),
                "report not an object": json.dumps({**good, "report": "x"}),
            }[poison]
            r.set(target, value)
        assert await cache.get("fp", platform=PLATFORM, account=ACCOUNT) is None
        assert cache.poisoned == 1


async def test_a_screening_is_answered_from_the_shared_cache(redis_url):
    """A second client (another process, in effect) gets the first one's answer with no
    call; the answer records its provenance."""
    async with emulator() as emu:
        items = [Item(i, image(i)) for i in range(3)]
        async with make_client(emu, cache=RedisReportCache(redis_url)) as first:
            done = [o async for o in first.screen_many(items)]
            assert all(o.ok for o in done)
            await first.cache.aclose()
        async with make_client(emu, cache=RedisReportCache(redis_url)) as second:
            again = [o async for o in second.screen_many(items)]
            await second.cache.aclose()
        assert all(o.ok and o.from_cache for o in again)
        assert len(emu.stats.submits) == 3


async def test_cache_redis_builds_one_on_the_clients_redis_url(redis_url):
    """cache="redis" uses redis_url and is closed with the client; without a URL it is a
    typed error."""
    async with emulator() as emu:
        client = make_client(emu, cache="redis", redis_url=redis_url)
        async with client:
            assert isinstance(client.cache, RedisReportCache)
            outcome = await client.screen(image(1))
            assert outcome.ok
        with pytest.raises(RuntimeError):
            await client.cache.get("fp")
    with pytest.raises(ConfigurationError, match="redis_url"):
        FtoClient(api_key="sk-demo", cache="redis")
    with pytest.raises(ConfigurationError):
        FtoClient(api_key="sk-demo", cache="memcached")  # type: ignore[arg-type]


async def test_concurrent_askers_share_one_submit(redis_url):
    """Five caches (five processes, in effect) asking one question at once: one submit,
    every caller gets its task id."""
    caches = [RedisReportCache(redis_url) for _ in range(5)]
    submits = 0

    async def submit() -> str:
        nonlocal submits
        submits += 1
        await asyncio.sleep(0.2)
        return f"task-{submits}"

    ids = await asyncio.gather(*(c.submit_once("fp", "image_search", submit,
                                               platform=PLATFORM, account=ACCOUNT)
                                 for c in caches))  # fmt: skip
    assert submits == 1
    assert set(ids) == {"task-1"}
    assert sum(c.led for c in caches) == 1
    assert sum(c.followed for c in caches) == 4
    for cache in caches:
        await cache.aclose()


async def test_a_failed_submit_frees_the_lease(redis_url):
    """A holder whose submit fails releases the lease at once: the next asker submits."""
    async with RedisReportCache(redis_url, lease_ttl=60) as a, \
            RedisReportCache(redis_url, lease_ttl=60) as b:  # fmt: skip
        async def boom() -> str:
            raise ValueError("refused")

        async def ok() -> str:
            return "task-b"

        with pytest.raises(ValueError, match="refused"):
            await a.submit_once("fp", "image_search", boom, platform=PLATFORM, account=ACCOUNT)
        started = time.monotonic()
        assert await b.submit_once("fp", "image_search", ok, platform=PLATFORM,
                                   account=ACCOUNT) == "task-b"  # fmt: skip
        assert time.monotonic() - started < 1  # not the 60 s lease


async def test_a_waiter_takes_over_from_a_holder_that_stopped_renewing(redis_url):
    """A lease whose holder is gone expires after lease_ttl; a waiter then submits itself."""
    async with RedisReportCache(redis_url, lease_ttl=0.5) as cache:
        key = cache._key("flight", "fp", PLATFORM, ACCOUNT)
        with redis.Redis.from_url(redis_url) as r:  # a dead holder's lease, never renewed
            lease = {**cache._about("fp", PLATFORM, ACCOUNT), "kind": "image_search",
                     "state": "submitting", "owner": "dead", "at": time.time()}  # fmt: skip
            r.set(key, json.dumps(lease), px=500)

        async def ok() -> str:
            return "task-new"

        started = time.monotonic()
        assert await cache.submit_once("fp", "image_search", ok, platform=PLATFORM,
                                       account=ACCOUNT) == "task-new"  # fmt: skip
        assert 0.3 < time.monotonic() - started < 3
        assert cache.led == 1


async def test_a_live_holder_keeps_its_lease_past_the_ttl(redis_url):
    """A holder whose submit outlasts lease_ttl renews it: nobody submits meanwhile."""
    # 1 s leases renewed every 1/3 s: a loaded machine's event loop lagged past 0.3 s ones
    async with RedisReportCache(redis_url, lease_ttl=1.0) as a, \
            RedisReportCache(redis_url, lease_ttl=1.0) as b:  # fmt: skip
        submits = 0

        async def slow() -> str:
            nonlocal submits
            submits += 1
            await asyncio.sleep(3.0)  # three lease lifetimes
            return f"task-{submits}"

        first = asyncio.create_task(a.submit_once("fp", "image_search", slow,
                                                  platform=PLATFORM, account=ACCOUNT))
        await asyncio.sleep(0.05)
        second = await b.submit_once("fp", "image_search", slow, platform=PLATFORM,
                                     account=ACCOUNT)  # fmt: skip
        assert await first == second == "task-1"
        assert submits == 1


@pytest.mark.parametrize("poison", ["other fingerprint's task", "garbage", "other kind",
                                    "submitted without a task id", "an unknown state"])
async def test_a_poisoned_flight_is_never_followed(redis_url, poison):
    """A task id under the flight key that does not check out is replaced, not polled."""
    async with RedisReportCache(redis_url) as cache:
        key = cache._key("flight", "fp", PLATFORM, ACCOUNT)
        about = cache._about("fp", PLATFORM, ACCOUNT)
        value = {
            "other fingerprint's task": json.dumps({**cache._about("fp-x", PLATFORM, ACCOUNT),
                                                    "kind": "image_search", "at": time.time(),
                                                    "state": "submitted", "task_id": "evil"}),
            "garbage": "{{{",
            "other kind": json.dumps({**about, "kind": "workflow", "at": time.time(),
                                      "state": "submitted", "task_id": "evil"}),
            "submitted without a task id": json.dumps({**about, "kind": "image_search",
                                                       "at": time.time(), "state": "submitted",
                                                       "task_id": ""}),
            "an unknown state": json.dumps({**about, "kind": "image_search", "at": time.time(),
                                            "state": "queued", "task_id": "evil"}),
        }[poison]
        with redis.Redis.from_url(redis_url) as r:
            r.set(key, value)  # no TTL: it would block forever if waited on

        async def ok() -> str:
            return "task-mine"

        assert await asyncio.wait_for(cache.submit_once(
            "fp", "image_search", ok, platform=PLATFORM, account=ACCOUNT), 5) == "task-mine"
        assert cache.takeovers == 1


async def test_redis_down_is_a_typed_error_and_nothing_is_sent(tmp_path):
    """An unreachable Redis: lookups miss, the submit raises SharedCacheError (fatal, the
    password redacted) and the emulator sees no submit."""
    url = f"redis://:pw-s3cret@127.0.0.1:{free_port()}/0"
    async with emulator() as emu:
        cache = RedisReportCache(url, lease_ttl=0.3)
        async with make_client(emu, cache=cache) as client:
            with pytest.raises(BatchAbortedError) as caught:
                _ = [o async for o in client.screen_many([image(1), image(2)])]
        assert isinstance(caught.value.cause, SharedCacheError)
        assert "pw-s3cret" not in str(caught.value.cause) + repr(cache)
        assert "127.0.0.1" in str(caught.value.cause)
        assert len(emu.stats.submits) == 0
        assert cache.errors >= 1  # the lookups missed
        await cache.aclose()
    with pytest.raises(SharedCacheError, match=r"\*\*\*"):
        async with RedisReportCache(url) as down:
            await down.ping()


async def test_no_secret_reaches_redis(tmp_path):
    """Neither the API key nor the Redis password appears in any key or value."""
    server = RedisServer(require_redis_server(), password="redis-pw-77")
    server.start()
    try:
        async with emulator() as emu, FtoClient(
            api_key="sk-demo", base_url=emu.base_url, qps=500, redis_url=server.url,
            cache="redis",
        ) as client:
            request = image(7)
            outcome = await client.screen(request)
            assert outcome.ok
            fp = request_fingerprint(request)
            assert await client.cache.get(fp, platform=client.provenance[0],
                                          account=client.provenance[1]) is not None
        dump = keys_and_values(server.url)
        assert any(":answer:" in k for k, _ in dump)
        assert any(":flight:" in k for k, _ in dump)
        text = repr(dump)
        assert "sk-demo" not in text
        assert "redis-pw-77" not in text
    finally:
        server.stop()


async def test_ping_waits_out_a_slow_first_connect(redis_url):
    """The CLI's check of --shared-cache: timeouts (a loaded machine, slower than the 1 s
    connect timeout) are waited out, a refusal is not (the test above)."""
    from redis.exceptions import TimeoutError as RedisTimeoutError

    async with RedisReportCache(redis_url) as cache:
        real, calls = cache._redis.ping, []

        async def slow_ping() -> Any:
            calls.append(1)
            if len(calls) <= 2:
                raise RedisTimeoutError("Timeout connecting to server")
            return await real()

        cache._redis.ping = slow_ping
        await cache.ping()
        assert len(calls) == 3


async def test_a_failed_task_is_not_followed_by_the_next_asker(redis_url):
    """A task that ended in failure is never handed to a later asker: another process (or
    a retry) asking the same question submits afresh and gets its own answer, not the
    old failure for the rest of task_ttl."""
    async with emulator(fail_rate=1.0) as emu:
        async with make_client(emu, cache=RedisReportCache(redis_url)) as first:
            failed = await first.screen(image(1))
            assert not failed.ok
            await first.cache.aclose()
        emu.reconfigure(fail_rate=0.0)
        async with make_client(emu, cache=RedisReportCache(redis_url)) as second:
            again = await second.screen(image(1))
            await second.cache.aclose()
        assert again.ok, again.error
        assert again.task_id != failed.task_id
        assert len(emu.stats.submits) == 2


@pytest.mark.parametrize("max_age", [float("inf"), 1e17])
async def test_a_huge_max_age_still_stores_every_answer(redis_url, max_age):
    """max_age "for ever" (inf, or --max-age 99999999999d) keeps reports as long as Redis
    can: every paid answer is stored and served, none lost to an expiry Redis refuses
    (inf crashed the batch after paying; 1e17 s was refused by Redis, every report lost)."""
    async with emulator() as emu:
        async with make_client(emu, cache=RedisReportCache(redis_url, max_age=max_age)) as a:
            done = [o async for o in a.screen_many([image(1), image(2)])]
            assert all(o.ok for o in done)
            assert a.cache.puts == 2
            assert a.cache.errors == 0
            again = [o async for o in a.screen_many([image(1), image(2)])]
            await a.cache.aclose()
        assert all(o.from_cache for o in again)
        assert len(emu.stats.submits) == 2


async def test_a_shared_task_costs_the_followers_no_upload(redis_url):
    """Three replicas screening one local image at once: one upload and one submit in
    all; the replicas that follow the shared task upload nothing (an upload is a call)."""
    from tests._shared import PNG

    async with emulator() as emu:
        clients = [make_client(emu, cache=RedisReportCache(redis_url)) for _ in range(3)]
        outcomes = await asyncio.gather(*(
            c.screen_image(PNG, country=["US"], lang="en") for c in clients))  # fmt: skip
        for client in clients:
            await client.cache.aclose()
            await client.aclose()
        assert all(o.ok for o in outcomes)
        assert len({o.task_id for o in outcomes}) == 1
        assert len(emu.stats.submits) == 1
        assert emu.stats.count("/image-search/image-upload", 0) == 1
