# Included by _opslog_c.pyx: matching without the GIL (_Model, _Key, _Spec,
# _matches), OpsLogFilter and the routing index _Routes (the pure side's
# _filter_py.py).

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


cdef inline void _set_everything(_Spec* s) noexcept nogil:
    s.everything = (
        s.min_status <= 0 and s.model.length == 0 and s.account_id <= 0
        and s.group_id <= 0 and s.min_latency_ms <= 0
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
        _set_everything(&self._spec)
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
# Routing: subscriptions with equal filters form one _Group, whose filter a
# publish tests once. A group is filed under the first equality field its
# filter sets (model, then account, then group) in a hash table of chains,
# or in the "every" list when it sets none. Only subscribe and unsubscribe
# change the index, inside their critical sections; a publish only reads it.
# The core's _Routes is C structs updated in place; the pure one is rebuilt.

cdef enum:
    _EVERY = 0
    _BY_MODEL = 1
    _BY_ACCOUNT = 2
    _BY_GROUP = 3

cdef struct _Group:
    _Spec spec             # the filter, normalized: a field <= 0 stored as 0
    _Spec rest             # what the route leaves to test: spec without the field filed under
    int kind               # where it is filed: _EVERY or _BY_*
    size_t hash            # of its route key (kind _BY_*)
    PyObject* model        # owned: the str that spec.model.data points into
    _Ring** rings          # its subscriptions' rings, in no order
    Py_ssize_t n_rings
    Py_ssize_t rings_cap
    _Group* next           # the next group in its bucket's chain
    Py_ssize_t every_at    # its index in the every list (kind _EVERY)

cdef struct _Routes:
    _Group** buckets       # chains of groups by route key; NULL until one is filed
    size_t mask            # number of buckets - 1; the number is a power of two
    Py_ssize_t n_filed     # groups in the table (kept at most the number of buckets)
    Py_ssize_t n_by[4]     # groups filed under each _BY_* kind: a publish skips a kind with none
    _Group** every
    Py_ssize_t n_every
    Py_ssize_t every_cap


cdef inline size_t _route_hash(int kind, int64_t id) noexcept nogil:
    # Fibonacci hashing of the key and its kind, folded so that the low
    # bits the mask keeps depend on every bit of the key. A model's id is
    # its str's hash.
    cdef uint64_t h = (<uint64_t>id ^ (<uint64_t>kind << 61)) * 0x9E3779B97F4A7C15ULL
    return <size_t>(h ^ (h >> 32))


cdef inline _Group* _route_chain(const _Routes* r, size_t h) noexcept nogil:
    """The chain that holds the groups whose route key hashes to ``h``.
    ``r.buckets`` is set whenever a group is filed under a _BY_* kind."""
    return r.buckets[h & r.mask]


cdef inline bint _filed_under(const _Group* g, int kind, size_t h, const _Key* key) noexcept nogil:
    """Whether ``g``, found in the chain of hash ``h``, is filed under
    ``kind`` and the key's value for it (hashes of different keys meet)."""
    if g.hash != h or g.kind != kind:
        return False
    if kind == _BY_MODEL:
        return _same_model(&g.spec.model, &key.model)
    if kind == _BY_ACCOUNT:
        return g.spec.account_id == key.account_id
    return g.spec.group_id == key.group_id


cdef _Spec _normalized(const _Spec* f) noexcept nogil:
    # Filters that differ only in how they say "unset" (0 or negative)
    # select the same entries, so they share a group (the pure side groups
    # by ==, which keeps them apart: the same deliveries either way).
    cdef _Spec s = f[0]
    if s.min_status < 0:
        s.min_status = 0
    if s.account_id < 0:
        s.account_id = 0
    if s.group_id < 0:
        s.group_id = 0
    if s.min_latency_ms < 0:
        s.min_latency_ms = 0
    return s


cdef inline bint _same_spec(const _Spec* a, const _Spec* b) noexcept nogil:
    """Whether two normalized filters select the same entries."""
    return (
        a.min_status == b.min_status and a.account_id == b.account_id
        and a.group_id == b.group_id and a.min_latency_ms == b.min_latency_ms
        and a.model.length == b.model.length
        and (a.model.length == 0 or _same_model(&a.model, &b.model))
    )


cdef inline int _route_kind(const _Spec* s) noexcept nogil:
    if s.model.length:
        return _BY_MODEL
    if s.account_id > 0:
        return _BY_ACCOUNT
    if s.group_id > 0:
        return _BY_GROUP
    return _EVERY


cdef inline int64_t _route_id(const _Spec* s, int kind) noexcept nogil:
    if kind == _BY_MODEL:
        return s.model.hash
    if kind == _BY_ACCOUNT:
        return s.account_id
    return s.group_id


cdef _Group* _routes_find(const _Routes* r, const _Spec* spec) noexcept nogil:
    """The group of normalized ``spec``, or NULL if it has none."""
    cdef int kind = _route_kind(spec)
    cdef Py_ssize_t i
    cdef _Group* g
    if kind == _EVERY:
        for i in range(r.n_every):
            if _same_spec(&r.every[i].spec, spec):
                return r.every[i]
        return NULL
    if r.buckets == NULL:
        return NULL
    g = _route_chain(r, _route_hash(kind, _route_id(spec, kind)))
    while g != NULL:
        if g.kind == kind and _same_spec(&g.spec, spec):
            return g
        g = g.next
    return NULL


cdef _Group* _group_new(const _Spec* spec, str model) noexcept:
    """An unfiled group without rings for normalized ``spec``, whose model
    data belongs to ``model``; NULL when memory is exhausted."""
    cdef _Group* g = <_Group*>PyMem_RawCalloc(1, sizeof(_Group))
    if g == NULL:
        return NULL
    g.spec = spec[0]
    g.kind = _route_kind(spec)
    g.rest = g.spec
    if g.kind == _BY_MODEL:
        g.rest.model.length = 0
    elif g.kind == _BY_ACCOUNT:
        g.rest.account_id = 0
    elif g.kind == _BY_GROUP:
        g.rest.group_id = 0
    _set_everything(&g.rest)
    g.hash = _route_hash(g.kind, _route_id(spec, g.kind))
    g.model = <PyObject*>model
    _incref(g.model)
    return g


cdef void _group_free(_Group* g) noexcept:
    """Free an unfiled group. Its model is an exact str (filters keep no
    other), whose freeing runs no Python code: safe inside a section."""
    PyMem_RawFree(g.rings)
    _decref(g.model)
    PyMem_RawFree(g)


cdef bint _group_reserve(_Group* g) noexcept nogil:
    """Room for one more ring, so that _group_add cannot fail; False when
    memory is exhausted."""
    cdef Py_ssize_t cap
    cdef _Ring** grown
    if g.n_rings < g.rings_cap:
        return True
    cap = g.rings_cap * 2 + 4
    grown = <_Ring**>PyMem_RawRealloc(g.rings, cap * sizeof(_Ring*))
    if grown == NULL:
        return False
    g.rings = grown
    g.rings_cap = cap
    return True


cdef inline void _group_add(_Group* g, _Ring* r) noexcept nogil:
    """After _group_reserve."""
    r.group = g
    r.slot = g.n_rings
    g.rings[g.n_rings] = r
    g.n_rings += 1


cdef inline void _group_remove(_Group* g, _Ring* r) noexcept nogil:
    """Take ``r`` out of ``g``: the last ring fills its slot."""
    cdef _Ring* last = g.rings[g.n_rings - 1]
    g.rings[r.slot] = last
    last.slot = r.slot
    g.n_rings -= 1
    r.group = NULL


cdef bint _routes_reserve(_Routes* r, int kind) noexcept nogil:
    """Room to file one more group of ``kind``, so that _routes_add cannot
    fail; False when memory is exhausted. Growing the table rehashes it,
    which changes no route."""
    cdef Py_ssize_t cap
    cdef size_t size, i
    cdef _Group** grown
    cdef _Group* g
    cdef _Group* next
    if kind == _EVERY:
        if r.n_every < r.every_cap:
            return True
        cap = r.every_cap * 2 + 4
        grown = <_Group**>PyMem_RawRealloc(r.every, cap * sizeof(_Group*))
        if grown == NULL:
            return False
        r.every = grown
        r.every_cap = cap
        return True
    size = r.mask + 1 if r.buckets != NULL else 0
    if <size_t>r.n_filed < size:
        return True
    size = size * 2 if size else 8
    grown = <_Group**>PyMem_RawCalloc(size, sizeof(_Group*))
    if grown == NULL:
        return False
    if r.buckets != NULL:
        for i in range(r.mask + 1):
            g = r.buckets[i]
            while g != NULL:
                next = g.next
                g.next = grown[g.hash & (size - 1)]
                grown[g.hash & (size - 1)] = g
                g = next
        PyMem_RawFree(r.buckets)
    r.buckets = grown
    r.mask = size - 1
    return True


cdef void _routes_add(_Routes* r, _Group* g) noexcept nogil:
    """File ``g``, after _routes_reserve for its kind."""
    cdef _Group** chain
    if g.kind == _EVERY:
        g.every_at = r.n_every
        r.every[r.n_every] = g
        r.n_every += 1
        return
    chain = &r.buckets[g.hash & r.mask]
    g.next = chain[0]
    chain[0] = g
    r.n_filed += 1
    r.n_by[g.kind] += 1


cdef void _routes_drop(_Routes* r, _Group* g) noexcept nogil:
    """Unfile ``g``; the caller frees it."""
    cdef _Group* last
    cdef _Group** link
    if g.kind == _EVERY:
        last = r.every[r.n_every - 1]
        r.every[g.every_at] = last
        last.every_at = g.every_at
        r.n_every -= 1
        return
    link = &r.buckets[g.hash & r.mask]
    while link[0] != g:
        link = &link[0].next
    link[0] = g.next
    r.n_filed -= 1
    r.n_by[g.kind] -= 1
