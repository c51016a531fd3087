"""End to end, as a user runs it: the README's FastAPI app with a
``SharedOpsLogBroadcaster``, under ``uvicorn --workers 2`` and under
``gunicorn --preload -w 2 -k uvicorn.workers.UvicornWorker`` (with worker
recycling), and ``python -m fastopslog serve --shared`` serving the
dashboard. Every request is in the log once: ``/stats`` of every worker
says so, and an SSE reader on ``serve`` receives every entry, in strictly
increasing seq. Real processes on 127.0.0.1, each stopped by its PID."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from _shared_procs import AUTH, PREFIX, TOKEN, Server, SSEReader, free_port, serve_shared
from fastopslog import unlink_shared

pytestmark = pytest.mark.c_extension

# The README's app, with the shared log. Each response names the worker
# (its pid) that served it, so the test knows both workers answered.
APP = f"""
import os

from fastapi import FastAPI, Request
from fastopslog import SharedOpsLogBroadcaster
from fastopslog.asgi import DEFAULT_PREFIX, OpsLogMiddleware, admin_routes

ops = SharedOpsLogBroadcaster(os.environ["E2E_LOG"], history_cap=4096)
app = FastAPI()
app.add_middleware(OpsLogMiddleware, broadcaster=ops)
app.mount(DEFAULT_PREFIX, admin_routes(ops, token={TOKEN!r}))


@app.middleware("http")
async def worker_pid(request: Request, call_next):
    response = await call_next(request)
    response.headers["x-worker-pid"] = str(os.getpid())
    return response


@app.post("/v1/chat/completions")
async def chat(request: Request):
    body = await request.json()
    request.state.opslog.update(model=body["model"], turns=len(body["messages"]))
    return {{"model": body["model"], "choices": []}}
"""

REQUESTS = 120


@pytest.fixture
def name() -> Iterator[str]:
    n = f"test-e2e-{uuid.uuid4().hex[:8]}"
    yield n
    unlink_shared(n)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "e2e_app.py").write_text(APP)
    return tmp_path


def send_requests(base: str, count: int) -> set[str]:
    """``count`` chat requests, each on a new connection (so the kernel
    spreads them over the workers); the pids of the workers that served.

    A worker that gunicorn recycles closes the connections it accepted but
    had not read a request from yet, with a reset: the client sends that
    request again, as any client would. Had the worker handled it, the
    entry would be in the log twice, and ``check_reader`` fails on that."""
    pids = set()
    for i in range(count):
        body = {"model": f"model-{i}", "messages": [{"role": "user", "content": "hi"}] * (1 + i % 3)}
        for attempt in range(3):
            try:
                r = httpx.post(base + "/v1/chat/completions", json=body, timeout=10)
                break
            except (httpx.ReadError, httpx.RemoteProtocolError):
                if attempt == 2:
                    raise
        assert r.status_code == 200, r.text
        pids.add(r.headers["x-worker-pid"])
    return pids


def stats_from_every_worker(base: str, workers: int, expect: int) -> None:
    """``/stats`` on new connections until ``workers`` different workers
    answered; every answer says ``published == expect``."""
    seen: dict[str, int] = {}
    deadline = time.monotonic() + 30
    while len(seen) < workers and time.monotonic() < deadline:
        r = httpx.get(base + PREFIX + "/stats", headers=AUTH, timeout=10)
        seen[r.headers["x-worker-pid"]] = r.json()["published"]
    assert len(seen) == workers, seen
    assert set(seen.values()) == {expect}, seen


def check_reader(reader: SSEReader, count: int) -> None:
    reader.join()
    assert reader.other_events == []
    assert len(reader.seqs) == count
    assert all(a < b for a, b in zip(reader.seqs, reader.seqs[1:], strict=False))  # strictly increasing
    assert reader.seqs == list(range(1, count + 1))  # and none missing
    assert sorted(e["model"] for e in reader.entries) == sorted(f"model-{i}" for i in range(count))


@contextmanager
def gateway_under_load(
    kind: str, argv: list[str], port: int, name: str, app_dir: Path
) -> Iterator[tuple[Server, Server, SSEReader, set[str]]]:
    """The gateway started by ``argv`` on the log ``name``, ``serve
    --shared`` on the same log with an SSE reader attached, then
    ``REQUESTS`` requests sent: the gateway, the dashboard server, the
    reader and the pids of the workers that served. Both servers run until
    the block ends."""
    with Server(kind, argv, app_dir, port=port, env={"E2E_LOG": name}, cwd=app_dir) as gw:
        gw.wait_ready()
        # serve needs the log to exist, which the first worker's import
        # (or the preloading master's) did.
        with serve_shared(name, app_dir) as dash:
            dash.wait_ready()
            reader = SSEReader(dash.base, expect=REQUESTS, timeout=60)
            yield gw, dash, reader, send_requests(gw.base, REQUESTS)


def test_uvicorn_workers_one_log(name: str, app_dir: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "e2e_app:app", "--workers", "2",
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]  # fmt: skip
    with gateway_under_load("uvicorn", argv, port, name, app_dir) as (gw, dash, reader, pids):
        assert len(pids) == 2, f"one worker served every request: {pids}"
        check_reader(reader, REQUESTS)
        stats_from_every_worker(gw.base, 2, REQUESTS)
        r = httpx.get(dash.base + PREFIX + "/stats", headers=AUTH, timeout=10)
        assert r.json()["published"] == REQUESTS


def test_gunicorn_preload_with_worker_recycling(name: str, app_dir: Path) -> None:
    """``--preload``: the master imports the app (creating the log) before
    forking the workers, which inherit the mapping. ``--max-requests 25``
    recycles each worker a few times during the run: the new workers go on
    in the same log, seq unbroken."""
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "e2e_app:app", "--preload", "-w", "2",
            "-k", "uvicorn.workers.UvicornWorker", "--bind", f"127.0.0.1:{port}",
            "--max-requests", "25", "--max-requests-jitter", "0",
            "--graceful-timeout", "5", "--log-level", "warning"]  # fmt: skip
    with gateway_under_load("gunicorn", argv, port, name, app_dir) as (gw, _dash, reader, pids):
        # 120 requests, 25 a worker: at least four workers served.
        assert len(pids) >= 4, f"no worker was recycled: {pids}"
        check_reader(reader, REQUESTS)
        # /stats (counted by max-requests too) from the current workers.
        stats_from_every_worker(gw.base, 2, REQUESTS)
