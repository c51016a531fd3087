"""A subscription dropped without ``unsubscribe()`` is unsubscribed once the
garbage collector frees it, and its buffered entries are freed with it.

Usage: dropped_subscription.py {pure|c}

Also while the collector runs inside another call on the same broadcaster
(re-entrancy: it must neither deadlock nor corrupt state). A watchdog dumps
every thread's stack and exits if the script hangs.
"""

from __future__ import annotations

import faulthandler
import gc
import os
import random
import sys
import weakref
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _leakcheck import Failures, full_collect, implementation

IMPL, mod = implementation()
fail = Failures("dropped_subscription", IMPL)


def make(model: str = "gpt-4o", time: float = 1_700_000_000.25) -> Any:
    return mod.OpsLogEntry(time=time, model=model, status=200)


def subscribers(b: Any) -> int:
    return int(b.stats().subscribers)


def plain_drop() -> None:
    name = "dropped subscription"
    b = mod.OpsLogBroadcaster(0)
    keep = b.subscribe(None, 8)  # an unrelated live one
    sub = b.subscribe(None, 8)
    entries = [make() for _ in range(5)]
    refs = [weakref.ref(e) for e in entries]
    for e in entries:
        b.publish(e)
    del entries, e
    keep.drain()
    fail.check(subscribers(b) == 2, f"{name}: {subscribers(b)} subscribers, expected 2")
    fail.check(all(r() is not None for r in refs), f"{name}: buffered entries died early")
    del sub
    full_collect()
    fail.check(
        subscribers(b) == 1,
        f"{name}: stats().subscribers is {subscribers(b)} after collection, expected 1",
    )
    fail.check(
        all(r() is None for r in refs), f"{name}: its buffered entries are still alive after collection"
    )
    before = b.stats()
    b.publish(make())
    after = b.stats()
    fail.check(
        (after.published, after.dropped) == (before.published + 1, before.dropped),
        f"{name}: publishing after collection gave {after}, from {before}",
    )
    fail.check(len(keep) == 1, f"{name}: the live subscription got {len(keep)} entries, expected 1")
    keep.unsubscribe()
    fail.check(subscribers(b) == 0, f"{name}: {subscribers(b)} subscribers at the end")


def in_a_cycle() -> None:
    name = "subscription in a reference cycle"
    b = mod.OpsLogBroadcaster(0)
    gc.disable()
    try:
        holder: list[Any] = [b.subscribe(None, 8)]
        holder.append(holder)
        e = make()
        ref = weakref.ref(e)
        b.publish(e)
        del e, holder
        fail.check(subscribers(b) == 1, f"{name}: unsubscribed before the cycle was collected?")
        gc.collect()
    finally:
        gc.enable()
    full_collect()
    fail.check(subscribers(b) == 0, f"{name}: stats().subscribers is {subscribers(b)} after gc.collect()")
    fail.check(ref() is None, f"{name}: its buffered entry is still alive after gc.collect()")


def stalled_drop() -> None:
    name = "dropped while full"
    b = mod.OpsLogBroadcaster(0)
    sub = b.subscribe(None, 2)
    for _ in range(5):
        b.publish(make())
    fail.check(b.stats().dropped == 3, f"{name}: dropped={b.stats().dropped}, expected 3")
    del sub
    full_collect()
    for _ in range(5):
        b.publish(make())
    fail.check(
        b.stats().dropped == 3,
        f"{name}: a collected subscription still counts drops ({b.stats().dropped})",
    )
    fail.check(subscribers(b) == 0, f"{name}: {subscribers(b)} subscribers after collection")


def many() -> None:
    name = "many dropped subscriptions"
    b = mod.OpsLogBroadcaster(16)
    refs = []
    for i in range(2_000):
        sub = b.subscribe(mod.OpsLogFilter(model=f"m{i % 7}") if i % 2 else None, 1 + i % 5, replay=i % 3)
        e = make(model=f"m{i % 7}")
        refs.append(weakref.ref(e))
        b.publish(e)
        if i % 3 == 0:
            sub.unsubscribe()
        if i % 5 == 0:
            cycle: list[Any] = [sub]
            cycle.append(cycle)
            del cycle
    del sub, e
    full_collect()
    fail.check(subscribers(b) == 0, f"{name}: stats().subscribers is {subscribers(b)}, expected 0")
    alive = sum(r() is not None for r in refs)
    fail.check(alive <= 16, f"{name}: {alive} entries alive, but only the history of 16 may hold any")
    # The broadcaster still works normally.
    fresh = b.subscribe(mod.OpsLogFilter(model="m3"), 4)
    for i in range(7):
        b.publish(make(model=f"m{i}"))
    fail.check(len(fresh) == 1, f"{name}: a new subscription got {len(fresh)} entries, expected 1")
    fail.check(subscribers(b) == 1, f"{name}: {subscribers(b)} subscribers, expected 1")
    fresh.unsubscribe()


class Trash:
    """Cyclic garbage holding a subscription: freed by the cycle collector,
    which may run in the middle of any allocating call."""

    def __init__(self, sub: Any) -> None:
        self.sub = sub
        self.me = self


def collected_during_calls() -> None:
    """The collector, run at varying points by varying thresholds, frees
    dropped subscriptions in the middle of subscribe, unsubscribe, publish,
    snapshot and drain on the same broadcaster (so, on the same thread,
    while that call holds the broadcaster's lock)."""
    name = "collected during another call"
    b = mod.OpsLogBroadcaster(64)
    # Subscriptions routed by model, account and group, so that every
    # change of the subscriber set has some work to do.
    keep = [
        b.subscribe(mod.OpsLogFilter(model=f"k{i}", account_id=i % 3, group_id=i % 2), 4)
        for i in range(40)
    ]
    probe = b.subscribe(mod.OpsLogFilter(model="probe"), 1)
    live = b.subscribe(None, 64, overflow="drop_oldest")
    rnd = random.Random(20240601)
    errors: dict[str, int] = {}
    published = 0
    old = gc.get_threshold()
    try:
        for i in range(12_000):
            gc.set_threshold(rnd.randint(1, 150), 1, 1)
            try:
                Trash(b.subscribe(mod.OpsLogFilter(model=f"m{i % 40}"), 1))
                if i % 5 == 0:
                    Trash(b.subscribe(None, 2, replay=3))
                if i % 13 == 0:
                    Trash(b.subscribe(mod.OpsLogFilter(group_id=1), 2, since_seq=max(0, i - 5)))
                if i % 7 == 0:
                    b.snapshot(mod.OpsLogFilter(model="m1"), 5)
                if i % 11 == 0:
                    live.drain(3)
                if i % 17 == 0:
                    b.subscribe(mod.OpsLogFilter(account_id=2), 2).unsubscribe()
                e = make(model=f"m{i % 40}") if i % 2 else make(time=0.0)
                b.publish(e)
                published += 1
            except Exception as exc:
                key = f"{type(exc).__name__}: {exc}"
                errors[key] = errors.get(key, 0) + 1
    finally:
        gc.set_threshold(*old)
    full_collect()
    fail.check(not errors, f"{name}: calls raised {errors}")
    stats = b.stats()
    fail.check(stats.published == published, f"{name}: published={stats.published}, expected {published}")
    fail.check(stats.subscribers == 42, f"{name}: stats().subscribers is {stats.subscribers}, expected 42")
    # The subscriber set is consistent afterwards: of the subscriptions
    # whose buffer can fill, exactly the probe matches.
    live.drain()
    for _ in range(3):
        b.publish(make(model="probe"))
    after = b.stats()
    fail.check(
        (after.dropped - stats.dropped, probe.dropped, len(probe)) == (2, 2, 1),
        f"{name}: after 3 entries for the probe only: dropped +{after.dropped - stats.dropped},"
        f" probe.dropped={probe.dropped}, len(probe)={len(probe)} (expected +2, 2, 1)",
    )
    for sub in (*keep, probe, live):
        sub.unsubscribe()
    fail.check(subscribers(b) == 0, f"{name}: {subscribers(b)} subscribers left")


def main() -> None:
    faulthandler.dump_traceback_later(90, exit=True)  # a deadlock ends here
    plain_drop()
    in_a_cycle()
    stalled_drop()
    many()
    collected_during_calls()
    faulthandler.cancel_dump_traceback_later()
    fail.finish()


if __name__ == "__main__":
    main()
