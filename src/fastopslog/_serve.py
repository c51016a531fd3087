"""``python -m fastopslog serve``: the admin routes and live page for a log
that lives outside this process.

A source is what feeds the served view; each has an option and an opener
(``_SOURCES``), and exactly one is given. ``--redis URL`` reads the stream
the hosts' forwarders append to (``fastopslog.redis``), so one page shows
every host. ``--shared NAME`` attaches to the shared-memory log the
workers of this host publish into (``SharedOpsLogBroadcaster``), so the
workers never serve dashboards. The source is opened (URL and credentials
checked, the shared log found) before the server starts: a bad URL, a
refused password or a log that does not exist yet exits with status 2 and
the reason. Needs the ``asgi`` extra, the ``redis`` extra for ``--redis``
and the compiled core for ``--shared``.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from collections.abc import Callable
from typing import Any

PREFIX = "/admin/ops/logs"

# A source's opener returns (the broadcaster-like view, its close()). It
# raises SourceError with a message for the user when it cannot start.
Opener = Callable[[argparse.Namespace], "tuple[Any, Callable[[], None]]"]


class SourceError(Exception):
    """A source that cannot be opened; the message says why."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``python -m fastopslog serve``."""
    parser.description = (
        "Serve the admin routes (/recent, /stream, /stats) and the live page "
        f"under {PREFIX}/ for an ops log fed from outside this process. "
        'Needs the asgi extra, the redis extra for --redis (pip install "fastopslog[asgi,redis]") '
        "and the compiled core for --shared."
    )
    source = parser.add_argument_group("source (exactly one)").add_mutually_exclusive_group(
        required=True
    )
    source.add_argument(
        "--redis",
        metavar="URL",
        help="read the Redis stream the forwarders write: redis://[:password@]host:port/db, "
        "rediss://… (TLS) or unix://[:password@]/path/to/socket",
    )
    source.add_argument(
        "--shared",
        metavar="NAME",
        help="read the shared-memory log the workers of this host publish into "
        "(SharedOpsLogBroadcaster(NAME)); it must exist: start the workers first",
    )
    parser.add_argument(
        "--stream", default="fastopslog", help="with --redis: stream name (default fastopslog)"
    )
    parser.add_argument(
        "--history", type=int, default=10_000,
        help="with --redis: entries kept for /recent and for resuming dashboards (default 10000; "
        "--shared keeps what the shared log's ring holds)",
    )  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8001, help="port (default 8001; 0: any free one)")
    parser.add_argument("--token", help="admin bearer token (default: a random one, printed)")
    parser.add_argument(
        "--duration", type=float, default=0.0, help="stop after this many seconds (0: at Ctrl-C)"
    )
    parser.set_defaults(run=run)


def _open_redis(args: argparse.Namespace) -> tuple[Any, Callable[[], None]]:
    try:
        from .redis import RedisSetupError, StreamReader
    except ImportError as exc:
        raise SourceError(
            f'--redis needs the redis extra ({exc.name} is missing): pip install "fastopslog[redis]"'
        ) from None
    try:
        reader = StreamReader(args.redis, stream=args.stream, history_cap=args.history).start()
    except (RedisSetupError, ValueError) as exc:
        raise SourceError(str(exc)) from None
    return reader.view, reader.close


def _open_shared(args: argparse.Namespace) -> tuple[Any, Callable[[], None]]:
    from . import SharedOpsLogBroadcaster

    # Any: the type checker sees the pure implementation's class, which only raises.
    shared: Any = SharedOpsLogBroadcaster
    # create=False: a dashboard server must not create the log with its own
    # geometry before the workers start (they would then have to agree with it).
    try:
        log = shared(args.shared, create=False)
    except FileNotFoundError:
        raise SourceError(
            f"no shared log named {args.shared!r} on this host yet: start the workers "
            f"(SharedOpsLogBroadcaster({args.shared!r}) creates it), then serve"
        ) from None
    except (RuntimeError, ValueError, TypeError, PermissionError) as exc:
        raise SourceError(f"shared log {args.shared!r}: {exc}") from None
    return log, log.close


# option name (an attribute of the parsed arguments) -> its opener
_SOURCES: dict[str, Opener] = {"redis": _open_redis, "shared": _open_shared}


async def _serve(args: argparse.Namespace, view: Any, token: str) -> int:
    import uvicorn
    from starlette.applications import Starlette

    from .asgi import admin_mount

    app = Starlette(routes=[admin_mount(view, PREFIX, token=token)])
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        if task.done():
            return 1
        await asyncio.sleep(0.05)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    base = f"http://{host}:{port}{PREFIX}"
    print(f"fastopslog serve: live page {base}/#token={token}", flush=True)
    print(f"  token: {token}", flush=True)
    if args.duration:
        await asyncio.wait({task}, timeout=args.duration)
        server.should_exit = True
    await task
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        import sse_starlette  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        print(
            f'serve needs the asgi extra ({exc.name} is missing): pip install "fastopslog[asgi]"',
            file=sys.stderr,
        )
        return 2
    if args.history < 0 or args.duration < 0:
        print("--history and --duration must not be negative", file=sys.stderr)
        return 2
    name = next(name for name in _SOURCES if getattr(args, name, None) is not None)
    try:
        view, close = _SOURCES[name](args)
    except SourceError as exc:
        print(f"fastopslog serve: {exc}", file=sys.stderr)
        return 2
    token = args.token or secrets.token_urlsafe(18)
    try:
        return asyncio.run(_serve(args, view, token))
    except KeyboardInterrupt:
        return 0
    finally:
        close()
