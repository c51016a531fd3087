# The shared-memory log: one ring of fixed-size records in a POSIX shared
# memory segment that every process on the host publishes into and reads.
# Layout and the writer/reader protocol: _shm.h; the user's description:
# docs/shared.md.
#
# Writing: ``publish`` encodes an entry straight into its claimed record;
# it takes no lock and waits for no one.
#
# Reading: a process that subscribes starts one pump thread. The pump
# copies committed records out of the ring in seq order (without the GIL:
# it reads only the mapping and its own buffer), then, with the GIL,
# decodes them and publishes each into a local OpsLogBroadcaster under its
# global seq. Subscriptions, filters, buffers, drop counting and priming are
# that local broadcaster's, unchanged. Its history mirrors the ring and is
# kept contiguous in seq: a seq the pump could not deliver (lapped, or
# skipped) empties it, so ``history_gap`` stays exact.

from libc.errno cimport EEXIST, ENOENT, errno
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memset
from posix.fcntl cimport O_CREAT, O_EXCL, O_RDWR
from posix.mman cimport MAP_FAILED, MAP_SHARED, PROT_READ, PROT_WRITE, mmap, munmap, shm_open, shm_unlink
from posix.stat cimport fstat, struct_stat
from posix.unistd cimport close as _close_fd, ftruncate, getpid, geteuid

cdef extern from "sys/stat.h" nogil:
    int fchmod(int fd, unsigned int mode)

cdef extern from "_shm.h" nogil:
    uint64_t FOL_MAGIC
    unsigned int FOL_VERSION
    unsigned int FOL_HEADER_SIZE
    unsigned int FOL_FIXED
    int FOL_N_STR
    int FOL_STATUS, FOL_LATENCY, FOL_ACCOUNT, FOL_GROUP
    ctypedef struct fol_header:
        uint64_t magic
        uint32_t version
        uint32_t header_size
        uint32_t record_size
        uint32_t creator_pid
        uint64_t capacity
        int64_t created_us
        uint64_t claimed
    ctypedef struct fol_record:
        uint64_t stamp
        uint64_t checksum
        int64_t time_us
        int64_t ints[9]
        uint32_t used
        uint8_t stream
        uint8_t truncated
        uint32_t lens[5]
    fol_record* fol_slot(fol_header* h, uint64_t seq)
    uint64_t fol_load_acquire(const uint64_t* p)
    void fol_mark_ready(fol_header* h)
    uint64_t fol_claimed(fol_header* h)
    uint64_t fol_claim(fol_header* h)
    uint64_t fol_checksum(const fol_record* r, uint64_t seq)
    int fol_begin(fol_record* r, uint64_t seq)
    void fol_commit(fol_record* r, uint64_t seq)
    int fol_read(fol_header* h, uint64_t seq, fol_record* out)

import threading
import time as _time

from . import _shared_common
from ._shared_common import (
    ATTACH_WAIT_S,
    DEFAULT_RECORD_SIZE,
    DEFAULT_SHARED_HISTORY_CAP,
    SHM_PREFIX,
    SKIP_AFTER_S,
    check_geometry,
    check_name,
    unlink_shared,
)

__all__ += ("SharedOpsLogBroadcaster", "unlink_shared")

# What a cut string ends with: "…", so that a reader sees the cut.
cdef const char* _CUT_MARK = b"\xe2\x80\xa6"
cdef uint32_t _CUT_MARK_LEN = 3
# A snapshot scans the ring without the GIL from this many records on:
# verifying a record (copy and checksum) costs about 20 times what the
# in-process history's key test does, so the scan is worth giving the GIL
# up for at a smaller size than NOGIL_MIN_HISTORY. BENCHMARKS.md.
cdef uint64_t SHARED_NOGIL_MIN_RECORDS = 4096


def _set_shared_nogil_min(uint64_t records):
    """Set SHARED_NOGIL_MIN_RECORDS, returning the previous value: for the
    measurement that chose it and the tests that reach both paths."""
    global SHARED_NOGIL_MIN_RECORDS
    previous = SHARED_NOGIL_MIN_RECORDS
    SHARED_NOGIL_MIN_RECORDS = records
    return previous


# Records the pump copies per pass: bounds the time it holds the GIL.
cdef Py_ssize_t _PUMP_BATCH = 256


cdef inline uint32_t _cut(const char* data, uint32_t n, uint32_t room) noexcept nogil:
    """How many bytes of ``data`` (``n`` > ``room``) to keep so that they
    and the cut mark fit in ``room``, ending on a character boundary."""
    cdef uint32_t keep
    if room < _CUT_MARK_LEN:
        return 0
    keep = room - _CUT_MARK_LEN
    # data[keep] is the first byte left out: while it continues a
    # character, that character would be split, so leave it all out.
    while keep > 0 and (<uint8_t>data[keep] & 0xC0) == 0x80:
        keep -= 1
    return keep


cdef void _write_record(fol_header* h, uint64_t seq, OpsLogEntry e,
                        const char** texts, Py_ssize_t* lens) noexcept:
    """Fill and commit record ``seq``; give it up if a lapping writer holds
    its slot. Strings are stored in field order; one that does not fit is
    cut (``_cut``) and flagged, and the ones after it get what room is left."""
    cdef fol_record* r = fol_slot(h, seq)
    cdef char* body = <char*>r + FOL_FIXED
    cdef uint32_t room = h.record_size - FOL_FIXED, n, off = 0
    cdef uint8_t truncated = 0
    cdef int i
    if not fol_begin(r, seq):
        return
    r.time_us = e._us
    r.ints[0] = e.status
    r.ints[1] = e.latency_ms
    r.ints[2] = e.account_id
    r.ints[3] = e.group_id
    r.ints[4] = e.api_key_id
    r.ints[5] = e.user_id
    r.ints[6] = e.turns
    r.ints[7] = e.prompt_chars
    r.ints[8] = e.upstream_status
    r.stream = e.stream
    for i in range(5):
        if <size_t>lens[i] <= room - off:
            n = <uint32_t>lens[i]
            memcpy(body + off, texts[i], n)
        else:
            n = _cut(texts[i], <uint32_t>lens[i], room - off)
            memcpy(body + off, texts[i], n)
            if room - off - n >= _CUT_MARK_LEN:
                memcpy(body + off + n, _CUT_MARK, _CUT_MARK_LEN)
                n += _CUT_MARK_LEN
            truncated |= 1 << i
        r.lens[i] = n
        off += n
    r.truncated = truncated
    r.used = FOL_FIXED + off
    r.checksum = fol_checksum(r, seq)
    fol_commit(r, seq)


cdef OpsLogEntry _decode(const fol_record* r):
    """The entry record ``r`` (a verified private copy) holds; None when its
    string lengths do not add up (a record written by something else)."""
    cdef const char* body = <const char*>r + FOL_FIXED
    cdef uint64_t off = 0
    cdef int i
    cdef list texts = []
    cdef OpsLogEntry e
    for i in range(5):
        if r.lens[i] > r.used - FOL_FIXED - off:
            return None
        texts.append(PyUnicode_DecodeUTF8(body + off, r.lens[i], "surrogatepass"))
        off += r.lens[i]
    e = OpsLogEntry.__new__(OpsLogEntry)
    e.method, e.path, e.model, e.error_message, e.error_detail = texts
    e._us = r.time_us
    e.status = r.ints[0]
    e.latency_ms = r.ints[1]
    e.account_id = r.ints[2]
    e.group_id = r.ints[3]
    e.api_key_id = r.ints[4]
    e.user_id = r.ints[5]
    e.turns = r.ints[6]
    e.prompt_chars = r.ints[7]
    e.upstream_status = r.ints[8]
    e.stream = r.stream != 0
    PyObject_Hash(e.model)  # cached for filters, as the constructor does
    e._ready = True
    return e


cdef inline bint _raw_matches(const _Spec* f, const char* model, Py_ssize_t model_len,
                              const fol_record* r) noexcept nogil:
    """``_matches`` on a record: the filter's model as UTF-8 bytes."""
    if f.everything:
        return True
    if f.min_status > 0 and r.ints[FOL_STATUS] < f.min_status:
        return False
    if f.model.length and (
        r.lens[2] != <uint64_t>model_len
        # Only checksummed records get here; this bound keeps a
        # well-formed record of another origin from reading past the copy.
        or <uint64_t>r.lens[0] + r.lens[1] + r.lens[2] > r.used - FOL_FIXED
        or memcmp(<const char*>r + FOL_FIXED + r.lens[0] + r.lens[1], model, model_len) != 0
    ):
        return False
    if f.account_id > 0 and r.ints[FOL_ACCOUNT] != f.account_id:
        return False
    if f.group_id > 0 and r.ints[FOL_GROUP] != f.group_id:
        return False
    if f.min_latency_ms > 0 and r.ints[FOL_LATENCY] < f.min_latency_ms:
        return False
    return True


cdef void _forget_history(OpsLogBroadcaster b):
    """Empty ``b``'s history; the references are dropped after its state is
    consistent, as dropping one may run Python code."""
    cdef PyObject** held
    cdef Py_ssize_t i, cap = b._history_cap
    if not b._history_len:
        return
    held = <PyObject**>PyMem_RawMalloc(cap * sizeof(PyObject*))
    if held == NULL:
        raise MemoryError()
    b._wait_gil_free()
    memcpy(held, b._history, cap * sizeof(PyObject*))
    memset(b._history, 0, cap * sizeof(PyObject*))
    b._history_head = 0
    b._history_len = 0
    for i in range(cap):
        if held[i] != NULL:
            _decref(held[i])
    PyMem_RawFree(held)


cdef void _publish_seq(OpsLogBroadcaster b, OpsLogEntry e, int64_t seq):
    """Publish ``e`` (unsealed) into ``b`` as seq ``seq``, which is above
    every seq ``b`` has. History stays contiguous in seq: a jump empties it,
    so that ``_prime`` (which reads seqs as _seq, _seq - 1, ...) and its
    ``history_gap`` stay right."""
    if seq != b._seq + 1:
        _forget_history(b)
        b._seq = seq - 1
    b.publish(e)


cdef struct _PumpCursor:
    uint64_t next               # the next seq the pump delivers
    int64_t lost                # records overwritten before this process read them
    int64_t skipped             # records never committed in time, or torn
    uint64_t stall_seq          # the uncommitted record being waited for
    int64_t stall_since_us
    uint64_t stall_claimed      # the newest claimed seq when that wait began


@cython.final
cdef class SharedOpsLogBroadcaster:
    """A broadcaster over the shared-memory log ``name``: the same API as
    OpsLogBroadcaster, for every process on the host. See docs/shared.md."""

    cdef fol_header* _h
    cdef size_t _size
    cdef readonly str name
    cdef readonly bint created         # whether this process created the log
    cdef OpsLogBroadcaster _local
    cdef int _users                   # sections using the mapping without the GIL
    cdef bint _closed
    # The pump: where it is (changed only with the GIL, once a pass has
    # delivered what it went past, so ring_stats() never runs ahead of the
    # subscriptions), its copy buffer.
    cdef _PumpCursor _cur
    cdef fol_record* _batch
    cdef int64_t _skip_after_us
    cdef object _pump                 # its thread, or None
    cdef object _pump_lock            # serializes passes of the pump
    cdef object _subs                 # this process's subscriptions, for close()
    cdef object __weakref__

    def __init__(self, name, *, history_cap=None, record_size=None, create=True):
        cdef int cap, size
        name = check_name(name)
        cap, size = check_geometry(history_cap, record_size)
        if create is not True and create is not False:
            raise TypeError(f"create must be a bool, not {type(create).__name__}")
        if self.name is not None:
            raise TypeError("SharedOpsLogBroadcaster is initialised once")
        self._open(name, cap, size, create)
        self.name = name
        self._local = OpsLogBroadcaster(self._h.capacity)
        self._skip_after_us = <int64_t>(SKIP_AFTER_S * 1e6)
        self._pump_lock = threading.Lock()
        self._subs = weakref.WeakSet()
        _SHARED.add(self)

    cdef _open(self, str name, uint64_t cap, uint32_t size, bint create):
        cdef bytes path = (SHM_PREFIX + name).encode()
        cdef int fd
        cdef double give_up = _time.monotonic() + ATTACH_WAIT_S
        while True:
            fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL, 0o600) if create else -1
            if fd >= 0:
                try:
                    self._create(fd, name, cap or DEFAULT_SHARED_HISTORY_CAP, size or DEFAULT_RECORD_SIZE)
                except BaseException:
                    # Leave no half-made log behind for others to wait on.
                    shm_unlink(path)
                    raise
                finally:
                    _close_fd(fd)
                self.created = True
                return
            if create and errno != EEXIST:
                raise OSError(errno, os.strerror(errno), name)
            fd = shm_open(path, O_RDWR, 0)
            if fd < 0:
                if errno == ENOENT and not create:
                    raise FileNotFoundError(
                        errno, f"no shared log {name!r} (create=False only attaches)", name
                    )
                if errno == ENOENT and _time.monotonic() < give_up:
                    continue  # removed meanwhile: create it
                raise OSError(errno, os.strerror(errno), name)
            try:
                if self._attach(fd, name, cap, size, give_up):
                    return
            finally:
                _close_fd(fd)
            _time.sleep(0.001)  # the creator is still initialising the header

    cdef _create(self, int fd, str name, uint64_t cap, uint32_t size):
        cdef size_t total = FOL_HEADER_SIZE + cap * size
        cdef void* p
        # The umask can only take bits away; this makes it exactly 0600.
        if fchmod(fd, 0o600) != 0 or ftruncate(fd, total) != 0:
            raise OSError(errno, os.strerror(errno), name)
        p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        if p == MAP_FAILED:
            raise OSError(errno, os.strerror(errno), name)
        self._h = <fol_header*>p
        self._size = total
        # ftruncate zero-filled it: every stamp is 0 (never written).
        self._h.version = FOL_VERSION
        self._h.header_size = FOL_HEADER_SIZE
        self._h.record_size = size
        self._h.capacity = cap
        self._h.creator_pid = getpid()
        self._h.created_us = _now_us()
        fol_mark_ready(self._h)

    cdef bint _attach(self, int fd, str name, uint64_t cap, uint32_t size, double give_up) except -1:
        """Map the existing log ``fd``; False while its creator has not
        finished the header (until ``give_up``)."""
        cdef struct_stat st
        cdef fol_header* h
        cdef void* p
        cdef size_t total
        if fstat(fd, &st) != 0:
            raise OSError(errno, os.strerror(errno), name)
        if st.st_uid != geteuid() or st.st_mode & 0o077:
            raise PermissionError(
                f"shared log {name!r} is not private to this user (owner uid {st.st_uid},"
                f" mode {st.st_mode & 0o777:o}): refusing it"
            )
        if <size_t>st.st_size >= FOL_HEADER_SIZE:
            p = mmap(NULL, FOL_HEADER_SIZE, PROT_READ, MAP_SHARED, fd, 0)
            if p == MAP_FAILED:
                raise OSError(errno, os.strerror(errno), name)
            h = <fol_header*>p
            try:
                if fol_load_acquire(&h.magic) == FOL_MAGIC:
                    self._check_header(h, name, cap, size, st.st_size)
                    total = FOL_HEADER_SIZE + h.capacity * h.record_size
                elif h.magic != 0:
                    raise ValueError(f"shared log {name!r} is not a fastopslog log; remove it with unlink_shared()")
                else:
                    total = 0
            finally:
                munmap(p, FOL_HEADER_SIZE)
            if total:
                p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
                if p == MAP_FAILED:
                    raise OSError(errno, os.strerror(errno), name)
                self._h = <fol_header*>p
                self._size = total
                return True
        if _time.monotonic() > give_up:
            raise RuntimeError(
                f"shared log {name!r} was never initialised (its creator may have died);"
                " remove it with unlink_shared()"
            )
        return False

    cdef _check_header(self, fol_header* h, str name, uint64_t cap, uint32_t size, int64_t file_size):
        remedy = "; remove it with unlink_shared() (every process must close it) to make a new one"
        if h.version != FOL_VERSION or h.header_size != FOL_HEADER_SIZE:
            raise ValueError(
                f"shared log {name!r} has layout version {h.version}, this build reads"
                f" version {FOL_VERSION}{remedy}"
            )
        if (cap and h.capacity != cap) or (size and h.record_size != size):
            raise ValueError(
                f"shared log {name!r} has history_cap={h.capacity} record_size={h.record_size},"
                f" not history_cap={cap or h.capacity} record_size={size or h.record_size}"
                f" (pass None to take the log's){remedy}"
            )
        if (
            h.capacity < 1
            or h.record_size < FOL_FIXED
            or <uint64_t>file_size != FOL_HEADER_SIZE + h.capacity * h.record_size
        ):
            raise ValueError(f"shared log {name!r} has a corrupt header{remedy}")

    def __dealloc__(self):
        if self._h != NULL:
            munmap(self._h, self._size)
        PyMem_RawFree(self._batch)

    def __reduce__(self):
        refuse_copy(self)

    def __repr__(self):
        if self._closed:
            return f"<SharedOpsLogBroadcaster {self.name!r} closed>"
        published, dropped, subscribers = self.stats()
        return (
            f"<SharedOpsLogBroadcaster {self.name!r} history_cap={self.history_cap}"
            f" record_size={self.record_size} published={published} dropped={dropped}"
            f" subscribers={subscribers}>"
        )

    cdef inline fol_header* _mapped(self) except NULL:
        if self._h == NULL or self._closed:
            raise ValueError(f"shared log {self.name!r} is {'closed' if self._closed else 'not open'}")
        return self._h

    @property
    def history_cap(self):
        return self._mapped().capacity

    @property
    def record_size(self):
        return self._mapped().record_size

    @property
    def closed(self):
        return self._closed

    def publish(self, entry):
        """Seal ``entry`` with the next global seq and write it into the
        shared ring. Never blocks, takes no lock, and no reader can make
        it fail."""
        cdef fol_header* h = self._mapped()
        cdef OpsLogEntry e
        cdef const char* texts[5]
        cdef Py_ssize_t lens[5]
        cdef list keep = None
        cdef uint64_t seq
        cdef int i
        if type(entry) is not OpsLogEntry:
            raise TypeError(f"publish() needs an OpsLogEntry, not {type(entry).__name__}")
        e = <OpsLogEntry>entry
        if e._seq:
            e = e._copy()
        # Everything that can fail or allocate comes before the claim. The
        # UTF-8 form is cached in each str; text with lone surrogates, which
        # strict UTF-8 refuses, is encoded with surrogatepass instead.
        try:
            texts[0] = PyUnicode_AsUTF8AndSize(e.method, &lens[0])
            texts[1] = PyUnicode_AsUTF8AndSize(e.path, &lens[1])
            texts[2] = PyUnicode_AsUTF8AndSize(e.model, &lens[2])
            texts[3] = PyUnicode_AsUTF8AndSize(e.error_message, &lens[3])
            texts[4] = PyUnicode_AsUTF8AndSize(e.error_detail, &lens[4])
        except UnicodeEncodeError:
            keep = [t.encode("utf-8", "surrogatepass") for t in (e.method, e.path, e.model, e.error_message, e.error_detail)]
            for i in range(5):
                texts[i] = <bytes>keep[i]
                lens[i] = len(<bytes>keep[i])
        if e._seq:
            # Allocating (UTF-8 of non-ASCII text is cached on first use)
            # may have run Python code that published ``e``.
            e = e._copy()
        seq = fol_claim(h)
        e._seq = seq
        if not e._us:
            e._us = _now_us()
            e._json = None
        _write_record(h, seq, e, texts, lens)

    def stats(self):
        """``published`` counts every publish into the log, from every
        process; ``dropped`` and ``subscribers`` are this process's."""
        cdef uint64_t published = fol_claimed(self._mapped())
        _, dropped, subscribers = self._local.stats()
        return OpsLogStats(published, dropped, subscribers)

    def subscribe(self, filter=None, buf_size=DEFAULT_BUF_SIZE, *, replay=0, since_seq=None, overflow=DROP_NEWEST):
        """As ``OpsLogBroadcaster.subscribe``, over the shared log: history is
        the ring's. Starts this process's pump on first use, and catches it
        up first, so that priming sees every record committed before the
        call, wherever it was published (a ``since_seq`` from another
        process's reader included)."""
        self._mapped()
        self._start_pump()
        with self._pump_lock:
            while self._pump_once():
                pass
            sub = self._local.subscribe(filter, buf_size, replay=replay, since_seq=since_seq, overflow=overflow)
        self._subs.add(sub)
        return sub

    def snapshot(self, filter=None, max_entries=0):
        """The shared ring oldest to newest, filtered, then the last
        ``max_entries`` when that is positive: read from the ring itself,
        so it includes what was just published anywhere."""
        cdef OpsLogFilter flt = _MATCH_ALL if filter is None else filter if type(filter) is OpsLogFilter else None
        cdef int64_t limit
        cdef fol_header* h
        cdef uint64_t newest, oldest, s, n = 0, i
        cdef uint64_t* seqs = NULL
        cdef fol_record* rec = NULL
        cdef const char* model = NULL
        cdef Py_ssize_t model_len = 0
        cdef bytes model_utf8
        cdef list result = []
        cdef OpsLogEntry e
        if flt is None:
            raise TypeError(f"filter must be an OpsLogFilter or None, not {type(filter).__name__}")
        limit = check_int("max_entries", max_entries)
        h = self._mapped()
        model_utf8 = flt.model.encode("utf-8", "surrogatepass")
        model = model_utf8
        model_len = len(model_utf8)
        newest = fol_claimed(h)
        oldest = newest - h.capacity + 1 if newest > h.capacity else 1
        if newest < oldest:
            return result
        seqs = <uint64_t*>PyMem_RawMalloc((newest - oldest + 1) * sizeof(uint64_t))
        rec = <fol_record*>PyMem_RawMalloc(h.record_size)
        if seqs == NULL or rec == NULL:
            PyMem_RawFree(seqs)
            PyMem_RawFree(rec)
            raise MemoryError()
        self._users += 1
        try:
            if newest - oldest + 1 >= SHARED_NOGIL_MIN_RECORDS:
                with nogil:
                    # Safe without the GIL: reads the mapping, which _users
                    # keeps mapped (close() leaves the unmapping to the last
                    # user), and writes buffers only this call holds.
                    n = _pick_seqs(h, &flt._spec, model, model_len, oldest, newest, limit, seqs, rec)
            else:
                n = _pick_seqs(h, &flt._spec, model, model_len, oldest, newest, limit, seqs, rec)
            for i in range(n):
                s = seqs[newest - oldest + 1 - n + i]
                # Read again, with the GIL, to decode: a record overwritten
                # since the scan is gone from the ring, so it is left out.
                if fol_read(h, s, rec) == 1:
                    e = _decode(rec)
                    if e is not None:
                        e._seq = s
                        result.append(e)
        finally:
            self._release_user()
            PyMem_RawFree(seqs)
            PyMem_RawFree(rec)
        return result

    def ring_stats(self):
        """What the ring and this process's reading of it say: a dict of
        ``published`` (every process's), ``history_cap``, ``record_size``,
        ``created`` (by this object), ``lost`` and ``skipped`` (records this
        process's pump could not deliver: lapped, or never committed in
        time or torn) and ``next_seq`` (the next one it will deliver; 0
        before it starts)."""
        cdef fol_header* h = self._mapped()
        return {
            "published": fol_claimed(h),
            "history_cap": h.capacity,
            "record_size": h.record_size,
            "created": self.created,
            "lost": self._cur.lost,
            "skipped": self._cur.skipped,
            "next_seq": self._cur.next,
        }

    def close(self):
        """Stop this process's pump and unmap the log; subscriptions end
        (their buffered entries stay readable). The log itself stays for
        other processes: ``unlink_shared`` removes it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        pump = self._pump
        if pump is not None and pump is not threading.current_thread():
            pump.join()  # it stops as it sees _closed
        self._pump = None
        self._unmap_if_unused()
        for sub in list(self._subs or ()):
            sub.unsubscribe()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()

    cdef void _release_user(self) noexcept:
        """End a use of the mapping."""
        self._users -= 1
        self._unmap_if_unused()

    cdef void _unmap_if_unused(self) noexcept:
        if self._closed and self._users <= 0 and self._h != NULL:
            munmap(self._h, self._size)
            self._h = NULL

    # --- the pump -------------------------------------------------------

    def _start_pump(self):
        """Catch this process's history up with the ring and start the pump
        thread, unless it runs (after fork, it does not: it restarts)."""
        if self._pump is not None and self._pump.is_alive():
            return
        with self._pump_lock:
            if self._batch == NULL:
                self._batch = <fol_record*>PyMem_RawMalloc(_PUMP_BATCH * self._h.record_size)
                if self._batch == NULL:
                    raise MemoryError()
            if self._cur.next == 0:
                newest = fol_claimed(self._h)
                self._cur.next = newest - self._h.capacity + 1 if newest > self._h.capacity else 1
            while self._pump_once():
                pass
            self._pump = threading.Thread(
                target=_pump_loop, args=(weakref.ref(self),), name=f"fastopslog-shared-{self.name}", daemon=True
            )
            self._pump.start()

    def _pump_once(self):
        """One pass: copy what is committed (without the GIL), deliver it.
        The number of records it went past (delivered, lost or skipped)."""
        cdef Py_ssize_t n, i
        cdef _PumpCursor cur = self._cur
        cdef uint64_t start = cur.next
        cdef uint32_t size
        cdef fol_record* r
        cdef OpsLogEntry e
        if self._closed:
            return 0
        size = self._h.record_size
        self._users += 1
        try:
            with nogil:
                # Safe without the GIL: reads the mapping, which _users keeps
                # mapped, and writes the pump's buffer, which only the holder
                # of _pump_lock touches, and ``cur``, a local copy. Worth it:
                # the copy and checks of a batch take tens of microseconds
                # that the process's event loop gets; waiting for the GIL
                # back delays only the pump (a few ms at worst, inside the
                # latency budget), never a publish.
                n = self._collect(&cur)
            for i in range(n):
                r = <fol_record*>(<char*>self._batch + i * size)
                e = _decode(r)
                if e is None:
                    cur.skipped += 1
                    continue
                # The record's seq is in its stamp (2 * seq).
                _publish_seq(self._local, e, r.stamp >> 1)
        finally:
            self._release_user()
            # Only now: everything ``cur`` went past is delivered or counted.
            self._cur = cur
        return cur.next - start

    cdef Py_ssize_t _collect(self, _PumpCursor* cur) noexcept nogil:
        """Copy committed records from ``cur.next`` on into ``_batch``, in
        seq order; count those lost (lapped) or skipped (a writer that did
        not commit within the skip time, or a torn record)."""
        cdef fol_header* h = self._h
        cdef Py_ssize_t n = 0
        cdef fol_record* out
        cdef uint64_t newest, oldest
        cdef int got
        cdef int64_t now
        while n < _PUMP_BATCH:
            out = <fol_record*>(<char*>self._batch + n * h.record_size)
            got = fol_read(h, cur.next, out)
            if got == 1:
                n += 1
                cur.next += 1
            elif got == -1:
                # Lapped: everything older than the ring's oldest is gone.
                newest = fol_claimed(h)
                oldest = newest - h.capacity + 1 if newest > h.capacity else 1
                if oldest <= cur.next:
                    oldest = cur.next + 1
                cur.lost += oldest - cur.next
                cur.next = oldest
            elif got == -2:
                cur.skipped += 1
                cur.next += 1
            else:
                newest = fol_claimed(h)
                if cur.next > newest:
                    break  # caught up
                # Claimed, not committed: wait for its writer, at most the
                # skip time, then go past it. A record already claimed when
                # the wait for an earlier one began has been claimed at
                # least that long: its wait goes on from there, so k dead
                # writers cost one skip time, not k.
                now = _now_us()
                if cur.stall_seq != cur.next:
                    if cur.next > cur.stall_claimed:
                        cur.stall_since_us = now
                        cur.stall_claimed = newest
                    cur.stall_seq = cur.next
                if now - cur.stall_since_us < self._skip_after_us:
                    break
                cur.skipped += 1
                cur.next += 1
        return n

    def _claim_and_abandon(self, entry):
        """Test hook: claim a seq for ``entry`` and write half its record
        without committing, as a writer killed mid-record leaves it."""
        cdef fol_header* h = self._mapped()
        cdef uint64_t seq = fol_claim(h)
        cdef fol_record* r = fol_slot(h, seq)
        fol_begin(r, seq)
        r.time_us = (<OpsLogEntry?>entry)._us
        return seq

    def _set_skip_after(self, double seconds):
        """Test hook: how long the pump waits for an uncommitted record."""
        self._skip_after_us = <int64_t>(seconds * 1e6)


cdef uint64_t _pick_seqs(fol_header* h, const _Spec* spec, const char* model, Py_ssize_t model_len,
                         uint64_t oldest, uint64_t newest, int64_t limit,
                         uint64_t* out, fol_record* rec) noexcept nogil:
    """Put the seqs of matching committed records (the newest ``limit`` when
    that is positive) oldest first at the end of ``out``; their number."""
    cdef uint64_t s = newest, n = 0, room = newest - oldest + 1
    while s >= oldest:
        if fol_read(h, s, rec) == 1 and _raw_matches(spec, model, model_len, rec):
            n += 1
            out[room - n] = s
            if <int64_t>n == limit:
                break
        s -= 1
    return n


def _pump_loop(ref):
    """The pump thread: passes until its broadcaster is closed or collected;
    sleeps between passes that found nothing, a little longer each time, up
    to 2 ms (the latency it adds to an idle log)."""
    cdef SharedOpsLogBroadcaster shared
    idle = 0.0001
    while True:
        shared = ref()
        if shared is None:
            return
        with shared._pump_lock:
            if shared._closed:
                return
            moved = shared._pump_once()
        shared = None
        if moved:
            idle = 0.0001
        else:
            _time.sleep(idle)
            idle = min(idle * 2, 0.002)


# Fork (gunicorn --preload): the child has no pump thread, and a pump lock
# held at fork would stay held there. The forking thread takes every pump
# lock first; the child forgets its pump and restarts it when it had
# subscriptions.
_SHARED = weakref.WeakSet()
_shared_held_for_fork = []


def _shared_before_fork():
    global _shared_held_for_fork
    _shared_held_for_fork = list(_SHARED)
    for s in _shared_held_for_fork:
        (<SharedOpsLogBroadcaster>s)._pump_lock.acquire()


def _shared_after_fork_parent():
    global _shared_held_for_fork
    for s in _shared_held_for_fork:
        (<SharedOpsLogBroadcaster>s)._pump_lock.release()
    _shared_held_for_fork = []


def _shared_after_fork_child():
    global _shared_held_for_fork
    cdef SharedOpsLogBroadcaster shared
    for s in _shared_held_for_fork:
        shared = <SharedOpsLogBroadcaster>s
        shared._pump_lock.release()
        if shared._pump is not None:
            shared._pump = None
            if shared._local._n_subs and not shared._closed:
                shared._start_pump()
    _shared_held_for_fork = []


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_shared_before_fork,
        after_in_parent=_shared_after_fork_parent,
        after_in_child=_shared_after_fork_child,
    )
