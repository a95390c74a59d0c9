"""A virtual-time event loop for tests: sleeping advances a fake clock instantly.

When nothing is ready, the loop jumps its clock to the next timer instead of blocking,
so a minute of pacing runs in milliseconds and every timestamp is exact, whatever the
machine's load. It suits the rate gate, the retry policy and the poll scheduler, and
also the emulator with a client over loopback: a loopback send is readable by the peer
when the send returns, so no byte is in transit while the clock jumps (measured: the
same 1,000-call run gives the same windows to the microsecond, idle or beside a busy
loop). Work handed to a thread (``run_in_executor``, ``asyncio.to_thread``: the
journal's SQLite writes, ``getaddrinfo``) takes no virtual time: while any is pending
the loop waits for it in real time and does not jump.

An ``async def`` test runs on it with the :func:`virtual` decorator (its fixtures
must then be sync ones), or it calls :func:`run_virtual` itself.
"""

from __future__ import annotations

import asyncio
import functools
import selectors
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class _JumpSelector(selectors.DefaultSelector):
    loop: VirtualTimeLoop

    def select(self, timeout: float | None = None) -> list[Any]:
        if self.loop.threads:
            # A thread is working for the loop: wait for it (its result wakes the
            # selector through the self-pipe) without moving the virtual clock.
            return super().select(None if timeout is None else min(timeout, 0.05))
        events = super().select(0)
        if not events and timeout is not None and timeout > 0:
            self.loop.now += timeout
        return events


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose ``time()`` only moves when every task is waiting on a timer."""

    def __init__(self) -> None:
        selector = _JumpSelector()
        super().__init__(selector)
        selector.loop = self
        self.now = 0.0
        self.threads = 0  # executor jobs not yet done
        self._clock_resolution = 1e-6  # absorbs float rounding of jumps

    def time(self) -> float:
        return self.now

    def run_in_executor(self, executor: Any, func: Callable[..., T], *args: Any) -> Any:
        future = super().run_in_executor(executor, func, *args)
        self.threads += 1
        future.add_done_callback(self._thread_done)
        return future

    def _thread_done(self, _future: Any) -> None:
        self.threads -= 1


def run_virtual(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main()`` to completion on a fresh virtual-time loop."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(main())  # type: ignore[arg-type]


def virtual(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an ``async def`` test on a fresh virtual-time loop (its fixtures must be sync)::

        @virtual
        async def test_times_out(tmp_path): ...
    """

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        run_virtual(lambda: test(*args, **kwargs))

    return run
