"""Across hosts on Redis Streams (the ``redis`` extra).

- :class:`Forwarder`: a host's entries appended to a stream, from a
  background thread, bounded and counted; :class:`ElectedForwarder` and
  :class:`HostLock` make it one per host.
- :class:`StreamReader`: the stream read into a :class:`ClusterView`, which
  ``fastopslog.asgi.admin_routes`` serves like a local broadcaster.
- ``python -m fastopslog serve --redis URL`` runs a reader with the admin
  routes and the live page. See docs/redis.md.
"""

from ._config import DEFAULT_MAXLEN, DEFAULT_STREAM, RedisSetupError, connect
from ._election import DEFAULT_LOCK_DIR, ElectedForwarder, HostLock
from ._forwarder import Forwarder, ForwarderStats
from ._reader import ReaderStats, StreamReader
from ._view import ClusterView, StreamEntry

__all__ = (
    "DEFAULT_LOCK_DIR",
    "DEFAULT_MAXLEN",
    "DEFAULT_STREAM",
    "ClusterView",
    "ElectedForwarder",
    "Forwarder",
    "ForwarderStats",
    "HostLock",
    "ReaderStats",
    "RedisSetupError",
    "StreamEntry",
    "StreamReader",
    "connect",
)
