"""The account's rate gate with its state in Redis, shared by many processes and hosts.

:class:`RedisRateGate` implements :class:`~fto_async.ratelimit.RateGateProtocol` like the
local :class:`~fto_async.ratelimit.RateGate`, but the pacing state, the adaptive rate and
the ``daily_limit`` counter live in one Redis hash per account, updated by Lua scripts
(atomic on the server). Every process of one account then shares one budget of ``qps``
calls per second. What stays per process: the in-flight bound, ``max_calls``, and
``endpoint_qps`` (local pacers, as in the local gate).

Algorithm: GCRA (the generic cell rate algorithm, a leaky bucket kept as one timestamp,
the theoretical arrival time ``TAT``). With ``T = 1 / rate`` and a tolerance ``tau``, a
call may go at time ``s = max(now, TAT - tau)``, and then ``TAT = max(TAT, s) + T``.
Every time is Redis's own clock (``TIME`` inside the script), never a host's.

Window bound (the same as the local gate's). Let calls ``1..n`` be granted send times
``s_1 <= ... <= s_n`` inside one window ``[a, a + W]``. Each grant raises ``TAT`` by at
least ``T_min`` (the interval of the highest rate used, never above the ceiling
``rate = headroom * qps``), and ``TAT_1 >= s_1 + T_min``; call ``n`` was granted only if
``s_n >= TAT_{n-1} - tau >= s_1 + (n - 1) * T_min - tau``. So
``n <= 1 + (W + tau) / T_min = 1 + rate * tau + rate * W``. The gate sets
``rate * tau = credit = min(0.25, qps - rate)`` (minus a hair), exactly the local pacer's
credit, so ``n <= 1 + credit + rate * W``; for the gateway's window ``W < 1`` that is
fewer than ``1 + credit + rate < qps + 1`` calls, i.e. at most ``qps``. As in the local
gate, the calls to spare (``qps + 1 - (1 + credit + rate)``, 1.35 calls at ``qps = 40``)
absorb the jitter between the grant in Redis and the arrival at the gateway (35 ms at
``qps = 40``; across hosts with unequal paths to the gateway, lower ``headroom``).
Grants are ordered (``s_k > s_{k-1}`` because ``tau < T``), so the proof holds for the
order Redis granted them in, whichever process asked. (Processes told different ``qps``
for one account are bounded by the largest: give them all the same.)

Round trips: a grant may lie up to ``horizon`` (0.25 s, at least two intervals) ahead of
``now``: the script reserves it and the caller sleeps the difference locally, then
sends. In each process only one waiter talks to Redis at a time (the *head*), and it keeps
that role until its grant is due, so each process holds at most one grant ahead; the
others queue locally in the local gate's three classes and order (due polls, then
work already started, then new work; :mod:`fto_async._lanes`). Across processes the
order is Redis's grant order: classes are per process, since a shared queue would cost
a round trip per waiter, and each process holds at most one grant ahead, so its own
order decides which of its calls uses it. Up to
``horizon * rate`` processes (9 at ``qps = 40``) thus each get every grant in one round
trip; a waiter refused because the horizon is full is told how long to wait (no tight
loop), so a process never asks more than about once per interval.

Adaptive feedback, shared (the local gate's rules, state in Redis): a 67200002 starts an
episode once per second; the estimate is the account's successful answers in the last
second times ``headroom`` (each process adds its successes to a short log in Redis with
its next grant request, so this costs no round trip), the rate drops to
``min(0.7 * rate, estimate)``, and nothing is granted until the oldest of those calls
has left the window. The climb back is a function of Redis time since the decrease:
back to the estimate over ``recovery`` seconds, then 5% of ``qps`` per second up to the
ceiling. So a throttle seen by one process slows all of them, and all of them recover
together.

Failure: if Redis cannot be reached at the first call, the gate raises
:class:`~fto_async.errors.SharedGateError` (fatal), naming the URL with its password
redacted (a refusal at once; timeouts after 10 s of them, as a loaded machine can be
slower than the 1 s connect timeout). If Redis is lost later, calls wait and the gate
reconnects with backoff: no call is ever sent without a grant (a grant whose reply was
lost is counted but unused, which errs on the safe side). With ``redis_fallback=True``
the gate instead paces locally at ``qps / expected_processes`` (a warning is logged)
until Redis answers again. If Redis restarts and loses its state, the first process that
was running before and reconnects pauses the account for one second (the gateway's
window may still hold calls from before), and every such process adds its own calls of
the day back to the shared counter (a process that started after the restart adds
nothing; one that died takes its count with it).

Nothing outlives a killed process: there are no locks or leases, only the hash (48 h TTL,
renewed by every grant) and the success log (10 s TTL); a process killed with SIGKILL
leaves at most one reserved, unused grant behind.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING, Any, Final

import attrs

from . import _redis
from ._gate_scripts import ACQUIRE_LUA, THROTTLE_LUA
from ._lanes import NEW, LaneQueue
from ._redis import account_key as account_key  # re-exported: the key rule's old home
from ._redis import connect, is_timeout, url_secrets
from .config import RateConfig, redact_url_credentials
from .errors import BudgetExhaustedError, ConfigurationError, SharedGateError
from .ratelimit import Permit, RateGate, _credit, _Pacer, _Slot

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["LONG_WAIT", "RedisRateGate", "account_key", "connect"]

log = logging.getLogger("fto_async.redisgate")

_HORIZON = 0.25  # seconds: how far ahead of now a grant may be reserved (at least 2 T)
_BACKOFF_BASE = 0.05
_BACKOFF_CAP = 2.0


#: Seconds: a single wait of the gate longer than this is announced (a warning) first.
LONG_WAIT: Final = 60.0


def _announce(wait: float) -> None:
    if wait > LONG_WAIT:
        log.warning("shared rate gate: waiting %.0f s for the account's next call slot", wait)


class _Turnstile:
    """Private: a counting semaphore whose waiters are served by class of work, in the
    local gate's order (:class:`fto_async._lanes.LaneQueue`); cancellation-safe."""

    __slots__ = ("_free", "_queue", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._free = capacity
        self._queue = LaneQueue()

    async def acquire(self, lane: int = NEW, *, front: bool = False) -> None:
        if self._free > 0 and not self._queue:
            self._free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.push(lane, fut, front=front)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # handed the place just as we were cancelled: pass it on
            else:
                self._queue.remove(lane, fut)  # release() may have dropped it
            raise

    def release(self) -> None:
        queue = self._queue
        while (lane := queue.head()) is not None:
            fut = queue.pop(lane)
            if not fut.done():
                fut.set_result(None)
                return
        self._free += 1

    def better_waiting(self, lane: int) -> bool:
        """Whether a waiter of a better class than ``lane`` waits."""
        return self._queue.better_waiting(lane)

    @property
    def in_use(self) -> int:
        return self.capacity - self._free


class _LocalPermit(Permit):
    """Private: a permit the local fallback gate granted (its feedback goes there)."""

    __slots__ = ()


class RedisRateGate:
    """Paces every call of one account, across processes and hosts, through Redis.

    Example::

        gate = RedisRateGate(RateConfig(qps=40, redis_url="redis://localhost:6379/0"),
                             account="my-client-id")
        async with gate.slot("/ai/image-search/submit") as permit:
            ...  # send the request
        gate.on_success(permit)
        await gate.aclose()

    ``FtoClient(..., redis_url=...)`` builds one by itself (and closes it).

    Args:
        config: the options, documented on :class:`~fto_async.config.RateConfig`
            (``redis_url`` must be set).
        account: the account's non-secret identity (``credentials.account_id``).

    Raises:
        ConfigurationError: no ``redis_url``, or the ``redis`` extra is not installed.
    """

    def __init__(self, config: RateConfig, *, account: str) -> None:
        if not config.redis_url:
            raise ConfigurationError("RedisRateGate needs config.redis_url")
        self.config = config
        self._url_shown = redact_url_credentials(config.redis_url)
        self._secrets = url_secrets(config.redis_url)
        stem = account_key(account, config.redis_prefix)
        self._keys = (stem + ":gate", stem + ":log")
        # The gate retries by itself (fail closed, with backoff): no retries inside redis-py.
        self._redis: Redis = connect(config.redis_url)
        self._acquire_script = self._redis.register_script(ACQUIRE_LUA)
        self._throttle_script = self._redis.register_script(THROTTLE_LUA)
        qps = config.qps
        self._ceiling = qps * config.headroom
        self._floor = qps * config.min_rate_fraction
        self._credit = _credit(qps, self._ceiling)
        self._tau = self._credit / self._ceiling
        self._horizon = max(2.0 / self._ceiling, _HORIZON)
        self._log_cap = int(qps * 2) + 16
        self._rate = self._ceiling
        self._in_flight = _Turnstile(config.in_flight_limit)
        self._head = _Turnstile(1)
        self._endpoint_pacers: dict[str, _Pacer] = {}
        self._epoch = ""
        self._day: int | None = None
        self._mine_today = 0  # this process's grants of the Redis day ``_day``
        self._unsynced = 0  # grants of the local fallback not yet added in Redis
        self._ok = 0  # successes not yet reported to the shared log
        self._shared_today = 0  # the shared count at the last reply
        self._connected = False
        self._first_timeout: float | None = None  # loop time of the first call's timeout
        self._failures = 0
        self._fallback: RateGate | None = None
        self._fallback_until = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        # Callers past the max_calls check whose call is not granted yet: the budget
        # holds their calls, and refuses nobody while they may still hand them back.
        self._reserved = 0
        self._reserved_freed: asyncio.Event | None = None
        #: Calls admitted by this process (every attempt counts, as the platform counts).
        self.calls = 0
        #: 67200002 answers reported through :meth:`on_throttled` in this process.
        self.throttled = 0

    # -- the slot -------------------------------------------------------------------

    def slot(self, path: str, *, priority: bool = False) -> _Slot:
        """Wait for the right to send one call to ``path``; hold it while in flight.

        Use as ``async with gate.slot(path) as permit:``. ``priority=True`` (a due poll)
        goes ahead of this process's waiting calls, then the class set with
        :func:`fto_async._lanes.work_class` orders the rest (as in the local gate);
        across processes every class takes the same shared budget.

        Raises:
            BudgetExhaustedError: the call would exceed ``max_calls`` or ``daily_limit``.
            SharedGateError: Redis could not be reached at the first call.
        """
        return _Slot(self, path, priority)

    def _exit(self) -> None:
        self._in_flight.release()

    async def _enter(self, path: str, lane: int) -> Permit:
        if self._closed:
            raise RuntimeError("this gate is closed")
        await self._in_flight.acquire(lane)
        try:
            await self._reserve_call()
            try:
                limit = self.config.endpoint_qps.get(path)
                if limit is not None:
                    await self._endpoint_pacer(path, limit).acquire()
                permit = await self._admit(path, lane)
            finally:
                self._reserved -= 1
                if self._reserved_freed is not None:
                    self._reserved_freed.set()
                    self._reserved_freed = None
        except BaseException:
            self._in_flight.release()
            raise
        self.calls += 1
        return permit

    async def _reserve_call(self) -> None:
        """Hold one call of ``max_calls`` for this caller, or refuse if all are spent.

        While the calls left are held by callers not yet granted, wait for them: each is
        either granted (and counted) or handed back, so the budget is spent exactly.
        """
        m = self.config.max_calls
        while m is not None and self.calls + self._reserved >= m:
            self._check_max_calls()
            if self._reserved_freed is None:
                self._reserved_freed = asyncio.Event()
            await self._reserved_freed.wait()
        self._reserved += 1

    def _check_max_calls(self) -> None:
        m = self.config.max_calls
        if m is not None and self.calls >= m:
            raise BudgetExhaustedError(
                f"max_calls budget of {m} calls is spent", budget="max_calls"
            )

    def _endpoint_pacer(self, path: str, limit: float) -> _Pacer:
        pacer = self._endpoint_pacers.get(path)
        if pacer is None:
            rate = limit * self.config.headroom
            pacer = self._endpoint_pacers[path] = _Pacer(rate, _credit(limit, rate))
        return pacer

    async def _admit(self, path: str, lane: int) -> Permit:
        loop = asyncio.get_running_loop()
        await self._head.acquire(lane)
        held = True
        try:
            while True:
                if self._fallback is not None and loop.time() < self._fallback_until:
                    return await self._admit_locally(path)
                ok, self._ok = self._ok, 0
                try:
                    reply = await self._acquire_script(keys=self._keys, args=self._args(ok))
                except Exception as exc:  # classified below
                    self._ok += ok
                    if not self._is_connection_error(exc) or (
                        not self._connected and not self._patient(exc, loop.time())
                    ):
                        raise self._gate_error(exc) from None
                    if self.config.redis_fallback:
                        self._start_fallback(exc)
                        continue
                    await self._back_off(exc)
                    continue
                status, wait_or_at, now = int(reply[0]), float(reply[1]), float(reply[2])
                self._on_reply(reply)
                if status == 2:
                    raise BudgetExhaustedError(
                        f"daily_limit budget of {self.config.daily_limit} calls is spent "
                        "for today (UTC), shared by every process of this account",
                        budget="daily_limit",
                    )
                if status == 1:
                    break
                _announce(wait_or_at)
                await asyncio.sleep(wait_or_at)
                if self._head.better_waiting(lane):
                    # A better class arrived meanwhile (a due poll, say): let it ask
                    # first, then ask again from the front of this class.
                    held = False
                    self._head.release()
                    await self._head.acquire(lane, front=True)
                    held = True
            # The head keeps its role until its grant is due: each process holds at most
            # one grant ahead, so a grant is rarely refused (one round trip per call).
            delay = wait_or_at - now
            if delay > 0:
                _announce(delay)
                try:
                    await asyncio.sleep(delay)
                except asyncio.CancelledError:
                    self.calls += 1  # granted, so counted in Redis: counted here too
                    raise
        finally:
            if held:
                self._head.release()
        return Permit(path, wait_or_at)

    def _args(self, ok: int) -> tuple[object, ...]:
        cfg = self.config
        return (
            repr(self._ceiling),
            repr(self._tau),
            repr(self._floor),
            repr(cfg.qps),
            repr(cfg.recovery),
            repr(self._horizon),
            cfg.daily_limit or 0,
            self._epoch,
            self._mine_today,
            self._unsynced,
            self._log_cap,
            ok,
        )

    def _on_reply(self, reply: list[Any]) -> None:
        status, now, epoch, count = int(reply[0]), float(reply[2]), str(reply[3]), int(reply[4])
        if not self._connected or self._failures or self._fallback is not None:
            if self._connected:
                log.warning("shared rate gate: Redis at %s answers again", self._url_shown)
            self._connected, self._failures = True, 0
            self._fallback = None
        day = int(now // 86400)
        if day != self._day:
            self._day, self._mine_today = day, 0
        self._epoch, self._unsynced, self._shared_today = epoch, 0, count
        self._rate = float(reply[5])
        if len(reply) > 6 and reply[6]:
            log.warning("shared rate gate: the account's next-call time in Redis lay far in "
                        "the future (%s); reset to now", reply[6])  # fmt: skip
        if status == 1:
            self._mine_today += 1

    # -- failures -------------------------------------------------------------------

    @staticmethod
    def _is_connection_error(exc: Exception) -> bool:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import ReadOnlyError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        # ReadOnlyError: a failover left us on a replica for a moment; wait like a loss.
        return isinstance(
            exc, RedisConnectionError | RedisTimeoutError | ReadOnlyError | OSError
        )

    def _patient(self, exc: Exception, now: float) -> bool:
        """Before Redis ever answered: wait out timeouts for ``FIRST_PATIENCE`` seconds,
        but fail at once on anything else (refused, unknown host, a wrong password)."""
        if not is_timeout(exc):
            return False
        if self._first_timeout is None:
            self._first_timeout = now
        return now - self._first_timeout < _redis.FIRST_PATIENCE

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _gate_error(self, exc: Exception) -> SharedGateError:
        what = "cannot reach" if self._is_connection_error(exc) else "got an error from"
        return SharedGateError(
            f"shared rate gate {what} Redis at {self._url_shown}: "
            f"{type(exc).__name__}: {self._scrub(str(exc))}",
            url=self._url_shown,
        )

    async def _back_off(self, exc: Exception) -> None:
        self._failures += 1
        if self._failures == 1:
            log.warning(
                "shared rate gate: lost Redis at %s (%s); calls wait until it is back",
                self._url_shown,
                type(exc).__name__,
            )
        ceiling = min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** min(self._failures, 16))
        await asyncio.sleep(ceiling / 2 + random.uniform(0, ceiling / 2))

    def _start_fallback(self, exc: Exception) -> None:
        loop = asyncio.get_running_loop()
        self._failures += 1
        if self._fallback is None:
            cfg = self.config
            share = cfg.qps / cfg.expected_processes
            self._fallback = RateGate(
                attrs.evolve(
                    cfg,
                    qps=share,
                    max_in_flight=cfg.in_flight_limit,
                    max_calls=None,
                    daily_limit=None,
                    endpoint_qps={},
                    redis_url=None,
                )
            )
            log.warning(
                "shared rate gate: lost Redis at %s (%s); pacing locally at %.3g calls/s "
                "(qps / expected_processes) until it is back",
                self._url_shown,
                type(exc).__name__,
                share,
            )
        ceiling = min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** min(self._failures, 16))
        self._fallback_until = loop.time() + ceiling / 2 + random.uniform(0, ceiling / 2)

    async def _admit_locally(self, path: str) -> Permit:
        assert self._fallback is not None
        limit = self.config.daily_limit
        if limit is not None and self._shared_today + self._unsynced >= limit:
            raise BudgetExhaustedError(
                f"daily_limit budget of {limit} calls is spent for today (UTC)",
                budget="daily_limit",
            )
        async with self._fallback.slot(path) as permit:
            pass
        self._unsynced += 1
        self._mine_today += 1
        return _LocalPermit(path, permit.sent_at)

    # -- feedback -------------------------------------------------------------------

    @property
    def rate(self) -> float:
        """The shared pace in force at the last grant, in calls per second."""
        if self._fallback is not None:
            return self._fallback.rate
        return self._rate

    @property
    def in_flight(self) -> int:
        """Calls of this process holding a slot right now."""
        return self._in_flight.in_use

    @property
    def remaining_calls(self) -> int | None:
        """Calls left under ``max_calls`` in this client (``None`` without that budget)."""
        m = self.config.max_calls
        return None if m is None else max(0, m - self.calls)

    @property
    def remaining_today(self) -> int | None:
        """Calls left today under the shared ``daily_limit``, as of the last grant."""
        d = self.config.daily_limit
        return None if d is None else max(0, d - self._shared_today - self._unsynced)

    def on_success(self, permit: Permit) -> None:
        """A call went through: counted in the shared log with the next request (the
        climb back runs on Redis time by itself)."""
        if isinstance(permit, _LocalPermit):
            if self._fallback is not None:
                self._fallback.on_success(permit)
        elif self.config.adaptive:
            self._ok += 1

    def on_throttled(self, permit: Permit) -> None:
        """The platform answered 67200002: slow every process of the account."""
        self.throttled += 1
        if not self.config.adaptive:
            return
        if isinstance(permit, _LocalPermit):
            if self._fallback is not None:
                self._fallback.on_throttled(permit)
            return
        task = asyncio.get_running_loop().create_task(self._report_throttle(permit.sent_at))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report_throttle(self, sent_at: float) -> None:
        ok, self._ok = self._ok, 0
        args = (
            repr(sent_at),
            repr(self._ceiling),
            repr(self._tau),
            repr(self._floor),
            repr(self.config.qps),
            repr(self.config.recovery),
            repr(self.config.headroom),
            ok,
            self._log_cap,
        )
        try:
            new = await self._throttle_script(keys=self._keys, args=args)
        except Exception as exc:  # feedback is best effort
            self._ok += ok
            log.warning(
                "shared rate gate: could not report a 67200002 to Redis at %s (%s)",
                self._url_shown,
                type(exc).__name__,
            )
            return
        if new:
            self._rate = float(new)
            log.info("shared rate gate: 67200002, account rate now %.2f calls/s", self._rate)

    # -- lifecycle ------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the Redis connections (pending throttle reports are finished). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._redis.aclose()

    def __repr__(self) -> str:
        return (
            f"<RedisRateGate {self._url_shown} qps={self.config.qps} rate={self.rate:.2f}/s "
            f"calls={self.calls} in_flight={self.in_flight} throttled={self.throttled}>"
        )
