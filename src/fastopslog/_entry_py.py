"""Pure implementation: OpsLogEntry, argument conversion, seal and copy.

An entry is immutable to its users; ``publish`` seals it (stamps ``seq``, and
``time`` when unset) under the broadcaster's lock. Its JSON is rendered once.
"""

from __future__ import annotations

import json
from typing import Any

from ._common import (
    GO_ZERO_TIME,
    INT64_MAX,
    INT64_MIN,
    check_int,
    check_str,
    entry_kwargs_from_dict,
    entry_repr,
    time_to_us,
)
from ._gojson import format_time, quote

_set = object.__setattr__


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

    def _value(self) -> tuple[object, ...]:
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
        return self._value() == other._value()

    def __hash__(self) -> int:
        return hash(self._value())

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

    @staticmethod
    def _json_lines(entries: list[Any]) -> bytes:
        """The entries' JSON, one per line, as one UTF-8 ``bytes``: what the
        Redis forwarder appends to the stream."""
        return "\n".join([entry.to_json() for entry in entries]).encode()

    def _copy(self) -> OpsLogEntry:
        """An unsealed copy with the same value and rendering, for
        publishing an entry that an earlier publish sealed."""
        copy = self._build(self._us, self._fields())
        _set(copy, "_json", self._json)
        return copy
