"""The pure-Python implementation: the reference, the fallback, the type source.

Locking: one re-entrant lock, ``_LOCK``, guards every broadcaster's history,
counters and subscriptions, every subscription's buffer, and the seal of
every entry. One lock for all makes sealing atomic across broadcasters (two
of them publishing the same fresh entry at once cannot both claim it) at the
price of one lock operation per publish; Python code runs one thread at a
time anyway. It is re-entrant because a subscription that the garbage
collector finds unreachable unsubscribes from ``__del__``, and the collector
may run inside a publish on the same thread. Readers block outside the lock
(see ``_waiting``) and publishes call wakers after releasing it.
"""

from __future__ import annotations

import json
import os
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from queue import Empty
from time import time_ns
from types import TracebackType
from typing import Literal

from . import _waiting
from ._common import (
    DEFAULT_BUF_SIZE,
    DEFAULT_HISTORY_CAP,
    DROP_NEWEST,
    DROP_OLDEST,
    FILTER_FIELDS,
    GO_ZERO_TIME,
    INT64_MAX,
    INT64_MIN,
    OpsLogStats,
    SubscriptionClosed,
    check_capacity,
    check_int,
    check_str,
    construct,
    entry_kwargs_from_dict,
    entry_repr,
    filter_repr,
    refuse_copy,
    subscribe_options,
    time_to_us,
)
from ._gojson import format_time, quote

__all__: tuple[str, ...] = (
    "OpsLogBroadcaster",
    "OpsLogEntry",
    "OpsLogFilter",
    "OpsLogSubscription",
)

Overflow = Literal["drop_newest", "drop_oldest"]

_set = object.__setattr__
_FILTER_NAMES = tuple(name for name, _, _ in FILTER_FIELDS)
_LOCK = threading.RLock()
# Fork (gunicorn --preload) only at a quiet moment: a child that inherited
# the lock held by a thread that does not exist there would deadlock, and
# one forked mid-publish would inherit half-updated state.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_LOCK.acquire, after_in_parent=_LOCK.release, after_in_child=_LOCK.release
    )


def _refuse_second_init(obj: object, attribute: str) -> None:
    # Calling __init__ again would change a live, maybe published, object.
    if hasattr(obj, attribute):
        raise TypeError(f"{type(obj).__name__} is initialised once")


def _ints(*values: object) -> bool:
    for value in values:
        if type(value) is not int or not INT64_MIN <= value <= INT64_MAX:
            return False
    return True


def _strs(*values: object) -> bool:
    for value in values:
        if type(value) is not str:
            return False
    return True


class OpsLogEntry:
    """One request's ops log event. Immutable; sealed by its first publish."""

    __slots__ = (
        "_us",
        "method",
        "path",
        "status",
        "latency_ms",
        "model",
        "stream",
        "account_id",
        "group_id",
        "api_key_id",
        "user_id",
        "turns",
        "prompt_chars",
        "error_message",
        "error_detail",
        "upstream_status",
        "_seq",
        "_json",
        "__weakref__",
    )

    _us: int
    method: str
    path: str
    status: int
    latency_ms: int
    model: str
    stream: bool
    account_id: int
    group_id: int
    api_key_id: int
    user_id: int
    turns: int
    prompt_chars: int
    error_message: str
    error_detail: str
    upstream_status: int
    _seq: int
    _json: str | None

    def __init__(
        self,
        *,
        time: float = 0.0,
        method: str = "",
        path: str = "",
        status: int = 0,
        latency_ms: int = 0,
        model: str = "",
        stream: bool = False,
        account_id: int = 0,
        group_id: int = 0,
        api_key_id: int = 0,
        user_id: int = 0,
        turns: int = 0,
        prompt_chars: int = 0,
        error_message: str = "",
        error_detail: str = "",
        upstream_status: int = 0,
    ) -> None:
        _refuse_second_init(self, "_seq")
        us = time_to_us(time)
        if not _strs(method, path, model, error_message, error_detail):
            method = check_str("method", method)
            path = check_str("path", path)
            model = check_str("model", model)
            error_message = check_str("error_message", error_message)
            error_detail = check_str("error_detail", error_detail)
        if not _ints(
            status, latency_ms, account_id, group_id, api_key_id,
            user_id, turns, prompt_chars, upstream_status,
        ):
            status = check_int("status", status)
            latency_ms = check_int("latency_ms", latency_ms)
            account_id = check_int("account_id", account_id)
            group_id = check_int("group_id", group_id)
            api_key_id = check_int("api_key_id", api_key_id)
            user_id = check_int("user_id", user_id)
            turns = check_int("turns", turns)
            prompt_chars = check_int("prompt_chars", prompt_chars)
            upstream_status = check_int("upstream_status", upstream_status)
        if type(stream) is not bool:
            raise TypeError(f"stream must be a bool, not {type(stream).__name__}")
        _set(self, "_us", us)
        _set(self, "method", method)
        _set(self, "path", path)
        _set(self, "status", status)
        _set(self, "latency_ms", latency_ms)
        _set(self, "model", model)
        _set(self, "stream", stream)
        _set(self, "account_id", account_id)
        _set(self, "group_id", group_id)
        _set(self, "api_key_id", api_key_id)
        _set(self, "user_id", user_id)
        _set(self, "turns", turns)
        _set(self, "prompt_chars", prompt_chars)
        _set(self, "error_message", error_message)
        _set(self, "error_detail", error_detail)
        _set(self, "upstream_status", upstream_status)
        _set(self, "_seq", 0)
        _set(self, "_json", None)

    @property
    def time(self) -> float:
        """Seconds since the epoch, to the microsecond; 0.0 until stamped."""
        return self._us / 1e6

    @property
    def seq(self) -> int:
        """Publish order within the broadcaster that sealed it; 0 if never
        published."""
        return self._seq

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"OpsLogEntry is immutable: use replace({name}=...)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("OpsLogEntry is immutable")

    def _key(self) -> tuple[object, ...]:
        return (
            self._us, self.method, self.path, self.status, self.latency_ms,
            self.model, self.stream, self.account_id, self.group_id,
            self.api_key_id, self.user_id, self.turns, self.prompt_chars,
            self.error_message, self.error_detail, self.upstream_status,
        )

    def __eq__(self, other: object) -> bool:
        # ``seq`` is where an entry was published, not what it says.
        if type(other) is not OpsLogEntry:
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return entry_repr(self)

    def __reduce__(self) -> tuple[object, ...]:
        # A copy is a new, unpublished entry with the same value.
        return (type(self)._build, (self._us, self._fields()))

    def _fields(self) -> dict[str, object]:
        return {
            "method": self.method, "path": self.path, "status": self.status,
            "latency_ms": self.latency_ms, "model": self.model,
            "stream": self.stream, "account_id": self.account_id,
            "group_id": self.group_id, "api_key_id": self.api_key_id,
            "user_id": self.user_id, "turns": self.turns,
            "prompt_chars": self.prompt_chars,
            "error_message": self.error_message,
            "error_detail": self.error_detail,
            "upstream_status": self.upstream_status,
        }

    @classmethod
    def _build(cls, us: int, fields: dict[str, object]) -> OpsLogEntry:
        entry = cls(**fields)  # type: ignore[arg-type]
        _set(entry, "_us", us)
        return entry

    def replace(self, **changes: object) -> OpsLogEntry:
        """A new, unpublished entry with ``changes`` applied."""
        if "time" in changes:
            us = time_to_us(changes.pop("time"))
        else:
            us = self._us
        fields = self._fields()
        for name in changes:
            if name not in fields:
                raise TypeError(f"replace() got an unexpected keyword argument {name!r}")
        fields.update(changes)
        return self._build(us, fields)

    def to_json(self) -> str:
        """The entry as Go's ``json.Marshal`` writes it; rendered once."""
        rendered = self._json
        if rendered is None:
            rendered = self._render()
            _set(self, "_json", rendered)
        return rendered

    def _render(self) -> str:
        out = ['{"time":"', format_time(self._us) if self._us else GO_ZERO_TIME, '"']
        if self.method:
            out.append(',"method":' + quote(self.method))
        if self.path:
            out.append(',"path":' + quote(self.path))
        out.append(f',"status":{self.status},"latency_ms":{self.latency_ms}')
        if self.model:
            out.append(',"model":' + quote(self.model))
        if self.stream:
            out.append(',"stream":true')
        for key, number in (
            ("account_id", self.account_id),
            ("group_id", self.group_id),
            ("api_key_id", self.api_key_id),
            ("user_id", self.user_id),
            ("turns", self.turns),
            ("prompt_chars", self.prompt_chars),
        ):
            if number:
                out.append(f',"{key}":{number}')
        if self.error_message:
            out.append(',"error_message":' + quote(self.error_message))
        if self.error_detail:
            out.append(',"error_detail":' + quote(self.error_detail))
        if self.upstream_status:
            out.append(f',"upstream_status":{self.upstream_status}')
        out.append("}")
        return "".join(out)

    def to_dict(self) -> dict[str, object]:
        """What ``json.loads(self.to_json())`` gives: Go's keys, order and
        omissions, ``time`` as an RFC 3339 string."""
        result: dict[str, object] = json.loads(self.to_json())
        return result

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> OpsLogEntry:
        """Read back what :meth:`to_dict` (or Go) writes."""
        us, fields = entry_kwargs_from_dict(data)
        return cls._build(us, fields)

    def _sealed_copy(self, seq: int) -> OpsLogEntry:
        copy = self._build(self._us, self._fields())
        _set(copy, "_seq", seq)
        _set(copy, "_json", self._json)
        return copy


class OpsLogFilter:
    """Which entries a subscriber wants. Zero or empty fields match
    everything (so do negative ones, as in Go); set fields are AND-ed."""

    __slots__ = ("min_status", "model", "account_id", "group_id", "min_latency_ms")

    min_status: int
    model: str
    account_id: int
    group_id: int
    min_latency_ms: int

    def __init__(
        self,
        *,
        min_status: int = 0,
        model: str = "",
        account_id: int = 0,
        group_id: int = 0,
        min_latency_ms: int = 0,
    ) -> None:
        _refuse_second_init(self, "min_status")
        _set(self, "min_status", check_int("min_status", min_status))
        _set(self, "model", check_str("model", model))
        _set(self, "account_id", check_int("account_id", account_id))
        _set(self, "group_id", check_int("group_id", group_id))
        _set(self, "min_latency_ms", check_int("min_latency_ms", min_latency_ms))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("OpsLogFilter is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("OpsLogFilter is immutable")

    def _key(self) -> tuple[object, ...]:
        return (self.min_status, self.model, self.account_id, self.group_id, self.min_latency_ms)

    def __eq__(self, other: object) -> bool:
        if type(other) is not OpsLogFilter:
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return filter_repr(self)

    def __reduce__(self) -> tuple[object, ...]:
        return (construct, (type(self), dict(zip(_FILTER_NAMES, self._key(), strict=True))))

    def matches(self, entry: OpsLogEntry) -> bool:
        """Whether ``entry`` passes, exactly as Go's ``matches``."""
        if type(entry) is not OpsLogEntry:
            raise TypeError(f"matches() needs an OpsLogEntry, not {type(entry).__name__}")
        return (
            (self.min_status <= 0 or entry.status >= self.min_status)
            and (not self.model or entry.model == self.model)
            and (self.account_id <= 0 or entry.account_id == self.account_id)
            and (self.group_id <= 0 or entry.group_id == self.group_id)
            and (self.min_latency_ms <= 0 or entry.latency_ms >= self.min_latency_ms)
        )

    def _route(self) -> tuple[str, object, Callable[[OpsLogEntry], bool] | None]:
        """Where a publish finds this filter's subscriber: by the first
        equality field that is set (model, account, group), or among those
        checked for every entry; and what is left to check once found."""
        ranges = self.min_status > 0 or self.min_latency_ms > 0
        equalities = [
            (kind, key)
            for kind, key, is_set in (
                ("model", self.model, bool(self.model)),
                ("account", self.account_id, self.account_id > 0),
                ("group", self.group_id, self.group_id > 0),
            )
            if is_set
        ]
        if not equalities:
            return "every", None, self.matches if ranges else None
        kind, key = equalities[0]
        residual = ranges or len(equalities) > 1
        return kind, key, self.matches if residual else None


_MATCH_ALL = OpsLogFilter()


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


class _Routes:
    """Live subscriptions grouped for fan-out; rebuilt when they change, so
    a publish only reads it."""

    __slots__ = ("every", "by_model", "by_account", "by_group")

    def __init__(self, subs: list[_Sub]) -> None:
        every: list[_Sub] = []
        indexed: dict[str, dict[object, list[_Sub]]] = {"model": {}, "account": {}, "group": {}}
        for sub in subs:
            kind, key = sub.route
            if kind == "every":
                every.append(sub)
            else:
                indexed[kind].setdefault(key, []).append(sub)
        self.every = tuple(every)
        self.by_model = {k: tuple(v) for k, v in indexed["model"].items()}
        self.by_account = {k: tuple(v) for k, v in indexed["account"].items()}
        self.by_group = {k: tuple(v) for k, v in indexed["group"].items()}


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
        self._subs: dict[int, _Sub] = {}
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
                entry = entry._sealed_copy(seq)
            else:
                if entry._us == 0:
                    _set(entry, "_us", time_ns() // 1000)
                    _set(entry, "_json", None)
                _set(entry, "_seq", seq)
            if self._history is not None:
                self._history.append(entry)
            routes = self._routes
            if routes is not None:
                if routes.every:
                    wakers = self._deliver(entry, routes.every, wakers)
                if routes.by_model:
                    subs = routes.by_model.get(entry.model)
                    if subs:
                        wakers = self._deliver(entry, subs, wakers)
                if routes.by_account:
                    subs = routes.by_account.get(entry.account_id)
                    if subs:
                        wakers = self._deliver(entry, subs, wakers)
                if routes.by_group:
                    subs = routes.by_group.get(entry.group_id)
                    if subs:
                        wakers = self._deliver(entry, subs, wakers)
        if wakers:
            _waiting.wake(wakers)

    def _deliver(
        self,
        entry: OpsLogEntry,
        subs: tuple[_Sub, ...],
        wakers: list[Callable[[], object]] | None,
    ) -> list[Callable[[], object]] | None:
        dropped = 0
        for sub in subs:
            match = sub.match
            if match is not None and not match(entry):
                continue
            buf = sub.buf
            if len(buf) >= sub.cap:
                dropped += 1
                sub.dropped += 1
                if not sub.drop_oldest:
                    continue
                buf.popleft()
            buf.append(entry)
            if sub.waiters:
                if wakers is None:
                    wakers = []
                wakers += sub.waiters
                sub.waiters.clear()
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
        sub = _Sub(flt, buf_size, overflow == DROP_OLDEST)
        handle = OpsLogSubscription(self, sub, flt, overflow)
        with _LOCK:
            if replay or since_seq is not None:
                handle._history_gap = self._prime(sub, flt, replay, since_seq)
            self._subs[id(sub)] = sub
            sub.closed = False
            self._reroute()
        return handle

    def _prime(
        self, sub: _Sub, flt: OpsLogFilter, replay: int, since_seq: int | None
    ) -> bool:
        """Fill ``sub`` from history (newest ``buf_size`` at most); whether
        entries after ``since_seq`` may be missing. Called under the lock."""
        history = self._history or ()
        picked: list[OpsLogEntry] = []
        want = sub.cap if since_seq is not None else min(replay, sub.cap)
        gap = False
        for entry in reversed(history):
            if since_seq is not None and entry._seq <= since_seq:
                break
            if flt.matches(entry):
                if len(picked) == want:
                    gap = since_seq is not None
                    break
                picked.append(entry)
        picked.reverse()
        sub.buf.extend(picked)
        if since_seq is None:
            return False
        first_kept = self._seq - len(history) + 1
        return gap or since_seq + 1 < first_kept or since_seq > self._seq

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

    def _unsubscribe(self, sub: _Sub) -> None:
        with _LOCK:
            if sub.closed:
                return
            sub.closed = True
            self._subs.pop(id(sub), None)
            self._reroute()
            wakers, sub.waiters = sub.waiters, []
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


class OpsLogSubscription:
    """A live, bounded, filtered feed of entries. Read it with ``get``,
    ``get_nowait``, ``drain``, iteration or ``await aget()``; close it with
    ``unsubscribe()`` or a ``with`` block. Garbage collection unsubscribes a
    subscription that was dropped without it."""

    __slots__ = ("_broadcaster", "_sub", "_filter", "_overflow", "_history_gap", "__weakref__")

    def __init__(
        self, broadcaster: OpsLogBroadcaster, sub: _Sub, flt: OpsLogFilter, overflow: str
    ) -> None:
        self._broadcaster = broadcaster
        self._sub = sub
        self._filter = flt
        self._overflow = overflow
        self._history_gap = False

    @property
    def filter(self) -> OpsLogFilter:
        return self._filter

    @property
    def buf_size(self) -> int:
        return self._sub.cap

    @property
    def overflow(self) -> str:
        return self._overflow

    @property
    def closed(self) -> bool:
        return self._sub.closed

    @property
    def dropped(self) -> int:
        """Entries this subscription matched but missed for a full buffer."""
        return self._sub.dropped

    @property
    def history_gap(self) -> bool:
        """True when ``since_seq`` asked for history that was already gone."""
        return self._history_gap

    def __len__(self) -> int:
        return len(self._sub.buf)

    def __repr__(self) -> str:
        return (
            f"<OpsLogSubscription {self._filter!r} buf_size={self._sub.cap}"
            f" buffered={len(self._sub.buf)} dropped={self._sub.dropped}"
            f" closed={self._sub.closed}>"
        )

    def unsubscribe(self) -> None:
        """Stop delivery; idempotent, safe from any thread. Buffered entries
        stay readable; readers waiting on an empty buffer are released."""
        self._broadcaster._unsubscribe(self._sub)

    __reduce__ = refuse_copy

    def __del__(self) -> None:
        broadcaster = getattr(self, "_broadcaster", None)  # None: __init__ never ran
        if broadcaster is not None:
            broadcaster._unsubscribe(self._sub)

    def _pop_or_park(self, waker: Callable[[], object] | None) -> OpsLogEntry:
        sub = self._sub
        with _LOCK:
            if sub.buf:
                return sub.buf.popleft()
            if sub.closed:
                raise SubscriptionClosed("the subscription is closed and empty")
            if waker is not None:
                sub.waiters.append(waker)
            return _waiting.EMPTY  # type: ignore[no-any-return]

    def _unpark(self, waker: Callable[[], object]) -> None:
        with _LOCK:
            try:
                self._sub.waiters.remove(waker)
            except ValueError:
                pass

    def get(self, timeout: float | None = None) -> OpsLogEntry:
        """The next entry, waiting for one (``queue.Empty`` after
        ``timeout`` seconds; ``SubscriptionClosed`` once closed and empty)."""
        return _waiting.get(self, timeout)

    def get_nowait(self) -> OpsLogEntry:
        entry = self._pop_or_park(None)
        if entry is _waiting.EMPTY:
            raise Empty
        return entry

    def drain(self, max_items: int | None = None) -> list[OpsLogEntry]:
        """Everything buffered (at most ``max_items``), without waiting."""
        if max_items is not None:
            max_items = check_int("max_items", max_items)
            if max_items < 0:
                raise ValueError("max_items must not be negative")
        buf = self._sub.buf
        with _LOCK:
            if max_items is None or max_items >= len(buf):
                items = list(buf)
                buf.clear()
            else:
                items = [buf.popleft() for _ in range(max_items)]
        return items

    async def aget(self) -> OpsLogEntry:
        """Await the next entry (``SubscriptionClosed`` once closed and empty)."""
        return await _waiting.aget(self)

    def __iter__(self) -> Iterator[OpsLogEntry]:
        return self

    def __next__(self) -> OpsLogEntry:
        try:
            return _waiting.get(self, None)
        except SubscriptionClosed:
            raise StopIteration from None

    def __aiter__(self) -> AsyncIterator[OpsLogEntry]:
        return self

    async def __anext__(self) -> OpsLogEntry:
        try:
            return await _waiting.aget(self)
        except SubscriptionClosed:
            raise StopAsyncIteration from None

    def __enter__(self) -> OpsLogSubscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.unsubscribe()

    async def __aenter__(self) -> OpsLogSubscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.unsubscribe()


# The shared-memory log (docs/shared.md) is the compiled core's alone.
from ._shared_py import SharedOpsLogBroadcaster, unlink_shared  # noqa: E402

__all__ += ("SharedOpsLogBroadcaster", "unlink_shared")
