"""A short, busy run of the compiled core for memory checkers.

``tools/sanitize.sh`` runs it under valgrind (where the test suite is too
slow to run whole) and under AddressSanitizer. It touches every allocation
and reference the core makes by hand: the history ring (wrapping), rings of
both overflow policies (evictions), the growing subscriber array, removal
from its middle, readers parked and woken from threads and asyncio,
snapshots with and without the GIL, drains, rendering of nasty text, copies
of sealed entries, subscriptions dropped without ``unsubscribe()``, the
routing index (groups made, grown, shared, unlinked from hash chains and
freed; the table growing), bad arguments, and the shared-memory log (its
ring wrapped by two writers while read and scanned, truncation, a record
never committed). It checks its own results and exits non-zero when one is
wrong.

Usage: ``python tools/sanitize_smoke.py [ROUNDS]`` (default 3).
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading
import time
from collections.abc import Callable
from queue import Empty

import fastopslog._opslog_c as core

from fastopslog import SubscriptionClosed, unlink_shared

NASTY = "\ud800\x00<>&\u2028\"\\\n\U0001f642\udfff" * 8


def entry(n: int, **kw: object) -> core.OpsLogEntry:
    kw.setdefault("time", 1_700_000_000.0 + n / 1000)
    return core.OpsLogEntry(
        status=(200, 404, 503)[n % 3],
        latency_ms=n % 250,
        model=("gpt", "claude", NASTY)[n % 3],
        account_id=n % 4,
        group_id=n % 5,
        user_id=n,
        error_detail=NASTY if n % 7 == 0 else "",
        **kw,
    )


def one_round(r: int) -> int:
    checks = 0
    b = core.OpsLogBroadcaster(history_cap=97)
    subs = [
        b.subscribe(
            core.OpsLogFilter(min_status=(0, 400, 500)[n % 3], model=("", "gpt")[n % 2]),
            buf_size=1 + n % 5,
            overflow=("drop_newest", "drop_oldest")[n % 2],
        )
        for n in range(24)  # past the first growth of the subscriber array
    ]
    # Parked readers, woken by publishes and by unsubscribe(). What they
    # share is passed in, not closed over, so that the del at the end frees it.
    got: list[object] = []
    readers = [
        threading.Thread(target=lambda s=s, got=got: got.append(s.get(timeout=30)), daemon=True)
        for s in (b.subscribe(), b.subscribe(core.OpsLogFilter(account_id=3)))
    ]
    closing = b.subscribe(core.OpsLogFilter(model="nothing"))

    def wait_closed(got: list[object] = got) -> None:
        try:
            closing.get(timeout=30)
        except SubscriptionClosed:
            got.append("closed")

    readers.append(threading.Thread(target=wait_closed, daemon=True))
    for t in readers:
        t.start()

    async def async_reader(b: core.OpsLogBroadcaster) -> object:
        sub = b.subscribe(core.OpsLogFilter(group_id=2))
        async with sub:
            return await asyncio.wait_for(sub.aget(), 30)

    loop = asyncio.new_event_loop()
    task = loop.create_task(async_reader(b))
    loop.run_until_complete(asyncio.sleep(0.05))
    for n in range(400):
        b.publish(entry(n))
        if n == 200:
            closing.unsubscribe()
            # Remove from the middle of the array, and drop one unclosed.
            subs.pop(7).unsubscribe()
            subs.pop(3)
            gc.collect()
    for t in readers:
        t.join(30)
        assert not t.is_alive(), "a reader was never woken"
    assert loop.run_until_complete(task) is not None
    loop.close()
    checks += 2
    assert "closed" in got and len(got) == 3, got

    # Republishing sealed entries publishes copies.
    sealed = b.snapshot(max_entries=5)
    for e in sealed:
        b.publish(e)
    assert [e.seq for e in b.snapshot(max_entries=5)] == list(range(401, 406))
    checks += 1

    # Snapshots with the GIL and without it.
    for threshold in (10**9, 0):
        previous = core._set_nogil_min_history(threshold)
        try:
            flt = core.OpsLogFilter(min_status=500, model=NASTY)
            picked = b.snapshot(flt)
            assert picked and all(e.status >= 500 and e.model == NASTY for e in picked)
            assert len(b.snapshot(flt, max_entries=2)) == 2
            assert len(b.snapshot()) == 97
            checks += 3
        finally:
            core._set_nogil_min_history(previous)

    # Priming from history.
    since = b.subscribe(since_seq=380, buf_size=8)
    assert since.history_gap and len(since) == 8
    replay = b.subscribe(core.OpsLogFilter(model="gpt"), replay=5)
    assert len(replay) == 5
    checks += 2

    # Rendering, reading back, draining.
    for s in subs:
        for e in s.drain(2) + s.drain():
            assert core.OpsLogEntry.from_dict(e.to_dict()).to_dict() == e.to_dict()
            checks += 1
        try:
            s.get_nowait()
        except Empty:
            pass

    # Bad arguments change nothing.
    before = b.stats()
    bad_calls: tuple[Callable[[core.OpsLogBroadcaster], object], ...] = (
        lambda b: b.publish(None),
        lambda b: b.subscribe(buf_size=core.OpsLogBroadcaster),
        lambda b: b.subscribe(buf_size=(1 << 24) + 1),
        lambda b: b.subscribe(since_seq=-1),
        lambda b: b.subscribe(overflow="sideways"),
        lambda b: b.snapshot(max_entries=2**63),
        lambda b: core.OpsLogEntry(status=2**63),
        lambda b: core.OpsLogEntry(time=float("nan")),
        lambda b: core.OpsLogBroadcaster(history_cap=(1 << 24) + 1),
    )
    for call in bad_calls:
        try:
            call(b)
        except (TypeError, ValueError, OverflowError):
            checks += 1
        else:
            raise AssertionError("a bad call was accepted")
    assert b.stats() == before

    # Everything goes: subscriptions (some never unsubscribed), then the
    # broadcaster and its history.
    for s in subs[::2]:
        s.unsubscribe()
    del subs, since, replay, sealed, readers, wait_closed, got, task
    gc.collect()
    del b
    gc.collect()
    return checks


def routing(r: int) -> int:
    """Groups by model, account and group and in the every list, shared by
    equal filters, made and freed in churn, the hash table growing past
    its first size; each subscription checked against ``matches``."""
    checks = 0
    b = core.OpsLogBroadcaster(history_cap=0)
    kinds = (
        lambda i: core.OpsLogFilter(model=f"m{i % 40}"),
        lambda i: core.OpsLogFilter(account_id=1 + i % 50, min_status=(0, 500)[i % 2]),
        lambda i: core.OpsLogFilter(group_id=1 + i % 30, model=("", "gpt")[i % 2]),
        lambda i: core.OpsLogFilter(min_latency_ms=(0, 100, 200)[i % 3]),
    )
    subs = [b.subscribe(kinds[i % 4](i // 4), buf_size=256) for i in range(480)]
    for step in range(6):
        published = [
            core.OpsLogEntry(
                user_id=n, model=f"m{n % 40}", account_id=n % 60, group_id=n % 35,
                status=(200, 503)[n % 2], latency_ms=n % 250,
            )
            for n in range(120)
        ]
        for e in published:
            b.publish(e)
        for sub in subs:
            want = [e.user_id for e in published if sub.filter.matches(e)]
            assert [e.user_id for e in sub.drain()] == want, sub.filter
            checks += 1
        # Out of the middle of groups and chains, and a few dropped
        # unclosed; then new ones, some into groups just emptied.
        for i in range(len(subs) - 1 - step, 0, -5):
            if i % 2:
                subs.pop(i).unsubscribe()
            else:
                subs.pop(i)
        gc.collect()
        subs += [b.subscribe(kinds[i % 4](i + step), buf_size=256) for i in range(40)]
        assert b.stats().subscribers == len(subs)
    for s in subs[::2]:
        s.unsubscribe()
    del subs, s
    gc.collect()
    assert b.stats().subscribers == 0
    return checks


def shared_round(r: int) -> int:
    """The shared-memory log: a small ring wrapped many times by two
    publishing threads while the pump reads it, nasty text truncated in
    small records, filtered snapshots (without the GIL) of a ring being
    overwritten, a record never committed, bad arguments, close."""
    checks = 0
    name = f"sanitize-{os.getpid()}-{r}"
    unlink_shared(name)
    b = core.SharedOpsLogBroadcaster(name, history_cap=61, record_size=256)
    try:
        subs = [
            b.subscribe(core.OpsLogFilter(min_status=(0, 400)[n % 2]), buf_size=50,
                        overflow=("drop_newest", "drop_oldest")[n % 2])
            for n in range(4)
        ]
        stop = threading.Event()

        def snapshots() -> None:
            while not stop.is_set():
                for e in b.snapshot(core.OpsLogFilter(model="gpt")):
                    assert e.model == "gpt"

        def publisher(k: int) -> None:
            for n in range(3000):
                b.publish(entry(n + k))

        threads = [threading.Thread(target=snapshots)]
        threads += [threading.Thread(target=publisher, args=(k,)) for k in range(2)]
        for t in threads[1:]:
            t.start()
        threads[0].start()
        for t in threads[1:]:
            t.join()
        seq = b._claim_and_abandon(entry(0))
        b._set_skip_after(0.01)
        b.publish(entry(1))
        stop.set()
        threads[0].join()
        assert b.stats().published == seq + 1
        checks += 1
        deadline = time.monotonic() + 30
        while b.ring_stats()["next_seq"] <= seq + 1:
            assert time.monotonic() < deadline, b.ring_stats()
            time.sleep(0.01)
        st = b.ring_stats()
        assert st["skipped"] >= 1, st
        checks += 1
        for s in subs:
            got = s.drain()
            assert [e.seq for e in got] == sorted({e.seq for e in got})
            checks += 1
        snap = b.snapshot()
        assert 0 < len(snap) <= 61
        assert any(e.error_detail.endswith("\u2026") for e in snap if e.error_detail)
        checks += 2
        bad: list[Callable[[], object]] = [
            lambda: b.publish(None), lambda: b.snapshot("x"), lambda: b.subscribe(buf_size="x"),
        ]
        for call in bad:
            try:
                call()
            except (TypeError, ValueError):
                checks += 1
            else:
                raise AssertionError("a bad call was accepted")
    finally:
        b.close()
        unlink_shared(name)
    del subs
    gc.collect()
    return checks


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    checks = sum(one_round(r) + routing(r) + shared_round(r) for r in range(rounds))
    print(f"sanitize_smoke: {rounds} rounds, {checks} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
