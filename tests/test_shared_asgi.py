"""The gateway integration takes a SharedOpsLogBroadcaster unchanged: the
middleware publishes into the shared log, and the admin routes of any
process (here a second broadcaster on the same name, as another worker
would have) read it, with one ``published`` count."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from fastopslog import unlink_shared
from fastopslog.asgi import DEFAULT_PREFIX, OpsLogMiddleware, admin_mount

pytestmark = [pytest.mark.anyio, pytest.mark.c_extension]

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def name() -> Iterator[str]:
    n = f"test-asgi-{uuid.uuid4().hex[:8]}"
    yield n
    unlink_shared(n)


def worker_app(ops: Any) -> Any:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hi", status_code=int(request.query_params.get("s", "200")))

    app = Starlette(routes=[Route("/v1/hello", hello), admin_mount(ops, token=TOKEN)])
    return OpsLogMiddleware(app, ops)


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def test_two_workers_one_log(c_impl: ModuleType, name: str) -> None:
    one = c_impl.SharedOpsLogBroadcaster(name, history_cap=256)
    two = c_impl.SharedOpsLogBroadcaster(name)
    try:
        async with client(worker_app(one)) as w1, client(worker_app(two)) as w2:
            for i in range(6):
                http = w1 if i % 2 else w2
                assert (await http.get("/v1/hello", params={"s": str(200 + i)})).status_code == 200 + i
            for http in (w1, w2):
                stats = (await http.get(DEFAULT_PREFIX + "/stats", headers=AUTH)).json()
                assert stats["published"] == 6
                recent = (await http.get(DEFAULT_PREFIX + "/recent", headers=AUTH)).json()
                assert sorted(e["status"] for e in recent) == list(range(200, 206))
    finally:
        one.close()
        two.close()
