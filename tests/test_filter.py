"""OpsLogFilter: Go's matches semantics, immutability, bad input."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from _helpers import go_matches
from fastopslog._common import INT64_MAX, INT64_MIN

FILTER_FIELDS = ("min_status", "model", "account_id", "group_id", "min_latency_ms")
INT_FIELDS = ("min_status", "account_id", "group_id", "min_latency_ms")


def test_defaults(impl):
    f = impl.OpsLogFilter()
    assert (f.min_status, f.model, f.account_id, f.group_id, f.min_latency_ms) == (0, "", 0, 0, 0)
    assert type(f.model) is str and type(f.min_status) is int


def test_fields(impl):
    f = impl.OpsLogFilter(min_status=500, model="m", account_id=1, group_id=2, min_latency_ms=3)
    assert (f.min_status, f.model, f.account_id, f.group_id, f.min_latency_ms) == (500, "m", 1, 2, 3)


def test_keyword_only(impl):
    with pytest.raises(TypeError):
        impl.OpsLogFilter(500)
    with pytest.raises(TypeError):
        impl.OpsLogFilter(status=500)


# --- Go's matches -----------------------------------------------------------------


def entry(impl, **kw):
    return impl.OpsLogEntry(time=1.0, **kw)


def test_empty_filter_matches_everything(impl):
    f = impl.OpsLogFilter()
    assert f.matches(entry(impl))
    assert f.matches(entry(impl, status=-1, latency_ms=-1, account_id=-5, model="x"))
    assert f.matches(impl.OpsLogEntry())


@pytest.mark.parametrize(
    "flt, fields, expected",
    [
        # min_status: status >= min_status
        ({"min_status": 500}, {"status": 499}, False),
        ({"min_status": 500}, {"status": 500}, True),
        ({"min_status": 500}, {"status": 503}, True),
        ({"min_status": 500}, {}, False),
        ({"min_status": 1}, {"status": 0}, False),
        ({"min_status": INT64_MAX}, {"status": INT64_MAX}, True),
        ({"min_status": INT64_MAX}, {"status": INT64_MAX - 1}, False),
        # zero and negative minimums are ignored
        ({"min_status": 0}, {"status": -100}, True),
        ({"min_status": -1}, {"status": -100}, True),
        ({"min_status": INT64_MIN}, {"status": INT64_MIN}, True),
        # model: exact, case-sensitive equality; "" is ignored
        ({"model": "gpt-4o"}, {"model": "gpt-4o"}, True),
        ({"model": "gpt-4o"}, {"model": "gpt-4o-mini"}, False),
        ({"model": "gpt-4o"}, {"model": "GPT-4o"}, False),
        ({"model": "gpt-4o"}, {}, False),
        ({"model": ""}, {"model": "anything"}, True),
        ({"model": " "}, {"model": ""}, False),
        # account_id / group_id: equality; zero and negative ignored
        ({"account_id": 7}, {"account_id": 7}, True),
        ({"account_id": 7}, {"account_id": 8}, False),
        ({"account_id": 7}, {}, False),
        ({"account_id": -7}, {"account_id": 8}, True),
        ({"account_id": -7}, {"account_id": -7}, True),
        ({"account_id": 0}, {"account_id": -3}, True),
        ({"group_id": 3}, {"group_id": 3}, True),
        ({"group_id": 3}, {"group_id": 4}, False),
        ({"group_id": -3}, {"group_id": 4}, True),
        ({"group_id": INT64_MIN}, {"group_id": 1}, True),
        ({"account_id": INT64_MAX}, {"account_id": INT64_MAX}, True),
        # min_latency_ms: latency_ms >= min; zero and negative ignored
        ({"min_latency_ms": 100}, {"latency_ms": 99}, False),
        ({"min_latency_ms": 100}, {"latency_ms": 100}, True),
        ({"min_latency_ms": -100}, {"latency_ms": -200}, True),
        ({"min_latency_ms": 0}, {"latency_ms": -200}, True),
        # the other entry fields never matter
        ({"account_id": 1}, {"account_id": 1, "group_id": 9, "user_id": 9, "api_key_id": 9}, True),
        ({"group_id": 1}, {"account_id": 1, "group_id": 9}, False),
        # AND-combining
        ({"min_status": 500, "model": "m"}, {"status": 500, "model": "m"}, True),
        ({"min_status": 500, "model": "m"}, {"status": 499, "model": "m"}, False),
        ({"min_status": 500, "model": "m"}, {"status": 500, "model": "n"}, False),
        (
            {"min_status": 400, "model": "m", "account_id": 1, "group_id": 2, "min_latency_ms": 50},
            {"status": 404, "model": "m", "account_id": 1, "group_id": 2, "latency_ms": 50},
            True,
        ),
        (
            {"min_status": 400, "model": "m", "account_id": 1, "group_id": 2, "min_latency_ms": 50},
            {"status": 404, "model": "m", "account_id": 1, "group_id": 2, "latency_ms": 49},
            False,
        ),
        (
            {"min_status": 400, "model": "m", "account_id": 1, "group_id": 2, "min_latency_ms": 50},
            {"status": 404, "model": "m", "account_id": 1, "group_id": 3, "latency_ms": 50},
            False,
        ),
        (
            {"min_status": -1, "model": "", "account_id": -1, "group_id": 0, "min_latency_ms": -1},
            {"status": -5, "account_id": 3, "latency_ms": -5},
            True,
        ),
        (
            {"min_status": -1, "account_id": -1, "group_id": 5},
            {"status": -5, "account_id": 3, "group_id": 4},
            False,
        ),
    ],
)
def test_matches_table(impl, flt, fields, expected):
    f = impl.OpsLogFilter(**flt)
    e = entry(impl, **fields)
    assert go_matches(f, e) is expected  # the table itself follows Go
    assert f.matches(e) is expected


def test_matches_exhaustive_small_grid(impl):
    filters = [
        impl.OpsLogFilter(min_status=s, model=m, account_id=a, group_id=g, min_latency_ms=lat)
        for s, m, a, g, lat in itertools.product(
            (-1, 0, 400), ("", "a"), (-1, 0, 1), (-1, 0, 2), (-1, 0, 10)
        )
    ]
    entries = [
        entry(impl, status=s, model=m, account_id=a, group_id=g, latency_ms=lat)
        for s, m, a, g, lat in itertools.product(
            (-1, 0, 399, 400), ("", "a", "b"), (-1, 0, 1, 2), (0, 1, 2), (-1, 9, 10)
        )
    ]
    mismatches = [
        (f, e) for f in filters for e in entries if f.matches(e) is not go_matches(f, e)
    ]
    assert not mismatches, mismatches[:5]


int64s = st.one_of(
    st.integers(min_value=-3, max_value=3),
    st.integers(min_value=INT64_MIN, max_value=INT64_MAX),
    st.sampled_from([INT64_MIN, INT64_MAX, 200, 500]),
)
models = st.sampled_from(["", "a", "b", "é", "a\x00"])


@given(
    fs=int64s, fm=models, fa=int64s, fg=int64s, fl=int64s,
    es=int64s, em=models, ea=int64s, eg=int64s, el=int64s,
)
def test_matches_like_go(impl, fs, fm, fa, fg, fl, es, em, ea, eg, el):
    f = impl.OpsLogFilter(min_status=fs, model=fm, account_id=fa, group_id=fg, min_latency_ms=fl)
    e = impl.OpsLogEntry(status=es, model=em, account_id=ea, group_id=eg, latency_ms=el)
    assert f.matches(e) is go_matches(f, e)


@pytest.mark.parametrize("bad", [None, {}, "entry", 1, object()], ids=repr)
def test_matches_needs_an_entry(impl, bad):
    with pytest.raises(TypeError):
        impl.OpsLogFilter().matches(bad)


def test_matches_refuses_a_filter(impl):
    with pytest.raises(TypeError):
        impl.OpsLogFilter().matches(impl.OpsLogFilter())


# --- immutability, equality, repr -------------------------------------------------------


@pytest.mark.parametrize("name", FILTER_FIELDS)
def test_immutable(impl, name):
    f = impl.OpsLogFilter(min_status=500, model="m", account_id=1, group_id=2, min_latency_ms=3)
    before = getattr(f, name)
    with pytest.raises(AttributeError):
        setattr(f, name, "x" if name == "model" else 9)
    with pytest.raises(AttributeError):
        delattr(f, name)
    assert getattr(f, name) == before
    with pytest.raises(AttributeError):
        f.extra = 1


def test_equality_and_hash(impl):
    a = impl.OpsLogFilter(min_status=500, model="m")
    b = impl.OpsLogFilter(min_status=500, model="m")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert impl.OpsLogFilter() == impl.OpsLogFilter()
    for name, value in (
        ("min_status", 501), ("model", "n"), ("account_id", 1), ("group_id", 1), ("min_latency_ms", 1)
    ):
        kwargs = {"min_status": 500, "model": "m", name: value}
        assert impl.OpsLogFilter(**kwargs) != a, name
    assert a != {"min_status": 500, "model": "m"}
    assert a != impl.OpsLogEntry()


def test_repr(impl):
    f = impl.OpsLogFilter(min_status=500, model="m'x", account_id=-1)
    text = repr(f)
    assert text.startswith("OpsLogFilter(") and "min_status=500" in text
    assert "group_id" not in text  # unset fields are left out
    assert eval(text, {"OpsLogFilter": impl.OpsLogFilter}) == f
    assert eval(repr(impl.OpsLogFilter()), {"OpsLogFilter": impl.OpsLogFilter}) == impl.OpsLogFilter()


# --- bad input ---------------------------------------------------------------------


@pytest.mark.parametrize("name", INT_FIELDS)
@pytest.mark.parametrize("value", [None, "5", 5.0, True, False, [5]], ids=repr)
def test_int_field_wrong_type(impl, name, value):
    with pytest.raises(TypeError):
        impl.OpsLogFilter(**{name: value})


@pytest.mark.parametrize("name", INT_FIELDS)
@pytest.mark.parametrize("value", [INT64_MAX + 1, INT64_MIN - 1, 2**100], ids=str)
def test_int_field_outside_int64(impl, name, value):
    with pytest.raises(OverflowError):
        impl.OpsLogFilter(**{name: value})


@pytest.mark.parametrize("value", [None, 1, b"m", ["m"]], ids=repr)
def test_model_wrong_type(impl, value):
    with pytest.raises(TypeError):
        impl.OpsLogFilter(model=value)


@pytest.mark.parametrize("name", INT_FIELDS)
def test_int_field_limits_accepted(impl, name):
    assert getattr(impl.OpsLogFilter(**{name: INT64_MAX}), name) == INT64_MAX
    assert getattr(impl.OpsLogFilter(**{name: INT64_MIN}), name) == INT64_MIN


def test_pure_routes_group_equal_filters_under_their_first_equality_field():
    # The pure routing index (the core's is C structs): one group per
    # distinct filter, filed by model, then account, then group, else "every".
    from fastopslog._filter_py import OpsLogFilter, _Routes
    from fastopslog._ring_py import _Ring

    def rings(n, **fields):
        return [_Ring(OpsLogFilter(**fields), 4, False) for _ in range(n)]

    by_model = rings(3, model="m", account_id=7)
    by_account = rings(2, account_id=7, group_id=9)
    by_group = rings(1, group_id=9, min_status=500)
    every = rings(2) + rings(1, min_latency_ms=5)
    routes = _Routes(by_model + by_account + by_group + every)
    assert [rings for _, rings in routes.by_model["m"]] == [tuple(by_model)]
    assert [rings for _, rings in routes.by_account[7]] == [tuple(by_account)]
    assert [rings for _, rings in routes.by_group[9]] == [tuple(by_group)]
    assert [rings for _, rings in routes.every] == [tuple(every[:2]), tuple(every[2:])]
    # What is left to check once found: nothing when the key is all there is.
    assert [match is None for match, _ in routes.every] == [True, False]
    assert routes.by_model["m"][0][0] is not None  # account_id still to check
