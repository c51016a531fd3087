"""The middleware and the admin routes behind a real uvicorn on 127.0.0.1
(a random free port), driven over real sockets by httpx; and the demo
command end to end. ``running_server`` is also used by the browser test."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

from fastopslog import OpsLogBroadcaster, OpsLogEntry
from fastopslog.asgi import DEFAULT_PREFIX, OpsLogMiddleware, admin_mount

TOKEN = "uvicorn-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WAIT = 30.0  # against hangs only, never a measure of speed


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def gateway_app(ops: OpsLogBroadcaster, **admin_options: Any) -> Starlette:
    """A small gateway: the middleware, the admin routes, and endpoints
    that answer, stream, fail, stream forever, or publish a burst."""

    async def ok(request: Request) -> Any:
        request.state.opslog.update(model="gpt-4o", account_id=3)
        return PlainTextResponse("ok")

    async def streamed(request: Request) -> Any:
        async def body() -> Any:
            for i in range(3):
                await asyncio.sleep(0.02)
                yield f"data: {i}\n\n"

        request.state.opslog.model = "streamer"
        return StreamingResponse(body(), media_type="text/event-stream")

    async def fail(request: Request) -> Any:
        raise RuntimeError("upstream exploded with key=abc123")

    async def endless(request: Request) -> Any:
        async def body() -> Any:
            while True:
                yield "tick\n"
                await asyncio.sleep(0.02)

        request.state.opslog.model = "endless"
        return StreamingResponse(body(), media_type="text/plain")

    async def burst(request: Request) -> Any:
        # Publishes synchronously on the event loop: no stream can read in
        # between, so a small subscription buffer overflows for sure.
        request.state.opslog.skip = True
        n = int(request.query_params.get("n", "100"))
        status = int(request.query_params.get("status", "200"))
        for i in range(n):
            ops.publish(OpsLogEntry(method="GET", path=f"/burst/{i}", status=status, model="burst"))
        return PlainTextResponse(str(n))

    admin_options.setdefault("token", TOKEN)
    app = Starlette(
        routes=[
            Route("/ok", ok),
            Route("/streamed", streamed),
            Route("/fail", fail),
            Route("/endless", endless),
            Route("/burst", burst, methods=["POST"]),
            admin_mount(ops, **admin_options),
        ]
    )
    app.add_middleware(OpsLogMiddleware, broadcaster=ops)
    return app


class Server:
    def __init__(self, app: Any, port: int = 0) -> None:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="critical",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(), "uvicorn to start")
        assert self.server.started, "uvicorn did not start"
        self.port = self.server.servers[0].sockets[0].getsockname()[1]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(WAIT)


@contextlib.contextmanager
def running_server(app: Any, port: int = 0) -> Iterator[Server]:
    server = Server(app, port)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ops() -> OpsLogBroadcaster:
    return OpsLogBroadcaster(history_cap=500)


@pytest.fixture
def server(ops: OpsLogBroadcaster) -> Iterator[Server]:
    # A buffer larger than anything a test publishes: no drop, whatever the
    # scheduling (the slow-dashboard test has its own server).
    with running_server(gateway_app(ops, buf_size=4096, replay=20, ping=1.0)) as running:
        yield running


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=WAIT) as client:
        yield client


def entries_for(ops: OpsLogBroadcaster, path: str) -> list[OpsLogEntry]:
    return [e for e in ops.snapshot() if e.path.split("?")[0] == path]


def test_normal_streamed_and_failing_requests(ops: OpsLogBroadcaster, http: httpx.Client) -> None:
    assert http.get("/ok?api_key=zzz").text == "ok"
    assert http.get("/streamed").text == "data: 0\n\ndata: 1\n\ndata: 2\n\n"
    # uvicorn closes the connection after an app exception: do not reuse it.
    failed = http.get("/fail", headers={"Connection": "close"})
    assert failed.status_code == 500
    assert http.get("/nowhere").status_code == 404
    # The entry is published once the app returns, a moment after the
    # client has the last byte.
    wait_until(lambda: ops.stats().published >= 4, "four entries")
    (ok,) = entries_for(ops, "/ok")
    assert (ok.status, ok.model, ok.account_id, ok.stream, ok.path) == (
        200, "gpt-4o", 3, False, "/ok?api_key=[REDACTED]"
    )
    (streamed,) = entries_for(ops, "/streamed")
    assert (streamed.status, streamed.stream, streamed.model) == (200, True, "streamer")
    assert streamed.latency_ms >= 55  # three 20 ms pauses before the last byte
    (fail,) = entries_for(ops, "/fail")
    assert (fail.status, fail.error_message) == (500, "RuntimeError: upstream exploded with key=[REDACTED]")
    (missing,) = entries_for(ops, "/nowhere")
    assert missing.status == 404


def test_a_client_hanging_up_mid_stream_is_a_499(ops: OpsLogBroadcaster, http: httpx.Client) -> None:
    with http.stream("GET", "/endless") as response:
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            if chunk:
                break
    entry = wait_until(lambda: entries_for(ops, "/endless"), "the 499 entry")[0]
    assert (entry.status, entry.error_message, entry.model, entry.stream) == (
        499, "client disconnected", "endless", True
    )


def test_auth_refusals_and_bad_parameters(http: httpx.Client, ops: OpsLogBroadcaster) -> None:
    for route in ("/recent", "/stream", "/stats"):
        assert http.get(DEFAULT_PREFIX + route).status_code == 401
        assert http.get(DEFAULT_PREFIX + route, headers={"Authorization": "Bearer wrong"}).status_code == 401
    bad = http.get(DEFAULT_PREFIX + "/recent?min_status=high", headers=AUTH)
    assert bad.status_code == 400
    assert "min_status" in bad.json()["error"]
    bad = http.get(DEFAULT_PREFIX + "/stream?replay=5000", headers=AUTH)
    assert bad.status_code == 400
    assert http.get(DEFAULT_PREFIX + "/recent", headers=AUTH).status_code == 200
    assert ops.stats().subscribers == 0
    # The admin routes are not logged themselves.
    assert not [e for e in ops.snapshot() if e.path.startswith(DEFAULT_PREFIX)]


class SSEReader:
    """Reads events from an httpx streaming response."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.iter_lines()
        self.others: list[dict[str, str]] = []

    def next_event(self) -> dict[str, str]:
        fields: dict[str, str] = {}
        for line in self.lines:
            if not line:
                if fields:
                    return fields
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
        raise AssertionError("the stream ended")

    def entries(self, n: int) -> list[int]:
        seqs: list[int] = []
        while len(seqs) < n:
            event = self.next_event()
            if "event" in event:
                self.others.append(event)
            else:
                seqs.append(int(event["id"]))
        return seqs


def test_sse_priming_without_gap_or_duplicate_while_publishing(
    ops: OpsLogBroadcaster, http: httpx.Client
) -> None:
    for i in range(100):
        ops.publish(OpsLogEntry(path=f"/before/{i}", status=200))
    stop = threading.Event()

    def publisher() -> None:
        i = 0
        while not stop.is_set() and i < 2000:
            ops.publish(OpsLogEntry(path=f"/during/{i}", status=200))
            i += 1
            if i % 10 == 0:
                time.sleep(0.002)

    thread = threading.Thread(target=publisher, daemon=True)
    thread.start()
    try:
        with http.stream("GET", DEFAULT_PREFIX + "/stream", headers=AUTH) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            reader = SSEReader(response)
            assert reader.next_event()["event"] == "ready"
            seqs = reader.entries(200)
    finally:
        stop.set()
        thread.join(WAIT)
    assert seqs == list(range(seqs[0], seqs[0] + 200)), "a gap or a duplicate"
    assert not [e for e in reader.others if e.get("event") == "lost"]
    wait_until(lambda: ops.stats().subscribers == 0, "the subscription to be released")


def test_last_event_id_resume_and_disconnect_releases(ops: OpsLogBroadcaster, http: httpx.Client) -> None:
    for i in range(30):
        ops.publish(OpsLogEntry(path=f"/a/{i}", status=500 if i % 2 else 200))
    url = DEFAULT_PREFIX + "/stream?min_status=500"
    with http.stream("GET", url, headers=AUTH) as response:
        reader = SSEReader(response)
        reader.next_event()
        first = reader.entries(15)  # the 15 matching of the last 20 history entries at most
        assert ops.stats().subscribers == 1
    wait_until(lambda: ops.stats().subscribers == 0, "the subscription to be released")
    assert all(ops.snapshot()[seq - 1].status >= 500 for seq in first)
    # While the client is away.
    missed = []
    for i in range(10):
        entry = OpsLogEntry(path=f"/b/{i}", status=502 if i % 2 else 200)
        ops.publish(entry)
        if entry.status >= 500:
            missed.append(entry.seq)
    with http.stream("GET", url, headers={**AUTH, "Last-Event-ID": str(first[-1])}) as response:
        reader = SSEReader(response)
        ready = json.loads(reader.next_event()["data"])
        assert ready["resumed"] is True
        assert reader.entries(len(missed)) == missed
    wait_until(lambda: ops.stats().subscribers == 0, "the subscription to be released")


def test_a_slow_dashboard_is_told_what_it_missed(ops: OpsLogBroadcaster) -> None:
    with running_server(gateway_app(ops, buf_size=64)) as server, httpx.Client(
        base_url=server.url, timeout=WAIT
    ) as http:
        with http.stream("GET", DEFAULT_PREFIX + "/stream?replay=0", headers=AUTH) as response:
            reader = SSEReader(response)
            reader.next_event()
            assert http.post("/burst?n=500").text == "500"
            reader.entries(64)  # the buffer's worth
            lost = reader.others[0] if reader.others else reader.next_event()
            assert lost["event"] == "lost"
            info = json.loads(lost["data"])
            assert info["reason"] == "slow" and info["count"] >= 500 - 64 - 1
        wait_until(lambda: ops.stats().subscribers == 0, "the subscription to be released")


def test_many_streams_come_and_go(ops: OpsLogBroadcaster, server: Server) -> None:
    async def one(client: httpx.AsyncClient) -> None:
        async with client.stream("GET", DEFAULT_PREFIX + "/stream", headers=AUTH) as response:
            async for line in response.aiter_lines():
                if line.startswith("event: ready"):
                    break

    async def main() -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as client:
            await asyncio.gather(*(one(client) for _ in range(20)))

    asyncio.run(main())
    wait_until(lambda: ops.stats().subscribers == 0, "every subscription to be released")


def test_the_demo_command(tmp_path: Any) -> None:
    """``python -m fastopslog demo`` serves the gateway, logs it, and says
    where the page is."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "fastopslog", "demo", "--port", "0", "--rate", "40",
         "--duration", "60", "--seed", "3", "--token", "demo-token"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Stopping after"):
                break
        text = "".join(lines)
        match = re.search(r"live page:\s+(http://127\.0\.0\.1:\d+)(/admin/ops/logs/)#token=demo-token", text)
        assert match, text
        base = match.group(1)
        with httpx.Client(base_url=base, timeout=WAIT) as client:
            assert client.get(match.group(2)).status_code == 200

            def some() -> list[Any]:
                got: list[Any] = client.get(DEFAULT_PREFIX + "/recent?limit=100", headers={
                    "Authorization": "Bearer demo-token"}).json()
                return got if len(got) >= 20 else []

            entries = wait_until(some, "the demo's load to be logged")
            assert any(e.get("model") for e in entries)
            assert any(e["path"] == "/v1/chat/completions" for e in entries)
            assert client.get(DEFAULT_PREFIX + "/recent").status_code == 401
    finally:
        process.terminate()
        process.wait(WAIT)
        if process.stdout is not None:
            process.stdout.close()
