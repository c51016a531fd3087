"""The overhead measurement of BENCHMARKS.md measures what it says: each
app factory serves the endpoint, the reference middlewares pass the
response through, the fixed-count load sends exactly the requests it is
asked for, and ``micro`` prints a line per variant. Speed itself is never
asserted here."""

from __future__ import annotations

import asyncio
import importlib
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sse_starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

# A developer tool, not part of the package: it lives in benchmarks/ (a
# directory of scripts, whose conftest would clash with the root one as a
# module on mypy's path, hence imported by name here).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
_overhead = importlib.import_module("asgi_overhead")

FACTORIES = ["plain_app", "passthrough_app", "see_status_app", "middleware_app"]


@pytest.mark.parametrize("factory", FACTORIES)
def test_each_server_serves_the_endpoint_over_a_real_socket(factory: str) -> None:
    from test_asgi_uvicorn import running_server

    app = getattr(_overhead, factory)()
    seen: list[str] = []

    async def counted(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append(scope["path"])
        await app(scope, receive, send)

    with running_server(counted) as server:
        asyncio.run(_overhead._load(server.port, 7, 3))
        assert seen == ["/"] * 7
        if factory == "middleware_app":
            # The admin routes are mounted, the requests were published, and
            # the stats request itself is excluded from the log.
            assert _overhead._subscribers(server.port) == 0
            stats = httpx.get(
                f"{server.url}/admin/ops/logs/stats",
                headers={"Authorization": f"Bearer {_overhead.BENCH_TOKEN}"},
            ).json()
            assert stats["published"] == 7


def test_the_reference_middlewares_change_nothing_in_the_response() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 418, "headers": [(b"x-a", b"1")]})
        await send({"type": "http.response.body", "body": b"tea"})

    for middleware in (_overhead.PassThrough(app), _overhead.SeeStatus(app)):
        response = asyncio.run(_get(middleware))
        assert (response.status_code, response.headers["x-a"], response.text) == (418, "1", "tea")


async def _get(app: Any) -> Any:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        return await c.get("/")


def test_micro_reports_every_variant(capsys: pytest.CaptureFixture[str]) -> None:
    _overhead.main(["micro", "--number", "50", "--repeat", "1", "--subscribers", "2"])
    out = capsys.readouterr().out
    for name in (
        "bare app",
        "pass-through middleware",
        "status-reading middleware",
        "middleware ",
        "middleware, contextvar=True",
    ):
        assert f"  {name}" in out
    assert "2 subscribers" in out


def test_apps_reports_every_middleware_on_both_frameworks(capsys: pytest.CaptureFixture[str]) -> None:
    _overhead.main(["apps", "--number", "5", "--rounds", "1", "--dashboards", "2"])
    out = capsys.readouterr().out
    assert "starlette 1." in out and "fastapi 0." in out  # the versions measured
    for framework in ("starlette", "fastapi"):
        section = out.split(f"\n{framework}: median")[1].split("\n\n")[0]
        for name in (
            "no middleware",
            "pass-through pure ASGI",
            "status-reading send wrapper",
            "OpsLogMiddleware ",
            "OpsLogMiddleware, 2 dashboards matching nothing",
            "OpsLogMiddleware, contextvar=True",
            "BaseHTTPMiddleware, call_next only",
        ):
            assert f"  {name}" in section, (framework, name)
