"""Pure ASGI middleware that publishes one ops log entry per HTTP request.

What the middleware records by itself: ``method``; ``path`` with the query
string (redacted); ``status``; ``latency_ms`` from the moment the request
reaches the middleware to the moment the last body byte was handed to the
server (``more_body`` false), so a streamed response counts its whole
duration; ``stream`` when the response was streamed (sent in several body
messages without a ``Content-Length``: SSE, chunked). The entry's ``time``
is stamped when it is published, that is when the request finished.

What only the application knows it writes into an :class:`OpsLogContext`,
one per request, reachable from the handler three ways:

- ``request.state.opslog`` in Starlette and FastAPI (the middleware puts it
  in ``scope["state"]["opslog"]``, which backs ``request.state``);
- :func:`current_context`, a context variable, from anywhere in the
  request's task (also in ``def`` endpoints run in the thread pool, and in a
  streaming response's body iterator, and code that has no ``request``),
  when the middleware is given ``contextvar=True`` (off by default: it
  costs about 0.2 µs a request);
- ``scope["state"]["opslog"]`` in a raw ASGI app.

Set ``model``, ``account_id``, ``group_id``, ``api_key_id``, ``user_id``,
``turns``, ``prompt_chars``, ``error_message``, ``error_detail`` and
``upstream_status`` as plain attributes (or all at once with
``ctx.update(...)``); ``stream = True/False`` overrides the detection;
``skip = True`` publishes nothing for this request. Values are checked when
the entry is built: a value of the wrong type is logged and left out, it
never fails the request.

Failures:

- The app raises: an entry is published and the exception propagates
  unchanged. Its status is 500 unless the whole response had already gone
  out (then the status sent stays); ``error_message`` is the exception's
  type and message (or what the app set, the exception then going to an
  empty ``error_detail``).
- The client goes away before the response is complete (the server tells
  the app with ``http.disconnect``), or the request task is cancelled:
  status ``499`` (nginx's "client closed request"), error message ``client
  disconnected`` or ``request cancelled``; the latency is up to that moment.
  A ``CancelledError`` still propagates.
- The app returns without starting a response: status 500 (the server
  answers 500 too) with an error message saying so.

Requests to one of ``exclude_paths`` or below it (by default the admin
routes' prefix, so dashboards do not log themselves; ``/admin/ops/logs``
covers ``/admin/ops/logs/stream`` but not ``/admin/ops/logsX``) and non-HTTP
scopes (websocket, lifespan) pass straight through.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from contextvars import ContextVar
from time import perf_counter_ns
from typing import Any, ClassVar

from .. import USE_EXTENSIONS, OpsLogBroadcaster, OpsLogEntry
from .redact import Redactor, truncate

__all__ = (
    "CLIENT_CLOSED_REQUEST",
    "DEFAULT_PREFIX",
    "STATE_KEY",
    "OpsLogContext",
    "OpsLogMiddleware",
    "current_context",
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_PREFIX = "/admin/ops/logs"
STATE_KEY = "opslog"
CLIENT_CLOSED_REQUEST = 499
_PATH_CACHE_SIZE = 4096

logger = logging.getLogger("fastopslog.asgi")

_current: ContextVar[OpsLogContext | None] = ContextVar("fastopslog_request", default=None)


def current_context() -> OpsLogContext | None:
    """The :class:`OpsLogContext` of the request being handled, or ``None``
    outside one (or when no middleware with ``contextvar=True`` is
    installed)."""
    return _current.get()


class OpsLogContext:
    """What the application adds to its request's entry. Unset fields keep
    their defaults (``""``, ``0``; ``stream=None`` means detect it).
    Setting a name that is not a field is an ``AttributeError``, so a typo
    cannot go unnoticed."""

    # Class-level defaults: a fresh context costs one empty object. What the
    # app sets is an instance attribute (for the app to read back) and is
    # also kept in ``_fields``, in the order set, which is all the
    # middleware looks at: ``None`` until the first write, so an untouched
    # context costs the middleware one attribute read (reading ``__dict__``
    # would make CPython build the instance's dict).
    model: str = ""
    account_id: int = 0
    group_id: int = 0
    api_key_id: int = 0
    user_id: int = 0
    turns: int = 0
    prompt_chars: int = 0
    error_message: str = ""
    error_detail: str = ""
    upstream_status: int = 0
    stream: bool | None = None
    skip: bool = False
    _fields: ClassVar[dict[str, Any] | None] = None

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in _CONTEXT_FIELDS:
            raise AttributeError(
                f"OpsLogContext has no field {name!r}; fields: {', '.join(sorted(_CONTEXT_FIELDS))}"
            )
        fields = self._fields
        if fields is None:
            fields = {}
            object.__setattr__(self, "_fields", fields)
        fields[name] = value
        object.__setattr__(self, name, value)

    def update(self, **fields: Any) -> None:
        """Set several fields at once: ``ctx.update(model="gpt-4o", turns=3)``."""
        for name, value in fields.items():
            setattr(self, name, value)

    def __repr__(self) -> str:
        fields = self._fields or {}
        return f"OpsLogContext({', '.join(f'{k}={v!r}' for k, v in fields.items())})"


# The context's fields are its annotated public class attributes: one list.
_CONTEXT_FIELDS = frozenset(name for name in OpsLogContext.__annotations__ if not name.startswith("_"))

Redact = bool | None | Redactor | Callable[[str], str]


class _Recorder:
    """One request's view of the response, through wrapped send/receive.

    ``send`` is a plain function returning the server's awaitable, so
    wrapping it adds no coroutine, except for the last body message of a
    streamed response, which is awaited here to stamp the moment the server
    took it (it may wait for the client to read what came before).
    Class-level defaults and no ``__init__`` keep creating one cheap (half
    the cost of a Python ``__init__`` setting two attributes): the
    middleware sets ``_send`` and ``_receive`` itself."""

    status = 0
    headers: Any = None
    end = 0  # perf_counter_ns once the last body byte was sent
    chunked = False
    disconnected = False
    _send: Send
    _receive: Receive

    def send(self, message: Message) -> Awaitable[None]:
        kind = message["type"]
        if kind == "http.response.body":
            if not message.get("more_body", False):
                if self.chunked:
                    return self._last(message)
                # The whole body in one message: the server writes it
                # without waiting, so the moment it is handed over is the
                # moment it is sent, and no coroutine is needed to know.
                self.end = perf_counter_ns()
                return self._send(message)
            self.chunked = True
        elif kind == "http.response.start":
            self.status = message["status"]
            self.headers = message.get("headers")
        elif kind == "http.response.pathsend":
            return self._last(message)
        return self._send(message)

    async def _last(self, message: Message) -> None:
        await self._send(message)
        self.end = perf_counter_ns()

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.disconnect" and not self.end:
            self.disconnected = True
        return message

    def streamed(self) -> bool:
        if not self.chunked:
            return False
        for name, value in self.headers or ():
            name = bytes(name).lower()
            if name == b"content-length":
                return False
            if name == b"content-type" and bytes(value).startswith(b"text/event-stream"):
                return True
        return True


def _is_disconnect(exc: BaseException) -> bool:
    # Starlette's ClientDisconnect, uvicorn's ClientDisconnected (an
    # OSError), a broken pipe: the client is gone. Named, not imported, so
    # the middleware needs no framework.
    name = type(exc).__name__
    return name in ("ClientDisconnect", "ClientDisconnected") or isinstance(
        exc, (ConnectionError, BrokenPipeError)
    )


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class OpsLogMiddleware:
    """``app.add_middleware(OpsLogMiddleware, broadcaster=ops)`` (Starlette,
    FastAPI), or ``OpsLogMiddleware(app, ops)`` around any ASGI app.

    - ``redact``: ``True`` (the default) uses a :class:`Redactor` with its
      defaults; a :class:`Redactor` of your own; any callable ``str -> str``
      (applied to the path with its query string and to the error texts);
      ``False`` or ``None`` to publish them as they are.
    - ``error_detail_limit`` / ``error_message_limit``: characters kept
      (after redaction), the cut marked; ``0`` for no limit.
    - ``exclude_paths``: paths not logged, each with what is below it
      (default: the admin routes' default prefix); ``()`` logs everything.
    - ``include_query``: whether ``path`` carries the query string.
    - ``contextvar``: ``True`` to make the request's context reachable
      through :func:`current_context` too (about 0.2 µs a request);
      ``request.state.opslog`` always works.
    """

    def __init__(
        self,
        app: ASGIApp,
        broadcaster: OpsLogBroadcaster,
        *,
        redact: Redact = True,
        error_detail_limit: int = 4096,
        error_message_limit: int = 1024,
        exclude_paths: Iterable[str] = (DEFAULT_PREFIX,),
        include_query: bool = True,
        contextvar: bool = False,
    ) -> None:
        if not callable(getattr(broadcaster, "publish", None)):
            raise TypeError("broadcaster must be an OpsLogBroadcaster")
        for name, limit in (
            ("error_detail_limit", error_detail_limit),
            ("error_message_limit", error_message_limit),
        ):
            if type(limit) is not int or limit < 0:
                raise ValueError(f"{name} must be a non-negative int")
        self.app = app
        self.broadcaster = broadcaster
        self._publish_entry = broadcaster.publish
        if redact is True:
            redact = Redactor()
        elif redact is False:
            redact = None
        elif redact is not None and not callable(redact):
            raise TypeError("redact must be True, False, None, a Redactor or a callable")
        self.redactor: Callable[[str], str] | None = redact
        # Only a Redactor (or no redaction) is known to be pure, so only
        # then is a path's published form remembered.
        self._memoize = redact is None or isinstance(redact, Redactor)
        # Each path seen: how it publishes without a query string (its
        # redacted form, or itself when not memoized), or "" when excluded.
        self._paths: dict[str, str] = {}
        self.error_detail_limit = error_detail_limit
        self.error_message_limit = error_message_limit
        if isinstance(exclude_paths, str):
            exclude_paths = (exclude_paths,)
        self.exclude_paths = tuple(p.rstrip("/") or "/" for p in exclude_paths)
        self.include_query = include_query
        self.contextvar = contextvar

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # One dict lookup a request instead of a prefix scan (a gateway
        # sees the same few paths again and again).
        known = self._paths.get(scope["path"])
        if known is None:
            known = self._learn(scope["path"])
        if not known:  # excluded
            await self.app(scope, receive, send)
            return
        start = perf_counter_ns()
        ctx = OpsLogContext()
        try:
            scope["state"][STATE_KEY] = ctx
        except KeyError:
            scope["state"] = {STATE_KEY: ctx}
        rec = _Recorder()
        rec._send = send
        rec._receive = receive
        token = _current.set(ctx) if self.contextvar else None
        try:
            await self.app(scope, rec.receive, rec.send)
        except BaseException as exc:
            self._finish(scope, ctx, rec, start, exc)
            raise
        else:
            if ctx._fields or rec.disconnected or rec.chunked or not rec.end:
                self._finish(scope, ctx, rec, start, None)
            else:
                # The common case, inline: a complete, unstreamed response
                # to which the app added nothing.
                try:
                    self._publish_entry(
                        OpsLogEntry(
                            method=scope["method"],
                            path=(
                                known
                                if self._memoize and not scope.get("query_string")
                                else self._path(scope)
                            ),
                            status=rec.status,
                            latency_ms=(rec.end - start) // 1_000_000,
                        )
                    )
                except Exception:
                    logger.exception("fastopslog: could not publish the ops log entry")
        finally:
            if token is not None:
                _current.reset(token)

    def _learn(self, path: str) -> str:
        """What ``path`` publishes as without a query string, or ``""``
        when it is excluded, remembered for the next request. An excluded
        prefix covers itself and what is below it, as a mount does, not
        other paths that merely start with the same characters."""
        if any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.exclude_paths):
            published = ""
        elif isinstance(self.redactor, Redactor):
            published = self.redactor.path(path)
        else:
            published = path
        paths = self._paths
        if len(paths) >= _PATH_CACHE_SIZE:
            paths.clear()
        paths[path] = published
        return published

    def _path(self, scope: Scope) -> str:
        """The path with its query string, redacted. Paths without a query
        are memoized when the redaction is known to be pure; those with one
        are redacted each time, so no credential is kept."""
        path: str = scope["path"]
        query = scope.get("query_string") if self.include_query else None
        redact = self.redactor
        if query:
            text: str = query.decode("latin-1")
            if redact is None:
                return path + "?" + text
            if isinstance(redact, Redactor):
                return redact.path(path, text)
            return redact(path + "?" + text)
        if not self._memoize:
            assert redact is not None
            return redact(path)
        return self._paths.get(path) or self._learn(path)

    def _finish(
        self,
        scope: Scope,
        ctx: OpsLogContext,
        rec: _Recorder,
        start: int,
        exc: BaseException | None,
    ) -> None:
        # Never let logging fail a request that has been served.
        try:
            entry = self._entry(scope, ctx, rec, start, exc)
            if entry is not None:
                self._publish_entry(entry)
        except Exception:
            logger.exception("fastopslog: could not publish the ops log entry")

    def _entry(
        self,
        scope: Scope,
        ctx: OpsLogContext,
        rec: _Recorder,
        start: int,
        exc: BaseException | None,
    ) -> OpsLogEntry | None:
        end = rec.end or perf_counter_ns()
        fields = ctx._fields or {}
        stream: bool | None = None
        if fields:
            if fields.get("skip"):
                return None
            fields = dict(fields)
            fields.pop("skip", None)
            stream = fields.pop("stream", None)
        status = rec.status
        error = ""
        detail = ""
        if exc is not None:
            if isinstance(exc, asyncio.CancelledError):
                status, error = CLIENT_CLOSED_REQUEST, "request cancelled"
            elif _is_disconnect(exc):
                status, error = CLIENT_CLOSED_REQUEST, "client disconnected"
            elif rec.disconnected:
                # The client left, and then the app failed (perhaps because
                # it left): the status says the first, the detail the second.
                status, error = CLIENT_CLOSED_REQUEST, "client disconnected"
                detail = _describe(exc)
            else:
                if not rec.end:
                    status = 500
                error = _describe(exc)
        elif not rec.end:
            if rec.disconnected:
                status, error = CLIENT_CLOSED_REQUEST, "client disconnected"
            elif not status:
                status, error = 500, "the application returned without starting a response"
            else:
                error = "the application returned without completing the response"
        elif rec.disconnected:
            status, error = CLIENT_CLOSED_REQUEST, "client disconnected"
        if error:
            fields = dict(fields)
            if not fields.get("error_message"):
                fields["error_message"] = error
            elif exc is not None and not detail:
                detail = error
            if detail and not fields.get("error_detail"):
                fields["error_detail"] = detail
        redact = self.redactor
        path = self._path(scope)
        if stream is None:
            stream = rec.streamed()
        method = scope.get("method", "")
        latency = (end - start) // 1_000_000
        if not fields:
            return OpsLogEntry(
                method=method, path=path, status=status, latency_ms=latency, stream=stream
            )
        for name, limit in (
            ("error_message", self.error_message_limit),
            ("error_detail", self.error_detail_limit),
        ):
            text = fields.get(name)
            if text:
                if not isinstance(text, str):
                    text = str(text)
                if redact is not None:
                    text = redact(text)
                fields[name] = truncate(text, limit)
        try:
            return OpsLogEntry(
                method=method,
                path=path,
                status=status,
                latency_ms=latency,
                stream=bool(stream),
                **fields,
            )
        except (TypeError, ValueError, OverflowError) as bad:
            logger.warning("fastopslog: the request's OpsLogContext has a bad value: %s", bad)
            kept = {}
            for name, value in fields.items():
                try:
                    OpsLogEntry(**{name: value})
                except (TypeError, ValueError, OverflowError):
                    continue
                kept[name] = value
            return OpsLogEntry(
                method=method,
                path=path,
                status=status,
                latency_ms=latency,
                stream=bool(stream),
                **kept,
            )


if USE_EXTENSIONS:
    # On the compiled core, a request takes the core's copy of __call__ and
    # of _Recorder (_asgi_c.pxi): the same steps, with no bytecode of ours
    # on the common path. The methods above stay the slow paths of both.
    from .._opslog_c import _asgi_call

    OpsLogMiddleware.__call__ = _asgi_call(  # type: ignore[method-assign]
        OpsLogContext, _current, STATE_KEY, logger
    )
