"""Where giving up the GIL pays: the measurements behind the compiled core's
``NOGIL_MIN_HISTORY``.

For snapshot scans of several sizes it measures, with the GIL kept and with
it given up for the scan:

- the cost of one operation, alone;
- the same while another thread runs Python code (a gateway's other
  request threads), with how much that thread got done meanwhile.

Run: ``python benchmarks/gil_release.py`` (about a minute).
"""

from __future__ import annotations

import threading
import time

import fastopslog._opslog_c as core

NEVER = 1 << 30
SECONDS = 0.6  # per measurement


def _entries(n: int, models: int = 10) -> list[core.OpsLogEntry]:
    return [
        core.OpsLogEntry(time=1.0, status=200, latency_ms=i % 977, model=f"m{i % models}")
        for i in range(n)
    ]


def _measure(op, prepare, busy: bool) -> tuple[float, float, float]:
    """(median and 99th percentile ns per op, Python loop iterations per
    second in the other thread, or 0 when there is none)."""
    stop = threading.Event()
    spins = [0]

    def spin() -> None:
        n = 0
        while not stop.is_set():
            n += 1
        spins[0] = n

    other = threading.Thread(target=spin) if busy else None
    samples: list[float] = []
    if other:
        other.start()
    started = time.perf_counter()
    deadline = started + SECONDS
    while time.perf_counter() < deadline:
        prepare()
        t0 = time.perf_counter_ns()
        op()
        samples.append(time.perf_counter_ns() - t0)
    elapsed = time.perf_counter() - started
    stop.set()
    if other:
        other.join()
    samples.sort()
    return samples[len(samples) // 2], samples[len(samples) * 99 // 100], spins[0] / elapsed


def snapshot(size: int, busy: bool, gil_free: bool) -> tuple[float, float, float]:
    core._set_nogil_min_history(0 if gil_free else NEVER)
    b = core.OpsLogBroadcaster(size)
    for entry in _entries(size):
        b.publish(entry)
    flt = core.OpsLogFilter(model="m3")
    return _measure(lambda: b.snapshot(flt), lambda: None, busy)


def main() -> None:
    previous = core._set_nogil_min_history(NEVER)
    print(
        "| operation | other thread | GIL kept: median / p99 ns, other's loops/s"
        " | GIL given up: median / p99 ns, other's loops/s |"
    )
    print("| --- | --- | ---: | ---: |")
    try:
        for label, fn, sizes in (
            ("snapshot of {}, model filter", snapshot, (1_000, 10_000, 50_000, 100_000)),
        ):
            for size in sizes:
                for busy in (False, True):
                    kept = fn(size, busy, gil_free=False)
                    free = fn(size, busy, gil_free=True)
                    print(
                        f"| {label.format(size)} | {'busy' if busy else 'none'} | "
                        f"{kept[0]:,.0f} / {kept[1]:,.0f}, {kept[2]:,.0f}/s | "
                        f"{free[0]:,.0f} / {free[1]:,.0f}, {free[2]:,.0f}/s |",
                        flush=True,
                    )
    finally:
        core._set_nogil_min_history(previous)


if __name__ == "__main__":
    main()
