"""The admin routes in process: /recent, /stats, the page and the session
through httpx's ASGI transport; /stream through a raw ASGI harness (an
endless response needs a client that can stop reading and hang up)."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from fastopslog import OpsLogBroadcaster, OpsLogEntry
from fastopslog.asgi import DEFAULT_PREFIX, admin_mount, admin_routes
from fastopslog.asgi.routes import COOKIE_NAME
from fastopslog.redis import ClusterView, StreamEntry

pytestmark = pytest.mark.anyio

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WAIT = 30.0  # against hangs only


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def ops() -> OpsLogBroadcaster:
    return OpsLogBroadcaster(history_cap=200)


def make_app(ops: OpsLogBroadcaster, **options: Any) -> Starlette:
    options.setdefault("token", TOKEN)
    return Starlette(routes=[admin_mount(ops, **options)])


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


def publish(ops: OpsLogBroadcaster, n: int, **fields: Any) -> list[OpsLogEntry]:
    entries = []
    for i in range(n):
        status = fields.get("status", (200, 404, 500, 502)[i % 4])
        entry = OpsLogEntry(
            method="POST",
            path=f"/v1/{i}",
            status=status,
            latency_ms=i,
            model=fields.get("model", ("gpt-4o", "claude")[i % 2]),
            account_id=fields.get("account_id", 1 + i % 3),
        )
        ops.publish(entry)
        entries.append(entry)
    return entries


URL = DEFAULT_PREFIX


# Authorization


async def test_every_data_route_refuses_without_credentials(ops: OpsLogBroadcaster) -> None:
    async with client(make_app(ops)) as http:
        for route in ("/recent", "/stream", "/stats", "/summary"):
            response = await http.get(URL + route)
            assert response.status_code == 401, route
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert "credentials required" in response.json()["error"]
            wrong = await http.get(URL + route, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            assert wrong.json() == {"error": "invalid bearer token"}
            basic = await http.get(URL + route, headers={"Authorization": "Basic " + TOKEN})
            assert basic.status_code == 401
            assert "not use the 'Basic' scheme" in basic.json()["error"]
            assert TOKEN not in basic.text
            # A bare token, without the word Bearer, is told so, unlike no header.
            bare = await http.get(URL + route, headers={"Authorization": TOKEN})
            assert bare.status_code == 401
            assert "the word Bearer is missing" in bare.json()["error"]
            assert TOKEN not in bare.text
        assert (await http.get(URL + "/stats", headers=AUTH)).status_code == 200
    assert ops.stats().subscribers == 0


async def test_constructing_without_credentials_is_refused(ops: OpsLogBroadcaster) -> None:
    with pytest.raises(ValueError, match="need credentials"):
        admin_routes(ops)
    with pytest.raises(ValueError):
        admin_routes(ops, token="")
    with pytest.raises(ValueError):
        admin_routes(ops, token="has space")
    with pytest.raises(TypeError):
        admin_routes(ops, authorize="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        admin_routes(ops, token=TOKEN, replay=2000, buf_size=100)
    with pytest.raises(ValueError):
        admin_mount(ops, "/", token=TOKEN)
    async with client(make_app(ops, token=None, insecure_no_auth=True)) as http:
        assert (await http.get(URL + "/stats")).status_code == 200


async def test_an_authorization_callable(ops: OpsLogBroadcaster) -> None:
    def sync_check(request: Request) -> bool:
        return request.headers.get("x-admin") == "yes"

    async def async_check(request: Request) -> Any:
        if request.headers.get("x-admin") == "teapot":
            return PlainTextResponse("go away", status_code=418)
        return request.headers.get("x-admin") == "yes"

    for check in (sync_check, async_check):
        async with client(make_app(ops, token=None, authorize=check)) as http:
            assert (await http.get(URL + "/stats", headers={"x-admin": "yes"})).status_code == 200
            refused = await http.get(URL + "/recent", headers={"x-admin": "no"})
            assert refused.status_code == 403
            assert refused.json() == {"error": "not authorized to read the ops log"}
    async with client(make_app(ops, token=None, authorize=async_check)) as http:
        assert (await http.get(URL + "/stats", headers={"x-admin": "teapot"})).status_code == 418
    # Both: either one grants.
    async with client(make_app(ops, authorize=sync_check)) as http:
        assert (await http.get(URL + "/stats", headers=AUTH)).status_code == 200
        assert (await http.get(URL + "/stats", headers={"x-admin": "yes"})).status_code == 200
        assert (await http.get(URL + "/stats")).status_code == 401


async def test_the_session_cookie(ops: OpsLogBroadcaster) -> None:
    async with client(make_app(ops)) as http:
        assert (await http.post(URL + "/session")).status_code == 401
        assert (await http.post(URL + "/session", headers={"Authorization": "Bearer x"})).status_code == 401
        assert COOKIE_NAME not in http.cookies
        response = await http.post(URL + "/session", headers=AUTH)
        assert response.status_code == 204
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and f"Path={URL}" in cookie
        assert TOKEN not in cookie
        assert (await http.get(URL + "/stats")).status_code == 200
        response = await http.delete(URL + "/session")
        assert response.status_code == 204
        http.cookies.clear()
        http.cookies.set(COOKIE_NAME, "forged")
        refused = await http.get(URL + "/stats")
        assert refused.status_code == 401
        assert "log in again" in refused.json()["error"]


async def test_the_page_is_static_and_self_contained(ops: OpsLogBroadcaster) -> None:
    async with client(make_app(ops)) as http:
        redirect = await http.get(URL)
        assert redirect.status_code in (307, 308)
        page = await http.get(URL + "/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "<script>" in html and "EventSource" in html
    # No CDN, no external resource of any kind.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "'unsafe-inline'" not in csp
    assert re.search(r"script-src 'sha256-[A-Za-z0-9+/=]+'", csp)
    async with client(make_app(ops, page_requires_auth=True)) as http:
        assert (await http.get(URL + "/")).status_code == 401
        assert (await http.get(URL + "/", headers=AUTH)).status_code == 200


async def test_mounting_in_fastapi(ops: OpsLogBroadcaster) -> None:
    import fastapi

    app = fastapi.FastAPI()
    app.mount("/ops", admin_routes(ops, token=TOKEN))
    publish(ops, 3)
    async with client(app) as http:
        assert len((await http.get("/ops/recent", headers=AUTH)).json()) == 3
        assert (await http.get("/ops/stats", headers=AUTH)).json()["published"] == 3
        assert (await http.get("/ops/")).status_code == 200


# /recent and /stats


async def test_recent_is_the_snapshot_as_json(ops: OpsLogBroadcaster) -> None:
    entries = publish(ops, 10)
    async with client(make_app(ops)) as http:
        response = await http.get(URL + "/recent", headers=AUTH)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        # Each entry as to_json() renders it, with its seq added.
        assert response.text == "[" + ",".join(
            e.to_json()[:-1] + f',"seq":{e.seq}}}' for e in entries
        ) + "]"
        assert response.headers["x-opslog-last-seq"] == str(entries[-1].seq)

        got = (await http.get(URL + "/recent?min_status=500&model=claude", headers=AUTH)).json()
        want = [
            {**e.to_dict(), "seq": e.seq} for e in entries if e.status >= 500 and e.model == "claude"
        ]
        assert got == want and got

        got = (await http.get(URL + "/recent?account_id=2&limit=2", headers=AUTH)).json()
        assert got == [{**e.to_dict(), "seq": e.seq} for e in entries if e.account_id == 2][-2:]

        got = (await http.get(URL + "/recent?min_latency_ms=7&group_id=", headers=AUTH)).json()
        assert [e["latency_ms"] for e in got] == [7, 8, 9]

        assert (await http.get(URL + "/recent?model=none", headers=AUTH)).text == "[]"


async def test_recent_limit_defaults_and_bounds(ops: OpsLogBroadcaster) -> None:
    publish(ops, 150)
    async with client(make_app(ops, default_limit=20, max_limit=50)) as http:
        assert len((await http.get(URL + "/recent", headers=AUTH)).json()) == 20
        assert len((await http.get(URL + "/recent?limit=50", headers=AUTH)).json()) == 50
        response = await http.get(URL + "/recent?limit=51", headers=AUTH)
        assert response.status_code == 400
        assert response.json() == {
            "error": "query parameter 'limit' must be an integer from 1 to 50, not '51'"
        }


@pytest.mark.parametrize(
    "query, message",
    [
        ("min_status=abc", "query parameter 'min_status' must be an integer"),
        ("min_status=-1", "query parameter 'min_status' must be an integer"),
        ("account_id=1.5", "query parameter 'account_id' must be an integer"),
        ("group_id=99999999999999999999", "query parameter 'group_id' must be an integer"),
        ("min_latency_ms=%00", "query parameter 'min_latency_ms' must be an integer"),
        ("limit=0", "query parameter 'limit' must be an integer from 1"),
        ("limit=x", "query parameter 'limit' must be an integer"),
        ("model=" + "m" * 300, "query parameter 'model' is longer than 256"),
        ("minstatus=500", "unknown query parameter 'minstatus'"),
        ("min_status=500&min_status=400", "query parameter 'min_status' given more than once"),
    ],
)
async def test_bad_parameters_are_a_400(ops: OpsLogBroadcaster, query: str, message: str) -> None:
    async with client(make_app(ops)) as http:
        for route in ("/recent", "/stream"):
            if route == "/stream" and query.startswith("limit"):
                continue
            response = await http.get(f"{URL}{route}?{query}", headers=AUTH)
            assert response.status_code == 400, (route, query)
            assert response.json()["error"].startswith(message), response.json()
    assert ops.stats().subscribers == 0


async def test_bad_stream_parameters_are_a_400(ops: OpsLogBroadcaster) -> None:
    async with client(make_app(ops, buf_size=64, replay=10)) as http:
        for query, message in (
            ("replay=65", "query parameter 'replay' must be an integer from 0 to 64"),
            ("last_event_id=-3", "query parameter 'last_event_id' must be an integer"),
            ("limit=5", "unknown query parameter 'limit'"),
        ):
            response = await http.get(f"{URL}/stream?{query}", headers=AUTH)
            assert (response.status_code, response.json()["error"][: len(message)]) == (400, message)
        response = await http.get(URL + "/stream", headers={**AUTH, "Last-Event-ID": "x1"})
        assert response.status_code == 400
        assert response.json()["error"].startswith("the Last-Event-ID header must be an integer")
        response = await http.get(URL + "/stats?x=1", headers=AUTH)
        assert response.status_code == 400
    assert ops.stats().subscribers == 0


async def test_stats(ops: OpsLogBroadcaster) -> None:
    publish(ops, 4)
    sub = ops.subscribe(buf_size=1)
    publish(ops, 2)
    async with client(make_app(ops)) as http:
        got = (await http.get(URL + "/stats", headers=AUTH)).json()
    assert got == {"published": 6, "dropped": 1, "subscribers": 1}
    sub.unsubscribe()


# /stream through a raw ASGI harness


class SSE:
    """One GET of an SSE endpoint, run as a task: ``events()`` parses what
    arrives; ``hang_up()`` sends ``http.disconnect``."""

    def __init__(self, app: Any, path: str, query: str = "", headers: dict[str, str] | None = None,
                 send_blocks: bool = False) -> None:
        raw_headers = [(b"host", b"testserver")]
        for name, value in {**AUTH, **(headers or {})}.items():
            raw_headers.append((name.lower().encode(), value.encode()))
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": query.encode(),
            "headers": raw_headers,
            "server": ("testserver", 80),
            "client": ("127.0.0.1", 40000),
        }
        self.app = app
        self.gone = asyncio.Event()
        self.started = False
        self.status = 0
        self.chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self.buffer = ""
        self.send_blocks = send_blocks
        self.request_sent = False
        self.task: asyncio.Task[None] | None = None

    async def receive(self) -> dict[str, Any]:
        if not self.request_sent:
            self.request_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Any) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            return
        if self.send_blocks and message.get("body"):
            await asyncio.Event().wait()  # a client that never reads
        self.chunks.put_nowait(message.get("body", b""))

    def start(self) -> SSE:
        self.task = asyncio.ensure_future(self.app(self.scope, self.receive, self.send))
        return self

    async def next_event(self) -> dict[str, str]:
        """The next event (comments skipped), as its fields."""
        while True:
            while "\n\n" not in self.buffer:
                chunk = await asyncio.wait_for(self.chunks.get(), WAIT)
                self.buffer += chunk.decode()
            block, self.buffer = self.buffer.split("\n\n", 1)
            fields: dict[str, str] = {}
            for line in block.split("\n"):
                if not line or line.startswith(":"):
                    continue
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value
            if fields:
                return fields

    async def entries(self, n: int) -> list[tuple[int, dict[str, Any]]]:
        """The next ``n`` entry events, as (id, entry dict); other events
        are kept in ``self.others``."""
        got: list[tuple[int, dict[str, Any]]] = []
        while len(got) < n:
            event = await self.next_event()
            if "event" in event:
                self.others.append(event)
                continue
            got.append((int(event["id"]), json.loads(event["data"])))
        return got

    others: list[dict[str, str]]

    async def hang_up(self) -> None:
        self.gone.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, WAIT)


def sse(app: Any, query: str = "", **kwargs: Any) -> SSE:
    client = SSE(app, URL + "/stream", query, **kwargs)
    client.others = []
    return client.start()


async def test_stream_primes_then_goes_live(ops: OpsLogBroadcaster) -> None:
    entries = publish(ops, 30)
    app = make_app(ops, replay=10)
    stream = sse(app)
    ready = await stream.next_event()
    assert ready["event"] == "ready"
    data = json.loads(ready["data"])
    assert abs(data.pop("now") - time.time()) < WAIT
    assert data.pop("started") <= time.time()
    assert data == {"resumed": False, "replay": 10, "last_event_id": None, "filter": {}}
    assert ready["retry"] == "2000"
    primed = await stream.entries(10)
    assert [seq for seq, _ in primed] == [e.seq for e in entries[-10:]]
    assert [data for _, data in primed] == [e.to_dict() for e in entries[-10:]]
    assert ops.stats().subscribers == 1
    live = publish(ops, 5)
    assert [seq for seq, _ in await stream.entries(5)] == [e.seq for e in live]
    assert stream.status == 200
    await stream.hang_up()
    assert ops.stats().subscribers == 0


async def test_stream_filter_and_replay_parameters(ops: OpsLogBroadcaster) -> None:
    entries = publish(ops, 40)
    stream = sse(make_app(ops), "min_status=500&model=claude&replay=3")
    ready = json.loads((await stream.next_event())["data"])
    assert ready["filter"] == {"min_status": 500, "model": "claude"}
    matching = [e for e in entries if e.status >= 500 and e.model == "claude"]
    assert [seq for seq, _ in await stream.entries(3)] == [e.seq for e in matching[-3:]]
    more = publish(ops, 8)
    want = [e.seq for e in more if e.status >= 500 and e.model == "claude"]
    assert [seq for seq, _ in await stream.entries(len(want))] == want
    await stream.hang_up()
    assert ops.stats().subscribers == 0


async def test_priming_has_no_gap_and_no_duplicate_while_publishing_continues(
    ops: OpsLogBroadcaster,
) -> None:
    publish(ops, 100)
    stop = threading.Event()
    published: list[int] = []

    def publisher() -> None:
        # Another thread, as a gateway's workers would be, publishing
        # through the whole subscribe-and-prime.
        i = 0
        while not stop.is_set() and i < 800:
            entry = OpsLogEntry(path=f"/p/{i}", status=200)
            ops.publish(entry)
            published.append(entry.seq)
            i += 1
            if i % 20 == 0:
                time.sleep(0.001)

    thread = threading.Thread(target=publisher, daemon=True)
    thread.start()
    try:
        await asyncio.sleep(0.005)
        stream = sse(make_app(ops, replay=50, buf_size=1024))
        await stream.next_event()  # ready
        got = [seq for seq, _ in await stream.entries(300)]
    finally:
        stop.set()
        thread.join(WAIT)
    assert got == list(range(got[0], got[0] + 300)), "a gap or a duplicate"
    assert not stream.others  # nothing lost
    await stream.hang_up()
    assert ops.stats().subscribers == 0


async def test_last_event_id_resumes_after_it(ops: OpsLogBroadcaster) -> None:
    entries = publish(ops, 50)
    app = make_app(ops)
    resume_from = entries[29].seq
    stream = sse(app, headers={"Last-Event-ID": str(resume_from)})
    ready = json.loads((await stream.next_event())["data"])
    assert ready["resumed"] is True and ready["last_event_id"] == resume_from
    assert [seq for seq, _ in await stream.entries(20)] == [e.seq for e in entries[30:]]
    assert not stream.others
    await stream.hang_up()

    # The query parameter does the same, and the header wins over it.
    stream = sse(app, f"last_event_id={entries[44].seq}")
    await stream.next_event()
    assert [seq for seq, _ in await stream.entries(5)] == [e.seq for e in entries[45:]]
    await stream.hang_up()
    stream = sse(app, "last_event_id=1", headers={"Last-Event-ID": str(entries[47].seq)})
    await stream.next_event()
    assert [seq for seq, _ in await stream.entries(2)] == [e.seq for e in entries[48:]]
    await stream.hang_up()
    assert ops.stats().subscribers == 0


async def test_a_resume_beyond_history_is_told_of_the_gap(ops: OpsLogBroadcaster) -> None:
    small = OpsLogBroadcaster(history_cap=10)
    entries = publish(small, 50)
    stream = sse(make_app(small), headers={"Last-Event-ID": str(entries[5].seq)})
    assert (await stream.next_event())["event"] == "ready"
    lost = await stream.next_event()
    assert lost["event"] == "lost"
    assert json.loads(lost["data"]) == {"reason": "history", "after": entries[5].seq}
    assert [seq for seq, _ in await stream.entries(10)] == [e.seq for e in entries[-10:]]
    await stream.hang_up()


async def test_a_slow_client_is_told_how_many_it_missed(ops: OpsLogBroadcaster) -> None:
    stream = sse(make_app(ops, buf_size=16, replay=0))
    await stream.next_event()  # ready: subscribed
    # Published in one go on the event loop, so the stream cannot read in
    # between: 16 fit, 84 are dropped (drop_oldest keeps the newest 16).
    entries = publish(ops, 100)
    got = await stream.entries(16)
    assert [seq for seq, _ in got] == [e.seq for e in entries[-16:]]
    lost = stream.others or [await stream.next_event()]
    assert lost[0]["event"] == "lost"
    assert json.loads(lost[0]["data"]) == {"reason": "slow", "count": 84, "total": 84}
    assert ops.stats().dropped == 84
    await stream.hang_up()
    assert ops.stats().subscribers == 0


def view_entries(first: int, n: int) -> list[StreamEntry]:
    return [
        StreamEntry(seq, "east", seq, json.dumps({"status": 200, "path": f"/{seq}"}))
        for seq in range(first, first + n)
    ]


async def test_losses_upstream_are_told_apart_from_a_slow_client() -> None:
    """A cluster view's losses before the view (a Redis outage) reach a
    dashboard as ``lost`` of reason "upstream" with the count, not as
    "slow", and ``/stats`` carries the total."""
    view = ClusterView(history_cap=100)
    app = make_app(view, buf_size=16, replay=0)  # type: ignore[arg-type]
    stream = sse(app)
    await stream.next_event()  # ready: subscribed
    view._publish_batch(view_entries(1, 3))
    assert [seq for seq, _ in await stream.entries(3)] == [1, 2, 3]
    view._count_lost(7)  # as the reader does, before the batch after the gap
    view._publish_batch(view_entries(11, 2))
    assert [seq for seq, _ in await stream.entries(2)] == [11, 12]
    lost = stream.others or [await stream.next_event()]
    assert lost[0]["event"] == "lost"
    assert json.loads(lost[0]["data"]) == {"reason": "upstream", "count": 7, "total": 7}
    async with client(app) as http:
        got = (await http.get(URL + "/stats", headers=AUTH)).json()
    assert got == {"published": 5, "dropped": 0, "subscribers": 1, "upstream_lost": 7}
    await stream.hang_up()
    assert view.stats().subscribers == 0


async def test_a_filtered_dashboard_on_a_cluster_view() -> None:
    """A filtered stream over a cluster view, with the filter class this
    implementation gives, gets what the filter takes, and resumes from a
    sparse seq with Last-Event-ID."""
    view = ClusterView(history_cap=100)
    app = make_app(view, buf_size=16, replay=0)  # type: ignore[arg-type]
    stream = sse(app, "min_status=500")
    await stream.next_event()  # ready: subscribed
    entries = view_entries(1, 3)
    errors = [StreamEntry(seq, "west", seq, json.dumps({"status": 503})) for seq in (10, 20)]
    view._publish_batch(entries[:2] + errors[:1] + entries[2:] + errors[1:])
    got = await stream.entries(2)
    assert [(seq, data["status"], data["host"]) for seq, data in got] == [
        (10, 503, "west"),
        (20, 503, "west"),
    ]
    await stream.hang_up()
    resumed = sse(app, "min_status=500", headers={"Last-Event-ID": "15"})
    ready = await resumed.next_event()
    assert json.loads(ready["data"])["last_event_id"] == 15
    assert [seq for seq, _ in await resumed.entries(1)] == [20]
    assert resumed.others == []  # no history gap: 20 is held, 15 is past the floor
    await resumed.hang_up()
    assert view.stats().subscribers == 0


@pytest.mark.parametrize("flush_interval", [0.0, 0.02])
async def test_streams_sharing_chunks_each_get_their_own_entries(
    ops: OpsLogBroadcaster, flush_interval: float
) -> None:
    """Streams with one filter share each batch's chunk; streams with
    other filters, or that dropped entries, get theirs."""
    app = make_app(ops, flush_interval=flush_interval, replay=0, buf_size=256)
    plain = [sse(app) for _ in range(4)]
    errors = [sse(app, "min_status=500") for _ in range(3)]
    for stream in plain + errors:
        await stream.next_event()  # ready: subscribed
    published: list[OpsLogEntry] = []
    for round_ in range(6):
        published += publish(ops, 40)
        await asyncio.sleep(0.01 * (round_ % 3))
    want_all = [e.seq for e in published]
    want_errors = [e.seq for e in published if e.status >= 500]
    for stream in plain:
        got = await stream.entries(len(want_all))
        assert [seq for seq, _ in got] == want_all
        assert [data for _, data in got] == [e.to_dict() for e in published]
    for stream in errors:
        assert [seq for seq, _ in await stream.entries(len(want_errors))] == want_errors
    for stream in plain + errors:
        await stream.hang_up()
    assert ops.stats().subscribers == 0


async def test_batch_max_bounds_each_chunk(ops: OpsLogBroadcaster) -> None:
    stream = sse(make_app(ops, replay=0, batch_max=3, flush_interval=0.02))
    await stream.next_event()  # ready: subscribed
    assert stream.buffer == ""
    published = publish(ops, 10)
    ids: list[list[int]] = []
    while sum(map(len, ids)) < 10:
        chunk = (await asyncio.wait_for(stream.chunks.get(), WAIT)).decode()
        ids.append([int(seq) for seq in re.findall(r"^id: (\d+)$", chunk, re.M)])
    assert [seq for chunk in ids for seq in chunk] == [e.seq for e in published]
    assert max(map(len, ids)) == 3
    await stream.hang_up()
    assert ops.stats().subscribers == 0


async def test_a_batch_with_a_gap_never_takes_a_shared_chunk(ops: OpsLogBroadcaster) -> None:
    # White-box: the chunk cache is keyed by (filter, first seq, length),
    # which says what a batch holds when its subscription never dropped or
    # when its seqs are consecutive; any other batch gets a chunk of its own.
    router = admin_routes(ops, token=TOKEN, flush_interval=10.0)
    stream = next(r for r in router.routes if isinstance(r, Route) and r.path == "/stream")
    admin = stream.endpoint.__self__  # type: ignore[attr-defined]  # a bound method of the admin app
    entries = publish(ops, 10)
    shared = admin.chunk(None, entries[0:3], True)
    assert admin.chunk(None, entries[0:3], True) is shared
    # A stream that dropped entries earlier but whose batch is consecutive
    # holds the same entries: it shares the chunk.
    assert admin.chunk(None, entries[0:3], False) is shared
    gapped = admin.chunk(None, [entries[0], entries[5], entries[6]], False)
    assert gapped != shared
    assert gapped == admin.frames([entries[0], entries[5], entries[6]])
    assert b"id: %d\n" % entries[5].seq in gapped
    # The same gapped batch again is made again, not taken from the cache.
    assert admin.chunk(None, [entries[0], entries[5], entries[6]], False) is not gapped


async def test_keep_alive_pings(ops: OpsLogBroadcaster) -> None:
    stream = sse(make_app(ops, ping=0.05))
    await stream.next_event()
    text = ""
    while ": ping" not in text:
        text += (await asyncio.wait_for(stream.chunks.get(), WAIT)).decode()
    await stream.hang_up()


async def test_a_stuck_client_is_dropped_after_the_send_timeout(ops: OpsLogBroadcaster) -> None:
    publish(ops, 5)
    stream = sse(make_app(ops, send_timeout=0.1), send_blocks=True)
    assert stream.task is not None
    await asyncio.wait_for(stream.task, WAIT)  # ends by itself
    assert ops.stats().subscribers == 0


async def test_cancelling_the_stream_unsubscribes(ops: OpsLogBroadcaster) -> None:
    stream = sse(make_app(ops))
    await stream.next_event()
    assert ops.stats().subscribers == 1
    assert stream.task is not None
    stream.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stream.task
    assert ops.stats().subscribers == 0


async def test_head_on_the_stream_does_not_hang(ops: OpsLogBroadcaster) -> None:
    async with client(make_app(ops)) as http:
        response = await http.head(URL + "/stream", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert ops.stats().subscribers == 0


def test_routes_compose_with_other_routes(ops: OpsLogBroadcaster) -> None:
    mount = admin_mount(ops, "/ops/", token=TOKEN)
    assert isinstance(mount, Mount) and mount.path == "/ops"


# /summary, the summary events, the JSON 404, the end of a stream at shutdown


async def test_summary_counts_every_entry(ops: OpsLogBroadcaster) -> None:
    entries = publish(ops, 12)  # statuses 200, 404, 500, 502 in turn; models alternate
    async with client(make_app(ops)) as http:
        response = await http.get(URL + "/summary?seconds=60", headers=AUTH)
        assert response.status_code == 200
        got = response.json()
        assert got["seconds"] == 60 and len(got["series"]["requests"]) == 60
        assert got["totals"]["requests"] == 12
        assert (got["totals"]["2xx"], got["totals"]["4xx"], got["totals"]["5xx"]) == (3, 3, 6)
        assert got["totals"]["errors"] == 9
        assert sum(got["series"]["requests"]) == 12
        assert got["newest_seq"] == entries[-1].seq
        assert got["models"] == ["claude", "gpt-4o"]
        by_errors = got["top_models"]["by_errors"]
        assert by_errors[0] == {"model": "claude", "requests": 6, "errors": 6}
        # The series of one model only.
        claude = (await http.get(URL + "/summary?seconds=60&model=claude", headers=AUTH)).json()
        assert claude["totals"]["requests"] == 6 and claude["totals"]["2xx"] == 0
        # Later entries come in through the feed's subscription.
        publish(ops, 4, status=429)
        for _ in range(200):
            got = (await http.get(URL + "/summary", headers=AUTH)).json()
            if got["totals"]["requests"] == 16:
                break
            await asyncio.sleep(0.02)
        assert got["totals"]["429"] == 4 and got["totals"]["4xx"] == 7
        for query, message in (
            ("seconds=0", "query parameter 'seconds' must be an integer from 1"),
            ("top=x", "query parameter 'top' must be an integer"),
            ("min_status=5", "unknown query parameter 'min_status'"),
        ):
            response = await http.get(f"{URL}/summary?{query}", headers=AUTH)
            assert (response.status_code, response.json()["error"][: len(message)]) == (400, message)
    # The one feed subscription of this process, whatever the dashboards.
    assert ops.stats().subscribers == 1


async def test_stream_sends_summary_events_when_asked(ops: OpsLogBroadcaster) -> None:
    publish(ops, 8)
    app = make_app(ops, summary_interval=0.1)
    stream = sse(app, "summary=1&summary_seconds=30&model=claude")
    assert (await stream.next_event())["event"] == "ready"
    first = await stream.next_event()
    assert first["event"] == "summary"
    report = json.loads(first["data"])
    assert report["seconds"] == 30 and report["model"] == "claude"
    # The summary follows the stream's model; idle, it still comes each interval.
    primed = 0
    while report["totals"]["requests"] != 4 or primed < 4:
        event = await stream.next_event()
        if event.get("event") == "summary":
            report = json.loads(event["data"])
        else:
            primed += json.loads(event["data"])["model"] == "claude"
    await stream.hang_up()
    plain = sse(app)
    await plain.next_event()
    publish(ops, 2)
    await plain.entries(2)
    assert all(event.get("event") != "summary" for event in plain.others)
    await plain.hang_up()
    async with client(app) as http:
        response = await http.get(URL + "/stream?summary_seconds=5", headers=AUTH)
        assert response.status_code == 400 and "needs summary=1" in response.json()["error"]


async def test_unknown_routes_are_a_json_404(ops: OpsLogBroadcaster) -> None:
    async with client(make_app(ops)) as http:
        response = await http.get(URL + "/nope", headers=AUTH)
    assert response.status_code == 404
    assert response.json() == {"error": "no such route under the ops log prefix"}


async def test_a_stream_ends_its_response_at_server_shutdown(ops: OpsLogBroadcaster) -> None:
    """sse-starlette returns without the final body when the server shuts
    down; the stream ends it, so uvicorn has nothing to complain of."""
    from sse_starlette.sse import AppStatus

    stream = sse(make_app(ops))
    await stream.next_event()
    AppStatus.should_exit = True
    try:
        assert stream.task is not None
        await asyncio.wait_for(stream.task, WAIT)
    finally:
        AppStatus.should_exit = False
    bodies = []
    while not stream.chunks.empty():
        bodies.append(stream.chunks.get_nowait())
    assert bodies[-1] == b""  # the last message: the empty body ending the response
    assert ops.stats().subscribers == 0
