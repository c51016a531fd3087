"""fastopslog for Starlette, FastAPI and any ASGI app (``pip install "fastopslog[asgi]"``).

- :class:`OpsLogMiddleware`: one ops log entry per HTTP request; the app adds
  what only it knows through the request's :class:`OpsLogContext`
  (``request.state.opslog``, or :func:`current_context` with
  ``contextvar=True``).
- :func:`admin_routes` / :func:`admin_mount`: ``/recent``, ``/stream`` (SSE),
  ``/stats`` and the live page, under a prefix (default
  :data:`DEFAULT_PREFIX`).
- :class:`Redactor`: what the middleware hides before publishing.

A minimal gateway::

    from fastapi import FastAPI, Request
    from fastopslog import OpsLogBroadcaster
    from fastopslog.asgi import DEFAULT_PREFIX, OpsLogMiddleware, admin_routes

    ops = OpsLogBroadcaster(history_cap=1000)
    app = FastAPI()
    app.add_middleware(OpsLogMiddleware, broadcaster=ops)
    app.mount(DEFAULT_PREFIX, admin_routes(ops, token="change-me"))

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        request.state.opslog.update(model=body["model"], turns=len(body["messages"]))
        ...

The middleware needs nothing beyond fastopslog itself; the admin routes need
``starlette`` and ``sse-starlette`` (the ``asgi`` extra) and are imported on
first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .middleware import (
    CLIENT_CLOSED_REQUEST,
    DEFAULT_PREFIX,
    STATE_KEY,
    OpsLogContext,
    OpsLogMiddleware,
    current_context,
)
from .redact import MARKER, Redactor

__all__ = (
    "CLIENT_CLOSED_REQUEST",
    "DEFAULT_PREFIX",
    "MARKER",
    "STATE_KEY",
    "OpsLogContext",
    "OpsLogMiddleware",
    "Redactor",
    "admin_mount",
    "admin_routes",
    "current_context",
)

if TYPE_CHECKING:
    from .routes import admin_mount, admin_routes


def __getattr__(name: str) -> Any:
    if name in ("admin_routes", "admin_mount"):
        from . import routes

        return getattr(routes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
