"""Admin routes: recent entries, a live SSE stream, stats and the live page.

``admin_routes(ops, token=...)`` is a Starlette :class:`~starlette.routing.Router`
to mount under a prefix (``app.mount("/admin/ops/logs", ...)`` in Starlette
or FastAPI); ``admin_mount(ops, token=...)`` is the same as a ready
:class:`~starlette.routing.Mount` for a route list. Under the prefix:

``GET /recent``
    The history as a JSON array of entries (each as ``entry.to_json()``
    renders it, with its sequence number added as ``seq``), oldest first. Query parameters: the filter fields
    ``min_status``, ``model``, ``account_id``, ``group_id``,
    ``min_latency_ms``, and ``limit`` (the newest ``limit`` entries, default
    100). The ``X-Opslog-Last-Seq`` header carries the sequence number of
    the last entry returned, for a client that wants to go on with
    ``/stream?last_event_id=``.
``GET /stream``
    Server-Sent Events. The filter parameters as for ``/recent``; ``replay``
    (how many recent matching entries prime the stream, default 100, at
    most ``buf_size``); ``last_event_id`` (or the ``Last-Event-ID`` header a
    reconnecting ``EventSource`` sends, which wins): resume after that
    sequence number instead. Priming and going live are one atomic
    ``subscribe``, so there is neither gap nor duplicate between them.
    Events:

    - unnamed (``message``) events, one per entry: ``id`` is the entry's
      sequence number, ``data`` its JSON;
    - ``ready`` first, ``data`` ``{"resumed": bool, "replay": n | null,
      "last_event_id": s | null, "filter": {...}, "now": t, "started": t}``
      (the server's clock, and when its process started: a page tells a
      restart by it), with ``retry`` (the reconnect delay for ``EventSource``);
    - ``lost``: entries this client will never see. ``{"reason":
      "history", "after": s}`` when a resume asked for entries history no
      longer holds (``sub.history_gap``); ``{"reason": "slow", "count": n,
      "total": t}`` when the client's buffer overflowed (``sub.dropped``
      grew by ``n``); ``{"reason": "upstream", "count": n, "total": t}``
      when entries never reached this server (a subscription with an
      ``upstream_lost`` count, as a Redis cluster view's: an outage);
    - ``: ping`` comments every ``ping`` seconds;
    - ``summary`` (only with ``summary=1``): the rolling summary of
      ``/summary`` every ``summary_interval`` seconds, of the stream's
      ``model`` when its filter sets one, over ``summary_seconds``
      (default: the summary's window).

    Entries are written in chunks: after the first entry arrives a stream
    waits for the next tick of a ``flush_interval`` clock (50 ms) and sends
    everything gathered as one chunk, so a busy gateway costs each
    dashboard a few sends a second rather than one per entry. Streams with
    the same filter share a chunk only when, in the same tick, their
    batches start at the same seq, are as long, and are known to hold the
    same entries (their seqs are consecutive, or the subscription never
    dropped one); any other batch gets a chunk of its own. A send that does
    not complete within ``send_timeout`` seconds ends the stream (a stuck
    client is dropped). Whatever ends the stream (the client going away, a
    timeout, cancellation, server shutdown), the subscription is
    unsubscribed.
``GET /stats``
    ``{"published": …, "dropped": …, "subscribers": …}``, and
    ``"upstream_lost"`` when the broadcaster has that count (a Redis
    cluster view: ``published`` is what it read from the stream).
``GET /summary``
    The rolling summary (``fastopslog.asgi.summary``): per second over the
    last minutes, requests, status classes, errors and latency
    percentiles, with totals and the top models and accounts by requests
    and by errors; computed once per process for every dashboard.
    Parameters: ``seconds`` (how many of the newest seconds), ``model``
    (series and totals of that model only), ``top`` (list length).
``GET /``
    The live-tail page (one static HTML file, no external resources).
``POST /session`` / ``DELETE /session``
    For the page: exchanges a valid bearer token for an ``HttpOnly``,
    ``SameSite=Strict`` cookie scoped to the prefix (an ``EventSource``
    cannot send an ``Authorization`` header), and clears it.

Authorization is required by default: give ``token=`` (clients send
``Authorization: Bearer <token>``; compared in constant time) and/or
``authorize=`` (a callable, sync or async, taking the Starlette ``Request``
and returning ``True`` to allow; it may also return a ``Response`` to send
instead). Either one granting is enough. Without both, the constructor
refuses unless ``insecure_no_auth=True``. Refusals: 401 without
credentials or with a wrong token, 403 when ``authorize`` says no. The page
itself holds no data and is served without credentials unless
``page_requires_auth=True`` (for an ``authorize`` callable that recognizes
the browser, by your own session cookie say); it asks for the token when
the data routes refuse it. A bad query parameter is a 400 with a JSON ``{"error": …}``
naming it; an unknown route under the prefix a JSON 404.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import inspect
import json
import logging
import operator
import re
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from sse_starlette.sse import EventSourceResponse, SendTimeoutError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, Router

from .. import OpsLogBroadcaster, OpsLogFilter, SubscriptionClosed
from .._common import Overflow
from .middleware import DEFAULT_PREFIX, Receive, Scope, Send
from .summary import DEFAULT_WINDOW, SummaryFeed

__all__ = ("COOKIE_NAME", "admin_mount", "admin_routes")

logger = logging.getLogger("fastopslog.asgi")

COOKIE_NAME = "fastopslog_session"
DEFAULT_REPLAY = 100
_FRAME_CACHE_SIZE = 8192
_CHUNK_CACHE_SIZE = 256
_SEQ = operator.attrgetter("seq")
INT64_MAX = 2**63 - 1
MAX_MODEL_CHARS = 256
PROCESS_STARTED = round(time.time(), 3)

AuthResult = bool | Response | None
Authorize = Callable[[Request], AuthResult | Awaitable[AuthResult]]

_FILTER_INTS = ("min_status", "account_id", "group_id", "min_latency_ms")
_FILTER_PARAMS = (*_FILTER_INTS, "model")
_RECENT_PARAMS = frozenset((*_FILTER_PARAMS, "limit"))
_STREAM_PARAMS = frozenset(
    (*_FILTER_PARAMS, "replay", "last_event_id", "summary", "summary_seconds")
)
_SUMMARY_PARAMS = frozenset(("seconds", "model", "top"))
_DIGITS = re.compile(r"[0-9]{1,19}")


class BadParameter(ValueError):
    """A query parameter that cannot be used; its message is the 400's."""


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _int_param(name: str, raw: str, low: int = 0, high: int = INT64_MAX) -> int:
    text = raw.strip()
    if not _DIGITS.fullmatch(text) or not low <= int(text) <= high:
        bounds = f"from {low} to {high}" if high != INT64_MAX else f"of at least {low}"
        what = name if " " in name else f"query parameter {name!r}"
        raise BadParameter(f"{what} must be an integer {bounds}, not {raw!r}")
    return int(text)


def _params(request: Request, allowed: frozenset[str]) -> dict[str, str]:
    """The query parameters, each at most once and all known; empty values
    count as absent (what an HTML form sends for an empty field)."""
    seen: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in allowed:
            raise BadParameter(
                f"unknown query parameter {name!r}; known: {', '.join(sorted(allowed))}"
            )
        if name in seen:
            raise BadParameter(f"query parameter {name!r} given more than once")
        seen[name] = value
    return {name: value for name, value in seen.items() if value != ""}


def _filter(params: dict[str, str]) -> OpsLogFilter | None:
    fields: dict[str, Any] = {}
    for name in _FILTER_INTS:
        if name in params:
            fields[name] = _int_param(name, params[name])
    model = params.get("model")
    if model is not None:
        if len(model) > MAX_MODEL_CHARS:
            raise BadParameter(f"query parameter 'model' is longer than {MAX_MODEL_CHARS} characters")
        fields["model"] = model
    if not any(fields.values()):
        return None
    return OpsLogFilter(**fields)


def _filter_dict(flt: OpsLogFilter | None) -> dict[str, Any]:
    if flt is None:
        return {}
    return {
        name: getattr(flt, name) for name in _FILTER_PARAMS if getattr(flt, name)
    }


class _Auth:
    def __init__(
        self,
        token: str | None,
        authorize: Authorize | None,
        insecure_no_auth: bool,
    ) -> None:
        if token is not None:
            if not isinstance(token, str) or not token.strip():
                raise ValueError("token must be a non-empty string")
            if token != token.strip() or any(c.isspace() for c in token):
                raise ValueError("token must not contain whitespace")
        if authorize is not None and not callable(authorize):
            raise TypeError("authorize must be a callable taking the Request")
        if token is None and authorize is None and not insecure_no_auth:
            raise ValueError(
                "the admin routes need credentials: give token= (a bearer token) "
                "or authorize= (a callable), or insecure_no_auth=True to serve "
                "them to anyone who can reach them"
            )
        self.open = token is None and authorize is None
        self.authorize = authorize
        # Compare digests, so the comparison time says nothing about the
        # token, its length included.
        self._token_digest = (
            hashlib.sha256(token.encode()).digest() if token is not None else None
        )
        self.cookie_value = (
            hmac.new(token.encode(), b"fastopslog-session-v1", hashlib.sha256).hexdigest()
            if token is not None
            else None
        )

    def token_ok(self, candidate: str) -> bool:
        assert self._token_digest is not None
        digest = hashlib.sha256(candidate.encode("utf-8", "surrogateescape")).digest()
        return hmac.compare_digest(digest, self._token_digest)

    @staticmethod
    def bearer(request: Request) -> str | None:
        """The bearer token; ``None`` without an ``Authorization`` header;
        :class:`BadParameter` for a header of another form."""
        header = request.headers.get("authorization")
        if not header or not header.strip():
            return None
        scheme, _, value = header.strip().partition(" ")
        if not value.strip():
            raise BadParameter(
                "the Authorization header must read 'Bearer <token>': the word Bearer is missing"
            )
        if scheme.lower() != "bearer":
            # The scheme is echoed only when it is a plain word, never what
            # might be a token.
            named = f" {scheme!r}" if scheme.isalpha() and len(scheme) <= 16 else " given"
            raise BadParameter(
                f"the Authorization header must read 'Bearer <token>', not use the{named} scheme"
            )
        return value.strip()

    async def check(self, request: Request) -> Response | None:
        """``None`` to go on, else the refusal to send."""
        if self.open:
            return None
        refusal: Response | None = None
        if self._token_digest is not None:
            malformed: str | None = None
            try:
                given = self.bearer(request)
            except BadParameter as exc:
                given, malformed = None, str(exc)
            if malformed is not None:
                refusal = _error(401, malformed, {"WWW-Authenticate": 'Bearer realm="fastopslog"'})
            elif given is not None:
                if self.token_ok(given):
                    return None
                refusal = _error(
                    401,
                    "invalid bearer token",
                    {"WWW-Authenticate": 'Bearer realm="fastopslog", error="invalid_token"'},
                )
            else:
                cookie = request.cookies.get(COOKIE_NAME)
                if cookie is not None:
                    assert self.cookie_value is not None
                    if hmac.compare_digest(
                        cookie.encode("utf-8", "surrogateescape"), self.cookie_value.encode()
                    ):
                        return None
                    refusal = _error(401, "the session cookie is no longer valid: log in again")
                else:
                    refusal = _error(
                        401,
                        "credentials required: send 'Authorization: Bearer <token>'",
                        {"WWW-Authenticate": 'Bearer realm="fastopslog"'},
                    )
        if self.authorize is not None:
            result = self.authorize(request)
            if inspect.isawaitable(result):
                result = await result
            if result is True:
                return None
            if isinstance(result, Response):
                return result
            if refusal is None:
                refusal = _error(403, "not authorized to read the ops log")
        return refusal


class _EventStream:
    """The ``/stream`` response: subscribes when the server runs it, and
    unsubscribes however it ends (``async with``)."""

    def __init__(
        self,
        admin: _Admin,
        flt: OpsLogFilter | None,
        replay: int,
        since_seq: int | None,
        summary_seconds: int | None = None,
    ) -> None:
        self.admin = admin
        self.flt = flt
        self.replay = replay
        self.since_seq = since_seq
        # None: no summary events; else the seconds each one covers.
        self.summary_seconds = summary_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        admin = self.admin
        if self.since_seq is not None:
            sub = admin.broadcaster.subscribe(
                self.flt, admin.buf_size, since_seq=self.since_seq, overflow=admin.overflow
            )
        else:
            sub = admin.broadcaster.subscribe(
                self.flt, admin.buf_size, replay=self.replay, overflow=admin.overflow
            )
        completed = False

        async def tracked(message: Any) -> None:
            nonlocal completed
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                completed = True

        async with sub:
            response = EventSourceResponse(
                self._events(sub),
                ping=admin.ping,
                send_timeout=admin.send_timeout,
                sep="\n",
                headers={"Cache-Control": "no-store"},
            )
            try:
                await response(scope, receive, tracked)
            except SendTimeoutError:
                # The client stopped reading: drop it. The server closes
                # the connection as the response is incomplete.
                logger.info("fastopslog: dropped a dashboard that stopped reading (send timeout)")
                return
            if not completed:
                # sse-starlette returns without ending the body when the
                # server shuts down (Ctrl-C with a dashboard open), which
                # uvicorn logs as an error: end it, as a finished stream.
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _events(self, sub: Any) -> Any:
        admin = self.admin
        ready = {
            "resumed": self.since_seq is not None,
            "replay": self.replay if self.since_seq is None else None,
            "last_event_id": self.since_seq,
            "filter": _filter_dict(self.flt),
            "now": round(time.time(), 3),
            "started": PROCESS_STARTED,
        }
        head = f"retry: {admin.retry_ms}\nevent: ready\ndata: {json.dumps(ready)}\n\n"
        if sub.history_gap:
            lost = {"reason": "history", "after": self.since_seq}
            head += f"event: lost\ndata: {json.dumps(lost)}\n\n"
        summary_every = admin.summary_interval if self.summary_seconds is not None else 0.0
        loop = asyncio.get_running_loop()
        if summary_every:
            head += self._summary_event()
            next_summary = loop.time() + summary_every
        yield head.encode()
        seen_dropped = seen_upstream = 0
        # Only a cluster view's subscriptions count losses upstream.
        counts_upstream = hasattr(sub, "upstream_lost")
        batch_max = admin.batch_max
        interval = admin.flush_interval
        chunk_of = admin.chunk
        flt = self.flt
        while True:
            batch = sub.drain(batch_max)
            if not batch:
                try:
                    if summary_every:
                        first = await asyncio.wait_for(
                            sub.aget(), max(0.0, next_summary - loop.time())
                        )
                    else:
                        first = await sub.aget()
                except SubscriptionClosed:
                    return
                except TimeoutError:
                    next_summary = loop.time() + summary_every
                    yield self._summary_event().encode()
                    continue
                if interval:
                    # Let entries gather until the next tick of a clock all
                    # streams share: one chunk (one send, one wake-up) per
                    # tick instead of one per entry under load, and streams
                    # with one filter drain the same batch at the same tick,
                    # so its chunk is made once for all of them.
                    await asyncio.sleep(interval - loop.time() % interval)
                batch = [first]
                batch += sub.drain(batch_max - 1)
            dropped = sub.dropped
            chunk = chunk_of(flt, batch, dropped == 0)
            if dropped != seen_dropped:
                lost = {"reason": "slow", "count": dropped - seen_dropped, "total": dropped}
                chunk += f"event: lost\ndata: {json.dumps(lost)}\n\n".encode()
                seen_dropped = dropped
            if counts_upstream and sub.upstream_lost != seen_upstream:
                upstream = sub.upstream_lost
                lost = {"reason": "upstream", "count": upstream - seen_upstream, "total": upstream}
                chunk += f"event: lost\ndata: {json.dumps(lost)}\n\n".encode()
                seen_upstream = upstream
            if summary_every and loop.time() >= next_summary:
                next_summary = loop.time() + summary_every
                chunk += self._summary_event().encode()
            yield chunk

    def _summary_event(self) -> str:
        model = self.flt.model if self.flt is not None and self.flt.model else None
        report = self.admin.summary_json(self.summary_seconds, model)
        return f"event: summary\ndata: {report}\n\n"


class _Admin:
    def __init__(
        self,
        broadcaster: OpsLogBroadcaster,
        *,
        token: str | None,
        authorize: Authorize | None,
        insecure_no_auth: bool,
        page_requires_auth: bool,
        replay: int,
        buf_size: int,
        overflow: Overflow,
        ping: float,
        send_timeout: float | None,
        retry_ms: int,
        default_limit: int,
        max_limit: int,
        batch_max: int,
        flush_interval: float,
        summary_window: int,
        summary_interval: float,
    ) -> None:
        if not callable(getattr(broadcaster, "subscribe", None)):
            raise TypeError("broadcaster must be an OpsLogBroadcaster")
        for name, value, low in (
            ("buf_size", buf_size, 1),
            ("replay", replay, 0),
            ("retry_ms", retry_ms, 0),
            ("default_limit", default_limit, 1),
            ("max_limit", max_limit, 1),
            ("batch_max", batch_max, 1),
            ("summary_window", summary_window, 1),
        ):
            if type(value) is not int or value < low:
                raise ValueError(f"{name} must be an int of at least {low}")
        if replay > buf_size:
            raise ValueError("replay must not exceed buf_size")
        if default_limit > max_limit:
            raise ValueError("default_limit must not exceed max_limit")
        if overflow not in ("drop_newest", "drop_oldest"):
            raise ValueError("overflow must be 'drop_newest' or 'drop_oldest'")
        if not isinstance(ping, (int, float)) or ping < 0:
            raise ValueError("ping must be a non-negative number of seconds (0: no pings)")
        if not isinstance(flush_interval, (int, float)) or not 0 <= flush_interval <= 10:
            raise ValueError("flush_interval must be a number of seconds from 0 to 10")
        if not isinstance(summary_interval, (int, float)) or not 0.1 <= summary_interval <= 60:
            raise ValueError("summary_interval must be a number of seconds from 0.1 to 60")
        if send_timeout is not None and (
            not isinstance(send_timeout, (int, float)) or send_timeout <= 0
        ):
            raise ValueError("send_timeout must be a positive number of seconds or None")
        self.broadcaster = broadcaster
        self.auth = _Auth(token, authorize, insecure_no_auth)
        self.page_requires_auth = page_requires_auth
        self.replay = replay
        self.buf_size = buf_size
        self.overflow = overflow
        self.ping = ping
        self.send_timeout = send_timeout
        self.retry_ms = retry_ms
        self.default_limit = default_limit
        self.max_limit = max_limit
        self.batch_max = batch_max
        self.flush_interval = flush_interval
        # Each entry's SSE frame, made once and shared by every stream that
        # sends it (keyed by seq, unique within the broadcaster).
        self._frames: dict[int, bytes] = {}
        self._chunks: dict[tuple[Any, int, int], bytes] = {}
        self._tick = 0
        self._page: tuple[bytes, str] | None = None
        self.summary_interval = float(summary_interval)
        self.summary_feed = SummaryFeed(broadcaster, summary_window)
        # Reports made this tick of the summary clock, shared by streams.
        self._reports: dict[tuple[int | None, str | None], str] = {}
        self._report_tick = -1

    async def fresh_summary(self) -> None:
        """Start the summary's feed if it is not running; when it was just
        started, let it take the history in before the first answer."""
        if self.summary_feed.ensure().fed == 0:
            await asyncio.sleep(0)
            await asyncio.sleep(0)

    def summary_json(self, seconds: int | None, model: str | None, top: int = 10) -> str:
        """The summary report as JSON, made once per tick of the summary
        clock for each (seconds, model) and shared by every stream."""
        summary = self.summary_feed.ensure()
        tick = int(asyncio.get_running_loop().time() / self.summary_interval)
        if tick != self._report_tick or len(self._reports) >= _CHUNK_CACHE_SIZE:
            self._reports.clear()
            self._report_tick = tick
        key = (seconds, model)
        made = self._reports.get(key) if top == 10 else None
        if made is None:
            made = json.dumps(summary.report(seconds, model, top), separators=(",", ":"))
            if top == 10:
                self._reports[key] = made
        return made

    def chunk(self, flt: OpsLogFilter | None, batch: list[Any], never_dropped: bool) -> bytes:
        """``frames(batch)``, shared between streams. The chunk is kept for
        the current tick of the flush clock under (filter, first seq,
        length), which says exactly what a batch holds when either

        - its subscription never dropped an entry: it then holds every
          matching entry from some point on, in order; or
        - its seqs are consecutive: it then holds every entry from its
          first seq to its last, whatever the subscription dropped before
          (the usual batch of a stream reading everything, even once it
          has fallen behind).

        Any other batch may have gaps another stream's has not, so its
        chunk is made for it alone."""
        if not self.flush_interval or not (
            never_dropped or batch[-1].seq - batch[0].seq == len(batch) - 1
        ):
            return self.frames(batch)
        tick = int(asyncio.get_running_loop().time() / self.flush_interval)
        if tick != self._tick or len(self._chunks) >= _CHUNK_CACHE_SIZE:
            self._chunks.clear()
            self._tick = tick
        key = (flt, batch[0].seq, len(batch))
        made = self._chunks.get(key)
        if made is None:
            made = self._chunks[key] = self.frames(batch)
        return made

    def frames(self, batch: list[Any]) -> bytes:
        """The SSE events (``id: <seq>``, ``data: <json>``) of ``batch``,
        as one chunk. Each entry's event is made once and shared by every
        stream that sends it; a stream's usual cost per entry is a lookup,
        done in C by ``map``."""
        cache = self._frames
        found = list(map(cache.get, map(_SEQ, batch)))
        if None not in found:
            return b"".join(found)  # type: ignore[arg-type]  # no None, checked above
        if len(cache) >= _FRAME_CACHE_SIZE:
            cache.clear()
        made: list[bytes] = []
        for frame, entry in zip(found, batch, strict=True):
            if frame is None:
                seq = entry.seq
                frame = cache[seq] = f"id: {seq}\ndata: {entry.to_json()}\n\n".encode()
            made.append(frame)
        return b"".join(made)

    async def recent(self, request: Request) -> Response:
        refusal = await self.auth.check(request)
        if refusal is not None:
            return refusal
        try:
            params = _params(request, _RECENT_PARAMS)
            flt = _filter(params)
            limit = (
                _int_param("limit", params["limit"], 1, self.max_limit)
                if "limit" in params
                else self.default_limit
            )
        except BadParameter as exc:
            return _error(400, str(exc))
        entries = self.broadcaster.snapshot(flt, limit)
        body = "[" + ",".join(f'{e.to_json()[:-1]},"seq":{e.seq}}}' for e in entries) + "]"
        headers = {"Cache-Control": "no-store"}
        if entries:
            headers["X-Opslog-Last-Seq"] = str(entries[-1].seq)
        return Response(body, media_type="application/json", headers=headers)

    async def stream(self, request: Request) -> Any:
        refusal = await self.auth.check(request)
        if refusal is not None:
            return refusal
        try:
            params = _params(request, _STREAM_PARAMS)
            flt = _filter(params)
            replay = (
                _int_param("replay", params["replay"], 0, self.buf_size)
                if "replay" in params
                else self.replay
            )
            since: int | None = None
            header = request.headers.get("last-event-id")
            if header is not None and header.strip():
                since = _int_param("the Last-Event-ID header", header)
            elif "last_event_id" in params:
                since = _int_param("last_event_id", params["last_event_id"])
            summary_seconds: int | None = None
            if _int_param("summary", params.get("summary", "0"), 0, 1):
                window = self.summary_feed.summary.window
                summary_seconds = (
                    _int_param("summary_seconds", params["summary_seconds"], 1, window)
                    if "summary_seconds" in params
                    else window
                )
            elif "summary_seconds" in params:
                raise BadParameter("query parameter 'summary_seconds' needs summary=1")
        except BadParameter as exc:
            return _error(400, str(exc))
        if summary_seconds is not None:
            await self.fresh_summary()
        return _EventStream(self, flt, replay, since, summary_seconds)

    async def summary(self, request: Request) -> Response:
        refusal = await self.auth.check(request)
        if refusal is not None:
            return refusal
        window = self.summary_feed.summary.window
        try:
            params = _params(request, _SUMMARY_PARAMS)
            seconds = (
                _int_param("seconds", params["seconds"], 1, window) if "seconds" in params else None
            )
            top = _int_param("top", params["top"], 1, 1000) if "top" in params else 10
            model = params.get("model")
            if model is not None and len(model) > MAX_MODEL_CHARS:
                raise BadParameter(
                    f"query parameter 'model' is longer than {MAX_MODEL_CHARS} characters"
                )
        except BadParameter as exc:
            return _error(400, str(exc))
        await self.fresh_summary()
        return Response(
            self.summary_json(seconds, model, top),
            media_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    async def stats(self, request: Request) -> Response:
        refusal = await self.auth.check(request)
        if refusal is not None:
            return refusal
        if request.query_params:
            return _error(400, "/stats takes no query parameters")
        stats = self.broadcaster.stats()
        body = {"published": stats.published, "dropped": stats.dropped, "subscribers": stats.subscribers}
        upstream_lost = getattr(self.broadcaster, "upstream_lost", None)
        if upstream_lost is not None:
            body["upstream_lost"] = upstream_lost
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    async def session(self, request: Request) -> Response:
        path = request.scope.get("root_path") or "/"
        if request.method == "DELETE":
            response = Response(status_code=204)
            response.delete_cookie(COOKIE_NAME, path=path, httponly=True, samesite="strict")
            return response
        if self.auth.cookie_value is None:
            return _error(404, "no token is configured: sessions are not used here")
        try:
            given = self.auth.bearer(request)
        except BadParameter as exc:
            return _error(401, str(exc), {"WWW-Authenticate": 'Bearer realm="fastopslog"'})
        if given is None:
            return _error(
                401,
                "send the token as 'Authorization: Bearer <token>'",
                {"WWW-Authenticate": 'Bearer realm="fastopslog"'},
            )
        if not self.auth.token_ok(given):
            return _error(
                401,
                "invalid bearer token",
                {"WWW-Authenticate": 'Bearer realm="fastopslog", error="invalid_token"'},
            )
        response = Response(status_code=204)
        response.set_cookie(
            COOKIE_NAME,
            self.auth.cookie_value,
            path=path,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def page(self, request: Request) -> Response:
        if self.page_requires_auth:
            refusal = await self.auth.check(request)
            if refusal is not None:
                return refusal
        if self._page is None:
            self._page = _load_page()
        body, csp = self._page
        return Response(
            body,
            media_type="text/html; charset=utf-8",
            headers={
                "Cache-Control": "no-store",
                "Content-Security-Policy": csp,
                "X-Content-Type-Options": "nosniff",
                "X-Frame-Options": "DENY",
                "Referrer-Policy": "no-referrer",
            },
        )

    def router(self) -> Router:
        return Router(
            routes=[
                Route("/", self.page, methods=["GET"]),
                Route("/recent", self.recent, methods=["GET"]),
                Route("/stream", self.stream, methods=["GET"]),
                Route("/stats", self.stats, methods=["GET"]),
                Route("/summary", self.summary, methods=["GET"]),
                Route("/session", self.session, methods=["POST", "DELETE"]),
            ],
            default=_not_found,
        )


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    """Unknown routes under the prefix: a JSON 404, as every other answer."""
    await _error(404, "no such route under the ops log prefix")(scope, receive, send)


def _load_page() -> tuple[bytes, str]:
    """The page, and a Content-Security-Policy allowing exactly its inline
    script and style (by hash) and connections to its own origin."""
    body = resources.files(__package__).joinpath("static/live.html").read_bytes()
    text = body.decode("utf-8")

    def hashes(tag: str) -> str:
        found = re.findall(rf"<{tag}>(.*?)</{tag}>", text, re.S)
        return " ".join(
            f"'sha256-{_b64(hashlib.sha256(block.encode()).digest())}'" for block in found
        )

    csp = (
        "default-src 'none'; "
        f"script-src {hashes('script')}; "
        f"style-src {hashes('style')}; "
        "connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return body, csp


def _b64(raw: bytes) -> str:
    import base64

    return base64.b64encode(raw).decode()


def admin_routes(
    broadcaster: OpsLogBroadcaster,
    *,
    token: str | None = None,
    authorize: Authorize | None = None,
    insecure_no_auth: bool = False,
    page_requires_auth: bool = False,
    replay: int | None = None,
    buf_size: int = 1024,
    overflow: Overflow = "drop_oldest",
    ping: float = 15.0,
    send_timeout: float | None = 10.0,
    retry_ms: int = 2000,
    default_limit: int = 100,
    max_limit: int = 10_000,
    batch_max: int = 1024,
    flush_interval: float = 0.05,
    summary_window: int = DEFAULT_WINDOW,
    summary_interval: float = 1.0,
) -> Router:
    """The admin routes as a Starlette ``Router``, to mount under a prefix:
    ``app.mount("/admin/ops/logs", admin_routes(ops, token=...))``.

    ``buf_size`` and ``overflow`` are each stream's subscription's (a
    dashboard that falls behind keeps the newest by default); ``replay``
    how many entries prime a new stream by default (100, or ``buf_size``
    when that is smaller); ``ping`` the seconds
    between keep-alive comments; ``send_timeout`` the seconds a send may
    take before the client is dropped; ``retry_ms`` the reconnect delay
    sent to ``EventSource``; ``default_limit``/``max_limit`` for
    ``/recent``; ``batch_max`` the most entries written in one chunk;
    ``flush_interval`` how long a stream lets entries gather after the
    first one arrives before it writes them as one chunk (0: write at
    once; the default 50 ms is one send per dashboard per 50 ms under load,
    instead of one per entry); ``summary_window`` the seconds the rolling
    summary keeps, ``summary_interval`` the seconds between a stream's
    ``summary`` events.
    """
    if replay is None:
        replay = min(DEFAULT_REPLAY, buf_size) if type(buf_size) is int and buf_size > 0 else 0
    return _Admin(
        broadcaster,
        token=token,
        authorize=authorize,
        insecure_no_auth=insecure_no_auth,
        page_requires_auth=page_requires_auth,
        replay=replay,
        buf_size=buf_size,
        overflow=overflow,
        ping=ping,
        send_timeout=send_timeout,
        retry_ms=retry_ms,
        default_limit=default_limit,
        max_limit=max_limit,
        batch_max=batch_max,
        flush_interval=flush_interval,
        summary_window=summary_window,
        summary_interval=summary_interval,
    ).router()


def admin_mount(
    broadcaster: OpsLogBroadcaster, prefix: str = DEFAULT_PREFIX, **options: Any
) -> Mount:
    """``admin_routes(broadcaster, **options)`` mounted at ``prefix``, for
    ``Starlette(routes=[..., admin_mount(ops, token=...)])``."""
    if not prefix.startswith("/") or prefix == "/":
        raise ValueError("prefix must start with '/' and not be '/' alone")
    return Mount(prefix.rstrip("/"), app=admin_routes(broadcaster, **options))
