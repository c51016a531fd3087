"""Stream ids as the routes' event ids.

An entry read from the stream is one line of one stream entry (a forwarded
batch), so it is named by the stream id ``<ms>-<n>`` and its index in the
batch. The admin routes use an entry's ``seq`` as the SSE event id and take
``Last-Event-ID`` back as a signed 64-bit integer, so the three are packed
into one, increasing with the stream's order:

    seq = ms << 21 | n << 11 | index      (42 + 10 + 11 = 63 bits)

42 bits of milliseconds last until the year 2109; ``n`` counts stream
entries added in one millisecond (a forwarder adds one per batch, every few
tens of milliseconds, so 1024 in one millisecond means hundreds of hosts
flushing at once); a batch holds at most 2048 entries (``MAX_BATCH``). An id
outside that range cannot be named: the reader counts its entries as lost
instead of reusing a seq.
"""

from __future__ import annotations

MS_BITS = 42
N_BITS = 10
INDEX_BITS = 11
MAX_BATCH = 1 << INDEX_BITS
_N_LIMIT = 1 << N_BITS
_MS_LIMIT = 1 << MS_BITS


def parse_stream_id(raw: bytes | str) -> tuple[int, int]:
    """``b"<ms>-<n>"`` as ``(ms, n)``; ``ValueError`` for anything else."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, sep, n = text.partition("-")
    if not sep or not ms.isdigit() or not n.isdigit():
        raise ValueError(f"not a stream id: {text!r}")
    return int(ms), int(n)


def first_seq(ms: int, n: int) -> int | None:
    """The seq of index 0 of stream entry ``<ms>-<n>``, or ``None`` when the
    id is out of the packable range."""
    if ms >= _MS_LIMIT or n >= _N_LIMIT:
        return None
    return (ms << (N_BITS + INDEX_BITS)) | (n << INDEX_BITS)


def seq_to_stream_id(seq: int) -> str:
    """The stream id of the batch holding ``seq`` (for ``XREAD`` after it)."""
    if not 0 <= seq < 1 << 63:
        raise ValueError(f"seq must be a non-negative 64-bit integer, not {seq!r}")
    return f"{seq >> (N_BITS + INDEX_BITS)}-{(seq >> INDEX_BITS) & (_N_LIMIT - 1)}"
