"""``python -m fastopslog soak``: a gateway's traffic, compressed, with every count checked.

Publishing threads publish as fast as they can and, the whole time, open and
close subscriptions, prime some from history (``replay``, ``since_seq``) and
drop some without ``unsubscribe()`` for the garbage collector to find.
Readers in a thread pool and in an asyncio loop of its own read them in every
style (``get`` with and without a timeout, iteration, ``drain``, ``aget``,
``async for``, ``wait_for``), some slowly so that buffers fill, under both
overflow policies; some subscriptions are closed while their reader is parked
on an empty buffer. A checker thread calls ``stats`` and ``snapshot``
throughout and checks what it gets.

Why the accounting is exact: each publisher owns a tag (its account, group
and model) that no other thread publishes, and only subscribes with filters
on its own tag. So the entries that matched while one of its subscriptions
was live are exactly those it primed (``len(sub)`` right after subscribe, as
no one else can add to it) plus those it published, matching, between its own
``subscribe()`` and ``unsubscribe()`` calls. Whole-run subscriptions on
shared filters are exact too: everything published matched while they were
live. Progress goes to stderr, the figures and a PASS/FAIL line to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import faulthandler
import gc
import json
import math
import os
import queue
import random
import sys
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import ModuleType
from typing import Any

from . import _workload
from ._common import DROP_NEWEST, DROP_OLDEST, SubscriptionClosed

PUBLISHERS = 3
POOL_READERS = 3
# Above the core's GIL-free snapshot threshold (50,000): once history is
# full, the checker's filtered snapshots scan it without the GIL.
HISTORY_CAP = 1 << 16
MAX_OPEN = 2  # own subscriptions open at once, per publisher
OPEN_EVERY = 64  # publishes between attempts to open one
LIFETIMES = (1, 10, 100, 1000, 10_000)  # publishes a subscription stays open
FORGET_EVERY = 8192  # publishes between subscriptions dropped without unsubscribe()
SAMPLE_EVERY = 10_000  # one entry in this many is watched for leaks
RECENT = 64  # own publishes remembered for since_seq
CATCH_UP = 0.02  # seconds a closing owner waits for its reader to empty the buffer
END_GRACE = 60.0  # seconds for every thread to finish once the run is over
THREAD_STYLES = ("get", "get_timeout", "iter", "drain")
ASYNC_STYLES = ("aget", "async_for", "wait_for")

STATUSES = (200, 404, 500, 503)
LATENCIES = (40, 150, 900)
SHARED_MODELS = ("gpt-4o", "claude")
ACCOUNT0, GROUP0 = 1000, 2000
# Whole-run subscriptions: filter, buf_size, overflow, reader style, slow.
MONITORS: tuple[tuple[dict[str, Any], int, str, str, bool], ...] = (
    ({}, 64, DROP_OLDEST, "get", True),
    ({"min_status": 500}, 256, DROP_NEWEST, "aget", False),
    ({"model": "gpt-4o"}, 4096, DROP_NEWEST, "drain", False),
    ({"min_status": 404, "min_latency_ms": 500}, 16, DROP_OLDEST, "wait_for", True),
)


def matches(flt: Any, e: Any) -> bool:
    """Go's ``matches``, transcribed: the soak does not take the filter under
    test's word for what matches."""
    if flt is None:
        return True
    return bool(
        (flt.min_status <= 0 or e.status >= flt.min_status)
        and (flt.model == "" or e.model == flt.model)
        and (flt.account_id <= 0 or e.account_id == flt.account_id)
        and (flt.group_id <= 0 or e.group_id == flt.group_id)
        and (flt.min_latency_ms <= 0 or e.latency_ms >= flt.min_latency_ms)
    )


@dataclass
class Track:
    """One subscription's books: what matched while it was live (primed
    included), and what its reader got and its subscription missed."""

    name: str
    style: str = "none"  # how it is read: a THREAD_STYLES or ASYNC_STYLES name, or "none"
    expected: int = 0
    received: int = 0
    dropped: int = 0
    done: bool = False  # its reader saw the end
    waits: int = 0  # blocking reads begun on an empty buffer
    released: int = 0  # ... that ended with SubscriptionClosed: parked at unsubscribe()


# --- the checks, as functions of what was observed -------------------------------------


def check_accounting(tracks: Iterable[Track]) -> list[str]:
    """received + dropped == matched while live, for every subscription."""
    problems = []
    for t in tracks:
        if not t.done:
            problems.append(f"{t.name}: its reader never saw the end")
        elif t.received + t.dropped != t.expected:
            problems.append(
                f"{t.name}: received {t.received} + dropped {t.dropped}"
                f" != {t.expected} matched while live"
            )
    return problems


def check_stats_step(before: Any, after: Any) -> list[str]:
    """Counters never go back; there is never a negative subscriber count."""
    problems = []
    if after.published < before.published or after.dropped < before.dropped:
        problems.append(f"stats went back: {before} then {after}")
    if after.subscribers < 0:
        problems.append(f"negative subscribers: {after}")
    return problems


def check_snapshot(entries: Sequence[Any], history_cap: int, published_before: int) -> list[str]:
    """A full snapshot: contiguous increasing seqs ending at or after what
    stats said before it, exactly ``min(history_cap, last seq)`` of them."""
    if not entries:
        if published_before:
            return [f"empty snapshot after {published_before} publishes"]
        return []
    seqs = [e.seq for e in entries]
    last = seqs[-1]
    problems = []
    if seqs != list(range(seqs[0], seqs[0] + len(seqs))):
        problems.append(f"snapshot seqs not contiguous and increasing ({seqs[0]}..{last})")
    if len(seqs) != min(history_cap, last):
        problems.append(
            f"snapshot of {len(seqs)} entries ending at seq {last}, history_cap {history_cap}"
        )
    if last < published_before:
        problems.append(f"snapshot ends at seq {last}, after {published_before} publishes")
    return problems


def check_filtered(entries: Sequence[Any], flt: Any, max_entries: int) -> list[str]:
    """A filtered snapshot: increasing seqs, only matches, at most max_entries."""
    problems = []
    seqs = [e.seq for e in entries]
    if seqs != sorted(set(seqs)):
        problems.append(f"filtered snapshot ({flt!r}) out of order or duplicated")
    if not all(matches(flt, e) for e in entries):
        problems.append(f"filtered snapshot ({flt!r}) holds an entry that does not match")
    if max_entries > 0 and len(entries) > max_entries:
        problems.append(f"snapshot(max_entries={max_entries}) gave {len(entries)}")
    return problems


def check_history(
    entries: Sequence[Any], published: int, history_cap: int, calls: Sequence[int]
) -> list[str]:
    """History at the end: exactly the last ``history_cap`` publishes, in
    seq order, and for each publisher the last of its own, in its order.
    Entries carry their publisher in ``api_key_id`` (1-based) and their
    place among its publishes in ``user_id``."""
    problems = []
    want = min(history_cap, published)
    seqs = [e.seq for e in entries]
    if seqs != list(range(published - want + 1, published + 1)):
        problems.append(
            f"history holds {len(seqs)} entries, not seqs {published - want + 1}..{published}"
        )
    for p, n in enumerate(calls):
        mine = [e.user_id for e in entries if e.api_key_id == p + 1]
        if mine != list(range(n - len(mine), n)):
            problems.append(f"history does not end with publisher {p}'s last {len(mine)} entries")
    return problems


# --- the run ----------------------------------------------------------------------------


@dataclass
class _Open:
    """A subscription its publisher has open."""

    sub: Any
    track: Track
    match: frozenset[int]  # the publisher's templates its filter matches
    left: int  # publishes until it is closed
    catch_up: bool  # close only once the reader emptied it, so it is parked
    reader: str


@dataclass
class _Publisher:
    calls: int = 0
    counts: list[int] = field(default_factory=list)  # publishes per template
    opened: int = 0
    primed: int = 0
    forgotten: int = 0
    collected: int = 0
    samples: list[Any] = field(default_factory=list)  # weakrefs to entries


class Soak:
    """One run against one implementation module; ``run()`` returns the
    figures, violations included."""

    def __init__(self, mod: ModuleType, seconds: float) -> None:
        self.mod = mod
        self.seconds = seconds
        self.b = mod.OpsLogBroadcaster(HISTORY_CAP)
        self.stop = threading.Event()
        self.violations: list[str] = []
        # Subscriptions whose reader has not seen the end yet. Settled ones
        # are folded into ``books``, so the soak's own memory stays flat
        # however long it runs, and RSS says something about the library.
        self.in_flight: dict[int, Track] = {}
        self.books = dict.fromkeys(
            ("records", "received", "dropped", "waits thread", "waits asyncio",
             "released thread", "released asyncio"), 0,
        )
        self.books_lock = threading.Lock()
        self.subs: weakref.WeakSet[Any] = weakref.WeakSet()  # every one still alive
        self.jobs: queue.SimpleQueue[tuple[Any, Track, str, bool] | None] = queue.SimpleQueue()
        self.loop = asyncio.new_event_loop()
        self.async_reads: set[Any] = set()  # pending ones
        self.pool: list[threading.Thread] = []
        self.monitor_threads: list[threading.Thread] = []
        self.stats: Any = None  # stats() once everything stopped
        self.checks = {"stats": 0, "snapshots": 0, "filtered snapshots": 0, "primings": 0}
        self.pubs = [_Publisher(counts=[0] * len(self._templates(0))) for _ in range(PUBLISHERS)]
        self.kwargs = [self._templates(p) for p in range(PUBLISHERS)]
        self.samples = [[mod.OpsLogEntry(**kw) for kw in kws] for kws in self.kwargs]
        self.own = [self._own_filters(p) for p in range(PUBLISHERS)]

    # Set-up

    @staticmethod
    def _templates(p: int) -> list[dict[str, Any]]:
        """Constructor keywords of publisher ``p``'s kinds of request. The
        last is only published while a subscription is being forgotten,
        with a model of its own each time (see ``_forget``)."""
        out = []
        for status in STATUSES:
            for model in (f"p{p}", *SHARED_MODELS):
                for latency in LATENCIES:
                    kw: dict[str, Any] = dict(
                        method="POST", path="/v1/chat/completions", status=status,
                        latency_ms=latency, model=model, account_id=ACCOUNT0 + p,
                        group_id=GROUP0 + p, api_key_id=p + 1, stream=latency > 100,
                    )
                    if status >= 500:
                        kw.update(error_message="upstream error", upstream_status=status)
                    out.append(kw)
        return [*out, {**out[-1], "model": f"p{p}-forgotten"}]

    def _own_filters(self, p: int) -> list[tuple[Any, frozenset[int]]]:
        """Filters on publisher ``p``'s tag, routed by account, group and
        model, each with the templates it matches."""
        F = self.mod.OpsLogFilter
        filters = [
            F(account_id=ACCOUNT0 + p),
            F(account_id=ACCOUNT0 + p, min_status=500),
            F(group_id=GROUP0 + p, min_latency_ms=100),
            F(model=f"p{p}"),
            F(model=f"p{p}", min_status=404, account_id=ACCOUNT0 + p),
        ]
        return [(f, self._match_set(f, p)) for f in filters]

    def _match_set(self, flt: Any, p: int) -> frozenset[int]:
        return frozenset(t for t, e in enumerate(self.samples[p]) if matches(flt, e))

    # Failing

    def fail(self, message: str) -> None:
        self.violations.append(message)
        self.stop.set()

    def guarded(self, fn: Callable[..., None], *args: Any) -> None:
        """Run a thread's body; an exception is a violation, not a silent
        dead thread."""
        try:
            fn(*args)
        except BaseException:
            self.fail(f"{fn.__name__}{args!r} raised:\n{traceback.format_exc()}")

    def _thread(self, fn: Callable[..., None], *args: Any) -> threading.Thread:
        t = threading.Thread(target=self.guarded, args=(fn, *args), name=fn.__name__, daemon=True)
        t.start()
        return t

    # Reading

    def _receive(self, track: Track, flt: Any, e: Any, last: int) -> int:
        if e.seq <= last or not matches(flt, e):
            self.fail(f"{track.name}: got seq {e.seq} after {last}, matching: {matches(flt, e)}")
        track.received += 1
        return int(e.seq)

    def _read(self, sub: Any, track: Track, style: str, slow: bool) -> None:
        """Read ``sub`` in a thread until it is closed and empty."""
        flt, last = sub.filter, 0
        if style == "iter":
            for e in sub:
                last = self._receive(track, flt, e, last)
                if slow and track.received % 16 == 0:
                    time.sleep(0.0005)
        elif style == "drain":
            while True:
                closed = sub.closed  # read first: closed means no more deliveries
                got = sub.drain(None if not slow else 8)
                for e in got:
                    last = self._receive(track, flt, e, last)
                if not got:
                    if closed:
                        break
                    time.sleep(0.001)
        else:
            while True:
                empty = len(sub) == 0
                track.waits += empty
                try:
                    e = sub.get() if style == "get" else sub.get(timeout=0.005)
                except queue.Empty:
                    continue
                except SubscriptionClosed:
                    track.released += empty
                    break
                last = self._receive(track, flt, e, last)
                if slow and track.received % 16 == 0:
                    time.sleep(0.0005)
        self._settle(track, sub)

    async def _aread(self, sub: Any, track: Track, style: str, slow: bool) -> None:
        """Read ``sub`` on the asyncio loop until it is closed and empty."""
        flt, last = sub.filter, 0
        try:
            if style == "async_for":
                async for e in sub:
                    last = self._receive(track, flt, e, last)
                    if slow and track.received % 16 == 0:
                        await asyncio.sleep(0.0005)
            else:
                while True:
                    empty = len(sub) == 0
                    track.waits += empty
                    try:
                        if style == "aget":
                            e = await sub.aget()
                        else:  # cancels aget() while it is parked, now and then
                            e = await asyncio.wait_for(sub.aget(), 0.005)
                    except asyncio.TimeoutError:
                        continue
                    except SubscriptionClosed:
                        track.released += empty
                        break
                    last = self._receive(track, flt, e, last)
                    if slow and track.received % 16 == 0:
                        await asyncio.sleep(0.0005)
            self._settle(track, sub)
        except BaseException:
            self.fail(f"async reader of {track.name} raised:\n{traceback.format_exc()}")

    def _settle(self, track: Track, sub: Any) -> None:
        """Close ``track``'s books: its reader saw the end of ``sub``."""
        track.dropped = sub.dropped  # final: it is closed, nothing more arrives
        track.done = True
        for problem in check_accounting([track]):
            self.fail(problem)
        kind = "asyncio" if track.style in ASYNC_STYLES else "thread"
        with self.books_lock:
            del self.in_flight[id(track)]
            books = self.books
            books["records"] += 1
            books["received"] += track.received
            books["dropped"] += track.dropped
            books[f"waits {kind}"] += track.waits
            books[f"released {kind}"] += track.released

    def _pool_reader(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            self._read(*job)

    def _hand_over(
        self, sub: Any, track: Track, style: str, slow: bool, own_thread: bool = False
    ) -> None:
        """Give ``sub`` to a reader: the asyncio loop, a thread of its own
        (a whole-run one, which would hold a pool thread for good), the
        pool, or none (its owner drains it once closed)."""
        track.style = style
        self.in_flight[id(track)] = track
        self.subs.add(sub)
        if style in ASYNC_STYLES:
            read = asyncio.run_coroutine_threadsafe(self._aread(sub, track, style, slow), self.loop)
            self.async_reads.add(read)
            read.add_done_callback(self.async_reads.discard)
        elif own_thread:
            self.monitor_threads.append(self._thread(self._read, sub, track, style, slow))
        elif style != "none":
            self.jobs.put((sub, track, style, slow))

    # Publishing and churning

    def _publisher(self, p: int) -> None:
        rng = random.Random(p)
        me = self.pubs[p]
        recent: deque[tuple[int, int]] = deque(maxlen=RECENT)  # (seq, template)
        open_: list[_Open] = []
        while not self.stop.is_set():
            self._publish(p, rng.randrange(len(me.counts) - 1), recent, open_)
            if open_ and min(o.left for o in open_) <= 0:
                for o in [o for o in open_ if o.left <= 0]:
                    open_.remove(o)
                    self._close(o)
            if me.calls % OPEN_EVERY == 0 and len(open_) < MAX_OPEN:
                open_.append(self._open(p, rng, recent))
            if me.calls % FORGET_EVERY == 0:
                self._forget(p, rng, recent, open_)
        for o in open_:
            self._close(o)

    def _publish(
        self, p: int, t: int, recent: deque[tuple[int, int]], open_: list[_Open],
        model: str | None = None,
    ) -> None:
        me = self.pubs[p]
        kw = self.kwargs[p][t] if model is None else {**self.kwargs[p][t], "model": model}
        e = self.mod.OpsLogEntry(user_id=me.calls, **kw)
        self.b.publish(e)
        me.calls += 1
        me.counts[t] += 1
        recent.append((e.seq, t))
        for o in open_:
            o.left -= 1
            if t in o.match:
                o.track.expected += 1
        if me.calls % SAMPLE_EVERY == 0:
            me.samples.append(weakref.ref(e))

    def _open(self, p: int, rng: random.Random, recent: deque[tuple[int, int]]) -> _Open:
        me = self.pubs[p]
        flt, match = rng.choice(self.own[p])
        cap = rng.choice((1, 4, 64, 1024))
        overflow = rng.choice((DROP_NEWEST, DROP_OLDEST))
        prime = rng.choice(("live", "live", "replay", "since_seq"))
        track = Track(
            f"publisher {p} subscription {me.opened} ({flt!r}, {cap}, {overflow}, {prime})"
        )
        if prime == "replay":
            replay = rng.choice((1, 16, 100))
            sub = self.b.subscribe(flt, cap, replay=replay, overflow=overflow)
            limit = min(replay, cap)
        elif prime == "since_seq":
            since = rng.choice(recent)[0] if recent else 0
            sub = self.b.subscribe(flt, cap, since_seq=since, overflow=overflow)
            # Every own publish after ``since`` is in ``recent``; without a
            # gap, all that match are primed.
            after = sum(1 for seq, t in recent if seq > since and t in match)
            limit = min(after, cap)
            if not sub.history_gap and len(sub) != after:
                self.fail(f"{track.name}: primed {len(sub)}, but {after} matched after seq {since}")
        else:
            sub = self.b.subscribe(flt, cap, overflow=overflow)
            limit = 0
        # Only this thread publishes what it matches, and it has not since.
        track.expected = len(sub)
        if track.expected > limit:
            self.fail(f"{track.name}: primed {track.expected}, more than {limit}")
        if prime != "live":
            me.primed += 1
            self.checks["primings"] += 1
        reader = rng.choice(THREAD_STYLES + ASYNC_STYLES + ("none",))
        me.opened += 1
        self._hand_over(sub, track, reader, rng.random() < 0.3)
        return _Open(sub, track, match, rng.choice(LIFETIMES), rng.random() < 0.5, reader)

    def _close(self, o: _Open) -> None:
        if o.catch_up and o.reader != "none":
            deadline = time.monotonic() + CATCH_UP
            while len(o.sub) and time.monotonic() < deadline:
                time.sleep(0.0005)
        o.sub.unsubscribe()
        if o.reader == "none":  # the owner reads what filled the buffer
            flt, last = o.sub.filter, 0
            for e in o.sub.drain():
                last = self._receive(o.track, flt, e, last)
            self._settle(o.track, o.sub)

    def _forget(
        self, p: int, rng: random.Random, recent: deque[tuple[int, int]], open_: list[_Open]
    ) -> None:
        """A dashboard handler that crashed: a subscription dropped without
        ``unsubscribe()``, sometimes in a reference cycle, then collected.

        It filters on a model that only this round publishes, at most 30
        entries, into a buffer of 64: so it never drops, however late it
        leaves fan-out. Late it can be: a collection running in another
        thread clears its weak reference first, and may give up the GIL
        (running other finalizers) before freeing it."""
        me = self.pubs[p]
        forgotten = len(me.counts) - 1
        model = f"p{p}-forgotten-{me.forgotten}"
        for _ in range(rng.randrange(16)):  # some history for replay to find
            self._publish(p, forgotten, recent, open_, model=model)
        flt = self.mod.OpsLogFilter(model=model, account_id=rng.choice((0, ACCOUNT0 + p)))
        sub = self.b.subscribe(flt, 64, replay=rng.choice((0, 8)))
        self.subs.add(sub)
        for _ in range(rng.randrange(1, 16)):
            self._publish(p, forgotten, recent, open_, model=model)
        ref = weakref.ref(sub)
        if rng.random() < 0.5:
            cycle: list[Any] = [sub]
            cycle.append(cycle)
            del cycle
        del sub
        me.forgotten += 1
        # Collected, and out of fan-out: at most every publisher's open
        # ones and one being forgotten each are live. A gc.collect() returns
        # at once while another thread collects, hence the retries.
        most = len(MONITORS) + PUBLISHERS * (MAX_OPEN + 1)
        for _ in range(50):
            gc.collect()
            if ref() is None and self.b.stats().subscribers <= most:
                me.collected += 1
                return
            time.sleep(0.01)
        self.fail(
            f"publisher {p}: a subscription dropped without unsubscribe() is still"
            f" {'alive' if ref() else 'subscribed'} after gc.collect()"
        )

    # Checking while it runs

    def _checker(self) -> None:
        rng = random.Random(99)
        filters = [self.mod.OpsLogFilter(**kw) for kw, *_ in MONITORS]
        filters += [f for own in self.own for f, _ in own]
        last = self.b.stats()
        while not self.stop.wait(0.002):
            before = self.b.stats()
            snap = self.b.snapshot()
            after = self.b.stats()
            problems = check_stats_step(last, before) + check_stats_step(before, after)
            problems += check_snapshot(snap, HISTORY_CAP, before.published)
            if snap and snap[-1].seq > after.published:
                problems.append(f"snapshot ends at seq {snap[-1].seq}, then {after} says less")
            flt, limit = rng.choice(filters), rng.choice((0, 1, 100, 5000))
            problems += check_filtered(self.b.snapshot(flt, limit), flt, limit)
            self.checks["stats"] += 2
            self.checks["snapshots"] += 1
            self.checks["filtered snapshots"] += 1
            for problem in problems:
                self.fail(problem)
            last = after

    # The whole run

    def _wait(self, done: Callable[[float], bool], what: str) -> bool:
        if not done(END_GRACE):
            self.fail(
                f"{what} still running {END_GRACE:.0f} s after the end:"
                " a reader was never released or a call hung"
            )
            faulthandler.dump_traceback(all_threads=True)
            return False
        return True

    def _monitors(self) -> list[tuple[Any, Track, Any]]:
        """Subscribe the whole-run subscriptions and start their readers."""
        monitors = []
        for kw, cap, overflow, style, slow in MONITORS:
            flt = self.mod.OpsLogFilter(**kw) if kw else None
            sub = self.b.subscribe(flt, cap, overflow=overflow)
            track = Track(f"whole-run subscription ({flt!r}, {cap}, {overflow}, {style})")
            self._hand_over(sub, track, style, slow, own_thread=True)
            monitors.append((sub, track, flt))
        return monitors

    def _end(self, threads: list[threading.Thread], monitors: list[tuple[Any, Track, Any]]) -> None:
        """Stop everything, then check the books."""
        self.stop.set()
        ended = all(self._wait(_joined(t), t.name) for t in threads)
        calls = [me.calls for me in self.pubs]
        stats = self.b.stats()
        if stats.published != sum(calls):
            self.fail(f"stats().published is {stats.published}, but {sum(calls)} publish calls")
        for sub, track, flt in monitors:
            # Everything published matched while they were live.
            track.expected = sum(
                n for p, me in enumerate(self.pubs)
                for t, n in enumerate(me.counts) if t in self._match_set(flt, p)
            )
            sub.unsubscribe()
        for _ in range(POOL_READERS):
            self.jobs.put(None)
        readers = self.pool + self.monitor_threads
        ended = ended and all(self._wait(_joined(t), t.name) for t in readers)
        ended = ended and all(
            self._wait(partial(_done, f), "an asyncio reader")
            for f in list(self.async_reads)
        )
        if ended:  # else the hang is reported already
            for problem in check_accounting(list(self.in_flight.values())):
                self.fail(problem)
        dropped = self.books["dropped"]
        if stats.dropped != dropped:
            self.fail(f"stats().dropped is {stats.dropped}, the subscriptions dropped {dropped}")
        for problem in check_history(self.b.snapshot(), sum(calls), HISTORY_CAP, calls):
            self.fail(problem)
        self.stats = stats

    def _leaks(self) -> dict[str, int]:
        """With the broadcaster and every subscription let go, nothing it
        held may survive."""
        gc.collect()
        subscribers_left = self.b.stats().subscribers
        b_ref = weakref.ref(self.b)
        self.b = None
        gc.collect()
        leaks = {
            "subscribers left": subscribers_left,
            "subscriptions alive": len(self.subs),
            "sampled entries alive": sum(r() is not None for me in self.pubs for r in me.samples),
            "broadcaster alive": int(b_ref() is not None),
        }
        for what, n in leaks.items():
            if n:
                self.fail(f"leak: {what}: {n}")
        return leaks

    def run(self, progress: Callable[[str], None]) -> dict[str, Any]:
        loop_thread = threading.Thread(target=self.loop.run_forever, name="asyncio", daemon=True)
        loop_thread.start()
        monitors = self._monitors()
        self.pool = [self._thread(self._pool_reader) for _ in range(POOL_READERS)]
        threads = [self._thread(self._publisher, p) for p in range(PUBLISHERS)]
        threads.append(self._thread(self._checker))

        start = time.monotonic()
        tick = 1.0 if self.seconds <= 30 else 10.0
        rss_start = None
        interrupted = False
        try:
            while not self.stop.wait(min(tick, max(0.0, start + self.seconds - time.monotonic()))):
                elapsed = time.monotonic() - start
                rss_start = rss_start or _rss_mb()
                published = self.b.stats().published
                progress(
                    f"[{elapsed:5.0f} s / {self.seconds:.0f} s] {published:,} publishes"
                    f" ({published / elapsed:,.0f}/s), {self._churned():,} subscriptions,"
                    f" {sum(self.checks.values()):,} checks"
                )
                if elapsed >= self.seconds:
                    break
        except KeyboardInterrupt:  # a shortened run still reports and checks
            interrupted = True
        duration = time.monotonic() - start
        rss_end = _rss_mb()
        self._end(threads, monitors)
        del monitors
        self.loop.call_soon_threadsafe(self.loop.stop)
        loop_thread.join(END_GRACE)
        if not loop_thread.is_alive():
            self.loop.close()
        leaks = self._leaks()
        published = self.stats.published
        books = self.books
        return {
            "duration_s": round(duration, 2),
            "interrupted": interrupted,
            "publishes": published,
            "publishes_per_s": round(published / duration),
            "entries_delivered": books["received"],
            "entries_dropped": self.stats.dropped,
            "subscriptions": self._churned(),
            "subscriptions_primed": sum(me.primed for me in self.pubs),
            "subscriptions_collected_without_unsubscribe": sum(me.collected for me in self.pubs),
            "accounting_records": books["records"],
            "readers_released_by_unsubscribe": {
                "thread": books["released thread"], "asyncio": books["released asyncio"]
            },
            "reader_wakeups": {"thread": books["waits thread"], "asyncio": books["waits asyncio"]},
            "invariant_checks": dict(self.checks),
            "entries_checked_by_readers": books["received"],
            "leaks": leaks,
            "sampled_entries": sum(len(me.samples) for me in self.pubs),
            "rss_mb_after_first_tick": rss_start,
            "rss_mb_at_end": rss_end,
            "violations": self.violations,
        }

    def _churned(self) -> int:
        return len(MONITORS) + sum(me.opened + me.forgotten for me in self.pubs)


def _joined(t: threading.Thread) -> Callable[[float], bool]:
    def done(timeout: float) -> bool:
        t.join(timeout)
        return not t.is_alive()

    return done


def _done(future: Any, timeout: float) -> bool:
    try:
        future.result(timeout)
    except concurrent.futures.TimeoutError:
        return False
    except BaseException:  # the reader reported it as a violation already
        pass
    return True


def _rss_mb() -> float | None:
    try:
        with open("/proc/self/statm") as f:
            return round(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except OSError:
        return None


# --- the command --------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``python -m fastopslog soak``."""
    parser.description = (
        "Publish from several threads while subscriptions come and go, readers in "
        "threads and an asyncio loop fall behind and are released by unsubscribe(), "
        "and stats() and snapshot() are checked throughout; then check the exact "
        "accounting of every subscription, the history and leaks. Exit status 1 on "
        "any violation."
    )
    parser.add_argument(
        "--seconds", type=_seconds, default=60.0, help="how long to run (default 60)"
    )
    parser.add_argument(
        "--impl",
        choices=("pure", "c", "auto"),
        default="auto",
        help="auto: the one `import fastopslog` uses (the default)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures here")
    parser.add_argument(
        "--processes",
        type=int,
        default=0,
        metavar="N",
        help="soak the shared-memory log instead: N writer processes, readers in two"
        " others, writers killed mid-record (compiled core only)",
    )
    parser.set_defaults(run=run)


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def report(impl: str, module: str, seconds: float, figures: dict[str, Any]) -> str:
    checks = figures["invariant_checks"]
    leaks = figures["leaks"]
    lines = [
        f"fastopslog soak: {impl} ({module}), {figures['duration_s']} s of {seconds:g} s"
        + (" (interrupted)" if figures["interrupted"] else "")
        + f", {PUBLISHERS} publishers, history_cap {HISTORY_CAP}",
        f"publishes:              {figures['publishes']:,} ({figures['publishes_per_s']:,}/s)",
        f"entries delivered:      {figures['entries_delivered']:,},"
        f" dropped {figures['entries_dropped']:,}",
        f"subscriptions churned:  {figures['subscriptions']:,}"
        f" ({figures['subscriptions_primed']:,} primed from history,"
        f" {figures['subscriptions_collected_without_unsubscribe']:,}"
        " collected without unsubscribe())",
        f"reader wake-ups:        {_pair(figures['reader_wakeups'])}"
        " blocking reads on an empty buffer,"
        f" {_pair(figures['readers_released_by_unsubscribe'])} of them released by unsubscribe()",
        f"invariant checks:       {sum(checks.values()):,} ("
        + ", ".join(f"{what} {n:,}" for what, n in checks.items())
        + f"), {figures['entries_checked_by_readers']:,} entries checked by readers",
        f"accounting:             {figures['accounting_records']:,} subscriptions",
        f"leaks:                  {sum(leaks.values())} ("
        + ", ".join(f"{what} {n}" for what, n in leaks.items())
        + f"; {figures['sampled_entries']:,} entries sampled)",
        f"memory:                 RSS {figures['rss_mb_after_first_tick']} MB after the first"
        f" progress line, {figures['rss_mb_at_end']} MB at the end",
    ]
    violations = figures["violations"]
    for v in violations[:20]:
        lines.append(f"VIOLATION: {v}")
    if len(violations) > 20:
        lines.append(f"... and {len(violations) - 20} more")
    lines.append("PASS" if not violations else f"FAIL: {len(violations)} violation(s)")
    return "\n".join(lines)


def _pair(figure: dict[str, int]) -> str:
    return f"{sum(figure.values()):,} (" + ", ".join(f"{k} {v:,}" for k, v in figure.items()) + ")"


def run(args: argparse.Namespace) -> int:
    if args.processes > 0:
        from ._soak_shared import run_shared

        return run_shared(args)
    name = args.impl
    if name == "auto":
        import fastopslog

        name = "c" if fastopslog.USE_EXTENSIONS else "pure"
    try:
        module = _workload.load_implementation(name)
    except ImportError as exc:
        print(f"the {name} implementation is not available: {exc}", file=sys.stderr)
        return 2
    # Against a hang the run cannot report itself: every thread's stack,
    # then exit status 1.
    faulthandler.dump_traceback_later(args.seconds + 3 * END_GRACE, exit=True)
    try:
        figures = Soak(module, args.seconds).run(_progress)
    finally:
        faulthandler.cancel_dump_traceback_later()
    print(report(name, module.__name__, args.seconds, figures))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            meta = {"impl": name, "module": module.__name__, "seconds": args.seconds}
            json.dump({**meta, **figures}, out, indent=1)
            out.write("\n")
    return 1 if figures["violations"] else 0
