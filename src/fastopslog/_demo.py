"""``python -m fastopslog demo``: a fake LLM gateway with the ops log wired in.

A Starlette app on 127.0.0.1 with ``POST /v1/chat/completions`` that answers
after a random delay, streams when asked (``"stream": true``), and sometimes
fails the way an upstream does (429, 502 with an upstream error body that
contains a key, 504, an exception). :class:`~fastopslog.asgi.OpsLogMiddleware`
logs every request, the handler fills in model, account, key, turns and
prompt size, and the admin routes serve the live page. A built-in load
generator sends requests over real sockets (some clients give up on a
stream halfway, which logs a 499). Needs the ``asgi`` extra (Starlette,
sse-starlette, uvicorn); it is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import secrets
import sys
from typing import Any

DEMO_MODELS = ("gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "deepseek-chat", "llama-3.1-70b")
# The fake gateway's API keys: key -> (api_key_id, account_id, group_id, user_id).
DEMO_KEYS = {
    "sk-demo-alice-0000000000000001": (11, 1, 1, 101),
    "sk-demo-bob-00000000000000002": (12, 2, 1, 102),
    "sk-demo-carol-000000000000003": (13, 3, 2, 103),
    "sk-demo-dave-0000000000000004": (14, 4, 2, 104),
}


class DemoCrash(RuntimeError):
    """The demo gateway's deliberate failure (logged as an ops log entry,
    kept out of the server's error log)."""


class _QuietDemoCrash(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DemoCrash))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``python -m fastopslog demo``."""
    parser.description = (
        "Run a fake LLM gateway (POST /v1/chat/completions) under uvicorn with "
        "the ops log middleware, the admin routes and a load generator, and "
        "print the URL of the live page and its token. Needs the asgi extra: "
        'pip install "fastopslog[asgi]".'
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free one)")
    parser.add_argument("--token", help="admin bearer token (default: a random one, printed)")
    parser.add_argument(
        "--rate", type=float, default=20.0, help="load generator requests per second (0: none)"
    )
    parser.add_argument(
        "--duration", type=float, default=0.0, help="stop after this many seconds (0: at Ctrl-C)"
    )
    parser.add_argument("--history", type=int, default=1000, help="history_cap of the broadcaster")
    parser.add_argument("--seed", type=int, help="random seed, for a repeatable run")
    parser.add_argument(
        "--workers", type=int, default=1,
        help="gateway worker processes (default 1). More than one publish into one shared "
        "log (--shared; compiled core) and this process serves the live page on --admin-port",
    )  # fmt: skip
    parser.add_argument(
        "--shared", default="fastopslog-demo", metavar="NAME",
        help="with --workers: the shared log's name (default fastopslog-demo); "
        "python -m fastopslog serve --shared NAME can serve it too",
    )  # fmt: skip
    parser.add_argument(
        "--admin-port", type=int,
        help="with --workers: the live page's port (default --port + 1; 0: any free one)",
    )  # fmt: skip
    parser.set_defaults(run=run)


def make_app(
    ops: Any, token: str, *, seed: int | None = None, speed: float = 1.0, admin: bool = True
) -> Any:
    """The demo gateway as a Starlette app; ``speed`` scales its delays
    (tests use a small one). ``admin=False`` leaves the admin routes out (a
    worker when another process serves the dashboard)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    from .asgi import OpsLogMiddleware, admin_mount, current_context

    rng = random.Random(seed)

    def fail(status: int, message: str, kind: str) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)

    async def chat(request: Request) -> Any:
        ctx = request.state.opslog
        auth = request.headers.get("authorization", "")
        key = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if key not in DEMO_KEYS:
            ctx.error_message = "invalid api key"
            return fail(401, "Incorrect API key provided: " + (key or "(none)"), "auth_error")
        api_key_id, account_id, group_id, user_id = DEMO_KEYS[key]
        ctx.update(api_key_id=api_key_id, account_id=account_id, group_id=group_id, user_id=user_id)
        try:
            body = json.loads(await request.body())
            model = body["model"]
            messages = body["messages"]
            if not isinstance(model, str) or not isinstance(messages, list):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            ctx.error_message = "bad request body"
            return fail(400, "the body must be JSON with 'model' and 'messages'", "invalid_request")
        ctx.update(
            model=model,
            turns=len(messages),
            prompt_chars=sum(len(str(m.get("content", ""))) for m in messages if isinstance(m, dict)),
        )
        roll = rng.random()
        await asyncio.sleep(speed * min(rng.lognormvariate(-2.0, 0.8), 3.0))
        if roll < 0.05:
            ctx.update(upstream_status=429, error_message="upstream rate limited")
            return fail(429, "Rate limit reached for requests", "rate_limit")
        if roll < 0.09:
            ctx.update(
                upstream_status=502,
                error_message="upstream returned 502 Bad Gateway",
                error_detail=(
                    "POST https://upstream.invalid/v1/chat/completions?api_key="
                    "sk-live-abcdefghijklmnop1234 -> 502: <html>bad gateway</html>; "
                    "request headers: Authorization: Bearer sk-live-abcdefghijklmnop1234"
                ),
            )
            return fail(502, "upstream error", "upstream_error")
        if roll < 0.11:
            await asyncio.sleep(speed * 0.5)
            ctx.update(upstream_status=504, error_message="upstream timeout after 30s")
            return fail(504, "upstream timeout", "upstream_timeout")
        if roll < 0.12:
            raise DemoCrash("the gateway crashed while mapping the upstream response")
        ctx.upstream_status = 200
        words = ["This", "is", "a", "fake", "answer", "from", model, "."]
        if body.get("stream"):

            async def chunks() -> Any:
                for word in words:
                    await asyncio.sleep(speed * rng.uniform(0.01, 0.08))
                    delta = {"choices": [{"delta": {"content": word + " "}}]}
                    yield f"data: {json.dumps(delta)}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(chunks(), media_type="text/event-stream")
        return JSONResponse(
            {
                "model": model,
                "choices": [{"message": {"role": "assistant", "content": " ".join(words)}}],
            }
        )

    async def models(request: Request) -> Any:
        current = current_context()
        if current is not None:
            current.skip = rng.random() < 0.5  # half of these are not worth logging
        return JSONResponse({"data": [{"id": m} for m in DEMO_MODELS]})

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            *([admin_mount(ops, token=token)] if admin else []),
        ]
    )
    app.add_middleware(OpsLogMiddleware, broadcaster=ops, contextvar=True)
    return app


async def _request(host: str, port: int, rng: random.Random) -> None:
    """One request over a raw socket, as a client of the gateway would
    send it; now and then a client gives up on a stream halfway."""
    key = rng.choice(list(DEMO_KEYS)) if rng.random() > 0.01 else "sk-wrong"
    stream = rng.random() < 0.3
    turns = rng.randint(1, 12)
    messages = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": "x" * rng.randint(5, 400)}
        for i in range(turns)
    ]
    if rng.random() < 0.98:
        body = json.dumps(
            {"model": rng.choice(DEMO_MODELS), "messages": messages, "stream": stream}
        ).encode()
    else:
        body = b"{not json"
    path = "/v1/chat/completions" if rng.random() > 0.02 else "/v1/models"
    method = "POST" if path != "/v1/models" else "GET"
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body) if method == 'POST' else 0}\r\nConnection: close\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(head + (body if method == "POST" else b""))
        await writer.drain()
        if stream and rng.random() < 0.1:
            await reader.read(200)  # the first bytes, then hang up
            return
        while await reader.read(65536):
            pass
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass


async def _load(host: str, port: int, rate: float, rng: random.Random, sent: list[int]) -> None:
    """Requests at ``rate`` a second on average (Poisson arrivals), each
    due at a time on one clock: a late wake-up sends what fell due meanwhile
    instead of lowering the rate (sleeping a random gap after each request
    delivered about half of --rate 1000). At most two seconds' worth are in
    flight; ``sent[0]`` counts what was sent."""
    tasks: set[asyncio.Task[None]] = set()
    limit = max(256, int(2 * rate))
    loop = asyncio.get_running_loop()

    def finished(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it as never retrieved

    due = loop.time()
    while True:
        while due <= loop.time():
            due += rng.expovariate(rate)
            if len(tasks) >= limit:
                continue
            task = asyncio.ensure_future(_request(host, port, rng))
            tasks.add(task)
            task.add_done_callback(finished)
            sent[0] += 1
        await asyncio.sleep(due - loop.time())


async def _serve(args: argparse.Namespace, token: str) -> int:
    import uvicorn

    from . import OpsLogBroadcaster

    ops = OpsLogBroadcaster(history_cap=args.history)
    app = make_app(ops, token, seed=args.seed)
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    logging.getLogger("uvicorn.error").addFilter(_QuietDemoCrash())
    server_task = asyncio.ensure_future(server.serve())
    while not server.started:
        if server_task.done():
            return 1
        await asyncio.sleep(0.05)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    base = f"http://{host}:{port}"
    print(f"fastopslog demo: a fake LLM gateway on {base}", flush=True)
    print(f"  live page:  {base}/admin/ops/logs/#token={token}")
    print(f"  token:      {token}")
    print(f"  recent:     curl -H 'Authorization: Bearer {token}' '{base}/admin/ops/logs/recent?limit=5'")
    print(
        f"  stream:     curl -N -H 'Authorization: Bearer {token}' "
        f"'{base}/admin/ops/logs/stream?min_status=400'"
    )
    print(f"  gateway:    curl -H 'Authorization: Bearer {next(iter(DEMO_KEYS))}' -d "
          f"'{{\"model\":\"gpt-4o\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}' "
          f"{base}/v1/chat/completions")
    if args.rate > 0:
        print(f"  load:       about {args.rate:g} requests/s from the built-in generator (--rate)")
    print("Ctrl-C to stop." if not args.duration else f"Stopping after {args.duration:g} s.", flush=True)
    sent = [0]
    loop = asyncio.get_running_loop()
    began = loop.time()
    load = (
        asyncio.ensure_future(_load(host, port, args.rate, random.Random(args.seed), sent))
        if args.rate > 0
        else None
    )
    took = 0.0
    try:
        if args.duration:
            await asyncio.wait({server_task}, timeout=args.duration)
            took = loop.time() - began
            if load is not None:
                load.cancel()
            server.should_exit = True
        await server_task
    finally:
        if load is not None:
            load.cancel()
        took = took or loop.time() - began
        stats = ops.stats()
        if load is not None:
            # Said plainly: the generator and the gateway share one process,
            # so a busy machine may not deliver --rate.
            print(f"sent {sent[0]} requests in {took:.1f} s ({sent[0] / took:.0f}/s, asked {args.rate:g}/s)")
        print(f"published {stats.published} entries, {stats.dropped} dropped by slow dashboards")
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        import sse_starlette  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        print(
            f"the demo needs the asgi extra ({exc.name} is missing): "
            'pip install "fastopslog[asgi]"',
            file=sys.stderr,
        )
        return 2
    if args.rate < 0 or args.duration < 0:
        print("--rate and --duration must not be negative", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("--workers must be at least 1", file=sys.stderr)
        return 2
    token = args.token or secrets.token_urlsafe(18)
    if args.workers > 1:
        from ._demo_workers import run_workers

        return run_workers(args, token)
    try:
        return asyncio.run(_serve(args, token))
    except KeyboardInterrupt:
        return 0
