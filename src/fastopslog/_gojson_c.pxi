# Included by _opslog_c.pyx: Go-compatible JSON, rendered once per entry into a
# UTF-8 buffer (the pure side's _gojson.py).

cdef struct _Buf:
    char* data
    Py_ssize_t length
    Py_ssize_t cap
    # "YYYY-MM-DDTHH:MM:SS" of ``second`` (INT64_MIN, no time's second,
    # until the first): a batch's entries mostly fall in one second, and
    # the calendar arithmetic was the largest part of rendering one.
    int64_t second
    char stamp[19]

cdef const char* _HEX = b"0123456789abcdef"


cdef inline void _buf_init(_Buf* b) noexcept:
    b.data = NULL
    b.length = 0
    b.cap = 0
    b.second = INT64_MIN


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


cdef inline bint _plain(unsigned int c) noexcept:
    """An ASCII code Go writes as is: not a control, '"', '\\', '<', '>' or '&'."""
    return 0x20 <= c < 0x80 and c != 0x22 and c != 0x5C and c != 0x3C and c != 0x3E and c != 0x26


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
    i = 0
    if PyUnicode_IS_ASCII(text):
        # Paths, models and methods are ASCII that needs no escape: the
        # plain head is copied in one go, the loop below takes the rest.
        while i < n and _plain(PyUnicode_READ(kind, data, i)):
            i += 1
        memcpy(out, data, i)
        out += i
    for i in range(i, n):
        c = PyUnicode_READ(kind, data, i)
        if c < 0x80:
            if _plain(c):
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


cdef inline char* _digits(char* out, unsigned int value, int width) noexcept:
    """``value`` in ``width`` decimal digits, zero-padded (``width`` is
    enough: callers pass a field's fixed width); the end of what it wrote."""
    cdef int i
    for i in range(width - 1, -1, -1):
        out[i] = <char>(48 + value % 10)
        value //= 10
    return out + width


@cython.cdivision(False)
cdef void _stamp(char* out, int64_t seconds) noexcept:
    """``seconds`` since the epoch as "YYYY-MM-DDTHH:MM:SS" (19 bytes) in
    UTC. The date comes from days since the epoch by Howard Hinnant's
    ``civil_from_days``; ``//`` and ``%`` floor here, as in Python, so
    times before 1970 work. Digits are written by hand: snprintf was most
    of an entry's render time. Years are 1 to 9999 (``time_to_us``
    refuses others), so four digits hold one."""
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
    out = _digits(out, <unsigned int>year, 4)
    out[0] = b'-'
    out = _digits(out + 1, <unsigned int>month, 2)
    out[0] = b'-'
    out = _digits(out + 1, <unsigned int>day, 2)
    out[0] = b'T'
    out = _digits(out + 1, <unsigned int>(in_day // 3600), 2)
    out[0] = b':'
    out = _digits(out + 1, <unsigned int>(in_day // 60 % 60), 2)
    out[0] = b':'
    _digits(out + 1, <unsigned int>(in_day % 60), 2)


@cython.cdivision(False)
cdef int _put_time(_Buf* b, int64_t us) except -1:
    """RFC 3339 in UTC with Go's trimmed fraction."""
    cdef int64_t seconds = us // 1000000
    cdef int64_t fraction = us % 1000000
    if b.second != seconds:
        _stamp(b.stamp, seconds)
        b.second = seconds
    # "YYYY-MM-DDTHH:MM:SS.ffffffZ": 27 bytes at most.
    _reserve(b, 27)
    cdef char* out = b.data + b.length
    memcpy(out, b.stamp, 19)
    out += 19
    if fraction:
        out[0] = b'.'
        out = _digits(out + 1, <unsigned int>fraction, 6)
        while out[-1] == b'0':
            out -= 1
    out[0] = b'Z'
    b.length = out + 1 - b.data
    return 0


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
