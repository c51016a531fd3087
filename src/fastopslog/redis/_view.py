"""The cluster view: a broadcaster-compatible object fed from the stream.

``admin_routes`` needs ``subscribe`` (with ``replay``/``since_seq``),
``snapshot`` and ``stats``, and reads each entry's ``seq`` (the SSE event
id) and ``to_json()``. The view is built from the pure implementation's
parts: its subscriptions are its rings (``_Ring``, with the drop policies)
read through the same subscription code (``_Subscription``: lock-free
reads, parking, iteration, ``__del__``), and priming is its ``prime``. What
is the view's own: ``seq`` is not a local publish count but the packed
stream id (``_ids``), which is sparse, so the view tracks the floor of its
history (the newest seq it no longer holds) for ``prime``'s gap rule; the
reader publishes whole batches; and losses upstream are counted.

Entries are :class:`StreamEntry`: the forwarded JSON line with its origin
(host name, and the seq it had on that host). The JSON is parsed only when
a filter needs the fields, once per batch, so an unfiltered dashboard costs
no parse.

Locking as in the pure implementation (``_opslog_py``): its one lock,
``_LOCK``, guards history, counters, the subscription set and every push;
readers never take it; wakers run after it is released.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

from .. import OpsLogEntry, OpsLogFilter, _waiting
from .._broadcaster_py import _LOCK, prime
from .._common import (
    DEFAULT_BUF_SIZE,
    DROP_NEWEST,
    DROP_OLDEST,
    OpsLogStats,
    Overflow,
    check_capacity,
    check_int,
    subscribe_options,
)
from .._filter_py import _FILTER_NAMES
from .._filter_py import OpsLogFilter as _PureFilter
from .._ring_py import _Ring
from .._subscription_py import _Subscription

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


class _ViewRing(_Ring[StreamEntry]):
    """A view subscription's ring, which also counts losses upstream.
    ``_Ring`` files its filter by the pure class's route, so ``filter`` is
    a pure copy of the caller's; the view matches with the caller's own,
    ``wanted`` (``None``: everything), on ``StreamEntry.entry``, which is
    of the same implementation (``fastopslog``'s, maybe the core)."""

    __slots__ = ("wanted", "upstream_lost")

    def __init__(self, wanted: OpsLogFilter | None, cap: int, drop_oldest: bool) -> None:
        fields: dict[str, Any] = {}
        if wanted is not None:
            fields = dict(zip(_FILTER_NAMES, wanted._value(), strict=True))
        super().__init__(_PureFilter(**fields), cap, drop_oldest)
        self.wanted = wanted
        self.upstream_lost = 0


class ViewSubscription(_Subscription[StreamEntry]):
    """A subscription to a :class:`ClusterView`, read like an
    ``OpsLogSubscription`` (by the same code), of :class:`StreamEntry`."""

    __slots__ = ()

    _ring: _ViewRing

    @property
    def upstream_lost(self) -> int:
        """Entries lost before they reached the view, since this
        subscription began: the SSE route's ``lost`` events of reason
        ``"upstream"`` (absent on a local broadcaster's subscriptions)."""
        return self._ring.upstream_lost


class ClusterView:
    """What the stream reader publishes into and ``admin_routes`` reads."""

    def __init__(self, history_cap: int = 10_000) -> None:
        history_cap = max(0, check_capacity("history_cap", history_cap))
        self._history: deque[StreamEntry] = deque(maxlen=history_cap)
        self._history_cap = history_cap
        # The seq of the newest entry this view does not hold although the
        # stream had it (evicted, or older than what priming loaded): a
        # resume from before it has a gap.
        self._floor = 0
        self._seq = 0  # the newest seq published: last_seq
        self._published = 0
        self._dropped = 0
        self._lost = 0
        self._subs: dict[int, _ViewRing] = {}

    @property
    def history_cap(self) -> int:
        return self._history_cap

    @property
    def last_seq(self) -> int:
        """The seq of the newest entry published, 0 before the first."""
        return self._seq

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
        with _LOCK:
            if entries[0].seq <= self._seq:
                raise ValueError(f"seq {entries[0].seq} is not after {self._seq}")
            self._seq = entries[-1].seq
            self._published += len(entries)
            history = self._history
            over = len(history) + len(entries) - self._history_cap
            if over > 0:
                # The newest entry that will not be held any more.
                self._floor = (
                    history[over - 1].seq if over <= len(history) else entries[over - len(history) - 1].seq
                )
            history.extend(entries)  # its maxlen evicts the oldest
            wakers = self._fan_out(entries)
        if wakers:
            _waiting.wake(wakers)

    def _fan_out(self, entries: list[StreamEntry]) -> list[Callable[[], object]] | None:
        """Push the batch, or what each filter takes of it (matched once
        per filter, parsed once for all), to every ring; the wakers of
        parked readers, to call after the lock is released."""
        wakers = None
        dropped = 0
        parsed: list[Any] | None = None
        matched: dict[OpsLogFilter, list[StreamEntry]] = {}
        # list(): it allocates before iterating, so a subscription collected
        # meanwhile (its __del__ unsubscribes, on this thread) cannot change
        # the dict under the iteration.
        for ring in list(self._subs.values()):
            wanted = ring.wanted
            if wanted is None:
                batch = entries
            else:
                taken = matched.get(wanted)
                if taken is None:
                    if parsed is None:
                        parsed = [item.entry for item in entries]
                    taken = matched[wanted] = [
                        item for item, entry in zip(entries, parsed, strict=True) if wanted.matches(entry)
                    ]
                if not taken:
                    continue
                batch = taken
            dropped += ring.push_many(batch)
            if ring.waiters:
                wakers = ring.take_waiters(wakers)
        self._dropped += dropped
        return wakers

    def _count_lost(self, count: int) -> None:
        """``count`` entries were published upstream and will never arrive
        (a Redis outage, a trimmed stream, a forwarder that fell behind).
        Every live subscription counts them in ``upstream_lost``, apart from
        what it dropped itself, so each dashboard gets a ``lost`` event of
        its own reason with the count (nobody can tell which would have
        matched its filter, so each hears of all of them). No subscription
        misses an entry the others have, so batches stay shareable."""
        with _LOCK:
            self._lost += count
            for ring in self._subs.values():
                ring.upstream_lost += count

    def _prime_floor(self, seq: int) -> None:
        """Before the first publish: entries up to ``seq`` are not held."""
        with _LOCK:
            self._floor = max(self._floor, seq)

    def subscribe(
        self,
        filter: OpsLogFilter | None = None,
        buf_size: int = DEFAULT_BUF_SIZE,
        *,
        replay: int = 0,
        since_seq: int | None = None,
        overflow: Overflow = DROP_NEWEST,
    ) -> ViewSubscription:
        """As ``OpsLogBroadcaster.subscribe``: priming and going live are one
        step; ``history_gap`` when entries after ``since_seq`` are gone."""
        if filter is not None and not isinstance(filter, OpsLogFilter):
            raise TypeError(f"filter must be an OpsLogFilter or None, not {type(filter).__name__}")
        size, replay, since_seq, policy = subscribe_options(buf_size, replay, since_seq, overflow)
        wanted = None if filter is None or filter == OpsLogFilter() else filter
        ring = _ViewRing(wanted, size, policy == DROP_OLDEST)
        handle = ViewSubscription(self, ring, policy)
        with _LOCK:
            if replay or since_seq is not None:
                matches = None if wanted is None else _matcher(wanted)
                handle._history_gap = prime(
                    ring, self._history, replay, since_seq, matches, self._floor, self._seq
                )
            self._subs[id(ring)] = ring
            ring.closed = False
        return handle

    def _remove(self, ring: _Ring[StreamEntry]) -> None:
        with _LOCK:
            if ring.closed:
                return
            ring.closed = True
            self._subs.pop(id(ring), None)
            wakers = ring.take_waiters(None)
        _waiting.wake(wakers)

    def snapshot(self, filter: OpsLogFilter | None = None, max_entries: int = 0) -> list[StreamEntry]:
        max_entries = check_int("max_entries", max_entries)
        with _LOCK:
            entries = list(self._history)
        if filter is not None and filter != OpsLogFilter():
            matches = _matcher(filter)
            entries = [item for item in entries if matches(item)]
        if 0 < max_entries < len(entries):
            entries = entries[-max_entries:]
        return entries

    def stats(self) -> OpsLogStats:
        """``published``: entries read from the stream; ``dropped``: misses
        of slow subscriptions (entries lost upstream are ``upstream_lost``)."""
        with _LOCK:
            return OpsLogStats(self._published, self._dropped, len(self._subs))


def _matcher(flt: OpsLogFilter) -> Callable[[StreamEntry], bool]:
    return lambda item: bool(flt.matches(item.entry))
