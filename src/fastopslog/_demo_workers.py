"""``python -m fastopslog demo --workers N``: the demo gateway as N worker
processes publishing into one shared log, the dashboard served once.

The parent creates the shared log (``--shared NAME``) and the gateway's
listening socket, then forks the workers, as ``gunicorn --preload`` does:
each inherits both and runs the demo app without the admin routes under its
own uvicorn server, accepting on the shared socket. The parent serves the
live page and admin routes from the shared log on ``--admin-port`` (what
``python -m fastopslog serve --shared NAME`` does as a separate process)
and runs the load generator. At the end it stops the workers by their PIDs
and removes the log if it created it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import sys
from typing import Any

from ._demo import DEMO_KEYS, _load, _QuietDemoCrash, make_app


def _worker(sock: socket.socket, ops: Any, token: str, seed: int | None) -> None:
    import uvicorn

    # Ctrl-C reaches the whole terminal's process group; the parent stops
    # the workers itself, with SIGTERM, which uvicorn handles gracefully.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    app = make_app(ops, token, seed=seed, admin=False)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    logging.getLogger("uvicorn.error").addFilter(_QuietDemoCrash())
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


async def _parent(args: argparse.Namespace, ops: Any, token: str, gateway: str) -> int:
    import random

    from ._serve import _serve

    host, port = gateway.rsplit(":", 1)
    sent = [0]
    load = (
        asyncio.ensure_future(_load(host, int(port), args.rate, random.Random(args.seed), sent))
        if args.rate > 0
        else None
    )
    admin_port = args.admin_port if args.admin_port is not None else (args.port + 1 if args.port else 0)
    print(f"fastopslog demo: {args.workers} gateway workers on http://{gateway}, "
          f"one shared log {args.shared!r}", flush=True)  # fmt: skip
    print(f"  gateway:    curl -H 'Authorization: Bearer {next(iter(DEMO_KEYS))}' -d "
          f"'{{\"model\":\"gpt-4o\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}' "
          f"http://{gateway}/v1/chat/completions")  # fmt: skip
    if args.rate > 0:
        print(f"  load:       about {args.rate:g} requests/s from the built-in generator (--rate)")
    print("Ctrl-C to stop." if not args.duration else f"Stopping after {args.duration:g} s.", flush=True)
    try:
        dashboard = argparse.Namespace(host=args.host, port=admin_port, duration=args.duration)
        return await _serve(dashboard, ops, token)
    finally:
        if load is not None:
            load.cancel()
            print(f"sent {sent[0]} requests (asked {args.rate:g}/s)")


def run_workers(args: argparse.Namespace, token: str) -> int:
    from . import SharedOpsLogBroadcaster

    shared: Any = SharedOpsLogBroadcaster  # typed as the pure class, which only raises
    try:
        ops = shared(args.shared, history_cap=args.history)
    except (RuntimeError, ValueError, TypeError, PermissionError) as exc:
        print(f"fastopslog demo: shared log {args.shared!r}: {exc}", file=sys.stderr)
        return 2
    # IPPROTO_TCP named, not 0: asyncio sets TCP_NODELAY only on accepted
    # sockets whose proto says TCP, and without it a response written in
    # two parts waits ~40 ms for the client's delayed ACK (uvicorn --workers
    # has exactly this: its shared socket is made with proto 0).
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
        sock.listen(2048)
    except OSError as exc:
        print(f"fastopslog demo: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        ops.close()
        return 2
    gateway = "{}:{}".format(*sock.getsockname()[:2])
    # fork before this process starts any thread or event loop.
    fork = multiprocessing.get_context("fork")
    workers = [
        fork.Process(
            target=_worker,
            args=(sock, ops, token, None if args.seed is None else args.seed + i),
            daemon=True,
        )
        for i in range(args.workers)
    ]
    for w in workers:
        w.start()
    try:
        return asyncio.run(_parent(args, ops, token, gateway))
    except KeyboardInterrupt:
        return 0
    finally:
        for w in workers:
            if w.pid is not None and w.is_alive():
                os.kill(w.pid, signal.SIGTERM)
        for w in workers:
            w.join(10)
            if w.is_alive() and w.pid is not None:
                os.kill(w.pid, signal.SIGKILL)
                w.join(5)
        stats = ops.ring_stats()
        print(f"published {stats['published']} entries from {args.workers} workers "
              f"({stats['lost']} lost, {stats['skipped']} skipped by this reader)")  # fmt: skip
        sock.close()
        ops.close()
        if ops.created:
            from . import unlink_shared

            unlink_shared(args.shared)
