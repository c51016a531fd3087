"""Measure fastopslog.redis against a local Debian redis-server.

    python benchmarks/redis_fanin.py cpu      # forwarder CPU per entry at 10,000 entries/s
    python benchmarks/redis_fanin.py e2e      # two forwarding processes -> one reader
    python benchmarks/redis_fanin.py restart  # a Redis restart under load: the counts add up
    python benchmarks/redis_fanin.py view     # the view's batch publish alone, no Redis

Each run but ``view`` starts its own redis-server on a Unix socket in a temporary
directory (tests/_redis_server.py) and stops it. Figures: BENCHMARKS.md
and RELIABILITY.md. Not a pytest module: it runs processes for seconds.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import fastopslog
from _redis_server import RedisServer
from fastopslog.redis import ClusterView, Forwarder, StreamEntry, StreamReader

# A forwarding host: publishes `count` entries at `rate` per second (in
# bursts every millisecond; 0: as fast as it can), each stamped with its
# publish time in microseconds in `user_id`, then waits until its forwarder
# has accounted for all of them and prints its counts.
HOST = r"""
import json, sys, time
import fastopslog
from fastopslog.redis import Forwarder
url, host, count, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
b = fastopslog.OpsLogBroadcaster()
f = Forwarder(b, url, host=host, timeout=0.5, buf_size=1 << 20, batch_max=2000).start()
print("ready", flush=True)
sys.stdin.readline()
Entry, publish, now = fastopslog.OpsLogEntry, b.publish, time.time_ns
start = time.monotonic()
for i in range(count):
    publish(Entry(status=200, path="/v1/chat/completions", model="gpt-4o", latency_ms=120,
                  account_id=i, user_id=now() // 1000))
    if rate and i % 100 == 99:
        delay = start + (i + 1) / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
took = time.monotonic() - start
while sum(f.stats()[:3]) < count:
    time.sleep(0.01)
s = f.stats()
f.close()
print(json.dumps({"host": host, "published": count, "seconds": took, "sent": s.sent,
                  "dropped": s.dropped, "lost": s.lost, "outages": s.outages}))
"""

_USER_ID = re.compile(r'"user_id":(\d+)')


def _hosts(url: str, names: list[str], count: int, rate: float) -> list[subprocess.Popen[str]]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", HOST, url, name, str(count), str(rate)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    return procs


def _results(procs: list[subprocess.Popen[str]]) -> list[dict[str, float]]:
    out = []
    for proc in procs:
        stdout, _ = proc.communicate(timeout=600)
        out.append(json.loads(stdout.splitlines()[-1]))
    return out


def cpu(seconds: float, rate: int, interval: float) -> None:
    """The forwarder thread's own CPU time (its pthread CPU clock), and the
    whole process's CPU with and without a forwarder, per entry, while the
    main thread publishes at ``rate`` entries/s; the forwarder waits at
    most ``interval`` seconds between sends."""

    def paced(b: fastopslog.OpsLogBroadcaster) -> float:
        count = int(seconds * rate)
        cpu0 = time.process_time()
        start = time.monotonic()
        for i in range(count):
            b.publish(fastopslog.OpsLogEntry(status=200, path="/v1/chat/completions",
                                             model="gpt-4o", latency_ms=120, account_id=i))
            if i % 100 == 99:
                delay = start + (i + 1) / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        return time.process_time() - cpu0

    with RedisServer() as srv:
        count = int(seconds * rate)
        base = paced(fastopslog.OpsLogBroadcaster())
        b = fastopslog.OpsLogBroadcaster()
        fwd = Forwarder(b, srv.url, host="bench", interval=interval).start()
        assert fwd._thread is not None and fwd._thread.ident is not None
        clock = time.pthread_getcpuclockid(fwd._thread.ident)
        thread0 = time.clock_gettime(clock)
        total = paced(b)
        while sum(fwd.stats()[:3]) < count:
            time.sleep(0.01)
        thread = time.clock_gettime(clock) - thread0
        fwd.close()
        print(json.dumps({
            "implementation": "compiled" if fastopslog.USE_EXTENSIONS else "pure",
            "rate": rate, "interval": interval, "entries": count, "stats": fwd.stats()._asdict(),
            "forwarder_thread_us_per_entry": round(thread / count * 1e6, 3),
            "process_cpu_us_per_entry_without": round(base / count * 1e6, 3),
            "process_cpu_us_per_entry_with": round(total / count * 1e6, 3),
            "process_delta_us_per_entry": round((total - base) / count * 1e6, 3),
        }))  # fmt: skip


def _reader_loop(
    reader: StreamReader, expected: int, latencies: list[float], stop: threading.Event
) -> None:
    """Drain the view; one entry in 16 has its publish-to-reader latency taken."""
    sub = reader.view.subscribe(None, 1 << 20)
    got = 0
    while got < expected and not stop.is_set():
        try:
            first = sub.get(timeout=0.5)
        except Exception:
            continue
        batch = [first, *sub.drain()]
        now_us = time.time_ns() // 1000
        for item in batch[::16]:
            match = _USER_ID.search(item.line)
            if match:
                latencies.append((now_us - int(match.group(1))) / 1000)
        got += len(batch)


def e2e(count: int, rate: float) -> None:
    with RedisServer() as srv, StreamReader(srv.url, block=1.0, count=200) as reader:
        latencies: list[float] = []
        stop = threading.Event()
        consumer = threading.Thread(target=_reader_loop, args=(reader, 2 * count, latencies, stop))
        consumer.start()
        procs = _hosts(srv.url, ["host-a", "host-b"], count, rate)
        start = time.monotonic()  # both hosts are publishing now
        results = _results(procs)
        deadline = time.monotonic() + 60
        while reader.stats().delivered + reader.stats().lost < 2 * count and time.monotonic() < deadline:
            time.sleep(0.005)
        elapsed = time.monotonic() - start
        stop.set()
        consumer.join()
        stats = reader.stats()
        latencies.sort()
        print(json.dumps({
            "implementation": "compiled" if fastopslog.USE_EXTENSIONS else "pure",
            "published": 2 * count, "delivered": stats.delivered, "lost": stats.lost,
            "hosts": results,
            "delivered_per_s": round(stats.delivered / elapsed),
            "latency_ms_p50": round(statistics.median(latencies), 2),
            "latency_ms_p99": round(latencies[int(len(latencies) * 0.99)], 2),
            "latency_ms_max": round(latencies[-1], 2),
            "samples": len(latencies),
        }))  # fmt: skip


def restart(count: int, rate: float, down: float) -> None:
    with RedisServer() as srv, StreamReader(srv.url, block=0.5) as reader:
        procs = _hosts(srv.url, ["host-a", "host-b"], count, rate)
        while reader.stats().delivered < count // 4:
            time.sleep(0.01)
        srv.kill()
        killed_at = reader.stats().delivered
        time.sleep(down)
        srv.start()
        results = _results(procs)
        deadline = time.monotonic() + 60
        while reader.stats().delivered + reader.stats().lost < 2 * count and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        stats = reader.stats()
        print(json.dumps({
            "published": 2 * count, "delivered": stats.delivered, "lost": stats.lost,
            "delivered_before_kill": killed_at, "down_s": down,
            "published_equals_delivered_plus_lost": stats.delivered + stats.lost == 2 * count,
            "reader_outages": stats.outages, "hosts": results,
        }))  # fmt: skip


def view(batches: int) -> None:
    """``ClusterView._publish_batch`` per entry, as the reader calls it
    (batches of 1,000 into a history of 10,000), by the subscriptions it
    feeds; read between batches, untimed. Best of 5 rounds."""
    line = fastopslog.OpsLogEntry(status=200, path="/v1/chat/completions", model="gpt-4o",
                                  latency_ms=120, account_id=5).to_json()
    errors = fastopslog.OpsLogFilter(min_status=500)
    cases: dict[str, tuple[int, Any]] = {
        "no subscription": (0, None),
        "1 unfiltered": (1, {}),
        "10 unfiltered": (10, {}),
        "10 unfiltered drop_oldest never read": (10, {"buf_size": 512, "overflow": "drop_oldest"}),
        "2 filtered min_status=500": (2, {"filter": errors}),
    }
    result = {}
    for name, (n, options) in cases.items():
        cluster = ClusterView(10_000)
        subs = [cluster.subscribe(**({"buf_size": 4096} | options)) for _ in range(n)]
        read = subs if "never read" not in name else []
        rounds = batches // 20 if "filtered" in name else batches  # a filter parses each entry
        seq, best = 0, float("inf")
        for _ in range(5):
            took = 0.0
            for _ in range(rounds):
                entries = [StreamEntry(seq + i, "h", seq + i, line) for i in range(1, 1001)]
                seq += 1000
                start = time.perf_counter()
                cluster._publish_batch(entries)
                took += time.perf_counter() - start
                for sub in read:
                    sub.drain()
            best = min(best, took / (rounds * 1000))
        result[name] = round(best * 1e9)
    print(json.dumps({
        "implementation": "compiled" if fastopslog.USE_EXTENSIONS else "pure",
        "ns_per_entry": result,
    }))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=("cpu", "e2e", "restart", "view"))
    parser.add_argument("--seconds", type=float, default=10.0, help="cpu: how long to publish")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="entries/s (cpu: default 10000; e2e, restart: per host, 0 = flat out)")
    parser.add_argument("--count", type=int, default=300_000, help="e2e, restart: entries per host")
    default_interval = inspect.signature(Forwarder).parameters["interval"].default
    parser.add_argument("--interval", type=float, default=default_interval,
                        help="cpu: the forwarder's longest wait between sends (default: its own)")
    parser.add_argument("--down", type=float, default=2.0, help="restart: seconds Redis stays down")
    parser.add_argument("--batches", type=int, default=100, help="view: batches of 1,000 a round")
    args = parser.parse_args()
    if args.mode == "cpu":
        cpu(args.seconds, int(args.rate or 10_000), args.interval)
    elif args.mode == "e2e":
        e2e(args.count, args.rate)
    elif args.mode == "view":
        view(args.batches)
    else:
        restart(args.count, args.rate or 20_000.0, args.down)


if __name__ == "__main__":
    main()
