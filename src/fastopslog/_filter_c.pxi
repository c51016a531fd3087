# Included by _opslog_c.pyx: matching without the GIL (_Model, _Key, _Spec,
# _matches) and OpsLogFilter (the pure side's _filter_py.py).

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
