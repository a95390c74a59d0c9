"""The stream pump: a producer task fills a queue, the caller iterates what it puts.

One pump serves every batch entry point (:func:`~fto_async.batch.screen_many` and its
siblings, :func:`~fto_async.batch.poll_many`, the follow-up stage): :func:`_pump` runs
the producer as a task, yields each queued item until the :data:`_END` marker, re-raises
what killed the producer (a lone cause out of its task groups), and cancels the producer
when the consumer leaves early (``break``, cancellation, Ctrl-C). :func:`_pairs` reads
the input, sync or async, as ``(key, value)`` pairs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine, Iterable
from typing import Any

from ._values import Item

__all__: list[str] = []

#: The producer's end marker in the queue.
_END = object()


async def _pump(
    queue: asyncio.Queue[Any],
    produce: Callable[[], Coroutine[Any, Any, None]],
    finish: Callable[[], None] | None = None,
) -> AsyncIterator[Any]:
    """Run ``produce()`` and yield what it puts in ``queue`` until :data:`_END`; then
    ``finish()`` (it may raise the batch's verdict). Leaving early cancels the producer."""
    driver = asyncio.create_task(produce())
    try:
        while (item := await _next(queue, driver)) is not _END:
            yield item
        await driver
        if finish is not None:
            finish()
    finally:
        if not driver.done():
            driver.cancel()
            await asyncio.gather(driver, return_exceptions=True)


async def _next(queue: asyncio.Queue[Any], producer: asyncio.Task[None]) -> Any:
    """The next queued item; if the producer dies first, raise what killed it."""
    if not queue.empty():
        return queue.get_nowait()
    getter = asyncio.ensure_future(queue.get())
    try:
        await asyncio.wait((getter, producer), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not getter.done():
            getter.cancel()
    if getter.done() and not getter.cancelled():
        return getter.result()
    try:
        producer.result()
    except BaseExceptionGroup as group:  # TaskGroups wrap: surface a lone cause as is
        raise _lone(group) from group
    return _END  # the producer ended without its end marker; nothing more will come


def _lone(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


async def _pairs(items: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[tuple[Any, Any]]:
    """Yield ``(key, value)`` from plain values (keyed by position) or pairs."""
    position = 0
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield _pair(item, position)
            position += 1
    else:
        for item in items:
            yield _pair(item, position)
            position += 1
            if position % 256 == 0:
                await asyncio.sleep(0)  # a long sync input must not starve the loop


def _pair(item: Any, position: int) -> tuple[Any, Any]:
    if isinstance(item, Item):
        return item.key, item
    if isinstance(item, tuple) and len(item) == 2:
        return item[0], item[1]
    return position, item
