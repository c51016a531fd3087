"""Routing (ARCHITECTURE.md): a publish finds its subscribers through an
index by model, account or group, or in the "every" list, with equal
filters grouped. Whatever the index does, each subscription must receive
exactly what a brute-force ``filter.matches`` over the same entries picks,
in publish order; these tests compare the two while subscriptions come,
go and share filters."""

from __future__ import annotations

import gc
import random
from types import ModuleType
from typing import Any

import pytest

MODELS = ("", "gpt", "claude", "gemini", "\U0001f642")


def entries(impl: ModuleType, n: int, seed: int = 0) -> list[Any]:
    """``n`` entries over a few models, accounts and groups, tagged with
    their index in ``user_id``; zero and negative ids included."""
    rnd = random.Random(seed)
    return [
        impl.OpsLogEntry(
            time=1_700_000_000.0 + i,
            user_id=i,
            model=rnd.choice(MODELS),
            account_id=rnd.randint(-1, 6),
            group_id=rnd.randint(-1, 4),
            status=rnd.choice((200, 404, 500, 503)),
            latency_ms=rnd.randint(0, 400),
        )
        for i in range(n)
    ]


def tags(entries: list[Any]) -> list[int]:
    return [int(e.user_id) for e in entries]


def check(subs: list[Any], published: list[Any]) -> None:
    """Every live subscription holds exactly what its filter picks from
    ``published``; drains them."""
    for sub in subs:
        assert tags(sub.drain()) == [e.user_id for e in published if sub.filter.matches(e)], sub.filter


def publish_all(b: Any, published: list[Any]) -> None:
    for e in published:
        b.publish(e)


def random_filter(impl: ModuleType, rnd: random.Random) -> Any:
    return impl.OpsLogFilter(
        model=rnd.choice(MODELS),
        account_id=rnd.choice((0, 0, -1, 1, 2, 3)),
        group_id=rnd.choice((0, 0, -2, 1, 2)),
        min_status=rnd.choice((0, 0, -5, 404, 500)),
        min_latency_ms=rnd.choice((0, 0, -1, 100, 300)),
    )


@pytest.mark.parametrize(
    "kw",
    [
        # Filed under the model, the account, the group, or in "every".
        {"model": "gpt"},
        {"model": "\U0001f642", "min_status": 500},
        {"account_id": 3},
        {"account_id": 3, "min_latency_ms": 200},
        {"group_id": 2},
        {"group_id": 2, "min_status": 404},
        {},
        {"min_status": 500},
        {"min_latency_ms": 100},
        {"min_status": -1, "account_id": -3, "group_id": -2, "min_latency_ms": -4},
        # Several equality fields: filed under the first, the rest tested.
        {"model": "claude", "account_id": 2},
        {"model": "claude", "group_id": 1, "account_id": 4},
        {"account_id": 1, "group_id": 3},
    ],
)
def test_each_route_delivers_what_matches(impl: ModuleType, kw: dict[str, Any]) -> None:
    b = impl.OpsLogBroadcaster(history_cap=0)
    sub = b.subscribe(impl.OpsLogFilter(**kw), buf_size=1000)
    published = entries(impl, 600)
    publish_all(b, published)
    assert any(sub.filter.matches(e) for e in published)
    check([sub], published)


def test_equal_filters_each_get_every_match(impl: ModuleType) -> None:
    # Equal filters, and filters equal but for how they say "unset", share
    # a group: each subscription still gets its own copy of each match.
    b = impl.OpsLogBroadcaster(history_cap=0)
    spellings = [
        impl.OpsLogFilter(model="gpt", min_status=500),
        impl.OpsLogFilter(model="gpt", min_status=500, account_id=-1),
        impl.OpsLogFilter(model="gp" + "t", min_status=500, group_id=0, min_latency_ms=-7),
        impl.OpsLogFilter(account_id=2),
        impl.OpsLogFilter(account_id=2, min_status=-1),
        impl.OpsLogFilter(),
        impl.OpsLogFilter(min_status=-3),
    ]
    subs = [b.subscribe(f, buf_size=1000) for f in spellings for _ in range(3)]
    assert b.stats().subscribers == len(subs)
    published = entries(impl, 500, seed=1)
    publish_all(b, published)
    check(subs, published)


def test_removal_keeps_the_rest_of_a_group(impl: ModuleType) -> None:
    b = impl.OpsLogBroadcaster(history_cap=0)
    flt = impl.OpsLogFilter(account_id=3)
    subs = [b.subscribe(flt, buf_size=1000) for _ in range(5)]
    other = b.subscribe(impl.OpsLogFilter(account_id=4), buf_size=1000)
    # First, middle and last of the group.
    for i in (0, 2, 4):
        subs[i].unsubscribe()
    live = [subs[1], subs[3], other]
    published = entries(impl, 400, seed=2)
    publish_all(b, published)
    check(live, published)
    for i in (0, 2, 4):
        assert subs[i].drain() == []
    assert b.stats().subscribers == 3


def test_a_group_emptied_and_made_again(impl: ModuleType) -> None:
    b = impl.OpsLogBroadcaster(history_cap=0)
    for kw in ({"model": "gpt"}, {"account_id": 2}, {"group_id": 1}, {"min_status": 500}):
        flt = impl.OpsLogFilter(**kw)
        first = b.subscribe(flt, buf_size=1000)
        first.unsubscribe()
        first.unsubscribe()  # idempotent: the group is not taken out twice
        published = entries(impl, 200, seed=3)
        publish_all(b, published)
        assert first.drain() == []
        again = b.subscribe(flt, buf_size=1000)
        publish_all(b, published)
        check([again], published)
        again.unsubscribe()
    assert b.stats().subscribers == 0


def test_a_collected_subscription_leaves_its_group(impl: ModuleType) -> None:
    b = impl.OpsLogBroadcaster(history_cap=0)
    flt = impl.OpsLogFilter(model="claude")
    kept = b.subscribe(flt, buf_size=1000)
    b.subscribe(flt, buf_size=1000)  # dropped at once
    gc.collect()
    assert b.stats().subscribers == 1
    published = entries(impl, 300, seed=4)
    publish_all(b, published)
    check([kept], published)


def test_many_groups_grow_the_index(impl: ModuleType) -> None:
    # Hundreds of distinct keys of each kind: the table grows many times
    # and its chains hold keys of different kinds side by side. Each key
    # matches one entry, so the small buffers never drop.
    b = impl.OpsLogBroadcaster(history_cap=0)
    n = 300  # 900 groups: the core's table grows from 8 buckets to 1024
    subs = []
    for i in range(1, n + 1):
        subs.append(b.subscribe(impl.OpsLogFilter(account_id=i), buf_size=4))
        subs.append(b.subscribe(impl.OpsLogFilter(group_id=i), buf_size=4))
        subs.append(b.subscribe(impl.OpsLogFilter(model=f"m{i}"), buf_size=4))
    published = [
        impl.OpsLogEntry(user_id=i, account_id=i, group_id=n + 1 - i, model=f"m{i * 7 % n + 1}")
        for i in range(1, n + 1)
    ]
    publish_all(b, published)
    check(subs, published)
    # Every other one out, then the index must still find the rest.
    for sub in subs[::2]:
        sub.unsubscribe()
    publish_all(b, published)
    check(subs[1::2], published)


def _route_bucket(kind: int, key: int, buckets: int) -> int:
    """Which of ``buckets`` the core files an account (kind 2) or group
    (kind 3) under: its hash as _filter_c.pxi computes it."""
    h = ((key ^ (kind << 61)) * 0x9E3779B97F4A7C15) % 2**64
    return (h ^ (h >> 32)) % buckets


def test_keys_sharing_a_bucket(impl: ModuleType) -> None:
    # Accounts and groups whose keys land in one bucket of the core's first
    # table (8 buckets): one chain, walked on each publish, unlinked from
    # its head, middle and tail. The pure implementation must agree.
    b = impl.OpsLogBroadcaster(history_cap=0)
    accounts = [a for a in range(1, 500) if _route_bucket(2, a, 8) == 0][:3]
    groups = [g for g in range(1, 500) if _route_bucket(3, g, 8) == 0][:3]
    assert len(accounts) == len(groups) == 3
    subs = [b.subscribe(impl.OpsLogFilter(account_id=a), buf_size=1000) for a in accounts]
    subs += [b.subscribe(impl.OpsLogFilter(group_id=g), buf_size=1000) for g in groups]
    keys = accounts + groups + [0, 7]
    published = [
        impl.OpsLogEntry(user_id=i, account_id=keys[i % 8], group_id=keys[(i * 3) % 8])
        for i in range(400)
    ]
    publish_all(b, published)
    check(subs, published)
    for i in (5, 2, 0, 3):
        subs[i].unsubscribe()
    live = [subs[1], subs[4]]
    publish_all(b, published)
    check(live, published)


@pytest.mark.parametrize("seed", range(4))
def test_random_subscribe_and_unsubscribe(impl: ModuleType, seed: int) -> None:
    # Subscriptions come and go between publishes, many sharing filters;
    # after each step every live one holds exactly its matches.
    rnd = random.Random(seed)
    b = impl.OpsLogBroadcaster(history_cap=0)
    filters = [random_filter(impl, rnd) for _ in range(12)]
    live = []
    for step in range(40):
        for _ in range(rnd.randint(0, 8)):
            live.append(b.subscribe(rnd.choice(filters), buf_size=1000))
        rnd.shuffle(live)
        for _ in range(rnd.randint(0, len(live) // 2)):
            live.pop().unsubscribe()
        published = entries(impl, 30, seed=seed * 100 + step)
        publish_all(b, published)
        check(live, published)
        assert b.stats().subscribers == len(live)


def test_grouped_subscriptions_keep_their_own_buffers(impl: ModuleType) -> None:
    # One group, different buffer sizes and overflow policies: each drops
    # and counts on its own.
    b = impl.OpsLogBroadcaster(history_cap=0)
    flt = impl.OpsLogFilter(group_id=1)
    newest = b.subscribe(flt, buf_size=2)
    oldest = b.subscribe(flt, buf_size=2, overflow="drop_oldest")
    roomy = b.subscribe(flt, buf_size=100)
    published = [impl.OpsLogEntry(user_id=i, group_id=1) for i in range(5)]
    publish_all(b, published)
    assert tags(newest.drain()) == [0, 1]
    assert tags(oldest.drain()) == [3, 4]
    assert tags(roomy.drain()) == [0, 1, 2, 3, 4]
    assert newest.dropped == oldest.dropped == 3
    assert roomy.dropped == 0
    assert b.stats().dropped == 6


def _subscribe_without_memory(b: Any, flt: Any, allocations: int) -> Any:
    """``b.subscribe(flt)`` with every allocation after the first
    ``allocations`` failing; None if it raised MemoryError."""
    import _testcapi  # type: ignore[import-not-found]  # CPython's test helpers, no stub

    _testcapi.set_nomemory(allocations)
    try:
        return b.subscribe(flt, buf_size=1000)
    except MemoryError:
        return None
    finally:
        _testcapi.remove_mem_hooks()


def _failures_until_subscribed(b: Any, flt: Any, subscribed: list[Any]) -> int:
    """Subscribe to ``flt`` with each allocation failing in turn, until it
    succeeds; the number of MemoryErrors. Each failure must leave the
    subscriptions as they were."""
    for allocations in range(200):
        sub = _subscribe_without_memory(b, flt, allocations)
        if sub is not None:
            subscribed.append(sub)
            return allocations
        assert b.stats().subscribers == len(subscribed)
    raise AssertionError("subscribe never succeeded")


@pytest.mark.parametrize(
    ("kw", "route_allocations"),
    [
        ({"min_status": 500}, 3),  # a group, room in the every list, its ring array
        ({"model": "gpt"}, 3),  # a group, the full table (8 groups, 8 buckets) grown, its ring array
        ({"account_id": 3}, 1),  # a fifth ring for a group that has room for four
    ],
)
def test_subscribe_out_of_memory_changes_nothing(
    c_impl: ModuleType, kw: dict[str, Any], route_allocations: int
) -> None:
    # Each allocation subscribe makes fails in turn: it raises MemoryError
    # and leaves the routes as they were, until it has all it needs. How
    # many allocations the subscription object needs depends on CPython's
    # allocator, so the routes' share is counted against a subscription
    # into a group with room, which needs none.
    b = c_impl.OpsLogBroadcaster(history_cap=0)
    subscribed = [b.subscribe(c_impl.OpsLogFilter(account_id=3), buf_size=1000) for _ in range(4)]
    subscribed += [b.subscribe(c_impl.OpsLogFilter(account_id=a), buf_size=1000) for a in range(4, 11)]
    baseline = _failures_until_subscribed(b, c_impl.OpsLogFilter(account_id=4), subscribed)
    failures = _failures_until_subscribed(b, c_impl.OpsLogFilter(**kw), subscribed)
    assert failures - baseline == route_allocations
    published = [*entries(c_impl, 300, seed=5), *(c_impl.OpsLogEntry(account_id=a) for a in range(7, 11))]
    publish_all(b, published)
    check(subscribed, published)
