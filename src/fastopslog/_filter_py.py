"""Pure implementation: OpsLogFilter, matching, and the routing index.

``_Routes`` groups live subscriptions with equal filters, so that a publish
evaluates each filter once, and files each group where a publish finds it:
under the first equality field its filter sets (model, then account, then
group), or in the "every" list when it sets none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ._common import FILTER_FIELDS, check_int, check_str, construct, filter_repr
from ._entry_py import OpsLogEntry, _refuse_second_init, _set

if TYPE_CHECKING:
    from ._ring_py import _Ring

_FILTER_NAMES = tuple(name for name, _, _ in FILTER_FIELDS)


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

    def _value(self) -> tuple[object, ...]:
        return (self.min_status, self.model, self.account_id, self.group_id, self.min_latency_ms)

    def __eq__(self, other: object) -> bool:
        if type(other) is not OpsLogFilter:
            return NotImplemented
        return self._value() == other._value()

    def __hash__(self) -> int:
        return hash(self._value())

    def __repr__(self) -> str:
        return filter_repr(self)

    def __reduce__(self) -> tuple[object, ...]:
        return (construct, (type(self), dict(zip(_FILTER_NAMES, self._value(), strict=True))))

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


# A group: what is left to check once a publish found it (None: nothing),
# and the rings of the subscriptions whose filters are equal.
_Group = tuple[Callable[[OpsLogEntry], bool] | None, tuple["_Ring[OpsLogEntry]", ...]]


class _Routes:
    """Live subscriptions grouped for fan-out; rebuilt when they change, so
    a publish only reads it."""

    __slots__ = ("every", "by_model", "by_account", "by_group")

    def __init__(self, rings: list[_Ring[OpsLogEntry]]) -> None:
        groups: dict[OpsLogFilter, list[_Ring[OpsLogEntry]]] = {}
        for ring in rings:
            groups.setdefault(ring.filter, []).append(ring)
        every: list[_Group] = []
        indexed: dict[str, dict[object, list[_Group]]] = {"model": {}, "account": {}, "group": {}}
        for members in groups.values():
            kind, key, match = members[0].route
            group = (match, tuple(members))
            if kind == "every":
                every.append(group)
            else:
                indexed[kind].setdefault(key, []).append(group)
        self.every = tuple(every)
        self.by_model = {k: tuple(v) for k, v in indexed["model"].items()}
        self.by_account = {k: tuple(v) for k, v in indexed["account"].items()}
        self.by_group = {k: tuple(v) for k, v in indexed["group"].items()}
