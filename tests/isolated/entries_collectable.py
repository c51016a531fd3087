"""Published entries are freed once history and every buffer let go of them.

Usage: entries_collectable.py {pure|c}

Each scenario publishes an entry it keeps only a weak reference to, checks
that the entry is alive while something legitimately holds it (so the check
cannot pass vacuously), lets go of it the way the scenario says, and checks
that the weak reference is dead after ``gc.collect()``.
"""

from __future__ import annotations

import gc
import os
import queue
import sys
import weakref
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _leakcheck import Failures, full_collect, implementation

IMPL, mod = implementation()
fail = Failures("entries_collectable", IMPL)


def make(model: str = "gpt-4o", time: float = 1_700_000_000.5, **kw: Any) -> Any:
    return mod.OpsLogEntry(time=time, model=model, status=200, latency_ms=12, **kw)


def publish_watched(b: Any, **kw: Any) -> weakref.ref[Any]:
    """Publish a fresh entry into ``b``; keep only a weak reference to it."""
    e = make(**kw)
    ref = weakref.ref(e)
    b.publish(e)
    return ref


def filler(b: Any, n: int, model: str = "filler") -> None:
    for _ in range(n):
        b.publish(make(model=model))


def alive(ref: weakref.ref[Any], scenario: str, holder: str) -> bool:
    full_collect()
    return fail.check(
        ref() is not None,
        f"{scenario}: the entry died while {holder} still held it",
    )


def dead(ref: weakref.ref[Any], scenario: str, after: str) -> None:
    full_collect()
    obj = ref()
    if obj is None:
        return
    referrers = [type(r).__name__ for r in gc.get_referrers(obj) if r is not globals()]
    del obj
    fail.check(
        False,
        f"{scenario}: the entry is still alive after {after} "
        f"(refcount {sys.getrefcount(ref()) - 1}, gc referrers: {referrers or 'none'})",
    )


SCENARIOS: list[Callable[[], None]] = []


def scenario(fn: Callable[[], None]) -> Callable[[], None]:
    SCENARIOS.append(fn)
    return fn


@scenario
def leaves_history() -> None:
    name = "history only"
    b = mod.OpsLogBroadcaster(3)
    ref = publish_watched(b)
    filler(b, 2)
    if alive(ref, name, "history"):
        filler(b, 1)
        dead(ref, name, "being pushed out of a history of 3")


@scenario
def stamped_leaves_history() -> None:
    name = "stamped entry (time=0)"
    b = mod.OpsLogBroadcaster(1)
    ref = publish_watched(b, time=0.0)
    if alive(ref, name, "history"):
        filler(b, 1)
        dead(ref, name, "being pushed out of a history of 1")


@scenario
def drained() -> None:
    name = "drained"
    b = mod.OpsLogBroadcaster(0)
    sub = b.subscribe(None, 8)
    ref = publish_watched(b)
    if alive(ref, name, "a buffer"):
        got = sub.drain()
        if alive(ref, name, "the drained list"):
            del got
            dead(ref, name, "drain() and dropping the list")
    sub.unsubscribe()


@scenario
def read_one_by_one() -> None:
    name = "get_nowait / get / next"
    b = mod.OpsLogBroadcaster(0)
    sub = b.subscribe(None, 8)
    refs = [publish_watched(b) for _ in range(3)]
    if alive(refs[0], name, "a buffer"):
        sub.get_nowait()
        sub.get(timeout=0)
        next(sub)
        for ref in refs:
            dead(ref, name, "being read and dropped")
        try:
            sub.get_nowait()
            fail.check(False, f"{name}: an emptied buffer gave an entry")
        except queue.Empty:
            pass
    sub.unsubscribe()


@scenario
def history_and_two_buffers() -> None:
    name = "history and two buffers"
    b = mod.OpsLogBroadcaster(2)
    s1 = b.subscribe(mod.OpsLogFilter(model="gpt-4o"), 8)
    s2 = b.subscribe(None, 8)
    ref = publish_watched(b)
    filler(b, 2)  # out of history; s1 does not match the fillers
    if alive(ref, name, "two buffers"):
        s1.drain()
        if alive(ref, name, "the second buffer"):
            s2.drain(1)
            dead(ref, name, "leaving history and both buffers")
    s1.unsubscribe()
    s2.unsubscribe()


@scenario
def refused_by_a_full_buffer() -> None:
    name = "refused by a full buffer (drop_newest)"
    b = mod.OpsLogBroadcaster(0)
    sub = b.subscribe(None, 1)
    filler(b, 1)
    ref = publish_watched(b)
    fail.check(sub.dropped == 1, f"{name}: dropped={sub.dropped}, expected 1")
    dead(ref, name, "being refused by the only subscriber")
    sub.unsubscribe()


@scenario
def evicted_oldest() -> None:
    name = "evicted (drop_oldest)"
    b = mod.OpsLogBroadcaster(0)
    sub = b.subscribe(None, 2, overflow="drop_oldest")
    ref = publish_watched(b)
    filler(b, 1)
    if alive(ref, name, "a drop_oldest buffer"):
        filler(b, 1)
        dead(ref, name, "eviction from a full drop_oldest buffer")
    sub.unsubscribe()


@scenario
def unsubscribed_then_dropped() -> None:
    name = "unsubscribed with entries buffered"
    b = mod.OpsLogBroadcaster(0)
    sub = b.subscribe(None, 8)
    refs = [publish_watched(b) for _ in range(3)]
    sub.unsubscribe()
    if alive(refs[0], name, "an unsubscribed subscription (buffered entries stay readable)"):
        sub.drain(1)
        dead(refs[0], name, "unsubscribe() and drain(1)")
        del sub
        for ref in refs[1:]:
            dead(ref, name, "dropping the unsubscribed subscription")


@scenario
def subscription_collected() -> None:
    name = "subscription dropped without unsubscribe()"
    b = mod.OpsLogBroadcaster(0)
    sub = b.subscribe(None, 8)
    ref = publish_watched(b)
    if alive(ref, name, "a buffer"):
        del sub
        dead(ref, name, "the subscription was collected")


@scenario
def subscription_in_a_cycle() -> None:
    name = "subscription collected in a reference cycle"
    b = mod.OpsLogBroadcaster(0)
    holder: list[Any] = [b.subscribe(None, 8)]
    holder.append(holder)
    ref = publish_watched(b)
    if alive(ref, name, "a buffer"):
        del holder
        dead(ref, name, "the cycle holding the subscription was collected")


@scenario
def primed_buffers() -> None:
    name = "replay and since_seq buffers"
    b = mod.OpsLogBroadcaster(4)
    ref = publish_watched(b)
    s1 = b.subscribe(None, 8, replay=4)
    s2 = b.subscribe(None, 8, since_seq=0)
    filler(b, 4)  # out of history; still in both primed buffers
    if alive(ref, name, "two primed buffers"):
        s1.drain()
        s2.unsubscribe()
        del s2
        dead(ref, name, "drain() of one and dropping the other")
    s1.unsubscribe()


@scenario
def snapshot_list() -> None:
    name = "snapshot"
    b = mod.OpsLogBroadcaster(2)
    ref = publish_watched(b)
    snap = b.snapshot(None, 1)
    snap2 = b.snapshot(mod.OpsLogFilter(model="gpt-4o"))
    filler(b, 2)
    if alive(ref, name, "a snapshot list"):
        del snap, snap2
        dead(ref, name, "dropping the snapshot lists")


@scenario
def republished_original() -> None:
    name = "republished entry"
    b1, b2 = mod.OpsLogBroadcaster(2), mod.OpsLogBroadcaster(2)
    e = make()
    ref = weakref.ref(e)
    b1.publish(e)
    b2.publish(e)  # b2 keeps a sealed copy
    b1.publish(e)  # and b1 a copy as well
    del e
    copies = b2.snapshot() + b1.snapshot()[-1:]
    refs = [weakref.ref(c) for c in copies]
    del copies
    if alive(ref, name, "history"):
        filler(b1, 2)
        dead(ref, name, "leaving the history of the broadcaster that sealed it")
        filler(b2, 2)
        for r in refs:
            dead(r, name, "copies leaving history")


@scenario
def json_rendered() -> None:
    name = "entry with its JSON and dict rendered"
    b = mod.OpsLogBroadcaster(1)
    e = make(method="GET", path="/v1", error_message="boom")
    e.to_json()
    e.to_dict()
    repr(e)
    ref = weakref.ref(e)
    b.publish(e)
    del e
    filler(b, 1)
    dead(ref, name, "leaving history")


@scenario
def broadcaster_dropped() -> None:
    name = "broadcaster dropped"
    b = mod.OpsLogBroadcaster(8)
    sub = b.subscribe(None, 8)
    ref = publish_watched(b)
    if alive(ref, name, "history and a buffer"):
        del b, sub
        dead(ref, name, "dropping the broadcaster and its subscription")


def main() -> None:
    probe = mod.OpsLogEntry()
    try:
        weakref.ref(probe)
    except TypeError as exc:
        fail.check(False, f"OpsLogEntry does not support weak references: {exc}")
        fail.finish()
    for fn in SCENARIOS:
        fn()
    fail.finish()


if __name__ == "__main__":
    main()
