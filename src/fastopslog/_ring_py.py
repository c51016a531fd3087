"""Pure implementation: _Ring, a subscription's bounded buffer, with the
drop policy and its parked readers."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from ._entry_py import OpsLogEntry
from ._filter_py import OpsLogFilter


class _Ring:
    """A subscription's state as the broadcaster sees it. The user holds an
    :class:`OpsLogSubscription` around it; the broadcaster never references
    that wrapper, so dropping it lets the garbage collector unsubscribe."""

    __slots__ = ("filter", "route", "buf", "cap", "drop_oldest", "dropped", "closed", "waiters")

    def __init__(self, flt: OpsLogFilter, cap: int, drop_oldest: bool) -> None:
        self.filter = flt
        # First: a filter made without __init__ fails here, before any change.
        self.route = flt._route()
        self.buf: deque[OpsLogEntry] = deque()
        self.cap = cap
        self.drop_oldest = drop_oldest
        self.dropped = 0
        self.closed = True  # until subscribe() registers it
        self.waiters: list[Callable[[], object]] = []

    def push(self, entry: OpsLogEntry) -> int:
        """Offer ``entry``: 1 when a full buffer cost an entry (``entry``
        itself, or with drop_oldest the oldest buffered), else 0."""
        buf = self.buf
        if len(buf) < self.cap:
            buf.append(entry)
            return 0
        self.dropped += 1
        if self.drop_oldest:
            buf.popleft()
            buf.append(entry)
        return 1

    def pop(self) -> OpsLogEntry:
        """The oldest buffered entry; ``IndexError`` when there is none."""
        return self.buf.popleft()
