"""OpsLogBroadcaster: Go parity, sequence numbers and sealing, priming,
overflow policies, garbage collection, bad input."""

from __future__ import annotations

import gc
import itertools
import random
import time

import pytest

from _helpers import go_matches
from fastopslog._common import (
    DEFAULT_BUF_SIZE,
    MAX_CAPACITY,
    OpsLogStats,
    SubscriptionClosed,
)


def E(impl, n, **kw):
    """An entry tagged with ``n`` (in ``user_id``) and a fixed time."""
    kw.setdefault("time", 1700000000.0 + n)
    return impl.OpsLogEntry(user_id=n, **kw)


def tags(entries):
    return [e.user_id for e in entries]


def seqs(entries):
    return [e.seq for e in entries]


# --- construction, stats -------------------------------------------------------------


def test_stats_start_at_zero(impl):
    b = impl.OpsLogBroadcaster()
    st = b.stats()
    assert isinstance(st, OpsLogStats)
    assert st == (0, 0, 0)
    assert (st.published, st.dropped, st.subscribers) == (0, 0, 0)


def test_stats_count_publishes_drops_and_subscribers(impl):
    b = impl.OpsLogBroadcaster()
    s1 = b.subscribe(buf_size=1)
    s2 = b.subscribe(buf_size=2)
    assert b.stats() == OpsLogStats(0, 0, 2)
    for n in range(4):
        b.publish(E(impl, n))
    # s1 missed 3, s2 missed 2
    assert b.stats() == OpsLogStats(published=4, dropped=5, subscribers=2)
    assert (s1.dropped, s2.dropped) == (3, 2)
    s1.unsubscribe()
    assert b.stats() == OpsLogStats(4, 5, 1)
    s2.unsubscribe()
    assert b.stats() == OpsLogStats(4, 5, 0)


def test_default_history_cap_is_1000(impl):
    b = impl.OpsLogBroadcaster()
    for n in range(1003):
        b.publish(E(impl, n))
    snap = b.snapshot()
    assert len(snap) == 1000
    assert tags(snap) == list(range(3, 1003))


# --- publish, Go parity ------------------------------------------------------------------


def test_publish_delivers_to_every_matching_subscriber(impl):
    b = impl.OpsLogBroadcaster()
    everyone = b.subscribe()
    errors = b.subscribe(impl.OpsLogFilter(min_status=500))
    model = b.subscribe(impl.OpsLogFilter(model="m"))
    entries = [E(impl, 0, status=200), E(impl, 1, status=500, model="m"), E(impl, 2, status=502)]
    for e in entries:
        b.publish(e)
    assert tags(everyone.drain()) == [0, 1, 2]
    assert tags(errors.drain()) == [1, 2]
    assert tags(model.drain()) == [1]
    assert b.stats().dropped == 0


def test_same_object_goes_to_history_and_every_subscriber(impl):
    b = impl.OpsLogBroadcaster()
    s1, s2 = b.subscribe(), b.subscribe(impl.OpsLogFilter(account_id=1))
    e = E(impl, 0, account_id=1)
    b.publish(e)
    got1, got2 = s1.get_nowait(), s2.get_nowait()
    (kept,) = b.snapshot()
    assert got1 is e and got2 is e and kept is e


def test_history_keeps_entries_no_filter_matches(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe(impl.OpsLogFilter(min_status=500))
    b.publish(E(impl, 0, status=200))
    assert len(sub) == 0
    assert tags(b.snapshot()) == [0]


def test_drop_newest_when_buffer_full(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe(buf_size=3)
    for n in range(5):
        b.publish(E(impl, n))
    assert len(sub) == 3
    assert sub.dropped == 2
    assert b.stats().dropped == 2
    assert tags(sub.drain()) == [0, 1, 2]  # the newest were refused
    b.publish(E(impl, 5))  # room again
    assert tags(sub.drain()) == [5]
    assert sub.dropped == 2


def test_dropped_counts_only_matching_subscribers(impl):
    b = impl.OpsLogBroadcaster()
    full_errors = b.subscribe(impl.OpsLogFilter(min_status=500), buf_size=1)
    full_model = b.subscribe(impl.OpsLogFilter(model="m"), buf_size=1)
    b.publish(E(impl, 0, status=500, model="m"))  # fills both
    assert b.stats().dropped == 0
    for n in range(1, 4):
        b.publish(E(impl, n, status=200, model="other"))  # matches neither
    assert b.stats().dropped == 0
    assert (full_errors.dropped, full_model.dropped) == (0, 0)
    b.publish(E(impl, 4, status=503, model="other"))  # matches one
    assert b.stats().dropped == 1
    assert (full_errors.dropped, full_model.dropped) == (1, 0)
    b.publish(E(impl, 5, status=503, model="m"))  # matches both
    assert b.stats().dropped == 3
    assert (full_errors.dropped, full_model.dropped) == (2, 1)


def test_publish_with_nobody_listening(impl):
    b = impl.OpsLogBroadcaster()
    b.publish(E(impl, 0))
    assert b.stats() == (1, 0, 0)


def test_every_filter_gets_exactly_its_matches(impl):
    # Many filters at once, including zero and negative fields, so that any
    # routing of entries to subscribers is checked against Go's matches.
    b = impl.OpsLogBroadcaster(history_cap=0)
    grid = list(itertools.product((-1, 0, 400), ("", "a", "b"), (-1, 0, 1, 2), (-1, 0, 1), (-1, 0, 50)))
    subs = [
        b.subscribe(
            impl.OpsLogFilter(min_status=s, model=m, account_id=a, group_id=g, min_latency_ms=lat),
            buf_size=512,
        )
        for s, m, a, g, lat in grid
    ]
    rng = random.Random(1)
    entries = [
        E(
            impl,
            n,
            status=rng.choice((-1, 0, 200, 400, 503)),
            model=rng.choice(("", "a", "b", "c")),
            account_id=rng.choice((-1, 0, 1, 2, 3)),
            group_id=rng.choice((-1, 0, 1, 2)),
            latency_ms=rng.choice((-1, 0, 49, 50, 500)),
        )
        for n in range(150)
    ]
    for e in entries:
        b.publish(e)
    for sub in subs:
        expected = [e.user_id for e in entries if go_matches(sub.filter, e)]
        assert tags(sub.drain()) == expected, sub.filter
    assert b.stats().dropped == 0


def test_closed_full_subscriber_does_not_disturb_publish(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe(buf_size=1)
    b.publish(E(impl, 0))
    sub.unsubscribe()
    b.publish(E(impl, 1))
    assert b.stats() == (2, 0, 0)
    assert sub.dropped == 0
    assert tags(sub.drain()) == [0]


# --- history ----------------------------------------------------------------


def test_history_wraps_around(impl):
    b = impl.OpsLogBroadcaster(history_cap=3)
    for n in range(2):
        b.publish(E(impl, n))
    assert tags(b.snapshot()) == [0, 1]
    for n in range(2, 8):
        b.publish(E(impl, n))
        expected = list(range(max(0, n - 2), n + 1))
        assert tags(b.snapshot()) == expected


@pytest.mark.parametrize("cap", [0, -1, -1000])
def test_history_disabled(impl, cap):
    b = impl.OpsLogBroadcaster(history_cap=cap)
    sub = b.subscribe()
    for n in range(3):
        b.publish(E(impl, n))
    assert b.snapshot() == []
    assert b.snapshot(max_entries=2) == []
    assert tags(sub.drain()) == [0, 1, 2]  # live delivery is unaffected
    assert b.stats().published == 3


def test_history_cap_positional(impl):
    b = impl.OpsLogBroadcaster(2)
    for n in range(3):
        b.publish(E(impl, n))
    assert tags(b.snapshot()) == [1, 2]


def test_history_cap_one(impl):
    b = impl.OpsLogBroadcaster(history_cap=1)
    for n in range(3):
        b.publish(E(impl, n))
    assert tags(b.snapshot()) == [2]


# --- snapshot --------------------------------------------------------------------


def test_snapshot_empty(impl):
    b = impl.OpsLogBroadcaster()
    assert b.snapshot() == []
    assert b.snapshot(impl.OpsLogFilter(min_status=1), 5) == []
    assert type(b.snapshot()) is list


def test_snapshot_oldest_to_newest_and_max_entries(impl):
    b = impl.OpsLogBroadcaster(history_cap=10)
    for n in range(6):
        b.publish(E(impl, n))
    assert tags(b.snapshot()) == [0, 1, 2, 3, 4, 5]
    assert tags(b.snapshot(max_entries=0)) == [0, 1, 2, 3, 4, 5]
    assert tags(b.snapshot(max_entries=-1)) == [0, 1, 2, 3, 4, 5]
    assert tags(b.snapshot(max_entries=-(2**63))) == [0, 1, 2, 3, 4, 5]
    assert tags(b.snapshot(max_entries=1)) == [5]
    assert tags(b.snapshot(max_entries=4)) == [2, 3, 4, 5]
    assert tags(b.snapshot(max_entries=6)) == [0, 1, 2, 3, 4, 5]
    assert tags(b.snapshot(max_entries=2**63 - 1)) == [0, 1, 2, 3, 4, 5]
    assert tags(b.snapshot(None, 2)) == [4, 5]


def test_snapshot_filters_before_max_entries(impl):
    b = impl.OpsLogBroadcaster(history_cap=10)
    for n in range(8):
        b.publish(E(impl, n, status=500 if n in (1, 2, 4) else 200))
    errors = impl.OpsLogFilter(min_status=500)
    assert tags(b.snapshot(errors)) == [1, 2, 4]
    assert tags(b.snapshot(errors, max_entries=2)) == [2, 4]
    assert tags(b.snapshot(filter=errors, max_entries=5)) == [1, 2, 4]
    assert tags(b.snapshot(impl.OpsLogFilter(min_status=-1))) == list(range(8))


def test_snapshot_after_wrap_with_filter(impl):
    b = impl.OpsLogBroadcaster(history_cap=4)
    for n in range(10):
        b.publish(E(impl, n, account_id=n % 2))
    assert tags(b.snapshot(impl.OpsLogFilter(account_id=1))) == [7, 9]
    assert tags(b.snapshot(impl.OpsLogFilter(account_id=1), 1)) == [9]


def test_snapshot_is_a_new_list(impl):
    b = impl.OpsLogBroadcaster()
    b.publish(E(impl, 0))
    first = b.snapshot()
    first.clear()
    assert tags(b.snapshot()) == [0]
    assert b.snapshot() is not b.snapshot()


# --- subscribe and unsubscribe -------------------------------------------------------


def test_subscription_attributes(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()
    assert isinstance(sub, impl.OpsLogSubscription)
    assert isinstance(sub.filter, impl.OpsLogFilter)
    assert sub.filter == impl.OpsLogFilter()
    assert sub.buf_size == DEFAULT_BUF_SIZE == 1024
    assert sub.closed is False
    assert sub.dropped == 0
    assert sub.history_gap is False
    assert len(sub) == 0
    f = impl.OpsLogFilter(model="m")
    sub2 = b.subscribe(f, 7)
    assert sub2.filter == f and sub2.buf_size == 7
    sub3 = b.subscribe(filter=f, buf_size=8)
    assert sub3.filter == f and sub3.buf_size == 8


@pytest.mark.parametrize("size", [0, -1, -(2**63)])
def test_buf_size_zero_or_negative_means_1024(impl, size):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe(buf_size=size)
    assert sub.buf_size == 1024
    for n in range(1030):
        b.publish(E(impl, n))
    assert len(sub) == 1024
    assert sub.dropped == 6


def test_buf_size_one(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe(buf_size=1)
    b.publish(E(impl, 0))
    b.publish(E(impl, 1))
    assert tags(sub.drain()) == [0]
    assert sub.dropped == 1


def test_len_counts_buffered(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()
    for n in range(3):
        b.publish(E(impl, n))
    assert len(sub) == 3
    sub.get_nowait()
    assert len(sub) == 2
    sub.drain()
    assert len(sub) == 0


def test_unsubscribe_is_idempotent(impl):
    b = impl.OpsLogBroadcaster()
    keep = b.subscribe()
    sub = b.subscribe()
    assert b.stats().subscribers == 2
    sub.unsubscribe()
    assert sub.closed is True
    assert b.stats().subscribers == 1
    sub.unsubscribe()
    sub.unsubscribe()
    assert b.stats().subscribers == 1
    assert keep.closed is False


def test_unsubscribe_stops_delivery_keeps_buffer(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()
    b.publish(E(impl, 0))
    b.publish(E(impl, 1))
    sub.unsubscribe()
    b.publish(E(impl, 2))
    assert len(sub) == 2
    assert sub.get_nowait().user_id == 0
    assert sub.get(timeout=5).user_id == 1
    with pytest.raises(SubscriptionClosed):
        sub.get_nowait()
    with pytest.raises(SubscriptionClosed):
        sub.get(timeout=5)
    with pytest.raises(SubscriptionClosed):
        sub.get()
    assert sub.drain() == []
    assert tags(b.snapshot()) == [0, 1, 2]


def test_drain_after_unsubscribe(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()
    for n in range(3):
        b.publish(E(impl, n))
    sub.unsubscribe()
    assert tags(sub.drain(max_items=2)) == [0, 1]
    assert tags(sub.drain()) == [2]
    assert sub.drain() == []
    assert sub.drain(5) == []


def test_subscriptions_are_independent(impl):
    b = impl.OpsLogBroadcaster()
    s1, s2 = b.subscribe(), b.subscribe()
    b.publish(E(impl, 0))
    s1.unsubscribe()
    b.publish(E(impl, 1))
    assert tags(s1.drain()) == [0]
    assert tags(s2.drain()) == [0, 1]
    assert s2.closed is False


def test_subscription_after_publish_gets_only_later_entries(impl):
    b = impl.OpsLogBroadcaster()
    b.publish(E(impl, 0))
    sub = b.subscribe()
    b.publish(E(impl, 1))
    assert tags(sub.drain()) == [1]


def test_two_broadcasters_are_independent(impl):
    b1, b2 = impl.OpsLogBroadcaster(), impl.OpsLogBroadcaster()
    s1, s2 = b1.subscribe(), b2.subscribe()
    b1.publish(E(impl, 0))
    assert tags(s1.drain()) == [0] and s2.drain() == []
    assert b2.stats() == (0, 0, 1) and b2.snapshot() == []


# --- sequence numbers and sealing ------------------------------------------------------


def test_seq_numbers_in_publish_order(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()
    entries = [E(impl, n) for n in range(5)]
    assert seqs(entries) == [0] * 5
    for e in entries:
        b.publish(e)
    assert seqs(entries) == [1, 2, 3, 4, 5]
    assert seqs(sub.drain()) == [1, 2, 3, 4, 5]
    assert seqs(b.snapshot()) == [1, 2, 3, 4, 5]


def test_seq_counts_unmatched_and_unstored_publishes(impl):
    b = impl.OpsLogBroadcaster(history_cap=0)
    sub = b.subscribe(impl.OpsLogFilter(min_status=500))
    for n in range(4):
        b.publish(E(impl, n, status=500 if n == 3 else 200))
    (got,) = sub.drain()
    assert got.seq == 4


def test_republish_publishes_a_copy(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()
    e = E(impl, 7, status=200, model="m")
    b.publish(e)
    b.publish(E(impl, 8))
    b.publish(e)
    first, _, again = sub.drain()
    assert first is e
    assert again is not e
    assert again == e  # same value ...
    assert again.seq == 3  # ... its own seq
    assert e.seq == 1  # the original is unchanged
    assert again.time == e.time
    assert seqs(b.snapshot()) == [1, 2, 3]
    assert b.snapshot()[2] is again


def test_republish_on_another_broadcaster(impl):
    b1, b2 = impl.OpsLogBroadcaster(), impl.OpsLogBroadcaster()
    s2 = b2.subscribe()
    b2.publish(E(impl, 0))
    e = E(impl, 1)
    b1.publish(e)
    assert e.seq == 1
    b2.publish(e)
    (_, copy) = s2.drain()
    assert copy == e and copy is not e
    assert copy.seq == 2 and e.seq == 1
    assert b1.snapshot()[0] is e


def test_sealed_entry_never_changes(impl):
    b = impl.OpsLogBroadcaster()
    e = E(impl, 1)
    b.publish(e)
    before = (e.seq, e.time, e.to_json())
    for _ in range(3):
        b.publish(e)
    impl.OpsLogBroadcaster().publish(e)
    assert (e.seq, e.time, e.to_json()) == before


def test_replace_of_published_entry_is_unpublished(impl):
    b = impl.OpsLogBroadcaster()
    e = E(impl, 1)
    b.publish(e)
    r = e.replace(status=500)
    assert r.seq == 0
    b.publish(r)
    assert r.seq == 2 and e.seq == 1


def test_time_zero_stamped_on_publish(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()
    e = impl.OpsLogEntry(status=200)
    assert e.time == 0.0
    before = time.time()
    b.publish(e)
    after = time.time()
    # a wall-clock reading, not a timing assertion: 1 s of slack either side
    assert before - 1.0 <= e.time <= after + 1.0
    assert sub.get_nowait() is e
    assert e.time == round(e.time, 6)  # to the microsecond
    stamped = e.time
    b.publish(e)  # the copy keeps the stamped time
    assert sub.get_nowait().time == stamped
    assert e.time == stamped


def test_explicit_time_not_restamped(impl):
    b = impl.OpsLogBroadcaster()
    e = impl.OpsLogEntry(time=12.5)
    b.publish(e)
    assert e.time == 12.5
    old = impl.OpsLogEntry(time=-1.0)
    b.publish(old)
    assert old.time == -1.0


def test_stamped_entry_hash_follows_its_time(impl):
    b = impl.OpsLogBroadcaster()
    e = impl.OpsLogEntry(status=1)
    b.publish(e)
    assert e == impl.OpsLogEntry(time=e.time, status=1)
    assert hash(e) == hash(impl.OpsLogEntry(time=e.time, status=1))


# --- priming: replay and since_seq ------------------------------------------------


def published(impl, b, count, **kw):
    entries = []
    for n in range(count):
        e = E(impl, n, **kw)
        b.publish(e)
        entries.append(e)
    return entries


def test_replay_last_n(impl):
    b = impl.OpsLogBroadcaster()
    published(impl, b, 10)
    sub = b.subscribe(replay=3)
    assert len(sub) == 3
    assert sub.history_gap is False
    b.publish(E(impl, 10))
    assert seqs(sub.drain()) == [8, 9, 10, 11]


def test_replay_zero_is_live_only(impl):
    b = impl.OpsLogBroadcaster()
    published(impl, b, 3)
    sub = b.subscribe(replay=0)
    assert len(sub) == 0


def test_replay_more_than_history(impl):
    b = impl.OpsLogBroadcaster(history_cap=4)
    published(impl, b, 6)
    sub = b.subscribe(replay=100)
    assert seqs(sub.drain()) == [3, 4, 5, 6]
    assert sub.history_gap is False


def test_replay_filtered(impl):
    b = impl.OpsLogBroadcaster()
    for n in range(10):
        b.publish(E(impl, n, status=500 if n % 3 == 0 else 200))
    sub = b.subscribe(impl.OpsLogFilter(min_status=500), replay=2)
    assert tags(sub.drain()) == [6, 9]


def test_replay_never_overfills_the_buffer(impl):
    b = impl.OpsLogBroadcaster()
    published(impl, b, 10)
    sub = b.subscribe(buf_size=4, replay=8)
    assert len(sub) == 4
    assert sub.dropped == 0
    assert b.stats().dropped == 0
    assert seqs(sub.drain()) == [7, 8, 9, 10]  # the newest


def test_replay_full_buffer_then_live_drops(impl):
    b = impl.OpsLogBroadcaster()
    published(impl, b, 5)
    sub = b.subscribe(buf_size=2, replay=2)
    b.publish(E(impl, 5))
    assert sub.dropped == 1 and b.stats().dropped == 1
    assert seqs(sub.drain()) == [4, 5]


def test_replay_without_history(impl):
    b = impl.OpsLogBroadcaster(history_cap=0)
    published(impl, b, 5)
    sub = b.subscribe(replay=3)
    assert len(sub) == 0
    assert sub.history_gap is False


def test_replay_empty_broadcaster(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe(replay=5)
    assert len(sub) == 0
    b.publish(E(impl, 0))
    assert seqs(sub.drain()) == [1]


@pytest.mark.parametrize(
    "since, expected, gap",
    [
        (0, list(range(1, 11)), False),
        (7, [8, 9, 10], False),
        (9, [10], False),
        (10, [], False),  # up to date
        (11, [], True),  # from the future: another broadcaster's numbering
        (2**63 - 1, [], True),
    ],
)
def test_since_seq(impl, since, expected, gap):
    b = impl.OpsLogBroadcaster(history_cap=100)
    published(impl, b, 10)
    sub = b.subscribe(since_seq=since)
    assert sub.history_gap is gap
    assert seqs(sub.drain()) == expected
    b.publish(E(impl, 10))
    assert seqs(sub.drain()) == [11]


@pytest.mark.parametrize(
    "since, expected, gap",
    [
        (0, [6, 7, 8, 9, 10], True),
        (4, [6, 7, 8, 9, 10], True),  # seq 5 is gone
        (5, [6, 7, 8, 9, 10], False),  # history reaches back exactly
        (6, [7, 8, 9, 10], False),
        (10, [], False),
    ],
)
def test_since_seq_after_wrap(impl, since, expected, gap):
    b = impl.OpsLogBroadcaster(history_cap=5)
    published(impl, b, 10)
    sub = b.subscribe(since_seq=since)
    assert seqs(sub.drain()) == expected
    assert sub.history_gap is gap


def test_since_seq_gap_is_about_seqs_not_matches(impl):
    # History reaches back far enough even if nothing after S matches.
    b = impl.OpsLogBroadcaster(history_cap=5)
    published(impl, b, 10, status=200)
    sub = b.subscribe(impl.OpsLogFilter(min_status=500), since_seq=5)
    assert len(sub) == 0
    assert sub.history_gap is False
    sub2 = b.subscribe(impl.OpsLogFilter(min_status=500), since_seq=4)
    assert sub2.history_gap is True


def test_since_seq_filtered(impl):
    b = impl.OpsLogBroadcaster()
    for n in range(10):
        b.publish(E(impl, n, model="m" if n % 2 else "x"))
    sub = b.subscribe(impl.OpsLogFilter(model="m"), since_seq=4)
    assert seqs(sub.drain()) == [6, 8, 10]
    assert sub.history_gap is False


def test_since_seq_never_overfills_the_buffer(impl):
    b = impl.OpsLogBroadcaster()
    published(impl, b, 10)
    sub = b.subscribe(buf_size=3, since_seq=2)
    assert sub.history_gap is True  # 4 matching entries after seq 2 were lost
    assert seqs(sub.drain()) == [8, 9, 10]
    assert sub.dropped == 0 and b.stats().dropped == 0


def test_since_seq_buffer_exactly_big_enough(impl):
    b = impl.OpsLogBroadcaster()
    published(impl, b, 10)
    sub = b.subscribe(buf_size=3, since_seq=7)
    assert sub.history_gap is False
    assert seqs(sub.drain()) == [8, 9, 10]


def test_since_seq_buffer_limit_counts_only_matching(impl):
    b = impl.OpsLogBroadcaster()
    for n in range(10):
        b.publish(E(impl, n, status=500 if n in (2, 8) else 200))
    sub = b.subscribe(impl.OpsLogFilter(min_status=500), buf_size=2, since_seq=0)
    assert seqs(sub.drain()) == [3, 9]
    assert sub.history_gap is False


def test_since_seq_without_history(impl):
    b = impl.OpsLogBroadcaster(history_cap=0)
    assert b.subscribe(since_seq=0).history_gap is False  # nothing published yet
    published(impl, b, 3)
    assert b.subscribe(since_seq=3).history_gap is False
    lost = b.subscribe(since_seq=2)
    assert lost.history_gap is True and len(lost) == 0
    assert b.subscribe(since_seq=4).history_gap is True


def test_since_seq_none_is_live_only(impl):
    b = impl.OpsLogBroadcaster()
    published(impl, b, 3)
    sub = b.subscribe(since_seq=None)
    assert len(sub) == 0 and sub.history_gap is False


def test_since_seq_reconnect_sees_each_entry_once(impl):
    b = impl.OpsLogBroadcaster()
    first = b.subscribe()
    published(impl, b, 5)
    seen = first.drain()[:3]  # the client saw 1..3, then its connection broke
    first.unsubscribe()
    published(impl, b, 2)
    again = b.subscribe(since_seq=seen[-1].seq)
    b.publish(E(impl, 99))
    seen += again.drain()
    assert seqs(seen) == [1, 2, 3, 4, 5, 6, 7, 8]


# --- overflow policies ----------------------------------------------------------------


def test_overflow_default_is_drop_newest(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe(buf_size=2)
    published(impl, b, 4)
    assert seqs(sub.drain()) == [1, 2]


def test_drop_newest_explicit(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe(buf_size=2, overflow="drop_newest")
    published(impl, b, 4)
    assert sub.dropped == 2 and b.stats().dropped == 2
    assert seqs(sub.drain()) == [1, 2]


def test_drop_oldest(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe(buf_size=3, overflow="drop_oldest")
    published(impl, b, 5)
    assert len(sub) == 3
    assert sub.dropped == 2 and b.stats().dropped == 2
    assert seqs(sub.drain()) == [3, 4, 5]  # a slow reader still sees the latest
    b.publish(E(impl, 5))
    assert seqs(sub.drain()) == [6]
    assert sub.dropped == 2


def test_drop_oldest_counts_only_matching(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe(impl.OpsLogFilter(min_status=500), buf_size=1, overflow="drop_oldest")
    b.publish(E(impl, 0, status=500))
    b.publish(E(impl, 1, status=200))
    assert sub.dropped == 0
    b.publish(E(impl, 2, status=501))
    assert sub.dropped == 1 and b.stats().dropped == 1
    assert tags(sub.drain()) == [2]


def test_policies_side_by_side(impl):
    b = impl.OpsLogBroadcaster()
    newest = b.subscribe(buf_size=2, overflow="drop_newest")
    oldest = b.subscribe(buf_size=2, overflow="drop_oldest")
    published(impl, b, 5)
    assert b.stats().dropped == 6
    assert seqs(newest.drain()) == [1, 2]
    assert seqs(oldest.drain()) == [4, 5]


def test_drop_oldest_with_replay(impl):
    b = impl.OpsLogBroadcaster()
    published(impl, b, 5)
    sub = b.subscribe(buf_size=3, replay=3, overflow="drop_oldest")
    b.publish(E(impl, 5))
    assert sub.dropped == 1
    assert seqs(sub.drain()) == [4, 5, 6]


# --- garbage collection --------------------------------------------------------------


def test_dropped_subscription_is_unsubscribed(impl):
    b = impl.OpsLogBroadcaster()
    keep = b.subscribe()
    sub = b.subscribe(buf_size=1)
    b.publish(E(impl, 0))
    assert b.stats().subscribers == 2
    del sub
    gc.collect()
    assert b.stats().subscribers == 1
    b.publish(E(impl, 1))
    b.publish(E(impl, 2))
    assert b.stats().dropped == 0  # nobody is left to miss anything
    assert tags(keep.drain()) == [0, 1, 2]


def test_subscription_in_a_reference_cycle_is_unsubscribed(impl):
    b = impl.OpsLogBroadcaster()
    holder = [b.subscribe()]
    holder.append(holder)
    b.publish(E(impl, 0))
    assert b.stats().subscribers == 1
    del holder
    gc.collect()
    assert b.stats().subscribers == 0
    b.publish(E(impl, 1))
    assert b.stats() == (2, 0, 0)


def test_many_dropped_subscriptions(impl):
    b = impl.OpsLogBroadcaster()
    for n in range(50):
        b.subscribe(impl.OpsLogFilter(account_id=n + 1), replay=1)
    gc.collect()
    assert b.stats().subscribers == 0


def test_subscription_outlives_broadcaster_reference(impl):
    def make():
        b = impl.OpsLogBroadcaster()
        sub = b.subscribe()
        b.publish(E(impl, 0))
        return sub

    sub = make()
    gc.collect()
    assert tags(sub.drain()) == [0]
    sub.unsubscribe()
    assert sub.closed


# --- bad input changes nothing ------------------------------------------------------


def _state(b, subs):
    return (
        b.stats(),
        [(e.seq, e) for e in b.snapshot()],
        [(len(s), s.dropped, s.closed, s.buf_size, s.filter, s.history_gap) for s in subs],
    )


BAD_CALLS = [
    # publish: anything but an entry
    ("publish-None", lambda i, b, s: b.publish(None), TypeError),
    ("publish-dict", lambda i, b, s: b.publish({"status": 200}), TypeError),
    ("publish-filter", lambda i, b, s: b.publish(i.OpsLogFilter()), TypeError),
    ("publish-subscription", lambda i, b, s: b.publish(s[0]), TypeError),
    ("publish-int", lambda i, b, s: b.publish(1), TypeError),
    ("publish-no-arg", lambda i, b, s: b.publish(), TypeError),
    ("publish-two-args", lambda i, b, s: b.publish(i.OpsLogEntry(), i.OpsLogEntry()), TypeError),
    # subscribe: filter
    ("subscribe-filter-dict", lambda i, b, s: b.subscribe({"model": "m"}), TypeError),
    ("subscribe-filter-str", lambda i, b, s: b.subscribe("m"), TypeError),
    ("subscribe-filter-entry", lambda i, b, s: b.subscribe(i.OpsLogEntry()), TypeError),
    ("subscribe-filter-int", lambda i, b, s: b.subscribe(0), TypeError),
    # subscribe: buf_size
    ("subscribe-buf-str", lambda i, b, s: b.subscribe(buf_size="8"), TypeError),
    ("subscribe-buf-float", lambda i, b, s: b.subscribe(buf_size=8.0), TypeError),
    ("subscribe-buf-bool", lambda i, b, s: b.subscribe(buf_size=True), TypeError),
    ("subscribe-buf-None", lambda i, b, s: b.subscribe(buf_size=None), TypeError),
    ("subscribe-buf-2**63", lambda i, b, s: b.subscribe(buf_size=2**63), OverflowError),
    ("subscribe-buf-above-cap", lambda i, b, s: b.subscribe(buf_size=MAX_CAPACITY + 1), ValueError),
    ("subscribe-buf-2**40", lambda i, b, s: b.subscribe(buf_size=2**40), ValueError),
    # subscribe: replay / since_seq
    ("subscribe-replay-negative", lambda i, b, s: b.subscribe(replay=-1), ValueError),
    ("subscribe-replay-str", lambda i, b, s: b.subscribe(replay="2"), TypeError),
    ("subscribe-replay-bool", lambda i, b, s: b.subscribe(replay=True), TypeError),
    ("subscribe-replay-None", lambda i, b, s: b.subscribe(replay=None), TypeError),
    ("subscribe-replay-2**63", lambda i, b, s: b.subscribe(replay=2**63), OverflowError),
    ("subscribe-since-negative", lambda i, b, s: b.subscribe(since_seq=-1), ValueError),
    ("subscribe-since-float", lambda i, b, s: b.subscribe(since_seq=3.0), TypeError),
    ("subscribe-since-bool", lambda i, b, s: b.subscribe(since_seq=False), TypeError),
    ("subscribe-since-2**64", lambda i, b, s: b.subscribe(since_seq=2**64), OverflowError),
    ("subscribe-replay-and-since", lambda i, b, s: b.subscribe(replay=2, since_seq=3), ValueError),
    ("subscribe-replay-and-since-0", lambda i, b, s: b.subscribe(replay=1, since_seq=0), ValueError),
    ("subscribe-replay-positional", lambda i, b, s: b.subscribe(None, 8, 2), TypeError),
    ("subscribe-unknown-kw", lambda i, b, s: b.subscribe(replays=2), TypeError),
    # subscribe: overflow
    ("subscribe-overflow-unknown", lambda i, b, s: b.subscribe(overflow="drop"), ValueError),
    ("subscribe-overflow-case", lambda i, b, s: b.subscribe(overflow="DROP_OLDEST"), ValueError),
    ("subscribe-overflow-space", lambda i, b, s: b.subscribe(overflow="drop_oldest "), ValueError),
    ("subscribe-overflow-empty", lambda i, b, s: b.subscribe(overflow=""), ValueError),
    ("subscribe-overflow-None", lambda i, b, s: b.subscribe(overflow=None), (ValueError, TypeError)),
    ("subscribe-overflow-int", lambda i, b, s: b.subscribe(overflow=1), (ValueError, TypeError)),
    # snapshot
    ("snapshot-filter-dict", lambda i, b, s: b.snapshot({}), TypeError),
    ("snapshot-filter-entry", lambda i, b, s: b.snapshot(i.OpsLogEntry()), TypeError),
    ("snapshot-max-str", lambda i, b, s: b.snapshot(max_entries="2"), TypeError),
    ("snapshot-max-float", lambda i, b, s: b.snapshot(max_entries=2.0), TypeError),
    ("snapshot-max-bool", lambda i, b, s: b.snapshot(max_entries=True), TypeError),
    ("snapshot-max-None", lambda i, b, s: b.snapshot(max_entries=None), TypeError),
    ("snapshot-max-2**63", lambda i, b, s: b.snapshot(max_entries=2**63), OverflowError),
    # subscription methods
    ("get-negative-timeout", lambda i, b, s: s[0].get(timeout=-1), ValueError),
    ("get-nan-timeout", lambda i, b, s: s[0].get(timeout=float("nan")), ValueError),
    ("get-str-timeout", lambda i, b, s: s[0].get(timeout="1"), TypeError),
    ("get-bool-timeout", lambda i, b, s: s[0].get(timeout=True), TypeError),
    ("get-negative-timeout-empty", lambda i, b, s: s[1].get(timeout=-0.5), ValueError),
    ("drain-negative", lambda i, b, s: s[0].drain(-1), ValueError),
    ("drain-str", lambda i, b, s: s[0].drain("1"), TypeError),
    ("drain-float", lambda i, b, s: s[0].drain(1.0), TypeError),
    ("drain-bool", lambda i, b, s: s[0].drain(True), TypeError),
    ("drain-2**64", lambda i, b, s: s[0].drain(2**64), OverflowError),
    ("filter-matches-None", lambda i, b, s: s[0].filter.matches(None), TypeError),
]


@pytest.mark.parametrize("call, error", [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_bad_input_raises_and_changes_nothing(impl, call, error):
    b = impl.OpsLogBroadcaster(history_cap=4)
    full = b.subscribe(buf_size=2)  # will be full, with drops
    quiet = b.subscribe(impl.OpsLogFilter(min_status=500), buf_size=4, overflow="drop_oldest")
    for n in range(5):
        b.publish(E(impl, n, status=200))
    subs = [full, quiet]
    before = _state(b, subs)
    with pytest.raises(error):
        call(impl, b, subs)
    assert _state(b, subs) == before
    # ... and the broadcaster carries on exactly where it was
    b.publish(E(impl, 5, status=503))
    assert b.stats() == (6, 4, 2)
    assert seqs(b.snapshot()) == [3, 4, 5, 6]
    assert seqs(full.drain()) == [1, 2]
    assert seqs(quiet.drain()) == [6]


@pytest.mark.parametrize(
    "cap, error",
    [
        ("10", TypeError),
        (10.0, TypeError),
        (True, TypeError),
        (None, TypeError),
        (2**63, OverflowError),
        (-(2**63) - 1, OverflowError),
        (MAX_CAPACITY + 1, ValueError),
        (2**40, ValueError),
    ],
    ids=repr,
)
def test_bad_history_cap(impl, cap, error):
    with pytest.raises(error):
        impl.OpsLogBroadcaster(history_cap=cap)


def test_unknown_constructor_keyword(impl):
    with pytest.raises(TypeError):
        impl.OpsLogBroadcaster(capacity=10)


def test_bad_input_on_closed_subscription(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()
    b.publish(E(impl, 0))
    sub.unsubscribe()
    with pytest.raises(ValueError):
        sub.drain(-1)
    with pytest.raises(TypeError):
        sub.get(timeout="x")
    assert len(sub) == 1
    assert tags(sub.drain()) == [0]


def test_bad_publish_does_not_consume_a_seq(impl):
    b = impl.OpsLogBroadcaster()
    with pytest.raises(TypeError):
        b.publish(object())
    e = E(impl, 0)
    b.publish(e)
    assert e.seq == 1
