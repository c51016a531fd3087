"""Pure implementation: a subscription's state as the broadcaster sees it,
with its bounded buffer."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from ._entry_py import OpsLogEntry
from ._filter_py import OpsLogFilter


class _Sub:
    """A subscription's state as the broadcaster sees it. The user holds an
    :class:`OpsLogSubscription` around it; the broadcaster never references
    that wrapper, so dropping it lets the garbage collector unsubscribe."""

    __slots__ = ("match", "buf", "cap", "drop_oldest", "dropped", "closed", "waiters", "route")

    def __init__(self, flt: OpsLogFilter, cap: int, drop_oldest: bool) -> None:
        kind, key, match = flt._route()
        self.route = (kind, key)
        self.match = match
        self.buf: deque[OpsLogEntry] = deque()
        self.cap = cap
        self.drop_oldest = drop_oldest
        self.dropped = 0
        self.closed = True  # until subscribe() registers it
        self.waiters: list[Callable[[], object]] = []
