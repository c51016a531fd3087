"""A real Debian ``redis-server`` for tests and benchmarks.

Each one runs in its own temporary directory, listens only on a Unix
socket there (no port to collide on), saves nothing, and is stopped by the
PID it was started with.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any

import redis

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    def __init__(self, password: str | None = None) -> None:
        self.dir = tempfile.mkdtemp(prefix="fastopslog-redis-")
        self.socket = os.path.join(self.dir, "redis.sock")
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"unix://{auth}{self.socket}"

    def start(self) -> RedisServer:
        if not os.path.exists(REDIS_SERVER):
            raise RuntimeError("redis-server is missing: apt-get install -y redis-server")
        args = [
            REDIS_SERVER, "--port", "0", "--unixsocket", self.socket, "--unixsocketperm", "700",
            "--dir", self.dir, "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        client = redis.Redis(unix_socket_path=self.socket, password=self.password)
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)
        client.close()
        return self

    def kill(self) -> None:
        """Stop it at once (SIGKILL): an outage, not a shutdown."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None
        if os.path.exists(self.socket):
            os.unlink(self.socket)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def client(self) -> Any:
        """A plain client (Any: redis-py types replies as unions of every form)."""
        return redis.Redis(unix_socket_path=self.socket, password=self.password)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
