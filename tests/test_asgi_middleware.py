"""OpsLogMiddleware through httpx's ASGI transport and a raw ASGI harness:
what it records for normal, streamed, failing, cancelled and disconnected
requests, the per-request context, redaction, and what it leaves alone.

These use ``import fastopslog`` (the compiled core unless
``FASTOPSLOG_NO_EXTENSIONS=1``), as a gateway would."""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from typing import Any

import fastapi
import httpx
import pytest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

from fastopslog import OpsLogBroadcaster, OpsLogEntry
from fastopslog._common import ENTRY_FIELD_NAMES
from fastopslog.asgi import (
    CLIENT_CLOSED_REQUEST,
    DEFAULT_PREFIX,
    MARKER,
    OpsLogContext,
    OpsLogMiddleware,
    Redactor,
    current_context,
)
from fastopslog.asgi.redact import truncate

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def ops() -> OpsLogBroadcaster:
    return OpsLogBroadcaster(history_cap=100)


def only(ops: OpsLogBroadcaster) -> OpsLogEntry:
    entries = ops.snapshot()
    assert len(entries) == 1, entries
    return entries[0]


def client(app: Any, raise_app_exceptions: bool = True) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def words(n: int = 3, pause: float = 0.0) -> Any:
    for i in range(n):
        if pause:
            await asyncio.sleep(pause)
        yield f"chunk {i}\n"


def gateway(ops: OpsLogBroadcaster, **options: Any) -> Starlette:
    async def ok(request: Request) -> Any:
        return PlainTextResponse("ok")

    async def chat(request: Request) -> Any:
        body = await request.json()
        ctx = request.state.opslog
        ctx.update(model=body["model"], turns=len(body["messages"]), account_id=7, group_id=3)
        ctx.prompt_chars = sum(len(m["content"]) for m in body["messages"])
        current = current_context()
        assert current is ctx
        current.api_key_id = 42
        current.user_id = 9
        current.upstream_status = 200
        return JSONResponse({"ok": True})

    def sync_handler(request: Request) -> Any:
        # A def endpoint runs in the thread pool; the context variable follows.
        ctx = current_context()
        assert ctx is not None
        ctx.model = "from-a-thread"
        return PlainTextResponse("sync")

    async def streamed(request: Request) -> Any:
        request.state.opslog.model = "stream-model"
        pause = float(request.query_params.get("pause", "0"))
        return StreamingResponse(words(3, pause), media_type="text/plain")

    async def sse(request: Request) -> Any:
        async def events() -> Any:
            yield "data: one\n\n"
            yield "data: two\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def boom(request: Request) -> Any:
        request.state.opslog.model = "gpt-4o"
        raise RuntimeError("upstream exploded")

    async def boom_with_message(request: Request) -> Any:
        request.state.opslog.error_message = "upstream said no"
        raise ValueError("while parsing")

    async def stream_then_boom(request: Request) -> Any:
        async def body() -> Any:
            yield "partial\n"
            raise RuntimeError("stream broke")

        return StreamingResponse(body(), media_type="text/plain")

    async def background_boom(request: Request) -> Any:
        def fail() -> None:
            raise RuntimeError("after the response")

        return PlainTextResponse("sent", background=BackgroundTask(fail))

    async def missing(request: Request) -> Any:
        raise HTTPException(404, "no such model")

    async def skipped(request: Request) -> Any:
        request.state.opslog.skip = True
        return PlainTextResponse("not logged")

    async def bad_value(request: Request) -> Any:
        ctx = request.state.opslog
        ctx.model = 123  # the wrong type
        ctx.turns = 4
        return PlainTextResponse("served anyway")

    async def secrets(request: Request) -> Any:
        ctx = request.state.opslog
        ctx.error_message = "upstream rejected Authorization: Bearer abc.def.ghi"
        ctx.error_detail = "echo: api_key=sk-abcdefghijklmnopqrstuvwx " + "x" * 5000
        return PlainTextResponse("nope", status_code=502)

    async def admin(request: Request) -> Any:
        return PlainTextResponse("admin")

    app = Starlette(
        routes=[
            Route("/ok", ok),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/sync", sync_handler),
            Route("/streamed", streamed),
            Route("/sse", sse),
            Route("/boom", boom),
            Route("/boom-with-message", boom_with_message),
            Route("/stream-then-boom", stream_then_boom),
            Route("/background-boom", background_boom),
            Route("/missing", missing),
            Route("/skipped", skipped),
            Route("/bad-value", bad_value),
            Route("/secrets", secrets),
            Route(DEFAULT_PREFIX + "/x", admin),
        ]
    )
    options.setdefault("contextvar", True)
    app.add_middleware(OpsLogMiddleware, broadcaster=ops, **options)
    return app


async def test_a_normal_request(ops: OpsLogBroadcaster) -> None:
    async with client(gateway(ops)) as http:
        response = await http.get("/ok?model=x&page=2")
    assert response.status_code == 200
    entry = only(ops)
    assert (entry.method, entry.path, entry.status, entry.stream) == ("GET", "/ok?model=x&page=2", 200, False)
    assert entry.latency_ms >= 0
    assert entry.time > 0 and entry.seq == 1
    assert entry.error_message == "" and entry.model == ""


async def test_the_app_fills_in_its_fields(ops: OpsLogBroadcaster) -> None:
    body = {"model": "gpt-4o", "messages": [{"content": "hello"}, {"content": "world!"}]}
    async with client(gateway(ops)) as http:
        response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    entry = only(ops)
    assert entry.to_dict() | {"time": None, "latency_ms": None} == {
        "time": None,
        "method": "POST",
        "path": "/v1/chat/completions",
        "status": 200,
        "latency_ms": None,
        "model": "gpt-4o",
        "account_id": 7,
        "group_id": 3,
        "api_key_id": 42,
        "user_id": 9,
        "turns": 2,
        "prompt_chars": 11,
        "upstream_status": 200,
    }


async def test_a_sync_endpoint_reaches_the_context_from_the_thread_pool(ops: OpsLogBroadcaster) -> None:
    async with client(gateway(ops)) as http:
        assert (await http.get("/sync")).text == "sync"
    assert only(ops).model == "from-a-thread"


async def test_a_streamed_response_counts_its_whole_duration(ops: OpsLogBroadcaster) -> None:
    async with client(gateway(ops)) as http:
        response = await http.get("/streamed?pause=0.05")
    assert response.text == "chunk 0\nchunk 1\nchunk 2\n"
    entry = only(ops)
    assert entry.stream is True
    assert entry.model == "stream-model"
    assert entry.status == 200
    # Three pauses of 50 ms happen before the last byte: a lower bound only.
    assert entry.latency_ms >= 140


async def test_an_sse_response_is_a_stream(ops: OpsLogBroadcaster) -> None:
    async with client(gateway(ops)) as http:
        await http.get("/sse")
    assert only(ops).stream is True


async def test_a_body_in_parts_with_a_content_length_is_not_a_stream(ops: OpsLogBroadcaster) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": b"ab", "more_body": True})
        await send({"type": "http.response.body", "body": b"cd"})

    async with client(OpsLogMiddleware(app, ops)) as http:
        assert (await http.get("/file")).content == b"abcd"
    assert only(ops).stream is False


async def test_the_app_can_force_stream(ops: OpsLogBroadcaster) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["state"]["opslog"].stream = True
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x"})

    async with client(OpsLogMiddleware(app, ops)) as http:
        await http.get("/")
    assert only(ops).stream is True


async def test_an_exception_publishes_a_500_and_propagates(ops: OpsLogBroadcaster) -> None:
    async with client(gateway(ops)) as http:
        with pytest.raises(RuntimeError, match="upstream exploded"):
            await http.get("/boom")
    entry = only(ops)
    assert entry.status == 500
    assert entry.error_message == "RuntimeError: upstream exploded"
    assert entry.model == "gpt-4o"


async def test_an_exception_keeps_the_apps_own_message(ops: OpsLogBroadcaster) -> None:
    async with client(gateway(ops), raise_app_exceptions=False) as http:
        response = await http.get("/boom-with-message")
    assert response.status_code == 500
    entry = only(ops)
    assert (entry.status, entry.error_message) == (500, "upstream said no")
    assert entry.error_detail == "ValueError: while parsing"


async def test_an_exception_in_a_raw_app_before_any_response(ops: OpsLogBroadcaster) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise KeyError("model")

    async with client(OpsLogMiddleware(app, ops)) as http:
        with pytest.raises(KeyError):
            await http.get("/raw")
    entry = only(ops)
    assert (entry.status, entry.error_message) == (500, "KeyError: 'model'")


async def test_an_exception_in_the_middle_of_a_stream(ops: OpsLogBroadcaster) -> None:
    async with client(gateway(ops)) as http:
        with pytest.raises(RuntimeError, match="stream broke"):
            await http.get("/stream-then-boom")
    entry = only(ops)
    assert entry.status == 500
    assert entry.error_message == "RuntimeError: stream broke"


async def test_an_exception_after_the_response_keeps_its_status(ops: OpsLogBroadcaster) -> None:
    async with client(gateway(ops)) as http:
        with pytest.raises(RuntimeError, match="after the response"):
            await http.get("/background-boom")
    entry = only(ops)
    assert entry.status == 200
    assert entry.error_message == "RuntimeError: after the response"


async def test_an_http_exception_is_an_ordinary_response(ops: OpsLogBroadcaster) -> None:
    async with client(gateway(ops)) as http:
        assert (await http.get("/missing")).status_code == 404
        assert (await http.get("/no/such/route")).status_code == 404
    first, second = ops.snapshot()
    assert (first.status, first.error_message, second.status) == (404, "", 404)


async def test_an_app_that_never_answers(ops: OpsLogBroadcaster) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    await OpsLogMiddleware(app, ops)(http_scope("/silent"), quiet_receive, swallow)
    entry = only(ops)
    assert entry.status == 500
    assert "without starting a response" in entry.error_message


async def test_skip_publishes_nothing(ops: OpsLogBroadcaster) -> None:
    async with client(gateway(ops)) as http:
        assert (await http.get("/skipped")).text == "not logged"
    assert ops.stats().published == 0


async def test_the_admin_prefix_is_not_logged_by_default(ops: OpsLogBroadcaster) -> None:
    async with client(gateway(ops)) as http:
        await http.get(DEFAULT_PREFIX + "/x")
    assert ops.stats().published == 0
    async with client(gateway(ops, exclude_paths=())) as http:
        await http.get(DEFAULT_PREFIX + "/x")
    assert only(ops).path == DEFAULT_PREFIX + "/x"


@pytest.mark.parametrize("prefix", ["/internal", "/internal/"])
async def test_an_excluded_prefix_covers_what_is_below_it_and_nothing_else(
    ops: OpsLogBroadcaster, prefix: str
) -> None:
    async with client(gateway(ops, exclude_paths=[prefix])) as http:
        for path in ("/internal", "/internal/", "/internal/a/b", "/internals", "/internal-x", "/"):
            await http.get(path)
            await http.get(path)  # the second time from the memo
    assert [e.path for e in ops.snapshot()] == ["/internals"] * 2 + ["/internal-x"] * 2 + ["/"] * 2
    async with client(gateway(ops, exclude_paths="/")) as http:
        await http.get("/anything")
    assert ops.stats().published == 6


async def test_a_bad_context_value_is_left_out_not_fatal(
    ops: OpsLogBroadcaster, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="fastopslog.asgi"):
        async with client(gateway(ops)) as http:
            assert (await http.get("/bad-value")).text == "served anyway"
    entry = only(ops)
    assert (entry.model, entry.turns, entry.status) == ("", 4, 200)
    assert "bad value" in caplog.text


def test_the_context_refuses_unknown_fields() -> None:
    ctx = OpsLogContext()
    with pytest.raises(AttributeError, match="modle"):
        ctx.modle = "gpt-4o"
    with pytest.raises(AttributeError):
        ctx.update(tokens=3)
    ctx.update(model="m", turns=2)
    assert (ctx.model, ctx.turns, ctx.account_id) == ("m", 2, 0)
    assert current_context() is None
    # Every entry field but those the middleware measures can be set, and
    # ``stream`` and ``skip``; the measured ones cannot.
    measured = {"time", "method", "path", "status", "latency_ms"}
    for name in ENTRY_FIELD_NAMES:
        if name in measured:
            with pytest.raises(AttributeError):
                setattr(ctx, name, 1)
        else:
            setattr(ctx, name, getattr(OpsLogContext, name))
    ctx.skip = False


async def test_redaction_is_on_by_default(ops: OpsLogBroadcaster) -> None:
    async with client(gateway(ops)) as http:
        await http.get("/ok?api_key=secret1&model=gpt&access_token=t0k&key=k3y")
        await http.get("/secrets")
    first, second = ops.snapshot()
    assert first.path == f"/ok?api_key={MARKER}&model=gpt&access_token={MARKER}&key={MARKER}"
    assert second.error_message == f"upstream rejected Authorization: Bearer {MARKER}"
    assert "sk-abcdef" not in second.error_detail
    assert second.error_detail.startswith(f"echo: api_key={MARKER} xxx")
    # Truncated at the default 4096 characters, the cut said.
    assert second.error_detail.endswith(" chars]")
    assert len(second.error_detail) < 4096 + 40


async def test_redaction_can_be_turned_off_or_replaced(ops: OpsLogBroadcaster) -> None:
    async with client(gateway(ops, redact=False, error_detail_limit=0)) as http:
        await http.get("/ok?api_key=secret1")
        await http.get("/secrets")
    first, second = ops.snapshot()
    assert first.path == "/ok?api_key=secret1"
    assert "sk-abcdefghijklmnopqrstuvwx" in second.error_detail
    assert len(second.error_detail) > 5000

    other = OpsLogBroadcaster()
    async with client(gateway(other, redact=lambda text: text.replace("secret", "***"))) as http:
        await http.get("/ok?password=secret1")
    assert only(other).path == "/ok?password=***1"

    # A callable of the user's may not be pure: it runs for every request,
    # also on a path without a query seen before.
    calls: list[str] = []

    def counting(text: str) -> str:
        calls.append(text)
        return text.upper()

    fourth = OpsLogBroadcaster()
    async with client(gateway(fourth, redact=counting)) as http:
        await http.get("/ok")
        await http.get("/ok")
    assert [e.path for e in fourth.snapshot()] == ["/OK", "/OK"]
    assert calls == ["/ok", "/ok"]

    third = OpsLogBroadcaster()
    custom = Redactor(marker="<hidden>", extra_params=["session"], extra_patterns=[r"\bcorp-[0-9]{6}\b"])
    async with client(gateway(third, redact=custom, include_query=True)) as http:
        await http.get("/ok?session=abc&q=corp-123456")
    assert only(third).path == "/ok?session=<hidden>&q=<hidden>"


async def test_the_context_variable_is_off_by_default(ops: OpsLogBroadcaster) -> None:
    seen = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(current_context())
        scope["state"]["opslog"].model = "still-here"
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async with client(OpsLogMiddleware(app, ops)) as http:
        await http.get("/")
    assert seen == [None]
    assert only(ops).model == "still-here"


async def test_the_query_string_can_be_left_out(ops: OpsLogBroadcaster) -> None:
    async with client(gateway(ops, include_query=False)) as http:
        await http.get("/ok?x=1")
    assert only(ops).path == "/ok"


def test_redactor_rules() -> None:
    r = Redactor()
    cases = {
        "Authorization: Bearer eyJhbGciOi.payload.sig": f"Authorization: Bearer {MARKER}",
        "authorization: Basic dXNlcjpwYXNz": f"authorization: Basic {MARKER}",
        "Authorization: rawtoken": f"Authorization: {MARKER}",
        "x-api-key: abc123": f"x-api-key: {MARKER}",
        'headers {"x-goog-api-key": "AIzaSy"}': f'headers {{"x-goog-api-key": "{MARKER}"}}',
        "GET /v1?key=abc&alt=json": f"GET /v1?key={MARKER}&alt=json",
        "access_token=zzz, refresh_token=yyy": f"access_token={MARKER}, refresh_token={MARKER}",
        'body {"api_key": "sekrit", "model": "m"}': f'body {{"api_key": "{MARKER}", "model": "m"}}',
        "key sk-proj-ABCDEFGHIJKLMNOPQRSTUVWX1234 leaked": f"key {MARKER} leaked",
        "anthropic sk-ant-api03-abcdefghijklmnopqrstuv": f"anthropic {MARKER}",
        "google AIzaSyA-1234567890abcdefghijklmnopqrstu": f"google {MARKER}",
        "aws AKIAIOSFODNN7EXAMPLE id": f"aws {MARKER} id",
        "gh ghp_abcdefghijklmnopqrstuvwxyz0123456789": f"gh {MARKER}",
        "monkey=banana&turkey=1": "monkey=banana&turkey=1",
        "task-runner sk-short": "task-runner sk-short",
        "": "",
    }
    for text, expected in cases.items():
        assert r(text) == expected, text
    assert r.path("/v1/chat/completions") == "/v1/chat/completions"
    assert r.path("/keys/sk-abcdefghijklmnopqrstuv") == f"/keys/{MARKER}"
    assert r.path("/v1", "API_KEY=1&Token=2&b=3") == f"/v1?API_KEY={MARKER}&Token={MARKER}&b=3"
    assert r.path("/v1", "api%5Fkey=1&flag") == f"/v1?api%5Fkey={MARKER}&flag"
    with pytest.raises(re.error):
        Redactor(extra_patterns=["(unclosed"])


def test_truncate() -> None:
    assert truncate("abc", 3) == "abc"
    assert truncate("abcdef", 3) == "abc…[truncated 3 chars]"
    assert truncate("abcdef", 0) == "abcdef"


def test_bad_options_are_refused(ops: OpsLogBroadcaster) -> None:
    app = Starlette()
    with pytest.raises(TypeError):
        OpsLogMiddleware(app, object())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        OpsLogMiddleware(app, ops, error_detail_limit=-1)
    with pytest.raises(TypeError):
        OpsLogMiddleware(app, ops, redact="yes")  # type: ignore[arg-type]


# A raw ASGI harness, for what an HTTP client library cannot do: cancel the
# request task, or disconnect in the middle of a response.


def http_scope(path: str, spec_version: str = "2.3") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": spec_version},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 40000),
    }


async def quiet_receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def swallow(message: Any) -> None:
    return None


async def test_a_cancelled_request_publishes_499_and_propagates(ops: OpsLogBroadcaster) -> None:
    entered = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["state"]["opslog"].model = "slow-model"
        entered.set()
        await asyncio.sleep(3600)

    task = asyncio.ensure_future(OpsLogMiddleware(app, ops)(http_scope("/slow"), quiet_receive, swallow))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    entry = only(ops)
    assert (entry.status, entry.error_message, entry.model) == (
        CLIENT_CLOSED_REQUEST,
        "request cancelled",
        "slow-model",
    )


async def test_a_client_disconnecting_mid_stream_publishes_499(ops: OpsLogBroadcaster) -> None:
    gone = asyncio.Event()
    first_chunk = asyncio.Event()
    received_first = False

    async def receive() -> dict[str, Any]:
        nonlocal received_first
        if not received_first:
            received_first = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            first_chunk.set()

    async def endless() -> Any:
        while True:
            yield "tick\n"
            await asyncio.sleep(0.01)

    async def endpoint(request: Request) -> Any:
        request.state.opslog.model = "streamer"
        return StreamingResponse(endless(), media_type="text/event-stream")

    app = OpsLogMiddleware(Starlette(routes=[Route("/endless", endpoint)]), ops)
    task = asyncio.ensure_future(app(http_scope("/endless"), receive, send))
    await first_chunk.wait()
    gone.set()
    await asyncio.wait_for(task, 30)
    entry = only(ops)
    assert (entry.status, entry.error_message, entry.model, entry.stream) == (
        CLIENT_CLOSED_REQUEST,
        "client disconnected",
        "streamer",
        True,
    )


async def test_an_app_failing_after_the_client_left(ops: OpsLogBroadcaster) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        raise RuntimeError("nobody to answer")

    with pytest.raises(RuntimeError):
        await OpsLogMiddleware(app, ops)(http_scope("/gone"), receive, swallow)
    entry = only(ops)
    assert (entry.status, entry.error_message, entry.error_detail) == (
        CLIENT_CLOSED_REQUEST,
        "client disconnected",
        "RuntimeError: nobody to answer",
    )


async def test_a_disconnect_surfacing_as_an_exception_publishes_499(ops: OpsLogBroadcaster) -> None:
    class ClientDisconnected(OSError):
        pass

    async def send(message: Any) -> None:
        if message["type"] == "http.response.body":
            raise ClientDisconnected()

    async def endpoint(request: Request) -> Any:
        return StreamingResponse(words(3), media_type="text/plain")

    app = OpsLogMiddleware(Starlette(routes=[Route("/s", endpoint)]), ops)
    # With ASGI 2.4 Starlette turns the server's OSError into ClientDisconnect.
    with pytest.raises(Exception) as info:
        await app(http_scope("/s", spec_version="2.4"), quiet_receive, send)
    assert type(info.value).__name__ == "ClientDisconnect"
    entry = only(ops)
    assert (entry.status, entry.error_message) == (CLIENT_CLOSED_REQUEST, "client disconnected")


async def test_other_scopes_pass_through(ops: OpsLogBroadcaster) -> None:
    seen = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    middleware = OpsLogMiddleware(app, ops)
    await middleware({"type": "lifespan"}, quiet_receive, swallow)
    await middleware({"type": "websocket", "path": "/ws"}, quiet_receive, swallow)
    assert seen == ["lifespan", "websocket"]
    assert ops.stats().published == 0


async def test_fastapi(ops: OpsLogBroadcaster) -> None:
    app = fastapi.FastAPI()
    app.add_middleware(OpsLogMiddleware, broadcaster=ops, contextvar=True)

    @app.post("/v1/chat/completions")
    async def chat(request: fastapi.Request) -> dict[str, str]:
        request.state.opslog.update(model="gpt-4o", turns=1)
        return {"ok": "yes"}

    @app.get("/sync")
    def sync_endpoint() -> dict[str, str]:
        ctx = current_context()
        assert ctx is not None
        ctx.account_id = 5
        return {"ok": "sync"}

    @app.get("/fail")
    async def fail() -> None:
        raise LookupError("no upstream")

    async with client(app, raise_app_exceptions=False) as http:
        assert (await http.post("/v1/chat/completions", json={})).json() == {"ok": "yes"}
        assert (await http.get("/sync")).json() == {"ok": "sync"}
        assert (await http.get("/fail")).status_code == 500
        assert (await http.get("/missing")).status_code == 404
    chat_entry, sync_entry, fail_entry, missing_entry = ops.snapshot()
    assert (chat_entry.model, chat_entry.turns, chat_entry.status) == ("gpt-4o", 1, 200)
    assert (sync_entry.account_id, sync_entry.path) == (5, "/sync")
    assert (fail_entry.status, fail_entry.error_message) == (500, "LookupError: no upstream")
    assert missing_entry.status == 404


async def test_a_failed_request_s_latency_spans_its_start_and_its_failure(ops: OpsLogBroadcaster) -> None:
    # The start is stamped on the common path, the end on the failure path
    # (in Python even on the core): the two must read the same clock.
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(0.06)
        raise RuntimeError("late")

    async def unused(*args: Any) -> Any:
        raise AssertionError("the app neither receives nor sends")

    with pytest.raises(RuntimeError):
        await OpsLogMiddleware(app, ops)(
            {"type": "http", "method": "GET", "path": "/x", "query_string": b""}, unused, unused
        )
    entry = only(ops)
    assert (entry.status, entry.error_message) == (500, "RuntimeError: late")
    # A lower bound, and a sanity bound far above any pause a loaded machine
    # adds: two different clocks would be hours or years apart.
    assert 50 <= entry.latency_ms < 60_000


async def test_a_context_records_what_the_app_set_in_order() -> None:
    ctx = OpsLogContext()
    assert repr(ctx) == "OpsLogContext()"
    ctx.turns = 2
    ctx.model = "m"
    ctx.turns = 3
    assert repr(ctx) == "OpsLogContext(turns=3, model='m')"
    assert (ctx.model, ctx.turns, ctx.account_id) == ("m", 3, 0)
    with pytest.raises(AttributeError):
        setattr(ctx, "_fields", {})  # noqa: B010


def test_the_middleware_is_seen_as_an_asgi3_app(ops: OpsLogBroadcaster) -> None:
    # uvicorn tells ASGI 3 from ASGI 2 by whether __call__ is a coroutine
    # function; on the core, __call__ is the compiled one.
    async def app(scope: Any, receive: Any, send: Any) -> None:
        pass

    assert inspect.iscoroutinefunction(OpsLogMiddleware(app, ops).__call__)
