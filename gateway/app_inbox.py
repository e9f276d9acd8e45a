"""The ASGI `receive` queue of one connection: Hypercorn's `asyncio.Queue`, without its weight.

Hypercorn hands every ASGI app an `asyncio.Queue(max_app_queue_size)`: its `put` is what the
protocol calls for each WebSocket message, its `get` is the app's `receive`. A queue carries three
deques and an `Event` (about 2.3 KiB per connection while idle) and looks its event loop up on
every `get`. `AppInbox` keeps the same contract (FIFO, `put` waits while `maxsize` items wait,
`get` waits while it is empty, a cancelled waiter passes its wake-up on) in a few slots and short
lists (the app is usually the one waiter): nothing is allocated while a connection is idle but its
waiting `get`'s future, and a message that arrives meanwhile costs one future.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


class AppInbox:
    """A bounded FIFO between Hypercorn's protocol (`put`) and the ASGI app (`get`)."""

    __slots__ = ("_getters", "_items", "_maxsize", "_putters")

    def __init__(self, maxsize: int = 0) -> None:
        self._maxsize = maxsize  # 0 or less: unbounded, as asyncio.Queue
        self._items: list[Any] | None = None  # None while empty: nothing held by an idle inbox
        self._getters: list[asyncio.Future[None]] | None = None
        self._putters: list[asyncio.Future[None]] | None = None

    def qsize(self) -> int:
        """Items waiting to be received."""
        return len(self._items) if self._items is not None else 0

    def full(self) -> bool:
        """True when `put` would wait."""
        return 0 < self._maxsize <= self.qsize()

    async def put(self, item: Any) -> None:
        """Append `item`, waiting while the inbox is full."""
        while self.full():
            if self._putters is None:
                self._putters = []
            await _wait(self._putters, self.full)
        self.put_nowait(item)

    def put_nowait(self, item: Any) -> None:
        """Append `item` (the bound is `put`'s business) and wake the first waiting `get`."""
        if self._items is None:
            self._items = [item]
        else:
            self._items.append(item)
        _wake_first(self._getters)

    async def get(self) -> Any:
        """The oldest item, waiting while there is none."""
        while self._items is None:
            if self._getters is None:
                self._getters = []
            await _wait(self._getters, self._empty)
        items = self._items
        item = items.pop(0)
        if not items:
            self._items = None
        _wake_first(self._putters)
        return item

    def _empty(self) -> bool:
        return self._items is None


async def _wait(waiters: list[asyncio.Future[None]], still_blocked: Any) -> None:
    """Wait in line in `waiters`; a waiter cancelled after its wake-up hands it to the next."""
    waiter = asyncio.get_running_loop().create_future()
    waiters.append(waiter)
    try:
        await waiter
    except BaseException:
        waiter.cancel()
        with contextlib.suppress(ValueError):  # else already woken and taken off the line
            waiters.remove(waiter)
        if not waiter.cancelled() and not still_blocked():  # it was woken: pass that on
            _wake_first(waiters)
        raise


def _wake_first(waiters: list[asyncio.Future[None]] | None) -> None:
    while waiters:
        waiter = waiters.pop(0)
        if not waiter.done():
            waiter.set_result(None)
            return
