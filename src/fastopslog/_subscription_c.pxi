# Included by _opslog_c.pyx: OpsLogSubscription, the readers (the pure side's
# _subscription_py.py).

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
    cdef object __weakref__

    def __cinit__(self, OpsLogBroadcaster broadcaster not None):
        # Only subscribe() names the broadcaster, so every subscription has
        # one; until subscribe() registers it, it is closed.
        self._broadcaster = broadcaster
        self._wakers = []
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
