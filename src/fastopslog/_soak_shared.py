"""``python -m fastopslog soak --processes N``: the shared-memory log under
load from several processes, with every count checked.

N writer processes publish flat out into one small log (so it wraps many
times), with entries whose ``error_detail`` is sometimes longer than a
record; every two seconds a victim process claims a record and is killed
with SIGKILL before committing it. Two reader processes each hold three
subscriptions (everything, one writer's account, one model) and check, for
every entry: seq strictly increasing, the filter matched, each writer's
entries in that writer's order, and the text intact or cut by the
documented rule. Their snapshots are checked the same way. At the end the
everything-subscription's accounting must be exact: every seq published
after it subscribed was received, or counted as dropped, lost or skipped.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import sys
import time
from typing import Any

CAP = 4096
RECORD_SIZE = 512
CUT = "\u2026"
READERS = 2
KILL_EVERY = 2.0


def detail(user: int) -> str:
    """The error_detail a writer sends with ``user``: 0 to 1,000 bytes,
    sometimes non-ASCII, so some are cut."""
    n = user % 500
    return ("é" if user % 3 == 0 else "d") * n


def check_entry(e: Any) -> str | None:
    """What is wrong with ``e`` as a writer sent it, or None."""
    want = detail(e.user_id)
    got = e.error_detail
    if got == want:
        return None
    if got.endswith(CUT) and want.startswith(got[:-1]):
        return None
    if got == "" and len(want.encode()) > RECORD_SIZE - 128 - len(e.path) - len(e.model):
        return None
    return f"seq {e.seq}: error_detail {got[:20]!r}... is neither intact nor cut by the rule"


def _writer(name: str, index: int, seconds: float, out: Any) -> None:
    import fastopslog._opslog_c as c

    b = c.SharedOpsLogBroadcaster(name)
    model = f"model-{index % 2}"
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        for _ in range(100):
            b.publish(c.OpsLogEntry(
                status=200 + n % 4, path="/v1/x", model=model, account_id=index + 1,
                user_id=n, error_detail=detail(n),
            ))
            n += 1
    out.put(("writer", index, n))
    b.close()


def _victim(name: str, claimed: Any) -> None:
    import fastopslog._opslog_c as c

    b = c.SharedOpsLogBroadcaster(name)
    # A pipe of its own, written synchronously: a queue's feeder thread
    # killed holding the queue's lock would stop the next victim's put.
    claimed.send(b._claim_and_abandon(c.OpsLogEntry()))
    time.sleep(3600)


def _reader(name: str, index: int, writers: int, stop: Any, ready: Any, out: Any) -> None:
    import fastopslog._opslog_c as c

    b = c.SharedOpsLogBroadcaster(name)
    flts = [None, c.OpsLogFilter(account_id=1), c.OpsLogFilter(model="model-1")]
    subs = [
        b.subscribe(flts[0], buf_size=1 << 16, overflow="drop_oldest"),
        b.subscribe(flts[1], buf_size=256),
        b.subscribe(flts[2], buf_size=4096, overflow="drop_oldest"),
    ]
    first = b.ring_stats()["next_seq"]
    ready.set()
    violations: list[str] = []
    last = [0, 0, 0]
    per_writer: list[dict[int, int]] = [{}, {}, {}]
    received = [0, 0, 0]
    checked = 0
    snapshots = 0

    def take(i: int, entries: list[Any]) -> None:
        nonlocal checked
        for e in entries:
            if e.seq <= last[i]:
                violations.append(f"reader {index} sub {i}: seq {e.seq} after {last[i]}")
            last[i] = e.seq
            flt = flts[i]
            if flt is not None and not flt.matches(e):
                violations.append(f"reader {index} sub {i}: seq {e.seq} does not match")
            prev = per_writer[i].get(e.account_id, -1)
            if e.user_id <= prev and e.account_id:
                violations.append(f"reader {index}: writer {e.account_id} out of order at {e.seq}")
            per_writer[i][e.account_id] = e.user_id
            if e.account_id:
                problem = check_entry(e)
                if problem:
                    violations.append(problem)
            checked += 1
        received[i] += len(entries)

    while not stop.is_set():
        for i, s in enumerate(subs):
            take(i, s.drain())
        snap = b.snapshot(c.OpsLogFilter(min_status=202), max_entries=500)
        seqs = [e.seq for e in snap]
        if seqs != sorted(set(seqs)) or any(e.status < 202 for e in snap) or len(snap) > 500:
            violations.append(f"reader {index}: a bad snapshot")
        snapshots += 1
        time.sleep(0.002)
    # Writers are done: read what is left.
    published = b.stats().published
    deadline = time.monotonic() + 30
    while b.ring_stats()["next_seq"] <= published and time.monotonic() < deadline:
        time.sleep(0.01)
    for i, s in enumerate(subs):
        take(i, s.drain())
    st = b.ring_stats()
    expected = published - first + 1
    counted = received[0] + subs[0].dropped + st["lost"] + st["skipped"]
    if counted != expected:
        violations.append(
            f"reader {index}: received {received[0]} + dropped {subs[0].dropped} + lost"
            f" {st['lost']} + skipped {st['skipped']} = {counted}, not {expected}"
        )
    out.put(("reader", index, {
        "received": received, "dropped": [s.dropped for s in subs], "lost": st["lost"],
        "skipped": st["skipped"], "checked": checked, "snapshots": snapshots,
        "violations": violations,
    }))
    b.close()


def run_shared(args: argparse.Namespace) -> int:
    from . import unlink_shared
    from ._opslog_c import SharedOpsLogBroadcaster

    writers, seconds = args.processes, args.seconds
    name = f"soak-{os.getpid()}"
    mp = multiprocessing.get_context("spawn")
    unlink_shared(name)
    log = SharedOpsLogBroadcaster(name, history_cap=CAP, record_size=RECORD_SIZE)
    out, stop = mp.Queue(), mp.Event()
    violations: list[str] = []
    try:
        readies = [mp.Event() for _ in range(READERS)]
        readers = [
            mp.Process(target=_reader, args=(name, i, writers, stop, readies[i], out))
            for i in range(READERS)
        ]
        for p in readers:
            p.start()
        for r in readies:
            r.wait(60)
        ws = [mp.Process(target=_writer, args=(name, i, seconds, out)) for i in range(writers)]
        start = time.monotonic()
        for p in ws:
            p.start()
        kills = 0
        while any(p.is_alive() for p in ws):
            time.sleep(KILL_EVERY)
            if time.monotonic() - start > seconds:
                break
            receiver, claimed = mp.Pipe(duplex=False)
            victim = mp.Process(target=_victim, args=(name, claimed))
            victim.start()
            if not receiver.poll(60):
                raise RuntimeError("a victim writer did not claim its record")
            receiver.recv()
            os.kill(victim.pid or 0, signal.SIGKILL)
            victim.join()
            kills += 1
            print(f"soak --processes: {time.monotonic() - start:.0f} s,"
                  f" {log.stats().published:,} published, {kills} writers killed mid-record",
                  file=sys.stderr, flush=True)
        for p in ws:
            p.join()
        elapsed = time.monotonic() - start
        stop.set()
        results = [out.get(timeout=120) for _ in range(writers + READERS)]
        for p in readers:
            p.join(60)
        published = log.stats().published
        sent = sum(r[2] for r in results if r[0] == "writer")
        if published != sent + kills:
            violations.append(f"published {published}, but writers sent {sent} and {kills} claimed")
        lines = [
            f"fastopslog soak --processes {writers}: {elapsed:.0f} s, {writers} writers,"
            f" {READERS} readers, ring of {CAP} x {RECORD_SIZE} B",
            f"publishes: {published:,} ({published / elapsed:,.0f}/s), {kills} writers killed"
            " mid-record",
        ]
        for r in results:
            if r[0] == "reader":
                f = r[2]
                violations.extend(f["violations"])
                lines.append(
                    f"reader {r[1]}: received {f['received']}, dropped {f['dropped']},"
                    f" lost {f['lost']:,}, skipped {f['skipped']}, {f['checked']:,} entries"
                    f" and {f['snapshots']:,} snapshots checked"
                )
        for v in violations[:20]:
            lines.append(f"VIOLATION: {v}")
        lines.append("PASS" if not violations else f"FAIL: {len(violations)} violation(s)")
        print("\n".join(lines))
    finally:
        stop.set()
        log.close()
        unlink_shared(name)
    return 1 if violations else 0
