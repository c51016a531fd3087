"""Publishing, subscribing and unsubscribing from many threads at once, with
exact accounting afterwards.

How the accounting is checked: ``seq`` numbers are handed out under the
same lock as subscriptions change, so every publish has a place in one
total order. Every thread keeps the entries it published (each carries a
unique tag in ``user_id`` and, once published, its ``seq``); merged and
sorted by ``seq`` they are the complete record, which must number exactly
1..N. Then, per subscription:

- "own" subscriptions filter on an account that only their own thread
  publishes to, so the entries that matched while they were live are known
  exactly (those the thread published between its subscribe() and
  unsubscribe() calls): received + dropped must equal their number, and
  without intermediate reads the received ones must be exactly the first
  (drop_newest) or the last (drop_oldest) buf_size of them;
- "shared" subscriptions filter on what other threads publish; their live
  window is only known to lie between the seqs of marker entries their
  thread publishes right before and right after subscribe(), and right
  before and right after unsubscribe() (program order in one thread), so
  received + dropped must lie between the matches inside the inner and the
  outer bounds, and the received entries must form a run of the matching
  entries that is consistent with those bounds.
"""

from __future__ import annotations

import asyncio
import gc
import random
import sys
import threading
import time
from queue import Empty
from typing import Any

import pytest

from _helpers import finish, go_matches, start

WAIT = 10.0


def merge(*lists):
    everything = [e for entries in lists for e in entries]
    everything.sort(key=lambda e: e.seq)
    return everything


def assert_complete_record(record, published):
    assert [e.seq for e in record] == list(range(1, published + 1))
    assert len({e.user_id for e in record}) == len(record)


class Matches:
    """The seqs of the entries of the complete record that match a filter
    (by Go's rules), and where each one stands among them."""

    def __init__(self, record, flt):
        self.seqs = [e.seq for e in record if go_matches(flt, e)]
        self.position = {seq: i for i, seq in enumerate(self.seqs)}


def matches_for(cache, record, flt):
    key = (flt.min_status, flt.model, flt.account_id, flt.group_id, flt.min_latency_ms)
    if key not in cache:
        cache[key] = Matches(record, flt)
    return cache[key]


def index_of_run(matches, received):
    """Positions of ``received`` among the matching entries; asserts they
    are strictly increasing (no duplicate, no reordering)."""
    position = matches.position
    idx = []
    for e in received:
        assert e.seq in position, f"seq {e.seq} delivered but does not match"
        idx.append(position[e.seq])
    assert idx == sorted(set(idx)), "duplicate or out-of-order delivery"
    return idx


# --- publishers, churners and exact accounting -------------------------------------


def test_accounting_exact_under_churn(impl, fast_switch):
    Entry, Filter = impl.OpsLogEntry, impl.OpsLogFilter
    n_publishers, n_churners = 3, 3
    min_each, max_each = 1500, 15000
    rounds = 45
    b = impl.OpsLogBroadcaster(history_cap=2**17)
    monitor = b.subscribe(buf_size=2**17)  # live for the whole run, never full
    small_monitor = b.subscribe(buf_size=7)  # live for the whole run, mostly full
    oldest_monitor = b.subscribe(buf_size=7, overflow="drop_oldest")
    stop = threading.Event()
    go = threading.Barrier(n_publishers + n_churners)

    def publisher(p):
        rng = random.Random(100 + p)
        mine: list[Any] = []
        go.wait(WAIT)
        while len(mine) < min_each or (not stop.is_set() and len(mine) < max_each):
            e = Entry(
                time=1.0 + len(mine),
                user_id=(p + 1) * 10**7 + len(mine),
                account_id=1000 + p,
                status=rng.choice((200, 404, 500, 503)),
                model=rng.choice(("", "m1", "m2")),
                latency_ms=rng.randrange(300),
            )
            b.publish(e)
            mine.append(e)
        return mine

    shared_filters = [
        None,
        Filter(min_status=500),
        Filter(account_id=1000),
        Filter(model="m1"),
        Filter(model="m2", min_latency_ms=100),
        Filter(account_id=1001, min_status=404),
        Filter(min_status=-1, account_id=-1),
    ]

    def churner(c):
        rng = random.Random(200 + c)
        account = c + 1  # only this thread publishes to this account
        mine: list[Any] = []
        records: list[tuple[Any, ...]] = []
        tag = iter(range((c + 1) * 10**6, (c + 2) * 10**6))

        def own_entry(status):
            e = Entry(time=2.0, user_id=next(tag), account_id=account, status=status)
            b.publish(e)
            mine.append(e)
            return e

        def marker():
            return own_entry(0).seq

        go.wait(WAIT)
        for r in range(rounds):
            cap = rng.choice((1, 2, 5, 64, 4096))
            overflow = rng.choice(("drop_newest", "drop_oldest"))
            mid_read = rng.random() < 0.5
            received = []
            if r % 3 == 0:
                flt = Filter(account_id=account, min_status=rng.choice((0, 0, 500)))
                sub = b.subscribe(flt, cap, overflow=overflow)
                live = []
                for j in range(rng.randrange(1, 30)):
                    live.append(own_entry(rng.choice((200, 500))))
                    if mid_read and j % 7 == 3:
                        received += sub.drain(rng.randrange(4))
                sub.unsubscribe()
                frozen = (len(sub), sub.dropped)
                own_entry(500)  # after unsubscribe(): must not arrive
                time.sleep(0.0002)
                assert (len(sub), sub.dropped) == frozen
                received += sub.drain()
                records.append(("own", sub.filter, cap, overflow, mid_read, received, sub.dropped, live))
            else:
                flt = rng.choice(shared_filters)
                p0 = marker()
                sub = b.subscribe(flt, cap, overflow=overflow)
                p1 = marker()
                for _ in range(rng.randrange(1, 5)):
                    if mid_read:
                        received += sub.drain()
                    time.sleep(0.0003)
                p2 = marker()
                sub.unsubscribe()
                p3 = marker()
                frozen = (len(sub), sub.dropped)
                time.sleep(0.0002)
                assert (len(sub), sub.dropped) == frozen
                received += sub.drain()
                records.append(
                    ("shared", sub.filter, cap, overflow, mid_read, received, sub.dropped, (p0, p1, p2, p3))
                )
            if r % 10 == 9:
                # a subscription dropped without unsubscribe(), mid-publishing;
                # it matches nothing, so it never counts a drop
                b.subscribe(Filter(account_id=999), 1)
                gc.collect()
        return mine, records

    publishers = [start(publisher, p) for p in range(n_publishers)]
    churners = [start(churner, c) for c in range(n_churners)]
    churned = [finish(t, 60) for t in churners]
    stop.set()
    published_lists = [finish(t, 60) for t in publishers]

    own_lists = [mine for mine, _ in churned]
    records = [rec for _, recs in churned for rec in recs]
    calls = sum(map(len, published_lists)) + sum(map(len, own_lists))

    # published counts every call; seqs are exactly 1..N; no tag lost or doubled
    stats = b.stats()
    assert stats.published == calls
    record = merge(*published_lists, *own_lists)
    assert_complete_record(record, calls)
    assert all(e.seq for e in record)

    # history and the whole-run subscriptions saw everything, in seq order
    snapshot = b.snapshot()
    assert len(snapshot) == calls
    assert all(a is e for a, e in zip(snapshot, record, strict=True))
    seen = monitor.drain()
    assert monitor.dropped == 0
    assert len(seen) == calls and all(a is e for a, e in zip(seen, record, strict=True))
    kept = small_monitor.drain()
    assert len(kept) + small_monitor.dropped == calls
    assert [e.seq for e in kept] == list(range(1, len(kept) + 1))  # drop_newest: the first
    latest = oldest_monitor.drain()
    assert len(latest) + oldest_monitor.dropped == calls
    assert [e.seq for e in latest] == list(range(calls - 6, calls + 1))  # drop_oldest: the last

    # dropped counts every miss of every subscription, once
    assert stats.dropped == (
        sum(rec[6] for rec in records) + small_monitor.dropped + oldest_monitor.dropped
    )
    for sub in (monitor, small_monitor, oldest_monitor):
        sub.unsubscribe()
    gc.collect()
    assert b.stats().subscribers == 0

    cache: dict[Any, Any] = {}
    checked_own = checked_shared = 0
    for kind, flt, cap, overflow, mid_read, received, dropped, extra in records:
        if kind == "own":
            matching = [e for e in extra if go_matches(flt, e)]
            assert len(received) + dropped == len(matching)
            mine = Matches(matching, flt)
            index_of_run(mine, received)
            if not mid_read:
                expected = matching[:cap] if overflow == "drop_newest" else matching[-cap:]
                assert [e.seq for e in received] == [e.seq for e in expected]
            checked_own += 1
            continue
        p0, p1, p2, p3 = extra
        assert p0 < p1 < p2 < p3
        matches = matches_for(cache, record, flt)
        seqs = matches.seqs
        idx = index_of_run(matches, received)
        assert all(p0 < e.seq <= p3 for e in received)
        n = len(received) + dropped
        inner = sum(1 for s in seqs if p1 < s <= p2)
        outer = sum(1 for s in seqs if p0 < s <= p3)
        assert inner <= n <= outer, (inner, n, outer)
        if not received:
            assert dropped == 0 and inner == 0
        elif not mid_read:
            # what the buffer kept is one unbroken run of the window's matches
            assert idx == list(range(idx[0], idx[0] + len(idx)))
            if overflow == "drop_newest":
                first = idx[0]  # the window starts with the first received
                last = first + n - 1
            else:
                last = idx[-1]  # the window ends with the last received
                first = last - n + 1
            assert 0 <= first and last < len(seqs)
            assert p0 < seqs[first] and (first == 0 or seqs[first - 1] <= p1)
            assert seqs[last] <= p3 and (last + 1 == len(seqs) or seqs[last + 1] > p2)
        checked_shared += 1
    assert checked_own >= n_churners * rounds // 3
    assert checked_shared >= n_churners * rounds // 2


# --- priming while other threads publish ---------------------------------------------


def test_priming_has_no_gap_and_no_duplicate_under_publishing(impl, fast_switch):
    Entry, Filter = impl.OpsLogEntry, impl.OpsLogFilter
    b = impl.OpsLogBroadcaster(history_cap=2**16)
    stop = threading.Event()
    started = threading.Barrier(3)
    big = 2**16 - 1

    def publisher(p):
        rng = random.Random(300 + p)
        mine: list[Any] = []
        started.wait(WAIT)
        while not stop.is_set():
            e = Entry(time=1.0, user_id=(p + 1) * 10**7 + len(mine), status=rng.choice((200, 500)))
            b.publish(e)
            mine.append(e)
        return mine

    sys.setswitchinterval(1e-6)  # as many thread switches as can be had; restored by fast_switch
    threads = [start(publisher, p) for p in range(2)]
    started.wait(WAIT)
    deadline = time.monotonic() + WAIT
    while b.stats().published < 500:
        assert time.monotonic() < deadline, "publishers did not start"
        time.sleep(0.001)

    def marker():
        e = Entry(time=3.0, user_id=len(markers))
        b.publish(e)
        markers.append(e)
        return e.seq

    markers: list[Any] = []

    def read_past(sub, seq):
        """Read until an entry published after ``seq`` (so certainly a live
        one) arrives, then close and take what is left."""
        got: list[Any] = []
        while not got or got[-1].seq <= seq:
            got.append(sub.get(timeout=WAIT))
        sub.unsubscribe()
        return got + sub.drain()

    rng = random.Random(5)
    records: list[tuple[Any, ...]] = []
    try:
        # Many quick subscriptions, each primed from history while the
        # publishers run, each read until it has crossed from the history
        # part into the live part.
        for i in range(600):
            flt = (None, Filter(min_status=500))[i % 2]
            p0 = marker()
            if (i // 2) % 2:
                n = rng.choice((1, 5, 50, 400))
                sub = b.subscribe(flt, big, replay=n)
                p1 = marker()
                got = read_past(sub, p1)
                records.append(("replay", sub.filter, got, (n, p0, p1)))
            else:
                since = max(0, p0 - rng.randrange(300))
                sub = b.subscribe(flt, big, since_seq=since)
                p1 = marker()
                assert sub.history_gap is False
                got = read_past(sub, p1)
                records.append(("since", sub.filter, got, since))
            assert sub.dropped == 0
        # SSE clients losing their connection and reconnecting with the last
        # seq they saw.
        for i in range(30):
            flt = (None, Filter(min_status=500))[i % 2]
            first = b.subscribe(flt, big)
            got = read_past(first, marker())
            again = b.subscribe(flt, big, since_seq=got[-1].seq)
            assert again.history_gap is False
            got += read_past(again, marker())
            assert first.dropped == again.dropped == 0
            records.append(("reconnect", again.filter, got, None))
    finally:
        stop.set()
        lists = [finish(t, 60) for t in threads]

    record = merge(*lists, markers)
    assert_complete_record(record, b.stats().published)
    assert b.stats().subscribers == 0
    cache: dict[Any, Any] = {}
    for mode, flt, got, extra in records:
        matches = matches_for(cache, record, flt)
        seqs = matches.seqs
        idx = index_of_run(matches, got)
        # no gap: consecutive matching entries, each exactly once
        assert idx == list(range(idx[0], idx[0] + len(idx))), mode
        if mode == "since":
            since = extra
            # and it starts right after since_seq
            assert seqs[idx[0]] > since and (idx[0] == 0 or seqs[idx[0] - 1] <= since)
        elif mode == "replay":
            n, p0, p1 = extra
            # the replayed part was published before the subscription went live
            assert sum(1 for e in got if e.seq <= p0) <= n
            if sum(1 for s in seqs if s <= p0) >= n:
                assert sum(1 for e in got if e.seq <= p1) >= n


def test_concurrent_publish_from_many_threads_seals_each_entry_once(impl, fast_switch):
    # The same fresh entries published from several threads at once, to two
    # broadcasters: each broadcaster numbers its publishes 1..N, and each
    # entry object is sealed exactly once (the other publishes are copies).
    b1, b2 = impl.OpsLogBroadcaster(history_cap=0), impl.OpsLogBroadcaster(history_cap=0)
    s1, s2 = b1.subscribe(buf_size=2**15), b2.subscribe(buf_size=2**15)
    entries = [impl.OpsLogEntry(time=1.0, user_id=n) for n in range(2000)]
    go = threading.Barrier(4)

    def publish_all(b, order):
        go.wait(WAIT)
        for e in order:
            b.publish(e)

    threads = [
        start(publish_all, b1, entries),
        start(publish_all, b2, entries[::-1]),
        start(publish_all, b1, entries[::-1]),
        start(publish_all, b2, entries),
    ]
    for t in threads:
        finish(t, 60)
    got1, got2 = s1.drain(), s2.drain()
    assert [e.seq for e in got1] == list(range(1, 4001))
    assert [e.seq for e in got2] == list(range(1, 4001))
    originals = {id(e) for e in entries}
    delivered_originals = [e for e in got1 + got2 if id(e) in originals]
    # every entry went out once as itself and three times as a copy
    assert sorted(e.user_id for e in delivered_originals) == list(range(2000))
    for e in delivered_originals:
        assert e.seq >= 1
    for e in entries:
        assert e.seq >= 1
    copies = [e for e in got1 + got2 if id(e) not in originals]
    assert len(copies) == 6000
    assert sorted(e.user_id for e in copies) == sorted(list(range(2000)) * 3)


# --- readers racing publishers (pure readers take no lock) --------------------------


@pytest.mark.parametrize("overflow", ["drop_newest", "drop_oldest"])
def test_concurrent_readers_get_each_entry_once_and_account_for_all(impl, fast_switch, overflow):
    # Readers in several styles pop one small buffer while two threads push
    # into it: no entry is read twice or out of order, and every delivery is
    # read, dropped (counted) or still buffered, whatever the interleaving.
    b = impl.OpsLogBroadcaster(history_cap=0)
    sub = b.subscribe(buf_size=8, overflow=overflow)
    n_each = 4000

    def publish(p):
        for n in range(n_each):
            b.publish(impl.OpsLogEntry(api_key_id=p + 1, user_id=n))

    def read(style):
        got = []
        while True:
            try:
                if style == "get":
                    got.append(sub.get(WAIT))
                elif style == "nowait":
                    got.append(sub.get_nowait())
                else:  # drain never raises: closed (looked at first) and empty ends it
                    closed = sub.closed
                    batch = sub.drain(3)
                    if closed and not batch:
                        return got
                    got += batch
            except impl_closed(impl):
                return got
            except Empty:
                time.sleep(0)

    readers = [start(read, style) for style in ("get", "get", "nowait", "drain")]
    publishers = [start(publish, p) for p in range(2)]
    for t in publishers:
        finish(t, 60)
    sub.unsubscribe()
    received = [e for t in readers for e in finish(t, 60)]
    for t in readers:
        seqs = [e.seq for e in t.result]
        assert seqs == sorted(seqs), "a reader got entries out of order"
    assert len({e.seq for e in received}) == len(received), "an entry was read twice"
    assert len(received) + sub.dropped == 2 * n_each
    assert b.stats().dropped == sub.dropped
    assert len(sub) == 0


def impl_closed(impl):
    return sys.modules[impl.__name__.rsplit(".", 1)[0]].SubscriptionClosed


def test_no_missed_wakeup_in_ping_pong(impl, fast_switch):
    # One entry at a time, each published only once the last was read: a
    # wake-up lost between a reader's last look and its parking would stall
    # the exchange until the reader's timeout (Empty fails the test).
    b = impl.OpsLogBroadcaster(history_cap=0)
    sub = b.subscribe(buf_size=1)
    rounds = 3000
    read = threading.Semaphore(0)

    def reader():
        for n in range(rounds):
            assert sub.get(WAIT).user_id == n
            read.release()

    t = start(reader)
    for n in range(rounds):
        b.publish(impl.OpsLogEntry(user_id=n))
        assert read.acquire(timeout=WAIT), "the reader missed a wake-up"
    finish(t)
    assert sub.dropped == 0


def test_unsubscribe_racing_parking_readers_releases_them(impl, fast_switch):
    # unsubscribe() lands at every point of a reader's park: before, between
    # its parking and its last look, after. Each reader ends (closed and
    # empty), after reading what was published to it first.
    closed = impl_closed(impl)
    for n in range(300):
        b = impl.OpsLogBroadcaster(history_cap=0)
        sub = b.subscribe()
        b.publish(impl.OpsLogEntry(user_id=n))

        def read(sub=sub):
            got = []
            try:
                while True:
                    got.append(sub.get(WAIT))
            except closed:
                return got

        readers = [start(read), start(read)]
        if n % 3:
            time.sleep(0)
        sub.unsubscribe()
        got = [e.user_id for t in readers for e in finish(t)]
        assert got == [n]


def test_async_reader_stays_live_under_saturating_publishers(impl):
    # Two threads publish flat out. A reader parked in aget() on a filter
    # nothing matches must be released soon after unsubscribe(), and a new
    # reader must start (subscribe, first entry) soon too. A liveness
    # check, not a timing one: the bound is generous (the benchmark,
    # benchmarks/liveness.py, measures milliseconds), but a reader starved
    # behind the publishers' lock, as pure readers once were, exceeds it.
    b = impl.OpsLogBroadcaster(history_cap=1000)
    idle = [b.subscribe(buf_size=100, overflow="drop_oldest") for _ in range(20)]
    stop = threading.Event()
    closed = impl_closed(impl)

    def publish(p):
        n = 0
        while not stop.is_set():
            b.publish(impl.OpsLogEntry(status=200, model="m", api_key_id=p + 1, user_id=n))
            n += 1

    async def check():
        for _ in range(3):
            sub = b.subscribe(impl.OpsLogFilter(model="nothing matches"))
            parked = asyncio.ensure_future(sub.aget())
            await asyncio.sleep(0.05)
            assert not parked.done()
            sub.unsubscribe()
            with pytest.raises(closed):
                await asyncio.wait_for(parked, LIVENESS_BOUND)
            with b.subscribe() as live:
                await asyncio.wait_for(live.aget(), LIVENESS_BOUND)

    publishers = [start(publish, p) for p in range(2)]
    try:
        asyncio.run(check())
    finally:
        stop.set()
        for t in publishers:
            finish(t)
    assert len(idle) == 20 and b.stats().published > 0


LIVENESS_BOUND = 2.0  # seconds; the issue measured 1.1 s and over 2 s when starved
