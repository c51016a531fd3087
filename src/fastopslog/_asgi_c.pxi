# ---------------------------------------------------------------------------
# The ASGI middleware's per-request path, compiled. ``asgi/middleware.py`` is
# the reference: its ``_Recorder`` and ``OpsLogMiddleware.__call__`` say what
# this does, line for line; on the core the middleware takes these instead
# (``_asgi_call``), so a request runs no bytecode of ours unless the app
# failed, streamed, disconnected or wrote to its context. Measured in
# BENCHMARKS.md ("OpsLogMiddleware at the floor"): what costs a request is
# interpreted frames (the wrappers of send and receive, the middleware's
# coroutine) and allocations, not the entry or the publish.

from cpython.contextvars cimport PyContextVar_Reset, PyContextVar_Set
from time import perf_counter_ns as _perf_counter_ns

cdef extern from *:
    """
    /* time.perf_counter_ns() without a Python call where it is known to be
       clock_gettime(CLOCK_MONOTONIC): Linux (CPython's _PyTime_GetPerfCounter
       reads that clock there). Elsewhere 0, and the caller asks Python. */
    #if defined(__linux__)
    #include <time.h>
    static int64_t fastopslog_monotonic_ns(void) {
        struct timespec ts;
        if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) return 0;
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    }
    #else
    static int64_t fastopslog_monotonic_ns(void) { return 0; }
    #endif
    """
    int64_t fastopslog_monotonic_ns() noexcept nogil


cdef inline int64_t _clock_ns() except? -1:
    # The clock of time.perf_counter_ns, which the middleware's Python slow
    # path (_entry) reads: the two must agree, as a latency spans both.
    cdef int64_t ns = fastopslog_monotonic_ns()
    if ns:
        return ns
    return _perf_counter_ns()


@cython.final
cdef class _Recorder:
    """One request's view of the response: the pure ``_Recorder``, with its
    state in C fields and ``send`` a C method."""

    cdef public object status
    cdef public object headers
    cdef public int64_t end
    cdef public bint chunked
    cdef public bint disconnected
    cdef object _send
    cdef object _receive

    def __cinit__(self, send, receive):
        self.status = 0
        self._send = send
        self._receive = receive

    def send(self, message):
        kind = message["type"]
        if kind == "http.response.body":
            if not message.get("more_body", False):
                if self.chunked:
                    return self._last(message)
                self.end = _clock_ns()
                return self._send(message)
            self.chunked = True
        elif kind == "http.response.start":
            self.status = message["status"]
            self.headers = message.get("headers")
        elif kind == "http.response.pathsend":
            return self._last(message)
        return self._send(message)

    async def _last(self, message):
        await self._send(message)
        self.end = _clock_ns()

    async def receive(self):
        message = await self._receive()
        if message["type"] == "http.disconnect" and not self.end:
            self.disconnected = True
        return message

    def streamed(self):
        if not self.chunked:
            return False
        for name, value in self.headers or ():
            name = bytes(name).lower()
            if name == b"content-length":
                return False
            if name == b"content-type" and bytes(value).startswith(b"text/event-stream"):
                return True
        return True


cdef OpsLogEntry _request_entry(object method, object path, object status, int64_t latency_ms):
    """``OpsLogEntry(method=, path=, status=, latency_ms=)`` without the
    keyword dict and the parsing of sixteen arguments: the same checks on
    the four fields set, the rest left at the defaults ``__cinit__`` gave."""
    cdef OpsLogEntry e = OpsLogEntry.__new__(OpsLogEntry)
    e.method = _str("method", method)
    e.path = _str("path", path)
    e.status = _int64("status", status)
    e.latency_ms = latency_ms
    PyObject_Hash(e.model)  # as __init__ does: the model's hash cached before any publish
    e._ready = True
    return e


def _asgi_call(context_type, current, state_key, logger):
    """``OpsLogMiddleware.__call__`` compiled, given the middleware module's
    context class, context variable, state key and logger. The slow paths
    (a path not seen yet, a failure, a stream, a disconnect, a context the
    app wrote to) call the middleware's own Python methods, as the pure
    ``__call__`` does."""

    async def __call__(self, scope, receive, send):
        cdef _Recorder rec
        cdef int64_t start
        cdef object token = None
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        known = self._paths.get(path)
        if known is None:
            known = self._learn(path)
        if not known:  # excluded
            await self.app(scope, receive, send)
            return
        start = _clock_ns()
        ctx = context_type()
        try:
            scope["state"][state_key] = ctx
        except KeyError:
            scope["state"] = {state_key: ctx}
        rec = _Recorder(send, receive)
        if self.contextvar:
            token = PyContextVar_Set(current, ctx)
        try:
            await self.app(scope, rec.receive, rec.send)
        except BaseException as exc:
            self._finish(scope, ctx, rec, start, exc)
            raise
        else:
            if ctx._fields or rec.disconnected or rec.chunked or not rec.end:
                self._finish(scope, ctx, rec, start, None)
            else:
                try:
                    self._publish_entry(
                        _request_entry(
                            scope["method"],
                            known if self._memoize and not scope.get("query_string") else self._path(scope),
                            rec.status,
                            (rec.end - start) // 1_000_000,
                        )
                    )
                except Exception:
                    logger.exception("fastopslog: could not publish the ops log entry")
        finally:
            if token is not None:
                PyContextVar_Reset(current, token)

    return __call__
