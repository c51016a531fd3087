"""What both implementations share: the field tables, limits, errors and stats."""

from __future__ import annotations

import math
from typing import Any, Final, Literal, NamedTuple, NoReturn

# Entry fields in Go's struct order, with their Python type and default.
# ``time`` comes first and is special: a float of seconds, kept to the
# microsecond.
ENTRY_FIELDS: tuple[tuple[str, type, object], ...] = (
    ("time", float, 0.0),
    ("method", str, ""),
    ("path", str, ""),
    ("status", int, 0),
    ("latency_ms", int, 0),
    ("model", str, ""),
    ("stream", bool, False),
    ("account_id", int, 0),
    ("group_id", int, 0),
    ("api_key_id", int, 0),
    ("user_id", int, 0),
    ("turns", int, 0),
    ("prompt_chars", int, 0),
    ("error_message", str, ""),
    ("error_detail", str, ""),
    ("upstream_status", int, 0),
)
ENTRY_FIELD_NAMES = tuple(name for name, _, _ in ENTRY_FIELDS)
# JSON keys Go always writes; every other field is ``omitempty``.
ALWAYS_RENDERED = frozenset(("time", "status", "latency_ms"))

FILTER_FIELDS: tuple[tuple[str, type, object], ...] = (
    ("min_status", int, 0),
    ("model", str, ""),
    ("account_id", int, 0),
    ("group_id", int, 0),
    ("min_latency_ms", int, 0),
)

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# Times must render as RFC 3339 with a four-digit year, as Go requires:
# 0001-01-01T00:00:00Z <= time < 10000-01-01T00:00:00Z.
TIME_MIN_US = -62135596800 * 1_000_000
TIME_MAX_US = 253402300800 * 1_000_000 - 1
# Go's zero time, the first instant of year 1, is how Go renders a time
# that was never set. Here an unset time is 0, so that instant renders an
# unset time and cannot be set itself.
GO_ZERO_TIME_US = TIME_MIN_US
GO_ZERO_TIME = "0001-01-01T00:00:00Z"

DEFAULT_HISTORY_CAP = 1000
DEFAULT_BUF_SIZE = 1024
# The largest history or buffer either implementation accepts. The compiled
# core preallocates what it is given, so an absurd size must be refused up
# front rather than half-allocated.
MAX_CAPACITY = 1 << 24

Overflow = Literal["drop_newest", "drop_oldest"]
DROP_NEWEST: Final = "drop_newest"
DROP_OLDEST: Final = "drop_oldest"
OVERFLOW_POLICIES = (DROP_NEWEST, DROP_OLDEST)


class SubscriptionClosed(Exception):
    """Raised by a read on a subscription that is unsubscribed and empty."""


class OpsLogStats(NamedTuple):
    """Cumulative counters of a broadcaster, as Go's ``Stats()`` returns them."""

    published: int
    dropped: int
    subscribers: int


def check_int(name: str, value: object) -> int:
    """Return ``value`` if it is a signed 64-bit integer, else raise."""
    if type(value) is not int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(
                f"{name} must be an int, not {type(value).__name__}"
            )
        value = int(value)
    if not INT64_MIN <= value <= INT64_MAX:
        raise OverflowError(f"{name}={value} does not fit in a signed 64-bit integer")
    return value


def check_str(name: str, value: object) -> str:
    """Return ``value`` as an exact ``str``, else raise."""
    if type(value) is str:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    raise TypeError(f"{name} must be a str, not {type(value).__name__}")


def check_capacity(name: str, value: object) -> int:
    """Validate a history or buffer size (before Go's ``<= 0`` defaults apply)."""
    value = check_int(name, value)
    if value > MAX_CAPACITY:
        raise ValueError(f"{name}={value} is above the limit of {MAX_CAPACITY}")
    return value


def subscribe_options(
    buf_size: object, replay: object, since_seq: object, overflow: object
) -> tuple[int, int, int | None, Overflow]:
    """``subscribe()``'s options, checked: Go's default for a ``buf_size``
    of 0 or less, and the overflow policy's own constant (not the caller's
    object, which may be a str subclass)."""
    size = check_capacity("buf_size", buf_size)
    if size <= 0:
        size = DEFAULT_BUF_SIZE
    last = check_int("replay", replay)
    if last < 0:
        raise ValueError("replay must not be negative")
    since = None
    if since_seq is not None:
        since = check_int("since_seq", since_seq)
        if since < 0:
            raise ValueError("since_seq must not be negative")
        if last:
            raise ValueError("give replay or since_seq, not both")
    if overflow not in OVERFLOW_POLICIES:
        raise ValueError(f"overflow must be one of {OVERFLOW_POLICIES}, not {overflow!r}")
    return size, last, since, DROP_OLDEST if overflow == DROP_OLDEST else DROP_NEWEST


def time_to_us(value: object) -> int:
    """Seconds since the epoch (int or float) to whole microseconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"time must be a float or an int, not {type(value).__name__}")
    seconds = float(value)
    if not TIME_MIN_US / 1e6 <= seconds < (TIME_MAX_US + 1) / 1e6:
        # Also refuses NaN, for which every comparison is false.
        raise ValueError(f"time={value!r} is not a finite time in the years 1 to 9999")
    # floor(x + 0.5), not round(): the compiled core does the same double
    # arithmetic in C, so both implementations quantize every float alike.
    us = math.floor(seconds * 1e6 + 0.5)
    if us == GO_ZERO_TIME_US:
        raise ValueError(f"time={value!r} is Go's zero time, which stands for an unset time")
    return us


def construct(cls: type, kwargs: dict[str, object]) -> object:
    """``cls(**kwargs)``, for ``__reduce__``: pickle takes no keywords."""
    return cls(**kwargs)


def refuse_copy(obj: object) -> NoReturn:
    """``__reduce__`` of live state: a copy would share or lose it."""
    raise TypeError(f"{type(obj).__name__} is live state: it cannot be copied or pickled")


def entry_repr(entry: Any) -> str:
    """``OpsLogEntry(...)`` with the fields JSON would show, and ``seq``."""
    parts = []
    for name, _, default in ENTRY_FIELDS:
        value = getattr(entry, name)
        if name in ALWAYS_RENDERED or value != default:
            parts.append(f"{name}={value!r}")
    seq = entry.seq
    if seq:
        parts.append(f"seq={seq}")
    return f"OpsLogEntry({', '.join(parts)})"


def filter_repr(flt: object) -> str:
    """``OpsLogFilter(...)`` with the fields that are set."""
    parts = [
        f"{name}={getattr(flt, name)!r}"
        for name, _, default in FILTER_FIELDS
        if getattr(flt, name) != default
    ]
    return f"OpsLogFilter({', '.join(parts)})"


def entry_kwargs_from_dict(data: object) -> tuple[int, dict[str, object]]:
    """Split Go's JSON form of an entry into its time in microseconds and the
    other fields as constructor keywords. Keys Go would not write are
    ignored, as ``json.Unmarshal`` ignores them."""
    from ._gojson import parse_time

    if not isinstance(data, dict):
        raise TypeError(f"from_dict() needs a dict, not {type(data).__name__}")
    kwargs = {name: data[name] for name in ENTRY_FIELD_NAMES[1:] if name in data}
    raw_time = data.get("time", None)
    if raw_time is None:
        us = 0
    elif isinstance(raw_time, str):
        us = parse_time(raw_time)
        if us == GO_ZERO_TIME_US:
            us = 0
        elif not TIME_MIN_US <= us <= TIME_MAX_US:
            raise ValueError(f"time {raw_time!r} is outside the years 1 to 9999")
    else:
        raise TypeError(f"time must be an RFC 3339 string, not {type(raw_time).__name__}")
    return us, kwargs
