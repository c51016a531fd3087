"""The pure-Python implementation: the reference, the fallback, the type source.

Users and tests import it; each concern lives in a module of its own
(``_entry_py``, ``_filter_py``, ``_ring_py``, ``_subscription_py``,
``_broadcaster_py``: see ARCHITECTURE.md).

Locking: one re-entrant lock, ``_LOCK`` in ``_broadcaster_py``, guards every
broadcaster's history, counters, subscriptions and routes, every push into a
subscription's buffer, and the seal of every entry (the Redis cluster view,
built on these parts, takes it too). One lock for all makes
sealing atomic across broadcasters (two of them publishing the same fresh
entry at once cannot both claim it) at the price of one lock operation per
publish; Python code runs one thread at a time anyway. It is re-entrant
because a subscription that the garbage collector finds unreachable
unsubscribes from ``__del__``, and the collector may run inside a publish on
the same thread.

Readers never take it: a reader waiting behind a convoy of publisher threads
would be starved. A buffer and its parked wakers are deques, and a reader
pops, parks and unparks with single deque operations, atomic under the GIL,
ordered against publishes as ``_subscription_py._pop_or_park`` explains.
Readers block outside the lock (see ``_waiting``) and publishes and
unsubscribes call wakers after releasing it.
"""

from __future__ import annotations

from ._broadcaster_py import OpsLogBroadcaster
from ._entry_py import OpsLogEntry
from ._filter_py import OpsLogFilter
from ._shared_py import SharedOpsLogBroadcaster, unlink_shared
from ._subscription_py import OpsLogSubscription

__all__ = (
    "OpsLogBroadcaster",
    "OpsLogEntry",
    "OpsLogFilter",
    "OpsLogSubscription",
    "SharedOpsLogBroadcaster",
    "unlink_shared",
)

# Each class is defined in the module of its concern but belongs to this one:
# its repr, its pickles and the facade name it as before the split.
for _cls in (OpsLogBroadcaster, OpsLogEntry, OpsLogFilter, OpsLogSubscription):
    _cls.__module__ = __name__
del _cls
