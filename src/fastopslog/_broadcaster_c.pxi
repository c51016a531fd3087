# Included by _opslog_c.pyx: OpsLogBroadcaster and fork handling (the pure
# side's _broadcaster_py.py).

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
    cdef _Routes _routes              # live subscriptions, grouped by filter
    cdef Py_ssize_t _n_subs
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
        # Emptied of groups by the subscriptions; grown by PyMem_RawRealloc.
        PyMem_RawFree(self._routes.buckets)
        PyMem_RawFree(self._routes.every)
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
        """Offer ``entry`` to the rings of every matching group, looked up
        through the routes; the number of rings that took it. ``nogil``
        proves it runs no Python code; references are the caller's to take."""
        cdef _Routes* routes = &self._routes
        cdef Py_ssize_t i, delivered = 0
        cdef size_t h
        cdef _Group* g
        for i in range(routes.n_every):
            g = routes.every[i]
            if _matches(&g.rest, key):
                delivered += self._fan_out_group(g, entry)
        # An entry's field <= 0 (or empty model) is no filter's route key.
        if routes.n_by[_BY_MODEL] and key.model.length:
            delivered += self._fan_out_chain(_BY_MODEL, key.model.hash, key, entry)
        if routes.n_by[_BY_ACCOUNT] and key.account_id > 0:
            delivered += self._fan_out_chain(_BY_ACCOUNT, key.account_id, key, entry)
        if routes.n_by[_BY_GROUP] and key.group_id > 0:
            delivered += self._fan_out_chain(_BY_GROUP, key.group_id, key, entry)
        return delivered

    cdef inline Py_ssize_t _fan_out_chain(
        self, int kind, int64_t id, const _Key* key, PyObject* entry
    ) noexcept nogil:
        """Offer ``entry`` to the matching groups filed under ``kind`` and
        the entry's ``id`` for it; as _fan_out."""
        cdef Py_ssize_t delivered = 0
        cdef size_t h = _route_hash(kind, id)
        cdef _Group* g = _route_chain(&self._routes, h)
        while g != NULL:
            if _filed_under(g, kind, h, key) and _matches(&g.rest, key):
                delivered += self._fan_out_group(g, entry)
            g = g.next
        return delivered

    cdef inline Py_ssize_t _fan_out_group(self, _Group* g, PyObject* entry) noexcept nogil:
        """Offer ``entry`` to each ring of a matching group; as _fan_out."""
        cdef Py_ssize_t i, delivered = 0
        cdef _Ring* r
        for i in range(g.n_rings):
            r = g.rings[i]
            if r.count == r.cap:
                self._dropped += 1
            if not _ring_push(r, entry, &self._let_go):
                continue
            delivered += 1
            if r.parked and _vec_push(&self._to_wake, r.wakers):
                r.parked = False
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
        cdef _Spec spec
        cdef _Group* group
        cdef _Group* new_group = NULL
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
        spec = _normalized(&flt._spec)
        self._wait_gil_free()
        group = _routes_find(&self._routes, &spec)
        if group == NULL:
            group = new_group = _group_new(&spec, flt.model)
            if group == NULL or not _routes_reserve(&self._routes, group.kind):
                if new_group != NULL:
                    _group_free(new_group)
                raise MemoryError()  # before any route changed
        if not _group_reserve(group):
            if new_group != NULL:
                _group_free(new_group)
            raise MemoryError()  # before any route changed
        if want_replay or since >= 0:
            sub.history_gap = self._prime(sub, want_replay, since)
        sub._ring.closed = False
        if new_group != NULL:
            _routes_add(&self._routes, new_group)
        _group_add(group, &sub._ring)
        self._n_subs += 1
        return sub

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

    # Takes the subscription, which holds its _Ring (the pure one takes the _Ring).
    cdef void _remove(self, OpsLogSubscription sub) noexcept:
        """Take ``sub`` out of its routing group (once), free the group if
        it was the last in it, and mark ``sub`` closed."""
        cdef _Group* g
        self._wait_gil_free()
        if sub._ring.closed:
            return
        sub._ring.closed = True
        sub._ring.parked = False
        g = sub._ring.group
        _group_remove(g, &sub._ring)
        if g.n_rings == 0:
            _routes_drop(&self._routes, g)
            _group_free(g)
        self._n_subs -= 1

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
