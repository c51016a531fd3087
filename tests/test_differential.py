"""Drop-in proof: the compiled core behaves exactly like the pure reference.

A Hypothesis state machine drives ``fastopslog._opslog_py`` (the reference)
and ``fastopslog._opslog_c`` (the compiled core) with the same random
sequences of operations and requires identical observable results; plain
``@given`` tests cross the entry and filter types of the two on arbitrary
field values.

Entries of the two implementations are different types, so they are compared
by ``seq``, ``to_json()`` and ``repr()``. An entry published with ``time=0``
is stamped by each implementation at a slightly different instant: for those
the stamped time is masked in the comparison, after checking in each
implementation that it lies within the publish call and that the JSON form
and the repr render that very time.

They take the compiled core from the implementation facade: without a core
that imports they fail (``--no-c-extensions`` deselects them).
``FASTOPSLOG_DIFF_EXAMPLES`` sets how many random operation sequences the
state machine runs (default 120, about 5 s), for a longer soak.
"""

from __future__ import annotations

import gc
import json
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from fastopslog import _opslog_py
from fastopslog._common import (
    ENTRY_FIELD_NAMES,
    INT64_MAX,
    INT64_MIN,
    MAX_CAPACITY,
    OpsLogStats,
    SubscriptionClosed,
)
from fastopslog._gojson import format_time

pytestmark = pytest.mark.c_extension

BLOCK_TIMEOUT = 10.0  # only against a hang, never a timing assertion
# A stamped time must lie between clock readings taken just before and just
# after the publish call; the slack allows a coarse clock (a few ms), not a
# time cut to whole seconds. (An order of readings, not a speed bound.)
STAMP_SLACK = 0.05


@pytest.fixture(scope="module")
def C(c_impl: ModuleType) -> ModuleType:
    """The compiled core, from the implementation facade."""
    return c_impl


P = _opslog_py


# --------------------------------------------------------------- helpers ---


def outcome(fn: Callable[[], Any]) -> tuple[bool, Any]:
    try:
        return True, fn()
    except Exception as exc:
        return False, exc


def both(label: str, fp: Callable[[], Any], fc: Callable[[], Any]) -> tuple[bool, Any, Any]:
    """Run ``fp`` (pure) and ``fc`` (compiled); both must return, or both raise
    exceptions of exactly the same type. Returns (ok, pure result, compiled
    result)."""
    okp, rp = outcome(fp)
    okc, rc = outcome(fc)
    if okp != okc or (not okp and type(rp) is not type(rc)):
        def show(ok: bool, r: Any) -> str:
            return f"returned {r!r}" if ok else f"raised {type(r).__name__}: {r}"

        raise AssertionError(
            f"{label}: pure {show(okp, rp)}, but compiled {show(okc, rc)}"
        )
    return okp, rp, rc


def bounded(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` for a call that must not block: run in a daemon thread,
    so that a call that blocks forever fails the test instead of hanging it."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn(*args)
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(BLOCK_TIMEOUT)
    if worker.is_alive():
        raise AssertionError(f"{getattr(fn, '__name__', fn)}{args!r} blocked")
    if "error" in box:
        raise box["error"]
    return box["result"]


_JSON_TIME = re.compile(r'\A\{"time":"([^"]*)"')
_REPR_TIME = re.compile(r"\AOpsLogEntry\(time=([^,)]*)")


def masked(entry: Any) -> tuple[str, str]:
    """``to_json()`` and ``repr()`` with the time masked, after checking that
    both render the entry's own ``time``."""
    text, r = entry.to_json(), repr(entry)
    m = _JSON_TIME.match(text)
    assert m, text
    assert m.group(1) == format_time(round(entry.time * 1e6)), (
        f"to_json() shows time {m.group(1)} but entry.time is {entry.time!r} ({text})"
    )
    m2 = _REPR_TIME.match(r)
    assert m2 and m2.group(1) == repr(entry.time), (r, entry.time)
    return (
        _JSON_TIME.sub('{"time":"<stamped>"', text, count=1),
        _REPR_TIME.sub("OpsLogEntry(time=<stamped>", r, count=1),
    )


def rendered(entry: Any, stamped: bool) -> tuple[str, str]:
    return masked(entry) if stamped else (entry.to_json(), repr(entry))


# ------------------------------------------------------------ strategies ---


class _Str(str):
    """A str subclass: both implementations must store the exact str."""

    def __repr__(self) -> str:
        return "_Str(" + str.__repr__(self) + ")"


MODELS = ["", "gpt-4o", "claude", "gpt-4o\x00x", "\ud83d", "\u00e9moji\U0001f642", _Str("claude")]
STATUSES = [0, 200, 404, 500, 503, -1, HTTPStatus.OK, HTTPStatus.BAD_GATEWAY]
LATENCIES = [0, 1, 10, 250, -5]
IDS = [0, 1, 2, -1]
# Explicit times, all far from now (stamped times are masked instead).
TIMES = [1.5, 1_000_000_000.25, 1_600_000_000.123456, -86_400.5, 12, 1e-6]

entry_kwargs = st.fixed_dictionaries(
    {
        # Mostly explicit times, sometimes 0 (stamped at publish).
        "time": st.sampled_from([0.0, 0, *TIMES, *TIMES]),
        "status": st.sampled_from(STATUSES),
        "latency_ms": st.sampled_from(LATENCIES),
        "model": st.sampled_from(MODELS),
    },
    optional={
        "method": st.sampled_from(["GET", "POST", ""]),
        "path": st.sampled_from(["/v1/chat", "/a<b>&c", "\u2028"]),
        "stream": st.booleans(),
        "account_id": st.sampled_from(IDS),
        "group_id": st.sampled_from(IDS),
        "api_key_id": st.sampled_from([0, 7, INT64_MAX, INT64_MIN]),
        "user_id": st.sampled_from([0, 3]),
        "turns": st.sampled_from([0, 2]),
        "prompt_chars": st.sampled_from([0, 1234]),
        "error_message": st.sampled_from(["", "boom", 'q"\\\n\t']),
        "error_detail": st.sampled_from(["", "\x00\x1f\x7f"]),
        "upstream_status": st.sampled_from([0, 502]),
    },
)

filter_kwargs = st.fixed_dictionaries(
    {},
    optional={
        "min_status": st.sampled_from([0, -1, 200, 400, 500, HTTPStatus.NOT_FOUND]),
        "model": st.sampled_from(MODELS),
        "account_id": st.sampled_from(IDS),
        "group_id": st.sampled_from(IDS),
        "min_latency_ms": st.sampled_from([0, -5, 10, 100]),
    },
)

replace_changes = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "status": st.sampled_from(STATUSES),
            "model": st.sampled_from(MODELS),
            "account_id": st.sampled_from(IDS),
            "time": st.sampled_from([0.0, *TIMES]),
            "stream": st.booleans(),
        },
    ),
    # Bad changes: an unknown field or a wrong type; nothing must change.
    st.sampled_from(
        [
            {"seq": 3},
            {"nope": 1},
            {"status": "200"},
            {"status": 2**63},
            {"time": "now"},
            {"time": float("nan")},
            {"stream": 1},
            {"model": None},
        ]
    ),
)

BAD_CAPS: list[Any] = [MAX_CAPACITY + 1, 2**63, INT64_MIN - 1, "4", 4.0, True, None]
BAD_MAX = [-1, "1", 1.0, 2**63, True]
BAD_PUBLISH: list[Any] = [None, "entry", {"status": 200}, 1, object()]
BAD_SUBSCRIBE: list[dict[str, Any]] = [
    {"filter": "model=gpt"},
    {"filter": {"model": "gpt"}},
    {"buf_size": MAX_CAPACITY + 1},
    {"buf_size": 2**63},
    {"buf_size": "8"},
    {"buf_size": 8.0},
    {"buf_size": None},
    {"replay": -1},
    {"replay": 2**63},
    {"replay": 1.0},
    {"since_seq": -1},
    {"since_seq": "0"},
    {"since_seq": 2**64},
    {"replay": 1, "since_seq": 0},
    {"overflow": "drop_all"},
    {"overflow": "DROP_OLDEST"},
    {"overflow": None},
    {"overflow": 1},
    {"nope": 1},
]
BAD_SNAPSHOT: list[dict[str, Any]] = [
    {"filter": "x"},
    {"filter": {}},
    {"max_entries": "1"},
    {"max_entries": 1.5},
    {"max_entries": 2**63},
    {"max_entries": None},
]
BAD_TIMEOUTS = [-1, -0.5, "1", float("nan"), True]


SUBSCRIBE_ARGS: dict[str, st.SearchStrategy[Any]] = {
    "b": st.integers(0, 255),
    "flt": st.none() | filter_kwargs,
    "buf_size": st.sampled_from([None, -3, -1, 0, 1, 1, 2, 2, 3, 5]),
    "prime": st.one_of(
        st.none(),
        st.tuples(st.just("replay"), st.integers(0, 6)),
        st.tuples(st.just("since_seq"), st.integers(0, 12)),
        # since_seq this far back from the last seq (clamped at 0)
        st.tuples(st.just("since_back"), st.integers(0, 6)),
    ),
    "overflow": st.sampled_from([None, "drop_newest", "drop_oldest"]),
}


# --------------------------------------------------------- state machine ---


class DropIn(RuleBasedStateMachine):
    """Every operation goes to both implementations; every result must agree."""

    C: ModuleType  # set by the test

    def __init__(self) -> None:
        super().__init__()
        # Broker: {"p", "c", "n" (publishes so far), "pub": {seq: record}}
        # where record = {"p", "c" (the entry objects history and buffers
        # must share), "stamped" (time differs between the two)}.
        self.brokers: list[dict[str, Any]] = []
        # Subscription: {"p", "c", "b" (its broker)}
        self.subs: list[dict[str, Any]] = []
        # Entries to reuse: [pure, compiled, stamped], stamped saying that
        # their times differ (set by stamping, or copied from such an entry).
        self.pool: list[list[Any]] = []

    # --- comparison helpers

    def canon(self, w: str, b: dict[str, Any], entry: Any) -> tuple[int, str, str]:
        mod = P if w == "p" else self.C
        assert type(entry) is mod.OpsLogEntry, f"{w}: got {type(entry)!r}"
        rec = b["pub"].get(entry.seq)
        assert rec is not None, f"{w}: entry with seq {entry.seq} was never published here"
        known = rec[w]
        if known is None:
            rec[w] = entry
        else:
            assert entry is known, (
                f"{w}: seq {entry.seq} handed out as two different objects: "
                "history and every buffer must share the published entry"
            )
        return (entry.seq, *rendered(entry, rec["stamped"]))

    def canon_list(self, b: dict[str, Any], ep: list[Any], ec: list[Any]) -> None:
        assert type(ep) is list and type(ec) is list, (type(ep), type(ec))
        cp = [self.canon("p", b, e) for e in ep]
        cc = [self.canon("c", b, e) for e in ec]
        assert cp == cc, f"pure {cp}\ncompiled {cc}"

    def fingerprint(self, w: str, b: dict[str, Any]) -> tuple[Any, ...]:
        bro = b[w]
        subs = [
            (len(s[w]), s[w].dropped, s[w].closed, s[w].history_gap, repr(s[w]))
            for s in self.subs
            if s["b"] is b
        ]
        history = [(e.seq, e.to_json()) for e in bro.snapshot()]
        return (tuple(bro.stats()), history, subs, repr(bro))

    def unchanged(
        self,
        b: dict[str, Any],
        label: str,
        fp: Callable[[], Any],
        fc: Callable[[], Any],
        before: tuple[Any, Any] | None = None,
    ) -> None:
        """A call that both implementations must refuse, changing nothing
        (compared with ``before``, the fingerprints taken before the call)."""
        if before is None:
            before = (self.fingerprint("p", b), self.fingerprint("c", b))
        ok, rp, rc = both(label, fp, fc)
        assert not ok, f"{label}: accepted by both ({rp!r}, {rc!r})"
        after = (self.fingerprint("p", b), self.fingerprint("c", b))
        assert after[0] == before[0], f"{label} changed the pure state"
        assert after[1] == before[1], f"{label} changed the compiled state"

    def pick(self, items: list[Any], i: int) -> Any:
        return items[i % len(items)]

    def pick_sub(self, s: int) -> dict[str, Any]:
        """Subscription ``s``, or for a negative ``s`` the one with the most
        entries buffered (so that partial reads happen often)."""
        if s < 0:
            return max(self.subs, key=lambda sub: len(sub["p"]))
        sub: dict[str, Any] = self.pick(self.subs, s)
        return sub

    # --- broadcasters

    def _new_broker(self, cap: int) -> None:
        ok, bp, bc = both(
            f"OpsLogBroadcaster({cap!r})",
            lambda: P.OpsLogBroadcaster(cap),
            lambda: self.C.OpsLogBroadcaster(history_cap=cap),
        )
        assert ok
        assert type(bc) is self.C.OpsLogBroadcaster
        assert bp.history_cap == bc.history_cap == max(cap, 0)
        self.brokers.append({"p": bp, "c": bc, "n": 0, "pub": {}})

    @initialize(
        cap=st.integers(-3, 8),
        subs=st.lists(st.fixed_dictionaries(SUBSCRIBE_ARGS), min_size=1, max_size=3),
    )
    def first_broker(self, cap: int, subs: list[dict[str, Any]]) -> None:
        """A broadcaster with subscriptions, so that the rules reading them
        get their share of the steps from the start."""
        self._new_broker(cap)
        for args in subs:
            self.subscribe(**args)

    @precondition(lambda self: len(self.brokers) < 3)
    @rule(cap=st.one_of(st.integers(-3, 8), st.sampled_from([INT64_MIN, 0, 1])))
    def new_broker(self, cap: int) -> None:
        self._new_broker(cap)

    @precondition(lambda self: len(self.brokers) > 2)
    @rule(b=st.integers(0, 255))
    def drop_broker(self, b: int) -> None:
        """Forget a broadcaster and its subscriptions (none unsubscribed):
        the survivors must not notice."""
        old = self.brokers.pop(b % len(self.brokers))
        self.subs = [s for s in self.subs if s["b"] is not old]
        del old

    # --- publishing

    def _add_to_pool(self, ep: Any, ec: Any, stamped: bool) -> list[Any]:
        item = [ep, ec, stamped]
        self.pool.append(item)
        del self.pool[:-24]
        return item

    def _publish(self, b: dict[str, Any], item: list[Any]) -> None:
        ep, ec, stamped_src = item
        assert ep.seq == ec.seq
        fresh = ep.seq == 0
        zero = ep.time == 0.0
        assert (ec.time == 0.0) == zero
        before_p = None if fresh else (ep.seq, ep.to_json(), ep.time)
        before_c = None if fresh else (ec.seq, ec.to_json(), ec.time)
        t0 = time.time()
        ok, rp, rc = both("publish", lambda: b["p"].publish(ep), lambda: b["c"].publish(ec))
        t1 = time.time()
        assert ok and rp is None and rc is None, (rp, rc)
        b["n"] += 1
        seq = b["n"]
        if fresh:
            assert ep.seq == seq, (ep.seq, seq)
            assert ec.seq == seq, f"compiled seq {ec.seq}, expected {seq}"
            stamped = zero or stamped_src
            item[2] = stamped  # the objects themselves are stamped now
            if zero:
                for w, e in (("pure", ep), ("compiled", ec)):
                    assert t0 - STAMP_SLACK <= e.time <= t1 + STAMP_SLACK, (
                        f"{w} stamped time {e.time} outside the publish call [{t0}, {t1}]"
                    )
            b["pub"][seq] = {"p": ep, "c": ec, "stamped": stamped}
        else:
            # Republishing publishes a copy; the sealed entry never changes.
            assert (ep.seq, ep.to_json(), ep.time) == before_p
            assert (ec.seq, ec.to_json(), ec.time) == before_c, (
                "compiled: republishing changed the sealed entry"
            )
            b["pub"][seq] = {"p": None, "c": None, "stamped": stamped_src}

    @precondition(lambda self: self.brokers)
    @rule(b=st.integers(0, 255), kwargs=entry_kwargs, render_first=st.booleans())
    def publish(self, b: int, kwargs: dict[str, Any], render_first: bool) -> None:
        broker = self.pick(self.brokers, b)
        ok, ep, ec = both(
            f"OpsLogEntry(**{kwargs!r})",
            lambda: P.OpsLogEntry(**kwargs),
            lambda: self.C.OpsLogEntry(**kwargs),
        )
        assert ok
        if render_first:
            # Rendered (and cached) before publishing: a cached rendering
            # must not survive stamping.
            assert ep.to_json() == ec.to_json() and repr(ep) == repr(ec)
        self._publish(broker, self._add_to_pool(ep, ec, False))

    @precondition(lambda self: self.brokers and self.pool)
    @rule(b=st.integers(0, 255), i=st.integers(0, 255))
    def republish(self, b: int, i: int) -> None:
        self._publish(self.pick(self.brokers, b), self.pick(self.pool, i))

    @precondition(lambda self: self.brokers)
    @rule(b=st.integers(0, 255), many=st.lists(entry_kwargs, min_size=2, max_size=8))
    def publish_many(self, b: int, many: list[dict[str, Any]]) -> None:
        """A burst, so that buffers fill up and overflow."""
        for kwargs in many:
            self.publish(b, kwargs, False)

    def _fill(self, sub: dict[str, Any], n: int, time: float) -> None:
        """Publish ``n`` entries that ``sub`` matches (unless its broadcaster
        was dropped), so that its buffer holds several, or overflows."""
        flt = sub["p"].filter
        kwargs = {
            "time": time,
            "status": max(flt.min_status, 200),
            "latency_ms": max(flt.min_latency_ms, 0),
            "model": flt.model,
            "account_id": max(flt.account_id, 0),
            "group_id": max(flt.group_id, 0),
        }
        for index, broker in enumerate(self.brokers):
            if broker is sub["b"]:
                for _ in range(n):
                    self.publish(index, kwargs, False)

    @precondition(lambda self: self.subs)
    @rule(s=st.integers(0, 255), n=st.integers(2, 6), time=st.sampled_from([0.0, *TIMES]))
    def fill(self, s: int, n: int, time: float) -> None:
        self._fill(self.pick(self.subs, s), n, time)

    # --- subscribing

    @precondition(lambda self: self.brokers and len(self.subs) < 10)
    @rule(
        b=SUBSCRIBE_ARGS["b"],
        flt=SUBSCRIBE_ARGS["flt"],
        buf_size=SUBSCRIBE_ARGS["buf_size"],
        prime=SUBSCRIBE_ARGS["prime"],
        overflow=SUBSCRIBE_ARGS["overflow"],
    )
    def subscribe(
        self,
        b: int,
        flt: dict[str, Any] | None,
        buf_size: int | None,
        prime: tuple[str, int] | None,
        overflow: str | None,
    ) -> None:
        broker = self.pick(self.brokers, b)
        kw: dict[str, Any] = {}
        if buf_size is not None:
            kw["buf_size"] = buf_size
        if prime is not None and prime[0] == "since_back":
            kw["since_seq"] = max(0, broker["n"] - prime[1])
        elif prime is not None:
            kw[prime[0]] = prime[1]
        if overflow is not None:
            kw["overflow"] = overflow

        def make(mod: ModuleType, bro: Any) -> Any:
            if flt is None:
                return bro.subscribe(**kw)
            return bro.subscribe(mod.OpsLogFilter(**flt), **kw)

        ok, sp, sc = both(
            f"subscribe({flt!r}, **{kw!r})",
            lambda: make(P, broker["p"]),
            lambda: make(self.C, broker["c"]),
        )
        assert ok
        assert type(sc) is self.C.OpsLogSubscription
        assert type(sc.filter) is self.C.OpsLogFilter
        assert repr(sp.filter) == repr(sc.filter)
        assert sp.buf_size == sc.buf_size
        assert sp.overflow == sc.overflow == (overflow or "drop_newest")
        self.subs.append({"p": sp, "c": sc, "b": broker})

    @precondition(lambda self: self.subs)
    @rule(s=st.integers(0, 255), twice=st.booleans(), with_block=st.booleans(), empty=st.booleans())
    def unsubscribe(self, s: int, twice: bool, with_block: bool, empty: bool) -> None:
        sub = self.pick(self.subs, s)
        for _ in range(1 + twice):
            if with_block:
                def leave(x: Any) -> Any:
                    with x as entered:
                        assert entered is x
                    return None

                ok, rp, rc = both("with sub", lambda: leave(sub["p"]), lambda: leave(sub["c"]))
            else:
                ok, rp, rc = both(
                    "unsubscribe", lambda: sub["p"].unsubscribe(), lambda: sub["c"].unsubscribe()
                )
            assert ok and rp is None and rc is None, (rp, rc)
            assert sub["p"].closed and sub["c"].closed
        if empty:
            self._after_close(sub)

    def _after_close(self, sub: dict[str, Any]) -> None:
        """Once closed: what is buffered is still read, then every read
        reports the end (SubscriptionClosed, StopIteration, [])."""
        if not sub["p"].closed:
            return
        ok, ep, ec = both("drain()", lambda: sub["p"].drain(), lambda: sub["c"].drain())
        assert ok
        self.canon_list(sub["b"], ep, ec)
        p, c = sub["p"], sub["c"]
        for label, fp, fc in (
            ("get_nowait()", lambda: bounded(p.get_nowait), lambda: bounded(c.get_nowait)),
            ("get(0)", lambda: bounded(p.get, 0), lambda: bounded(c.get, 0)),
            ("get()", lambda: bounded(p.get), lambda: bounded(c.get)),
            ("next()", lambda: bounded(next, p), lambda: bounded(next, c)),
            ("drain()", lambda: p.drain(), lambda: c.drain()),
        ):
            ok, rp, rc = both(f"{label} on a closed, empty subscription", fp, fc)
            if label == "drain()":
                assert (ok, rp, rc) == (True, [], [])
            else:
                assert not ok and isinstance(rp, (SubscriptionClosed, StopIteration)), (label, rp)

    @precondition(lambda self: self.subs)
    @rule(s=st.integers(0, 255))
    def drop_subscription(self, s: int) -> None:
        """Forget a subscription without unsubscribing: collecting it must
        unsubscribe it."""
        sub = self.subs.pop(s % len(self.subs))
        b = sub["b"]
        expect = {w: b[w].stats().subscribers - (not sub[w].closed) for w in "pc"}
        del sub
        for w in "pc":
            if b[w].stats().subscribers != expect[w]:
                gc.collect()
            assert b[w].stats().subscribers == expect[w], (
                f"{w}: a collected subscription is still subscribed"
            )

    # --- reading

    @precondition(lambda self: self.subs)
    @rule(
        s=st.just(-1) | st.integers(0, 255),
        max_items=st.none() | st.integers(0, 5) | st.sampled_from(["len-1", "half"]),
        top_up=st.integers(0, 4),
    )
    def drain(self, s: int, max_items: int | str | None, top_up: int) -> None:
        sub = self.pick_sub(s)
        self._fill(sub, top_up, TIMES[0])
        if isinstance(max_items, str):  # part of what is buffered
            n = len(sub["p"])
            max_items = max(0, n - 1) if max_items == "len-1" else n // 2
        if max_items is None:
            ok, ep, ec = both("drain()", lambda: sub["p"].drain(), lambda: sub["c"].drain())
        else:
            ok, ep, ec = both(
                f"drain({max_items})",
                lambda: sub["p"].drain(max_items),
                lambda: sub["c"].drain(max_items=max_items),
            )
        assert ok
        self.canon_list(sub["b"], ep, ec)

    def _read_one(
        self, sub: dict[str, Any], label: str, fp: Callable[[], Any], fc: Callable[[], Any]
    ) -> None:
        ok, rp, rc = both(label, fp, fc)
        if ok:
            assert self.canon("p", sub["b"], rp) == self.canon("c", sub["b"], rc)

    @precondition(lambda self: self.subs)
    @rule(
        s=st.just(-1) | st.integers(0, 255),
        how=st.sampled_from(["get_nowait", "get(0)", "get(0.0)", "next"]),
        top_up=st.integers(0, 2),
    )
    def read_one(self, s: int, how: str, top_up: int) -> None:
        """One entry, by a call that must not block: ``queue.Empty``,
        ``SubscriptionClosed`` and the end of iteration must agree too."""
        sub = self.pick_sub(s)
        self._fill(sub, top_up, TIMES[1])
        p, c = sub["p"], sub["c"]
        if how == "get_nowait":
            fp, fc = (lambda: bounded(p.get_nowait)), (lambda: bounded(c.get_nowait))
        elif how.startswith("get"):
            timeout = 0 if how == "get(0)" else 0.0
            fp, fc = (lambda: bounded(p.get, timeout)), (lambda: bounded(c.get, timeout))
        else:
            # Iteration blocks on an open, empty subscription: only read
            # when something is buffered or it is closed (then it ends).
            assert len(p) == len(c)
            if len(p) == 0 and not p.closed:
                return
            assert iter(p) is p and iter(c) is c
            fp, fc = (lambda: bounded(next, p)), (lambda: bounded(next, c))
        self._read_one(sub, how, fp, fc)

    @precondition(lambda self: self.brokers)
    @rule(
        b=st.integers(0, 255),
        flt=st.none() | filter_kwargs,
        max_entries=st.none() | st.integers(-2, 8),
    )
    def snapshot(self, b: int, flt: dict[str, Any] | None, max_entries: int | None) -> None:
        broker = self.pick(self.brokers, b)

        def snap(mod: ModuleType, bro: Any) -> Any:
            args: list[Any] = []
            if flt is not None or max_entries is not None:
                args.append(None if flt is None else mod.OpsLogFilter(**flt))
            if max_entries is not None:
                args.append(max_entries)
            return bro.snapshot(*args)

        ok, ep, ec = both(
            f"snapshot({flt!r}, {max_entries!r})",
            lambda: snap(P, broker["p"]),
            lambda: snap(self.C, broker["c"]),
        )
        assert ok
        self.canon_list(broker, ep, ec)

    @precondition(lambda self: self.brokers)
    @rule(
        b=st.integers(0, 255),
        s=st.integers(0, 255),
        call=st.sampled_from(["OpsLogBroadcaster", "publish", "subscribe", "snapshot", "drain", "get"]),
    )
    def bad_inputs(self, b: int, s: int, call: str) -> None:
        """Every bad input of the list for ``call``, in the current state:
        both refuse each with the same exception type, and nothing changes."""
        broker = self.pick(self.brokers, b)
        bp, bc = broker["p"], broker["c"]
        base = (self.fingerprint("p", broker), self.fingerprint("c", broker))
        if call == "OpsLogBroadcaster":
            for cap in BAD_CAPS:
                ok, _, _ = both(
                    f"OpsLogBroadcaster({cap!r})",
                    lambda: P.OpsLogBroadcaster(cap),
                    lambda: self.C.OpsLogBroadcaster(cap),
                )
                assert not ok, f"OpsLogBroadcaster({cap!r}) accepted by both"
        elif call == "publish":
            for arg in BAD_PUBLISH:
                self.unchanged(
                    broker, f"publish({arg!r})", lambda: bp.publish(arg), lambda: bc.publish(arg), base
                )
        elif call == "subscribe":
            for kw in BAD_SUBSCRIBE:
                self.unchanged(
                    broker,
                    f"subscribe(**{kw!r})",
                    lambda: bp.subscribe(**kw),
                    lambda: bc.subscribe(**kw),
                    base,
                )
        elif call == "snapshot":
            for kw in BAD_SNAPSHOT:
                self.unchanged(
                    broker, f"snapshot(**{kw!r})", lambda: bp.snapshot(**kw), lambda: bc.snapshot(**kw), base
                )
        elif self.subs:
            sub = self.pick(self.subs, s)
            sp, sc = sub["p"], sub["c"]
            base = (self.fingerprint("p", sub["b"]), self.fingerprint("c", sub["b"]))
            if call == "drain":
                for arg in BAD_MAX:
                    self.unchanged(
                        sub["b"], f"drain({arg!r})", lambda: sp.drain(arg), lambda: sc.drain(arg), base
                    )
            else:
                for arg in BAD_TIMEOUTS:
                    self.unchanged(
                        sub["b"],
                        f"get(timeout={arg!r})",
                        lambda: bounded(sp.get, arg),
                        lambda: bounded(sc.get, arg),
                        base,
                    )

    # --- entries and filters

    @precondition(lambda self: self.pool)
    @rule(
        i=st.integers(0, 255),
        j=st.integers(0, 255),
        name=st.sampled_from(["status", "time", "seq", "model", "nope"]),
    )
    def entry_methods(self, i: int, j: int, name: str) -> None:
        ep, ec, stamped = self.pick(self.pool, i)
        ep2, ec2, stamped2 = self.pick(self.pool, j)
        # Immutable: setting or deleting any attribute fails alike.
        both(f"setattr {name}", lambda: setattr(ep, name, 1), lambda: setattr(ec, name, 1))
        both(f"delattr {name}", lambda: delattr(ep, name), lambda: delattr(ec, name))
        assert ep.seq == ec.seq
        assert rendered(ep, stamped) == rendered(ec, stamped)
        assert ec.to_json() is ec.to_json(), "compiled: to_json() is not cached"
        dp, dc = ep.to_dict(), ec.to_dict()
        assert type(dc) is dict
        if stamped:
            del dp["time"], dc["time"]
        assert list(dp.items()) == list(dc.items())
        # from_dict reads back what to_dict writes.
        ok, rp, rc = both(
            "from_dict(to_dict())",
            lambda: P.OpsLogEntry.from_dict(ep.to_dict()),
            lambda: self.C.OpsLogEntry.from_dict(ec.to_dict()),
        )
        assert ok and rp.seq == rc.seq == 0
        assert rendered(rp, stamped) == rendered(rc, stamped)
        assert (rp == ep) == (rc == ec)
        # Equality ignores seq; stamped times differ between the two, so
        # equality is only comparable when neither entry was stamped.
        if i % len(self.pool) == j % len(self.pool) or not (stamped or stamped2):
            assert (ep == ep2) == (ec == ec2), (ep, ep2, ec, ec2)
            assert (ep != ep2) == (ec != ec2)
        for a, b in ((ep, ep2), (ec, ec2)):
            if a == b:
                assert hash(a) == hash(b)
        # Filters of live subscriptions judge the entry alike.
        for sub in self.subs:
            assert sub["p"].filter.matches(ep) == sub["c"].filter.matches(ec), sub["p"].filter

    @precondition(lambda self: self.pool)
    @rule(i=st.integers(0, 255), changes=replace_changes)
    def replace(self, i: int, changes: dict[str, Any]) -> None:
        ep, ec, stamped = self.pick(self.pool, i)
        before = (rendered(ep, stamped), rendered(ec, stamped), ep.seq, ec.seq)
        ok, rp, rc = both(
            f"replace(**{changes!r})",
            lambda: ep.replace(**changes),
            lambda: ec.replace(**changes),
        )
        assert (rendered(ep, stamped), rendered(ec, stamped), ep.seq, ec.seq) == before
        if not ok:
            return
        assert type(rc) is self.C.OpsLogEntry and rc is not ec
        assert rp.seq == rc.seq == 0, "a replaced entry is unpublished"
        new_stamped = stamped and "time" not in changes
        if new_stamped:
            assert rp.time == ep.time and rc.time == ec.time
        assert rendered(rp, new_stamped) == rendered(rc, new_stamped)
        self._add_to_pool(rp, rc, new_stamped)

    # --- everything that can be looked at, after every step

    @invariant()
    def same_observable_state(self) -> None:
        for b in self.brokers:
            sp, sc = b["p"].stats(), b["c"].stats()
            assert type(sc) is OpsLogStats, type(sc)
            assert tuple(sp) == tuple(sc), f"stats: pure {sp}, compiled {sc}"
            assert sc.published == b["n"]
            assert b["p"].history_cap == b["c"].history_cap
            assert repr(b["p"]) == repr(b["c"])
        for s in self.subs:
            p, c = s["p"], s["c"]
            got = (len(c), c.dropped, c.closed, c.history_gap, c.buf_size, c.overflow)
            want = (len(p), p.dropped, p.closed, p.history_gap, p.buf_size, p.overflow)
            assert got == want, (
                f"(len, dropped, closed, history_gap, buf_size, overflow): pure {want}, compiled {got}"
            )
            assert repr(p) == repr(c)


def test_stateful_differential(C: ModuleType) -> None:
    DropIn.C = C
    run_state_machine_as_test(
        DropIn,
        settings=settings(
            max_examples=int(os.environ.get("FASTOPSLOG_DIFF_EXAMPLES", "120")),
            stateful_step_count=50,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


# ------------------------------------------------- crossing entries/filters ---

SPECIAL_TEXT = [
    "",
    "\x00",
    "a\x00b",
    "\u2028\u2029",
    "\U0001f642",
    "\ud83d\ude42",  # a surrogate pair as two lone code points, not an emoji
    "\ud800",
    "\udfff",
    "<script>&amp;</script>",
    '"\\/\b\f\n\r\t\x1f\x7f',
    "\ufffd\ufeff",
    "x" * 300,
]
text = st.one_of(
    st.sampled_from(SPECIAL_TEXT),
    st.text(
        st.one_of(
            st.characters(),
            st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
            st.sampled_from("\x00\u2028\u2029<>&\"\\\U0001f642\x7f"),
        ),
        max_size=12,
    ),
    st.builds(_Str, st.text(max_size=4)),
)
int64 = st.one_of(
    st.integers(INT64_MIN, INT64_MAX),
    st.sampled_from([INT64_MIN, INT64_MAX, 0, -1, 1, 2**31, 2**32, 2**53 + 1, HTTPStatus.OK]),
)
BEYOND_INT64 = [INT64_MAX + 1, INT64_MIN - 1, 2**64, -(2**64), 10**30]
TIME_LO = -62135596800.0
TIME_HI = 253402300800.0
good_time = st.one_of(
    st.floats(TIME_LO, TIME_HI, exclude_max=True),
    st.integers(int(TIME_LO), int(TIME_HI) - 1),
    st.sampled_from([0, 0.0, -0.0, TIME_LO, 253402300799.99997, 1e-7, 4e-7, 5e-7, 1.0000005, -1.0000005]),
)
BAD_TIME = [
    float("nan"), float("inf"), -float("inf"), TIME_HI, -62135596800.000008, 1e300,
    2**63, 10**400, True, "1", None, b"1",
]
BAD_INT = [*BEYOND_INT64, "1", 1.0, None, True, False, 2.5]
BAD_STR = [None, 1, b"gpt", ["a"], 1.5]

STR_FIELDS = ("method", "path", "model", "error_message", "error_detail")
INT_FIELDS = tuple(
    n for n in ENTRY_FIELD_NAMES if n not in STR_FIELDS and n not in ("time", "stream")
)


def _good_value(name: str) -> st.SearchStrategy[Any]:
    if name == "time":
        return good_time
    if name == "stream":
        return st.booleans()
    if name in STR_FIELDS:
        return text
    return int64


def _bad_value(name: str) -> st.SearchStrategy[Any]:
    if name == "time":
        return st.sampled_from(BAD_TIME)
    if name == "stream":
        return st.sampled_from([1, 0, None, "true"])
    if name in STR_FIELDS:
        return st.sampled_from(BAD_STR)
    return st.sampled_from(BAD_INT)


good_entry_kwargs = st.fixed_dictionaries(
    {}, optional={name: _good_value(name) for name in ENTRY_FIELD_NAMES}
)


@st.composite
def any_entry_kwargs(draw: st.DrawFn) -> dict[str, Any]:
    """Valid keywords, or valid ones with exactly one bad value (which of
    several bad values is reported first is not part of the contract)."""
    kwargs = draw(good_entry_kwargs)
    how = draw(st.sampled_from(["good", "good", "good", "bad", "unknown"]))
    if how == "bad":
        name = draw(st.sampled_from(ENTRY_FIELD_NAMES))
        kwargs[name] = draw(_bad_value(name))
    elif how == "unknown":
        kwargs[draw(st.sampled_from(["seq", "Status", "extra", "_us"]))] = 1
    return kwargs


def other_value(name: str, value: Any) -> Any:
    """A valid value for field ``name`` that differs from ``value``."""
    if name == "time":
        return value + 1.0 if value < 0 else value - 1.0
    if name == "stream":
        return not value
    if name in STR_FIELDS:
        return value + "x"
    return value - 1 if value > 0 else value + 1


def check_same_entry(ep: Any, ec: Any, C: ModuleType) -> None:
    assert type(ec) is C.OpsLogEntry
    for name in ("seq", *ENTRY_FIELD_NAMES):
        vp, vc = getattr(ep, name), getattr(ec, name)
        assert type(vp) is type(vc) and vp == vc, f"{name}: pure {vp!r}, compiled {vc!r}"
    assert ep.to_json() == ec.to_json()
    assert ec.to_json() is ec.to_json(), "to_json() must be rendered once and shared"
    dp, dc = ep.to_dict(), ec.to_dict()
    assert list(dp.items()) == list(dc.items())
    assert json.loads(ec.to_json()) == dc
    dc["status"] = "changed"
    assert ec.to_dict()["status"] == ec.status, "to_dict() must return a fresh dict"
    assert repr(ep) == repr(ec)


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(kwargs=any_entry_kwargs(), other=good_entry_kwargs, changes=any_entry_kwargs())
def test_entry_crossing(
    C: ModuleType, kwargs: dict[str, Any], other: dict[str, Any], changes: dict[str, Any]
) -> None:
    ok, ep, ec = both(
        f"OpsLogEntry(**{kwargs!r})",
        lambda: P.OpsLogEntry(**kwargs),
        lambda: C.OpsLogEntry(**kwargs),
    )
    if not ok:
        note(f"both raised {type(ep).__name__}")
        return
    check_same_entry(ep, ec, C)

    # from_dict reads back to_dict and the JSON text, alike in both.
    for label, data_p, data_c in (
        ("to_dict()", ep.to_dict(), ec.to_dict()),
        ("json.loads(to_json())", json.loads(ep.to_json()), json.loads(ec.to_json())),
    ):
        ok, rp, rc = both(
            f"from_dict({label})",
            lambda: P.OpsLogEntry.from_dict(data_p),
            lambda: C.OpsLogEntry.from_dict(data_c),
        )
        assert ok
        check_same_entry(rp, rc, C)
        # One round trip reaches a fixed point (lone surrogates render as
        # U+FFFD, so the first one may not give back the same text).
        assert P.OpsLogEntry.from_dict(rp.to_dict()).to_json() == rp.to_json()
        assert C.OpsLogEntry.from_dict(rc.to_dict()).to_json() == rc.to_json()
        assert (rp == ep) == (rc == ec)
    # Each implementation's objects round-trip through the other's JSON form.
    check_same_entry(P.OpsLogEntry.from_dict(ec.to_dict()), C.OpsLogEntry.from_dict(ep.to_dict()), C)

    # Equality and hashing against a second entry.
    ok, ep2, ec2 = both(
        f"OpsLogEntry(**{other!r})", lambda: P.OpsLogEntry(**other), lambda: C.OpsLogEntry(**other)
    )
    if not ok:
        ep2, ec2 = ep, ec
    for a, b, c, d in ((ep, ep2, ec, ec2), (ep, ep, ec, ec)):
        assert (a == b) == (c == d)
        assert (a != b) == (c != d)
        if c == d:
            assert hash(c) == hash(d)
    assert (ep == ep.replace()) and (ec == ec.replace())
    # Entries differing in a single field are unequal, alike in both.
    for name in ENTRY_FIELD_NAMES:
        value = other_value(name, getattr(ep, name))
        ok, vp, vc = both(
            f"replace({name}={value!r})",
            lambda: ep.replace(**{name: value}),
            lambda: ec.replace(**{name: value}),
        )
        if ok:
            assert (vp == ep, vp != ep) == (vc == ec, vc != ec), f"{name}: {vp!r} vs {ep!r}"
            assert vc != ec, f"entries differing in {name} compare equal"

    # replace() with arbitrary (maybe bad) changes.
    ok, rp, rc = both(
        f"replace(**{changes!r})", lambda: ep.replace(**changes), lambda: ec.replace(**changes)
    )
    if ok:
        check_same_entry(rp, rc, C)
    check_same_entry(ep, ec, C)  # unchanged either way


# Times that share seconds, on both sides of 1970 too, so that one batch
# both reuses and renews the compiled renderer's cached second.
batch_time = st.one_of(
    good_time.filter(lambda t: t != TIME_LO),  # Go's zero time: refused, as unset
    st.sampled_from([-1.5, -1.25, -0.5, 0.25, 0.75, 1.5, 1_600_000_000.1, 1_600_000_000.9]),
)


@settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.lists(
        st.tuples(
            st.fixed_dictionaries(
                {}, optional={name: _good_value(name) for name in ENTRY_FIELD_NAMES} | {"time": batch_time}
            ),
            st.booleans(),
        ),
        max_size=12,
    ),
)
def test_json_lines_crossing(C: ModuleType, batch: list[tuple[dict[str, Any], bool]]) -> None:
    """The forwarder's batch rendering (``_json_lines``) is each entry's
    ``to_json()`` on its own line, in both, whatever the entries and
    whichever of them were rendered before."""
    ps = [P.OpsLogEntry(**kw) for kw, _ in batch]
    cs = [C.OpsLogEntry(**kw) for kw, _ in batch]
    for ep, ec, (_, cached) in zip(ps, cs, batch, strict=True):
        if cached:
            ep.to_json()
            ec.to_json()
    lines_c = C.OpsLogEntry._json_lines(cs)
    lines_p = P.OpsLogEntry._json_lines(ps)
    assert lines_c == lines_p == "\n".join(e.to_json() for e in ps).encode()


@settings(deadline=None, max_examples=100)
@given(name=st.sampled_from(("time", *INT_FIELDS)), value=st.sampled_from(BEYOND_INT64))
def test_int64_overflow_in_both(C: ModuleType, name: str, value: int) -> None:
    kwargs: dict[str, Any] = {name: value}
    ok, ep, _ = both(
        f"OpsLogEntry({name}={value})",
        lambda: P.OpsLogEntry(**kwargs),
        lambda: C.OpsLogEntry(**kwargs),
    )
    assert not ok
    assert type(ep) is (ValueError if name == "time" else OverflowError)


FILTER_NAMES = ("min_status", "model", "account_id", "group_id", "min_latency_ms")


@st.composite
def any_filter_kwargs(draw: st.DrawFn) -> dict[str, Any]:
    kwargs = draw(
        st.fixed_dictionaries(
            {},
            optional={
                n: (text if n == "model" else st.one_of(int64, st.integers(-3, 600)))
                for n in FILTER_NAMES
            },
        )
    )
    how = draw(st.sampled_from(["good", "good", "good", "bad", "unknown"]))
    if how == "bad":
        name = draw(st.sampled_from(FILTER_NAMES))
        kwargs[name] = draw(st.sampled_from(BAD_STR if name == "model" else BAD_INT))
    elif how == "unknown":
        kwargs["status"] = 1
    return kwargs


def _clamp(value: int) -> int:
    return min(max(value, INT64_MIN), INT64_MAX)


def boundary_entries(flt: Any) -> list[dict[str, Any]]:
    """Entries on the edges of ``flt``: one with every field at the filter's
    value, and one each with a single field just off it."""
    exact = {
        "status": flt.min_status,
        "latency_ms": flt.min_latency_ms,
        "model": flt.model,
        "account_id": flt.account_id,
        "group_id": flt.group_id,
    }
    out = [exact]
    for name in ("status", "latency_ms", "account_id", "group_id"):
        for delta in (-1, 1):
            out.append({**exact, name: _clamp(exact[name] + delta)})
    out.append({**exact, "model": flt.model + "x"})
    out.append({**exact, "model": flt.model[:-1]})
    return out


@settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    fkw=any_filter_kwargs(),
    fkw2=any_filter_kwargs(),
    entries=st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "status": st.one_of(int64, st.integers(-3, 600)),
                "latency_ms": st.one_of(int64, st.integers(-3, 600)),
                "model": st.one_of(text, st.sampled_from(MODELS)),
                "account_id": st.one_of(int64, st.sampled_from(IDS)),
                "group_id": st.one_of(int64, st.sampled_from(IDS)),
            },
        ),
        max_size=4,
    ),
)
def test_filter_crossing(
    C: ModuleType, fkw: dict[str, Any], fkw2: dict[str, Any], entries: list[dict[str, Any]]
) -> None:
    ok, fp, fc = both(
        f"OpsLogFilter(**{fkw!r})", lambda: P.OpsLogFilter(**fkw), lambda: C.OpsLogFilter(**fkw)
    )
    if not ok:
        return
    assert type(fc) is C.OpsLogFilter
    for name in FILTER_NAMES:
        vp, vc = getattr(fp, name), getattr(fc, name)
        assert type(vp) is type(vc) and vp == vc, f"{name}: pure {vp!r}, compiled {vc!r}"
    assert repr(fp) == repr(fc)
    both("setattr", lambda: setattr(fp, "model", "x"), lambda: setattr(fc, "model", "x"))
    assert repr(fp) == repr(fc)
    ok2, fp2, fc2 = both(
        f"OpsLogFilter(**{fkw2!r})", lambda: P.OpsLogFilter(**fkw2), lambda: C.OpsLogFilter(**fkw2)
    )
    if ok2:
        assert (fp == fp2) == (fc == fc2)
        assert (fp != fp2) == (fc != fc2)
        if fc == fc2:
            assert hash(fc) == hash(fc2)
    entries = entries + boundary_entries(fp)
    for ekw in entries:
        ep, ec = P.OpsLogEntry(**ekw), C.OpsLogEntry(**ekw)
        assert fp.matches(ep) == fc.matches(ec), (fkw, ekw)
    # The matching rules, and where they send an entry: a broadcaster with
    # one subscription delivers exactly what the filter matches, and
    # snapshot keeps exactly that.
    bp, bc = P.OpsLogBroadcaster(8), C.OpsLogBroadcaster(8)
    sp, sc = bp.subscribe(fp, 8), bc.subscribe(fc, 8)
    for ekw in entries:
        ep, ec = P.OpsLogEntry(time=1.0, **ekw), C.OpsLogEntry(time=1.0, **ekw)
        bp.publish(ep)
        bc.publish(ec)
    assert [e.to_json() for e in sp.drain()] == [e.to_json() for e in sc.drain()]
    assert [e.to_json() for e in bp.snapshot(fp)] == [e.to_json() for e in bc.snapshot(fc)]
    both("matches(None)", lambda: fp.matches(None), lambda: fc.matches(None))


VALID_TIMES = [
    "2024-05-06T07:08:09Z",
    "2024-05-06T07:08:09.1Z",
    "2024-05-06T07:08:09.123456789Z",
    "2024-05-06T07:08:09+05:30",
    "2024-05-06T07:08:09.5-00:01",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999Z",
    "1969-12-31T23:59:59.999999Z",
]
BAD_TIMES = [
    "0001-01-01T00:00:00+00:01",  # before the year 1
    "9999-12-31T23:59:59-00:01",  # after the year 9999
    "2024-02-30T00:00:00Z",
    "2024-01-01T24:00:00Z",
    "2024-01-01T00:00:60Z",
    "2024-01-01 00:00:00Z",
    "2024-01-01T00:00:00",
    "2024-01-01T00:00:00+24:00",
    "2024-01-01T00:00:00.Z",
    "２０２４-01-01T00:00:00Z",
    "",
    "now",
]
json_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(INT64_MIN - 2, INT64_MAX + 2),
    st.sampled_from([2**64, 1.0, 1.5, "", "x", [], {}, [1]]),
    text,
)


@st.composite
def any_dict(draw: st.DrawFn) -> Any:
    """A valid JSON form, with at most one key changed or added."""
    kwargs = draw(good_entry_kwargs)
    try:
        entry = P.OpsLogEntry(**kwargs)
    except ValueError:  # a "good" time the contract refuses (Go's zero time)
        del kwargs["time"]
        entry = P.OpsLogEntry(**kwargs)
    data = entry.to_dict()
    how = draw(st.sampled_from(["as is", "time", "key", "extra", "drop time", "not a dict"]))
    if how == "time":
        data["time"] = draw(st.sampled_from([*VALID_TIMES, *BAD_TIMES, None, 0, 1.5]))
    elif how == "key":
        data[draw(st.sampled_from(ENTRY_FIELD_NAMES[1:]))] = draw(json_value)
    elif how == "extra":
        data[draw(st.sampled_from(["seq", "Status", "TIME", "extra", ""]))] = draw(json_value)
    elif how == "drop time":
        del data["time"]
    elif how == "not a dict":
        return draw(st.sampled_from([None, [], "{}", list(data.items())]))
    return data


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=any_dict())
def test_from_dict_crossing(C: ModuleType, data: Any) -> None:
    snapshot = json.dumps(data) if isinstance(data, dict) else None
    ok, ep, ec = both(
        f"from_dict({data!r})",
        lambda: P.OpsLogEntry.from_dict(data),
        lambda: C.OpsLogEntry.from_dict(data),
    )
    if ok:
        check_same_entry(ep, ec, C)
    if snapshot is not None:
        assert json.dumps(data) == snapshot, "from_dict() changed its argument"


def test_differential_can_tell_the_two_apart(C: ModuleType) -> None:
    """The comparison is not vacuous: it really reaches two implementations."""
    assert C.OpsLogEntry is not P.OpsLogEntry
    assert C.OpsLogBroadcaster is not P.OpsLogBroadcaster
    assert C.__name__ == "fastopslog._opslog_c"

    def closed() -> None:
        raise SubscriptionClosed

    empty_queue: queue.Queue[int] = queue.Queue()
    empty = empty_queue.get_nowait
    assert both("probe", empty, empty)[0] is False
    with pytest.raises(AssertionError):
        both("probe", lambda: 1, lambda: 1 // 0)
    with pytest.raises(AssertionError):
        both("probe", lambda: int("x"), lambda: 1 // 0)
    with pytest.raises(AssertionError):
        both("probe", empty, closed)
