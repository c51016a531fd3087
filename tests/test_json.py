"""to_json / to_dict / from_dict against Go's encoding/json.

The expected strings are written by hand from Go's rules:

- keys in struct order; ``time``, ``status`` and ``latency_ms`` always
  present, every other field ``omitempty`` (left out when "", 0 or false);
- ``time.Time`` marshals as RFC 3339 with nanoseconds, trailing zeros of
  the fraction trimmed and no fraction when it is zero; SPEC.md fixes UTC
  with ``Z`` and microsecond precision;
- strings: ``"`` and ``\\`` backslash-escaped; ``\\b \\f \\n \\r \\t`` in
  short form (Go 1.22+), every other byte below 0x20 as ``\\u00XX`` in
  lower-case hex; ``<``, ``>``, ``&`` as ``\\u003c \\u003e \\u0026``
  (HTMLEscape is on by default); U+2028 / U+2029 as ``\\u2028 \\u2029``;
  DEL and all other non-ASCII text written raw; an invalid code point
  (here: a lone surrogate) as ``\\ufffd``; ``/`` is not escaped;
- integers in decimal, ``true`` for a set ``stream``.
"""

from __future__ import annotations

import calendar
import json

import pytest


def epoch(*ymdhms: int) -> int:
    """Seconds since the epoch of a UTC calendar time (stdlib, not the code
    under test)."""
    return calendar.timegm(ymdhms + (0,) * (6 - len(ymdhms)))


T0 = epoch(2023, 11, 14, 22, 13, 20)
assert T0 == 1700000000


# --- to_json: literal expected strings --------------------------------------


def test_minimal_entry(impl):
    e = impl.OpsLogEntry(time=T0)
    assert e.to_json() == '{"time":"2023-11-14T22:13:20Z","status":0,"latency_ms":0}'


def test_full_entry(impl):
    e = impl.OpsLogEntry(
        time=epoch(2024, 2, 29, 12) + 0.25,
        method="POST",
        path="/v1/chat/completions",
        status=200,
        latency_ms=1234,
        model="gpt-4o",
        stream=True,
        account_id=7,
        group_id=8,
        api_key_id=9,
        user_id=10,
        turns=3,
        prompt_chars=4567,
        error_message="rate limited",
        error_detail="retry after 3s",
        upstream_status=429,
    )
    assert e.to_json() == (
        '{"time":"2024-02-29T12:00:00.25Z","method":"POST",'
        '"path":"/v1/chat/completions","status":200,"latency_ms":1234,'
        '"model":"gpt-4o","stream":true,"account_id":7,"group_id":8,'
        '"api_key_id":9,"user_id":10,"turns":3,"prompt_chars":4567,'
        '"error_message":"rate limited","error_detail":"retry after 3s",'
        '"upstream_status":429}'
    )


def test_omitempty_keeps_only_set_fields_in_go_order(impl):
    e = impl.OpsLogEntry(time=T0, user_id=5, method="GET", upstream_status=502, stream=False)
    assert e.to_json() == (
        '{"time":"2023-11-14T22:13:20Z","method":"GET","status":0,"latency_ms":0,'
        '"user_id":5,"upstream_status":502}'
    )


def test_negative_numbers_are_not_empty(impl):
    e = impl.OpsLogEntry(time=T0, status=-1, latency_ms=-2, account_id=-3, turns=-4)
    assert e.to_json() == (
        '{"time":"2023-11-14T22:13:20Z","status":-1,"latency_ms":-2,'
        '"account_id":-3,"turns":-4}'
    )


def test_int64_extremes(impl):
    e = impl.OpsLogEntry(time=T0, latency_ms=2**63 - 1, account_id=-(2**63))
    assert e.to_json() == (
        '{"time":"2023-11-14T22:13:20Z","status":0,'
        '"latency_ms":9223372036854775807,"account_id":-9223372036854775808}'
    )


@pytest.mark.parametrize(
    "seconds, text",
    [
        (T0, "2023-11-14T22:13:20Z"),
        (T0 + 0.5, "2023-11-14T22:13:20.5Z"),
        (T0 + 0.12, "2023-11-14T22:13:20.12Z"),
        (T0 + 0.123, "2023-11-14T22:13:20.123Z"),
        (T0 + 0.1234, "2023-11-14T22:13:20.1234Z"),
        (T0 + 0.123456, "2023-11-14T22:13:20.123456Z"),
        (T0 + 0.000001, "2023-11-14T22:13:20.000001Z"),
        (T0 + 0.00001, "2023-11-14T22:13:20.00001Z"),
        (T0 + 0.1, "2023-11-14T22:13:20.1Z"),
        (T0 + 0.9999994, "2023-11-14T22:13:20.999999Z"),  # rounds to the microsecond
        (T0 + 0.9999996, "2023-11-14T22:13:21Z"),  # ... which can carry into the second
        (epoch(2024, 2, 29), "2024-02-29T00:00:00Z"),
        (epoch(2000, 1, 1), "2000-01-01T00:00:00Z"),
        (epoch(1999, 12, 31, 23, 59, 59), "1999-12-31T23:59:59Z"),
        (1, "1970-01-01T00:00:01Z"),
        (-1.5, "1969-12-31T23:59:58.5Z"),
        (-0.000001, "1969-12-31T23:59:59.999999Z"),
        (epoch(1, 1, 1, 0, 0, 1), "0001-01-01T00:00:01Z"),
        (epoch(999, 5, 6, 7, 8, 9), "0999-05-06T07:08:09Z"),
        (epoch(9999, 12, 31, 23, 59, 59), "9999-12-31T23:59:59Z"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_time_format(impl, seconds, text):
    e = impl.OpsLogEntry(time=seconds)
    assert e.to_json() == '{"time":"%s","status":0,"latency_ms":0}' % text
    assert e.to_dict()["time"] == text


ESCAPES = [
    ("plain", "plain"),
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("<script>alert('x&y')</script>", "\\u003cscript\\u003ealert('x\\u0026y')\\u003c/script\\u003e"),
    ('"', '\\"'),
    ("\\", "\\\\"),
    ("/", "/"),
    ("'", "'"),
    ("\b", "\\b"),
    ("\f", "\\f"),
    ("\n", "\\n"),
    ("\r", "\\r"),
    ("\t", "\\t"),
    ("\x00", "\\u0000"),
    ("\x01", "\\u0001"),
    ("\x07", "\\u0007"),
    ("\x0b", "\\u000b"),
    ("\x0e", "\\u000e"),
    ("\x1a", "\\u001a"),
    ("\x1b", "\\u001b"),
    ("\x1f", "\\u001f"),
    (" ~", " ~"),
    ("\x7f", "\x7f"),  # DEL is not escaped
    ("\x80\x9f", "\x80\x9f"),  # C1 controls are written raw
    ("é", "é"),
    ("\u00a0", "\u00a0"),
    ("日本語", "日本語"),
    ("😀", "😀"),
    ("\u200b\ufeff", "\u200b\ufeff"),
    ("\ufffd", "\ufffd"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
    ("a\u2028b\u2029c", "a\\u2028b\\u2029c"),
    ("\ud800", "\\ufffd"),
    ("\udfff", "\\ufffd"),
    ("x\udc00y", "x\\ufffdy"),
    ("\ud83d\ude00", "\\ufffd\\ufffd"),  # two lone surrogates, not a pair
    ("line1\nline2\ttab \"q\" <b>", 'line1\\nline2\\ttab \\"q\\" \\u003cb\\u003e'),
]


@pytest.mark.parametrize("raw, escaped", ESCAPES, ids=[ascii(r) for r, _ in ESCAPES])
def test_string_escaping(impl, raw, escaped):
    e = impl.OpsLogEntry(time=T0, error_message=raw)
    assert e.to_json() == (
        '{"time":"2023-11-14T22:13:20Z","status":0,"latency_ms":0,'
        '"error_message":"%s"}' % escaped
    )


@pytest.mark.parametrize("field", ["method", "path", "model", "error_message", "error_detail"])
def test_every_string_field_is_escaped(impl, field):
    e = impl.OpsLogEntry(time=T0, **{field: '<&>"\n\u2028\x01'})
    rendered = e.to_json()
    assert '"%s":"\\u003c\\u0026\\u003e\\"\\n\\u2028\\u0001"' % field in rendered
    assert json.loads(rendered)[field] == '<&>"\n\u2028\x01'


def test_all_c0_controls(impl):
    short = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}
    hexdigits = "0123456789abcdef"
    for code in range(0x20):
        expected = short.get(code, "\\u00" + hexdigits[code >> 4] + hexdigits[code & 0xF])
        e = impl.OpsLogEntry(time=T0, model=chr(code))
        assert e.to_json() == (
            '{"time":"2023-11-14T22:13:20Z","status":0,"latency_ms":0,"model":"%s"}' % expected
        ), hex(code)


def test_printable_ascii_is_raw_except_html_and_quotes(impl):
    special = {'"': '\\"', "\\": "\\\\", "<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}
    text = "".join(chr(c) for c in range(0x20, 0x80))
    expected = "".join(special.get(ch, ch) for ch in text)
    e = impl.OpsLogEntry(time=T0, path=text)
    assert e.to_json() == (
        '{"time":"2023-11-14T22:13:20Z","path":"%s","status":0,"latency_ms":0}' % expected
    )


def test_unpublished_zero_time(impl):
    # An entry that was never published has no time, which Go renders as its
    # zero time; reading that back gives an unset time again.
    e = impl.OpsLogEntry()
    assert e.to_json() == '{"time":"0001-01-01T00:00:00Z","status":0,"latency_ms":0}'
    back = impl.OpsLogEntry.from_dict(e.to_dict())
    assert back.time == 0.0
    assert back == e


def test_go_zero_time_cannot_be_set(impl):
    with pytest.raises(ValueError, match="zero time"):
        impl.OpsLogEntry(time=-62135596800.0)


def test_seq_is_not_in_json(impl):
    b = impl.OpsLogBroadcaster()
    e = impl.OpsLogEntry(time=T0, status=200)
    b.publish(e)
    assert e.seq == 1
    assert e.to_json() == '{"time":"2023-11-14T22:13:20Z","status":200,"latency_ms":0}'
    assert "seq" not in e.to_dict()


# --- caching -----------------------------------------------------------------


def test_to_json_computed_once(impl):
    e = impl.OpsLogEntry(time=T0, method="GET", error_message="<x>")
    first = e.to_json()
    assert type(first) is str
    assert e.to_json() is first


def test_to_json_shared_by_subscribers_and_history(impl):
    b = impl.OpsLogBroadcaster()
    s1, s2 = b.subscribe(), b.subscribe()
    b.publish(impl.OpsLogEntry(time=T0, model="m"))
    got1, got2 = s1.get_nowait(), s2.get_nowait()
    (kept,) = b.snapshot()
    assert got1.to_json() is got2.to_json() is kept.to_json()


def test_stamping_on_publish_replaces_rendered_zero_time(impl):
    b = impl.OpsLogBroadcaster()
    e = impl.OpsLogEntry(status=200)
    assert e.to_json().startswith('{"time":"0001-01-01T00:00:00Z"')
    b.publish(e)
    assert e.time != 0.0
    rendered = e.to_json()
    assert not rendered.startswith('{"time":"0001-01-01T00:00:00Z"')
    assert impl.OpsLogEntry.from_dict(json.loads(rendered)) == e
    assert e.to_json() is rendered


def test_republished_copy_renders_the_same(impl):
    b = impl.OpsLogBroadcaster()
    sub = b.subscribe()
    e = impl.OpsLogEntry(time=T0, path="/a&b")
    rendered = e.to_json()
    b.publish(e)
    b.publish(e)
    first, copy = sub.drain()
    assert first is e and copy is not e
    assert copy.to_json() == rendered


# --- to_dict -------------------------------------------------------------------


def test_to_dict_full(impl):
    e = impl.OpsLogEntry(
        time=T0 + 0.5,
        method="GET",
        status=200,
        latency_ms=12,
        stream=True,
        account_id=1,
        error_detail="d",
    )
    d = e.to_dict()
    assert d == {
        "time": "2023-11-14T22:13:20.5Z",
        "method": "GET",
        "status": 200,
        "latency_ms": 12,
        "stream": True,
        "account_id": 1,
        "error_detail": "d",
    }
    assert list(d) == ["time", "method", "status", "latency_ms", "stream", "account_id", "error_detail"]


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"time": T0},
        {"time": T0 + 0.000123, "method": "<&>", "stream": True, "turns": -1},
        {"time": -5.25, "model": "\u2028\ud800\x7f", "upstream_status": 504},
        {"time": T0, "error_message": "\x00\x1f", "group_id": 2**63 - 1},
    ],
)
def test_to_dict_is_json_loads_of_to_json(impl, fields):
    e = impl.OpsLogEntry(**fields)
    d = e.to_dict()
    assert d == json.loads(e.to_json())
    assert list(d) == list(json.loads(e.to_json()))


def test_to_dict_is_a_fresh_dict(impl):
    e = impl.OpsLogEntry(time=T0, status=200)
    d = e.to_dict()
    d["status"] = 500
    d["extra"] = 1
    assert e.to_dict() == {"time": "2023-11-14T22:13:20Z", "status": 200, "latency_ms": 0}
    assert e.status == 200


# --- from_dict ------------------------------------------------------------------


ROUND_TRIP = [
    {},
    {"time": T0},
    {"time": T0 + 0.123456, "method": "POST", "path": "/p", "status": 201, "latency_ms": 3},
    {
        "time": -62135596799,
        "model": "m",
        "stream": True,
        "account_id": -(2**63),
        "group_id": 2**63 - 1,
        "api_key_id": 3,
        "user_id": 4,
        "turns": 5,
        "prompt_chars": 6,
        "error_message": "<\u2028&>\n",
        "error_detail": "é😀",
        "upstream_status": 502,
    },
    {"time": epoch(9999, 12, 31, 23, 59, 59) + 0.5},
    {"time": -0.000001},
]


@pytest.mark.parametrize("fields", ROUND_TRIP)
def test_from_dict_round_trip(impl, fields):
    e = impl.OpsLogEntry(**fields)
    back = impl.OpsLogEntry.from_dict(e.to_dict())
    assert type(back) is impl.OpsLogEntry
    assert back == e
    assert back.seq == 0
    assert back.to_json() == e.to_json()
    assert impl.OpsLogEntry.from_dict(json.loads(e.to_json())) == e


def test_from_dict_of_published_entry_is_unpublished(impl):
    b = impl.OpsLogBroadcaster()
    e = impl.OpsLogEntry(status=200)
    b.publish(e)
    back = impl.OpsLogEntry.from_dict(e.to_dict())
    assert back == e and back.seq == 0


def test_from_dict_last_microsecond_of_year_9999(impl):
    e = impl.OpsLogEntry.from_dict({"time": "9999-12-31T23:59:59.999999Z"})
    assert e.to_json() == '{"time":"9999-12-31T23:59:59.999999Z","status":0,"latency_ms":0}'
    assert impl.OpsLogEntry.from_dict(e.to_dict()) == e


def test_from_dict_missing_fields_default(impl):
    e = impl.OpsLogEntry.from_dict({"time": "2023-11-14T22:13:20Z", "status": 404})
    assert e == impl.OpsLogEntry(time=T0, status=404)
    assert impl.OpsLogEntry.from_dict({}) == impl.OpsLogEntry()
    assert impl.OpsLogEntry.from_dict({"time": None}) == impl.OpsLogEntry()


def test_from_dict_accepts_explicit_zero_values(impl):
    d = {
        "time": "2023-11-14T22:13:20Z", "method": "", "status": 0, "stream": False,
        "account_id": 0, "error_message": "",
    }
    assert impl.OpsLogEntry.from_dict(d) == impl.OpsLogEntry(time=T0)


def test_from_dict_ignores_unknown_keys(impl):
    d = {"time": "2023-11-14T22:13:20Z", "seq": 12, "Status": 1, "extra": [1]}
    e = impl.OpsLogEntry.from_dict(d)
    assert e == impl.OpsLogEntry(time=T0)
    assert e.seq == 0


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("2023-11-14T22:13:20Z", T0),
        ("2023-11-14T23:13:20+01:00", T0),
        ("2023-11-14T16:43:20-05:30", T0),
        ("2023-11-15T00:13:20.5+02:00", T0 + 0.5),
        ("2023-11-14T22:13:20+00:00", T0),
        ("2023-11-14T22:13:20-00:00", T0),
        ("2023-11-14T22:13:20.000000Z", T0),
        ("2023-11-14T22:13:20.1Z", T0 + 0.1),
        ("2023-11-14T22:13:20.123456789Z", T0 + 0.123456),  # nanoseconds cut
        ("2023-11-14T22:13:20.9999999Z", T0 + 0.999999),
        ("1970-01-01T00:00:00Z", 0),
        ("1969-12-31T23:59:59.75Z", -0.25),
        # Go's zero time: an unset time.
        ("0001-01-01T00:00:00Z", 0),
        ("0001-01-01T01:00:00+01:00", 0),
        ("0001-01-01T00:00:01Z", epoch(1, 1, 1, 0, 0, 1)),
        ("9999-12-31T23:59:59Z", epoch(9999, 12, 31, 23, 59, 59)),
        ("2024-02-29T12:00:00Z", epoch(2024, 2, 29, 12)),
    ],
)
def test_from_dict_times(impl, text, seconds):
    e = impl.OpsLogEntry.from_dict({"time": text})
    assert e == impl.OpsLogEntry(time=seconds)


def test_from_dict_offset_renders_back_in_utc(impl):
    e = impl.OpsLogEntry.from_dict({"time": "2023-11-15T07:13:20.25+09:00", "status": 200})
    assert e.to_json() == '{"time":"2023-11-14T22:13:20.25Z","status":200,"latency_ms":0}'


@pytest.mark.parametrize(
    "text",
    [
        "",
        "now",
        "2023-11-14",
        "2023-11-14T22:13:20",  # no zone
        "2023-11-14 22:13:20Z",
        "2023-11-14T22:13Z",
        "2023-11-14T22:13:20.Z",
        "2023-11-14T22:13:20.1234567891Z",  # more than nine fraction digits
        "2023-13-01T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2023-11-31T00:00:00Z",
        "2023-11-14T24:00:00Z",
        "2023-11-14T22:60:00Z",
        "2023-11-14T22:13:61Z",
        "2023-11-14T22:13:20+24:00",
        "2023-11-14T22:13:20+01:60",
        "2023-11-14T22:13:20+0100",
        "0000-12-31T23:59:59Z",
        "10000-01-01T00:00:00Z",
        "0001-01-01T00:00:00+00:01",  # before year 1 in UTC
        "9999-12-31T23:59:59-00:01",  # year 10000 in UTC
        " 2023-11-14T22:13:20Z",
        "2023-11-14T22:13:20Z ",
        "２０２３-11-14T22:13:20Z",  # non-ASCII digits
    ],
)
def test_from_dict_bad_time(impl, text):
    with pytest.raises(ValueError):
        impl.OpsLogEntry.from_dict({"time": text})


@pytest.mark.parametrize(
    "value", [T0, float(T0), ["2023-11-14T22:13:20Z"], True, b"2023-11-14T22:13:20Z"], ids=repr
)
def test_from_dict_time_wrong_type(impl, value):
    with pytest.raises(TypeError):
        impl.OpsLogEntry.from_dict({"time": value})


@pytest.mark.parametrize(
    "data, error",
    [
        ({"status": "200"}, TypeError),
        ({"status": 200.0}, TypeError),
        ({"status": True}, TypeError),
        ({"latency_ms": None}, TypeError),
        ({"account_id": 2**63}, OverflowError),
        ({"user_id": -(2**63) - 1}, OverflowError),
        ({"model": None}, TypeError),
        ({"method": 1}, TypeError),
        ({"stream": 1}, TypeError),
        ({"stream": "true"}, TypeError),
        ({"stream": None}, TypeError),
    ],
    ids=repr,
)
def test_from_dict_wrong_field_types(impl, data, error):
    with pytest.raises(error):
        impl.OpsLogEntry.from_dict({"time": "2023-11-14T22:13:20Z", **data})


@pytest.mark.parametrize("data", [None, "{}", [("status", 1)], 1, b"{}"], ids=repr)
def test_from_dict_needs_a_dict(impl, data):
    with pytest.raises(TypeError):
        impl.OpsLogEntry.from_dict(data)


# --- _json_lines: the Redis forwarder's batch rendering -----------------------


def json_lines_entries(impl):
    """Entries whose JSON takes every path: plain, escaped, non-ASCII,
    every field set, Go's zero time; eight to a second (the compiled
    renderer reuses a second's date and time), around 1970 too."""
    return [
        impl.OpsLogEntry(time=T0 + i / 8, path=f"/v1/{i}", status=200 + i % 5, latency_ms=i)
        for i in range(40)
    ] + [
        impl.OpsLogEntry(time=t, path="/a<b>&\"c\"") for t in (-1.5, -1.25, -0.5, 0.25, 0.75)
    ] + [
        impl.OpsLogEntry(path="ü<\u2028\ud800\n", error_message='"x"', model="m" * 300, stream=True),
        impl.OpsLogEntry(account_id=-1, upstream_status=502),
        impl.OpsLogEntry(time=epoch(9999, 12, 31, 23, 59, 59) + 0.5, turns=1),
    ]


def test_json_lines_is_each_to_json_on_its_own_line(impl):
    entries = json_lines_entries(impl)
    # Half rendered and cached beforehand, half rendered by _json_lines.
    cached = [entry.to_json() for entry in entries[::2]]
    lines = impl.OpsLogEntry._json_lines(entries)
    assert isinstance(lines, bytes)
    assert lines.decode().split("\n") == [entry.to_json() for entry in entries]
    assert [entry.to_json() for entry in entries[::2]] == cached


def test_json_lines_of_a_batch_larger_than_any_buffer_step(impl):
    entries = [impl.OpsLogEntry(time=T0, path="/p" * (i % 50), user_id=i) for i in range(3000)]
    assert impl.OpsLogEntry._json_lines(entries) == "\n".join(e.to_json() for e in entries).encode()


def test_json_lines_of_nothing(impl):
    assert impl.OpsLogEntry._json_lines([]) == b""


def test_json_lines_takes_the_other_implementations_entries(impl, other_implementation):
    mine = json_lines_entries(impl)
    theirs = json_lines_entries(other_implementation.module)
    mixed = [entry for pair in zip(mine, theirs, strict=True) for entry in pair]
    assert impl.OpsLogEntry._json_lines(mixed) == "\n".join(e.to_json() for e in mixed).encode()


@pytest.mark.parametrize("bad", [None, ({},), [object()]])
def test_json_lines_refuses_what_is_not_a_list_of_entries(impl, bad):
    with pytest.raises((TypeError, AttributeError)):
        impl.OpsLogEntry._json_lines(bad)
