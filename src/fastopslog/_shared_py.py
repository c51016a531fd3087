"""The pure implementation's side of the shared-memory log: it refuses it.

A ring many processes write at once needs atomic operations on shared
memory (a fetch-and-add to claim a record, release stores to commit it),
which pure Python cannot make; a ring guarded by a lock instead would let a
writer killed while holding it stop every other one. So the shared log is
the compiled core's alone (docs/shared.md), and here constructing one says
so. ``unlink_shared`` works on both.
"""

from __future__ import annotations

from typing import NoReturn

from ._shared_common import unlink_shared

__all__ = ("SharedOpsLogBroadcaster", "unlink_shared")


class SharedOpsLogBroadcaster:
    """Not available in the pure implementation: raises ``RuntimeError``."""

    def __init__(
        self,
        name: str,
        *,
        history_cap: int | None = None,
        record_size: int | None = None,
        create: bool = True,
    ) -> NoReturn:
        raise RuntimeError(
            "SharedOpsLogBroadcaster needs the compiled core (fastopslog._opslog_c), which"
            " this process does not use (a pure install, or FASTOPSLOG_NO_EXTENSIONS=1):"
            " the shared-memory log needs atomic operations pure Python cannot make"
        )
