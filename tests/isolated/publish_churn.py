"""A million publishes with subscriptions coming and going leave memory and
reference counts flat.

Usage: publish_churn.py {pure|c} [publishes]
(or the number of publishes in FASTOPSLOG_CHURN_PUBLISHES)

Rounds of publishing into one long-lived broadcaster while subscriptions of
every kind come and go: drained, overflowing (both policies), primed with
``replay`` and ``since_seq``, unsubscribed with entries still buffered,
closed by ``with``, dropped without unsubscribing, dropped inside a
reference cycle; short-lived broadcasters too. After a warm-up, and again
at the end, the same state is restored (no subscription alive, history
refilled with the same kind of entries) and measured:

- exact reference counts of objects the entries, filters and subscriptions
  point to (strings of our own, the filters, the broadcaster, the types):
  a leaked entry, filter or subscription keeps one of them referenced;
- ``len(gc.get_objects())``, ``sys.getallocatedblocks()`` and tracemalloc's
  traced memory, for leaked Python objects and PyMem allocations;
- the resident set size, for leaked C memory (rings of entry references and
  subscription slots) that tracemalloc does not see.

Growth must stay under small bounds: a leak of one reference or a few bytes
per publish or per subscription is far above them.
"""

from __future__ import annotations

import gc
import os
import queue
import sys
import tracemalloc
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _leakcheck import Failures, full_collect, implementation, rss_bytes

IMPL, mod = implementation()
# The pure implementation is far slower: 200,000 publishes keep it to seconds.
DEFAULT_TOTAL = 1_000_000 if IMPL == "c" else 200_000
TOTAL = int(sys.argv[2] if len(sys.argv) > 2 else os.environ.get("FASTOPSLOG_CHURN_PUBLISHES", DEFAULT_TOTAL))
WARMUP = TOTAL // 10
HISTORY = 512
ROUND = 250  # publishes per round

# Bounds on growth between the end of the warm-up and the end.
# (Measured noise: a few objects, under 1,000 blocks, a few KiB traced,
# under 1 MiB of RSS. One object, block or few bytes leaked per round, per
# subscription or per publish is far above these.)
MAX_OBJECTS = 200
MAX_BLOCKS = 2_000
MAX_TRACED = 64 * 1024
MAX_RSS = 4 * 1024 * 1024


def own(*parts: str) -> str:
    """A str object nobody else holds, so its refcount is ours to watch."""
    return "".join(parts)


MODELS = [own("gpt", "-4o"), own("clau", "de"), own("mis", "tral")]
FILTER_MODELS = [own("gpt", "-4o"), own("mis", "tral")]  # equal, distinct objects
PATHS = [own("/v1/", "chat"), own("/v1/", "embeddings")]
ERROR = own("upstream ", "timeout")
FLUSH_MODEL = own("flu", "sh")

b = mod.OpsLogBroadcaster(HISTORY)
FILTERS = [
    mod.OpsLogFilter(),
    mod.OpsLogFilter(model=FILTER_MODELS[0]),
    mod.OpsLogFilter(account_id=7, min_status=500),
    mod.OpsLogFilter(group_id=3, min_latency_ms=100),
    mod.OpsLogFilter(model=FILTER_MODELS[1], account_id=7),
]
WATCHED = {
    **{f"model {m!r}": m for m in MODELS},
    **{f"filter model {m!r}": m for m in FILTER_MODELS},
    **{f"path {p!r}": p for p in PATHS},
    "error_message": ERROR,
    **{f"filter #{i}": f for i, f in enumerate(FILTERS)},
    "broadcaster": b,
    "OpsLogEntry type": mod.OpsLogEntry,
    "OpsLogFilter type": mod.OpsLogFilter,
    "OpsLogSubscription type": mod.OpsLogSubscription,
    "OpsLogBroadcaster type": mod.OpsLogBroadcaster,
}

published = 0  # publishes into b


def entry(n: int) -> Any:
    return mod.OpsLogEntry(
        time=0.0 if n % 8 == 0 else 1_700_000_000.0 + n * 1e-3,  # 1 in 8 stamped
        method="GET",
        path=PATHS[n % 2],
        status=(200, 404, 500, 503)[n % 4],
        latency_ms=n % 300,
        model=MODELS[n % 3],
        stream=n % 2 == 0,
        account_id=7 if n % 5 == 0 else n % 11,
        group_id=n % 4,
        error_message=ERROR if n % 4 >= 2 else "",
    )


def one_round(r: int, n0: int) -> int:
    """Publish about ROUND entries into ``b`` with subscriptions coming and
    going; return how many publishes ``b`` got."""
    global published
    subs = [
        b.subscribe(FILTERS[0], 64),  # drained as it goes
        b.subscribe(FILTERS[1], 8, overflow="drop_oldest"),  # evicts its oldest
        b.subscribe(FILTERS[2], 16, replay=20),  # primed from history
        b.subscribe(FILTERS[3], since_seq=max(0, published - 100)),  # default 1024 ring
        b.subscribe(FILTERS[4], 4),  # stalls: refuses the newest
        b.subscribe(None, 4096 if r % 2 else 2048, overflow="drop_oldest"),  # a big ring
    ]
    cycle: list[object] = [b.subscribe(FILTERS[1], 32)]
    cycle.append(cycle)  # only the cycle collector can free this one
    temp = mod.OpsLogBroadcaster(2000) if r % 2 == 0 else None
    temp_sub = temp.subscribe(None, 256) if temp is not None else None
    count = 0
    for k in range(ROUND):
        n = n0 + k
        e = entry(n)
        b.publish(e)
        count += 1
        if n % 50 == 0:
            b.publish(e)  # republishing publishes a sealed copy
            count += 1
        if n % 3 == 0:
            e.to_json()
        if temp is not None:
            temp.publish(e)
        if k % 16 == 0:
            subs[0].drain(5)
        if k % 32 == 0:
            try:
                subs[0].get_nowait()
            except queue.Empty:
                pass
        if k % 64 == 0:
            b.snapshot(FILTERS[1], 10)
    subs[0].drain()
    subs[1].unsubscribe()
    subs[1].drain(3)  # the rest stays buffered until the subscription goes
    with subs[2]:
        pass
    subs[3].unsubscribe()  # not drained at all
    subs[5].drain(100)
    # subs[4] and subs[5] are dropped without unsubscribe()
    del subs, cycle, temp, temp_sub
    published += count
    return count


def measure(fail: Failures, label: str) -> dict[str, Any]:
    # The same state at every measurement: no subscription left (the cycles
    # collected), the history refilled with entries of one kind.
    global published
    full_collect()
    stats = b.stats()
    fail.check(
        stats.subscribers == 0, f"{label}: {stats.subscribers} subscriptions left after all were dropped"
    )
    fail.check(stats.published == published, f"{label}: published={stats.published}, expected {published}")
    for _ in range(HISTORY):
        b.publish(mod.OpsLogEntry(time=1.0, model=FLUSH_MODEL))
    published += HISTORY
    full_collect()
    return {
        "refs": {name: sys.getrefcount(obj) for name, obj in WATCHED.items()},
        "objects": len(gc.get_objects()),
        "blocks": sys.getallocatedblocks(),
        "traced": tracemalloc.get_traced_memory()[0],
        "rss": rss_bytes(),
    }


def main() -> None:
    fail = Failures("publish_churn", IMPL)
    tracemalloc.start()
    n = r = 0
    while published < WARMUP:
        n += one_round(r, n)
        r += 1
    before = measure(fail, "after warm-up")
    while published < TOTAL:
        n += one_round(r, n)
        r += 1
        if r % 50 == 0:
            # Fail fast, rather than slow down as subscriptions pile up:
            # none is left at the end of a round once cycles are collected.
            gc.collect()
            left = b.stats().subscribers
            if left:
                fail.check(False, f"{left} subscriptions still counted after round {r}: they are not removed")
                fail.finish()
    after = measure(fail, "at the end")
    tracemalloc.stop()

    for name, count in before["refs"].items():
        now = after["refs"][name]
        fail.check(now == count, f"refcount of {name}: {count} after warm-up, {now} at the end")
    growth = {key: after[key] - before[key] for key in ("objects", "blocks", "traced", "rss")}
    print(
        f"{published} publishes in {r} rounds; growth after warm-up: "
        f"{growth['objects']} gc objects, {growth['blocks']} blocks, "
        f"{growth['traced']} traced bytes, {growth['rss']} RSS bytes"
    )
    fail.check(
        growth["objects"] <= MAX_OBJECTS,
        f"gc tracks {growth['objects']} more objects (bound {MAX_OBJECTS})",
    )
    fail.check(
        growth["blocks"] <= MAX_BLOCKS, f"{growth['blocks']} more allocated blocks (bound {MAX_BLOCKS})"
    )
    fail.check(
        growth["traced"] <= MAX_TRACED, f"tracemalloc: {growth['traced']} more bytes (bound {MAX_TRACED})"
    )
    fail.check(growth["rss"] <= MAX_RSS, f"RSS grew by {growth['rss']} bytes (bound {MAX_RSS})")
    fail.finish()


if __name__ == "__main__":
    main()
