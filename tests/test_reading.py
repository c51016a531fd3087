"""Reading a subscription: get, get_nowait, drain, iteration, with, async
with, aget, async for; wake-ups across threads; release on unsubscribe;
cancellation.

Sleeps here only widen a race window (so a reader is most likely parked
when the publish or unsubscribe comes); every assertion holds whatever the
scheduling, and nothing asserts on how long anything took.
"""

from __future__ import annotations

import asyncio
import threading
import time
from queue import Empty

import pytest

from _helpers import finish, outcome, start
from fastopslog._common import SubscriptionClosed

WAIT = 5.0  # generous bound on any single wait, against hangs only
PARK = 0.05  # lets a reader park before the event it waits for


def E(impl, n, **kw):
    return impl.OpsLogEntry(time=1700000000.0 + n, user_id=n, **kw)


def tags(entries):
    return [e.user_id for e in entries]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


# --- get / get_nowait / drain -----------------------------------------------------------


def test_get_returns_in_order(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()
    for n in range(3):
        b.publish(E(impl, n))
    assert sub.get().user_id == 0
    assert sub.get(timeout=WAIT).user_id == 1
    assert sub.get(WAIT).user_id == 2


def test_get_timeout_raises_queue_empty(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()
    with pytest.raises(Empty):
        sub.get(timeout=0)
    with pytest.raises(Empty):
        sub.get(timeout=0.01)
    with pytest.raises(Empty):
        sub.get(timeout=0.0)
    b.publish(E(impl, 0))
    assert sub.get(timeout=0).user_id == 0  # still usable


def test_get_nowait(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()
    with pytest.raises(Empty):
        sub.get_nowait()
    b.publish(E(impl, 0))
    assert sub.get_nowait().user_id == 0
    with pytest.raises(Empty):
        sub.get_nowait()


def test_queue_empty_is_not_subscription_closed(impl):
    assert not issubclass(SubscriptionClosed, Empty)
    assert not issubclass(Empty, SubscriptionClosed)


def test_drain(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()
    assert sub.drain() == []
    for n in range(5):
        b.publish(E(impl, n))
    assert tags(sub.drain(max_items=2)) == [0, 1]
    assert sub.drain(0) == []
    assert len(sub) == 3
    assert tags(sub.drain(max_items=None)) == [2, 3, 4]
    assert sub.drain() == []
    b.publish(E(impl, 5))
    assert tags(sub.drain(100)) == [5]
    assert type(sub.drain()) is list


def test_reads_mix(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()
    for n in range(4):
        b.publish(E(impl, n))
    assert sub.get_nowait().user_id == 0
    assert tags(sub.drain(1)) == [1]
    assert sub.get(timeout=0).user_id == 2
    assert tags(sub.drain()) == [3]


def test_closed_and_empty(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()
    sub.unsubscribe()
    with pytest.raises(SubscriptionClosed):
        sub.get()
    with pytest.raises(SubscriptionClosed):
        sub.get(timeout=0)
    with pytest.raises(SubscriptionClosed):
        sub.get_nowait()
    assert sub.drain() == []
    assert list(sub) == []


def test_subscription_closed_importable_from_package():
    import fastopslog

    assert fastopslog.SubscriptionClosed is SubscriptionClosed
    assert issubclass(SubscriptionClosed, Exception)


# --- iteration and with -------------------------------------------------------------


def test_iteration_until_unsubscribed(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()
    for n in range(3):
        b.publish(E(impl, n))
    sub.unsubscribe()
    assert iter(sub) is sub
    assert tags(sub) == [0, 1, 2]
    assert list(sub) == []


def test_iteration_ends_when_unsubscribed_from_the_loop(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()
    for n in range(5):
        b.publish(E(impl, n))
    got = []
    for e in sub:
        got.append(e.user_id)
        if e.user_id == 1:
            sub.unsubscribe()
    assert got == [0, 1, 2, 3, 4]  # buffered entries are still read


def test_iteration_blocks_for_live_entries(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()

    def produce():
        for n in range(3):
            time.sleep(0.01)
            b.publish(E(impl, n))
        sub.unsubscribe()

    producer = start(produce)
    got = [e.user_id for e in sub]
    finish(producer)
    assert got == [0, 1, 2]


def test_with_block_unsubscribes(impl):
    b = impl.OpsLogBroadcaster()
    with b.subscribe() as sub:
        assert isinstance(sub, impl.OpsLogSubscription)
        assert b.stats().subscribers == 1
        b.publish(E(impl, 0))
    assert sub.closed
    assert b.stats().subscribers == 0
    b.publish(E(impl, 1))
    assert tags(sub.drain()) == [0]


def test_with_returns_the_subscription(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()
    with sub as same:
        assert same is sub
    assert sub.closed


def test_with_block_unsubscribes_on_error(impl):
    b = impl.OpsLogBroadcaster()
    with pytest.raises(KeyError):
        with b.subscribe() as sub:
            raise KeyError("boom")
    assert sub.closed
    assert b.stats().subscribers == 0


def test_with_after_manual_unsubscribe(impl):
    b = impl.OpsLogBroadcaster()
    with b.subscribe() as sub:
        sub.unsubscribe()
    assert sub.closed and b.stats().subscribers == 0


# --- asyncio ---------------------------------------------------------------------


def test_aget_and_async_for(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()
    for n in range(3):
        b.publish(E(impl, n))

    async def main():
        first = await sub.aget()
        rest = []
        sub.unsubscribe()
        async for e in sub:
            rest.append(e.user_id)
        with pytest.raises(SubscriptionClosed):
            await sub.aget()
        return first.user_id, rest

    assert run(main()) == (0, [1, 2])


def test_aiter_is_self(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()
    assert sub.__aiter__() is sub


def test_async_with_unsubscribes(impl):
    b = impl.OpsLogBroadcaster()

    async def main():
        async with b.subscribe() as sub:
            assert b.stats().subscribers == 1
            b.publish(E(impl, 0))
            got = await sub.aget()
        return sub, got

    sub, got = run(main())
    assert got.user_id == 0
    assert sub.closed and b.stats().subscribers == 0


def test_async_with_unsubscribes_on_error(impl):
    b = impl.OpsLogBroadcaster()
    holder = []

    async def main():
        async with b.subscribe() as sub:
            holder.append(sub)
            raise KeyError("boom")

    with pytest.raises(KeyError):
        run(main())
    assert holder[0].closed and b.stats().subscribers == 0


def test_aget_woken_by_publish_on_the_same_loop(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()

    async def main():
        task = asyncio.ensure_future(sub.aget())
        for _ in range(3):
            await asyncio.sleep(0)
        assert not task.done()
        b.publish(E(impl, 7))
        return (await asyncio.wait_for(task, WAIT)).user_id

    assert run(main()) == 7


def test_async_for_live(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()

    async def produce():
        for n in range(3):
            await asyncio.sleep(0.001)
            b.publish(E(impl, n))
        sub.unsubscribe()

    async def main():
        producer = asyncio.ensure_future(produce())
        got = [e.user_id async for e in sub]
        await producer
        return got

    assert run(main()) == [0, 1, 2]


def test_aget_cancelled_leaves_subscription_usable(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()

    async def main():
        task = asyncio.ensure_future(sub.aget())
        for _ in range(3):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        b.publish(E(impl, 1))
        assert (await asyncio.wait_for(sub.aget(), WAIT)).user_id == 1
        # and a timeout (a cancellation too) loses nothing either
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(sub.aget(), 0.01)
        b.publish(E(impl, 2))
        assert (await asyncio.wait_for(sub.aget(), WAIT)).user_id == 2

    run(main())
    assert b.stats().subscribers == 1 and not sub.closed


def test_aget_cancelled_after_wakeup_loses_no_entry(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()

    async def main():
        task = asyncio.ensure_future(sub.aget())
        for _ in range(3):
            await asyncio.sleep(0)
        b.publish(E(impl, 1))  # wakes the task ...
        task.cancel()  # ... which is cancelled before it runs
        try:
            got = [(await task).user_id]
        except asyncio.CancelledError:
            got = []
        got += [e.user_id for e in sub.drain()]
        return got

    assert run(main()) == [1]


def test_aget_cancelled_then_unsubscribe(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()

    async def main():
        task = asyncio.ensure_future(sub.aget())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        sub.unsubscribe()
        with pytest.raises(SubscriptionClosed):
            await sub.aget()

    run(main())


def test_unsubscribe_releases_aget_on_the_same_loop(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()

    async def main():
        waiting = [asyncio.ensure_future(sub.aget()) for _ in range(3)]
        iterating = asyncio.ensure_future(_collect(sub))
        for _ in range(3):
            await asyncio.sleep(0)
        sub.unsubscribe()
        results = await asyncio.wait_for(
            asyncio.gather(*waiting, return_exceptions=True), WAIT
        )
        assert all(isinstance(r, SubscriptionClosed) for r in results), results
        assert await asyncio.wait_for(iterating, WAIT) == []

    run(main())


async def _collect(sub):
    return [e async for e in sub]


# --- threads -----------------------------------------------------------------------


def test_get_woken_by_publish_from_another_thread(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()
    reader = start(sub.get, WAIT)
    time.sleep(PARK)
    b.publish(E(impl, 3))
    assert finish(reader).user_id == 3


def test_get_without_timeout_woken_by_publish(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()
    reader = start(sub.get)
    time.sleep(PARK)
    b.publish(E(impl, 4))
    assert finish(reader).user_id == 4


def test_get_woken_by_publish_from_a_third_thread(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()
    reader = start(sub.get, WAIT)

    def publish_later():
        time.sleep(PARK)
        b.publish(E(impl, 5))

    publisher = start(publish_later)
    finish(publisher)
    assert finish(reader).user_id == 5


def test_two_blocked_readers_each_get_one(impl):
    # Both parked readers must be woken: a reader left parked while an entry
    # waits in the buffer would block until the next publish.
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()
    readers = [start(sub.get) for _ in range(2)]
    try:
        time.sleep(PARK)
        b.publish(E(impl, 1))
        b.publish(E(impl, 2))
        assert sorted(finish(r).user_id for r in readers) == [1, 2]
    finally:
        sub.unsubscribe()  # releases a reader that was never woken


def test_two_awaiting_readers_each_get_one(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()

    async def main():
        tasks = [asyncio.ensure_future(sub.aget()) for _ in range(2)]
        for _ in range(3):
            await asyncio.sleep(0)
        b.publish(E(impl, 1))
        b.publish(E(impl, 2))
        done = await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
        return sorted(e.user_id for e in done)

    assert run(main()) == [1, 2]


def test_unsubscribe_releases_blocked_get(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()
    forever = start(sub.get)
    bounded = start(sub.get, 60)
    iterating = start(lambda: [e for e in sub])
    time.sleep(PARK)
    sub.unsubscribe()
    assert isinstance(outcome(forever), SubscriptionClosed)
    assert isinstance(outcome(bounded), SubscriptionClosed)  # not queue.Empty
    assert finish(iterating) == []


def test_unsubscribe_from_a_third_thread_releases_get(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()
    reader = start(sub.get)
    time.sleep(PARK)
    finish(start(sub.unsubscribe))
    assert isinstance(outcome(reader), SubscriptionClosed)


def test_blocked_reader_takes_buffered_entry_before_closed(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()

    def read_two():
        return [sub.get(WAIT).user_id, _closed_or(sub)]

    reader = start(read_two)
    time.sleep(PARK)
    b.publish(E(impl, 8))
    sub.unsubscribe()
    assert finish(reader) == [8, "closed"]


def _closed_or(sub):
    try:
        return sub.get(WAIT).user_id
    except SubscriptionClosed:
        return "closed"


def test_get_timeout_in_a_thread_then_usable(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()
    reader = start(sub.get, 0.02)
    assert isinstance(outcome(reader), Empty)
    b.publish(E(impl, 1))
    assert sub.get(timeout=WAIT).user_id == 1


def test_aget_woken_by_publish_from_another_thread(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()

    async def main():
        def publish_later():
            time.sleep(PARK)
            b.publish(E(impl, 9))

        publisher = start(publish_later)
        got = await asyncio.wait_for(sub.aget(), WAIT)
        finish(publisher)
        return got.user_id

    assert run(main()) == 9


def test_async_for_fed_from_another_thread(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()

    def produce():
        for n in range(20):
            b.publish(E(impl, n))
            if n % 5 == 0:
                time.sleep(0.005)
        sub.unsubscribe()

    async def main():
        producer = start(produce)
        got = [e.user_id async for e in sub]
        finish(producer)
        return got

    assert run(main()) == list(range(20))


def test_unsubscribe_from_another_thread_releases_aget(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()

    async def main():
        def unsubscribe_later():
            time.sleep(PARK)
            sub.unsubscribe()

        closer = start(unsubscribe_later)
        with pytest.raises(SubscriptionClosed):
            await asyncio.wait_for(sub.aget(), WAIT)
        finish(closer)

    run(main())


def test_thread_reader_and_loop_reader_woken_by_one_publish(impl):
    # A reader blocked in get() in one thread and a coroutine awaiting
    # aget() on an event loop in another thread, both woken by a publish
    # made from a third thread (here: the test's own).
    b = impl.OpsLogBroadcaster()
    thread_sub = b.subscribe()
    loop_sub = b.subscribe()
    ready = threading.Event()

    async def loop_reader():
        task = asyncio.ensure_future(loop_sub.aget())
        await asyncio.sleep(0)
        ready.set()
        return (await asyncio.wait_for(task, WAIT)).user_id

    thread_reader = start(lambda: thread_sub.get(WAIT).user_id)
    loop_thread = start(lambda: asyncio.run(loop_reader()))
    assert ready.wait(WAIT)
    time.sleep(PARK)
    b.publish(E(impl, 42))
    assert finish(thread_reader) == 42
    assert finish(loop_thread) == 42


def test_readers_on_two_loops_in_two_threads(impl):
    b = impl.OpsLogBroadcaster()
    subs = [b.subscribe() for _ in range(2)]

    async def read_three(sub):
        return [(await asyncio.wait_for(sub.aget(), WAIT)).user_id for _ in range(3)]

    loops = [start(lambda s=s: asyncio.run(read_three(s))) for s in subs]
    for n in range(3):
        time.sleep(0.01)
        b.publish(E(impl, n))
    assert [finish(t) for t in loops] == [[0, 1, 2], [0, 1, 2]]


def _park_on_a_loop_then_close_it(sub):
    """Leave a coroutine parked in ``sub.aget()`` on an event loop that is
    then closed without cancelling it (as ``loop.close()`` allows)."""
    loop = asyncio.new_event_loop()
    task = loop.create_task(sub.aget())
    loop.run_until_complete(asyncio.sleep(0))
    assert not task.done()
    loop.close()
    task._log_destroy_pending = False  # type: ignore[attr-defined]  # keep the expected leak out of the log
    return task


def test_publish_after_parked_loop_closed_in_another_thread(impl):
    # The publish never fails because of a subscriber, even one whose
    # reader's event loop is gone.
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()
    other = b.subscribe()
    task = finish(start(_park_on_a_loop_then_close_it, sub))
    reader = start(other.get, WAIT)
    time.sleep(PARK)
    b.publish(E(impl, 1))
    assert finish(reader).user_id == 1
    assert sub.get_nowait().user_id == 1
    sub.unsubscribe()
    assert not task.done()


def test_publish_after_parked_loop_closed_in_the_same_thread(impl):
    # Same, with the publish made from the thread that ran the closed loop:
    # it must neither raise nor skip waking the other readers.
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()
    other = b.subscribe()
    task = _park_on_a_loop_then_close_it(sub)
    reader = start(other.get, WAIT)
    time.sleep(PARK)
    b.publish(E(impl, 1))
    assert finish(reader).user_id == 1
    assert sub.get_nowait().user_id == 1
    assert b.stats() == (1, 0, 2)
    del task


def test_unsubscribe_after_parked_loop_closed_in_the_same_thread(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()
    task = _park_on_a_loop_then_close_it(sub)
    sub.unsubscribe()
    assert sub.closed and b.stats().subscribers == 0
    del task
