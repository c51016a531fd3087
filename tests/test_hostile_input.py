"""Hostile input over the whole public API, for both implementations.

Every argument of every call gets values of the wrong type, huge and
negative integers, floats where ints belong, bools, ``None``, NaN and
infinite times, lone surrogates and NUL bytes, subclasses of the right type,
objects whose dunder methods raise, and objects of the other implementation.

Each call runs twice: against the implementation under test (``impl``) and
against the pure reference, each on a world built the same way (a
broadcaster with history, full, filtered, primed, closed and empty
subscriptions). The rules:

- a bad call raises ``TypeError``, ``ValueError`` or ``OverflowError`` with a
  message (or the exception a hostile argument raised itself), and leaves
  all state unchanged: ``stats()``, ``snapshot()`` (JSON and ``seq``) and
  each subscription's ``len``, ``dropped``, ``closed`` and settings;
- an odd but valid call gives what the pure implementation gives, and the
  two worlds stay identical (compared after every call, and drained at the
  end, so that a failed call that swapped buffered entries shows too);
- no call crashes the interpreter or leaves a half-built object.

Three layers: a deterministic sweep of every value of the hostile pools
through every argument of every call, alone (``test_every_argument_*``);
Hypothesis tests per call, combining arguments; and a Hypothesis state
machine that fuzzes random sequences of valid, odd and bad calls over the
whole API, comparing the two worlds after each. Under ``impl=pure`` the
comparison is pure against pure, which still checks that bad calls change
nothing.

Uses of ``__new__`` alone, ``__init__`` on a live object, ``copy`` and
``pickle``, and a run under ``PYTHONMALLOC=debug`` (which checks that memory
is freed by the allocator family that allocated it) happen in a subprocess:
a crash there fails one test instead of the session.
"""

from __future__ import annotations

import json
import math
import os
import queue
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from http import HTTPStatus
from types import ModuleType
from typing import Any

import pytest
from hypothesis import example, given, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from fastopslog import _opslog_py as P
from fastopslog._common import (
    ENTRY_FIELD_NAMES,
    FILTER_FIELDS,
    INT64_MAX,
    INT64_MIN,
    MAX_CAPACITY,
    SubscriptionClosed,
)

# Hypothesis warns about the repr of 10**400 and the like: expected here.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

ALLOWED = (TypeError, ValueError, OverflowError)
FILTER_FIELD_NAMES = tuple(name for name, _, _ in FILTER_FIELDS)
STR_FIELDS = ("method", "path", "model", "error_message", "error_detail")
INT_FIELDS = (
    "status", "latency_ms", "account_id", "group_id", "api_key_id",
    "user_id", "turns", "prompt_chars", "upstream_status",
)
SUB_TIMEOUT = 60.0  # a subprocess that takes longer is hung (not a speed check)


# The implementations under test, from the facade: the "other
# implementation" values come from another one of them (the same one when
# --no-c-extensions leaves only the pure implementation).
UNDER_TEST: list[ModuleType] = []


@pytest.fixture(autouse=True, scope="module")
def _under_test(implementations_under_test: tuple[ModuleType, ...]) -> None:
    UNDER_TEST[:] = implementations_under_test


def other_impl(module: ModuleType) -> ModuleType:
    """Another implementation under test, or ``module`` when it is the only one."""
    return next((m for m in UNDER_TEST if m is not module), module)


def _classes(name: str) -> tuple[type, ...]:
    return tuple(getattr(m, name) for m in UNDER_TEST)


# ----------------------------------------------------------- hostile values ---


class Boom(Exception):
    """Raised by the dunder methods of hostile arguments: a call may let it
    through (it is the caller's own exception), as long as it changes nothing."""


class IntSub(int):
    def __repr__(self) -> str:
        return f"IntSub({int.__repr__(self)})"


class FloatSub(float):
    def __repr__(self) -> str:
        return f"FloatSub({float.__repr__(self)})"


class StrSub(str):
    def __repr__(self) -> str:
        return f"StrSub({str.__repr__(self)})"


class EvilInt(int):
    def __int__(self) -> int:
        raise Boom("__int__")

    def __index__(self) -> int:
        raise Boom("__index__")


class EvilFloat(float):
    def __float__(self) -> float:
        raise Boom("__float__")

    def __ge__(self, other: object) -> bool:
        raise Boom("__ge__")


class EvilStr(str):
    def __eq__(self, other: object) -> bool:
        raise Boom("__eq__")

    def __hash__(self) -> int:
        raise Boom("__hash__")

    def __str__(self) -> str:
        raise Boom("__str__")


class Indexable:
    """Int-like without being an int."""

    def __index__(self) -> int:
        return 3

    def __int__(self) -> int:
        return 3

    def __float__(self) -> float:
        return 3.0

    def __repr__(self) -> str:
        return "Indexable()"


class EvilEq:
    def __eq__(self, other: object) -> bool:
        raise Boom("__eq__")

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "EvilEq()"


class Token:
    """Stands for an object of a world, made when the call runs: an entry,
    filter, broadcaster or subscription of this or the other implementation."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __repr__(self) -> str:
        return f"Token({self.kind!r})"


NASTY_TEXT = st.text(
    st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(
            ["\x00", "\ud800", "\udbff", "\udc00", "\udfff", "<", ">", "&", "\u2028",
             "\u2029", "\x7f", "\n", '"', "\\", "\U0010ffff", "\ufffd", "\x1f"]
        ),
    ),
    max_size=24,
)

BOUNDARY_INTS = [
    0, 1, -1, 2, 200, 500, 2**31, 2**32, 2**53 + 1, INT64_MAX, INT64_MAX - 1,
    INT64_MIN, INT64_MIN + 1, INT64_MAX + 1, INT64_MIN - 1, 2**64, -(2**64), 10**30,
    -(10**30), 10**400, -(10**400), MAX_CAPACITY, MAX_CAPACITY + 1, 2**40,
]
SPECIAL_FLOATS = [
    0.0, -0.0, 1.5, 1e-6, 5e-324, -5e-324, math.nan, -math.nan, math.inf, -math.inf,
    1e308, -1e308, 2.0**63, -(2.0**63), 1e18, 253402300799.999999, 253402300800.0,
    -62135596800.0, -62135596799.999999, -62135596799.5,
]
ODD_OBJECTS = [
    None, True, False, b"GET", bytearray(b"x"), [], {}, (), set(), {"status": 200},
    object(), Decimal("1"), Decimal("NaN"), Fraction(1, 2), complex(1, 0),
    HTTPStatus.OK, HTTPStatus.SERVICE_UNAVAILABLE, IntSub(7), IntSub(INT64_MAX + 1),
    FloatSub(2.5), FloatSub(math.nan), StrSub("gpt"), StrSub("drop_oldest"),
    StrSub("drop_newest"), EvilInt(5), EvilFloat(1.0), Token("evil_str"), Indexable(),
    EvilEq(), "drop_oldest", "drop_newest", "DROP_OLDEST", "",
    Token("own_entry"), Token("published_entry"), Token("other_entry"),
    Token("own_filter"), Token("other_filter"), Token("own_broadcaster"),
    Token("own_sub"), Token("other_sub"),
]

hostile = st.one_of(
    st.sampled_from(BOUNDARY_INTS),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(SPECIAL_FLOATS),
    st.floats(),
    st.sampled_from(ODD_OBJECTS),
    NASTY_TEXT,
)

# Valid times, none within a few days of now: a time near now is a stamp,
# which differs between two publishes and is masked in comparisons.
STAMP_WINDOW = 3 * 86400.0


def _far_from_now(t: float) -> bool:
    return abs(t - time.time()) > 2 * STAMP_WINDOW


valid_times = st.one_of(
    st.sampled_from([0.0, 0, 1, 1.5, -86400.25, 1e9 + 0.123456, 253402300799.999999]),
    st.floats(min_value=-62135596799.0, max_value=253402300799.0).filter(_far_from_now),
    st.integers(min_value=-62135596799, max_value=253402300799).filter(_far_from_now),
)


def _valid_for(name: str) -> st.SearchStrategy[Any]:
    if name == "time":
        return valid_times
    if name == "stream":
        return st.booleans()
    if name in STR_FIELDS:
        return st.one_of(st.sampled_from(["", "gpt", "m\x00\ud800"]), NASTY_TEXT)
    return st.one_of(
        st.sampled_from([0, 1, -1, 200, 500, 503, INT64_MAX, INT64_MIN, HTTPStatus.OK]),
        st.integers(min_value=INT64_MIN, max_value=INT64_MAX),
    )


def field_value(name: str) -> st.SearchStrategy[Any]:
    """Mostly hostile, sometimes a valid value of the field."""
    return st.one_of(hostile, _valid_for(name))


# ------------------------------------------------------------------ worlds ---

MODEL = "m\x00\ud800"


class World:
    """A broadcaster with history and one subscription of each kind, built
    the same way for either implementation."""

    def __init__(self, M: ModuleType) -> None:
        self.M = M
        b = M.OpsLogBroadcaster(history_cap=6)
        self.b = b
        self.entries: list[Any] = []
        self.subs = {
            "full": b.subscribe(buf_size=2),
            "urgent": b.subscribe(M.OpsLogFilter(min_status=500), buf_size=3, overflow="drop_oldest"),
            "model": b.subscribe(M.OpsLogFilter(model=MODEL), buf_size=8),
        }
        for n in range(4):
            self.publish(n)
        self.subs["primed"] = b.subscribe(replay=3)
        self.subs["since"] = b.subscribe(M.OpsLogFilter(min_latency_ms=20), since_seq=1)
        self.subs["closed"] = b.subscribe(buf_size=4)
        for n in range(4, 9):
            self.publish(n)
        self.subs["closed"].unsubscribe()
        self.subs["empty"] = b.subscribe(M.OpsLogFilter(account_id=99))
        self.subs["drained"] = b.subscribe(buf_size=3)
        self.subs["drained"].unsubscribe()

    def publish(self, n: int) -> None:
        e = self.M.OpsLogEntry(
            time=1_000_000 + n * 1.25,
            status=(200, 503, 404)[n % 3],
            latency_ms=n * 7,
            model=(MODEL, "gpt")[n % 2],
            user_id=n,
            error_detail="\udfff<&>\x00" if n % 4 == 0 else "",
        )
        self.b.publish(e)
        self.entries.append(e)

    def resolve(self, value: Any) -> Any:
        if not isinstance(value, Token):
            return value
        M, other = self.M, other_impl(self.M)
        kind = value.kind
        if kind == "evil_str":
            # Made here: Hypothesis itself hashes and compares what it draws.
            return EvilStr("drop_oldest")
        if kind == "own_entry":
            return M.OpsLogEntry(time=7.0, status=201, model="gpt")
        if kind == "published_entry":
            return self.entries[-1]
        if kind == "other_entry":
            return other.OpsLogEntry(time=7.0, status=201, model="gpt")
        if kind == "own_filter":
            return M.OpsLogFilter(min_status=404)
        if kind == "other_filter":
            return other.OpsLogFilter(min_status=404)
        if kind == "own_broadcaster":
            return self.b
        if kind == "own_sub":
            return self.subs["full"]
        if kind == "other_sub":
            # Kept alive by the world, so that it is not collected mid-call.
            self._other_b = other.OpsLogBroadcaster(2)
            self._other_sub = self._other_b.subscribe()
            return self._other_sub
        raise AssertionError(kind)

    def resolve_all(self, values: dict[str, Any]) -> dict[str, Any]:
        return {k: self.resolve(v) for k, v in values.items()}

    def state(self) -> Any:
        return (
            tuple(self.b.stats()),
            [view(e) for e in self.b.snapshot()],
            {name: sub_view(s) for name, s in self.subs.items()},
        )

    def drain_all(self) -> Any:
        return {name: [view(e) for e in s.drain()] for name, s in self.subs.items()}


def _masked_time(t: float) -> object:
    return "<stamped>" if abs(t - time.time()) < STAMP_WINDOW else t


def view(e: Any) -> Any:
    """What an entry shows, comparable across implementations; a stamped
    time is masked (checked to be rendered as the entry's own time first)."""
    text = e.to_json()
    assert isinstance(text, str)
    data = json.loads(text)
    assert list(data)[:1] == ["time"]
    fields = tuple(
        _masked_time(e.time) if name == "time" else getattr(e, name) for name in ENTRY_FIELD_NAMES
    )
    for name, value in zip(ENTRY_FIELD_NAMES, fields, strict=True):
        if name in STR_FIELDS:
            assert type(value) is str, (name, value)
        elif name in INT_FIELDS:
            assert type(value) is int and INT64_MIN <= value <= INT64_MAX, (name, value)
    if _masked_time(e.time) == "<stamped>":
        data["time"] = "<stamped>"
    return (e.seq, fields, data)


def filter_view(f: Any) -> Any:
    return tuple(getattr(f, name) for name in FILTER_FIELD_NAMES)


def sub_view(s: Any) -> Any:
    return (
        len(s), s.dropped, s.closed, s.buf_size, s.overflow, s.history_gap,
        filter_view(s.filter),
    )


def result_view(r: Any) -> Any:
    if isinstance(r, _classes("OpsLogEntry")):
        return ("entry", view(r))
    if isinstance(r, _classes("OpsLogFilter")):
        return ("filter", filter_view(r))
    if isinstance(r, _classes("OpsLogSubscription")):
        return ("sub", sub_view(r))
    if isinstance(r, list):
        return [result_view(x) for x in r]
    if isinstance(r, tuple):
        return tuple(r)
    return r


def _note(text: str) -> None:
    try:
        note(text)
    except Exception:
        pass


class Pair(tuple):  # type: ignore[type-arg]
    """The same object made in the world under test and in the pure one."""


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    """``("ok", result)`` or ``("raised", exception)`` for an allowed
    exception; anything else (AttributeError, SystemError, ...) fails."""
    try:
        return "ok", fn()
    except (queue.Empty, SubscriptionClosed, Boom) as exc:
        return "raised", exc
    except ALLOWED as exc:
        assert str(exc), f"{type(exc).__name__} without a message"
        return "raised", exc


def compare_call(
    label: str,
    worlds: dict[str, World],
    call: Callable[[World], Any],
    after_ok: Callable[[World, Any], None] | None = None,
) -> tuple[str, Any]:
    """Run ``call`` in the world under test and in the pure one; require the
    same outcome, an unchanged world after a failure, and identical worlds
    after a success."""
    results = {}
    for key, w in worlds.items():
        before = w.state()
        kind, value = outcome(lambda: call(w))
        if kind == "raised":
            assert w.state() == before, f"{label}: failed call changed the state ({key})"
        elif after_ok is not None:
            after_ok(w, value)
        results[key] = (kind, value)
    (ki, vi), (kp, vp) = results["impl"], results["pure"]
    _note(f"{label}: impl {ki} {vi!r}; pure {kp} {vp!r}")
    assert ki == kp, f"{label}: impl {ki} {vi!r} but pure {kp} {vp!r}"
    if ki == "raised":
        assert type(vi) is type(vp), f"{label}: impl raised {vi!r}, pure raised {vp!r}"
    else:
        assert result_view(vi) == result_view(vp), label
    assert worlds["impl"].state() == worlds["pure"].state(), f"{label}: worlds differ"
    return results["impl"]


def new_worlds(impl: ModuleType) -> dict[str, World]:
    return {"impl": World(impl), "pure": World(P)}


def check_call(
    label: str,
    impl: ModuleType,
    call: Callable[[World], Any],
    after_ok: Callable[[World, Any], None] | None = None,
) -> tuple[str, Any]:
    """:func:`compare_call` in fresh worlds, whose buffers must then hold
    the same entries (so a failed call cannot have swapped one)."""
    worlds = new_worlds(impl)
    result = compare_call(label, worlds, call, after_ok)
    assert worlds["impl"].drain_all() == worlds["pure"].drain_all(), f"{label}: buffers differ"
    return result


# ------------------------------------------------- every argument, every value ---

# Every value of the pools above, for every argument of every call: a
# deterministic sweep that Hypothesis's sampling cannot skip.
SWEEP_VALUES = [
    *BOUNDARY_INTS, *SPECIAL_FLOATS, *ODD_OBJECTS, Token("evil_str"),
    "gpt", "\ud800", "a\x00b", "\udfff<&>\u2028", "2024-01-01T00:00:00Z",
]


def _entry_call(name: str) -> Callable[[World, Any], Any]:
    return lambda w, v: w.M.OpsLogEntry(**{name: v})


def _replace_call(name: str) -> Callable[[World, Any], Any]:
    return lambda w, v: w.entries[-1].replace(**{name: v})


def _filter_call(name: str) -> Callable[[World, Any], Any]:
    return lambda w, v: w.M.OpsLogFilter(**{name: v})


def _subscribe_call(name: str) -> Callable[[World, Any], Any]:
    def call(w: World, v: Any) -> Any:
        if name == "buf_size" and type(v) is int and 4096 < v <= MAX_CAPACITY:
            return "skipped"  # a valid giant buffer: test_capacity_limits
        w.subs["new"] = sub = w.b.subscribe(**{name: v})
        return sub

    return call


def _history_call(w: World, v: Any) -> Any:
    if type(v) is int and 4096 < v <= MAX_CAPACITY:
        return "skipped"  # a valid giant history: test_capacity_limits
    return w.M.OpsLogBroadcaster(history_cap=v).history_cap


def _get_call(sub_name: str) -> Callable[[World, Any], Any]:
    def call(w: World, v: Any) -> Any:
        sub = w.subs[sub_name]
        return "skipped" if _would_block(sub, v) else sub.get(timeout=v)

    return call


SWEEP_CALLS: dict[str, Callable[[World, Any], Any]] = {
    **{f"OpsLogEntry({n}=)": _entry_call(n) for n in ENTRY_FIELD_NAMES},
    **{f"replace({n}=)": _replace_call(n) for n in ENTRY_FIELD_NAMES},
    "OpsLogEntry.from_dict()": lambda w, v: w.M.OpsLogEntry.from_dict(v),
    "OpsLogEntry.from_dict(time=)": lambda w, v: w.M.OpsLogEntry.from_dict({"time": v}),
    **{f"OpsLogFilter({n}=)": _filter_call(n) for n in FILTER_FIELD_NAMES},
    "matches()": lambda w, v: w.M.OpsLogFilter(min_status=1).matches(v),
    "OpsLogBroadcaster(history_cap=)": _history_call,
    "publish()": lambda w, v: w.b.publish(v),
    **{
        f"subscribe({n}=)": _subscribe_call(n)
        for n in ("filter", "buf_size", "replay", "since_seq", "overflow")
    },
    "snapshot(filter=)": lambda w, v: w.b.snapshot(filter=v),
    "snapshot(max_entries=)": lambda w, v: w.b.snapshot(max_entries=v),
    "get(timeout=) buffered": _get_call("full"),
    "get(timeout=) closed": _get_call("closed"),
    "get(timeout=) empty": _get_call("empty"),
    "drain(max_items=)": lambda w, v: w.subs["urgent"].drain(v),
    "drain(max_items=) closed": lambda w, v: w.subs["closed"].drain(v),
}


@pytest.mark.parametrize("call_name", list(SWEEP_CALLS))
def test_every_argument_every_value(impl: ModuleType, call_name: str) -> None:
    """Each argument of each call, given each value of the hostile pools,
    alone: the same outcome as the pure implementation, nothing changed by
    a refusal. The worlds are rebuilt after a call that succeeded."""
    call = SWEEP_CALLS[call_name]
    worlds = None
    for value in SWEEP_VALUES:
        if worlds is None:
            worlds = new_worlds(impl)
        label = f"{call_name} {value!r}"
        kind, _ = compare_call(label, worlds, lambda w: call(w, w.resolve(value)))
        if kind == "ok":
            assert worlds["impl"].drain_all() == worlds["pure"].drain_all(), label
            worlds = None
    if worlds is not None:
        assert worlds["impl"].drain_all() == worlds["pure"].drain_all(), call_name


# ----------------------------------------------------------------- entries ---


def _check_entry(w: World, e: Any) -> None:
    """A valid entry renders, reads back and publishes."""
    text = e.to_json()
    assert e.to_json() is text  # rendered once
    data = json.loads(text)
    assert e.to_dict() == data
    back = w.M.OpsLogEntry.from_dict(data)
    assert back.to_dict() == data
    w.b.publish(e)
    assert w.b.snapshot()[-1] is e and e.seq == w.b.stats().published


@settings(max_examples=150)
@given(name=st.sampled_from(ENTRY_FIELD_NAMES), value=hostile)
def test_entry_field_hostile(impl: ModuleType, name: str, value: Any) -> None:
    kind, result = check_call(
        f"OpsLogEntry({name}={value!r})",
        impl,
        lambda w: w.M.OpsLogEntry(**{name: w.resolve(value)}),
        _check_entry,
    )
    if kind == "raised" and isinstance(result, ALLOWED):
        if not (name == "time" and isinstance(result, OverflowError)):
            # A clear message: it names the argument. (An int too large
            # for a float time gets Python's own OverflowError.)
            assert name in str(result), result


@settings(max_examples=150)
@given(
    kwargs=st.fixed_dictionaries(
        {},
        optional={name: field_value(name) for name in ENTRY_FIELD_NAMES}
        | {"seq": hostile, "nope": hostile},
    )
)
def test_entry_all_fields_hostile(impl: ModuleType, kwargs: dict[str, Any]) -> None:
    check_call(
        f"OpsLogEntry(**{kwargs!r})",
        impl,
        lambda w: w.M.OpsLogEntry(**w.resolve_all(kwargs)),
        _check_entry,
    )


@settings(max_examples=150)
@given(
    which=st.sampled_from(["fresh", "published"]),
    changes=st.fixed_dictionaries(
        {}, optional={name: field_value(name) for name in ENTRY_FIELD_NAMES} | {"seq": hostile}
    ),
)
def test_replace_hostile(impl: ModuleType, which: str, changes: dict[str, Any]) -> None:
    def call(w: World) -> Any:
        base = w.entries[-1] if which == "published" else w.M.OpsLogEntry(time=5.0, model="x")
        before = (view(base), repr(base))
        try:
            new = base.replace(**w.resolve_all(changes))
        finally:
            assert (view(base), repr(base)) == before, "replace() changed the entry it copies"
        assert new.seq == 0
        return new

    check_call(f"replace(**{changes!r})", impl, call, _check_entry)


time_strings = st.one_of(
    st.sampled_from(
        [
            "2024-02-29T12:00:00Z", "2023-02-29T12:00:00Z", "0001-01-01T00:00:00Z",
            "0001-01-01T00:00:00.000001Z", "0001-01-01T00:59:59+01:00",
            "9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59-00:01",
            "1970-01-01T00:00:00.1234567891Z", "1970-01-01T00:00:00+24:00",
            "1970-01-01T00:00:00+23:59", "1970-01-01T24:00:00Z", "1970-01-01t00:00:00z",
            "1970-01-01T00:00:60Z", "\u0661970-01-01T00:00:00Z", "1970-01-01T00:00:00Z\x00",
            "1970-01-01 00:00:00Z", "", "NaN", "inf", "2024-01-01T00:00:00.Z",
        ]
    ),
    NASTY_TEXT,
)


@settings(max_examples=150)
@given(
    data=st.one_of(
        hostile,
        st.fixed_dictionaries(
            {},
            optional={name: field_value(name) for name in ENTRY_FIELD_NAMES}
            | {"time": st.one_of(time_strings, hostile), "seq": hostile, "extra": hostile},
        ),
    )
)
def test_from_dict_hostile(impl: ModuleType, data: Any) -> None:
    def call(w: World) -> Any:
        d = w.resolve_all(data) if isinstance(data, dict) else w.resolve(data)
        return w.M.OpsLogEntry.from_dict(d)

    check_call(f"from_dict({data!r})", impl, call, _check_entry)


@pytest.mark.parametrize("size, unit", [(1 << 20, "nasty"), (8 << 20, "ascii")])
def test_megabyte_strings(impl: ModuleType, size: int, unit: str) -> None:
    """A megabyte of every character Go escapes or replaces in error_detail
    and in the model a filter matches on (8 MB of plain ASCII too):
    rendered exactly as the pure implementation does, published, received
    and matched whole."""
    if unit == "nasty":
        pattern = "\ud800\x00<>&\u2028\u2029\"\\\n\x1f\x7f\u00e9\U0001f642\udfffok"
    else:
        pattern = "0123456789abcdef"
    text = (pattern * (size // len(pattern) + 1))[:size]
    fields: dict[str, Any] = {"error_detail": text, "model": text + "m", "path": "/" + text[:1000]}
    e, ref = impl.OpsLogEntry(time=1.5, **fields), P.OpsLogEntry(time=1.5, **fields)
    assert e.to_json() == ref.to_json()
    data = json.loads(e.to_json())
    assert data["error_detail"] == text.replace("\ud800", "\ufffd").replace("\udfff", "\ufffd")
    b = impl.OpsLogBroadcaster(history_cap=2)
    sub = b.subscribe(impl.OpsLogFilter(model=text + "m"))
    miss = b.subscribe(impl.OpsLogFilter(model=text + "M"))
    b.publish(e)
    assert sub.get_nowait() is e and len(miss) == 0
    assert impl.OpsLogEntry.from_dict(data).to_dict() == data
    assert b.snapshot(impl.OpsLogFilter(model=text + "m")) == [e]


@settings(max_examples=100)
@given(text=NASTY_TEXT, name=st.sampled_from(STR_FIELDS))
def test_surrogates_and_nul_render_as_go(impl: ModuleType, text: str, name: str) -> None:
    """``to_json`` never fails on text Python allows and UTF-8 does not:
    each lone surrogate is U+FFFD, as Go writes invalid UTF-8."""
    kwargs: dict[str, Any] = {name: text}
    e = impl.OpsLogEntry(time=1.0, **kwargs)
    rendered = e.to_json()
    assert rendered == P.OpsLogEntry(time=1.0, **kwargs).to_json()
    rendered.encode("utf-8")  # valid UTF-8
    expected = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
    assert json.loads(rendered).get(name, "") == expected


# ----------------------------------------------------------------- filters ---


@settings(max_examples=150)
@given(
    kwargs=st.fixed_dictionaries(
        {},
        optional={name: field_value("model" if name == "model" else "status") for name in FILTER_FIELD_NAMES}
        | {"nope": hostile},
    ),
    target=st.one_of(hostile, st.sampled_from([Token("published_entry")] * 4)),
)
def test_filter_hostile(impl: ModuleType, kwargs: dict[str, Any], target: Any) -> None:
    def call(w: World) -> Any:
        f = w.M.OpsLogFilter(**w.resolve_all(kwargs))
        for name in FILTER_FIELD_NAMES:
            assert type(getattr(f, name)) is (str if name == "model" else int)
        return (filter_view(f), repr(f), outcome(lambda: f.matches(w.resolve(target)))[0])

    check_call(f"OpsLogFilter(**{kwargs!r}).matches({target!r})", impl, call)


@settings(max_examples=100)
@given(target=hostile)
def test_matches_hostile(impl: ModuleType, target: Any) -> None:
    check_call(
        f"matches({target!r})",
        impl,
        lambda w: w.M.OpsLogFilter(min_status=1).matches(w.resolve(target)),
    )


# ------------------------------------------------------------- broadcaster ---


def _caps() -> st.SearchStrategy[Any]:
    # Valid sizes above 4096 would allocate up to a gigabyte per example in
    # the core: MAX_CAPACITY itself has its own test.
    return hostile.filter(lambda v: not (type(v) is int and 4096 < v <= MAX_CAPACITY))


@settings(max_examples=100)
@given(cap=_caps(), positional=st.booleans())
def test_history_cap_hostile(impl: ModuleType, cap: Any, positional: bool) -> None:
    def call(w: World) -> Any:
        c = w.resolve(cap)
        b = w.M.OpsLogBroadcaster(c) if positional else w.M.OpsLogBroadcaster(history_cap=c)
        for n in range(3):
            b.publish(w.M.OpsLogEntry(time=9.0, user_id=n))
        return (b.history_cap, tuple(b.stats()), [view(e) for e in b.snapshot()])

    check_call(f"OpsLogBroadcaster({cap!r})", impl, call)


def test_capacity_limits(impl: ModuleType) -> None:
    """The largest history and buffer are accepted and work; one more is a
    ValueError that builds nothing."""
    b = impl.OpsLogBroadcaster(history_cap=MAX_CAPACITY)
    sub = b.subscribe(buf_size=MAX_CAPACITY, replay=MAX_CAPACITY)
    b.publish(impl.OpsLogEntry(time=3.0))
    assert b.history_cap == MAX_CAPACITY and sub.buf_size == MAX_CAPACITY
    assert len(b.snapshot()) == 1 and len(sub) == 1
    with pytest.raises(ValueError, match="history_cap"):
        impl.OpsLogBroadcaster(history_cap=MAX_CAPACITY + 1)
    with pytest.raises(ValueError, match="buf_size"):
        b.subscribe(buf_size=MAX_CAPACITY + 1)
    assert b.stats() == (1, 0, 1)
    del b, sub


@settings(max_examples=100)
@given(target=hostile)
def test_publish_hostile(impl: ModuleType, target: Any) -> None:
    def call(w: World) -> Any:
        return w.b.publish(w.resolve(target))

    check_call(f"publish({target!r})", impl, call)


_SUB_VALID = {
    "filter": st.sampled_from([None, Token("own_filter")]),
    "buf_size": st.integers(-3, 12),
    "replay": st.integers(0, 12),
    "since_seq": st.integers(0, 12) | st.none(),
    "overflow": st.sampled_from(["drop_newest", "drop_oldest"]),
}
_SUB_ODD = {
    "filter": hostile,
    "buf_size": _caps(),
    "replay": _caps(),
    "since_seq": _caps(),
    "overflow": st.one_of(
        hostile,
        st.sampled_from(["drop_newest", "drop_oldest", StrSub("drop_newest"), Token("evil_str")]),
    ),
    "nope": hostile,
}


@st.composite
def _sub_kwargs(draw: st.DrawFn) -> dict[str, Any]:
    """Valid subscribe() arguments with one or two of them hostile: a call
    with many bad arguments mostly tests the first check."""
    kwargs = draw(st.fixed_dictionaries({}, optional=_SUB_VALID))
    for name in draw(st.lists(st.sampled_from(sorted(_SUB_ODD)), min_size=1, max_size=2)):
        kwargs[name] = draw(_SUB_ODD[name])
    return kwargs


@settings(max_examples=200)
@given(kwargs=_sub_kwargs(), positional=st.integers(0, 3))
@example(kwargs={"overflow": StrSub("drop_oldest")}, positional=0)
@example(kwargs={"since_seq": INT64_MAX, "buf_size": 2}, positional=2)
def test_subscribe_hostile(impl: ModuleType, kwargs: dict[str, Any], positional: int) -> None:
    def call(w: World) -> Any:
        kw = w.resolve_all(kwargs)
        args = []
        for name in ("filter", "buf_size", "replay")[:positional]:
            if name not in kw:
                break
            args.append(kw.pop(name))
        sub = w.b.subscribe(*args, **kw)
        w.subs["new"] = sub
        return sub

    def after(w: World, sub: Any) -> None:
        w.publish(20)
        w.publish(21)

    check_call(f"subscribe({kwargs!r}, positional={positional})", impl, call, after)


@pytest.mark.parametrize(
    "since_seq", [0, 1, 3, 8, 9, 10, 11, 2**31, 2**62, INT64_MAX - 1, INT64_MAX]
)
def test_since_seq_extremes(impl: ModuleType, since_seq: int) -> None:
    """Every since_seq up to the largest int64 primes as the pure one does
    (the core computes ``since_seq + 1``: UBSan checks it cannot overflow)."""
    check_call(
        f"subscribe(since_seq={since_seq})",
        impl,
        lambda w: w.subs.setdefault("new", w.b.subscribe(since_seq=since_seq)),
    )


@settings(max_examples=150)
@given(
    kwargs=st.fixed_dictionaries(
        {},
        optional={
            "filter": st.one_of(hostile, st.sampled_from([None, Token("own_filter")])),
            "max_entries": st.one_of(hostile, st.integers(-3, 12)),
            "nope": hostile,
        },
    )
)
def test_snapshot_hostile(impl: ModuleType, kwargs: dict[str, Any]) -> None:
    check_call(
        f"snapshot(**{kwargs!r})", impl, lambda w: w.b.snapshot(**w.resolve_all(kwargs))
    )


# ----------------------------------------------------------- subscriptions ---


def _would_block(sub: Any, timeout: Any) -> bool:
    """Whether ``sub.get(timeout)`` could wait for more than a moment."""
    if len(sub) or sub.closed:
        return False
    try:
        if timeout is None:
            return True
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            return False
        if not timeout >= 0:
            return False
    except Exception:
        return False
    # inf means no timeout at all; finite ones past TIMEOUT_MAX fail at once.
    return timeout == math.inf or 0.02 < timeout <= threading.TIMEOUT_MAX


SUB_NAMES = ["full", "urgent", "model", "primed", "since", "closed", "empty", "drained"]


@settings(max_examples=150)
@given(
    name=st.sampled_from(SUB_NAMES),
    timeout=st.one_of(hostile, st.sampled_from([None, 0, 0.0, 0.001, 1e300, 1e10])),
    keyword=st.booleans(),
)
def test_get_hostile(impl: ModuleType, name: str, timeout: Any, keyword: bool) -> None:
    def call(w: World) -> Any:
        sub = w.subs[name]
        t = w.resolve(timeout)
        if _would_block(sub, t):
            return "skipped"  # the same in both worlds
        return sub.get(timeout=t) if keyword else sub.get(t)

    check_call(f"subs[{name!r}].get({timeout!r})", impl, call)


@settings(max_examples=150)
@given(
    name=st.sampled_from(SUB_NAMES),
    max_items=st.one_of(hostile, st.integers(-2, 10), st.none()),
    method=st.sampled_from(["drain", "get_nowait", "unsubscribe", "len", "repr"]),
)
def test_subscription_methods_hostile(
    impl: ModuleType, name: str, max_items: Any, method: str
) -> None:
    def call(w: World) -> Any:
        sub = w.subs[name]
        if method == "drain":
            return sub.drain(w.resolve(max_items))
        if method == "get_nowait":
            return sub.get_nowait()
        if method == "unsubscribe":
            sub.unsubscribe()
            return sub.unsubscribe()
        if method == "len":
            return len(sub)
        return type(repr(sub)).__name__

    check_call(f"subs[{name!r}].{method}({max_items!r})", impl, call)


def test_huge_timeout_on_an_empty_subscription(impl: ModuleType) -> None:
    """A finite timeout too long for the platform fails at once, parks
    nothing, and the subscription still wakes for the next publish."""
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()
    with pytest.raises(OverflowError):
        sub.get(timeout=1e300)
    assert (len(sub), sub.closed, b.stats()) == (0, False, (0, 0, 1))
    b.publish(impl.OpsLogEntry(time=2.0))
    assert sub.get(timeout=10).time == 2.0


# ------------------------------------------------------- the whole API, fuzzed ---


class HostileFuzz(RuleBasedStateMachine):
    """Random sequences of valid, odd and bad calls on every part of the API,
    run on the implementation under test and on the pure one side by side;
    after every call the two worlds must be identical."""

    impl: ModuleType

    entries = Bundle("entries")
    filters = Bundle("filters")

    def __init__(self) -> None:
        super().__init__()
        self.worlds = {"impl": World(self.impl), "pure": World(P)}
        self.n_subs = 0
        self.calls = 0

    def both(self, label: str, call: Callable[[World], Any]) -> tuple[Any, Any] | None:
        """Run ``call`` in both worlds; the pair of results, or None when it
        raised (the same exception type in both, nothing changed)."""
        results = {}
        for key, w in self.worlds.items():
            before = w.state()
            kind, value = outcome(lambda: call(w))
            if kind == "raised":
                assert w.state() == before, f"{label}: failed call changed the state ({key})"
            results[key] = (kind, value)
        (ki, vi), (kp, vp) = results["impl"], results["pure"]
        _note(f"{label}: impl {ki} {vi!r}; pure {kp} {vp!r}")
        assert ki == kp, f"{label}: impl {ki} {vi!r} but pure {kp} {vp!r}"
        self.calls += 1
        if ki == "raised":
            assert type(vi) is type(vp), label
            return None
        assert result_view(vi) == result_view(vp), label
        return Pair((vi, vp))

    @rule(target=entries, kwargs=st.fixed_dictionaries(
        {},
        optional={
            name: st.one_of(_valid_for(name), _valid_for(name), hostile) for name in ENTRY_FIELD_NAMES
        },
    ))
    def make_entry(self, kwargs: dict[str, Any]) -> Any:
        pair = self.both("OpsLogEntry", lambda w: w.M.OpsLogEntry(**w.resolve_all(kwargs)))
        return pair if pair is not None else self.default_entries()

    def default_entries(self) -> tuple[Any, Any]:
        return Pair((self.worlds["impl"].M.OpsLogEntry(time=4.0), P.OpsLogEntry(time=4.0)))

    @rule(target=entries, pair=entries, changes=st.fixed_dictionaries(
        {}, optional={name: field_value(name) for name in ENTRY_FIELD_NAMES}
    ))
    def replace(self, pair: tuple[Any, Any], changes: dict[str, Any]) -> Any:
        got = self.both("replace", lambda w: self.pick(w, pair).replace(**w.resolve_all(changes)))
        return got if got is not None else pair

    @rule(target=entries, pair=entries)
    def round_trip(self, pair: tuple[Any, Any]) -> Any:
        got = self.both("from_dict", lambda w: w.M.OpsLogEntry.from_dict(self.pick(w, pair).to_dict()))
        assert got is not None
        return got

    @rule(target=filters, kwargs=st.fixed_dictionaries(
        {}, optional={name: st.one_of(_valid_for("model" if name == "model" else "status"), hostile)
                      for name in FILTER_FIELD_NAMES}
    ))
    def make_filter(self, kwargs: dict[str, Any]) -> Any:
        pair = self.both("OpsLogFilter", lambda w: w.M.OpsLogFilter(**w.resolve_all(kwargs)))
        if pair is None:
            return Pair((self.worlds["impl"].M.OpsLogFilter(), P.OpsLogFilter()))
        return pair

    def pick(self, w: World, pair: tuple[Any, Any]) -> Any:
        return pair[0] if w is self.worlds["impl"] else pair[1]

    @rule(pair=entries)
    def publish(self, pair: tuple[Any, Any]) -> None:
        self.both("publish", lambda w: w.b.publish(self.pick(w, pair)))

    @rule(value=hostile)
    def publish_hostile(self, value: Any) -> None:
        self.both(f"publish({value!r})", lambda w: w.b.publish(w.resolve(value)))

    @rule(flt=st.one_of(filters, st.none(), hostile), kwargs=_sub_kwargs())
    def subscribe(self, flt: Any, kwargs: dict[str, Any]) -> None:
        name = f"fuzz{self.n_subs}"
        self.n_subs += 1

        def call(w: World) -> Any:
            f = self.pick(w, flt) if isinstance(flt, Pair) else w.resolve(flt)
            kw = w.resolve_all(kwargs)
            kw.pop("filter", None)
            sub = w.b.subscribe(f, **kw)
            w.subs[name] = sub
            return sub

        self.both(f"subscribe({flt!r}, {kwargs!r})", call)

    @rule(data=st.data(), method=st.sampled_from(["unsubscribe", "drain", "get", "get_nowait"]),
          arg=st.one_of(hostile, st.integers(0, 3), st.none(), st.just(0.001)))
    def read(self, data: st.DataObject, method: str, arg: Any) -> None:
        name = data.draw(st.sampled_from(sorted(self.worlds["pure"].subs)))

        def call(w: World) -> Any:
            sub = w.subs[name]
            a = w.resolve(arg)
            if method == "unsubscribe":
                return sub.unsubscribe()
            if method == "drain":
                return sub.drain(a)
            if method == "get_nowait":
                return sub.get_nowait()
            if _would_block(sub, a):
                return "skipped"
            return sub.get(a)

        self.both(f"{name}.{method}({arg!r})", call)

    @rule(flt=st.one_of(filters, st.none(), hostile), max_entries=st.one_of(hostile, st.integers(-2, 8)))
    def snapshot(self, flt: Any, max_entries: Any) -> None:
        def call(w: World) -> Any:
            f = self.pick(w, flt) if isinstance(flt, Pair) else w.resolve(flt)
            return w.b.snapshot(f, w.resolve(max_entries))

        self.both(f"snapshot({flt!r}, {max_entries!r})", call)

    @rule(flt=filters, target_=st.one_of(entries, hostile))
    def matches(self, flt: tuple[Any, Any], target_: Any) -> None:
        def call(w: World) -> Any:
            t = self.pick(w, target_) if isinstance(target_, Pair) else w.resolve(target_)
            return self.pick(w, flt).matches(t)

        self.both(f"matches({target_!r})", call)

    @invariant()
    def worlds_agree(self) -> None:
        assert self.worlds["impl"].state() == self.worlds["pure"].state()

    def teardown(self) -> None:
        assert self.worlds["impl"].drain_all() == self.worlds["pure"].drain_all()
        for w in self.worlds.values():
            for sub in w.subs.values():
                sub.unsubscribe()


def test_fuzz_whole_api(impl: ModuleType) -> None:
    machine = type("HostileFuzz_" + impl.__name__.rsplit(".", 1)[-1], (HostileFuzz,), {"impl": impl})
    run_state_machine_as_test(
        machine, settings=settings(max_examples=40, stateful_step_count=40)
    )


# --------------------------- object protocol abuse, each in a subprocess ---

_PRELUDE = textwrap.dedent(
    """
    import copy, gc, importlib, json, pickle, sys
    M = importlib.import_module(sys.argv[1])
    REFUSED = (TypeError, ValueError, OverflowError)

    def world():
        b = M.OpsLogBroadcaster(4)
        s = b.subscribe(buf_size=2)
        f = b.subscribe(M.OpsLogFilter(model="gpt"))
        b.publish(M.OpsLogEntry(time=1.0, status=500, model="gpt"))
        return b, [s, f]

    def state(b, subs):
        return (tuple(b.stats()), [(e.seq, e.to_json()) for e in b.snapshot()],
                [(len(s), s.dropped, s.closed) for s in subs])

    def well_formed(e):
        for name in ("method", "path", "model", "error_message", "error_detail"):
            assert type(getattr(e, name)) is str, (name, getattr(e, name))
        json.loads(e.to_json())

    def try_(label, fn, allowed=REFUSED):
        try:
            result = fn()
        except allowed as exc:
            print(label, "refused", type(exc).__name__, exc)
            assert str(exc), "an exception without a message"
            return exc
        try:
            shown = repr(result)[:100]
        except AttributeError:  # a pure object made by __new__ alone
            shown = "<no repr>"
        print(label, "->", shown)
        return result
    """
)


def run_script(impl: ModuleType, body: str, *args: str) -> str:
    script = _PRELUDE + textwrap.dedent(body) + "\nprint('DONE')\n"
    proc = subprocess.run(
        [sys.executable, "-c", script, impl.__name__, *args],
        capture_output=True,
        text=True,
        timeout=SUB_TIMEOUT,
    )
    report = f"exit code {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == 0, report
    assert proc.stdout.rstrip().endswith("DONE"), report
    # A half-built object shows up as an error ignored in __del__.
    assert "Exception ignored" not in proc.stderr, report
    return proc.stdout


@pytest.mark.parametrize("cls", ["OpsLogEntry", "OpsLogFilter", "OpsLogBroadcaster", "OpsLogSubscription"])
def test_new_without_init(impl: ModuleType, cls: str) -> None:
    """``cls.__new__(cls)`` without ``__init__`` either gives an object every
    method refuses cleanly (nothing changes), or a well-formed working one;
    it never crashes the interpreter or puts a malformed entry anywhere."""
    run_script(
        impl,
        """
        cls = getattr(M, sys.argv[2])
        b, subs = world()
        ref = {"state": state(b, subs)}
        from queue import Empty
        from fastopslog import SubscriptionClosed
        allowed = REFUSED + (AttributeError, Empty, SubscriptionClosed)
        def check(label, fn):
            result = try_(label, fn, allowed)
            if isinstance(result, BaseException):
                now = state(b, subs)
                assert now == ref["state"], (label, "failed and changed the state", now, ref)
            else:
                ref["state"] = state(b, subs)  # an accepted call may change it
            return result
        # A subscription's __new__ may take its broadcaster (or refuse).
        args = [(), (b,)] if cls is M.OpsLogSubscription else [()]
        for arg in args:
            obj = check(f"__new__{arg!r}", lambda: cls.__new__(cls, *arg))
            if isinstance(obj, BaseException):
                continue
            if cls is M.OpsLogEntry:
                check("repr", lambda: repr(obj))
                check("to_json", lambda: json.loads(obj.to_json()))
                check("replace", lambda: well_formed(obj.replace(status=1)))
                check("matches", lambda: M.OpsLogFilter(model="gpt").matches(obj))
                r = check("publish", lambda: b.publish(obj))
                if not isinstance(r, BaseException):
                    for e in b.snapshot():
                        well_formed(e)
                    for s in subs:
                        for e in s.drain():
                            well_formed(e)
                    ref["state"] = state(b, subs)
            elif cls is M.OpsLogFilter:
                check("repr", lambda: repr(obj))
                check("matches", lambda: obj.matches(M.OpsLogEntry(model="gpt")))
                check("snapshot", lambda: b.snapshot(obj))
                s = check("subscribe", lambda: b.subscribe(obj))
                if not isinstance(s, BaseException):
                    assert type(s.filter.model) is str, s.filter.model
                    s.unsubscribe()
                    del s
                    ref["state"] = state(b, subs)
            elif cls is M.OpsLogBroadcaster:
                check("repr", lambda: repr(obj))
                check("stats", lambda: obj.stats())
                check("publish", lambda: obj.publish(M.OpsLogEntry(time=2.0)))
                check("snapshot", lambda: obj.snapshot())
                s = check("subscribe", lambda: obj.subscribe())
                if not isinstance(s, BaseException):
                    before = tuple(obj.stats())
                    obj.publish(M.OpsLogEntry(time=3.0))
                    assert len(s) == 1 and tuple(obj.stats())[2] == 1, (before, obj.stats())
                    del s
            else:
                for label, fn in [
                    ("len", lambda: len(obj)), ("closed", lambda: obj.closed),
                    ("dropped", lambda: obj.dropped), ("buf_size", lambda: obj.buf_size),
                    ("repr", lambda: repr(obj)), ("get_nowait", obj.get_nowait),
                    ("get", lambda: obj.get(timeout=0)), ("drain", obj.drain),
                    ("unsubscribe", obj.unsubscribe), ("publish", lambda: b.publish(obj)),
                ]:
                    check(label, fn)
                # Whatever it is, it is not a live subscription of b.
                assert tuple(b.stats())[2] == 2
            del obj
            gc.collect()
            assert state(b, subs) == ref["state"]
        """,
        cls,
    )


@pytest.mark.parametrize("cls", ["OpsLogEntry", "OpsLogFilter", "OpsLogBroadcaster", "OpsLogSubscription"])
def test_init_again_on_a_live_object(impl: ModuleType, cls: str) -> None:
    """Calling ``__init__`` again on a live object is refused with a
    TypeError and changes nothing: a published entry stays sealed, a filter
    in use keeps its fields, a broadcaster keeps its history and
    subscribers."""
    run_script(
        impl,
        """
        b, subs = world()
        e = b.snapshot()[0]
        flt = subs[1].filter
        before = (state(b, subs), e.to_json(), e.seq, repr(flt))
        target, kwargs = {
            "OpsLogEntry": (e, {"status": 404, "model": "other"}),
            "OpsLogFilter": (flt, {"model": "other"}),
            "OpsLogBroadcaster": (b, {"history_cap": 8}),
            "OpsLogSubscription": (subs[0], {}),
        }[sys.argv[2]]
        try:
            target.__init__(**kwargs)
        except TypeError as exc:
            print("refused", exc)
        else:
            raise AssertionError(f"{sys.argv[2]}.__init__ again was accepted")
        b.publish(M.OpsLogEntry(time=2.0, model="gpt"))
        after = (state(b, subs), e.to_json(), e.seq, repr(flt))
        assert after[1:] == before[1:], (after, before)
        assert after[0][0] == (2, 0, 2) and len(after[0][1]) == 2, after
        """,
        cls,
    )


_COPY_BODY = """
    for how, fn in [("copy", copy.copy), ("deepcopy", copy.deepcopy),
                    ("pickle", lambda x: pickle.loads(pickle.dumps(x)))]:
        b, subs = world()
        e = b.snapshot()[0]
        obj = {"OpsLogEntry": e, "OpsLogFilter": subs[1].filter,
               "OpsLogBroadcaster": b, "OpsLogSubscription": subs[0]}[sys.argv[2]]
        before = (state(b, subs), e.to_json(), e.seq)
        result = try_(how, lambda: fn(obj), TypeError)
        if not isinstance(result, BaseException):
            print("ACCEPTED", how)
            if sys.argv[2] in ("OpsLogEntry", "OpsLogFilter"):
                assert result == obj and type(result) is type(obj)
            if sys.argv[2] == "OpsLogEntry":
                well_formed(result)
                b.publish(result)
                before = (state(b, subs), e.to_json(), e.seq)
            if sys.argv[2] == "OpsLogBroadcaster":
                result.publish(M.OpsLogEntry(time=5.0))
            del result
            gc.collect()
        else:
            print("REFUSED", how)
        assert (state(b, subs), e.to_json(), e.seq) == before, (how, "the original changed")
"""


@pytest.mark.parametrize("cls", ["OpsLogEntry", "OpsLogFilter", "OpsLogBroadcaster", "OpsLogSubscription"])
def test_copy_and_pickle(impl: ModuleType, cls: str) -> None:
    """``copy``, ``deepcopy`` and ``pickle`` either refuse with a TypeError or
    give an independent, equal object: using or dropping the copy never
    changes the original. Both implementations choose alike."""
    decisions = {}
    for module in (impl, P) if impl is not P else (P,):
        stdout = run_script(module, _COPY_BODY, cls)
        decisions[module.__name__] = sorted(
            line for line in stdout.splitlines() if line.startswith(("ACCEPTED", "REFUSED"))
        )
    assert len(set(map(tuple, decisions.values()))) == 1, decisions


def test_setstate_cannot_change_a_sealed_entry(impl: ModuleType) -> None:
    """No public method rewrites an entry in place: ``__setstate__`` and the
    like (which pickling support may add) leave a published entry as it was."""
    b = impl.OpsLogBroadcaster(2)
    e = impl.OpsLogEntry(time=1.0, status=200, model="gpt")
    b.publish(e)
    before = (e.to_json(), e.seq, repr(e))
    other = impl.OpsLogEntry(time=9.0, status=500)
    for name in ("__setstate__", "__setstate_cython__"):
        method = getattr(e, name, None)
        if method is None:
            continue
        state = other.__reduce_ex__(2)
        candidates = [s for s in state[1:] if isinstance(s, tuple)] + [state[2] if len(state) > 2 else None]
        for candidate in candidates:
            try:
                method(candidate)
            except (TypeError, ValueError, AttributeError):
                pass
    assert (e.to_json(), e.seq, repr(e)) == before, "a sealed entry was rewritten in place"
    assert b.snapshot()[0].to_json() == before[0]


def test_subscribe_overflow_str_subclass(impl: ModuleType) -> None:
    """A ``str`` subclass equal to a policy name is accepted and the policy
    reads back as the plain name, as every other str argument is read."""
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe(buf_size=1, overflow=StrSub("drop_oldest"))
    assert type(sub.overflow) is str and sub.overflow == "drop_oldest"
    b.publish(impl.OpsLogEntry(time=1.0, user_id=1))
    b.publish(impl.OpsLogEntry(time=2.0, user_id=2))
    assert [e.user_id for e in sub.drain()] == [2]


def test_core_keeps_to_python_allocator_domains(impl: ModuleType) -> None:
    """Memory is freed through the allocator family that allocated it:
    under ``PYTHONMALLOC=debug`` (as ``python -X dev`` and debug builds of
    CPython run) a mismatch is a fatal error. Exercises every allocation:
    growing the subscriber array, rings, drop_oldest evictions, woken
    readers, filtered snapshots, drains, rendering, and freeing it all."""
    script = textwrap.dedent(
        """
        import gc, importlib, sys, threading
        M = importlib.import_module(sys.argv[1])
        for round in range(3):
            b = M.OpsLogBroadcaster(8)
            subs = [b.subscribe(M.OpsLogFilter(min_status=n % 3 * 200), buf_size=2,
                                overflow=("drop_oldest", "drop_newest")[n % 2]) for n in range(20)]
            reader = threading.Thread(target=lambda: subs[0].get(timeout=30))
            reader.start()
            for n in range(30):
                b.publish(M.OpsLogEntry(time=1.0 + n, status=200 + n, error_detail="x" * n))
            reader.join(30)
            assert not reader.is_alive()
            assert len(b.snapshot(M.OpsLogFilter(min_status=210), 5)) == 5
            assert [e.to_json() for e in subs[1].drain()]
            late = b.subscribe(replay=4)
            for s in subs[::2]:
                s.unsubscribe()
            del subs, late, reader
            gc.collect()
            del b
            gc.collect()
        print("DONE")
        """
    )
    env = dict(os.environ, PYTHONMALLOC="debug")
    proc = subprocess.run(
        [sys.executable, "-c", script, impl.__name__],
        capture_output=True, text=True, timeout=SUB_TIMEOUT, env=env,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "DONE", (
        f"exit code {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    )
