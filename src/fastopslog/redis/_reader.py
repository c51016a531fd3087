"""The reader: the stream fed into a :class:`ClusterView`.

A background thread reads with ``XREAD BLOCK`` from the id of the last
stream entry it delivered: never ``$`` (which would skip whatever arrived
between two calls), so nothing is missed while Redis holds it. It starts
from the newest ``history_cap`` entries (``XREVRANGE``), or after a given
``last_seq`` when resuming. The client's socket timeout is the block time
plus a margin, so a long block is never mistaken for a dead server.

Losses are counted from the origins: each host's entries carry its local
seq, so a jump from seq 10 to seq 15 of one host's incarnation is 4 entries
lost upstream (a forwarder that fell behind or could not reach Redis, or
entries trimmed before this reader got to them); the view counts them and
each dashboard gets a ``lost`` event. A host that started after this reader
did (its incarnation's start time, by the hosts' clocks) is expected from
seq 1, so losing its first entries counts too. While Redis is unreachable the thread
retries with backoff (0.1 s to 1 s) and logs once per outage.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import partial
from itertools import repeat
from typing import Any, NamedTuple

import redis

from ._config import DEFAULT_STREAM, connect, redact_url
from ._ids import first_seq, parse_stream_id, seq_to_stream_id
from ._view import ClusterView, StreamEntry

__all__ = ("ReaderStats", "StreamReader")

logger = logging.getLogger("fastopslog.redis")

_BACKOFF_MIN = 0.1
_BACKOFF_MAX = 1.0
_MARGIN = 5.0
# StreamEntry from a (seq, host, origin_seq, line) tuple, in C.
_new_entry = partial(tuple.__new__, StreamEntry)


class ReaderStats(NamedTuple):
    """``delivered``: entries published into the view; ``lost``: entries
    that origins' seqs show were published but never arrived;
    ``unnamed``: entries of stream ids too large to pack into a seq (see
    ``_ids``), counted in ``lost`` too; ``outages``: times Redis was
    unreachable; ``origins``: host incarnations seen."""

    delivered: int
    lost: int
    unnamed: int
    outages: int
    origins: int


class StreamReader:
    """Read ``stream`` at ``url`` into ``view`` (a new :class:`ClusterView`
    of ``history_cap`` entries when not given). ``start()`` checks the URL
    and credentials (``RedisSetupError``), primes the view and starts the
    thread; ``close()`` stops it. A context manager."""

    def __init__(
        self,
        url: str,
        *,
        stream: str = DEFAULT_STREAM,
        view: ClusterView | None = None,
        history_cap: int = 10_000,
        last_seq: int | None = None,
        block: float = 1.0,
        count: int = 1000,
    ) -> None:
        if not isinstance(stream, str) or not stream:
            raise ValueError("stream must be a non-empty string")
        if not isinstance(block, (int, float)) or not 0 < block <= 60:
            raise ValueError("block must be a number of seconds above 0, at most 60")
        if type(count) is not int or count < 1:
            raise ValueError("count must be a positive int")
        self.url = url
        self.stream = stream
        self.view = view if view is not None else ClusterView(history_cap)
        self.block_ms = max(1, int(block * 1000))
        self.count = count
        self._last_id = seq_to_stream_id(last_seq) if last_seq is not None else None
        # Any: redis-py types its replies as unions of every RESP form.
        self._client: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        # (host, incarnation) -> the last local seq seen from it.
        self._origins: dict[tuple[str, str], int] = {}
        self._delivered = 0
        self._lost = 0
        self._unnamed = 0
        self._outages = 0
        self._started_ms = 0

    def start(self) -> StreamReader:
        if self._thread is not None:
            raise RuntimeError("the reader is already started")
        # A blocked XREAD must outlast the socket timeout (agno PR #9109).
        self._client = connect(self.url, socket_timeout=self.block_ms / 1000 + _MARGIN)
        self._started_ms = time.time_ns() // 1_000_000
        if self._last_id is None:
            self._prime()
        self._thread = threading.Thread(target=self._run, name="fastopslog-reader", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._client is not None:
            self._client.close()

    def __enter__(self) -> StreamReader:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> ReaderStats:
        return ReaderStats(
            self._delivered, self._lost, self._unnamed, self._outages, len(self._origins)
        )

    def _prime(self) -> None:
        """The newest ``history_cap`` entries into the view, and the id to
        read on from (``0-0``, everything, for an empty stream). A resume
        from before what was loaded is a history gap: the floor is the
        newest stream entry left out, or the newest trimmed one."""
        assert self._client is not None
        cap = self.view.history_cap
        loaded: list[Any] = []
        lines = 0
        upper = "+"
        while True:
            page = self._client.xrevrange(self.stream, max=upper, count=100)
            for record in page:
                if lines >= cap:
                    self._floor_at(record[0].decode())
                    break
                loaded.append(record)
                lines += record[1].get(b"e", b"").count(b"\n") + 1
            else:
                if len(page) == 100:
                    upper = f"({page[-1][0].decode()}"
                    continue
                if loaded:
                    # All of the stream is loaded; if MAXLEN (or anything)
                    # removed entries, they were older than the first.
                    info = self._client.xinfo_stream(self.stream)
                    if info["entries-added"] > info["length"]:
                        base = first_seq(*parse_stream_id(loaded[-1][0]))
                        if base:
                            self.view._prime_floor(base - 1)
            break
        loaded.reverse()
        if not loaded:
            newest = self._client.xrevrange(self.stream, count=1)
            self._last_id = newest[0][0].decode() if newest else "0-0"
            return
        self._deliver(loaded)

    def _floor_at(self, stream_id: str) -> None:
        ms, n = parse_stream_id(stream_id)
        seq = first_seq(ms, n)
        if seq is not None:
            self.view._prime_floor(seq | ((1 << 11) - 1))

    def _run(self) -> None:
        client = self._client
        assert client is not None
        down_since: float | None = None
        backoff = _BACKOFF_MIN
        while not self._stop.is_set():
            try:
                reply = client.xread(
                    {self.stream: self._last_id}, count=self.count, block=self.block_ms
                )
            except (redis.RedisError, OSError) as exc:
                if down_since is None:
                    down_since = time.monotonic()
                    self._outages += 1
                    logger.warning(
                        "fastopslog: reading the stream from Redis at %s failed (%s); retrying",
                        redact_url(self.url),
                        exc,
                    )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
                continue
            if down_since is not None:
                logger.warning(
                    "fastopslog: Redis at %s is back after %.1f s",
                    redact_url(self.url),
                    time.monotonic() - down_since,
                )
                down_since = None
                backoff = _BACKOFF_MIN
            if reply:
                self._deliver(reply[0][1])

    def _deliver(self, records: list[Any]) -> None:
        """Stream entries (``(id, fields)``, oldest first) into the view."""
        items: list[StreamEntry] = []
        origins = self._origins
        lost = 0
        for raw_id, fields in records:
            self._last_id = raw_id.decode()
            try:
                host = fields[b"h"].decode()
                origin = (host, fields[b"i"].decode())
                born = int(origin[1].partition(".")[0])
                seqs = _seqs(fields[b"s"])
                lines = fields[b"e"].decode().split("\n")
            except (KeyError, ValueError, UnicodeDecodeError):
                logger.warning("fastopslog: skipped stream entry %s: not a forwarded batch", raw_id)
                continue
            seen = origins.get(origin)
            if seen is None and born >= self._started_ms:
                seen = 0  # it started after this reader: its seqs count from 1
            if seen is not None and seqs[0] > seen + 1:
                lost += seqs[0] - seen - 1
            ms, n = parse_stream_id(raw_id)
            base = first_seq(ms, n)
            if base is None or len(seqs) != len(lines) or len(lines) > 1 << 11:
                self._unnamed += len(lines)
                lost += len(lines)
                origins[origin] = seqs[-1]
                continue
            # Seqs within a batch only grow: its gaps add up to its span
            # less its length.
            lost += seqs[-1] - seqs[0] + 1 - len(seqs)
            # base | index == base + index: the index bits of base are 0.
            items += map(
                _new_entry, zip(range(base, base + len(lines)), repeat(host), seqs, lines)
            )
            origins[origin] = seqs[-1]
        if lost:
            self._lost += lost
            self.view._count_lost(lost)
        if items:
            self._delivered += len(items)
            self.view._publish_batch(items)


def _seqs(raw: bytes) -> list[int]:
    """A batch's local seqs: ``first-last`` or comma-separated."""
    first, dash, last = raw.partition(b"-")
    if dash:
        return list(range(int(first), int(last) + 1))
    return [int(seq) for seq in raw.split(b",")]
