"""One forwarder per host: an ``flock`` on a lock file elects it.

Workers of one host that share a log should not each send it to Redis.
Each worker tries an exclusive, non-blocking ``fcntl.flock`` on
``<directory>/<name>.forwarder.lock``; the one holding it forwards. The
kernel releases the lock when its holder exits, however it dies, so
another worker takes over at its next try. ``name`` is the shared log's
name and the default directory is ``/dev/shm``, where Linux keeps POSIX
shared memory, so the lock file sits next to the ring it stands for (any
directory on a local file system works: ``flock`` is not reliable over
NFS).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from typing import Any

from ._config import RedisSetupError
from ._forwarder import Forwarder

__all__ = ("DEFAULT_LOCK_DIR", "ElectedForwarder", "HostLock")

logger = logging.getLogger("fastopslog.redis")

DEFAULT_LOCK_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else "/tmp"


class HostLock:
    """The host-wide lock named ``name`` (a file name, no ``/``)."""

    def __init__(self, name: str, directory: str = DEFAULT_LOCK_DIR) -> None:
        if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
            raise ValueError("name must be a file name: not empty, no '/', not starting with '.'")
        if not os.path.isdir(directory):
            raise ValueError(f"lock directory {directory!r} does not exist")
        self.path = os.path.join(directory, f"{name}.forwarder.lock")
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if no process holds it; never waits."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor releases the flock


class ElectedForwarder:
    """A :class:`Forwarder` that runs in one process per host: every
    ``retry`` seconds it tries the :class:`HostLock` and, once it holds it,
    starts forwarding (and keeps the lock until ``close()`` or exit)."""

    def __init__(
        self,
        broadcaster: Any,
        url: str,
        lock_name: str,
        *,
        lock_dir: str = DEFAULT_LOCK_DIR,
        retry: float = 1.0,
        **options: Any,
    ) -> None:
        self.lock = HostLock(lock_name, lock_dir)
        self.forwarder = Forwarder(broadcaster, url, **options)
        self.retry = retry
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.elected = threading.Event()

    def start(self) -> ElectedForwarder:
        self._thread = threading.Thread(target=self._run, name="fastopslog-election", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        warned = False
        while not self._stop.is_set():
            if self.lock.try_acquire():
                try:
                    self.forwarder.start()
                except RedisSetupError as exc:
                    # Elected while Redis is unusable: let another worker
                    # (or this one, next time) try again.
                    self.lock.release()
                    if not warned:
                        logger.warning("fastopslog: elected to forward but %s; retrying", exc)
                        warned = True
                else:
                    self.elected.set()
                    return
            self._stop.wait(self.retry)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.elected.is_set():
            self.forwarder.close()
        self.lock.release()

    def __enter__(self) -> ElectedForwarder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
