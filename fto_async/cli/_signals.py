"""Signals during a screening run: Ctrl-C and SIGTERM stop it gently. Strictly private.

While the batch runs, :func:`signal_handlers` routes SIGINT and SIGTERM to the run's
callback (the first stops submitting and waits for in-flight submits, the second stops
at once); while the output is rebuilt, :func:`interrupts_during_rebuild` turns them into
:class:`KeyboardInterrupt` (the output is written atomically: the old file stays whole).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["interrupts_during_rebuild", "signal_handlers"]


@contextlib.contextmanager
def signal_handlers(callback: Callable[[], None]) -> Iterator[None]:
    """Route SIGINT and SIGTERM to ``callback`` while in the block (main thread only)."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, callback)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, Windows
            continue
        installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


@contextlib.contextmanager
def interrupts_during_rebuild() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`KeyboardInterrupt` in the block (main thread only).

    The output is written atomically, so stopping mid-way leaves the old file whole.
    """
    def interrupt(_sig: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous: list[tuple[signal.Signals, Any]] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous.append((sig, signal.signal(sig, interrupt)))
        except (ValueError, OSError):  # not the main thread
            continue
    try:
        yield
    finally:
        for sig, handler in previous:
            signal.signal(sig, handler)
