# Included by _opslog_c.pyx: OpsLogEntry and argument conversion (the pure
# side's _entry_py.py).

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
        _buf_init(&b)
        try:
            self._render_into(&b)
            return PyUnicode_DecodeUTF8(b.data, b.length, NULL)
        finally:
            PyMem_RawFree(b.data)

    cdef int _render_into(self, _Buf* b) except -1:
        """Append the JSON to ``b`` (``to_json`` and ``_json_lines``)."""
        _put(b, b'{"time":"', 9)
        # An unset time renders as Go's zero time, as Go renders it.
        _put_time(b, self._us if self._us else GO_ZERO_TIME_US)
        _put(b, b'"', 1)
        _put_field_str(b, b',"method":', self.method)
        _put_field_str(b, b',"path":', self.path)
        _put(b, b',"status":', 10)
        _put_int(b, self.status)
        _put(b, b',"latency_ms":', 14)
        _put_int(b, self.latency_ms)
        _put_field_str(b, b',"model":', self.model)
        if self.stream:
            _put(b, b',"stream":true', 14)
        _put_field_int(b, b',"account_id":', self.account_id)
        _put_field_int(b, b',"group_id":', self.group_id)
        _put_field_int(b, b',"api_key_id":', self.api_key_id)
        _put_field_int(b, b',"user_id":', self.user_id)
        _put_field_int(b, b',"turns":', self.turns)
        _put_field_int(b, b',"prompt_chars":', self.prompt_chars)
        _put_field_str(b, b',"error_message":', self.error_message)
        _put_field_str(b, b',"error_detail":', self.error_detail)
        _put_field_int(b, b',"upstream_status":', self.upstream_status)
        _put(b, b'}', 1)
        return 0

    @staticmethod
    def _json_lines(list entries):
        """The entries' JSON, one per line, as one UTF-8 ``bytes``: what the
        Redis forwarder appends to the stream. An entry whose JSON is not yet
        rendered is written straight into the buffer, with no ``str`` made or
        cached (the forwarder is usually the only reader of it); any other
        object with ``to_json()`` (a pure entry) is asked for it."""
        cdef _Buf b
        cdef Py_ssize_t i, size
        cdef const char* utf8
        cdef OpsLogEntry entry
        _buf_init(&b)
        try:
            # Room for the usual entry (130 to 300 bytes) up front.
            _reserve(&b, 256 * len(entries))
            for i in range(len(entries)):
                if i:
                    _put(&b, b'\n', 1)
                item = entries[i]
                if type(item) is OpsLogEntry:
                    entry = <OpsLogEntry>item
                    if entry._json is None:
                        entry._render_into(&b)
                        continue
                    text = entry._json
                else:
                    text = item.to_json()
                utf8 = PyUnicode_AsUTF8AndSize(text, &size)
                _put(&b, utf8, size)
            return PyBytes_FromStringAndSize(b.data, b.length)
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

