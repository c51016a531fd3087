"""The compiled core's snapshot scan without the GIL.

It only gives up the GIL to filter long histories (``NOGIL_MIN_HISTORY``);
these tests lower that threshold so that every filtered snapshot takes the
GIL-free path,
and check it against the path that keeps the GIL, alone and while other
threads publish, subscribe, read and unsubscribe.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from _helpers import finish, start

pytestmark = pytest.mark.c_extension

NEVER = 1 << 30


@pytest.fixture
def core(c_impl):
    yield c_impl


@pytest.fixture
def gil_free(core) -> Iterator[None]:
    previous = core._set_nogil_min_history(0)
    try:
        yield
    finally:
        core._set_nogil_min_history(previous)


def _snapshots(core, b, filters, limits):
    return [
        [(e.seq, e.to_json()) for e in b.snapshot(f, n)]
        for f in filters
        for n in limits
    ]


def test_gil_free_snapshot_matches_the_kept_path(core):
    b = core.OpsLogBroadcaster(50)
    for i in range(137):  # wraps the ring twice and a bit
        b.publish(core.OpsLogEntry(time=1.0 + i, status=200 + i % 7 * 50,
                                   model=f"m{i % 3}", latency_ms=i, account_id=i % 4))
    filters = [None, core.OpsLogFilter(model="m1"), core.OpsLogFilter(min_status=400),
               core.OpsLogFilter(account_id=2, min_latency_ms=100), core.OpsLogFilter(model="none")]
    limits = [0, 1, 7, 50, 51, -3]
    previous = core._set_nogil_min_history(NEVER)
    try:
        kept = _snapshots(core, b, filters, limits)
        core._set_nogil_min_history(0)
        free = _snapshots(core, b, filters, limits)
    finally:
        core._set_nogil_min_history(previous)
    assert free == kept
    assert [seq for seq, _ in free[0]] == list(range(88, 138))


def test_gil_free_snapshot_of_an_empty_history(core, gil_free):
    assert core.OpsLogBroadcaster(10).snapshot() == []
    assert core.OpsLogBroadcaster(0).snapshot() == []


def test_gil_free_snapshots_while_others_work(core, gil_free, fast_switch):
    cap = 4096
    rounds = 300  # snapshots per snapshotting thread
    b = core.OpsLogBroadcaster(cap)
    publishing = threading.Event()
    publishing.set()
    stop = threading.Event()

    def publish(tag: int) -> int:
        calls = 0
        while publishing.is_set():
            b.publish(core.OpsLogEntry(time=1.0, status=200 + calls % 5 * 100, account_id=tag))
            calls += 1
        return calls

    def churn() -> int:
        subscriptions = 0
        while not stop.is_set():
            with b.subscribe(core.OpsLogFilter(min_status=500), 8) as sub:
                sub.drain(3)
                len(sub)
            subscriptions += 1
        return subscriptions

    every_status = core.OpsLogFilter(min_status=1)  # a filter, so a scan

    def snap() -> list[str]:
        problems = []
        for i in range(rounds):
            seqs = [e.seq for e in b.snapshot(every_status if i % 2 else None)]
            # History holds the newest publishes, contiguous, at most cap.
            if seqs and seqs != list(range(seqs[0], seqs[0] + len(seqs))):
                problems.append(f"not contiguous: {seqs[:3]}...")
            if len(seqs) > cap:
                problems.append(f"{len(seqs)} entries in a history of {cap}")
            errors = b.snapshot(core.OpsLogFilter(min_status=500), 5)
            if len(errors) > 5 or any(e.status < 500 for e in errors):
                problems.append(f"filtered snapshot: {errors}")
        return problems

    publishers = [start(publish, tag) for tag in (1, 2)]
    churner = start(churn)
    snappers = [start(snap), start(snap)]
    # The snappers do a fixed number of rounds: about 6 s under ASan on an idle
    # machine, several times that on a loaded one, so the hang guard is wider.
    problems = [finish(worker, timeout=120.0) for worker in snappers]
    publishing.clear()
    stop.set()
    calls = sum(finish(worker) for worker in publishers)
    assert finish(churner) > 0
    assert problems == [[], []]
    published, _, subscribers = b.stats()
    assert (published, subscribers) == (calls, 0)
    assert [e.seq for e in b.snapshot()] == list(range(max(1, calls - cap + 1), calls + 1))
