"""Redis connections from a URL, checked at start-up.

``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS, with
redis-py's ``ssl_*`` query options) and ``unix://[[user]:password@]/path?db=N``
are what redis-py's ``Redis.from_url`` accepts; anything else, an
unreachable server and a refused password are a :class:`RedisSetupError`
with the reason, raised by :func:`connect` before anything runs.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import redis

__all__ = ("DEFAULT_MAXLEN", "DEFAULT_STREAM", "RedisSetupError", "connect", "redact_url")

DEFAULT_STREAM = "fastopslog"
DEFAULT_MAXLEN = 100_000
_SCHEMES = ("redis", "rediss", "unix")


class RedisSetupError(RuntimeError):
    """The Redis URL or server cannot be used; the message says why."""


def redact_url(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def connect(url: str, *, socket_timeout: float | None, check: bool = True) -> redis.Redis:
    """A client for ``url`` (bytes replies), pinged once when ``check``.

    ``socket_timeout`` bounds every reply; a reader doing ``XREAD BLOCK``
    must give one longer than its block time (redis-py 8 defaults to 5 s,
    which cuts a longer block short)."""
    if not isinstance(url, str) or urlsplit(url).scheme not in _SCHEMES:
        raise RedisSetupError(
            f"not a Redis URL: {url!r}; use redis://host:port/db, rediss://… (TLS) or unix:///path"
        )
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": 2.0 if socket_timeout is None else min(socket_timeout, 2.0),
        "retry_on_timeout": False,
        "health_check_interval": 0,
    }
    try:
        client = redis.Redis.from_url(url, **options)
    except ValueError as exc:
        raise RedisSetupError(f"bad Redis URL {redact_url(url)!r}: {exc}") from None
    if check:
        try:
            client.ping()
        except redis.AuthenticationError as exc:
            client.close()
            raise RedisSetupError(
                f"Redis at {redact_url(url)!r} refused the credentials: {exc}"
            ) from None
        except redis.ResponseError as exc:
            client.close()
            raise RedisSetupError(f"Redis at {redact_url(url)!r} refused the connection: {exc}") from None
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            client.close()
            raise RedisSetupError(f"cannot reach Redis at {redact_url(url)!r}: {exc}") from None
    return client
