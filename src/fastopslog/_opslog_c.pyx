# cython: language_level=3
"""The compiled core: the same API and behaviour as ``_opslog_py``.

Files
    One extension module, split by concern into files it includes (as
    msgpack's ``_cmsgpack.pyx`` includes its packer), so the hot path makes
    no call across modules; each mirrors a module of the pure implementation
    and is included in this order: ``_gojson_c.pxi`` (the Go JSON encoder),
    ``_filter_c.pxi`` (``_Model``, ``_Key``, ``_Spec``, ``_matches``,
    ``OpsLogFilter``, ``_Routes``), ``_entry_c.pxi`` (``OpsLogEntry``), ``_ring_c.pxi``
    (``_Ring``), ``_subscription_c.pxi`` (``OpsLogSubscription``),
    ``_broadcaster_c.pxi`` (``OpsLogBroadcaster``, fork handling) and
    ``_asgi_c.pxi`` (the ASGI middleware's per-request path).

Data layout
    History is a ring kept as two parallel arrays: the fields filters read
    (``_Key`` structs) and strong references to the immutable entries, so a
    filtered scan reads only keys and an unfiltered one only pointers. Live
    subscriptions are routed as ARCHITECTURE.md says: those with equal
    filters form one ``_Group`` (the filter as a ``_Spec`` and the array of
    its subscriptions' rings), filed in ``_Routes`` under the first equality
    field it sets, in a C hash table of chains, or in the "every" list. A
    publish tests each group it looks up once and then writes to its rings:
    bounded arrays of entry references inside the subscriptions, allocated
    once at subscribe time. A publish copies no entry and touches no Python
    object but the entry: it writes a pointer and takes a reference per
    delivery. Subscribe and unsubscribe change the routes in place.

Locking
    The GIL serializes every critical section that keeps it from start to
    end, and they all do: none runs Python code, blocks, or allocates a
    Python object (which could start the garbage collector), and none drops
    a reference that could be the last (a weak reference callback, or a
    collected subscription unsubscribing, would run Python code). Such
    references, and readers to wake, are parked in ``_let_go`` and
    ``_to_wake`` and settled once the section is over. The one exception
    is the history entry a publish evicts: publish drops it directly, but
    only once its section is over, as the last thing before settling.

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
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_CheckExact
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_CheckExact
from cpython.mem cimport (
    PyMem_Calloc,
    PyMem_Free,
    PyMem_RawCalloc,
    PyMem_RawFree,
    PyMem_RawMalloc,
    PyMem_RawRealloc,
)
from cpython.object cimport PyObject, PyObject_Hash
from cpython.unicode cimport (
    PyUnicode_AsUTF8AndSize,
    PyUnicode_CheckExact,
    PyUnicode_DATA,
    PyUnicode_DecodeUTF8,
    PyUnicode_GET_LENGTH,
    PyUnicode_KIND,
    PyUnicode_READ,
)
from cpython.list cimport PyList_New
from libc.math cimport floor
from libc.stdint cimport INT64_MIN, int64_t, uint64_t
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
    # A str all of whose code points are ASCII (Cython declares no such macro).
    bint PyUnicode_IS_ASCII(str text)

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


include "_gojson_c.pxi"
include "_filter_c.pxi"
include "_entry_c.pxi"
include "_ring_c.pxi"
include "_subscription_c.pxi"
include "_broadcaster_c.pxi"
include "_shared_c.pxi"
# The ASGI middleware's per-request path (asgi/middleware.py is its reference).
include "_asgi_c.pxi"
