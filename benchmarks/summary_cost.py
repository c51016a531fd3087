"""What the live page's rolling summary adds to publish, and what it costs
the process that serves the routes.

The summary is fed from one unfiltered subscription, read in batches by a
background task (``fastopslog.asgi.summary``). So publish pays for one more
subscriber: one ring push per entry. This script measures, on the
implementation ``import fastopslog`` picked (FASTOPSLOG_NO_EXTENSIONS=1 for
the pure one):

- publish, ns per entry, with no subscriber and with the summary's
  subscription (drained outside the timed loops, as the feed task does);
- ``Summary.add``, ns per entry, the work the feed task does off the
  gateway's publish path.

    python benchmarks/summary_cost.py [--entries 200000] [--rounds 7]

Medians of ``rounds`` runs; a busy machine makes them noisy.
"""

from __future__ import annotations

import argparse
import statistics
import time

import fastopslog
from fastopslog import OpsLogBroadcaster, OpsLogEntry
from fastopslog.asgi.summary import Summary

MODELS = ("gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "deepseek-chat", "llama-3.1-70b")


def entries(n: int) -> list[OpsLogEntry]:
    return [
        OpsLogEntry(
            method="POST",
            path="/v1/chat/completions",
            status=(200, 200, 200, 429, 500, 499)[i % 6],
            latency_ms=50 + i % 3000,
            model=MODELS[i % 5],
            account_id=1 + i % 40,
        )
        for i in range(n)
    ]


def publish_ns(made: list[OpsLogEntry], with_feed: bool) -> float:
    ops = OpsLogBroadcaster(history_cap=1024)
    sub = ops.subscribe(None, 65536, overflow="drop_oldest") if with_feed else None
    chunk = 10_000
    total = 0
    for start in range(0, len(made), chunk):
        fresh = [entry.replace() for entry in made[start : start + chunk]]  # each publishes once
        publish = ops.publish
        began = time.perf_counter_ns()
        for entry in fresh:
            publish(entry)
        total += time.perf_counter_ns() - began
        if sub is not None:
            sub.drain(65536)  # the feed task's read, untimed here
    return total / len(made)


def add_ns(made: list[OpsLogEntry]) -> float:
    ops = OpsLogBroadcaster(history_cap=1024)
    sub = ops.subscribe(None, len(made) + 1)
    for entry in made:
        ops.publish(entry.replace())
    batch = sub.drain(len(made) + 1)
    summary = Summary(600)
    began = time.perf_counter_ns()
    for start in range(0, len(batch), 1000):
        summary.add(batch[start : start + 1000])
    return (time.perf_counter_ns() - began) / len(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    made = entries(args.entries)
    impl = "core" if fastopslog.USE_EXTENSIONS else "pure"
    without, with_feed, adds = [], [], []
    for _ in range(args.rounds):
        without.append(publish_ns(made, False))
        with_feed.append(publish_ns(made, True))
        adds.append(add_ns(made[: args.entries // 4]))
    a, b = statistics.median(without), statistics.median(with_feed)
    print(f"implementation: {impl}, {args.entries} entries, median of {args.rounds} rounds")
    print(f"publish, no subscriber:             {a:8.1f} ns/entry")
    print(f"publish, with the summary's feed:   {b:8.1f} ns/entry  (+{b - a:.1f} ns)")
    print(f"Summary.add, in the serving process: {statistics.median(adds):7.1f} ns/entry")


if __name__ == "__main__":
    main()
