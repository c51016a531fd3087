"""OpsLogEntry: construction, defaults, immutability, replace, equality,
hash, repr and bad input."""

from __future__ import annotations

import enum
import math

import pytest

from fastopslog._common import INT64_MAX, INT64_MIN

STR_FIELDS = ("method", "path", "model", "error_message", "error_detail")
INT_FIELDS = (
    "status",
    "latency_ms",
    "account_id",
    "group_id",
    "api_key_id",
    "user_id",
    "turns",
    "prompt_chars",
    "upstream_status",
)
# Go's struct order, as SPEC.md lists the fields.
ALL_FIELDS = (
    "time",
    "method",
    "path",
    "status",
    "latency_ms",
    "model",
    "stream",
    "account_id",
    "group_id",
    "api_key_id",
    "user_id",
    "turns",
    "prompt_chars",
    "error_message",
    "error_detail",
    "upstream_status",
)

FULL = dict(
    time=1700000000.25,
    method="POST",
    path="/v1/chat/completions",
    status=502,
    latency_ms=1234,
    model="gpt-4o",
    stream=True,
    account_id=7,
    group_id=8,
    api_key_id=9,
    user_id=10,
    turns=3,
    prompt_chars=4567,
    error_message="upstream failed",
    error_detail="connection reset",
    upstream_status=503,
)
# A value different from FULL's for every field.
OTHER = dict(
    time=1700000001.5,
    method="GET",
    path="/v1/models",
    status=200,
    latency_ms=1,
    model="claude",
    stream=False,
    account_id=70,
    group_id=80,
    api_key_id=90,
    user_id=100,
    turns=30,
    prompt_chars=45670,
    error_message="",
    error_detail="x",
    upstream_status=0,
)


# --- construction and defaults ----------------------------------------------


def test_defaults(impl):
    e = impl.OpsLogEntry()
    assert e.time == 0.0 and type(e.time) is float
    for name in STR_FIELDS:
        assert getattr(e, name) == "" and type(getattr(e, name)) is str
    for name in INT_FIELDS:
        assert getattr(e, name) == 0 and type(getattr(e, name)) is int
    assert e.stream is False
    assert e.seq == 0


def test_all_fields(impl):
    e = impl.OpsLogEntry(**FULL)
    for name, value in FULL.items():
        assert getattr(e, name) == value, name
        assert type(getattr(e, name)) is type(value), name
    assert e.seq == 0


def test_field_names_match_spec(impl):
    e = impl.OpsLogEntry(**FULL)
    for name in ALL_FIELDS:
        assert hasattr(e, name)
    assert set(FULL) == set(ALL_FIELDS)


def test_keyword_only(impl):
    with pytest.raises(TypeError):
        impl.OpsLogEntry(1700000000.0)
    with pytest.raises(TypeError):
        impl.OpsLogEntry(1700000000.0, "GET")


def test_unknown_keyword(impl):
    with pytest.raises(TypeError):
        impl.OpsLogEntry(seq=1)
    with pytest.raises(TypeError):
        impl.OpsLogEntry(upstream_code=500)
    with pytest.raises(TypeError):
        impl.OpsLogEntry(Status=200)


def test_time_int_becomes_float(impl):
    e = impl.OpsLogEntry(time=1700000000)
    assert e.time == 1700000000.0 and type(e.time) is float


@pytest.mark.parametrize(
    "given, stored",
    [
        (1.0000004, 1.0),
        (1.0000006, 1.000001),
        (-1.0000004, -1.0),
        (-1.0000006, -1.000001),
        (1700000000.123456, 1700000000.123456),
        (0.0000004, 0.0),
        (0.0000014, 0.000001),
    ],
)
def test_time_kept_to_the_microsecond(impl, given, stored):
    e = impl.OpsLogEntry(time=given)
    assert e.time == stored
    assert e == impl.OpsLogEntry(time=stored)
    assert hash(e) == hash(impl.OpsLogEntry(time=stored))


def test_time_limits_accepted(impl):
    # The years Go's RFC 3339 marshalling accepts: from just after Go's zero
    # time (0001-01-01T00:00:00Z, which stands for an unset time) to
    # 9999-12-31T23:59:59Z.
    first = impl.OpsLogEntry(time=-62135596799.0)
    assert first.time == -62135596799.0
    last = impl.OpsLogEntry(time=253402300799.0)
    assert last.time == 253402300799.0
    assert impl.OpsLogEntry(time=-1.5).time == -1.5


@pytest.mark.parametrize(
    "name, value",
    [(name, INT64_MAX) for name in INT_FIELDS] + [(name, INT64_MIN) for name in INT_FIELDS],
)
def test_int64_limits_accepted(impl, name, value):
    e = impl.OpsLogEntry(**{name: value})
    assert getattr(e, name) == value


def test_int_and_str_subclasses_stored_as_exact_types(impl):
    class Code(enum.IntEnum):
        OK = 200

    class Label(str):
        pass

    e = impl.OpsLogEntry(status=Code.OK, upstream_status=Code.OK, model=Label("m"))
    assert e.status == 200 and type(e.status) is int
    assert e.upstream_status == 200 and type(e.upstream_status) is int
    assert e.model == "m" and type(e.model) is str
    assert e == impl.OpsLogEntry(status=200, upstream_status=200, model="m")


# --- bad input ---------------------------------------------------------------


@pytest.mark.parametrize("name", STR_FIELDS)
@pytest.mark.parametrize("value", [None, 1, b"GET", ["x"], 1.5], ids=repr)
def test_str_field_wrong_type(impl, name, value):
    with pytest.raises(TypeError):
        impl.OpsLogEntry(**{name: value})


@pytest.mark.parametrize("name", INT_FIELDS)
@pytest.mark.parametrize("value", [None, "1", 1.0, 1.5, b"1", [1]], ids=repr)
def test_int_field_wrong_type(impl, name, value):
    with pytest.raises(TypeError):
        impl.OpsLogEntry(**{name: value})


@pytest.mark.parametrize("name", INT_FIELDS)
@pytest.mark.parametrize("value", [True, False])
def test_int_field_bool_refused(impl, name, value):
    with pytest.raises(TypeError):
        impl.OpsLogEntry(**{name: value})


@pytest.mark.parametrize("name", INT_FIELDS)
@pytest.mark.parametrize("value", [INT64_MAX + 1, INT64_MIN - 1, 2**64, -(2**100), 10**40], ids=str)
def test_int_field_outside_int64(impl, name, value):
    with pytest.raises(OverflowError):
        impl.OpsLogEntry(**{name: value})


@pytest.mark.parametrize("value", [1, 0, None, "true", 1.0], ids=repr)
def test_stream_must_be_bool(impl, value):
    with pytest.raises(TypeError):
        impl.OpsLogEntry(stream=value)


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        math.inf,
        -math.inf,
        1e20,
        -1e20,
        253402300800.0,  # 10000-01-01T00:00:00Z
        -62135596801.0,  # one second before year 1
        10**15,
    ],
    ids=repr,
)
def test_time_out_of_range(impl, value):
    with pytest.raises(ValueError):
        impl.OpsLogEntry(time=value)


def test_time_huge_int_refused(impl):
    # Out of range both as a time and as a 64-bit integer: either error is
    # a clear answer, silence is not.
    with pytest.raises((ValueError, OverflowError)):
        impl.OpsLogEntry(time=10**400)


@pytest.mark.parametrize("value", [None, "1700000000", True, False, [1.0], b"1"], ids=repr)
def test_time_wrong_type(impl, value):
    with pytest.raises(TypeError):
        impl.OpsLogEntry(time=value)


# --- immutability -----------------------------------------------------------


@pytest.mark.parametrize("name", (*ALL_FIELDS, "seq"))
def test_immutable_fields(impl, name):
    e = impl.OpsLogEntry(**FULL)
    before = getattr(e, name)
    with pytest.raises(AttributeError):
        setattr(e, name, OTHER.get(name, 5))
    with pytest.raises(AttributeError):
        delattr(e, name)
    assert getattr(e, name) == before


def test_no_new_attributes(impl):
    e = impl.OpsLogEntry()
    with pytest.raises(AttributeError):
        e.extra = 1


# --- replace ----------------------------------------------------------------


def test_replace_changes_only_what_is_given(impl):
    e = impl.OpsLogEntry(**FULL)
    r = e.replace(status=200, model="other")
    assert r is not e
    assert r.status == 200 and r.model == "other"
    for name in ALL_FIELDS:
        if name not in ("status", "model"):
            assert getattr(r, name) == FULL[name], name
    # the original is untouched
    for name, value in FULL.items():
        assert getattr(e, name) == value


def test_replace_every_field(impl):
    e = impl.OpsLogEntry(**FULL)
    r = e.replace(**OTHER)
    assert r == impl.OpsLogEntry(**OTHER)


def test_replace_nothing_gives_equal_entry(impl):
    e = impl.OpsLogEntry(**FULL)
    r = e.replace()
    assert r == e and r.seq == 0


def test_replace_time_is_quantized(impl):
    e = impl.OpsLogEntry(time=5.0)
    assert e.replace(time=1.0000004).time == 1.0
    assert e.replace(time=7).time == 7.0
    assert e.replace(time=0).time == 0.0


@pytest.mark.parametrize(
    "changes, error",
    [
        ({"seq": 3}, TypeError),
        ({"nope": 1}, TypeError),
        ({"status": "200"}, TypeError),
        ({"status": True}, TypeError),
        ({"account_id": 2**63}, OverflowError),
        ({"model": None}, TypeError),
        ({"stream": 1}, TypeError),
        ({"time": math.nan}, ValueError),
        ({"time": "now"}, TypeError),
    ],
    ids=lambda v: repr(v) if isinstance(v, dict) else v.__name__,
)
def test_replace_bad_input(impl, changes, error):
    e = impl.OpsLogEntry(**FULL)
    with pytest.raises(error):
        e.replace(**changes)
    assert e == impl.OpsLogEntry(**FULL)


def test_replace_positional_refused(impl):
    with pytest.raises(TypeError):
        impl.OpsLogEntry().replace({"status": 1})


# --- equality, hash, repr ---------------------------------------------------


def test_equal_by_value(impl):
    a = impl.OpsLogEntry(**FULL)
    b = impl.OpsLogEntry(**FULL)
    assert a is not b
    assert a == b and not (a != b)
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    assert {a: 1}[b] == 1


@pytest.mark.parametrize("name", ALL_FIELDS)
def test_every_field_takes_part_in_equality(impl, name):
    a = impl.OpsLogEntry(**FULL)
    b = impl.OpsLogEntry(**{**FULL, name: OTHER[name]})
    assert a != b and not (a == b)


def test_not_equal_to_other_types(impl):
    e = impl.OpsLogEntry(**FULL)
    assert e != FULL
    assert e != impl.OpsLogFilter()
    assert e != None  # noqa: E711
    assert e != 0
    assert not (e == e.to_dict())


def test_no_ordering(impl):
    with pytest.raises(TypeError):
        impl.OpsLogEntry() < impl.OpsLogEntry()  # noqa: B015


def test_equality_and_hash_ignore_seq(impl):
    b = impl.OpsLogBroadcaster()
    published = impl.OpsLogEntry(**FULL)
    b.publish(published)
    assert published.seq == 1
    fresh = impl.OpsLogEntry(**FULL)
    assert fresh.seq == 0
    assert published == fresh
    assert hash(published) == hash(fresh)


def test_repr_readable_and_evaluable(impl):
    e = impl.OpsLogEntry(time=1700000000.5, method="GET", status=200, model="m<&>", stream=True)
    text = repr(e)
    assert text.startswith("OpsLogEntry(") and text.endswith(")")
    assert "method='GET'" in text
    assert "model='m<&>'" in text
    assert "status=200" in text
    # zero fields that JSON omits are left out as well
    assert "path=" not in text and "account_id=" not in text
    assert eval(text, {"OpsLogEntry": impl.OpsLogEntry}) == e


def test_repr_full_entry_round_trips(impl):
    e = impl.OpsLogEntry(**FULL)
    assert eval(repr(e), {"OpsLogEntry": impl.OpsLogEntry}) == e
    d = impl.OpsLogEntry()
    assert eval(repr(d), {"OpsLogEntry": impl.OpsLogEntry}) == d


def test_repr_shows_seq_once_published(impl):
    b = impl.OpsLogBroadcaster()
    b.publish(impl.OpsLogEntry(time=1.0))
    e = impl.OpsLogEntry(time=2.0, status=500)
    assert "seq=" not in repr(e)
    b.publish(e)
    assert "seq=2" in repr(e)


# --- the package ------------------------------------------------------------


def test_package_exports():
    import fastopslog
    from fastopslog._common import OpsLogStats, SubscriptionClosed

    assert fastopslog.SubscriptionClosed is SubscriptionClosed
    assert fastopslog.OpsLogStats is OpsLogStats
    for name in fastopslog.__all__:
        assert hasattr(fastopslog, name), name
