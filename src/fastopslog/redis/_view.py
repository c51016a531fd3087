"""The cluster view: a broadcaster-compatible object fed from the stream.

``admin_routes`` needs ``subscribe`` (with ``replay``/``since_seq``),
``snapshot`` and ``stats``, and reads each entry's ``seq`` (the SSE event
id) and ``to_json()``. Here ``seq`` is not a local publish count but the
packed stream id (``_ids``), which is sparse, so the local broadcaster's
arithmetic for "is this resume still covered by history" does not hold; the
view keeps its own small history and buffers instead, and says a resume is
covered when nothing after it was ever evicted (``_floor``).

Entries are :class:`StreamEntry`: the forwarded JSON line with its origin
(host name, and the seq it had on that host). The JSON is parsed only when
a filter needs the fields, so an unfiltered dashboard costs no parse.

Locking: one re-entrant lock guards history, counters, the subscription set
and every buffer; wakers run after it is released (as in the local
broadcaster).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from queue import Empty
from types import TracebackType
from typing import Any, NamedTuple

from .. import OpsLogEntry, OpsLogFilter, _waiting
from .._common import (
    DROP_NEWEST,
    DROP_OLDEST,
    OpsLogStats,
    Overflow,
    SubscriptionClosed,
    check_capacity,
    check_int,
    subscribe_options,
)

__all__ = ("ClusterView", "StreamEntry")


class StreamEntry(NamedTuple):
    """One entry of the cluster view: ``seq`` (the packed stream id),
    ``host`` and ``origin_seq`` (where it was published), ``line`` (its
    JSON as forwarded). ``to_json()`` is that JSON with ``host`` and
    ``origin_seq`` added; ``entry`` parses it into an
    :class:`~fastopslog.OpsLogEntry` (each time: only filters need it).
    A tuple, so the reader makes a batch of them without running Python
    code per entry."""

    seq: int
    host: str
    origin_seq: int
    line: str

    @property
    def entry(self) -> Any:
        return OpsLogEntry.from_dict(json.loads(self.line))

    def to_json(self) -> str:
        return f'{self.line[:-1]},"host":{json.dumps(self.host)},"origin_seq":{self.origin_seq}}}'


class _Sub:
    __slots__ = ("flt", "cap", "drop_oldest", "buf", "dropped", "upstream_lost", "closed", "waiters")

    def __init__(self, flt: Any, cap: int, drop_oldest: bool) -> None:
        self.flt = flt
        self.cap = cap
        self.drop_oldest = drop_oldest
        self.buf: deque[StreamEntry] = deque()
        self.dropped = 0
        self.upstream_lost = 0
        self.closed = False
        self.waiters: list[Callable[[], object]] = []


class ClusterView:
    """What the stream reader publishes into and ``admin_routes`` reads."""

    def __init__(self, history_cap: int = 10_000) -> None:
        history_cap = max(0, check_capacity("history_cap", history_cap))
        # Re-entrant: a subscription the garbage collector finds unreachable
        # unsubscribes from __del__, maybe inside a publish on this thread.
        self._lock = threading.RLock()
        self._history: deque[StreamEntry] = deque()
        self._history_cap = history_cap
        # The seq of the newest entry this view does not hold although the
        # stream had it (evicted, or older than what priming loaded): a
        # resume from before it has a gap.
        self._floor = 0
        self._last = 0
        self._published = 0
        self._dropped = 0
        self._lost = 0
        self._subs: set[_Sub] = set()

    @property
    def history_cap(self) -> int:
        return self._history_cap

    @property
    def last_seq(self) -> int:
        """The seq of the newest entry published, 0 before the first."""
        return self._last

    @property
    def upstream_lost(self) -> int:
        """Entries known to have been published on a host but never
        delivered here (``_count_lost``). ``admin_routes`` adds it to
        ``/stats``; a plain broadcaster has no such attribute."""
        return self._lost

    def _publish_batch(self, entries: list[StreamEntry]) -> None:
        """Add entries in increasing ``seq`` order, as the reader reads
        them; history, then every matching subscription. Whole batches move
        with deque operations: the reader delivers thousands at a time."""
        if not entries:
            return
        wakers: list[Callable[[], object]] = []
        with self._lock:
            if entries[0].seq <= self._last:
                raise ValueError(f"seq {entries[0].seq} is not after {self._last}")
            self._last = entries[-1].seq
            self._published += len(entries)
            history = self._history
            cap = self._history_cap
            over = len(history) + len(entries) - cap
            if over > 0:
                # The newest entry that will not be held any more.
                self._floor = (
                    history[over - 1].seq if over <= len(history) else entries[over - len(history) - 1].seq
                )
                if over >= len(history):
                    history.clear()
                    history.extend(entries[len(entries) - cap :] if cap else ())
                else:
                    for _ in range(over):
                        history.popleft()
                    history.extend(entries)
            else:
                history.extend(entries)
            for sub in self._subs:
                flt = sub.flt
                batch = entries if flt is None else [e for e in entries if flt.matches(e.entry)]
                if not batch:
                    continue
                buf = sub.buf
                room = sub.cap - len(buf)
                if len(batch) > room:
                    missed = len(batch) - room
                    sub.dropped += missed
                    self._dropped += missed
                    if sub.drop_oldest:
                        keep = batch[-sub.cap :]
                        for _ in range(min(len(buf), len(keep) - room)):
                            buf.popleft()
                        buf.extend(keep)
                    else:
                        buf.extend(batch[:room])
                else:
                    buf.extend(batch)
                if sub.waiters:
                    wakers += sub.waiters
                    sub.waiters.clear()
        _waiting.wake(wakers)

    def _count_lost(self, count: int) -> None:
        """``count`` entries were published upstream and will never arrive
        (a Redis outage, a trimmed stream, a forwarder that fell behind).
        Every live subscription counts them in ``upstream_lost``, apart from
        what it dropped itself, so each dashboard gets a ``lost`` event of
        its own reason with the count (nobody can tell which would have
        matched its filter, so each hears of all of them). No subscription
        misses an entry the others have, so batches stay shareable."""
        with self._lock:
            self._lost += count
            for sub in self._subs:
                sub.upstream_lost += count

    def _prime_floor(self, seq: int) -> None:
        """Before the first publish: entries up to ``seq`` are not held."""
        with self._lock:
            self._floor = max(self._floor, seq)

    def subscribe(
        self,
        filter: OpsLogFilter | None = None,
        buf_size: int = 1024,
        *,
        replay: int = 0,
        since_seq: int | None = None,
        overflow: Overflow = DROP_NEWEST,
    ) -> ViewSubscription:
        """As ``OpsLogBroadcaster.subscribe``: priming and going live are one
        step; ``history_gap`` when entries after ``since_seq`` are gone."""
        if filter is not None and not isinstance(filter, OpsLogFilter):
            raise TypeError(f"filter must be an OpsLogFilter or None, not {type(filter).__name__}")
        size, last, since, policy = subscribe_options(buf_size, replay, since_seq, overflow)
        sub = _Sub(filter if filter != OpsLogFilter() else None, size, policy == DROP_OLDEST)
        gap = False
        with self._lock:
            if last or since is not None:
                want = size if since is not None else min(last, size)
                picked: list[StreamEntry] = []
                for item in reversed(self._history):
                    if since is not None and item.seq <= since:
                        break
                    if sub.flt is None or sub.flt.matches(item.entry):
                        if len(picked) == want:
                            gap = since is not None
                            break
                        picked.append(item)
                picked.reverse()
                sub.buf.extend(picked)
                if since is not None:
                    gap = gap or since < self._floor or since > self._last
            self._subs.add(sub)
        return ViewSubscription(self, sub, gap)

    def _unsubscribe(self, sub: _Sub) -> None:
        with self._lock:
            if sub.closed:
                return
            sub.closed = True
            self._subs.discard(sub)
            wakers, sub.waiters = sub.waiters, []
        _waiting.wake(wakers)

    def snapshot(self, filter: OpsLogFilter | None = None, max_entries: int = 0) -> list[StreamEntry]:
        max_entries = check_int("max_entries", max_entries)
        with self._lock:
            entries = list(self._history)
        if filter is not None and filter != OpsLogFilter():
            entries = [item for item in entries if filter.matches(item.entry)]
        if 0 < max_entries < len(entries):
            entries = entries[-max_entries:]
        return entries

    def stats(self) -> OpsLogStats:
        """``published``: entries read from the stream; ``dropped``: misses
        of slow subscriptions (entries lost upstream are ``upstream_lost``)."""
        with self._lock:
            return OpsLogStats(self._published, self._dropped, len(self._subs))


class ViewSubscription:
    """A subscription to a :class:`ClusterView`, read like an
    ``OpsLogSubscription``."""

    __slots__ = ("_view", "_sub", "_history_gap")

    def __init__(self, view: ClusterView, sub: _Sub, gap: bool) -> None:
        self._view = view
        self._sub = sub
        self._history_gap = gap

    @property
    def history_gap(self) -> bool:
        return self._history_gap

    @property
    def dropped(self) -> int:
        return self._sub.dropped

    @property
    def upstream_lost(self) -> int:
        """Entries lost before they reached the view, since this
        subscription began: the SSE route's ``lost`` events of reason
        ``"upstream"`` (absent on a local broadcaster's subscriptions)."""
        return self._sub.upstream_lost

    @property
    def closed(self) -> bool:
        return self._sub.closed

    @property
    def buf_size(self) -> int:
        return self._sub.cap

    def __len__(self) -> int:
        return len(self._sub.buf)

    def unsubscribe(self) -> None:
        self._view._unsubscribe(self._sub)

    def __del__(self) -> None:
        view = getattr(self, "_view", None)
        if view is not None:
            view._unsubscribe(self._sub)

    def _pop_or_park(self, waker: Callable[[], object] | None) -> StreamEntry:
        sub = self._sub
        with self._view._lock:
            if sub.buf:
                return sub.buf.popleft()
            if sub.closed:
                raise SubscriptionClosed("the subscription is closed and empty")
            if waker is not None:
                sub.waiters.append(waker)
            return _waiting.EMPTY  # type: ignore[no-any-return]

    def _unpark(self, waker: Callable[[], object]) -> None:
        with self._view._lock:
            if waker in self._sub.waiters:
                self._sub.waiters.remove(waker)

    def get(self, timeout: float | None = None) -> StreamEntry:
        return _waiting.get(self, timeout)

    def get_nowait(self) -> StreamEntry:
        item = self._pop_or_park(None)
        if item is _waiting.EMPTY:
            raise Empty
        return item

    def drain(self, max_items: int | None = None) -> list[StreamEntry]:
        buf = self._sub.buf
        with self._view._lock:
            if max_items is None or max_items >= len(buf):
                items = list(buf)
                buf.clear()
            else:
                items = [buf.popleft() for _ in range(max_items)]
        return items

    async def aget(self) -> StreamEntry:
        return await _waiting.aget(self)

    def __iter__(self) -> Iterator[StreamEntry]:
        return self

    def __next__(self) -> StreamEntry:
        try:
            return _waiting.get(self, None)
        except SubscriptionClosed:
            raise StopIteration from None

    def __aiter__(self) -> AsyncIterator[StreamEntry]:
        return self

    async def __anext__(self) -> StreamEntry:
        try:
            return await _waiting.aget(self)
        except SubscriptionClosed:
            raise StopAsyncIteration from None

    def __enter__(self) -> ViewSubscription:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.unsubscribe()

    async def __aenter__(self) -> ViewSubscription:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.unsubscribe()
