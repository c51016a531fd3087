# cython: language_level=3
"""The compiled core: the same API and behaviour as ``_opslog_py``.

Data layout
    History is a ring kept as two parallel arrays: the fields filters read
    (``_Key`` structs) and strong references to the immutable entries, so a
    filtered scan reads only keys and an unfiltered one only pointers. Live
    subscriptions are a growable array of ``_SubSlot`` structs: the filter as
    a ``_Spec`` beside a pointer to the subscription's bounded ring of entry
    references, allocated once at subscribe time. A publish copies no entry:
    it writes a pointer and takes a reference per delivery.

Locking
    The GIL serializes every critical section that keeps it from start to
    end, and they all do: none runs Python code, blocks, or allocates a
    Python object (which could start the garbage collector), and none drops
    a reference that could be the last (a weak reference callback, or a
    collected subscription unsubscribing, would run Python code). Such
    references, and readers to wake, are parked in ``_let_go`` and
    ``_to_wake`` and settled once the section is over.

    A section that gives up the GIL for a long scan (a snapshot of a long
    history: see BENCHMARKS.md for where that pays) first takes the
    broadcaster's ``cython.pymutex`` and raises ``_gil_free``; every other
    section starts with ``_wait_gil_free``, which, while the flag is up,
    waits for the mutex without the GIL. So the
    state read without the GIL is guarded by that mutex, and a section that
    keeps the GIL costs no lock operation at all. Taking the mutex with the
    GIL held releases the GIL while it waits, so the two cannot deadlock.

    Every ring index is taken on a C pointer, which Cython never bounds-
    or wrap-checks; the index arithmetic (head, count, wrap at cap) is what
    the test suite and the differential test against the pure
    implementation prove, and the sanitizer build (tools/sanitize.sh)
    checks each access.

    Because sections rely on the GIL, this module does not declare itself
    free-threading compatible; a free-threaded CPython keeps the GIL enabled
    while it is imported.
"""

cimport cython
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_CheckExact
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_CheckExact
from cpython.mem cimport PyMem_Calloc, PyMem_Free, PyMem_RawFree, PyMem_RawMalloc, PyMem_RawRealloc
from cpython.object cimport PyObject, PyObject_Hash
from cpython.unicode cimport (
    PyUnicode_CheckExact,
    PyUnicode_DATA,
    PyUnicode_DecodeUTF8,
    PyUnicode_GET_LENGTH,
    PyUnicode_KIND,
    PyUnicode_READ,
)
from cpython.list cimport PyList_New
from libc.math cimport floor
from libc.stdio cimport snprintf
from libc.stdint cimport int64_t
from libc.string cimport memcmp, memcpy
from posix.time cimport CLOCK_REALTIME, clock_gettime, timespec

import json
import os
import weakref
from queue import Empty

from . import _waiting
from ._common import (
    DEFAULT_BUF_SIZE,
    DEFAULT_HISTORY_CAP,
    DROP_NEWEST,
    DROP_OLDEST,
    GO_ZERO_TIME_US,
    TIME_MAX_US,
    TIME_MIN_US,
    OpsLogStats,
    SubscriptionClosed,
    check_capacity,
    check_int,
    check_str,
    construct,
    entry_kwargs_from_dict,
    entry_repr,
    filter_repr,
    refuse_copy,
    subscribe_options,
    time_to_us,
)

__all__ = ("OpsLogBroadcaster", "OpsLogEntry", "OpsLogFilter", "OpsLogSubscription")

cdef extern from "Python.h":
    # On raw pointers, so that no temporary reference is made: these are the
    # only places this module counts references by hand.
    void _incref "Py_INCREF"(PyObject*)
    void _decref "Py_DECREF"(PyObject*)
    # Steals the reference ``item`` stands for.
    void _list_steal "PyList_SET_ITEM"(object lst, Py_ssize_t i, PyObject* item)

cdef object _EMPTY = _waiting.EMPTY
cdef double _TIME_MIN_S = TIME_MIN_US / 1e6
cdef double _TIME_END_S = (TIME_MAX_US + 1) / 1e6

# A snapshot scans history without the GIL from this many entries on. Below
# it, giving up the GIL costs more than the scan: the GIL comes back only
# after another busy thread lets go of it. Publish never gives it up, as that
# wait would land on the request hot path. BENCHMARKS.md has the figures.
cdef Py_ssize_t NOGIL_MIN_HISTORY = 50_000


def _set_nogil_min_history(Py_ssize_t entries):
    """Set NOGIL_MIN_HISTORY and return the previous value: for the
    benchmark that chose it and the tests that reach both paths."""
    global NOGIL_MIN_HISTORY
    previous = NOGIL_MIN_HISTORY
    NOGIL_MIN_HISTORY = entries
    return previous


# ---------------------------------------------------------------------------
# Matching without the GIL

cdef struct _Model:
    # A str's identity for equality tests that need no GIL: its cached hash
    # decides fast, the code points confirm. ``data`` belongs to a str object
    # that whoever holds this struct keeps alive.
    Py_hash_t hash
    Py_ssize_t length      # 0: no model
    int kind
    const void* data

cdef struct _Key:
    # What filters read of an entry.
    int64_t status
    int64_t latency_ms
    int64_t account_id
    int64_t group_id
    _Model model

cdef struct _Spec:
    # A filter, as Go's ``matches`` reads it: a field <= 0 (or an empty
    # model) matches everything.
    int64_t min_status
    int64_t account_id
    int64_t group_id
    int64_t min_latency_ms
    _Model model
    bint everything


cdef inline bint _same_model(const _Model* a, const _Model* b) noexcept nogil:
    return (
        a.hash == b.hash
        and a.length == b.length
        and a.kind == b.kind
        and (a.data == b.data or memcmp(a.data, b.data, a.length * a.kind) == 0)
    )


cdef inline bint _matches(const _Spec* f, const _Key* e) noexcept nogil:
    if f.everything:
        return True
    if f.min_status > 0 and e.status < f.min_status:
        return False
    if f.model.length and not _same_model(&f.model, &e.model):
        return False
    if f.account_id > 0 and e.account_id != f.account_id:
        return False
    if f.group_id > 0 and e.group_id != f.group_id:
        return False
    if f.min_latency_ms > 0 and e.latency_ms < f.min_latency_ms:
        return False
    return True


cdef inline void _set_model(_Model* m, str text) noexcept:
    m.length = PyUnicode_GET_LENGTH(text)
    m.kind = PyUnicode_KIND(text)
    m.data = PyUnicode_DATA(text)
    # Hashing an exact str cannot fail, and its hash is cached in it: the
    # constructors compute it, so here it is only read.
    m.hash = PyObject_Hash(text) if m.length else 0


cdef inline void _set_key(_Key* k, OpsLogEntry e) noexcept:
    # Built when needed rather than kept in the entry: entries stay small,
    # and a long history of them stays in cache.
    k.status = e.status
    k.latency_ms = e.latency_ms
    k.account_id = e.account_id
    k.group_id = e.group_id
    _set_model(&k.model, e.model)


# ---------------------------------------------------------------------------
# Argument conversion: fast paths for exact types, the shared Python checks
# (and their messages) for everything else.

cdef inline int64_t _int64(str name, object value) except? -1:
    cdef int overflow = 0
    cdef long long result
    if PyLong_CheckExact(value):
        result = PyLong_AsLongLongAndOverflow(value, &overflow)
        if not overflow:
            return result
    return check_int(name, value)


cdef inline str _str(str name, object value):
    if PyUnicode_CheckExact(value):
        return <str>value
    return check_str(name, value)


cdef inline int64_t _time_us(object value) except? -1:
    cdef double seconds
    cdef int64_t us
    if PyFloat_CheckExact(value):
        seconds = PyFloat_AS_DOUBLE(value)
        # The same double arithmetic as the pure ``time_to_us``, which
        # raises the errors.
        if _TIME_MIN_S <= seconds < _TIME_END_S:
            us = <int64_t>floor(seconds * 1e6 + 0.5)
            if us != GO_ZERO_TIME_US:
                return us
    return time_to_us(value)


@cython.cdivision(True)
cdef inline int64_t _now_us() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <int64_t>ts.tv_sec * 1000000 + ts.tv_nsec // 1000


# ---------------------------------------------------------------------------
# Go-compatible JSON, rendered once per entry into a UTF-8 buffer.

cdef struct _Buf:
    char* data
    Py_ssize_t length
    Py_ssize_t cap

cdef const char* _HEX = b"0123456789abcdef"


cdef int _reserve(_Buf* b, Py_ssize_t extra) except -1:
    cdef Py_ssize_t cap = b.cap
    cdef char* grown
    if b.length + extra <= cap:
        return 0
    while cap < b.length + extra:
        cap = cap * 2 if cap else 256
    grown = <char*>PyMem_RawRealloc(b.data, cap)
    if grown == NULL:
        raise MemoryError()
    b.data = grown
    b.cap = cap
    return 0


cdef int _put(_Buf* b, const char* text, Py_ssize_t n) except -1:
    _reserve(b, n)
    memcpy(b.data + b.length, text, n)
    b.length += n
    return 0


cdef int _put_int(_Buf* b, int64_t value) except -1:
    cdef char digits[24]
    cdef int n = 0
    cdef unsigned long long magnitude = (
        <unsigned long long>value if value >= 0 else 0ULL - <unsigned long long>value
    )
    while True:
        digits[23 - n] = <char>(48 + magnitude % 10)
        n += 1
        magnitude //= 10
        if magnitude == 0:
            break
    if value < 0:
        digits[23 - n] = b'-'
        n += 1
    return _put(b, &digits[24 - n], n)


cdef int _put_string(_Buf* b, str text) except -1:
    """``text`` quoted as Go's encoder writes it: HTML characters, U+2028,
    U+2029 and C0 controls escaped, a lone surrogate as U+FFFD, the rest as
    raw UTF-8."""
    cdef Py_ssize_t i, n = PyUnicode_GET_LENGTH(text)
    cdef int kind = PyUnicode_KIND(text)
    cdef void* data = PyUnicode_DATA(text)
    cdef unsigned int c      # a code point, compared with ASCII codes
    cdef char* out
    # Worst case: six bytes (\u00XX) per code point, plus the quotes.
    _reserve(b, 6 * n + 2)
    out = b.data + b.length
    out[0] = b'"'
    out += 1
    for i in range(n):
        c = PyUnicode_READ(kind, data, i)
        if c < 0x80:
            # Safe as is: not a control, '"', '\\', '<', '>' or '&'.
            if c >= 0x20 and c != 0x22 and c != 0x5C and c != 0x3C and c != 0x3E and c != 0x26:
                out[0] = <char>c
                out += 1
                continue
            out[0] = b'\\'
            if c == 0x22 or c == 0x5C:
                out[1] = <char>c
                out += 2
            elif c == 0x0A:
                out[1] = b'n'
                out += 2
            elif c == 0x0D:
                out[1] = b'r'
                out += 2
            elif c == 0x09:
                out[1] = b't'
                out += 2
            elif c == 0x08:
                out[1] = b'b'
                out += 2
            elif c == 0x0C:
                out[1] = b'f'
                out += 2
            else:
                out[1] = b'u'
                out[2] = b'0'
                out[3] = b'0'
                out[4] = _HEX[c >> 4]
                out[5] = _HEX[c & 0xF]
                out += 6
        elif c < 0x800:
            out[0] = <char>(0xC0 | (c >> 6))
            out[1] = <char>(0x80 | (c & 0x3F))
            out += 2
        elif c == 0x2028 or c == 0x2029:
            memcpy(out, b"\\u202", 5)
            out[5] = _HEX[c & 0xF]
            out += 6
        elif 0xD800 <= c <= 0xDFFF:
            memcpy(out, b"\\ufffd", 6)
            out += 6
        elif c < 0x10000:
            out[0] = <char>(0xE0 | (c >> 12))
            out[1] = <char>(0x80 | ((c >> 6) & 0x3F))
            out[2] = <char>(0x80 | (c & 0x3F))
            out += 3
        else:
            out[0] = <char>(0xF0 | (c >> 18))
            out[1] = <char>(0x80 | ((c >> 12) & 0x3F))
            out[2] = <char>(0x80 | ((c >> 6) & 0x3F))
            out[3] = <char>(0x80 | (c & 0x3F))
            out += 4
    out[0] = b'"'
    out += 1
    b.length = out - b.data
    return 0


@cython.cdivision(False)
cdef int _put_time(_Buf* b, int64_t us) except -1:
    """RFC 3339 in UTC with Go's trimmed fraction. The date comes from days
    since the epoch by Howard Hinnant's ``civil_from_days``; ``//`` and
    ``%`` floor here, as in Python, so times before 1970 work."""
    cdef int64_t seconds = us // 1000000
    cdef int64_t fraction = us % 1000000
    cdef int64_t days = seconds // 86400
    cdef int64_t in_day = seconds % 86400
    cdef int64_t z = days + 719468
    cdef int64_t era = z // 146097
    cdef int64_t doe = z - era * 146097
    cdef int64_t yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    cdef int64_t doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    cdef int64_t mp = (5 * doy + 2) // 153
    cdef int64_t day = doy - (153 * mp + 2) // 5 + 1
    cdef int64_t month = mp + 3 if mp < 10 else mp - 9
    cdef int64_t year = yoe + era * 400 + (1 if month <= 2 else 0)
    cdef char text[40]
    cdef int n = snprintf(
        text, sizeof(text), "%04d-%02d-%02dT%02d:%02d:%02d",
        <int>year, <int>month, <int>day,
        <int>(in_day // 3600), <int>(in_day // 60 % 60), <int>(in_day % 60),
    )
    if fraction:
        n += snprintf(text + n, sizeof(text) - n, ".%06d", <int>fraction)
        while text[n - 1] == b'0':
            n -= 1
    text[n] = b'Z'
    return _put(b, text, n + 1)


cdef int _put_field_str(_Buf* b, const char* key, str value) except -1:
    if PyUnicode_GET_LENGTH(value):
        _put(b, key, len(key))
        _put_string(b, value)
    return 0


cdef int _put_field_int(_Buf* b, const char* key, int64_t value) except -1:
    if value:
        _put(b, key, len(key))
        _put_int(b, value)
    return 0


# ---------------------------------------------------------------------------
# Entries and filters

@cython.final
@cython.no_gc  # only str fields: an entry can never be part of a cycle
cdef class OpsLogEntry:
    """One request's ops log event. Immutable; sealed by its first publish."""

    cdef readonly str method, path, model, error_message, error_detail
    cdef readonly int64_t status, latency_ms, account_id, group_id
    cdef readonly int64_t api_key_id, user_id, turns, prompt_chars, upstream_status
    cdef readonly bint stream
    cdef int64_t _us
    cdef int64_t _seq
    cdef str _json
    cdef bint _ready
    cdef object __weakref__

    def __cinit__(self):
        # An entry made by __new__ alone is the default entry, not one with
        # NULL strings for C code to trip over.
        self.method = self.path = self.model = self.error_message = self.error_detail = ""

    def __init__(
        self,
        *,
        time=0.0,
        method="",
        path="",
        status=0,
        latency_ms=0,
        model="",
        stream=False,
        account_id=0,
        group_id=0,
        api_key_id=0,
        user_id=0,
        turns=0,
        prompt_chars=0,
        error_message="",
        error_detail="",
        upstream_status=0,
    ):
        if self._ready or self._seq:
            raise TypeError("OpsLogEntry is initialised once")
        self._us = _time_us(time)
        self.method = _str("method", method)
        self.path = _str("path", path)
        self.model = _str("model", model)
        self.error_message = _str("error_message", error_message)
        self.error_detail = _str("error_detail", error_detail)
        self.status = _int64("status", status)
        self.latency_ms = _int64("latency_ms", latency_ms)
        self.account_id = _int64("account_id", account_id)
        self.group_id = _int64("group_id", group_id)
        self.api_key_id = _int64("api_key_id", api_key_id)
        self.user_id = _int64("user_id", user_id)
        self.turns = _int64("turns", turns)
        self.prompt_chars = _int64("prompt_chars", prompt_chars)
        self.upstream_status = _int64("upstream_status", upstream_status)
        if stream is not True and stream is not False:
            raise TypeError(f"stream must be a bool, not {type(stream).__name__}")
        self.stream = stream
        PyObject_Hash(self.model)
        self._ready = True

    @property
    def time(self):
        """Seconds since the epoch, to the microsecond; 0.0 until stamped."""
        return self._us / 1e6

    @property
    def seq(self):
        """Publish order within the broadcaster that sealed it; 0 if never
        published."""
        return self._seq

    def __setattr__(self, name, value):
        raise AttributeError(f"OpsLogEntry is immutable: use replace({name}=...)")

    def __delattr__(self, name):
        raise AttributeError("OpsLogEntry is immutable")

    def _fields(self):
        return {
            "method": self.method, "path": self.path, "status": self.status,
            "latency_ms": self.latency_ms, "model": self.model,
            "stream": self.stream, "account_id": self.account_id,
            "group_id": self.group_id, "api_key_id": self.api_key_id,
            "user_id": self.user_id, "turns": self.turns,
            "prompt_chars": self.prompt_chars,
            "error_message": self.error_message,
            "error_detail": self.error_detail,
            "upstream_status": self.upstream_status,
        }

    def _value(self):
        return (
            self._us, self.method, self.path, self.status, self.latency_ms,
            self.model, self.stream, self.account_id, self.group_id,
            self.api_key_id, self.user_id, self.turns, self.prompt_chars,
            self.error_message, self.error_detail, self.upstream_status,
        )

    def __eq__(self, other):
        # ``seq`` is where an entry was published, not what it says.
        if type(other) is not OpsLogEntry:
            return NotImplemented
        return self._value() == (<OpsLogEntry>other)._value()

    def __hash__(self):
        return hash(self._value())

    def __repr__(self):
        return entry_repr(self)

    def __reduce__(self):
        # A copy is a new, unpublished entry with the same value.
        return (OpsLogEntry._build, (self._us, self._fields()))

    @classmethod
    def _build(cls, int64_t us, dict fields):
        cdef OpsLogEntry entry = cls(**fields)
        entry._us = us
        return entry

    def replace(self, **changes):
        """A new, unpublished entry with ``changes`` applied."""
        us = _time_us(changes.pop("time")) if "time" in changes else self._us
        fields = self._fields()
        for name in changes:
            if name not in fields:
                raise TypeError(f"replace() got an unexpected keyword argument {name!r}")
        fields.update(changes)
        return OpsLogEntry._build(us, fields)

    @classmethod
    def from_dict(cls, data):
        """Read back what :meth:`to_dict` (or Go) writes."""
        us, fields = entry_kwargs_from_dict(data)
        return OpsLogEntry._build(us, fields)

    def to_dict(self):
        """What ``json.loads(self.to_json())`` gives: Go's keys, order and
        omissions, ``time`` as an RFC 3339 string."""
        return json.loads(self.to_json())

    def to_json(self):
        """The entry as Go's ``json.Marshal`` writes it; rendered once."""
        if self._json is None:
            self._json = self._render()
        return self._json

    cdef str _render(self):
        cdef _Buf b
        b.data = NULL
        b.length = 0
        b.cap = 0
        try:
            _put(&b, b'{"time":"', 9)
            # An unset time renders as Go's zero time, as Go renders it.
            _put_time(&b, self._us if self._us else GO_ZERO_TIME_US)
            _put(&b, b'"', 1)
            _put_field_str(&b, b',"method":', self.method)
            _put_field_str(&b, b',"path":', self.path)
            _put(&b, b',"status":', 10)
            _put_int(&b, self.status)
            _put(&b, b',"latency_ms":', 14)
            _put_int(&b, self.latency_ms)
            _put_field_str(&b, b',"model":', self.model)
            if self.stream:
                _put(&b, b',"stream":true', 14)
            _put_field_int(&b, b',"account_id":', self.account_id)
            _put_field_int(&b, b',"group_id":', self.group_id)
            _put_field_int(&b, b',"api_key_id":', self.api_key_id)
            _put_field_int(&b, b',"user_id":', self.user_id)
            _put_field_int(&b, b',"turns":', self.turns)
            _put_field_int(&b, b',"prompt_chars":', self.prompt_chars)
            _put_field_str(&b, b',"error_message":', self.error_message)
            _put_field_str(&b, b',"error_detail":', self.error_detail)
            _put_field_int(&b, b',"upstream_status":', self.upstream_status)
            _put(&b, b'}', 1)
            return PyUnicode_DecodeUTF8(b.data, b.length, NULL)
        finally:
            PyMem_RawFree(b.data)

    cdef OpsLogEntry _copy(self):
        cdef OpsLogEntry copy = OpsLogEntry.__new__(OpsLogEntry)
        copy.method = self.method
        copy.path = self.path
        copy.model = self.model
        copy.error_message = self.error_message
        copy.error_detail = self.error_detail
        copy.status = self.status
        copy.latency_ms = self.latency_ms
        copy.account_id = self.account_id
        copy.group_id = self.group_id
        copy.api_key_id = self.api_key_id
        copy.user_id = self.user_id
        copy.turns = self.turns
        copy.prompt_chars = self.prompt_chars
        copy.upstream_status = self.upstream_status
        copy.stream = self.stream
        copy._us = self._us
        copy._json = self._json
        copy._ready = True
        return copy


@cython.final
@cython.no_gc  # only a str field: a filter can never be part of a cycle
cdef class OpsLogFilter:
    """Which entries a subscriber wants. Zero or empty fields match
    everything (so do negative ones, as in Go); set fields are AND-ed."""

    cdef readonly int64_t min_status, account_id, group_id, min_latency_ms
    cdef readonly str model
    cdef _Spec _spec
    cdef bint _ready

    def __cinit__(self):
        # A filter made by __new__ alone matches everything.
        self.model = ""
        self._spec.everything = True

    def __init__(self, *, min_status=0, model="", account_id=0, group_id=0, min_latency_ms=0):
        if self._ready:
            raise TypeError("OpsLogFilter is initialised once")
        self.min_status = check_int("min_status", min_status)
        self.model = _str("model", model)
        self.account_id = check_int("account_id", account_id)
        self.group_id = check_int("group_id", group_id)
        self.min_latency_ms = check_int("min_latency_ms", min_latency_ms)
        self._spec.min_status = self.min_status
        self._spec.account_id = self.account_id
        self._spec.group_id = self.group_id
        self._spec.min_latency_ms = self.min_latency_ms
        _set_model(&self._spec.model, self.model)
        self._spec.everything = (
            self.min_status <= 0 and self._spec.model.length == 0 and self.account_id <= 0
            and self.group_id <= 0 and self.min_latency_ms <= 0
        )
        self._ready = True

    def __setattr__(self, name, value):
        raise AttributeError("OpsLogFilter is immutable")

    def __delattr__(self, name):
        raise AttributeError("OpsLogFilter is immutable")

    def _value(self):
        return (self.min_status, self.model, self.account_id, self.group_id, self.min_latency_ms)

    def __eq__(self, other):
        if type(other) is not OpsLogFilter:
            return NotImplemented
        return self._value() == (<OpsLogFilter>other)._value()

    def __hash__(self):
        return hash(self._value())

    def __repr__(self):
        return filter_repr(self)

    def __reduce__(self):
        return (construct, (OpsLogFilter, dict(
            min_status=self.min_status, model=self.model, account_id=self.account_id,
            group_id=self.group_id, min_latency_ms=self.min_latency_ms,
        )))

    def matches(self, entry):
        """Whether ``entry`` passes, exactly as Go's ``matches``."""
        if type(entry) is not OpsLogEntry:
            raise TypeError(f"matches() needs an OpsLogEntry, not {type(entry).__name__}")
        cdef _Key key
        _set_key(&key, <OpsLogEntry>entry)
        return _matches(&self._spec, &key)


cdef OpsLogFilter _MATCH_ALL = OpsLogFilter()


# ---------------------------------------------------------------------------
# Subscriptions

cdef struct _Ring:
    # A subscription's bounded buffer of owned entry references; it lives
    # inside the subscription object, so its address is stable.
    PyObject** items
    Py_ssize_t cap
    Py_ssize_t head        # index of the oldest entry
    Py_ssize_t count
    int64_t dropped
    bint drop_oldest
    bint closed
    bint parked            # a reader registered a waker since the last wake
    PyObject* wakers       # the subscription's list of wakers (borrowed)

cdef struct _SubSlot:
    _Spec spec
    _Ring* ring
    PyObject* owner        # the OpsLogSubscription (borrowed): its dealloc removes this slot

cdef struct _PtrVec:
    PyObject** items
    Py_ssize_t length
    Py_ssize_t cap


cdef bint _vec_push(_PtrVec* v, PyObject* p) noexcept nogil:
    """Append without the GIL; False when memory is exhausted."""
    cdef Py_ssize_t cap
    cdef PyObject** grown
    if v.length == v.cap:
        cap = v.cap * 2 if v.cap else 16
        grown = <PyObject**>PyMem_RawRealloc(v.items, cap * sizeof(PyObject*))
        if grown == NULL:
            return False
        v.items = grown
        v.cap = cap
    v.items[v.length] = p
    v.length += 1
    return True


cdef inline PyObject* _ring_pop(_Ring* r) noexcept nogil:
    """The oldest entry, its reference now the caller's. ``r.count > 0``."""
    cdef PyObject* entry = r.items[r.head]
    r.items[r.head] = NULL
    r.head += 1
    if r.head == r.cap:
        r.head = 0
    r.count -= 1
    return entry


cdef void _wake_all(list wakers) noexcept:
    # Taking the whole list and emptying it is atomic under the GIL: no
    # Python code runs between the two steps.
    cdef list woken = wakers[:]
    del wakers[:]
    _waiting.wake(woken)


@cython.final
@cython.no_gc_clear
cdef class OpsLogSubscription:
    """A live, bounded, filtered feed of entries. Read it with ``get``,
    ``get_nowait``, ``drain``, iteration or ``await aget()``; close it with
    ``unsubscribe()`` or a ``with`` block. Garbage collection unsubscribes a
    subscription that was dropped without it."""

    # no_gc_clear: __dealloc__ needs the broadcaster to unsubscribe, even
    # when the collector breaks a cycle through this object.
    cdef OpsLogBroadcaster _broadcaster
    cdef readonly OpsLogFilter filter
    cdef readonly str overflow
    cdef readonly bint history_gap
    cdef list _wakers
    cdef _Ring _ring
    cdef Py_ssize_t _index     # in the broadcaster's array; -1 when not live
    cdef object __weakref__

    def __cinit__(self, OpsLogBroadcaster broadcaster not None):
        # Only subscribe() names the broadcaster, so every subscription has
        # one; until subscribe() registers it, it is closed.
        self._broadcaster = broadcaster
        self._wakers = []
        self._index = -1
        self._ring.closed = True

    def __init__(self, *args):
        raise TypeError("subscriptions come from OpsLogBroadcaster.subscribe()")

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self._broadcaster is not None:  # None only if __cinit__ failed
            self._broadcaster._remove(self)
        # Nobody else can reach the ring now: its references are ours to drop.
        if self._ring.items != NULL:
            for i in range(self._ring.count):
                _decref(self._ring.items[(self._ring.head + i) % self._ring.cap])
            PyMem_Free(self._ring.items)

    def __reduce__(self):
        refuse_copy(self)

    @property
    def buf_size(self):
        return self._ring.cap

    @property
    def closed(self):
        self._broadcaster._wait_gil_free()
        return self._ring.closed

    @property
    def dropped(self):
        """Entries this subscription matched but missed for a full buffer."""
        self._broadcaster._wait_gil_free()
        return self._ring.dropped

    def __len__(self):
        self._broadcaster._wait_gil_free()
        return self._ring.count

    def __repr__(self):
        return (
            f"<OpsLogSubscription {self.filter!r} buf_size={self._ring.cap}"
            f" buffered={len(self)} dropped={self.dropped} closed={self.closed}>"
        )

    def unsubscribe(self):
        """Stop delivery; idempotent, safe from any thread. Buffered entries
        stay readable; readers waiting on an empty buffer are released."""
        self._broadcaster._remove(self)
        _wake_all(self._wakers)

    def _pop_or_park(self, waker):
        cdef PyObject* entry = NULL
        cdef bint closed = False
        cdef _Ring* r = &self._ring
        self._broadcaster._wait_gil_free()
        if r.count:
            entry = _ring_pop(r)
        elif r.closed:
            closed = True
        elif waker is not None:
            # list.append only reallocates memory: no Python code runs and
            # the GIL is kept, so the check and the registration are one step.
            self._wakers.append(waker)
            r.parked = True
        if closed:
            raise SubscriptionClosed("the subscription is closed and empty")
        if entry == NULL:
            return _EMPTY
        # <object> takes a new reference; drop the one the ring gave us.
        result = <object>entry
        _decref(entry)
        return result

    def _unpark(self, waker):
        try:
            self._wakers.remove(waker)
        except ValueError:
            pass

    def get(self, timeout=None):
        """The next entry, waiting for one (``queue.Empty`` after
        ``timeout`` seconds; ``SubscriptionClosed`` once closed and empty)."""
        return _waiting.get(self, timeout)

    def get_nowait(self):
        entry = self._pop_or_park(None)
        if entry is _EMPTY:
            raise Empty
        return entry

    def drain(self, max_items=None):
        """Everything buffered (at most ``max_items``), without waiting."""
        cdef Py_ssize_t want = -1, n = 0, i
        cdef PyObject** taken = NULL
        cdef bint no_memory = False
        cdef _Ring* r = &self._ring
        cdef list items
        if max_items is not None:
            want = check_int("max_items", max_items)
            if want < 0:
                raise ValueError("max_items must not be negative")
        # One critical section for the whole batch; the list is built after.
        self._broadcaster._wait_gil_free()
        n = r.count if want < 0 or want > r.count else want
        if n:
            taken = <PyObject**>PyMem_RawMalloc(n * sizeof(PyObject*))
            if taken == NULL:
                no_memory = True
                n = 0
        for i in range(n):
            taken[i] = _ring_pop(r)
        if no_memory:
            raise MemoryError()
        try:
            items = PyList_New(n)
        except BaseException:
            for i in range(n):
                _decref(taken[i])
            PyMem_RawFree(taken)
            raise
        for i in range(n):
            # Hands over the reference the ring gave us.
            _list_steal(items, i, taken[i])
        PyMem_RawFree(taken)
        return items

    async def aget(self):
        """Await the next entry (``SubscriptionClosed`` once closed and empty)."""
        return await _waiting.aget(self)

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return _waiting.get(self, None)
        except SubscriptionClosed:
            raise StopIteration from None

    def __aiter__(self):
        return self

    async def __anext__(self):
        try:
            return await _waiting.aget(self)
        except SubscriptionClosed:
            raise StopAsyncIteration from None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.unsubscribe()

    async def __aenter__(self):
        return self

    async def __aexit__(self, exc_type, exc, tb):
        self.unsubscribe()


# ---------------------------------------------------------------------------
# The broadcaster

@cython.final
cdef class OpsLogBroadcaster:
    """Fans each published entry out to matching subscriptions and keeps the
    last ``history_cap`` entries. ``publish`` never blocks on a subscriber."""

    cdef cython.pymutex _lock          # held by a section working without the GIL
    cdef bint _gil_free               # ... and raised while it does
    # History: slot i holds an owned reference (NULL while empty) and its
    # key. Seqs need no array: the newest entry has seq _seq, the one before
    # it _seq - 1, and so on.
    cdef PyObject** _history
    cdef _Key* _history_keys
    cdef Py_ssize_t _history_cap
    cdef Py_ssize_t _history_head     # the slot the next publish writes
    cdef Py_ssize_t _history_len
    cdef int64_t _seq                 # also the number of publish calls
    cdef int64_t _dropped
    cdef _SubSlot* _subs
    cdef Py_ssize_t _n_subs
    cdef Py_ssize_t _subs_cap
    cdef _PtrVec _let_go              # references to drop after the critical section
    cdef _PtrVec _to_wake             # waker lists (owned) to wake after it
    cdef bint _ready
    cdef object __weakref__

    def __init__(self, history_cap=DEFAULT_HISTORY_CAP):
        cdef Py_ssize_t cap = max(0, check_capacity("history_cap", history_cap))
        if self._ready:
            raise TypeError("OpsLogBroadcaster is initialised once")
        if cap:
            self._history = <PyObject**>PyMem_Calloc(cap, sizeof(PyObject*))
            self._history_keys = <_Key*>PyMem_Calloc(cap, sizeof(_Key))
            if self._history == NULL or self._history_keys == NULL:
                # __dealloc__ frees whichever was allocated.
                raise MemoryError()
        self._history_cap = cap
        self._ready = True
        _BROADCASTERS.add(self)

    def __dealloc__(self):
        cdef Py_ssize_t i
        # Subscriptions hold their broadcaster, so none is left here.
        if self._history != NULL:
            for i in range(self._history_cap):
                if self._history[i] != NULL:
                    _decref(self._history[i])
        PyMem_Free(self._history)
        PyMem_Free(self._history_keys)
        PyMem_RawFree(self._subs)  # grown by PyMem_RawRealloc
        self._settle()

    cdef inline void _wait_gil_free(self) noexcept:
        """Start a critical section that keeps the GIL: wait out a section
        that works without it."""
        if self._gil_free:
            # Blocks without the GIL; the GIL-free section lowers the flag
            # before it releases the mutex, and no other can start while
            # this thread keeps the GIL.
            self._lock.acquire()
            self._lock.release()

    cdef inline void _enter_gil_free(self) noexcept:
        """Start a critical section that will give up the GIL."""
        self._lock.acquire()
        self._gil_free = True

    cdef inline void _exit_gil_free(self) noexcept:
        self._gil_free = False
        self._lock.release()

    def __reduce__(self):
        refuse_copy(self)

    @property
    def history_cap(self):
        return self._history_cap

    def __repr__(self):
        published, dropped, subscribers = self.stats()
        return (
            f"<OpsLogBroadcaster history_cap={self._history_cap} published={published}"
            f" dropped={dropped} subscribers={subscribers}>"
        )

    def publish(self, entry):
        """Seal ``entry``, keep it in history and offer it to every matching
        subscription. Never blocks on, and never fails because of, one."""
        cdef OpsLogEntry e
        cdef PyObject* evicted = NULL
        cdef Py_ssize_t delivered, wake_from, i
        cdef _Key key
        if type(entry) is not OpsLogEntry:
            raise TypeError(f"publish() needs an OpsLogEntry, not {type(entry).__name__}")
        e = <OpsLogEntry>entry
        while True:
            if e._seq:
                # Sealed by an earlier publish: publish a copy, made before
                # the critical section, where nothing may allocate.
                e = e._copy()
            self._wait_gil_free()
            # Waiting gave up the GIL, so another thread may have sealed
            # ``e`` meanwhile; from this check to the seal below the GIL is
            # kept, so no one can.
            if not e._seq:
                break
        self._seq += 1
        e._seq = self._seq
        if not e._us:
            e._us = _now_us()
            # The dropped rendering (of time 0) is a str: freeing it runs no
            # Python code, so it is safe here.
            e._json = None
        _set_key(&key, e)
        if self._history_cap:
            evicted = self._history[self._history_head]
            _incref(<PyObject*>e)
            self._history[self._history_head] = <PyObject*>e
            self._history_keys[self._history_head] = key
            self._history_head += 1
            if self._history_head == self._history_cap:
                self._history_head = 0
            if self._history_len < self._history_cap:
                self._history_len += 1
        if self._n_subs:
            wake_from = self._to_wake.length
            delivered = self._fan_out(<PyObject*>e, &key)
            # One reference per ring that now holds the entry, one per waker
            # list parked for waking; both owned until settled or read.
            for i in range(delivered):
                _incref(<PyObject*>e)
            for i in range(wake_from, self._to_wake.length):
                _incref(self._to_wake.items[i])
        if evicted != NULL:
            _decref(evicted)
        if self._let_go.length or self._to_wake.length:
            self._settle()

    cdef Py_ssize_t _fan_out(self, PyObject* entry, const _Key* key) noexcept nogil:
        """Offer ``entry`` to every matching ring; the number of rings that
        took it. ``nogil`` proves it runs no Python code; references are
        the caller's to take."""
        cdef Py_ssize_t i, at, delivered = 0
        cdef int64_t dropped = 0
        cdef _SubSlot* s
        cdef _Ring* r
        for i in range(self._n_subs):
            s = &self._subs[i]
            if not _matches(&s.spec, key):
                continue
            r = s.ring
            if r.count == r.cap:
                dropped += 1
                r.dropped += 1
                if not r.drop_oldest or not _vec_push(&self._let_go, r.items[r.head]):
                    continue
                # The oldest makes room: its reference is parked in _let_go.
                r.items[r.head] = entry
                r.head += 1
                if r.head == r.cap:
                    r.head = 0
            else:
                at = r.head + r.count
                if at >= r.cap:
                    at -= r.cap
                r.items[at] = entry
                r.count += 1
            delivered += 1
            if r.parked and _vec_push(&self._to_wake, r.wakers):
                r.parked = False
        self._dropped += dropped
        return delivered

    cdef void _settle(self) noexcept:
        """Drop parked references and wake parked readers, outside any
        critical section. Any thread may settle what another parked: each
        item is taken once."""
        cdef _PtrVec let_go, to_wake
        cdef Py_ssize_t i
        self._wait_gil_free()
        let_go = self._let_go
        to_wake = self._to_wake
        self._let_go.items = NULL
        self._let_go.length = self._let_go.cap = 0
        self._to_wake.items = NULL
        self._to_wake.length = self._to_wake.cap = 0
        for i in range(to_wake.length):
            _wake_all(<list>to_wake.items[i])
            _decref(to_wake.items[i])
        for i in range(let_go.length):
            _decref(let_go.items[i])
        PyMem_RawFree(to_wake.items)
        PyMem_RawFree(let_go.items)

    def subscribe(
        self,
        filter=None,
        buf_size=DEFAULT_BUF_SIZE,
        *,
        replay=0,
        since_seq=None,
        overflow=DROP_NEWEST,
    ):
        """A live subscription. ``replay=N`` primes it with the last N
        matching history entries, ``since_seq=S`` with every matching one
        after S; either way atomically with going live."""
        cdef OpsLogFilter flt = _MATCH_ALL if filter is None else filter if type(filter) is OpsLogFilter else None
        cdef Py_ssize_t cap
        cdef int64_t want_replay, since = -1
        cdef OpsLogSubscription sub
        if flt is None:
            raise TypeError(f"filter must be an OpsLogFilter or None, not {type(filter).__name__}")
        cap, want_replay, since_seq, overflow = subscribe_options(buf_size, replay, since_seq, overflow)
        if since_seq is not None:
            since = since_seq
        sub = OpsLogSubscription.__new__(OpsLogSubscription, self)
        sub.filter = flt
        sub.overflow = overflow
        sub._ring.items = <PyObject**>PyMem_Calloc(cap, sizeof(PyObject*))
        if sub._ring.items == NULL:
            raise MemoryError()
        sub._ring.cap = cap
        sub._ring.drop_oldest = overflow == DROP_OLDEST
        sub._ring.wakers = <PyObject*>sub._wakers
        self._wait_gil_free()
        if self._n_subs == self._subs_cap and not self._grow_subs():
            raise MemoryError()  # before anything changed
        if want_replay or since >= 0:
            sub.history_gap = self._prime(sub, want_replay, since)
        sub._ring.closed = False
        sub._index = self._n_subs
        self._subs[self._n_subs].spec = flt._spec
        self._subs[self._n_subs].ring = &sub._ring
        self._subs[self._n_subs].owner = <PyObject*>sub
        self._n_subs += 1
        return sub

    cdef bint _grow_subs(self) noexcept:
        cdef Py_ssize_t cap = self._subs_cap * 2 + 8
        cdef _SubSlot* grown = <_SubSlot*>PyMem_RawRealloc(self._subs, cap * sizeof(_SubSlot))
        if grown == NULL:
            return False
        self._subs = grown
        self._subs_cap = cap
        return True

    cdef bint _prime(self, OpsLogSubscription sub, int64_t replay, int64_t since):
        """Fill ``sub`` from history (newest ``buf_size`` at most); whether
        entries after ``since`` may be missing. Runs in subscribe's
        critical section."""
        cdef _Ring* r = &sub._ring
        cdef const _Spec* spec = &sub.filter._spec
        cdef Py_ssize_t want = r.cap if since >= 0 else min(replay, r.cap)
        cdef Py_ssize_t i, idx, picked = 0
        cdef bint gap = False
        # Newest first (the i-th newest has seq _seq - i), into the ring
        # from its far end, so that it ends up oldest to newest starting at
        # index cap - picked.
        for i in range(self._history_len):
            if since >= 0 and self._seq - i <= since:
                break
            idx = self._history_head - 1 - i
            if idx < 0:
                idx += self._history_cap
            if _matches(spec, &self._history_keys[idx]):
                if picked == want:
                    gap = since >= 0
                    break
                picked += 1
                _incref(self._history[idx])
                r.items[r.cap - picked] = self._history[idx]
        r.count = picked
        r.head = (r.cap - picked) % r.cap
        if since < 0:
            return False
        # History reaches back to seq _seq - _history_len + 1; entries after
        # ``since`` are missing if it starts later than since + 1 (written
        # without the + 1, which would overflow for since = 2**63 - 1), or
        # if ``since`` was never published here.
        return gap or since < self._seq - self._history_len or since > self._seq

    cdef void _remove(self, OpsLogSubscription sub) noexcept:
        """Take ``sub`` out of fan-out (once) and mark it closed."""
        cdef Py_ssize_t i, last
        self._wait_gil_free()
        if sub._ring.closed:
            return
        sub._ring.closed = True
        sub._ring.parked = False
        i = sub._index
        last = self._n_subs - 1
        if i != last:
            # Fill the hole with the last slot and tell its owner; the cast
            # of a borrowed pointer takes and drops a reference to a live
            # object, which frees nothing.
            self._subs[i] = self._subs[last]
            (<OpsLogSubscription>self._subs[i].owner)._index = i
        self._n_subs = last
        sub._index = -1

    def snapshot(self, filter=None, max_entries=0):
        """History oldest to newest, filtered, then the last ``max_entries``
        when that is positive."""
        cdef OpsLogFilter flt = _MATCH_ALL if filter is None else filter if type(filter) is OpsLogFilter else None
        cdef int64_t limit
        if flt is None:
            raise TypeError(f"filter must be an OpsLogFilter or None, not {type(filter).__name__}")
        limit = check_int("max_entries", max_entries)
        if flt._spec.everything:
            return self._snapshot_all(limit)
        return self._snapshot_filtered(&flt._spec, limit)

    cdef inline Py_ssize_t _last(self, int64_t limit) noexcept:
        return limit if 0 < limit < self._history_len else self._history_len

    cdef list _snapshot_all(self, int64_t limit):
        """The last entries straight into a list made beforehand, which is
        the one allocation a snapshot needs."""
        cdef Py_ssize_t n, i, idx
        cdef PyObject* entry
        cdef list result
        while True:
            n = self._last(limit)
            result = PyList_New(n)  # its items are NULL until set below
            self._wait_gil_free()
            # Waiting may have given up the GIL and let history grow; if
            # so, the list is the wrong size: drop it (NULL items free
            # cleanly) and make another.
            if self._last(limit) == n:
                break
        idx = self._history_head - n
        if idx < 0:
            idx += self._history_cap
        for i in range(n):
            entry = self._history[idx]
            _incref(entry)
            _list_steal(result, i, entry)
            idx += 1
            if idx == self._history_cap:
                idx = 0
        return result

    cdef list _snapshot_filtered(self, const _Spec* spec, int64_t limit):
        cdef Py_ssize_t n = 0, first = 0, i
        cdef PyObject** picked = NULL
        cdef bint no_memory = False
        cdef bint gil_free = self._history_len >= NOGIL_MIN_HISTORY
        cdef list result
        if gil_free:
            self._enter_gil_free()
        else:
            self._wait_gil_free()
        if self._history_len:
            picked = <PyObject**>PyMem_RawMalloc(self._history_len * sizeof(PyObject*))
            no_memory = picked == NULL
        if picked != NULL:
            if gil_free:
                with nogil:
                    # Safe without the GIL: reads history arrays _lock now
                    # guards; references are taken below, with the GIL.
                    first = self._pick(spec, limit, picked)
            else:
                first = self._pick(spec, limit, picked)
            n = self._history_len - first
            for i in range(first, self._history_len):
                _incref(picked[i])
        if gil_free:
            self._exit_gil_free()
        if no_memory:
            raise MemoryError()
        try:
            result = PyList_New(n)
        except BaseException:
            for i in range(n):
                _decref(picked[first + i])
            PyMem_RawFree(picked)
            raise
        for i in range(n):
            # Hands over the reference taken above.
            _list_steal(result, i, picked[first + i])
        PyMem_RawFree(picked)
        return result

    cdef Py_ssize_t _pick(self, const _Spec* spec, int64_t limit, PyObject** out) noexcept nogil:
        """Put the matching history entries (the newest ``limit`` when that
        is positive) oldest first at the end of ``out``, which has room for
        the whole history; return where they start. Runs in a critical
        section, with or without the GIL."""
        cdef Py_ssize_t i, idx, at = self._history_len
        # Newest first, so that a limit can stop the scan early.
        for i in range(self._history_len):
            idx = self._history_head - 1 - i
            if idx < 0:
                idx += self._history_cap
            if _matches(spec, &self._history_keys[idx]):
                at -= 1
                out[at] = self._history[idx]
                if self._history_len - at == limit:
                    break
        return at

    def stats(self):
        cdef int64_t published, dropped
        cdef Py_ssize_t subscribers
        self._wait_gil_free()
        published = self._seq
        dropped = self._dropped
        subscribers = self._n_subs
        return OpsLogStats(published, dropped, subscribers)


# ---------------------------------------------------------------------------
# Fork (gunicorn --preload): the child must not inherit a broadcaster whose
# mutex a GIL-free snapshot holds, as no thread there would release it. The
# forking thread takes every broadcaster's mutex first, which waits out the
# scans in progress and keeps new ones from starting; both sides release
# them after.

_BROADCASTERS = weakref.WeakSet()
_held_for_fork = []


def _before_fork():
    global _held_for_fork
    _held_for_fork = list(_BROADCASTERS)
    for b in _held_for_fork:
        (<OpsLogBroadcaster>b)._lock.acquire()


def _after_fork():
    global _held_for_fork
    for b in _held_for_fork:
        (<OpsLogBroadcaster>b)._lock.release()
    _held_for_fork = []


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork, after_in_child=_after_fork)


# The ASGI middleware's per-request path (asgi/middleware.py is its reference).
include "_asgi_c.pxi"
