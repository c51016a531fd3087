"""Blocking and asyncio reads, shared by both implementations.

A subscription implements two primitives, each atomic with respect to
publishes and ``unsubscribe()`` (the core: under the GIL, as no step gives it
up; the pure side: without its module-wide lock, each step one deque
operation, ordered against publishes as ``_subscription_py`` explains):

- ``_pop_or_park(waker)`` returns the oldest buffered entry; when the buffer
  is empty it raises :class:`SubscriptionClosed` if the subscription is
  closed, else registers ``waker`` (unless it is ``None``) and returns
  :data:`EMPTY`. A publish that delivers to the subscription, and
  ``unsubscribe()``, call each registered waker once and forget it, so a
  publish pays for a wake-up only when a reader is parked.
- ``_unpark(waker)`` forgets ``waker`` if it is still registered.

Checking and registering in one step is what makes a wake-up impossible to
miss: a publish either lands before the check, or finds the waker.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable, Iterable
from queue import Empty
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class _Sentinel:
    __slots__ = ()

    def __repr__(self) -> str:
        return "EMPTY"


EMPTY: Any = _Sentinel()


class Parkable(Protocol[T_co]):
    def _pop_or_park(self, waker: Callable[[], object] | None) -> T_co: ...
    def _unpark(self, waker: Callable[[], object]) -> None: ...


def wake(wakers: Iterable[Callable[[], object]]) -> None:
    """Call each waker once. One that fails goes to ``sys.unraisablehook``:
    a reader's waker must not fail the publish or unsubscribe that woke it."""
    for waker in wakers:
        try:
            waker()
        except BaseException as exc:
            sys.unraisablehook(_Unraisable(exc, waker))


class _Unraisable:
    """What ``sys.unraisablehook`` reads; Python offers no constructor."""

    def __init__(self, exc: BaseException, waker: object) -> None:
        self.exc_type: type[BaseException] = type(exc)
        self.exc_value: BaseException | None = exc
        self.exc_traceback = exc.__traceback__
        self.err_msg: str | None = "Exception ignored in a fastopslog waker"
        self.object = waker


def check_timeout(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number or None, not {type(timeout).__name__}")
    if not timeout >= 0:
        raise ValueError("timeout must be a non-negative number")
    if timeout == float("inf"):
        return None
    return float(timeout)


def get(sub: Parkable[T], timeout: float | None) -> T:
    """Block until an entry arrives (``queue.Empty`` after ``timeout``)."""
    timeout = check_timeout(timeout)
    entry = sub._pop_or_park(None)
    if entry is not EMPTY:
        return entry
    if timeout == 0:
        raise Empty
    deadline = None if timeout is None else time.monotonic() + timeout
    # A plain lock is the cheapest one-shot event: the waker releases it.
    # Acquiring it blocks without the GIL and is interruptible by Ctrl-C.
    gate = threading.Lock()
    gate.acquire()
    waker = gate.release
    while True:
        entry = sub._pop_or_park(waker)
        if entry is not EMPTY:
            return entry
        try:
            if deadline is None:
                woken = gate.acquire()
            else:
                woken = gate.acquire(True, max(0.0, deadline - time.monotonic()))
        except BaseException:
            sub._unpark(waker)
            raise
        if not woken:
            sub._unpark(waker)
            # One last look: an entry may have landed as the wait timed out.
            entry = sub._pop_or_park(None)
            if entry is not EMPTY:
                return entry
            raise Empty


class _AsyncWaker:
    """Resolves a future from any thread: directly on the loop's own thread,
    else with one ``call_soon_threadsafe``."""

    __slots__ = ("_loop", "_future", "_thread")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]):
        self._loop = loop
        self._future = future
        self._thread = threading.get_ident()

    def __call__(self) -> None:
        try:
            if threading.get_ident() == self._thread:
                _resolve(self._future)
            else:
                self._loop.call_soon_threadsafe(_resolve, self._future)
        except RuntimeError:
            # The loop is closed: nobody is left to wake.
            pass


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def aget(sub: Parkable[T]) -> T:
    """Await the next entry."""
    entry = sub._pop_or_park(None)
    if entry is not EMPTY:
        return entry
    loop = asyncio.get_running_loop()
    while True:
        future = loop.create_future()
        waker = _AsyncWaker(loop, future)
        entry = sub._pop_or_park(waker)
        if entry is not EMPTY:
            return entry
        try:
            await future
        finally:
            if not future.done() or future.cancelled():
                # Cancelled while parked: a waker that did not fire is ours
                # to take back.
                sub._unpark(waker)
