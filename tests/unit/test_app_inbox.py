"""`AppInbox`, the ASGI receive queue of a connection: the contract of Hypercorn's asyncio.Queue."""

from __future__ import annotations

import asyncio
import random

import pytest

from gateway.app_inbox import AppInbox


async def test_items_come_out_in_order_and_get_waits_for_the_next() -> None:
    inbox = AppInbox(10)
    for item in range(3):
        await inbox.put(item)
    assert [await inbox.get() for _ in range(3)] == [0, 1, 2]
    waiting = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    await inbox.put("late")
    assert await asyncio.wait_for(waiting, 1) == "late"
    assert inbox.qsize() == 0


async def test_put_waits_while_the_inbox_is_full_like_hypercorns_bounded_queue() -> None:
    inbox = AppInbox(2)
    await inbox.put(1)
    await inbox.put(2)
    assert inbox.full()
    blocked = asyncio.create_task(inbox.put(3))
    await asyncio.sleep(0.01)
    assert not blocked.done(), "a full inbox holds the protocol back (back-pressure)"
    assert await inbox.get() == 1
    await asyncio.wait_for(blocked, 1)
    assert [await inbox.get(), await inbox.get()] == [2, 3]


async def test_zero_maxsize_is_unbounded() -> None:
    inbox = AppInbox(0)
    for item in range(1000):
        await asyncio.wait_for(inbox.put(item), 1)
    assert inbox.qsize() == 1000 and not inbox.full()


async def test_a_getter_cancelled_after_its_wake_up_passes_it_on_and_loses_nothing() -> None:
    inbox = AppInbox(10)
    first = asyncio.create_task(inbox.get())
    second = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait("only")  # wakes `first` ...
    first.cancel()  # ... which is cancelled before it runs
    assert await asyncio.wait_for(second, 1) == "only"
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_a_cancelled_putter_leaves_the_line_and_the_next_one_gets_in() -> None:
    inbox = AppInbox(1)
    await inbox.put("a")
    cancelled = asyncio.create_task(inbox.put("never"))
    waiting = asyncio.create_task(inbox.put("b"))
    await asyncio.sleep(0)
    cancelled.cancel()
    assert await inbox.get() == "a"
    await asyncio.wait_for(waiting, 1)
    assert await inbox.get() == "b"
    assert inbox.qsize() == 0


async def test_same_observable_behaviour_as_asyncio_queue_under_random_interleavings() -> None:
    """Differential: producers and a consumer run the same random schedule against both."""
    for seed in range(25):
        logs = []
        for make in (lambda: asyncio.Queue(3), lambda: AppInbox(3)):
            queue = make()
            rng = random.Random(seed)
            log: list[tuple[str, int]] = []

            async def producer(name: int, q=queue, r=rng, out=log) -> None:
                for item in range(20):
                    await q.put((name, item))
                    out.append(("put", name * 100 + item))
                    if r.random() < 0.3:
                        await asyncio.sleep(0)

            async def consumer(q=queue, r=rng, out=log) -> None:
                for _ in range(60):
                    name, item = await q.get()
                    out.append(("got", name * 100 + item))
                    if r.random() < 0.5:
                        await asyncio.sleep(0)

            await asyncio.wait_for(
                asyncio.gather(consumer(), *(producer(name) for name in range(3))), 5
            )
            logs.append(log)
        assert logs[0] == logs[1], f"seed {seed}"
