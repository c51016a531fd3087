"""Multi-process figures for the shared-memory log (docs/shared.md).

    python benchmarks/shared_log.py [--quick]

Prints, for the compiled core's SharedOpsLogBroadcaster:

1. publish, one process, no readers: ns per call (median of rounds of
   fresh entries), beside the in-process OpsLogBroadcaster's;
2. two processes publishing flat out: aggregate publishes per second,
   against one process alone (the ratio);
3. publish cost with 100 subscriptions reading everything in another
   process, against none (the ratio);
4. publish-to-reader latency in another process: median and p99.

Each figure is one run on whatever else the machine is doing: quote it with
its command (BENCHMARKS.md), never assert it.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
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
        b.close()
    finally:
        unlink_shared(name)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
