"""Real processes for the shared-log end-to-end tests: ``python -m fastopslog
serve --shared``, uvicorn and gunicorn workers, and an SSE reader.

Every server listens on 127.0.0.1, is started here and stopped by its PID
(its process group, which holds only what it started: workers, the
gunicorn arbiter's children). Waits are bounded.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

PREFIX = "/admin/ops/logs"
TOKEN = "e2e-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """A server process on 127.0.0.1:port, in a process group of its own;
    its output goes to ``<log_dir>/<label>.log`` for a failing test to show."""

    def __init__(self, label: str, argv: Sequence[str], log_dir: Path, *, port: int,
                 env: dict[str, str] | None = None, cwd: Path | None = None) -> None:  # fmt: skip
        self.label = label
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log = log_dir / f"{label}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                list(argv), stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                env={**os.environ, **(env or {})}, start_new_session=True,
            )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, path: str = PREFIX + "/stats", timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.label} exited {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.base + path, headers=AUTH, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.label} not ready in {timeout} s:\n{self.output()}")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to its group (a graceful stop), SIGKILL after ``timeout``."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            except ProcessLookupError:
                pass
        # Workers left behind by a crashed parent are in the same group.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_shared(name: str, log_dir: Path) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "fastopslog", "serve", "--shared", name,
            "--port", str(port), "--token", TOKEN, "--duration", "300"]  # fmt: skip
    return Server("serve", argv, log_dir, port=port)


class SSEReader:
    """Reads ``/stream`` from seq 1 on (``last_event_id=0``) in a thread,
    until it has ``expect`` entries or ``timeout`` passes; ``seqs`` are the
    event ids in the order received, ``entries`` the decoded data."""

    def __init__(self, base: str, expect: int, timeout: float = 60.0) -> None:
        self.seqs: list[int] = []
        self.entries: list[dict[str, Any]] = []
        self.other_events: list[str] = []
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._url = f"{base}{PREFIX}/stream"
        self._expect = expect
        self._timeout = timeout
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self.ready.wait(START_TIMEOUT):
            raise AssertionError(f"the SSE stream did not start: {self.error!r}")

    def _run(self) -> None:
        deadline = time.monotonic() + self._timeout
        params = {"last_event_id": "0", "replay": "0"}
        try:
            with httpx.stream("GET", self._url, params=params, headers=AUTH,
                              timeout=httpx.Timeout(5.0, read=self._timeout)) as r:  # fmt: skip
                r.raise_for_status()
                event, seq = "", 0
                for line in r.iter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("id: "):
                        seq = int(line[4:])
                    elif line.startswith("data: "):
                        if event == "ready":
                            self.ready.set()
                        elif event:
                            self.other_events.append(f"{event}: {line[6:]}")
                        else:
                            self.seqs.append(seq)
                            self.entries.append(json.loads(line[6:]))
                    elif not line:
                        event = ""
                    if len(self.seqs) >= self._expect or time.monotonic() > deadline:
                        return
        except BaseException as exc:  # reported by join()
            self.error = exc
        finally:
            self.ready.set()

    def join(self) -> SSEReader:
        self._thread.join(self._timeout + 10)
        if self.error is not None:
            raise AssertionError(f"the SSE reader failed: {self.error!r}")
        return self
