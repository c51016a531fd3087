"""Do asyncio readers stay live while publisher threads saturate the GIL?

Two threads publish flat out into one broadcaster (fresh entries, no
pause) that has ``--idle`` subscribers which never read. Meanwhile an event loop on the main thread measures:

- release: a reader parked in ``aget()`` on a filter nothing matches is
  released (``SubscriptionClosed``) how long after ``unsubscribe()``;
- start: from ``subscribe()`` to a new reader's first ``aget()`` returning
  an entry (everything matches, and entries arrive without pause).

Each sample is bounded (``--timeout``): one that takes longer counts as the
bound. Run: ``python benchmarks/liveness.py --impl pure|c`` (a few seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import statistics
import threading
import time
from collections.abc import Callable
from types import ModuleType

from fastopslog import SubscriptionClosed

MODULES = {"pure": "fastopslog._opslog_py", "c": "fastopslog._opslog_c"}


class Publishers:
    """``n`` threads publishing into ``broadcaster`` until stopped."""

    def __init__(self, impl: ModuleType, broadcaster: object, n: int) -> None:
        self._stop = threading.Event()
        self.published = 0
        self._threads = [
            threading.Thread(target=self._run, args=(impl, broadcaster, i), daemon=True)
            for i in range(n)
        ]

    def _run(self, impl: ModuleType, broadcaster: object, i: int) -> None:
        publish: Callable[[object], None] = broadcaster.publish  # type: ignore[attr-defined]
        entry = impl.OpsLogEntry
        n = 0
        while not self._stop.is_set():
            publish(entry(status=200, model="m", api_key_id=i + 1, user_id=n))
            n += 1
        self.published += n  # each thread adds once, after stopping

    def __enter__(self) -> Publishers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


async def release_latency(impl: ModuleType, broadcaster: object, timeout: float) -> float:
    sub = broadcaster.subscribe(impl.OpsLogFilter(model="nothing matches"))  # type: ignore[attr-defined]
    reader = asyncio.ensure_future(sub.aget())
    await asyncio.sleep(0.05)  # let it park
    assert not reader.done()
    started = time.perf_counter()
    sub.unsubscribe()
    try:
        await asyncio.wait_for(reader, timeout)
    except SubscriptionClosed:
        return time.perf_counter() - started
    except asyncio.TimeoutError:
        return timeout
    raise AssertionError("a reader on a filter nothing matches got an entry")


async def start_latency(broadcaster: object, timeout: float) -> float:
    started = time.perf_counter()

    async def first_read() -> None:
        with broadcaster.subscribe() as sub:  # type: ignore[attr-defined]
            await sub.aget()

    try:
        await asyncio.wait_for(first_read(), timeout)
    except asyncio.TimeoutError:
        return timeout
    return time.perf_counter() - started


async def measure(
    impl: ModuleType, publishers: int, idle: int, samples: int, timeout: float
) -> dict[str, object]:
    broadcaster = impl.OpsLogBroadcaster(history_cap=1000)
    # Subscribers that never read (full, dropping their oldest): a publish
    # does real work for each, as it does for a gateway's open streams.
    kept = [broadcaster.subscribe(buf_size=100, overflow="drop_oldest") for _ in range(idle)]
    released: list[float] = []
    started: list[float] = []
    began = time.perf_counter()
    with Publishers(impl, broadcaster, publishers) as running:
        await asyncio.sleep(0.2)  # let the publishers reach full speed
        for _ in range(samples):
            released.append(await release_latency(impl, broadcaster, timeout))
            started.append(await start_latency(broadcaster, timeout))
    elapsed = time.perf_counter() - began
    return {
        "released": released,
        "started": started,
        "publishes_per_s": running.published / elapsed,
        "idle": len(kept),
    }


def _line(name: str, values: list[float], timeout: float) -> str:
    capped = sum(v >= timeout for v in values)
    note = f"  ({capped} hit the {timeout:g} s bound)" if capped else ""
    return (
        f"{name:<34} median {statistics.median(values) * 1e3:8.1f} ms"
        f"   max {max(values) * 1e3:8.1f} ms{note}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impl", choices=sorted(MODULES), default="pure")
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--idle", type=int, default=20, help="subscribers that never read")
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=3.0, help="bound per sample, seconds")
    args = parser.parse_args()
    impl = importlib.import_module(MODULES[args.impl])
    result = asyncio.run(measure(impl, args.publishers, args.idle, args.samples, args.timeout))
    print(
        f"{args.impl}: {args.publishers} publisher threads, {result['idle']} idle subscribers,"
        f" {args.samples} samples each,"
        f" {result['publishes_per_s']:,.0f} publishes/s meanwhile"
    )
    print(_line("release after unsubscribe()", result["released"], args.timeout))  # type: ignore[arg-type]
    print(_line("subscribe() to first aget()", result["started"], args.timeout))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
