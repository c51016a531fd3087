# Included by _opslog_c.pyx: _Ring, a subscription's bounded buffer of entry
# references, and the pointer vectors settled after a critical section
# (the pure side's _ring_py.py).

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
    _Group* group          # the routing group it is in while live, else NULL
    Py_ssize_t slot        # its index in group.rings

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


cdef inline bint _ring_push(_Ring* r, PyObject* entry, _PtrVec* let_go) noexcept nogil:
    """Offer ``entry`` to ``r``; whether it took it (the reference it now
    holds is the caller's to take). A full ring counts a drop, and under
    drop_oldest makes room by parking its oldest reference in ``let_go``."""
    cdef Py_ssize_t at
    if r.count == r.cap:
        r.dropped += 1
        if not r.drop_oldest or not _vec_push(let_go, r.items[r.head]):
            return False
        r.items[r.head] = entry
        r.head += 1
        if r.head == r.cap:
            r.head = 0
        return True
    at = r.head + r.count
    if at >= r.cap:
        at -= r.cap
    r.items[at] = entry
    r.count += 1
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
