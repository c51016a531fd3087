"""Across hosts on Redis Streams, against a real ``redis-server``.

Each test starts its own server on a Unix socket in a temporary directory
(``_redis_server``) and stops it by PID. Hosts are child processes with
distinct origin names, each with its own broadcaster and forwarder. The
entries go through the package's default implementation, as a gateway's do.
Timeouts guard against hangs only; nothing asserts how long anything took.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastopslog
from _redis_server import RedisServer
from fastopslog._filter_py import OpsLogFilter as PureFilter
from fastopslog._ring_py import _Ring
from fastopslog.redis import (
    DEFAULT_STREAM,
    ClusterView,
    ElectedForwarder,
    Forwarder,
    ForwarderStats,
    HostLock,
    RedisSetupError,
    StreamEntry,
    StreamReader,
    connect,
)
from fastopslog.redis._ids import first_seq, parse_stream_id, seq_to_stream_id

HANG = 60.0
TESTS = str(Path(__file__).parent)


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as srv:
        yield srv


def wait_for(condition: Callable[[], bool], what: str, timeout: float = HANG) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# A host: publishes N entries at a steady pace through its own forwarder,
# then waits until the forwarder has accounted for every one (sent, dropped
# or lost) and prints its counts. Publishing must never block: the loop
# records the slowest publish call so the test can report it.
HOST = r"""
import json, sys, time
import fastopslog
from fastopslog.redis import Forwarder
url, host, count, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
b = fastopslog.OpsLogBroadcaster()
f = Forwarder(b, url, host=host, timeout=0.2, interval=0.02).start()
print("ready", flush=True)
slowest = 0.0
start = time.monotonic()
for i in range(count):
    t = time.perf_counter()
    b.publish(fastopslog.OpsLogEntry(status=200, path=f"/{host}/{i}", account_id=i))
    slowest = max(slowest, time.perf_counter() - t)
    if rate:
        delay = start + (i + 1) / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
while sum(f.stats()[:3]) < count:
    time.sleep(0.01)
s = f.stats()
f.close()
print(json.dumps({"host": host, "published": b.stats().published, "sent": s.sent,
                  "dropped": s.dropped, "lost": s.lost, "outages": s.outages, "slowest": slowest}))
"""


def start_host(url: str, host: str, count: int, rate: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOST, url, host, str(count), str(rate)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


def finish_host(proc: subprocess.Popen[str]) -> dict[str, object]:
    out, _ = proc.communicate(timeout=HANG)
    assert proc.returncode == 0
    result: dict[str, object] = json.loads(out.splitlines()[-1])
    return result


def by_host(entries: list[fastopslog.redis.StreamEntry]) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = {}
    for item in entries:
        seen.setdefault(item.host, []).append(item.origin_seq)
    return seen


def test_stream_ids_pack_in_order() -> None:
    ids = ["0-0", "0-1", "1-0", "1700000000000-0", "1700000000000-1023", "1700000000001-0"]
    seqs = [first_seq(*parse_stream_id(i)) or 0 for i in ids]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for raw, seq in zip(ids, seqs, strict=True):
        assert seq_to_stream_id(seq) == raw
        assert seq_to_stream_id(seq + 2047) == raw  # every entry of the batch names it
    assert first_seq(1700000000000, 1024) is None
    assert first_seq(1 << 42, 0) is None
    with pytest.raises(ValueError, match="not a stream id"):
        parse_stream_id("12")


def stream_entries(seqs: list[int], status: int = 200) -> list[StreamEntry]:
    line = json.dumps({"status": status, "path": "/v1/chat"})
    return [StreamEntry(seq, "east", seq, line) for seq in seqs]


def test_view_resumes_by_a_floor_between_sparse_seqs() -> None:
    """Seqs are sparse stream ids: whether a resume is covered is decided
    by the floor (the newest seq evicted), never by a count, wherever the
    resume falls between two seqs."""
    view = ClusterView(history_cap=4)
    view._publish_batch(stream_entries([10, 20, 30]))
    view._publish_batch(stream_entries([40, 50, 60]))  # evicts 10 and 20: the floor is 20

    def resume(since: int, buf_size: int = 16) -> tuple[list[int], bool]:
        sub = view.subscribe(None, buf_size, since_seq=since)
        return [item.seq for item in sub.drain()], sub.history_gap

    assert resume(25) == ([30, 40, 50, 60], False)  # after the floor, before the first held
    assert resume(20) == ([30, 40, 50, 60], False)  # everything after the floor is held
    assert resume(15) == ([30, 40, 50, 60], True)  # 20 was after it and is gone
    assert resume(0) == ([30, 40, 50, 60], True)
    assert resume(45) == ([50, 60], False)
    assert resume(60) == ([], False)
    assert resume(65) == ([], True)  # after the newest: not this stream's history
    assert resume(25, buf_size=2) == ([50, 60], True)  # the oldest did not fit
    with pytest.raises(ValueError, match="not after 60"):
        view._publish_batch(stream_entries([60, 70]))
    assert view.last_seq == 60 and view.stats().published == 6

    primed = ClusterView(history_cap=100)
    primed._prime_floor(1000)  # the reader loaded from 1001 on
    primed._publish_batch(stream_entries([1001, 2000]))
    assert primed.subscribe(None, since_seq=999).history_gap
    assert not primed.subscribe(None, since_seq=1000).history_gap


def test_view_filters_batches_with_the_packages_filter() -> None:
    """Filters are ``fastopslog.OpsLogFilter`` (the core's when it is in
    use), matched on the parsed entry; equal filters share the batch."""
    view = ClusterView(history_cap=100)
    errors = [view.subscribe(fastopslog.OpsLogFilter(min_status=500), 100) for _ in range(2)]
    everything = view.subscribe(fastopslog.OpsLogFilter(), 100)
    view._publish_batch(stream_entries([1, 2], 200) + stream_entries([3], 503))
    view._publish_batch(stream_entries([4], 500) + stream_entries([5], 404))
    for sub in errors:
        assert [item.seq for item in sub.drain()] == [3, 4]
    assert [item.seq for item in everything.drain()] == [1, 2, 3, 4, 5]
    assert errors[0].filter == PureFilter(min_status=500)  # the pure machinery's copy
    flt = fastopslog.OpsLogFilter(min_status=500)
    replayed = view.subscribe(flt, 100, replay=1)
    assert [item.seq for item in replayed.drain()] == [4]
    resumed = view.subscribe(flt, 100, since_seq=1)
    assert [item.seq for item in resumed.drain()] == [3, 4] and not resumed.history_gap
    assert [item.seq for item in view.snapshot(flt)] == [3, 4]
    assert [item.seq for item in view.snapshot(None, max_entries=2)] == [4, 5]
    with pytest.raises(TypeError, match="filter must be an OpsLogFilter"):
        view.subscribe("min_status=500")  # type: ignore[arg-type]


def test_view_buffers_drop_by_policy_across_batches() -> None:
    view = ClusterView(history_cap=100)
    newest = view.subscribe(None, 3)
    oldest = view.subscribe(None, 3, overflow="drop_oldest")
    view._publish_batch(stream_entries([1, 2]))
    assert [item.seq for item in oldest.drain(1)] == [1]  # one read: room for two more
    view._publish_batch(stream_entries([3, 4, 5, 6]))
    assert [item.seq for item in newest.drain()] == [1, 2, 3] and newest.dropped == 3
    assert [item.seq for item in oldest.drain()] == [4, 5, 6] and oldest.dropped == 2
    view._publish_batch(stream_entries([7, 8, 9, 10, 11]))
    assert [item.seq for item in oldest.drain()] == [9, 10, 11] and oldest.dropped == 4
    assert [item.seq for item in newest.drain()] == [7, 8, 9] and newest.dropped == 5
    assert view.stats() == (11, 5 + 4, 2)


@given(
    cap=st.integers(1, 8),
    drop_oldest=st.booleans(),
    steps=st.lists(st.tuples(st.integers(0, 20), st.integers(0, 10)), max_size=12),
)
def test_a_batch_pushes_as_its_entries_one_by_one(
    cap: int, drop_oldest: bool, steps: list[tuple[int, int]]
) -> None:
    """``_Ring.push_many``, the view's batch push, leaves the buffer and the
    drop count as ``push`` entry by entry does, reads between batches
    included."""
    batched: _Ring[int] = _Ring(PureFilter(), cap, drop_oldest)
    single: _Ring[int] = _Ring(PureFilter(), cap, drop_oldest)
    n = 0
    for size, reads in steps:
        batch = list(range(n, n + size))
        n += size
        missed = batched.push_many(batch)
        assert missed == sum(single.push(item) for item in batch)
        assert list(batched.buf) == list(single.buf) and batched.dropped == single.dropped
        for _ in range(min(reads, len(single.buf))):
            assert batched.pop() == single.pop()


def test_view_counts_upstream_losses_per_live_subscription() -> None:
    view = ClusterView()
    early = view.subscribe(None, 100)
    view._count_lost(5)
    late = view.subscribe(None, 100)
    view._count_lost(2)
    with late:
        pass  # unsubscribed: it hears of no more
    view._count_lost(1)
    assert (early.upstream_lost, late.upstream_lost, view.upstream_lost) == (8, 2, 8)
    view._publish_batch(stream_entries([1]))
    assert early.get(timeout=HANG).seq == 1
    with pytest.raises(fastopslog.SubscriptionClosed):
        late.get(timeout=HANG)
    assert list(late) == []
    assert view.stats().subscribers == 1
    del early
    assert view.stats().subscribers == 0  # collected: unsubscribed


def test_hosts_fan_in_with_exact_counts(server: RedisServer) -> None:
    count = 3000
    with StreamReader(server.url) as reader:
        sub = reader.view.subscribe(None, 4 * count)
        hosts = [start_host(server.url, name, count, 0) for name in ("host-a", "host-b", "host-c")]
        results = [finish_host(proc) for proc in hosts]
        wait_for(lambda: reader.stats().delivered == 3 * count, "every entry")
        entries = sub.drain()
        assert reader.stats().lost == 0 and sub.dropped == 0
    for result in results:
        assert result["sent"] == count and result["dropped"] == result["lost"] == 0
    seqs = by_host(entries)
    assert set(seqs) == {"host-a", "host-b", "host-c"}
    for origin_seqs in seqs.values():
        assert origin_seqs == list(range(1, count + 1))
    assert [item.seq for item in entries] == sorted({item.seq for item in entries})
    first = entries[0]
    assert json.loads(first.to_json())["host"] == first.host
    assert first.entry.path.startswith(f"/{first.host}/")


def test_redis_killed_and_restarted_mid_run(server: RedisServer) -> None:
    """Publishers never block, every loss is counted (published = delivered
    + lost), delivery resumes on its own, and a dashboard hears of the loss."""
    count, rate = 10000, 2000.0  # long enough to outlast the forwarders' backoff
    with StreamReader(server.url, block=0.5) as reader:
        dashboard = reader.view.subscribe(None, 100_000)
        hosts = [start_host(server.url, name, count, rate) for name in ("east", "west")]
        wait_for(lambda: reader.stats().delivered > 1000, "entries before the outage")
        server.kill()
        time.sleep(1.0)
        server.start()
        results = [finish_host(proc) for proc in hosts]
        wait_for(
            lambda: reader.stats().delivered + reader.stats().lost >= 2 * count,
            "the last entries after the restart",
        )
        time.sleep(0.2)  # anything more would be a double count
        stats = reader.stats()
        entries = dashboard.drain()
    published = sum(int(r["published"]) for r in results)  # type: ignore[call-overload]
    assert published == 2 * count
    assert stats.lost > 0 and stats.outages >= 1
    assert stats.delivered + stats.lost == published, (stats, results)
    # The dashboard's "upstream" lost events carry them, not "slow" ones.
    assert dashboard.upstream_lost == stats.lost and dashboard.dropped == 0
    for result in results:
        assert result["sent"] + result["dropped"] + result["lost"] == count  # type: ignore[operator]
        assert int(result["outages"]) >= 1  # type: ignore[call-overload]
    seqs = by_host(entries)
    for name in ("east", "west"):
        # Delivery resumed: the host's last entry arrived after the restart.
        assert seqs[name][-1] == count
        assert seqs[name] == sorted(set(seqs[name]))


def test_a_stopped_redis_never_blocks_a_publisher(server: RedisServer) -> None:
    """SIGSTOP: the server accepts nothing and answers nothing. Publishing
    goes on; the forwarder's buffer fills and drops, counted."""
    b = fastopslog.OpsLogBroadcaster()
    with Forwarder(b, server.url, host="h", timeout=0.2, buf_size=100, interval=0.01) as fwd:
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            for i in range(5000):
                b.publish(fastopslog.OpsLogEntry(status=200, account_id=i))
            assert b.stats().published == 5000
            wait_for(lambda: fwd.stats().dropped > 0, "the forwarder's buffer to overflow")
            wait_for(lambda: fwd.stats().outages == 1, "the forwarder to give up on a reply")
            for i in range(1000):
                b.publish(fastopslog.OpsLogEntry(status=200, account_id=i))
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        wait_for(lambda: sum(fwd.stats()[:3]) == 6000, "every entry accounted for")
        stats = fwd.stats()
    assert stats.dropped > 0 and stats.lost > 0 and stats.outages == 1


def test_a_slow_dashboard_is_dropped_and_counted_not_buffered(server: RedisServer) -> None:
    b = fastopslog.OpsLogBroadcaster()
    with StreamReader(server.url) as reader, Forwarder(b, server.url, host="h"):
        slow = reader.view.subscribe(None, 10)
        latest = reader.view.subscribe(None, 10, overflow="drop_oldest")
        for i in range(1000):
            b.publish(fastopslog.OpsLogEntry(status=200, account_id=i))
        wait_for(lambda: reader.stats().delivered == 1000, "every entry")
    assert len(slow) == 10 and slow.dropped == 990
    assert [item.origin_seq for item in slow.drain()] == list(range(1, 11))
    assert [item.origin_seq for item in latest.drain()] == list(range(991, 1001))
    assert reader.view.stats().dropped == 2 * 990


def test_reader_restart_resumes_by_stream_id(server: RedisServer) -> None:
    b = fastopslog.OpsLogBroadcaster()
    with Forwarder(b, server.url, host="h", interval=0.01) as fwd:
        with StreamReader(server.url) as first:
            for i in range(500):
                b.publish(fastopslog.OpsLogEntry(status=200, account_id=i))
            wait_for(lambda: first.stats().delivered == 500, "the first entries")
            last_event_id = first.view.snapshot()[249].seq  # the dashboard saw 250
        for i in range(500, 800):
            b.publish(fastopslog.OpsLogEntry(status=200, account_id=i))
        wait_for(lambda: fwd.stats().sent == 800, "the forwarder")
    with StreamReader(server.url) as second:
        resumed = second.view.subscribe(None, 4096, since_seq=last_event_id)
        assert not resumed.history_gap
        assert [item.origin_seq for item in resumed.drain()] == list(range(251, 801))
    # A reader that keeps less than the dashboard missed: a history gap.
    with StreamReader(server.url, history_cap=100) as short:
        assert short.view.subscribe(None, 4096, since_seq=last_event_id).history_gap
        assert not short.view.subscribe(None, 4096, since_seq=short.view.last_seq).history_gap


def test_resume_older_than_the_trimmed_stream_is_a_history_gap(server: RedisServer) -> None:
    b = fastopslog.OpsLogBroadcaster()
    client = server.client()
    with Forwarder(b, server.url, host="h", batch_max=10, interval=0.01) as fwd:
        b.publish(fastopslog.OpsLogEntry(status=200))
        wait_for(lambda: fwd.stats().sent == 1, "the first entry")
        gone = first_seq(*parse_stream_id(client.xrange("fastopslog")[0][0]))
        for _ in range(3000):
            b.publish(fastopslog.OpsLogEntry(status=200))
        wait_for(lambda: fwd.stats().sent == 3001, "the rest")
    client.xtrim("fastopslog", maxlen=20, approximate=False)
    client.close()
    with StreamReader(server.url) as reader:
        assert reader.view.subscribe(None, 4096, since_seq=gone).history_gap
        assert len(reader.view.snapshot()) == 200


def test_socket_timeout_outlasts_the_block(server: RedisServer) -> None:
    """A block longer than redis-py's default 5 s socket timeout works: an
    entry published during a 6 s block arrives, with no outage."""
    b = fastopslog.OpsLogBroadcaster()
    with StreamReader(server.url, block=6.0) as reader, Forwarder(b, server.url, host="h"):
        time.sleep(5.5)
        b.publish(fastopslog.OpsLogEntry(status=200))
        wait_for(lambda: reader.stats().delivered == 1, "the entry")
        assert reader.stats().outages == 0


def test_bad_urls_and_passwords_fail_at_start_up(tmp_path: Path) -> None:
    with RedisServer(password="right-password") as srv:
        wrong = srv.url.replace("right-password", "wrong-password")
        with pytest.raises(RedisSetupError, match="refused the credentials"):
            connect(wrong, socket_timeout=1)
        with pytest.raises(RedisSetupError, match="refused the credentials"):
            Forwarder(fastopslog.OpsLogBroadcaster(), wrong).start()
        with pytest.raises(RedisSetupError, match="refused the credentials"):
            StreamReader(wrong).start()
        connect(srv.url, socket_timeout=1).close()
        proc = subprocess.run(
            [sys.executable, "-m", "fastopslog", "serve", "--redis", wrong, "--port", "0"],
            capture_output=True, text=True, timeout=HANG, check=False,
        )  # fmt: skip
        assert proc.returncode == 2 and "refused the credentials" in proc.stderr
        assert "wrong-password" not in proc.stderr  # never echoed
    for url, reason in [
        ("http://127.0.0.1:6379", "not a Redis URL"),
        ("127.0.0.1:6379", "not a Redis URL"),
        ("redis://127.0.0.1:notaport", "bad Redis URL"),
        ("redis://127.0.0.1:6379/?socket_timeout=abc", "bad Redis URL"),
        (f"unix://{tmp_path}/none.sock", "cannot reach Redis"),
    ]:
        with pytest.raises(RedisSetupError, match=reason):
            connect(url, socket_timeout=1)


LOCK_HOLDER = r"""
import sys, time
from fastopslog.redis import HostLock
lock = HostLock(sys.argv[1], sys.argv[2])
print(lock.try_acquire(), flush=True)
time.sleep(60)
"""


def test_one_forwarder_per_host_by_lock(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, "gateway-log", str(tmp_path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "True\n"
        lock = HostLock("gateway-log", str(tmp_path))
        assert lock.path == str(tmp_path / "gateway-log.forwarder.lock")
        assert not lock.try_acquire()
        other = HostLock("other-log", str(tmp_path))
        assert other.try_acquire()  # another name, another election
        other.release()
    finally:
        holder.kill()  # dies holding it: the kernel releases the lock
        holder.communicate(timeout=HANG)
    assert lock.try_acquire() and lock.held
    lock.release()
    with pytest.raises(ValueError, match="file name"):
        HostLock("../x", str(tmp_path))


def test_elected_forwarder_runs_in_one_worker_and_hands_over(
    server: RedisServer, tmp_path: Path
) -> None:
    """Two workers of one host (two broadcasters standing in for one
    shared log): one forwards; when it stops, the other takes over."""
    logs = [fastopslog.OpsLogBroadcaster(), fastopslog.OpsLogBroadcaster()]
    workers = [
        ElectedForwarder(log, server.url, "gateway-log", lock_dir=str(tmp_path), retry=0.05,
                         host=f"worker-{n}", interval=0.01).start()
        for n, log in enumerate(logs)
    ]  # fmt: skip
    try:
        wait_for(lambda: any(w.elected.is_set() for w in workers), "an election")
        time.sleep(0.3)  # several retries of the loser
        assert [w.elected.is_set() for w in workers].count(True) == 1
        winner = next(n for n, w in enumerate(workers) if w.elected.is_set())
        loser = 1 - winner
        with StreamReader(server.url) as reader:
            for log in logs:
                log.publish(fastopslog.OpsLogEntry(status=200))
            wait_for(lambda: reader.stats().delivered == 1, "the winner's entry")
            workers[winner].close()
            wait_for(workers[loser].elected.is_set, "the hand-over")
            logs[loser].publish(fastopslog.OpsLogEntry(status=201))
            wait_for(lambda: reader.stats().delivered == 2, "the new forwarder's entry")
            hosts = [item.host for item in reader.view.snapshot()]
        assert hosts == [f"worker-{winner}", f"worker-{loser}"]
    finally:
        for worker in workers:
            worker.close()


def test_an_incarnation_outliving_the_forwarder_counts_the_hand_over_gap(server: RedisServer) -> None:
    """A shared log's seqs go on when its forwarder moves: with the log's
    own incarnation the reader sees one origin, and the entries published
    while nobody forwarded are counted lost."""
    log = fastopslog.OpsLogBroadcaster()
    with StreamReader(server.url) as reader:
        for _ in range(2):
            with Forwarder(log, server.url, host="h", incarnation="1.gateway-log", interval=0.01):
                log.publish(fastopslog.OpsLogEntry(status=200))
                wait_for(lambda: reader.stats().delivered in (1, 2), "an entry")
            log.publish(fastopslog.OpsLogEntry(status=299))  # nobody forwards this one
        wait_for(lambda: reader.stats().delivered == 2, "both forwarded entries")
        assert reader.stats().lost == 1 and reader.stats().origins == 1
    with pytest.raises(ValueError, match="incarnation"):
        Forwarder(log, server.url, incarnation="gateway-log")


def start_serve(url: str, *options: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastopslog", "serve", "--redis", url, "--port", "0",
         "--token", "t0ken", "--duration", "60", *options],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, line.split("live page ")[1].split("/#token")[0]


def stop_serve(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.communicate(timeout=HANG)


def test_serve_streams_every_host_and_resumes_with_last_event_id(server: RedisServer) -> None:
    b = fastopslog.OpsLogBroadcaster()
    with Forwarder(b, server.url, host="h1", interval=0.01) as fwd:
        for i in range(50):
            b.publish(fastopslog.OpsLogEntry(status=200 + i))
        wait_for(lambda: fwd.stats().sent == 50, "the forwarder")
    client = server.client()
    seqs = [
        (first_seq(*parse_stream_id(raw_id)) or 0) + index
        for raw_id, fields in client.xrange("fastopslog")
        for index in range(fields[b"e"].count(b"\n") + 1)
    ]
    client.close()
    headers = {"Authorization": "Bearer t0ken"}
    proc, base = start_serve(server.url)
    try:
        recent = httpx.get(f"{base}/recent?limit=50", headers=headers, timeout=HANG)
        assert [e["status"] for e in recent.json()] == list(range(200, 250))
        assert {e["host"] for e in recent.json()} == {"h1"}
        assert int(recent.headers["X-Opslog-Last-Seq"]) == seqs[-1]
        # /stats carries the reader's counts: delivered (published) and lost.
        stats = httpx.get(f"{base}/stats", headers=headers, timeout=HANG).json()
        assert stats == {"published": 50, "dropped": 0, "subscribers": 0, "upstream_lost": 0}
        # A dashboard that saw the 40th entry resumes with the next ten,
        # their event ids the stream ids.
        events = sse_events(f"{base}/stream", {**headers, "Last-Event-ID": str(seqs[39])}, 11)
        assert events[0][0] == "ready"
        assert [int(event_id) for _, event_id, _ in events[1:]] == seqs[40:]
        assert [json.loads(data)["origin_seq"] for _, _, data in events[1:]] == list(range(41, 51))
    finally:
        stop_serve(proc)
    # A reader restarted with less history than the dashboard missed says so.
    proc, base = start_serve(server.url, "--history", "20")
    try:
        events = sse_events(f"{base}/stream", {**headers, "Last-Event-ID": str(seqs[9])}, 2)
        assert events[1][0] == "lost" and json.loads(events[1][2])["reason"] == "history"
    finally:
        stop_serve(proc)


def sse_events(url: str, headers: dict[str, str], count: int) -> list[tuple[str, str, str]]:
    """The first ``count`` events (name, id, data) of an SSE stream."""
    events: list[tuple[str, str, str]] = []
    name, event_id, data = "message", "", ""
    with httpx.stream("GET", url, headers=headers, timeout=HANG) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line == "" and data:
                events.append((name, event_id, data))
                name, event_id, data = "message", "", ""
                if len(events) == count:
                    break
    return events


def test_close_sends_what_was_published_before_it_and_is_idempotent(server: RedisServer) -> None:
    b = fastopslog.OpsLogBroadcaster()
    # A long interval: only close() can make the thread send these.
    fwd = Forwarder(b, server.url, host="h", interval=10).start()
    for i in range(500):
        b.publish(fastopslog.OpsLogEntry(status=200, account_id=i))
    fwd.close()
    assert fwd.stats() == ForwarderStats(sent=500, dropped=0, lost=0, outages=0)
    assert fwd._thread is not None and not fwd._thread.is_alive()
    fwd.close()  # again: nothing to do, no error
    b.publish(fastopslog.OpsLogEntry(status=200))  # after close: not its business
    assert fwd.stats().sent == 500
    with connect(server.url, socket_timeout=1) as client:
        assert client.xlen(DEFAULT_STREAM) == 1  # one XADD of 500 lines


def test_close_before_start_is_harmless(server: RedisServer) -> None:
    fwd = Forwarder(fastopslog.OpsLogBroadcaster(), server.url, host="h")
    fwd.close()
    assert fwd.stats() == ForwarderStats(sent=0, dropped=0, lost=0, outages=0)
