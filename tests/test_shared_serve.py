"""``python -m fastopslog serve --shared NAME``: a separate process serving
the admin routes and the live page from the shared log the workers publish
into. Here the "workers" are this test process; the server is a real one on
127.0.0.1, stopped by its PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from _shared_procs import AUTH, PREFIX, TOKEN, Server, SSEReader, free_port, serve_shared
from fastopslog import unlink_shared
from fastopslog._demo import DEMO_KEYS

pytestmark = pytest.mark.c_extension


@pytest.fixture
def name() -> Iterator[str]:
    n = f"test-serve-{uuid.uuid4().hex[:8]}"
    yield n
    unlink_shared(n)


def entry(impl: ModuleType, status: int) -> object:
    return impl.OpsLogEntry(method="POST", path="/v1/chat", status=status, latency_ms=status % 7)


def test_a_log_that_does_not_exist_yet_is_a_clear_error(name: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "fastopslog", "serve", "--shared", name, "--port", "0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert f"no shared log named {name!r}" in proc.stderr and "start the workers" in proc.stderr
    # Serving did not create it with its own geometry.
    assert not unlink_shared(name)


def test_a_bad_name_is_refused(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "fastopslog", "serve", "--shared", "../etc", "--port", "0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "bad shared log name" in proc.stderr


def test_serves_what_every_process_publishes(c_impl: ModuleType, name: str, tmp_path: Path) -> None:
    ops = c_impl.SharedOpsLogBroadcaster(name, history_cap=512)
    try:
        for status in range(200, 210):
            ops.publish(entry(c_impl, status))
        with serve_shared(name, tmp_path) as server:
            server.wait_ready()
            stats = httpx.get(server.base + PREFIX + "/stats", headers=AUTH, timeout=10).json()
            assert stats["published"] == 10
            recent = httpx.get(server.base + PREFIX + "/recent", headers=AUTH, timeout=10).json()
            assert [e["status"] for e in recent] == list(range(200, 210))
            assert httpx.get(server.base + PREFIX + "/stats", timeout=10).status_code == 401
            page = httpx.get(server.base + PREFIX + "/", timeout=10)
            assert page.status_code == 200 and "<html" in page.text.lower()

            # A live reader from seq 1 on: the ten already there, then what is
            # published while it reads, every seq once, in order.
            reader = SSEReader(server.base, expect=110, timeout=30)
            for status in range(300, 400):
                ops.publish(entry(c_impl, status))
            reader.join()
            assert reader.seqs == list(range(1, 111))
            assert [e["status"] for e in reader.entries] == [*range(200, 210), *range(300, 400)]
            assert reader.other_events == []
            stats = httpx.get(server.base + PREFIX + "/stats", headers=AUTH, timeout=10).json()
            assert stats["published"] == 110
    finally:
        ops.close()


def children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def test_the_demo_with_workers(tmp_path: Path) -> None:
    """``demo --workers 2``: two forked gateway workers publish into one
    shared log, the parent serves the live page from it (the workers do
    not) and removes the log at the end."""
    log = f"test-demo-{uuid.uuid4().hex[:8]}"
    gateway, admin = free_port(), free_port()
    argv = [sys.executable, "-m", "fastopslog", "demo", "--workers", "2", "--shared", log,
            "--port", str(gateway), "--admin-port", str(admin), "--rate", "0",
            "--duration", "120", "--token", TOKEN, "--seed", "1"]  # fmt: skip
    key = next(iter(DEMO_KEYS))
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}

    def chat(_: int) -> int:
        r = httpx.post(f"http://127.0.0.1:{gateway}/v1/chat/completions", json=body,
                       headers={"Authorization": f"Bearer {key}"}, timeout=30)  # fmt: skip
        return r.status_code

    try:
        with Server("demo", argv, tmp_path, port=admin, env={"PYTHONUNBUFFERED": "1"}) as demo:
            demo.wait_ready()
            assert len(children(demo.proc.pid)) >= 2
            with ThreadPoolExecutor(8) as pool:
                statuses = list(pool.map(chat, range(40)))
            assert len(statuses) == 40 and 200 in statuses
            stats = httpx.get(demo.base + PREFIX + "/stats", headers=AUTH, timeout=10).json()
            assert stats["published"] == 40
            recent = httpx.get(demo.base + PREFIX + "/recent", headers=AUTH, timeout=10)
            assert len(recent.json()) == 40 and recent.headers["x-opslog-last-seq"] == "40"
            workers_admin = httpx.get(f"http://127.0.0.1:{gateway}{PREFIX}/stats", headers=AUTH)
            assert workers_admin.status_code == 404
            os.kill(demo.proc.pid, signal.SIGINT)
            demo.proc.wait(30)
            assert "published 40 entries from 2 workers" in demo.output(), demo.output()
        assert not unlink_shared(log)  # the demo removed the log it created
    finally:
        unlink_shared(log)
