"""The forwarder: a host's entries appended to a Redis stream.

It reads a broadcaster like any dashboard does (an ordinary subscription,
never the publish path) from a background thread, so the publishing code
pays only for one more matching subscription. Each wake-up gathers what
arrived during ``interval`` and appends it as stream entries of at most
``batch_max`` lines each, all in one pipeline on a connection of its own:

    XADD <stream> MAXLEN ~ <maxlen> * h <host> i <incarnation> s <seqs> e <lines>

``s`` is the local seqs (``first-last`` when they are consecutive, as
they are unless the forwarder's buffer overflowed; else comma-separated), ``e`` the entries' JSON, one per
line. The local seq is the entry's origin within the host; the incarnation,
``<start time in ms>.<pid>``, tells a restarted process (whose seqs start
again at 1) from the one before, and lets a reader that was running before
it started count its first entries as lost if they never arrive.

Bounded: the subscription holds at most ``buf_size`` entries (``drop_newest``
counts the rest), a reply is awaited at most ``timeout`` seconds, and while
Redis is unreachable what arrives is drained and counted as lost, with one
log line when the outage starts and one when it ends; reconnection backs off
from 0.1 s to 1 s. Nothing it does can block or fail a publish.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from operator import methodcaller
from typing import Any, NamedTuple

import redis

from ._config import DEFAULT_MAXLEN, DEFAULT_STREAM, connect, redact_url
from ._ids import MAX_BATCH

__all__ = ("Forwarder", "ForwarderStats")

logger = logging.getLogger("fastopslog.redis")

_BACKOFF_MIN = 0.1
_BACKOFF_MAX = 1.0


class ForwarderStats(NamedTuple):
    """``sent``: entries Redis acknowledged; ``dropped``: entries the
    forwarder's buffer refused (it fell behind); ``lost``: entries drained
    but not acknowledged (Redis down or too slow; some may still have
    landed if only the reply was lost); ``outages``: how many times Redis
    became unreachable."""

    sent: int
    dropped: int
    lost: int
    outages: int


class Forwarder:
    """Forward ``broadcaster``'s entries to the stream at ``url``.

    ``broadcaster`` is anything with ``subscribe(filter, buf_size,
    overflow=...)`` whose entries have ``seq`` and ``to_json()``: an
    ``OpsLogBroadcaster`` or the host's shared log. ``start()`` checks the
    URL and credentials (:class:`RedisSetupError`) and starts the thread;
    ``close()`` stops it after a last flush. A context manager.

    ``incarnation`` names the life of the seqs: by default this process's
    (``<start ms>.<pid>``). A log whose seqs outlive a process (the host's
    shared log, whose forwarder may move to another worker) passes its own
    (``<creation ms>.<name>``), so the reader sees one continuous origin
    across the hand-over and counts what fell between as lost."""

    def __init__(
        self,
        broadcaster: Any,
        url: str,
        *,
        stream: str = DEFAULT_STREAM,
        maxlen: int = DEFAULT_MAXLEN,
        host: str | None = None,
        interval: float = 0.05,
        batch_max: int = 1000,
        buf_size: int = 65_536,
        timeout: float = 1.0,
        incarnation: str | None = None,
    ) -> None:
        if not callable(getattr(broadcaster, "subscribe", None)):
            raise TypeError("broadcaster must have subscribe() (an OpsLogBroadcaster or a shared log)")
        if not isinstance(stream, str) or not stream:
            raise ValueError("stream must be a non-empty string")
        if type(maxlen) is not int or maxlen < 1:
            raise ValueError("maxlen must be a positive int")
        if type(batch_max) is not int or not 1 <= batch_max <= MAX_BATCH:
            raise ValueError(f"batch_max must be an int from 1 to {MAX_BATCH}")
        if not isinstance(interval, (int, float)) or not 0 < interval <= 10:
            raise ValueError("interval must be a number of seconds above 0, at most 10")
        if not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        host = socket.gethostname() if host is None else host
        if not isinstance(host, str) or not host or "\n" in host:
            raise ValueError("host must be a non-empty one-line string")
        self.broadcaster = broadcaster
        self.url = url
        self.stream = stream
        self.maxlen = maxlen
        self.host = host
        if incarnation is None:
            incarnation = f"{time.time_ns() // 1_000_000}.{os.getpid()}"
        elif not isinstance(incarnation, str) or not incarnation.partition(".")[0].isdigit():
            raise ValueError("incarnation must be '<start time in ms>.<anything>'")
        self.incarnation = incarnation
        self.interval = float(interval)
        self.batch_max = batch_max
        self.buf_size = buf_size
        self.timeout = float(timeout)
        # Any: redis-py types its replies as unions of every RESP form.
        self._client: Any = None
        # The thread's own connection, written to directly: a redis-py
        # pipeline's bookkeeping per send (pool, retries, metrics) cost
        # more CPU than the XADD itself at a few sends a second.
        self._conn: Any = None
        self._sub: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._sent = 0
        self._lost = 0
        self._outages = 0

    def start(self) -> Forwarder:
        if self._thread is not None:
            raise RuntimeError("the forwarder is already started")
        self._client = connect(self.url, socket_timeout=self.timeout)
        self._conn = self._client.connection_pool.get_connection()
        self._sub = self.broadcaster.subscribe(None, self.buf_size, overflow="drop_newest")
        self._thread = threading.Thread(target=self._run, name="fastopslog-forwarder", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Stop after sending what is buffered (if Redis takes it within
        ``timeout``); idempotent."""
        self._stop.set()
        if self._sub is not None:
            self._sub.unsubscribe()  # wakes the thread; buffered entries stay readable
        if self._thread is not None:
            self._thread.join(timeout)
        if self._conn is not None:
            self._conn.disconnect()
        if self._client is not None:
            self._client.close()

    def __enter__(self) -> Forwarder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> ForwarderStats:
        dropped = self._sub.dropped if self._sub is not None else 0
        return ForwarderStats(self._sent, dropped, self._lost, self._outages)

    def _run(self) -> None:
        sub = self._sub
        conn = self._conn
        assert sub is not None and conn is not None
        down_since: float | None = None
        lost_in_outage = 0
        retry_at = 0.0
        backoff = _BACKOFF_MIN
        while True:
            batch = sub.drain(self.batch_max * 64)
            if not batch:
                if sub.closed:
                    return
                try:
                    batch = [sub.get(timeout=1.0)]
                except Exception:  # queue.Empty, or SubscriptionClosed: loop decides
                    continue
                if not self._stop.is_set():
                    # Let entries gather, so a busy host sends a few
                    # pipelines a second rather than one per entry.
                    self._stop.wait(self.interval)
                batch += sub.drain(self.batch_max * 64 - 1)
            if down_since is not None and time.monotonic() < retry_at:
                self._lost += len(batch)
                lost_in_outage += len(batch)
                continue
            try:
                self._send(conn, batch)
            except (redis.RedisError, OSError) as exc:
                # Replies still unread would answer the next send: start
                # afresh (the next send reconnects).
                conn.disconnect()
                self._lost += len(batch)
                lost_in_outage += len(batch)
                if down_since is None:
                    down_since = time.monotonic()
                    self._outages += 1
                    logger.warning(
                        "fastopslog: Redis at %s unreachable (%s); dropping and counting "
                        "entries until it is back",
                        redact_url(self.url),
                        exc,
                    )
                else:
                    backoff = min(backoff * 2, _BACKOFF_MAX)
                retry_at = time.monotonic() + backoff
                if self._stop.is_set():
                    self._lost += len(sub.drain())  # closing: what is left is lost too
                    return
                continue
            self._sent += len(batch)
            if down_since is not None:
                logger.warning(
                    "fastopslog: Redis at %s is back after %.1f s; %d entries were lost",
                    redact_url(self.url),
                    time.monotonic() - down_since,
                    lost_in_outage,
                )
                down_since = None
                lost_in_outage = 0
                backoff = _BACKOFF_MIN

    def _send(self, conn: Any, batch: list[Any]) -> None:
        """One ``XADD`` per ``batch_max`` entries, sent together; every
        reply read (an error reply raises ``ResponseError``)."""
        step = self.batch_max
        head = ("XADD", self.stream, "MAXLEN", "~", self.maxlen, "*", "h", self.host, "i", self.incarnation)
        commands = []
        for start in range(0, len(batch), step):
            part = batch[start : start + step]
            lines = "\n".join(map(_to_json, part))
            commands.append((*head, "s", _seqs(part), "e", lines))
        conn.send_packed_command(conn.pack_commands(commands), check_health=False)
        for _ in commands:
            conn.read_response()


# Each entry's JSON (rendered once per entry, cached on it), called from C.
_to_json = methodcaller("to_json")


def _seqs(part: list[Any]) -> str:
    first, last = part[0].seq, part[-1].seq
    if last - first == len(part) - 1:  # seqs only grow, so no gap in between
        return f"{first}-{last}"
    return ",".join([str(entry.seq) for entry in part])
