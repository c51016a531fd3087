"""The shared-memory log (docs/shared.md): the compiled core's
SharedOpsLogBroadcaster, with real processes (multiprocessing, spawn).

Accounting is exact: a reader's every seq is received, or counted as lost
(lapped), skipped (never committed in time) or dropped (its buffer). Waits
are only against hangs; nothing asserts how long anything took.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import stat
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from fastopslog._shared_common import SHM_PREFIX, unlink_shared

pytestmark = pytest.mark.c_extension

HANG = 60.0
SHM_DIR = "/dev/shm"


def shm_path(name: str) -> str:
    return SHM_DIR + SHM_PREFIX + name


@pytest.fixture
def name() -> Iterator[str]:
    """A fresh log name, removed after the test."""
    n = f"test-{uuid.uuid4().hex[:12]}"
    yield n
    unlink_shared(n)


def ctx() -> Any:
    return multiprocessing.get_context("spawn")


def drain_until(sub: Any, shared: Any, total: int) -> list[Any]:
    """Read ``sub`` until every seq up to ``total`` is received or counted."""
    got: list[Any] = []
    deadline = time.monotonic() + HANG
    while time.monotonic() < deadline:
        got.extend(sub.drain())
        st = shared.ring_stats()
        if st["next_seq"] > total and not len(sub):
            return got
        time.sleep(0.005)
    raise AssertionError(f"reader hung: {shared.ring_stats()}, got {len(got)}")


# --- one process -------------------------------------------------------------


def test_publish_subscribe_snapshot_stats(c_impl: ModuleType, name: str) -> None:
    with c_impl.SharedOpsLogBroadcaster(name, history_cap=64) as b:
        assert b.created and b.history_cap == 64 and b.record_size == 1024
        e = c_impl.OpsLogEntry(status=200, model="gpt", path="/v1", account_id=3, stream=True)
        b.publish(e)
        assert e.seq == 1 and e.time > 0
        b.publish(e)  # sealed: a copy gets its own seq
        assert b.stats() == (2, 0, 0)
        snap = b.snapshot()
        assert [x.seq for x in snap] == [1, 2]
        assert snap[0] == e and snap[0].to_json() == e.to_json()
        sub = b.subscribe(replay=10)
        assert [x.seq for x in sub.drain()] == [1, 2]
        b.publish(c_impl.OpsLogEntry(status=500, model="claude"))
        got = sub.get(timeout=HANG)
        assert got.seq == 3 and got.model == "claude"
        assert b.stats() == (3, 0, 1)
        flt = c_impl.OpsLogFilter(model="claude")
        assert [x.seq for x in b.snapshot(flt)] == [3]
        assert [x.seq for x in b.snapshot(max_entries=2)] == [2, 3]
        assert [x.seq for x in b.snapshot(c_impl.OpsLogFilter(min_status=200), 1)] == [3]
    assert b.closed
    assert sub.closed and sub.drain() == []
    with pytest.raises(ValueError, match="closed"):
        b.publish(c_impl.OpsLogEntry())
    b.close()  # idempotent


def test_attach_shares_seq_and_history(c_impl: ModuleType, name: str) -> None:
    a = c_impl.SharedOpsLogBroadcaster(name, history_cap=16, record_size=512)
    b = c_impl.SharedOpsLogBroadcaster(name)  # None: takes the log's geometry
    assert not b.created and (b.history_cap, b.record_size) == (16, 512)
    for i in range(5):
        (a if i % 2 else b).publish(c_impl.OpsLogEntry(status=i))
    assert a.stats().published == b.stats().published == 5
    assert [x.status for x in a.snapshot()] == [0, 1, 2, 3, 4]
    sub = b.subscribe(since_seq=3)
    assert [x.seq for x in sub.drain()] == [4, 5] and not sub.history_gap
    a.close()
    b.close()


def test_create_false_only_attaches(c_impl: ModuleType, name: str) -> None:
    with pytest.raises(FileNotFoundError, match="no shared log"):
        c_impl.SharedOpsLogBroadcaster(name, create=False)
    assert not os.path.exists(shm_path(name))
    with pytest.raises(TypeError):
        c_impl.SharedOpsLogBroadcaster(name, create=1)
    with c_impl.SharedOpsLogBroadcaster(name, history_cap=8) as made:
        with c_impl.SharedOpsLogBroadcaster(name, create=False) as attached:
            made.publish(c_impl.OpsLogEntry(status=200))
            assert not attached.created and attached.stats().published == 1


def test_truncation_is_visible_and_utf8_safe(c_impl: ModuleType, name: str) -> None:
    with c_impl.SharedOpsLogBroadcaster(name, history_cap=4, record_size=256) as b:
        room = 256 - 128
        detail = "é" * 200  # 400 bytes
        b.publish(c_impl.OpsLogEntry(path="/p", model="m", error_detail=detail))
        nasty = "\ud800\x00\U0001f642" * 10
        b.publish(c_impl.OpsLogEntry(path=nasty))
        first, second = b.snapshot()
        assert first.path == "/p" and first.model == "m"
        kept = first.error_detail
        assert kept.endswith("…") and detail.startswith(kept[:-1])
        assert len((first.path + first.model + kept).encode()) <= room
        assert len(kept.encode()) >= room - 3 - 3 - 1  # cut at most one character short
        assert second.path == nasty  # lone surrogates survive (surrogatepass)


def test_intact_up_to_the_record(c_impl: ModuleType, name: str) -> None:
    with c_impl.SharedOpsLogBroadcaster(name, history_cap=4, record_size=256) as b:
        text = "x" * (256 - 128 - 2)
        b.publish(c_impl.OpsLogEntry(method="GE", error_detail=text))
        assert b.snapshot()[0].error_detail == text


@pytest.mark.parametrize(
    "bad",
    ["", "a/b", "../x", ".hidden", "-opt", "a" * 101, "sp ace", "nul\x00", "é"],
)
def test_hostile_names_refused(c_impl: ModuleType, bad: str) -> None:
    with pytest.raises(ValueError, match="bad shared log name"):
        c_impl.SharedOpsLogBroadcaster(bad)
    with pytest.raises(ValueError, match="bad shared log name"):
        unlink_shared(bad)


def test_bad_types_and_sizes(c_impl: ModuleType, name: str) -> None:
    with pytest.raises(TypeError):
        c_impl.SharedOpsLogBroadcaster(b"name")
    for kw in ({"history_cap": 0}, {"history_cap": 1 << 25}, {"record_size": 128},
               {"record_size": 1000}, {"record_size": 1 << 17},
               {"history_cap": 1 << 24, "record_size": 1 << 16}):
        with pytest.raises(ValueError):
            c_impl.SharedOpsLogBroadcaster(name, **kw)
    with pytest.raises(TypeError):
        c_impl.SharedOpsLogBroadcaster(name, history_cap=1.5)
    assert not os.path.exists(shm_path(name))  # nothing made
    with c_impl.SharedOpsLogBroadcaster(name, history_cap=8) as b:
        with pytest.raises(TypeError):
            b.publish({"status": 200})
        with pytest.raises(TypeError):
            b.snapshot(filter="x")
        assert b.stats().published == 0


def test_uninitialised_object_refuses_clearly(c_impl: ModuleType) -> None:
    b = c_impl.SharedOpsLogBroadcaster.__new__(c_impl.SharedOpsLogBroadcaster)
    for call in (lambda: b.publish(c_impl.OpsLogEntry()), b.stats, b.snapshot, b.subscribe):
        with pytest.raises(ValueError, match="not open"):
            call()
    b.close()
    assert b.closed


def test_permissions_0600_and_foreign_mode_refused(c_impl: ModuleType, name: str) -> None:
    old = os.umask(0)
    try:
        b = c_impl.SharedOpsLogBroadcaster(name, history_cap=8)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(shm_path(name)).st_mode) == 0o600
    os.chmod(shm_path(name), 0o644)
    with pytest.raises(PermissionError, match="not private"):
        c_impl.SharedOpsLogBroadcaster(name)
    b.close()


def test_geometry_mismatch_refused(c_impl: ModuleType, name: str) -> None:
    with c_impl.SharedOpsLogBroadcaster(name, history_cap=8, record_size=512):
        with pytest.raises(ValueError, match="history_cap=8 record_size=512"):
            c_impl.SharedOpsLogBroadcaster(name, history_cap=16)
        with pytest.raises(ValueError, match="unlink_shared"):
            c_impl.SharedOpsLogBroadcaster(name, record_size=1024)


def test_stale_version_and_foreign_segments_refused(c_impl: ModuleType, name: str) -> None:
    with c_impl.SharedOpsLogBroadcaster(name, history_cap=8):
        pass
    path = shm_path(name)
    with open(path, "r+b") as f:
        f.seek(8)
        f.write(struct.pack("<I", 99))  # the layout version
    with pytest.raises(ValueError, match="layout version 99"):
        c_impl.SharedOpsLogBroadcaster(name)
    with open(path, "r+b") as f:
        f.write(b"NOTOURS!")
    with pytest.raises(ValueError, match="not a fastopslog log"):
        c_impl.SharedOpsLogBroadcaster(name)
    assert unlink_shared(name) and not unlink_shared(name)
    with c_impl.SharedOpsLogBroadcaster(name) as fresh:
        assert fresh.created and fresh.stats().published == 0


def test_never_initialised_segment_refused(c_impl: ModuleType, name: str) -> None:
    fd = os.open(shm_path(name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    os.ftruncate(fd, 4096)  # a creator that died before writing the header
    os.close(fd)
    with pytest.raises(RuntimeError, match="never initialised"):
        c_impl.SharedOpsLogBroadcaster(name)


def test_pure_implementation_refuses_clearly(name: str) -> None:
    import fastopslog._opslog_py as pure

    with pytest.raises(RuntimeError, match="compiled core"):
        pure.SharedOpsLogBroadcaster(name)
    assert not os.path.exists(shm_path(name))
    assert pure.unlink_shared is unlink_shared


def test_stalled_writer_is_skipped_in_process(c_impl: ModuleType, name: str) -> None:
    with c_impl.SharedOpsLogBroadcaster(name, history_cap=32) as b:
        sub = b.subscribe()
        b.publish(c_impl.OpsLogEntry(status=1))
        # Two dead writers in a row (as from two threads of a killed process).
        b._claim_and_abandon(c_impl.OpsLogEntry(status=2))
        b._claim_and_abandon(c_impl.OpsLogEntry(status=3))
        b.publish(c_impl.OpsLogEntry(status=4))
        got = [sub.get(timeout=HANG), sub.get(timeout=HANG)]
        assert [x.seq for x in got] == [1, 4]
        assert b.ring_stats()["skipped"] == 2
        # The skip emptied this process's history: a resume from 1 is a gap.
        late = b.subscribe(since_seq=1)
        assert late.history_gap and [x.seq for x in late.drain()] == [4]
        assert not b.subscribe(since_seq=3).history_gap


def test_ring_stats_never_run_ahead_of_delivery(c_impl: ModuleType, name: str) -> None:
    """Every seq ring_stats() says the pump went past is, at that moment,
    in a subscription's buffer or counted lost or skipped: a reader may stop
    once ``next_seq`` passes the last seq and its buffer is empty. The pump
    copies records without the GIL, while this thread reads the stats; its
    position must not show before what it copied is delivered."""
    total = 50_000
    with c_impl.SharedOpsLogBroadcaster(name, history_cap=1 << 16, record_size=256) as b:
        sub = b.subscribe(buf_size=1 << 17)

        def publish() -> None:
            for i in range(total):
                b.publish(c_impl.OpsLogEntry(status=200, user_id=i))

        writer = threading.Thread(target=publish)
        writer.start()
        received, looks, ahead = 0, 0, []
        deadline = time.monotonic() + HANG
        while time.monotonic() < deadline:
            st = b.ring_stats()
            received += len(sub.drain())
            looks += 1
            went_past = st["next_seq"] - 1
            if received + st["lost"] + st["skipped"] < went_past:
                ahead.append((went_past, received, st["lost"], st["skipped"]))
            if went_past == total:
                break
        writer.join()
        assert went_past == total, f"the pump did not finish: {st}"
        assert ahead == [], f"{len(ahead)} of {looks} looks ran ahead, first {ahead[:3]}"
        assert received == total and sub.dropped == 0


def test_snapshot_without_the_gil_lets_others_run(c_impl: ModuleType, name: str) -> None:
    with c_impl.SharedOpsLogBroadcaster(name, history_cap=20_000, record_size=256) as b:
        for i in range(20_000):
            b.publish(c_impl.OpsLogEntry(status=200 + i % 3, model=("a", "b")[i % 2]))
        ticks = 0
        stop = threading.Event()

        def tick() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1

        t = threading.Thread(target=tick)
        t.start()
        try:
            snaps = [b.snapshot(c_impl.OpsLogFilter(model="zzz")) for _ in range(5)]
        finally:
            stop.set()
            t.join()
        assert snaps == [[]] * 5
        assert len(b.snapshot(c_impl.OpsLogFilter(model="b", min_status=202))) == 3333


# --- processes ---------------------------------------------------------------


def _writer(name: str, index: int, count: int, start: Any) -> None:
    import fastopslog._opslog_c as c

    b = c.SharedOpsLogBroadcaster(name)
    start.wait()
    for i in range(count):
        b.publish(c.OpsLogEntry(status=200, account_id=index + 1, user_id=i))
    b.close()


def _reader(name: str, total: int, ready: Any, out: Any) -> None:
    import fastopslog._opslog_c as c

    b = c.SharedOpsLogBroadcaster(name)
    sub = b.subscribe(buf_size=1 << 20)
    ready.set()
    got = drain_until(sub, b, total)
    seqs = [e.seq for e in got]
    per_writer: dict[int, list[int]] = {}
    for e in got:
        per_writer.setdefault(e.account_id, []).append(e.user_id)
    st = b.ring_stats()
    out.put((seqs, per_writer, st["lost"], st["skipped"], sub.dropped, b.stats().published))
    b.close()


@pytest.mark.parametrize(("writers", "readers", "cap"), [(3, 2, 1 << 16), (2, 2, 64)])
def test_writers_by_readers_exact_accounting(
    c_impl: ModuleType, name: str, writers: int, readers: int, cap: int
) -> None:
    """cap 1 << 16 holds everything: every seq arrives. cap 64 wraps the
    ring hundreds of times: each seq arrives or is counted lost/skipped."""
    per = 5000
    total = writers * per
    c_impl.SharedOpsLogBroadcaster(name, history_cap=cap, record_size=256).close()
    mp = ctx()
    start, out = mp.Event(), mp.Queue()
    readies = [mp.Event() for _ in range(readers)]
    rs = [mp.Process(target=_reader, args=(name, total, r, out)) for r in readies]
    ws = [mp.Process(target=_writer, args=(name, i, per, start)) for i in range(writers)]
    for p in rs + ws:
        p.start()
    for r in readies:
        assert r.wait(HANG)
    start.set()
    results = [out.get(timeout=HANG * 2) for _ in rs]
    for p in rs + ws:
        p.join(HANG)
        assert p.exitcode == 0
    for seqs, per_writer, lost, skipped, dropped, published in results:
        assert published == total
        assert seqs == sorted(set(seqs)), "strictly increasing seq"
        assert all(1 <= s <= total for s in seqs)
        assert dropped == 0
        assert len(seqs) + lost + skipped == total
        for users in per_writer.values():
            assert users == sorted(users), "one writer's entries keep their order"
        if cap >= total:
            assert lost == skipped == 0 and seqs == list(range(1, total + 1))
            assert sorted(per_writer) == list(range(1, writers + 1))
            assert all(users == list(range(per)) for users in per_writer.values())
        else:
            # The ring wrapped over a hundred times while read; whatever the
            # reader lost to it is in the sum above.
            assert total > 100 * cap and seqs[-1] > 100 * cap


def _stall_then_wait(name: str, claimed: Any) -> None:
    import fastopslog._opslog_c as c

    b = c.SharedOpsLogBroadcaster(name)
    b.publish(c.OpsLogEntry(status=1))
    claimed.put(b._claim_and_abandon(c.OpsLogEntry(status=2)))
    time.sleep(HANG)  # killed here, mid-record


def test_kill_9_mid_record(c_impl: ModuleType, name: str) -> None:
    b = c_impl.SharedOpsLogBroadcaster(name, history_cap=128)
    sub = b.subscribe()
    mp = ctx()
    claimed = mp.Queue()
    p = mp.Process(target=_stall_then_wait, args=(name, claimed))
    p.start()
    seq = claimed.get(timeout=HANG)
    assert seq == 2
    os.kill(p.pid, signal.SIGKILL)
    p.join(HANG)
    assert p.exitcode == -signal.SIGKILL
    # Other writers go on, and readers go past the dead writer's record.
    for i in range(10):
        b.publish(c_impl.OpsLogEntry(status=100 + i))
    got = [sub.get(timeout=HANG).seq for _ in range(11)]
    assert got == [1, *range(3, 13)]
    assert b.ring_stats()["skipped"] == 1
    assert b.stats().published == 12
    assert [e.seq for e in b.snapshot()] == [1, *range(3, 13)]
    b.close()


def _race_open(name: str, start: Any, out: Any) -> None:
    import fastopslog._opslog_c as c

    start.wait()
    b = c.SharedOpsLogBroadcaster(name, history_cap=256, record_size=512)
    b.publish(c.OpsLogEntry(status=200))
    out.put(b.created)
    b.close()


def test_create_attach_race(c_impl: ModuleType, name: str) -> None:
    n = 8
    mp = ctx()
    start, out = mp.Event(), mp.Queue()
    ps = [mp.Process(target=_race_open, args=(name, start, out)) for _ in range(n)]
    for p in ps:
        p.start()
    time.sleep(0.5)  # lets them all reach the start line; the outcome does not depend on it
    start.set()
    created = [out.get(timeout=HANG) for _ in ps]
    for p in ps:
        p.join(HANG)
        assert p.exitcode == 0
    assert created.count(True) == 1
    with c_impl.SharedOpsLogBroadcaster(name) as b:
        assert b.stats().published == n
        assert [e.seq for e in b.snapshot()] == list(range(1, n + 1))


FORK_SCRIPT = r"""
import os, sys, time, warnings
warnings.filterwarnings("ignore", category=DeprecationWarning)
import fastopslog._opslog_c as c

name = sys.argv[1]
b = c.SharedOpsLogBroadcaster(name, history_cap=1024)   # made before fork, as with --preload
sub = b.subscribe()                                     # the pump runs in the parent
idle = c.SharedOpsLogBroadcaster(name)                  # never read in the parent: no pump
b.publish(c.OpsLogEntry(status=1))
assert sub.get(timeout=30).seq == 1
kids = []
for k in range(3):
    pid = os.fork()
    if pid == 0:
        try:
            # The child's pump is restarted: its inherited subscription reads on.
            b.publish(c.OpsLogEntry(status=100 + k))
            seen = set()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not any(e.status == 100 + k for e in seen):
                seen.update(sub.drain())
                time.sleep(0.01)
            assert any(e.status == 100 + k for e in seen), "child's subscription got nothing"
            late = b.subscribe(replay=1000)
            assert 1 in [e.seq for e in late.drain()]
            first = idle.subscribe(replay=1000)                 # its pump starts in the child
            assert 1 in [e.seq for e in first.drain()]
            idle.close()
            b.close()
            os._exit(0)
        except BaseException as exc:
            print("child", k, repr(exc), flush=True)
            os._exit(1)
    kids.append(pid)
for pid in kids:
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
deadline = time.monotonic() + 30
statuses = set()
while time.monotonic() < deadline and not {100, 101, 102} <= statuses:
    statuses.update(e.status for e in sub.drain())
    time.sleep(0.01)
assert {100, 101, 102} <= statuses, statuses
assert b.stats().published == idle.stats().published == 4
b.close()
idle.close()
print("ok")
"""


def test_fork_keeps_the_mapping_and_restarts_the_pump(c_impl: ModuleType, name: str) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT, name], capture_output=True, text=True, timeout=HANG * 2
    )
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stdout + proc.stderr


# --- the multi-process soak ----------------------------------------------------


def test_multi_process_soak_passes() -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "fastopslog", "soak", "--processes", "2", "--seconds", "3"],
        capture_output=True, text=True, timeout=HANG * 3,
    )
    assert proc.returncode == 0 and proc.stdout.rstrip().endswith("PASS"), proc.stdout + proc.stderr


def test_soak_entry_check_catches_a_wrong_cut(c_impl: ModuleType) -> None:
    from fastopslog._soak_shared import check_entry, detail

    def entry(text: str) -> Any:
        e = c_impl.OpsLogEntry(user_id=499, path="/v1/x", model="model-0", error_detail=text)
        return e

    full = detail(499)
    assert check_entry(entry(full)) is None
    assert check_entry(entry(full[:100] + "\u2026")) is None
    assert check_entry(entry(full[:100])) is not None  # cut without the mark
    assert check_entry(entry("x" + full[:100] + "\u2026")) is not None  # not a prefix
