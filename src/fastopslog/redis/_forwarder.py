"""The forwarder: a host's entries appended to a Redis stream.

It reads a broadcaster like any dashboard does (an ordinary subscription,
never the publish path) from a background thread, so the publishing code
pays only for one more matching subscription. At most every ``interval``
(sooner when entries come fast: see ``_run``) the thread appends what
gathered as stream entries of at most ``batch_max`` lines each, all in one
pipeline on a connection of its own:

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

import contextlib
import logging
import os
import socket
import threading
import time
from typing import Any, NamedTuple

import redis

from .. import OpsLogEntry
from ._config import DEFAULT_MAXLEN, DEFAULT_STREAM, connect, redact_url
from ._ids import MAX_BATCH

__all__ = ("Forwarder", "ForwarderStats")

logger = logging.getLogger("fastopslog.redis")

_BACKOFF_MIN = 0.1
_BACKOFF_MAX = 1.0
# The shortest sleep between sends (at most 200 a second).
_MIN_WAIT = 0.005


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
        interval: float = 0.1,
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
        # Held until close() releases it: the thread's timed sleep is an
        # acquire of it, one C call, where an Event's wait runs a Condition
        # in Python on every wake.
        self._stop = threading.Lock()
        self._stop.acquire()
        self._sent = 0
        self._lost = 0
        self._outages = 0
        # The outage in progress (the thread's own state).
        self._down_since: float | None = None
        self._lost_in_outage = 0
        self._retry_at = 0.0
        self._backoff = _BACKOFF_MIN
        # Sent, replies not read yet (see _run).
        self._pending_replies = 0
        self._pending_entries = 0

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
        if self._sub is not None:
            self._sub.unsubscribe()  # buffered entries stay readable
        with contextlib.suppress(RuntimeError):  # a second close(): already released
            self._stop.release()
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
        """Read the replies to the last send and send what gathered since,
        then sleep until about ``batch_max`` more entries will have
        gathered (at the rate of the last wait), at most ``interval`` and
        at least ``_MIN_WAIT``. A timed poll, not a wait on the
        subscription: a parked reader would cost the publishing thread a
        wake-up per batch. The replies are read a wake later, not waited
        for. Both save wakes: each sleep-and-wake of this thread cost
        about 150 µs of CPU on 2 shared cores, more than sending 300
        entries. Sizing the sleep to the rate keeps wakes few at 10,000
        entries/s and latency low at 100,000. Idle, it wakes 1/``interval`` times a
        second to find nothing."""
        sub = self._sub
        conn = self._conn
        assert sub is not None and conn is not None
        limit = self.batch_max * 64
        wait = self.interval
        while True:
            # close() unsubscribes before it releases _stop, so once
            # stopping the buffer takes no more and the drain below empties it.
            slept = time.monotonic()
            stopping = self._stop.acquire(timeout=wait)
            slept = time.monotonic() - slept
            gathered = 0
            while True:
                self._settle(conn)
                batch = sub.drain(limit)
                if batch:
                    self._forward(conn, batch)
                    gathered += len(batch)
                if len(batch) < limit:
                    break
            if stopping:
                self._settle(conn)
                return
            wait = self.interval
            if gathered:
                wait = min(wait, max(_MIN_WAIT, slept * self.batch_max / gathered))

    def _forward(self, conn: Any, batch: list[Any]) -> None:
        """Send ``batch`` (its replies pending), or count it lost while
        Redis is down and the next try is not due."""
        if self._down_since is not None and time.monotonic() < self._retry_at:
            self._lost += len(batch)
            self._lost_in_outage += len(batch)
            return
        try:
            self._pending_replies += self._send(conn, batch)
        except (redis.RedisError, OSError) as exc:
            self._failed(conn, exc, len(batch))
            return
        self._pending_entries += len(batch)

    def _settle(self, conn: Any) -> None:
        """Read the replies to what was sent: its entries are sent, or,
        on any error, lost (some may have landed if only a reply was
        lost). Log an outage's end."""
        if not self._pending_replies:
            return
        count, self._pending_entries = self._pending_entries, 0
        replies, self._pending_replies = self._pending_replies, 0
        try:
            for _ in range(replies):
                conn.read_response()  # an error reply raises ResponseError
        except (redis.RedisError, OSError) as exc:
            self._failed(conn, exc, count)
            return
        self._sent += count
        if self._down_since is not None:
            logger.warning(
                "fastopslog: Redis at %s is back after %.1f s; %d entries were lost",
                redact_url(self.url),
                time.monotonic() - self._down_since,
                self._lost_in_outage,
            )
            self._down_since = None
            self._lost_in_outage = 0
            self._backoff = _BACKOFF_MIN

    def _failed(self, conn: Any, exc: Exception, count: int) -> None:
        """``count`` entries lost to ``exc``; an outage starts (logged
        once) or goes on (the next try backs off further)."""
        # Replies still unread would answer the next send: start afresh
        # (the next send reconnects).
        conn.disconnect()
        self._pending_replies = self._pending_entries = 0
        self._lost += count
        self._lost_in_outage += count
        if self._down_since is None:
            self._down_since = time.monotonic()
            self._outages += 1
            logger.warning(
                "fastopslog: Redis at %s unreachable (%s); dropping and counting "
                "entries until it is back",
                redact_url(self.url),
                exc,
            )
        else:
            self._backoff = min(self._backoff * 2, _BACKOFF_MAX)
        self._retry_at = time.monotonic() + self._backoff

    def _send(self, conn: Any, batch: list[Any]) -> int:
        """One ``XADD`` per ``batch_max`` entries, sent together; how many
        replies to read."""
        step = self.batch_max
        head = ("XADD", self.stream, "MAXLEN", "~", self.maxlen, "*", "h", self.host, "i", self.incarnation)
        render = OpsLogEntry._json_lines
        commands = []
        for start in range(0, len(batch), step):
            part = batch[start : start + step]
            commands.append((*head, "s", _seqs(part), "e", render(part)))
        conn.send_packed_command(conn.pack_commands(commands), check_health=False)
        return len(commands)


def _seqs(part: list[Any]) -> str:
    first, last = part[0].seq, part[-1].seq
    if last - first == len(part) - 1:  # seqs only grow, so no gap in between
        return f"{first}-{last}"
    return ",".join([str(entry.seq) for entry in part])
