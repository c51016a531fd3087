"""Multi-process figures for the shared-memory log (docs/shared.md).

    python benchmarks/shared_log.py [--quick]

Prints, for the compiled core's SharedOpsLogBroadcaster:

1. publish, one process, no readers: ns per call (median of rounds of
   fresh entries), beside the in-process OpsLogBroadcaster's;
2. two processes publishing flat out: aggregate publishes per second,
   against one process alone (the ratio);
3. publish cost with 100 subscriptions reading everything in another
   process, against none (the ratio);
4. publish-to-reader latency in another process: median and p99;
5. a filtered snapshot of a full ring with and without giving up the GIL,
   and what another thread of the process gets done meanwhile.

Each figure is one run on whatever else the machine is doing: quote it with
its command (BENCHMARKS.md), never assert it.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import threading
import time
import uuid
from typing import Any

import fastopslog._opslog_c as core

from fastopslog import unlink_shared
from fastopslog._workload import request_fields

BATCH = 1000
CAP = 65536


def _fresh(n: int = BATCH) -> list[Any]:
    return [core.OpsLogEntry(**f) for f in request_fields(n)]


def publish_ns(publish: Any, rounds: int) -> float:
    """Median ns per publish over ``rounds`` batches of fresh entries."""
    times = []
    for _ in range(rounds):
        entries = _fresh()
        start = time.perf_counter_ns()
        for e in entries:
            publish(e)
        times.append((time.perf_counter_ns() - start) / BATCH)
    return statistics.median(times)


def _flat_out(name: str, batches: int, go: Any, out: Any) -> None:
    b = core.SharedOpsLogBroadcaster(name)
    work = [_fresh() for _ in range(batches)]
    go.wait()
    start = time.perf_counter()
    for entries in work:
        for e in entries:
            b.publish(e)
    out.put((start, time.perf_counter()))
    b.close()


def aggregate_rate(name: str, processes: int, batches: int) -> float:
    """Publishes per second of ``processes`` publishing at once."""
    mp = multiprocessing.get_context("spawn")
    go, out = mp.Event(), mp.Queue()
    ps = [mp.Process(target=_flat_out, args=(name, batches, go, out)) for _ in range(processes)]
    for p in ps:
        p.start()
    time.sleep(1.0)  # every process has built its entries
    go.set()
    spans = [out.get(timeout=300) for _ in ps]
    for p in ps:
        p.join()
    wall = max(e for _, e in spans) - min(s for s, _ in spans)
    return float(processes * batches * BATCH / wall)


def _readers(name: str, count: int, ready: Any, stop: Any, out: Any) -> None:
    b = core.SharedOpsLogBroadcaster(name)
    subs = [b.subscribe(buf_size=4096) for _ in range(count)]
    ready.set()
    got = 0
    while not stop.is_set():
        for s in subs:
            got += len(s.drain())
        time.sleep(0.001)
    for s in subs:
        got += len(s.drain())
    out.put((got, sum(s.dropped for s in subs), b.ring_stats()["lost"]))
    b.close()


def _latency_reader(name: str, ready: Any, n: int, out: Any) -> None:
    b = core.SharedOpsLogBroadcaster(name)
    sub = b.subscribe(buf_size=1 << 16)
    ready.set()
    lat: list[float] = []
    while len(lat) < n:
        e = sub.get(timeout=60)
        lat.append(time.time() - e.time)
    out.put(lat)
    b.close()


def gil_release(name: str, rounds: int) -> list[tuple[str, float, float]]:
    """A filtered snapshot of a full ring (matching nothing) while another
    thread spins: ms per snapshot and the other thread's progress (M
    loop turns/s), with the scan giving up the GIL and keeping it."""
    b = core.SharedOpsLogBroadcaster(name)
    flt = core.OpsLogFilter(model="no-such-model")
    rows = []
    for label, threshold in (("without the GIL", 1), ("with the GIL", 1 << 62)):
        previous = core._set_shared_nogil_min(threshold)
        ticks = [0]
        stop = threading.Event()

        def spin(ticks: list[int] = ticks, stop: threading.Event = stop) -> None:
            while not stop.is_set():
                ticks[0] += 1

        t = threading.Thread(target=spin)
        t.start()
        time.sleep(0.05)
        start, ticks0 = time.perf_counter(), ticks[0]
        for _ in range(rounds):
            b.snapshot(flt)
        elapsed = time.perf_counter() - start
        done = ticks[0] - ticks0
        stop.set()
        t.join()
        core._set_shared_nogil_min(previous)
        rows.append((label, elapsed / rounds * 1e3, done / elapsed / 1e6))
    b.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (CI smoke)")
    args = parser.parse_args()
    rounds = 20 if args.quick else 300
    batches = 20 if args.quick else 200
    name = f"bench-{uuid.uuid4().hex[:8]}"
    mp = multiprocessing.get_context("spawn")
    try:
        b = core.SharedOpsLogBroadcaster(name, history_cap=CAP)
        publish_ns(b.publish, CAP // BATCH + 1)  # every page of the ring touched once
        alone = publish_ns(b.publish, rounds)
        local = publish_ns(core.OpsLogBroadcaster(1000).publish, rounds)
        print(f"1. publish, no readers, one process: {alone:.0f} ns"
              f" (in-process OpsLogBroadcaster: {local:.0f} ns)")

        one = aggregate_rate(name, 1, batches)
        two = aggregate_rate(name, 2, batches)
        print(f"2. flat out: one process {one / 1e6:.2f} M/s, two {two / 1e6:.2f} M/s:"
              f" {two / one:.2f}x")

        ready, stop, out = mp.Event(), mp.Event(), mp.Queue()
        p = mp.Process(target=_readers, args=(name, 100, ready, stop, out))
        p.start()
        ready.wait(60)
        time.sleep(0.5)
        with_readers = publish_ns(b.publish, rounds)
        stop.set()
        got, dropped, lost = out.get(timeout=120)
        p.join()
        none = publish_ns(b.publish, rounds)
        print(f"3. publish with 100 readers in another process: {with_readers:.0f} ns,"
              f" none: {none:.0f} ns: {with_readers / none:.2f}x"
              f" (readers got {got}, dropped {dropped}, lost {lost})")

        n = 2000 if args.quick else 10_000
        ready, out = mp.Event(), mp.Queue()
        p = mp.Process(target=_latency_reader, args=(name, ready, n, out))
        p.start()
        ready.wait(60)
        time.sleep(0.5)
        for _ in range(n):
            b.publish(core.OpsLogEntry(status=200, time=time.time()))
            time.sleep(0.0002)
        lat = sorted(out.get(timeout=120))
        p.join()
        print(f"4. publish-to-reader latency in another process: median"
              f" {lat[len(lat) // 2] * 1e3:.2f} ms, p99 {lat[int(len(lat) * 0.99)] * 1e3:.2f} ms"
              f" ({n} entries, ~5,000/s)")
        for label, ms, turns in gil_release(name, 5 if args.quick else 30):
            print(f"5. filtered snapshot of {CAP:,} records {label}: {ms:.2f} ms each,"
                  f" another thread meanwhile {turns:.2f} M loop turns/s")
        b.close()
    finally:
        unlink_shared(name)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
