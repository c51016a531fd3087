"""What the overhead measurement in BENCHMARKS.md runs: uvicorn app
factories, two reference middlewares and a crowd of SSE readers. A
developer tool (it drives wrk, taskset and valgrind), so it lives here and
not in the installed package; run it from the repository root.

    uvicorn --app-dir benchmarks --factory asgi_overhead:plain_app        # no middleware
    uvicorn --app-dir benchmarks --factory asgi_overhead:passthrough_app  # a middleware doing nothing
    uvicorn --app-dir benchmarks --factory asgi_overhead:see_status_app   # one reading the status
    uvicorn --app-dir benchmarks --factory asgi_overhead:middleware_app   # OpsLogMiddleware + admin
    python benchmarks/asgi_overhead.py readers --port 8000 --clients 100
    python benchmarks/asgi_overhead.py micro     # the middlewares alone, in process
    python benchmarks/asgi_overhead.py apps      # each middleware in Starlette and FastAPI, in process
    python benchmarks/asgi_overhead.py compare   # all of the above with wrk, as in BENCHMARKS.md
    python benchmarks/asgi_overhead.py instructions  # each server under callgrind

Every app serves ``GET /`` with a two-byte text body, the smallest endpoint
Starlette has, so what a middleware adds is as visible as it can be. The
two reference middlewares say what any middleware costs: ``PassThrough``
only adds a coroutine, ``SeeStatus`` also wraps ``send`` to read the
status, the least a middleware that logs responses must do. The readers
open ``/admin/ops/logs/stream`` (token ``bench``) over raw sockets and read
as fast as they can, counting bytes and events; they report when stopped
(Ctrl-C or ``--seconds``). ``micro`` times the middlewares around a bare
ASGI app in process, with no server and no network; ``apps`` times each
middleware (the reference ones, OpsLogMiddleware, and the well-known ones
that are installed) added to Starlette's and FastAPI's smallest endpoint,
batches interleaved round-robin, GC on. ``compare`` runs the
whole measurement: seven servers side by side pinned to CPU 0 (the
endpoint alone, twice, the second copy a control that shows the noise
floor; inside each reference middleware; inside OpsLogMiddleware; the same
with 100 readers receiving every entry; the same with 100 readers filtered
to errors, which nothing matches), wrk and the readers pinned to CPU 1,
rounds of one wrk run per server, and per server the median over rounds of
its ratio to the plain server: throughput, and server CPU time (user and
system) per request. Needs Linux, ``wrk`` and ``taskset``. ``instructions``
counts each server's instructions per request under callgrind, a figure
that does not move with the load on the machine. Needs ``valgrind``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

BENCH_TOKEN = "bench"
# The servers import this module by its file name from here (uvicorn --app-dir).
_HERE = os.path.dirname(os.path.abspath(__file__))


def _endpoint_app(routes: list[Any]) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/", hello), *routes])


def plain_app() -> Any:
    """The endpoint alone."""
    return _endpoint_app([])


class PassThrough:
    """The least a pure ASGI middleware can be: one more coroutine between
    the server and the app. What any middleware costs before it does
    anything."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


class SeeStatus:
    """A middleware that wraps ``send`` to read the status and does nothing
    with it: the least any middleware that logs responses costs."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        status = 0

        def see(message: Any) -> Any:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            return send(message)

        await self.app(scope, receive, see)


def passthrough_app() -> Any:
    """The endpoint inside :class:`PassThrough`."""
    app = _endpoint_app([])
    app.add_middleware(PassThrough)
    return app


def see_status_app() -> Any:
    """The endpoint inside :class:`SeeStatus`."""
    app = _endpoint_app([])
    app.add_middleware(SeeStatus)
    return app


def middleware_app() -> Any:
    """The endpoint with OpsLogMiddleware, and the admin routes mounted at
    the default prefix (token ``bench``)."""
    from fastopslog import OpsLogBroadcaster
    from fastopslog.asgi import OpsLogMiddleware, admin_mount

    ops = OpsLogBroadcaster(history_cap=1000)
    app = _endpoint_app([admin_mount(ops, token=BENCH_TOKEN)])
    app.add_middleware(OpsLogMiddleware, broadcaster=ops)
    return app


async def _reader(host: str, port: int, path: str, totals: dict[str, int], stop: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {BENCH_TOKEN}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
    )
    totals["connected"] += 1
    try:
        while not stop.is_set():
            chunk = await reader.read(1 << 16)
            if not chunk:
                break
            totals["bytes"] += len(chunk)
            totals["events"] += chunk.count(b"\nid: ") + chunk.startswith(b"id: ")
            totals["lost"] += chunk.count(b"event: lost")
    finally:
        writer.close()


async def _readers(args: argparse.Namespace) -> None:
    totals = {"connected": 0, "bytes": 0, "events": 0, "lost": 0}
    stop = asyncio.Event()
    path = args.path + ("?" + args.query if args.query else "")
    tasks = [
        asyncio.ensure_future(_reader(args.host, args.port, path, totals, stop))
        for _ in range(args.clients)
    ]
    # A process started in the background by a shell inherits SIGINT
    # ignored, so the handlers are installed here, for SIGTERM too.
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, done.set)
    begin = time.monotonic()
    try:
        await asyncio.wait_for(done.wait(), args.seconds or None)
    except asyncio.TimeoutError:
        pass
    finally:
        stop.set()
        elapsed = time.monotonic() - begin
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        print(
            f"{totals['connected']} readers, {elapsed:.1f} s: {totals['events']} events "
            f"({totals['events'] / elapsed:.0f}/s), {totals['bytes'] / elapsed / 1e6:.1f} MB/s, "
            f"{totals['lost']} 'lost' notices",
            flush=True,
        )


async def _bare(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")],
        }
    )
    await send({"type": "http.response.body", "body": b"ok"})


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Any) -> None:
    return None


async def _time(app: Any, n: int) -> float:
    import gc

    gc.disable()
    try:
        begin = time.perf_counter_ns()
        for _ in range(n):
            scope = {
                "type": "http",
                "method": "GET",
                "path": "/v1/chat/completions",
                "query_string": b"",
                "headers": [],
                "state": {},
            }
            await app(scope, _receive, _send)
        return (time.perf_counter_ns() - begin) / n
    finally:
        gc.enable()


async def _micro(args: argparse.Namespace) -> None:
    from fastopslog import USE_EXTENSIONS, OpsLogBroadcaster
    from fastopslog.asgi import OpsLogMiddleware

    ops = OpsLogBroadcaster(history_cap=1000)
    subs = [ops.subscribe(buf_size=1 << 16) for _ in range(args.subscribers)]
    variants = {
        "bare app": _bare,
        "pass-through middleware": PassThrough(_bare),
        "status-reading middleware": SeeStatus(_bare),
        "middleware": OpsLogMiddleware(_bare, ops),
        "middleware, contextvar=True": OpsLogMiddleware(_bare, ops, contextvar=True),
    }
    best = {name: float("inf") for name in variants}
    for _ in range(args.repeat):
        for name, app in variants.items():
            best[name] = min(best[name], await _time(app, args.number))
            for sub in subs:
                sub.drain()
    base = best["bare app"]
    core = "compiled core" if USE_EXTENSIONS else "pure Python"
    print(f"{core}, {args.subscribers} subscribers; best of {args.repeat} x {args.number} requests:")
    for name, ns in best.items():
        extra = f"  (+{ns - base:.0f} ns)" if name != "bare app" else ""
        print(f"  {name:30s} {ns:7.0f} ns/request{extra}")


# The in-process comparison of the method ("apps"): each framework's
# smallest endpoint, one middleware added with app.add_middleware, driven
# with uvicorn-like scopes and no server.

_SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.4"},
    "http_version": "1.1",
    "server": ("127.0.0.1", 8000),
    "client": ("127.0.0.1", 50000),
    "scheme": "http",
    "method": "GET",
    "root_path": "",
    "path": "/",
    "raw_path": b"/",
    "query_string": b"",
}
_HEADERS = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk"), (b"accept", b"*/*")]


def _framework_app(framework: str) -> Any:
    """``GET /`` answering ``PlainTextResponse("ok")`` in Starlette or FastAPI."""
    from starlette.responses import PlainTextResponse

    if framework == "fastapi":
        from fastapi import FastAPI

        fast = FastAPI()

        @fast.get("/", response_class=PlainTextResponse)
        async def hello_fast() -> PlainTextResponse:
            return PlainTextResponse("ok")

        return fast
    return _endpoint_app([])


def _third_party(framework: str) -> dict[str, Any]:
    """The well-known middlewares that are installed, each a function adding
    itself to an app; the missing ones are printed and left out."""
    adders: dict[str, Any] = {}
    try:
        from asgi_correlation_id import CorrelationIdMiddleware

        adders["asgi-correlation-id"] = lambda app: app.add_middleware(CorrelationIdMiddleware)
    except ImportError:
        print("  (asgi-correlation-id is not installed: left out)")
    if framework == "fastapi":
        try:
            from prometheus_fastapi_instrumentator import Instrumentator

            adders["prometheus-fastapi-instrumentator"] = lambda app: Instrumentator(
                registry=_registry()
            ).instrument(app)
        except ImportError:
            print("  (prometheus-fastapi-instrumentator is not installed: left out)")
    try:
        from starlette_exporter import PrometheusMiddleware

        adders["starlette-exporter"] = lambda app: app.add_middleware(
            PrometheusMiddleware, app_name=f"app{id(app)}", prefix=f"p{id(app)}"
        )
    except ImportError:
        print("  (starlette-exporter is not installed: left out)")
    try:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        try:  # With the SDK, spans are recorded (and exported nowhere).
            from opentelemetry.sdk.trace import TracerProvider

            provider: Any = TracerProvider()
        except ImportError:
            provider = None
            print("  (opentelemetry-sdk is not installed: the no-op tracer is measured)")
        adders["OpenTelemetry ASGI, send/receive spans excluded"] = lambda app: app.add_middleware(
            OpenTelemetryMiddleware, tracer_provider=provider, exclude_spans=["send", "receive"]
        )
        adders["OpenTelemetry ASGI, all spans"] = lambda app: app.add_middleware(
            OpenTelemetryMiddleware, tracer_provider=provider
        )
    except ImportError:
        print("  (opentelemetry-instrumentation-asgi is not installed: left out)")
    return adders


def _registry() -> Any:
    # A registry per app: two instrumented apps in one process would
    # otherwise register the same metric names twice.
    from prometheus_client import CollectorRegistry

    return CollectorRegistry()


def _call_next_only(app: Any) -> None:
    from starlette.middleware.base import BaseHTTPMiddleware

    async def dispatch(request: Any, call_next: Any) -> Any:
        return await call_next(request)

    app.add_middleware(BaseHTTPMiddleware, dispatch=dispatch)


def _apps_variants(framework: str, dashboards: int) -> dict[str, Any]:
    from fastopslog import OpsLogBroadcaster, OpsLogFilter
    from fastopslog.asgi import OpsLogMiddleware

    ops = OpsLogBroadcaster(history_cap=1000)
    watched = OpsLogBroadcaster(history_cap=1000)
    # Dashboards filtered to server errors, which the endpoint never
    # answers: they cost the publish its routing, never a delivery.
    _dashboards = [watched.subscribe(OpsLogFilter(min_status=500)) for _ in range(dashboards)]
    adders: dict[str, Any] = {
        "no middleware": None,
        "pass-through pure ASGI": lambda app: app.add_middleware(PassThrough),
        "status-reading send wrapper": lambda app: app.add_middleware(SeeStatus),
        "OpsLogMiddleware": lambda app: app.add_middleware(OpsLogMiddleware, broadcaster=ops),
        f"OpsLogMiddleware, {dashboards} dashboards matching nothing": lambda app: app.add_middleware(
            OpsLogMiddleware, broadcaster=watched
        ),
        "OpsLogMiddleware, contextvar=True": lambda app: app.add_middleware(
            OpsLogMiddleware, broadcaster=ops, contextvar=True
        ),
        **_third_party(framework),
        "BaseHTTPMiddleware, call_next only": _call_next_only,
    }
    variants = {}
    for name, add in adders.items():
        app = _framework_app(framework)
        if add is not None:
            add(app)
        variants[name] = app
    variants["_keep"] = (ops, watched, _dashboards)  # alive while measured; not timed
    return variants


async def _batch(app: Any, n: int) -> float:
    """ns per request over ``n`` requests, GC on, each with a fresh scope as
    a server makes one."""
    scope, headers = _SCOPE, _HEADERS
    begin = time.perf_counter_ns()
    for _ in range(n):
        await app({**scope, "headers": list(headers), "state": {}}, _receive, _send)
    return (time.perf_counter_ns() - begin) / n


def _versions() -> str:
    import importlib.metadata as metadata

    from fastopslog import USE_EXTENSIONS

    versions = []
    for dist in (
        "fastopslog", "starlette", "fastapi", "asgi-correlation-id", "prometheus-fastapi-instrumentator",
        "starlette-exporter", "opentelemetry-instrumentation-asgi", "opentelemetry-sdk",
    ):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    core = "compiled core" if USE_EXTENSIONS else "pure Python"
    return f"Python {sys.version.split()[0]}, {', '.join(versions)}; fastopslog's {core}"


async def _apps(args: argparse.Namespace) -> None:
    print(_versions())
    apps: dict[tuple[str, str], Any] = {}
    kept = []
    for framework in args.frameworks:
        print(f"{framework}:")
        variants = _apps_variants(framework, args.dashboards)
        kept.append(variants.pop("_keep"))
        for name, app in variants.items():
            apps[framework, name] = app
    for app in apps.values():  # warm up: build each middleware stack, fill the memos
        await _batch(app, 50)
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in apps}
    for _ in range(args.rounds):
        for key, app in apps.items():  # round-robin, so drift hits every variant alike
            samples[key].append(await _batch(app, args.number))
    result: dict[str, dict[str, float]] = {}
    for framework in args.frameworks:
        base = samples[framework, "no middleware"]
        print(
            f"\n{framework}: median of {args.rounds} rounds x {args.number} requests, ns per request; "
            "added: the median over rounds of the difference to no middleware in the same round"
        )
        result[framework] = {}
        for (fw, name), values in samples.items():
            if fw != framework:
                continue
            median = statistics.median(values)
            added = statistics.median(v - b for v, b in zip(values, base, strict=True))
            result[framework][name] = added
            shown = "" if name == "no middleware" else f"  {added / 1000:+7.2f} us"
            print(f"  {name:58s} {median:9.0f}{shown}")
    if args.json:
        with open(args.json, "w") as out_file:
            json.dump(result, out_file, indent=1)

_SERVERS = {  # name: (port offset, factory, readers' query or None)
    "plain": (0, "plain_app", None),
    # The same as "plain": how far apart two identical servers measure is
    # the noise floor of the whole comparison.
    "plain, again (control)": (4, "plain_app", None),
    # What any middleware costs: one more coroutine; one that also wraps
    # send to read the status.
    "pass-through": (5, "passthrough_app", None),
    "status-reading": (6, "see_status_app", None),
    "middleware": (1, "middleware_app", None),
    "100 readers, all": (2, "middleware_app", ""),
    "100 readers, errors": (3, "middleware_app", "min_status=500"),
}


def _callgrind_control(command: str, pid: int) -> None:
    subprocess.run(["callgrind_control", command, str(pid)], check=True, capture_output=True)


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """The process's user and system CPU time so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _server_command(factory: str, port: int, args: argparse.Namespace) -> list[str]:
    """One measured server, as ``compare`` and ``instructions`` start it."""
    return [
        sys.executable, "-m", "uvicorn", "--app-dir", _HERE, "--factory", f"asgi_overhead:{factory}",
        "--host", "127.0.0.1", "--port", str(port), "--http", args.http, "--loop", args.loop,
        "--no-access-log", "--log-level", "warning",
    ]


def _server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--http", default="httptools", help="uvicorn --http")
    parser.add_argument("--loop", default="uvloop", help="uvicorn --loop")


def _readers_command(port: int, query: str) -> list[str]:
    """100 SSE readers of a measured server; ``query`` "" reads everything."""
    return [
        sys.executable, __file__, "readers",
        "--port", str(port), "--clients", "100",
    ] + (["--query", query] if query else [])


def _wait_port(port: int, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"no server on port {port}")


async def _load(port: int, total: int, connections: int) -> None:
    """Exactly ``total`` keep-alive ``GET /`` requests, one at a time on
    each of ``connections`` connections."""

    async def one(count: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(count):
                writer.write(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length: *(\d+)", head)
                if not head.startswith(b"HTTP/1.1 200") or length is None:
                    raise SystemExit(f"unexpected response: {head!r}")
                await reader.readexactly(int(length.group(1)))
        finally:
            writer.close()

    share, extra = divmod(total, connections)
    await asyncio.gather(*(one(share + (i < extra)) for i in range(connections)))


def _subscribers(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), 10) as conn:
        conn.sendall(
            f"GET /admin/ops/logs/stats HTTP/1.1\r\nHost: bench\r\n"
            f"Authorization: Bearer {BENCH_TOKEN}\r\nConnection: close\r\n\r\n".encode()
        )
        reply = b""
        while chunk := conn.recv(4096):
            reply += chunk
    return int(json.loads(reply.split(b"\r\n\r\n", 1)[1])["subscribers"])


_COUNTED = {  # name: (factory, readers' query or None)
    "plain": ("plain_app", None),
    "pass-through": ("passthrough_app", None),
    "status-reading": ("see_status_app", None),
    "middleware": ("middleware_app", None),
    "100 readers, errors": ("middleware_app", "min_status=500"),
}


def _instructions(args: argparse.Namespace) -> int:
    """Each server under callgrind: its instructions for exactly
    ``args.requests`` requests, counted from after a warm-up. The count is
    the same from run to run whatever else the machine does, so it resolves
    differences of a fraction of a percent that wall-clock runs on a shared
    machine cannot; it leaves out the kernel (system time) and what cache
    misses cost."""
    import tempfile

    counts: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (factory, query) in _COUNTED.items():
            out = os.path.join(tmp, f"{factory}.out")
            command = [
                "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                *_server_command(factory, args.port, args),
            ]
            print("$", " ".join(command), flush=True)
            server = subprocess.Popen(command, stderr=subprocess.DEVNULL)
            readers = None
            try:
                _wait_port(args.port, 600)
                if query is not None:
                    readers = subprocess.Popen(
                        _readers_command(args.port, query), stdout=subprocess.DEVNULL
                    )
                    while _subscribers(args.port) < 100:
                        time.sleep(0.5)
                asyncio.run(_load(args.port, args.warmup, args.connections))
                _callgrind_control("--zero", server.pid)
                asyncio.run(_load(args.port, args.requests, args.connections))
                _callgrind_control("--dump", server.pid)
                with open(out + ".1") as dump:
                    total = next(
                        int(line.split()[1]) for line in dump if line.startswith(("summary:", "totals:"))
                    )
            finally:
                if readers is not None:
                    readers.send_signal(signal.SIGTERM)
                    readers.wait(30)
                server.send_signal(signal.SIGINT)
                try:
                    server.wait(120)
                except subprocess.TimeoutExpired:
                    server.kill()
            counts[name] = total / args.requests
            print(
                f"{name:24s} {counts[name]:9.0f} instructions/request  "
                f"{counts[name] / counts['plain'] - 1:+6.1%}",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as out_file:
            json.dump(counts, out_file, indent=1)
    return 0


def _compare(args: argparse.Namespace) -> int:
    servers: dict[str, subprocess.Popen[Any]] = {}
    readers: dict[str, subprocess.Popen[str]] = {}
    wrk = ["taskset", "-c", "1", "wrk", "-t1", f"-c{args.connections}", f"-d{args.seconds}s", "--latency"]
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in _SERVERS}
    try:
        for name, (offset, factory, _) in _SERVERS.items():
            command = ["taskset", "-c", "0", *_server_command(factory, args.port + offset, args)]
            print("$", " ".join(command), flush=True)
            servers[name] = subprocess.Popen(command)
        for name, (offset, _, query) in _SERVERS.items():
            _wait_port(args.port + offset)
            if query is not None:
                command = ["taskset", "-c", "1", *_readers_command(args.port + offset, query)]
                print("$", " ".join(command), flush=True)
                readers[name] = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        time.sleep(3)
        print("$", " ".join(wrk), "http://127.0.0.1:PORT/", flush=True)
        names = list(_SERVERS)
        for round_ in range(args.rounds):
            # Each round starts one server further on, so no server is
            # always measured first (or right after the busiest one).
            order = names[round_ % len(names):] + names[: round_ % len(names)]
            for name in order:
                offset = _SERVERS[name][0]
                url = f"http://127.0.0.1:{args.port + offset}/"
                warm_up = ["taskset", "-c", "1", "wrk", "-t1", f"-c{args.connections}", "-d1s", url]
                subprocess.run(warm_up, capture_output=True)
                load = os.getloadavg()[0]
                user0, system0 = _cpu_seconds(servers[name].pid)
                out = subprocess.run([*wrk, url], capture_output=True, text=True).stdout
                user1, system1 = _cpu_seconds(servers[name].pid)
                user, system = user1 - user0, system1 - system0
                cpu = user + system
                rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
                count = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
                p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
                errors = re.search(r"Non-2xx or 3xx responses: \d+|Socket errors: .*", out)
                row = {
                    "rps": rps,
                    "us": cpu / count * 1e6,
                    "user_us": user / count * 1e6,
                    "system_us": system / count * 1e6,
                    "busy": cpu / args.seconds,
                    "load": load,
                }
                rows[name].append(row)
                print(
                    f"round {round_ + 1}  {name:24s} {rps:9.0f} req/s  server CPU "
                    f"{row['us']:5.1f} us/request (user {row['user_us']:4.1f}, system "
                    f"{row['system_us']:4.1f}; {row['busy']:4.0%} of CPU 0)  "
                    f"p99 {p99.group(1) if p99 else '?'}  load {load:.2f}"
                    f"{'  ' + errors.group(0) if errors else ''}",
                    flush=True,
                )
        print()
        summary = {}
        for name in _SERVERS:
            n = len(rows[name])
            rps_ratio = statistics.median(rows[name][i]["rps"] / rows["plain"][i]["rps"] for i in range(n))
            us_ratio = statistics.median(rows[name][i]["us"] / rows["plain"][i]["us"] for i in range(n))
            summary[name] = {
                "rps": statistics.median(r["rps"] for r in rows[name]),
                "us": statistics.median(r["us"] for r in rows[name]),
                "user_us": statistics.median(r["user_us"] for r in rows[name]),
                "system_us": statistics.median(r["system_us"] for r in rows[name]),
                "throughput_overhead": 1 - rps_ratio,
                "cpu_overhead": us_ratio - 1,
            }
            print(
                f"{name:24s} {summary[name]['rps']:9.0f} req/s  {summary[name]['us']:5.1f} us/request "
                f"(user {summary[name]['user_us']:4.1f}, system {summary[name]['system_us']:4.1f})  "
                f"throughput {-summary[name]['throughput_overhead']:+6.1%}  CPU/request "
                f"{summary[name]['cpu_overhead']:+6.1%}",
                flush=True,
            )
        if args.json:
            with open(args.json, "w") as out_file:
                json.dump({"rows": rows, "summary": summary}, out_file, indent=1)
    finally:
        for name, process in readers.items():
            process.send_signal(signal.SIGTERM)
            try:
                print(f"{name}: {process.communicate(timeout=30)[0].strip()}")
            except subprocess.TimeoutExpired:
                process.kill()
        for process in servers.values():
            process.send_signal(signal.SIGINT)
        for process in servers.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python benchmarks/asgi_overhead.py")
    commands = parser.add_subparsers(dest="command", required=True)
    readers = commands.add_parser("readers", help="open SSE streams and read them")
    readers.add_argument("--host", default="127.0.0.1")
    readers.add_argument("--port", type=int, default=8000)
    readers.add_argument("--clients", type=int, default=100)
    readers.add_argument("--path", default="/admin/ops/logs/stream")
    readers.add_argument("--query", default="", help="e.g. min_status=500")
    readers.add_argument("--seconds", type=float, default=0.0, help="0: until Ctrl-C")
    micro = commands.add_parser("micro", help="time the middleware in process")
    micro.add_argument("--number", type=int, default=20000)
    micro.add_argument("--repeat", type=int, default=9)
    micro.add_argument("--subscribers", type=int, default=0, help="subscriptions reading everything")
    apps = commands.add_parser(
        "apps", help="each middleware in Starlette and FastAPI, in process, interleaved"
    )
    apps.add_argument("--number", type=int, default=1000, help="requests per batch")
    apps.add_argument("--rounds", type=int, default=21)
    apps.add_argument("--dashboards", type=int, default=100, help="subscriptions matching nothing")
    apps.add_argument("--frameworks", nargs="+", default=["starlette", "fastapi"])
    apps.add_argument("--json", help="also write the medians here")
    compare = commands.add_parser("compare", help="the wrk measurement of BENCHMARKS.md")
    compare.add_argument("--port", type=int, default=8771, help="first of seven ports")
    compare.add_argument("--seconds", type=int, default=10, help="per wrk run")
    compare.add_argument("--rounds", type=int, default=3)
    compare.add_argument("--connections", type=int, default=64)
    _server_options(compare)
    compare.add_argument("--json", help="also write the rows and summary here")
    counted = commands.add_parser(
        "instructions", help="instructions per request of each server, counted by callgrind"
    )
    counted.add_argument("--port", type=int, default=8781)
    counted.add_argument("--requests", type=int, default=4000, help="counted requests per server")
    counted.add_argument("--warmup", type=int, default=1000)
    counted.add_argument("--connections", type=int, default=8)
    _server_options(counted)
    counted.add_argument("--json", help="also write the counts here")
    args = parser.parse_args(argv)
    if args.command == "instructions":
        sys.exit(_instructions(args))
    if args.command == "compare":
        sys.exit(_compare(args))
    if args.command == "apps":
        asyncio.run(_apps(args))
        return
    if args.command == "micro":
        asyncio.run(_micro(args))
        return
    try:
        asyncio.run(_readers(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
