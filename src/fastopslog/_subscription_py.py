"""Pure implementation: OpsLogSubscription, the readers' handle (its code
in ``_Subscription``, which the Redis cluster view's subscriptions share)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from queue import Empty
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

from . import _waiting
from ._common import SubscriptionClosed, check_int, refuse_copy
from ._entry_py import OpsLogEntry
from ._filter_py import OpsLogFilter
from ._ring_py import E, _Ring

S = TypeVar("S", bound="_Subscription[Any]")


class _Owner(Protocol[E]):
    """What a subscription needs of its broadcaster: a way to leave it."""

    def _remove(self, ring: _Ring[E]) -> None: ...


class _Subscription(Generic[E]):
    """What :class:`OpsLogSubscription` does, generic in the entries it
    holds, so that the Redis cluster view's subscriptions (of StreamEntry,
    ``fastopslog.redis``) are this same code. The core has no such base."""

    __slots__ = ("_broadcaster", "_ring", "_overflow", "_history_gap", "__weakref__")

    def __init__(self, broadcaster: _Owner[E], ring: _Ring[E], overflow: str) -> None:
        self._broadcaster = broadcaster
        self._ring = ring
        self._overflow = overflow
        self._history_gap = False

    @property
    def filter(self) -> OpsLogFilter:
        return self._ring.filter

    @property
    def buf_size(self) -> int:
        return self._ring.cap

    @property
    def overflow(self) -> str:
        return self._overflow

    @property
    def closed(self) -> bool:
        return self._ring.closed

    @property
    def dropped(self) -> int:
        """Entries this subscription matched but missed for a full buffer."""
        return self._ring.dropped

    @property
    def history_gap(self) -> bool:
        """True when ``since_seq`` asked for history that was already gone."""
        return self._history_gap

    def __len__(self) -> int:
        return len(self._ring.buf)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self._ring.filter!r} buf_size={self._ring.cap}"
            f" buffered={len(self._ring.buf)} dropped={self._ring.dropped}"
            f" closed={self._ring.closed}>"
        )

    def unsubscribe(self) -> None:
        """Stop delivery; idempotent, safe from any thread. Buffered entries
        stay readable; readers waiting on an empty buffer are released."""
        self._broadcaster._remove(self._ring)

    __reduce__ = refuse_copy

    def __del__(self) -> None:
        broadcaster = getattr(self, "_broadcaster", None)  # None: __init__ never ran
        if broadcaster is not None:
            broadcaster._remove(self._ring)

    def _pop_or_park(self, waker: Callable[[], object] | None) -> E:
        # Without the lock, so that a reader never waits behind publishers:
        # each step is one atomic deque operation, and each side writes
        # before it reads. A publish pushes, then takes the waiters; this
        # parks, then looks at the buffer again: one of the two sees the
        # other. unsubscribe() sets ``closed`` after its last push, then
        # takes the waiters; this reads ``closed`` after parking and before
        # its last look, so closed and empty is really both.
        ring = self._ring
        try:
            return ring.pop()
        except IndexError:
            pass
        if waker is not None:
            ring.waiters.append(waker)
        closed = ring.closed
        try:
            entry = ring.pop()
        except IndexError:
            if not closed:
                return _waiting.EMPTY  # type: ignore[no-any-return]
            if waker is not None:
                self._unpark(waker)
            raise SubscriptionClosed("the subscription is closed and empty") from None
        if waker is not None:
            self._unpark(waker)
        return entry

    def _unpark(self, waker: Callable[[], object]) -> None:
        # One deque operation. Comparing wakers runs no Python code (bound
        # methods and _AsyncWaker compare by identity), so it is atomic.
        try:
            self._ring.waiters.remove(waker)
        except ValueError:
            pass  # already taken by a publish or unsubscribe() to be called

    def get(self, timeout: float | None = None) -> E:
        """The next entry, waiting for one (``queue.Empty`` after
        ``timeout`` seconds; ``SubscriptionClosed`` once closed and empty)."""
        return _waiting.get(self, timeout)

    def get_nowait(self) -> E:
        entry = self._pop_or_park(None)
        if entry is _waiting.EMPTY:
            raise Empty
        return entry

    def drain(self, max_items: int | None = None) -> list[E]:
        """Everything buffered (at most ``max_items``), without waiting."""
        if max_items is not None:
            max_items = check_int("max_items", max_items)
            if max_items < 0:
                raise ValueError("max_items must not be negative")
        ring = self._ring
        # What is buffered now, popped one at a time (lock-free, as
        # _pop_or_park): another reader may take some meanwhile.
        n = len(ring.buf)
        if max_items is not None and max_items < n:
            n = max_items
        items = []
        for _ in range(n):
            try:
                items.append(ring.pop())
            except IndexError:
                break
        return items

    async def aget(self) -> E:
        """Await the next entry (``SubscriptionClosed`` once closed and empty)."""
        return await _waiting.aget(self)

    def __iter__(self) -> Iterator[E]:
        return self

    def __next__(self) -> E:
        try:
            return _waiting.get(self, None)
        except SubscriptionClosed:
            raise StopIteration from None

    def __aiter__(self) -> AsyncIterator[E]:
        return self

    async def __anext__(self) -> E:
        try:
            return await _waiting.aget(self)
        except SubscriptionClosed:
            raise StopAsyncIteration from None

    def __enter__(self: S) -> S:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.unsubscribe()

    async def __aenter__(self: S) -> S:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.unsubscribe()


class OpsLogSubscription(_Subscription[OpsLogEntry]):
    """A live, bounded, filtered feed of entries. Read it with ``get``,
    ``get_nowait``, ``drain``, iteration or ``await aget()``; close it with
    ``unsubscribe()`` or a ``with`` block. Garbage collection unsubscribes a
    subscription that was dropped without it."""

    __slots__ = ()
