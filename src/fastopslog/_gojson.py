"""Go ``encoding/json`` compatibility: string escaping and RFC 3339 times.

The pure implementation renders entries with these functions; both
implementations parse times with :func:`parse_time`.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_US = timedelta(microseconds=1)

# json.dumps(ensure_ascii=False) already escapes like Go for '"', '\\' and
# the C0 controls (\b \f \n \r \t, else \u00XX in lower-case hex) and, like
# Go, leaves DEL and all other non-ASCII text alone. Go also escapes these
# for HTML and JavaScript safety, and writes each invalid code point (here: a
# lone surrogate) as the replacement character.
_GO_EXTRA = re.compile("[<>&\u2028\u2029\ud800-\udfff]")
_GO_EXTRA_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def _go_extra_escape(match: re.Match[str]) -> str:
    return _GO_EXTRA_ESCAPES.get(match.group(), "\\ufffd")


def quote(text: str) -> str:
    """``text`` as a JSON string literal, byte for byte as Go writes it."""
    quoted = json.dumps(text, ensure_ascii=False)
    return _GO_EXTRA.sub(_go_extra_escape, quoted)


def format_time(us: int) -> str:
    """Microseconds since the epoch as Go's RFC 3339 (nano) form in UTC."""
    seconds, fraction = divmod(us, 1_000_000)
    t = _EPOCH + timedelta(seconds=seconds)
    text = (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}"
        f"T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    )
    if fraction:
        text += "." + f"{fraction:06d}".rstrip("0")
    return text + "Z"


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:(Z)|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


def parse_time(text: str) -> int:
    """Microseconds since the epoch from an RFC 3339 time (digits past the
    sixth of the fraction are cut, as the JSON form never carries them)."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise ValueError(f"time {text!r} is not an RFC 3339 time")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    try:
        t = datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
    except ValueError as exc:
        raise ValueError(f"time {text!r}: {exc}") from None
    us = (t - _EPOCH) // _ONE_US + int((m.group(7) or "").ljust(6, "0")[:6])
    if m.group(8) is None:
        sign = 1 if m.group(9) == "+" else -1
        hours, minutes = int(m.group(10)), int(m.group(11))
        if hours > 23 or minutes > 59:
            raise ValueError(f"time {text!r} has an invalid UTC offset")
        us -= sign * (hours * 3600 + minutes * 60) * 1_000_000
    return us
