"""Pure implementation: OpsLogBroadcaster: history, seq, publish, subscribe
and priming, snapshot, stats, fork handling; ``prime``, the priming and
history-gap rule it shares with the Redis cluster view."""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Reversible
from time import time_ns
from typing import Protocol, TypeVar

from . import _waiting
from ._common import (
    DEFAULT_BUF_SIZE,
    DEFAULT_HISTORY_CAP,
    DROP_NEWEST,
    DROP_OLDEST,
    OpsLogStats,
    Overflow,
    check_capacity,
    check_int,
    refuse_copy,
    subscribe_options,
)
from ._entry_py import OpsLogEntry, _refuse_second_init, _set
from ._filter_py import _MATCH_ALL, OpsLogFilter, _Group, _Routes
from ._ring_py import _Ring
from ._subscription_py import OpsLogSubscription

_LOCK = threading.RLock()
# Fork (gunicorn --preload) only at a quiet moment: a child that inherited
# the lock held by a thread that does not exist there would deadlock, and
# one forked mid-publish would inherit half-updated state.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_LOCK.acquire, after_in_parent=_LOCK.release, after_in_child=_LOCK.release
    )


class OpsLogBroadcaster:
    """Fans each published entry out to matching subscriptions and keeps the
    last ``history_cap`` entries. ``publish`` never blocks on a subscriber."""

    __slots__ = (
        "_history",
        "_history_cap",
        "_seq",
        "_dropped",
        "_subs",
        "_subs_version",
        "_routes",
        "__weakref__",
    )

    def __init__(self, history_cap: int = DEFAULT_HISTORY_CAP) -> None:
        _refuse_second_init(self, "_seq")
        history_cap = max(0, check_capacity("history_cap", history_cap))
        self._history: deque[OpsLogEntry] | None = (
            deque(maxlen=history_cap) if history_cap else None
        )
        self._history_cap = history_cap
        self._seq = 0
        self._dropped = 0
        self._subs: dict[int, _Ring[OpsLogEntry]] = {}
        self._subs_version = 0
        self._routes: _Routes | None = None

    @property
    def history_cap(self) -> int:
        return self._history_cap

    __reduce__ = refuse_copy

    def __repr__(self) -> str:
        published, dropped, subscribers = self.stats()
        return (
            f"<OpsLogBroadcaster history_cap={self._history_cap} published={published}"
            f" dropped={dropped} subscribers={subscribers}>"
        )

    def publish(self, entry: OpsLogEntry) -> None:
        """Seal ``entry``, keep it in history and offer it to every matching
        subscription. Never blocks on, and never fails because of, one."""
        if type(entry) is not OpsLogEntry:
            raise TypeError(f"publish() needs an OpsLogEntry, not {type(entry).__name__}")
        wakers = None
        with _LOCK:
            sealed = entry._seq  # first: an entry made without __init__ fails here
            # Every call gets the next seq, so seq is also the publish count.
            seq = self._seq + 1
            self._seq = seq
            if sealed:
                entry = entry._copy()
            if entry._us == 0:
                _set(entry, "_us", time_ns() // 1000)
                _set(entry, "_json", None)
            _set(entry, "_seq", seq)
            if self._history is not None:
                self._history.append(entry)
            routes = self._routes
            if routes is not None:
                if routes.every:
                    wakers = self._fan_out(entry, routes.every, wakers)
                if routes.by_model:
                    groups = routes.by_model.get(entry.model)
                    if groups:
                        wakers = self._fan_out(entry, groups, wakers)
                if routes.by_account:
                    groups = routes.by_account.get(entry.account_id)
                    if groups:
                        wakers = self._fan_out(entry, groups, wakers)
                if routes.by_group:
                    groups = routes.by_group.get(entry.group_id)
                    if groups:
                        wakers = self._fan_out(entry, groups, wakers)
        if wakers:
            _waiting.wake(wakers)

    def _fan_out(
        self,
        entry: OpsLogEntry,
        groups: tuple[_Group, ...],
        wakers: list[Callable[[], object]] | None,
    ) -> list[Callable[[], object]] | None:
        """Push ``entry`` to the rings of each group it matches; the wakers
        of parked readers, to call after the lock is released."""
        dropped = 0
        for match, rings in groups:
            if match is not None and not match(entry):
                continue
            for ring in rings:
                dropped += ring.push(entry)
                if ring.waiters:
                    wakers = ring.take_waiters(wakers)
        if dropped:
            self._dropped += dropped
        return wakers

    def subscribe(
        self,
        filter: OpsLogFilter | None = None,
        buf_size: int = DEFAULT_BUF_SIZE,
        *,
        replay: int = 0,
        since_seq: int | None = None,
        overflow: Overflow = DROP_NEWEST,
    ) -> OpsLogSubscription:
        """A live subscription. ``replay=N`` primes it with the last N
        matching history entries, ``since_seq=S`` with every matching one
        after S; either way atomically with going live."""
        flt = _MATCH_ALL if filter is None else filter
        if type(flt) is not OpsLogFilter:
            raise TypeError(f"filter must be an OpsLogFilter or None, not {type(filter).__name__}")
        buf_size, replay, since_seq, overflow = subscribe_options(
            buf_size, replay, since_seq, overflow
        )
        ring: _Ring[OpsLogEntry] = _Ring(flt, buf_size, overflow == DROP_OLDEST)
        handle = OpsLogSubscription(self, ring, overflow)
        with _LOCK:
            if replay or since_seq is not None:
                handle._history_gap = self._prime(ring, replay, since_seq)
            self._subs[id(ring)] = ring
            ring.closed = False
            self._reroute()
        return handle

    def _prime(self, ring: _Ring[OpsLogEntry], replay: int, since_seq: int | None) -> bool:
        """Fill ``ring`` from history; whether entries after ``since_seq``
        may be missing. Called under the lock. Seqs are contiguous here, so
        the newest entry history no longer holds is the count less what it
        holds."""
        history = self._history or ()
        floor = self._seq - len(history)
        return prime(ring, history, replay, since_seq, ring.filter.matches, floor, self._seq)

    def _reroute(self) -> None:
        """Rebuild the routes after ``_subs`` changed; under the lock.

        Building allocates, so the garbage collector may run in the middle
        and unsubscribe a collected subscription from ``__del__`` on this
        very thread (the lock is re-entrant). That nested call reroutes
        itself; this one then notices and builds again, so stale routes
        never outlive the call."""
        self._subs_version += 1
        while True:
            version = self._subs_version
            # list(), not tuple(): it allocates before iterating, so a
            # nested call cannot change the dict under its iterator.
            routes = _Routes(list(self._subs.values())) if self._subs else None
            if version == self._subs_version:
                self._routes = routes
                return

    def _remove(self, ring: _Ring[OpsLogEntry]) -> None:
        with _LOCK:
            if ring.closed:
                return
            ring.closed = True
            self._subs.pop(id(ring), None)
            self._reroute()
            wakers = ring.take_waiters(None)
        _waiting.wake(wakers)

    def snapshot(self, filter: OpsLogFilter | None = None, max_entries: int = 0) -> list[OpsLogEntry]:
        """History oldest to newest, filtered, then the last ``max_entries``
        when that is positive."""
        if filter is not None and type(filter) is not OpsLogFilter:
            raise TypeError(f"filter must be an OpsLogFilter or None, not {type(filter).__name__}")
        max_entries = check_int("max_entries", max_entries)
        with _LOCK:
            entries = list(self._history) if self._history else []
        # Sealed entries never change, so filtering needs no lock.
        if filter is not None and filter != _MATCH_ALL:
            entries = [entry for entry in entries if filter.matches(entry)]
        if 0 < max_entries < len(entries):
            entries = entries[-max_entries:]
        return entries

    def stats(self) -> OpsLogStats:
        with _LOCK:
            return OpsLogStats(self._seq, self._dropped, len(self._subs))


class _Sequenced(Protocol):
    @property
    def seq(self) -> int: ...


Q = TypeVar("Q", bound=_Sequenced)


def prime(
    ring: _Ring[Q],
    history: Reversible[Q],
    replay: int,
    since_seq: int | None,
    matches: Callable[[Q], bool] | None,
    floor: int,
    last: int,
) -> bool:
    """Fill ``ring`` from ``history`` (oldest first, seqs increasing) with
    the entries ``matches`` takes (``None``: all): the last ``replay``, or
    every one after ``since_seq``; the newest ``ring.cap`` at most. Returns
    whether entries after ``since_seq`` may be missing: some did not fit,
    or ``since_seq`` is before ``floor`` (the seq of the newest entry the
    log had but history no longer holds) or after ``last`` (the newest
    seq). A floor, not a count: the cluster view's seqs are sparse stream
    ids. Called under the lock; shared with ``fastopslog.redis``."""
    picked: list[Q] = []
    want = ring.cap if since_seq is not None else min(replay, ring.cap)
    gap = False
    for entry in reversed(history):
        if since_seq is not None and entry.seq <= since_seq:
            break
        if matches is None or matches(entry):
            if len(picked) == want:
                gap = since_seq is not None
                break
            picked.append(entry)
    picked.reverse()
    ring.buf.extend(picked)
    if since_seq is None:
        return False
    return gap or since_seq < floor or since_seq > last
