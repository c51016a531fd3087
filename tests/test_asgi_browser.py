"""The live page in a real browser: Debian's chromium, headless, driven by
Selenium through Debian's chromedriver, against a real uvicorn.

Where chromium or chromedriver is missing these tests skip, except in CI
(``CI`` set, as ``.ci/run`` does): there they fail, so the browser test
cannot silently stop running. ``FASTOPSLOG_CHROMIUM`` and
``FASTOPSLOG_CHROMEDRIVER`` point at other binaries."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from fastopslog import OpsLogBroadcaster, OpsLogEntry

TOKEN = "browser-test-token"
# Screenshots of each behaviour, for a person to look at; CI keeps the directory.
ARTIFACTS = Path(os.environ.get("FASTOPSLOG_ARTIFACTS", Path(__file__).parent / "artifacts"))
WAIT = 30.0  # against hangs only


def _required() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on")


def _missing(reason: str) -> NoReturn:
    if _required():
        pytest.fail(f"the browser test must run in CI, but {reason}", pytrace=False)
    pytest.skip(reason)


def _find(env: str, names: tuple[str, ...]) -> str | None:
    if os.environ.get(env):
        path = os.environ[env]
        return path if os.access(path, os.X_OK) else None
    for name in names:
        found = shutil.which(name) or (name if os.path.isabs(name) and os.access(name, os.X_OK) else None)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed (pip install selenium)")
    try:
        import httpx  # noqa: F401
        import sse_starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        _missing(f"{exc.name} is not installed")
    chromium = _find("FASTOPSLOG_CHROMIUM", ("chromium", "/usr/bin/chromium", "chromium-browser"))
    driver_path = _find("FASTOPSLOG_CHROMEDRIVER", ("chromedriver", "/usr/bin/chromedriver"))
    if chromium is None:
        _missing("chromium is not installed (apt-get install chromium)")
    if driver_path is None:
        _missing("chromedriver is not installed (apt-get install chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--window-size=1400,900",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def ops() -> OpsLogBroadcaster:
    return OpsLogBroadcaster(history_cap=1000)


def start(ops: OpsLogBroadcaster, port: int = 0, **options: Any) -> Any:
    from test_asgi_uvicorn import gateway_app, running_server

    return running_server(gateway_app(ops, token=TOKEN, **options), port)


def wait(driver: Any, condition: Any, what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT, poll_frequency=0.05).until(
        lambda d: condition(d), message=f"timed out waiting for {what}"
    )


def text_of(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, element_id).text)


def rows(driver: Any) -> list[dict[str, Any]]:
    """What the table shows: seq, status, class, path of each row."""
    result: list[dict[str, Any]] = driver.execute_script(
        """return Array.from(document.querySelectorAll('#rows tr[data-seq]')).map(function (tr) {
             return {seq: +tr.getAttribute('data-seq'), status: +tr.getAttribute('data-status'),
                     cls: tr.className, path: tr.children[2].textContent,
                     model: tr.children[5].textContent};
           });"""
    )
    return result


def shot(driver: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"live-page-{name}.png"))


def state(driver: Any) -> str:
    return str(driver.execute_script("return window.opslogState || ''"))


STATUSES = (200, 404, 500, 503)


def publish(ops: OpsLogBroadcaster, n: int, start: int = 0, **fields: Any) -> list[OpsLogEntry]:
    entries = []
    for i in range(start, start + n):
        entry = OpsLogEntry(
            method="POST",
            path=f"/v1/chat/{i}",
            status=fields.get("status", STATUSES[i % 4]),
            latency_ms=10 * i,
            model=fields.get("model", ("gpt-4o", "claude")[i % 2]),
        )
        ops.publish(entry)
        entries.append(entry)
    return entries


def test_entries_appear_coloured_and_filters_work(browser: Any, ops: OpsLogBroadcaster) -> None:
    from selenium.webdriver.common.by import By

    history = publish(ops, 12)
    with start(ops) as server:
        browser.get(f"{server.url}/admin/ops/logs/#token={TOKEN}")
        wait(browser, lambda d: state(d) == "live", "the page to go live")
        # Primed from history, newest first.
        wait(browser, lambda d: len(rows(d)) == 12, "12 primed rows")
        assert [r["seq"] for r in rows(browser)] == [e.seq for e in reversed(history)]
        # The token left the address bar once traded for the cookie.
        assert "token" not in browser.current_url

        live = publish(ops, 8, start=12)
        wait(browser, lambda d: len(rows(d)) == 20, "8 live rows")
        shown = rows(browser)
        assert [r["seq"] for r in shown[:8]] == [e.seq for e in reversed(live)]
        classes = {r["status"]: r["cls"] for r in shown}
        assert classes == {200: "s2", 404: "s4", 500: "s5", 503: "s5"}
        assert text_of(browser, "received") == "20"

        # Filter: min_status 500 reconnects with the parameter and replays
        # only what matches.
        field = browser.find_element(By.NAME, "min_status")
        field.clear()
        field.send_keys("500")
        browser.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
        want = [e.seq for e in reversed(history + live) if e.status >= 500]
        wait(browser, lambda d: [r["seq"] for r in rows(d)] == want, "only 5xx rows")
        assert "min_status=500" in browser.current_url
        more = publish(ops, 8, start=20)
        want = [e.seq for e in reversed(history + live + more) if e.status >= 500]
        wait(browser, lambda d: [r["seq"] for r in rows(d)] == want, "new 5xx rows only")

        # Add a model filter on top.
        field = browser.find_element(By.NAME, "model")
        field.send_keys("claude")
        browser.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
        want = [
            e.seq for e in reversed(history + live + more) if e.status >= 500 and e.model == "claude"
        ]
        wait(browser, lambda d: [r["seq"] for r in rows(d)] == want, "5xx claude rows")
        assert all(r["model"] == "claude" for r in rows(browser))

        # A bad filter is explained, not retried forever.
        browser.execute_script(
            "var f = document.querySelector('input[name=account_id]'); f.type = 'text'; f.value = 'abc';"
        )
        browser.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
        wait(browser, lambda d: state(d) == "error", "the bad filter to be reported")
        assert "account_id" in text_of(browser, "notice")
    assert ops.stats().subscribers == 0


def test_the_drop_counter_moves(browser: Any, ops: OpsLogBroadcaster) -> None:
    import httpx

    with start(ops, buf_size=64) as server:
        browser.get(f"{server.url}/admin/ops/logs/#token={TOKEN}")
        wait(browser, lambda d: state(d) == "live", "the page to go live")
        assert text_of(browser, "dropped") == "0"
        # 3,000 entries published in one go on the server's event loop: the
        # page's 64-entry subscription overflows.
        httpx.post(f"{server.url}/burst?n=3000", timeout=WAIT).raise_for_status()
        wait(browser, lambda d: int(text_of(d, "dropped")) > 0, "the drop counter to move")
        dropped = int(text_of(browser, "dropped"))
        wait(browser, lambda d: int(text_of(d, "received")) >= 64, "the buffered entries")
        assert int(text_of(browser, "received")) + dropped == 3000
        assert len(rows(browser)) <= 2000


def test_losses_upstream_show_as_a_marker_and_a_counter(browser: Any) -> None:
    """A Redis cluster view's outage: the page marks it and counts it apart
    from its own drops."""
    import json

    from starlette.applications import Starlette

    from fastopslog.asgi import admin_mount
    from fastopslog.redis import ClusterView, StreamEntry
    from test_asgi_uvicorn import running_server

    def entries(first: int, n: int) -> list[StreamEntry]:
        line = json.dumps({"status": 200, "path": "/v1/chat"})
        return [StreamEntry(seq, "east", seq, line) for seq in range(first, first + n)]

    view = ClusterView(history_cap=100)
    app = Starlette(routes=[admin_mount(view, token=TOKEN)])  # type: ignore[arg-type]
    with running_server(app) as server:
        browser.get(f"{server.url}/admin/ops/logs/#token={TOKEN}")
        wait(browser, lambda d: state(d) == "live", "the page to go live")
        assert not browser.find_element("id", "upstream-box").is_displayed()
        view._publish_batch(entries(1, 3))
        wait(browser, lambda d: len(rows(d)) == 3, "the first entries")
        view._count_lost(7)
        view._publish_batch(entries(11, 2))
        wait(browser, lambda d: text_of(d, "upstream") == "7", "the upstream counter")
        assert browser.find_element("id", "upstream-box").is_displayed()
        assert text_of(browser, "dropped") == "0"
        marks = browser.execute_script(
            "return Array.from(document.querySelectorAll('#rows tr.mark')).map(t => t.textContent)"
        )
        assert any("7 entries lost before reaching this server" in mark for mark in marks), marks
        shot(browser, "upstream-lost")


def test_login_form_pause_and_resume(browser: Any, ops: OpsLogBroadcaster) -> None:
    from selenium.webdriver.common.by import By

    with start(ops) as server:
        browser.delete_all_cookies()
        browser.get(f"{server.url}/admin/ops/logs/")
        browser.delete_all_cookies()
        browser.get(f"{server.url}/admin/ops/logs/")
        wait(browser, lambda d: state(d) == "login", "the login form")
        login = browser.find_element(By.ID, "login")
        assert login.is_displayed()
        login.find_element(By.NAME, "token").send_keys("wrong")
        login.find_element(By.CSS_SELECTOR, "button").click()
        wait(browser, lambda d: "invalid" in text_of(d, "notice"), "the refusal")
        field = login.find_element(By.NAME, "token")
        field.clear()
        field.send_keys(TOKEN)
        login.find_element(By.CSS_SELECTOR, "button").click()
        wait(browser, lambda d: state(d) == "live", "the page to go live")
        # Hidden once logged in (a form's display: flex once overrode hidden).
        assert not login.is_displayed()
        shot(browser, "after-login")

        publish(ops, 4)
        wait(browser, lambda d: len(rows(d)) == 4, "4 rows")
        browser.find_element(By.ID, "pause").click()
        wait(browser, lambda d: state(d) == "paused", "paused")
        publish(ops, 6, start=4)
        wait(browser, lambda d: text_of(d, "held") == "6", "6 held entries")
        assert len(rows(browser)) == 4
        browser.find_element(By.ID, "pause").click()
        wait(browser, lambda d: len(rows(d)) == 10, "the held rows after resume")
        assert state(browser) == "live"


def test_a_thousand_entries_a_second(browser: Any, ops: OpsLogBroadcaster) -> None:
    """At 1,000 entries/s the page keeps up: every entry is received, the
    table stays capped, and the page still answers."""
    total = 3000
    with start(ops, buf_size=4096) as server:
        browser.get(f"{server.url}/admin/ops/logs/#token={TOKEN}")
        wait(browser, lambda d: state(d) == "live", "the page to go live")

        def publisher() -> None:
            for second in range(total // 1000):
                begin = time.monotonic()
                for i in range(100):
                    publish(ops, 10, start=second * 1000 + i * 10)
                    time.sleep(max(0.0, begin + (i + 1) / 100 - time.monotonic()))

        thread = threading.Thread(target=publisher, daemon=True)
        thread.start()
        thread.join(WAIT)
        wait(browser, lambda d: int(text_of(d, "received")) == total, "every entry to arrive")
        shown = rows(browser)
        assert len(shown) == 2000  # the default scroll-back
        assert shown[0]["seq"] == ops.stats().published
        assert text_of(browser, "dropped") == "0"


def test_reconnects_and_resumes_after_a_server_restart(browser: Any, ops: OpsLogBroadcaster) -> None:
    with start(ops) as server:
        port = server.port
        browser.get(f"{server.url}/admin/ops/logs/#token={TOKEN}")
        wait(browser, lambda d: state(d) == "live", "the page to go live")
        first = publish(ops, 3)
        wait(browser, lambda d: len(rows(d)) == 3, "3 rows")
    wait(browser, lambda d: state(d) in ("reconnecting", "disconnected", "connecting"), "the lost connection")
    # Published while the server is down: the page must get them once it
    # is back, through Last-Event-ID, and nothing twice.
    missed = publish(ops, 4, start=3)
    with start(ops, port=port):
        wait(browser, lambda d: state(d) == "live", "the page to reconnect")
        more = publish(ops, 2, start=7)
        want = [e.seq for e in reversed(first + missed + more)]
        wait(browser, lambda d: [r["seq"] for r in rows(d)] == want, "the missed and new rows, once each")


def summaries(driver: Any) -> int:
    return int(driver.execute_script("return window.opslog ? window.opslog.summaries : 0"))


def summary_total(driver: Any) -> int:
    return int(
        driver.execute_script(
            "return window.opslog && window.opslog.summary ? window.opslog.summary.totals.requests : -1"
        )
    )


def test_charts_draw_the_summary_and_keep_updating(browser: Any, ops: OpsLogBroadcaster) -> None:
    browser.set_window_size(1400, 900)
    publish(ops, 40)
    with start(ops) as server:
        browser.get(f"{server.url}/admin/ops/logs/#token={TOKEN}")
        wait(browser, lambda d: summary_total(d) == 40, "the summary of the 40 entries")
        charts = browser.execute_script(
            """return ['chart-rate', 'chart-errors', 'chart-latency'].map(function (id) {
                 var lines = document.querySelectorAll('#' + id + ' svg polyline');
                 return {lines: lines.length, points: lines[0].getAttribute('points').split(' ').length,
                         shown: document.getElementById(id).getBoundingClientRect().height > 50};
               });"""
        )
        assert [c["lines"] for c in charts] == [2, 2, 3]
        assert all(c["shown"] and c["points"] >= 1 for c in charts)
        # The breakdowns: status classes and models, from the summary.
        assert "5xx 20" in text_of(browser, "classes")
        assert {"gpt-4o", "claude"} <= set(
            browser.execute_script(
                "return Array.from(document.querySelectorAll('#models tr[data-model]'))"
                ".map(function (tr) { return tr.getAttribute('data-model'); });"
            )
        )
        # Updating: later entries reach the charts without a reload.
        before = summaries(browser)
        publish(ops, 25, start=40)
        wait(browser, lambda d: summary_total(d) == 65, "the summary to count 25 more")
        assert summaries(browser) > before
        shot(browser, "charts")


def test_a_click_on_a_breakdown_filters_the_log(browser: Any, ops: OpsLogBroadcaster) -> None:
    from selenium.webdriver.common.by import By

    browser.set_window_size(1400, 900)
    history = publish(ops, 24)
    with start(ops) as server:
        browser.get(f"{server.url}/admin/ops/logs/#token={TOKEN}")
        wait(browser, lambda d: len(rows(d)) == 24, "24 rows")
        wait(browser, lambda d: summary_total(d) == 24, "the summary")
        browser.find_element(By.CSS_SELECTOR, "#classes [data-class='4']").click()
        want = [e.seq for e in reversed(history) if e.status // 100 == 4]
        wait(browser, lambda d: [r["seq"] for r in rows(d)] == want, "only 4xx rows")
        assert "class=4" in browser.current_url
        # Back to every class, then the claude model from the model list.
        browser.find_element(By.CSS_SELECTOR, "#classes [data-class='4']").click()
        wait(browser, lambda d: len(rows(d)) == 24, "every row again")
        claude = "#models tr[data-model='claude']"
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, claude), "claude listed")
        browser.find_element(By.CSS_SELECTOR, "#models tr[data-model='claude']").click()
        want = [e.seq for e in reversed(history) if e.model == "claude"]
        wait(browser, lambda d: [r["seq"] for r in rows(d)] == want, "only claude rows")
        assert "model=claude" in browser.current_url
        # 429 on its own, through the status select.
        publish(ops, 3, start=24, status=429)
        browser.find_element(By.CSS_SELECTOR, "#filters select[name=class] option[value='429']").click()
        browser.find_element(By.NAME, "model").clear()
        browser.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
        wait(browser, lambda d: [r["status"] for r in rows(d)] == [429, 429, 429], "only the 429 rows")
        # Free-text search over what the page holds.
        browser.find_element(By.CSS_SELECTOR, "#classes [data-class='429']").click()
        wait(browser, lambda d: len(rows(d)) == 27, "every row again")
        browser.find_element(By.ID, "search").send_keys("/v1/chat/25")
        visible = browser.execute_script(
            "return Array.from(document.querySelectorAll('#rows tr[data-seq]'))"
            ".filter(function (tr) { return tr.offsetParent !== null; }).length"
        )
        assert visible == 1
        shot(browser, "filtered")


def test_the_detail_view_shows_every_field_and_copies_json(browser: Any, ops: OpsLogBroadcaster) -> None:
    import json

    from selenium.webdriver.common.by import By

    browser.set_window_size(1400, 900)
    detail = "upstream said: " + "x" * 600 + " END"
    entry = OpsLogEntry(
        method="POST", path="/v1/chat/completions", status=502, latency_ms=1234,
        model="claude-3-5-sonnet-20241022",
        account_id=7, group_id=2, api_key_id=11, user_id=101, turns=3, prompt_chars=900,
        upstream_status=502, error_message="upstream returned 502", error_detail=detail, stream=True,
    )
    ops.publish(entry)
    with start(ops) as server:
        browser.get(f"{server.url}/admin/ops/logs/#token={TOKEN}")
        wait(browser, lambda d: len(rows(d)) == 1, "the row")
        browser.find_element(By.CSS_SELECTOR, "#rows tr[data-seq]").click()
        wait(browser, lambda d: d.find_element(By.ID, "detail").is_displayed(), "the detail view")
        fields = browser.execute_script(
            "return Array.from(document.querySelectorAll('#detail-rows tr'))"
            ".map(function (tr) { return [tr.getAttribute('data-field'), tr.children[1].textContent]; });"
        )
        got = dict(fields)
        assert got["error_detail"] == detail  # whole, not cut
        assert got["model"] == "claude-3-5-sonnet-20241022"
        assert "ago" in got["time"] or "now" in got["time"]
        assert set(got) >= {"seq", "method", "path", "status", "latency_ms", "account_id", "upstream_status"}
        # The time cell shows milliseconds.
        cell = browser.find_element(By.CSS_SELECTOR, "#rows tr[data-seq] td").text
        assert len(cell.split(".")[1][:3]) == 3
        browser.find_element(By.ID, "copy").click()
        copied = json.loads(browser.execute_script("return window.opslog.copied"))
        assert copied == {**entry.to_dict(), "seq": 1} | {"time": copied["time"]}
        shot(browser, "detail")
        browser.find_element(By.ID, "close").click()
        assert not browser.find_element(By.ID, "detail").is_displayed()


def test_the_narrow_layout_keeps_the_key_columns(browser: Any, ops: OpsLogBroadcaster) -> None:
    publish(ops, 20)
    ops.publish(OpsLogEntry(status=500, latency_ms=5, model="claude-3-5-sonnet", error_message="boom"))
    with start(ops) as server:
        browser.set_window_size(420, 900)
        try:
            browser.get(f"{server.url}/admin/ops/logs/#token={TOKEN}")
            wait(browser, lambda d: len(rows(d)) == 21, "the rows")
            width = browser.execute_script("return window.innerWidth")
            layout = browser.execute_script(
                """var ths = document.querySelectorAll('#log thead th');
                   return {scroll: document.documentElement.scrollWidth,
                           cols: Array.from(ths).map(function (th) {
                             var r = th.getBoundingClientRect();
                             return [th.textContent, r.width > 0 && r.right <= window.innerWidth + 1];
                           })};"""
            )
            visible = [name for name, shown in layout["cols"] if shown]
            assert visible == ["time", "status", "latency", "model", "error"]
            assert layout["scroll"] <= width  # no sideways scrolling
            shot(browser, "narrow-420")
        finally:
            browser.set_window_size(1400, 900)


class ThrottledProxy:
    """A TCP proxy on 127.0.0.1 passing the server's bytes to the browser
    at ``rate`` bytes/s: a client on a slow link, in its own thread."""

    def __init__(self, target_port: int, rate: int) -> None:
        import asyncio
        import socket

        self.target_port = target_port
        self.rate = rate
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _pipe(self, reader: Any, writer: Any, rate: int | None) -> None:
        import asyncio

        try:
            while data := await reader.read(rate // 10 if rate else 65536):
                writer.write(data)
                await writer.drain()
                if rate:
                    await asyncio.sleep(len(data) / rate)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _client(self, reader: Any, writer: Any) -> None:
        import asyncio

        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(
            self._pipe(reader, up_writer, None), self._pipe(up_reader, writer, self.rate)
        )

    def __enter__(self) -> ThrottledProxy:
        import asyncio

        self.thread.start()

        async def serve() -> Any:
            return await asyncio.start_server(self._client, sock=self.sock)

        self.server = asyncio.run_coroutine_threadsafe(serve(), self.loop).result(WAIT)
        return self

    def __exit__(self, *exc: object) -> None:
        import asyncio

        async def shutdown() -> None:
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(WAIT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()


def test_the_lag_indicator_under_a_throttled_client(browser: Any, ops: OpsLogBroadcaster) -> None:
    """A browser on a link slower than the stream: the rows arrive late,
    and the page says it is behind instead of live."""
    stop = threading.Event()

    def publisher() -> None:
        i = 0
        while not stop.is_set():
            publish(ops, 20, start=i)  # 400/s, about 60 kB/s of stream
            i += 20
            time.sleep(0.05)

    with start(ops, buf_size=100_000) as server, ThrottledProxy(server.port, 20_000) as proxy:
        browser.get(f"http://127.0.0.1:{proxy.port}/admin/ops/logs/#token={TOKEN}")
        wait(browser, lambda d: state(d) == "live", "the page to go live")
        thread = threading.Thread(target=publisher, daemon=True)
        thread.start()
        try:
            wait(browser, lambda d: state(d) == "behind", "the page to say it is behind")
            assert text_of(browser, "state").startswith("behind by ")
            assert int(text_of(browser, "lag").split()[0].lstrip("<")) >= 3
            shot(browser, "behind")
        finally:
            stop.set()
            thread.join(WAIT)
