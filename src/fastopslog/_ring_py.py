"""Pure implementation: _Ring, a subscription's bounded buffer, with the
drop policy and its parked readers.

Publishes push under the broadcaster's lock; readers pop and park without
it (see ``_opslog_py``), so every step either side takes on ``buf`` and
``waiters`` is one deque operation, atomic under the GIL.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from ._filter_py import OpsLogFilter

# What a ring holds: an OpsLogEntry, or a cluster view's StreamEntry
# (fastopslog.redis reuses the rings and the subscriptions around them).
E = TypeVar("E")


class _Ring(Generic[E]):
    """A subscription's state as the broadcaster sees it. The user holds an
    :class:`OpsLogSubscription` around it; the broadcaster never references
    that wrapper, so dropping it lets the garbage collector unsubscribe."""

    __slots__ = ("filter", "route", "buf", "cap", "drop_oldest", "dropped", "closed", "waiters")

    def __init__(self, flt: OpsLogFilter, cap: int, drop_oldest: bool) -> None:
        self.filter = flt
        # First: a filter made without __init__ fails here, before any change.
        self.route = flt._route()
        self.buf: deque[E] = deque()
        self.cap = cap
        self.drop_oldest = drop_oldest
        self.dropped = 0
        self.closed = True  # until subscribe() registers it
        self.waiters: deque[Callable[[], object]] = deque()

    def push(self, entry: E) -> int:
        """Offer ``entry``: 1 when a full buffer cost an entry (``entry``
        itself, or with drop_oldest the oldest buffered), else 0. Under the
        lock; a reader may pop meanwhile."""
        buf = self.buf
        if len(buf) < self.cap:
            buf.append(entry)
            return 0
        if self.drop_oldest:
            try:
                buf.popleft()  # the oldest makes room, unread: a drop
            except IndexError:
                # Readers emptied the buffer since the length check: room
                # without a drop.
                buf.append(entry)
                return 0
            buf.append(entry)
        self.dropped += 1
        return 1

    def push_many(self, entries: list[E]) -> int:
        """Offer ``entries``, oldest first, as ``push`` would one by one:
        how many a full buffer cost. Whole batches move with deque
        operations (the core has no such method: only the cluster view,
        which is pure Python, publishes batches). Under the lock; a reader
        may pop meanwhile: as in ``push``, the room it made may go unused,
        but what is counted dropped was dropped."""
        buf = self.buf
        room = self.cap - len(buf)
        if len(entries) <= room:
            buf.extend(entries)
            return 0
        if self.drop_oldest:
            keep = entries[-self.cap :]
            missed = len(entries) - len(keep)
            # The oldest make room, unread: drops, but for what readers
            # took meanwhile if they emptied the buffer.
            popleft = buf.popleft
            excess = max(0, len(buf) + len(keep) - self.cap)
            for popped in range(excess):
                try:
                    popleft()
                except IndexError:
                    excess = popped
                    break
            missed += excess
            buf.extend(keep)
        else:
            buf.extend(entries[:room])
            missed = len(entries) - room
        self.dropped += missed
        return missed

    def pop(self) -> E:
        """The oldest buffered entry; ``IndexError`` when there is none."""
        return self.buf.popleft()

    def take_waiters(
        self, wakers: list[Callable[[], object]] | None
    ) -> list[Callable[[], object]]:
        """Move every parked reader's waker to ``wakers``, to be called once
        the lock is released. One popleft at a time: a reader may park
        meanwhile, and is then either taken here or sees what woke it."""
        if wakers is None:
            wakers = []
        waiters = self.waiters
        while waiters:
            try:
                wakers.append(waiters.popleft())
            except IndexError:  # an _unpark took the last one
                break
        return wakers
