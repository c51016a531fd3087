"""Benchmark workloads, defined once for ``python -m fastopslog bench`` and
for the pytest-benchmark suite in ``benchmarks/``.

A :class:`Scenario` is measured in batches: ``prepare()`` restores, untimed,
the state the next batch needs (fresh entries, drained buffers) and ``run()``
performs ``ops`` operations, timed. Fresh entries matter because publishing
seals an entry: publishing it again would publish a copy and measure the
copy path instead. Each tool only times ``run()``; ``verify()`` afterwards
checks, untimed, that the batches did what the scenario says (every send a
delivery, or every send a drop), so a scenario cannot silently measure
something else.

Entries look like a gateway's: ``POST /v1/chat/completions``, five models,
2% 5xx with error fields, log-normal latency, varying ids. Publishing
scenarios keep a full history of :data:`HISTORY_CAP`, so, as in a running
gateway, each publish also lets go of the oldest entry.
"""

from __future__ import annotations

import asyncio
import math
import queue
import random
import threading
from collections.abc import Callable
from contextvars import Context
from functools import cache, partial
from importlib import import_module
from statistics import NormalDist
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # for annotations only: typing has them from Python 3.11
    from typing_extensions import TypeVarTuple, Unpack

    _Ts = TypeVarTuple("_Ts")

IMPLEMENTATIONS = {"pure": "fastopslog._opslog_py", "c": "fastopslog._opslog_c"}

HISTORY_CAP = 1000
# Operations per timed batch: big enough that the timer's own cost and the
# loop around the calls are noise, small enough that the default buffer
# (1024) holds a whole batch for a drained subscriber.
BATCH = 1000
SUBSCRIBER_COUNTS = (0, 1, 10, 100, 1000)
# Stalled 0 would be the drained 0 scenario again.
STALLED_COUNTS = (1, 10, 100, 1000)
SELECTIVE_COUNTS = (100, 1000)
SNAPSHOT_SIZES = (1_000, 100_000)

# (model, share of traffic in percent)
MODELS = (
    ("gpt-4o-mini", 50),
    ("gpt-4o", 20),
    ("claude-3-5-sonnet", 10),
    ("llama-3.1-70b-instruct", 10),
    ("mistral-large", 10),
)
SNAPSHOT_MODEL = "claude-3-5-sonnet"  # the snapshot filter keeping 10%
BUSY_MODEL = "gpt-4o-mini"  # 50% of traffic: its 5xx are 1% of all entries
ACCOUNTS = 100  # uniform, so one account is 1% of entries
ERROR_RATE = 0.02
# (status, error_message, error_detail, upstream_status); the HTML page and
# the JSON body are what upstreams really send, and exercise Go's escaping.
ERRORS = (
    (502, "upstream error", "<html><body><h1>502 Bad Gateway</h1></body></html>", 502),
    (
        502,
        "upstream overloaded",
        '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
        529,
    ),
    (503, "no available accounts", "all 4 accounts for this model are rate limited", 0),
    (504, "upstream timeout", "no response headers within 60s", 0),
)
# Latency in ms is log-normal: a median of 1.2 s with a long tail.
LATENCY_MU = math.log(1200)
LATENCY_SIGMA = 0.9
# The latency that 1% of entries exceed.
SLOW_MS = round(math.exp(NormalDist(LATENCY_MU, LATENCY_SIGMA).inv_cdf(0.99)))
BASE_TIME = 1_767_225_600.0  # 2026-01-01T00:00:00Z: fixed, for reproducible JSON


def load_implementation(name: str) -> ModuleType:
    """The implementation module called ``name`` ("pure" or "c").
    ImportError when it is not built."""
    return import_module(IMPLEMENTATIONS[name])


@cache  # read-only, and the same for every implementation
def request_fields(
    count: int, *, seed: int = 1, stamped: bool = False, error_rate: float = ERROR_RATE
) -> tuple[dict[str, Any], ...]:
    """Constructor keywords for ``count`` gateway requests. A success has 12
    fields, a 5xx 15. ``stamped`` leaves ``time`` at 0 for publish to stamp."""
    rng = random.Random(seed)
    models = [name for name, _ in MODELS]
    weights = [share for _, share in MODELS]
    fields = []
    now = BASE_TIME
    for _ in range(count):
        now += rng.expovariate(500.0)  # about 500 requests a second
        account = rng.randint(1, ACCOUNTS)
        entry: dict[str, Any] = {
            "time": 0.0 if stamped else round(now, 6),
            "method": "POST",
            "path": "/v1/chat/completions",
            "status": 200,
            "latency_ms": max(1, round(rng.lognormvariate(LATENCY_MU, LATENCY_SIGMA))),
            "model": rng.choices(models, weights)[0],
            "stream": rng.random() < 0.7,
            "account_id": account,
            "group_id": 1 + account % 8,
            "api_key_id": 10_000 + account * 10 + rng.randrange(4),
            "turns": rng.randint(1, 40),
            "prompt_chars": rng.randint(20, 60_000),
        }
        if rng.random() < error_rate:
            status, message, detail, upstream = rng.choice(ERRORS)
            entry.update(
                status=status, error_message=message, error_detail=detail,
                upstream_status=upstream,
            )
        fields.append(entry)
    return tuple(fields)


def selective_filter(impl: ModuleType, index: int) -> Any:
    """The filter of selective subscriber ``index``; each matches 1% of
    entries. The kinds rotate, because dashboards filter by account, by a
    model's errors and by slowness, and an implementation may look up the
    first kind by key but has to test the others entry by entry."""
    kind = index % 3
    if kind == 0:
        return impl.OpsLogFilter(account_id=1 + (index // 3) % ACCOUNTS)
    if kind == 1:
        return impl.OpsLogFilter(model=BUSY_MODEL, min_status=500)
    return impl.OpsLogFilter(min_latency_ms=SLOW_MS)


class Scenario:
    """One measured operation. Use as a context manager, so threads, loops
    and subscriptions are released."""

    key: str  # stable identifier, for comparing JSON results across runs
    title: str
    unit: str  # what one operation is, plural
    ops: int  # operations per batch

    def prepare(self) -> None:
        """Untimed: make the state the next ``run()`` needs."""

    def run(self) -> None:
        raise NotImplementedError

    def verify(self) -> None:
        """Untimed: raise if the batches so far did not do what the title says."""

    def extra(self) -> dict[str, float]:
        """Figures besides time, named with their unit (e.g. wake-ups per batch)."""
        return {}

    def close(self) -> None:
        pass

    def __enter__(self) -> Scenario:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Fresh:
    """Makes new, unpublished entries from fixed keywords."""

    def __init__(self, impl: ModuleType, count: int, *, stamped: bool = False) -> None:
        self._entry = impl.OpsLogEntry
        self._fields = request_fields(count, stamped=stamped)

    def __call__(self) -> list[Any]:
        entry = self._entry
        return [entry(**fields) for fields in self._fields]


def _unexpected(what: str, got: object, expected: object) -> RuntimeError:
    return RuntimeError(f"benchmark scenario went wrong: {what} is {got}, expected {expected}")


Readers = Literal["drained", "stalled", "selective"]


class Publish(Scenario):
    """``publish`` of fresh entries with ``subscribers`` subscriptions:
    ``drained`` ones match everything (no filter) and are emptied before
    each batch, so every send is a delivery; ``stalled`` ones match
    everything and are full, so every send is a drop; ``selective`` ones
    match 1% of entries each (:func:`selective_filter`) and are drained.

    ``stamped`` publishes entries whose time is 0. Each is fresh, made
    untimed before the batch, so the batch measures the stamping path of a
    first publish, and not the copy a second publish of a sealed entry makes.
    """

    unit = "publishes"
    ops = BATCH

    def __init__(
        self, impl: ModuleType, subscribers: int, readers: Readers = "drained",
        *, stamped: bool = False,
    ) -> None:
        self.key = f"publish-{readers}-{subscribers}" + ("-stamped" if stamped else "")
        if subscribers == 0:
            self.title = "publish, 0 subscribers" + (", time 0 (stamped)" if stamped else "")
        elif readers == "selective":
            self.title = f"publish, {subscribers} with 1% matching"
        elif readers == "stalled":
            self.title = f"publish, {subscribers} stalled (every send drops)"
        else:
            self.title = f"publish, {subscribers} matching, drained"
        self._readers = readers
        self._fresh = _Fresh(impl, BATCH, stamped=stamped)
        self._entries: list[Any] = []
        self._broadcaster = impl.OpsLogBroadcaster(HISTORY_CAP)
        self._subs = [
            self._broadcaster.subscribe(
                selective_filter(impl, i) if readers == "selective" else None
            )
            for i in range(subscribers)
        ]
        if readers == "stalled":
            while any(len(sub) < sub.buf_size for sub in self._subs):
                for entry in self._fresh():
                    self._broadcaster.publish(entry)
        self._start = self._broadcaster.stats()
        self._delivered = 0

    def _drain(self) -> None:
        for sub in self._subs:
            self._delivered += len(sub.drain())

    def prepare(self) -> None:
        if self._readers != "stalled":
            self._drain()
        self._entries = self._fresh()

    def run(self) -> None:
        publish = self._broadcaster.publish
        for entry in self._entries:
            publish(entry)

    def _counts(self) -> tuple[int, int]:
        """Publishes and drops since the scenario was set up."""
        published, dropped, _ = self._broadcaster.stats()
        return published - self._start.published, dropped - self._start.dropped

    def verify(self) -> None:
        published, dropped = self._counts()
        expected = len(self._subs) * published if self._readers == "stalled" else 0
        if dropped != expected:
            raise _unexpected("the number of drops", dropped, expected)
        if self._readers == "drained":
            self._drain()
            expected = len(self._subs) * published
            if self._delivered != expected:
                raise _unexpected("the number of deliveries", self._delivered, expected)

    def extra(self) -> dict[str, float]:
        published, _ = self._counts()
        if self._readers != "selective" or not published:
            return {}
        self._drain()
        return {"matched_percent": 100 * self._delivered / (published * len(self._subs))}

    def close(self) -> None:
        for sub in self._subs:
            sub.unsubscribe()


class BuildEntry(Scenario):
    """``OpsLogEntry(...)`` with 12 keyword arguments, written out as a
    gateway writes them (not ``**fields``)."""

    key = "entry-12-keywords"
    title = "OpsLogEntry from 12 keywords"
    unit = "entries"
    ops = BATCH
    # What a successful request carries; run() names them in this order.
    FIELDS = (
        "time", "method", "path", "status", "latency_ms", "model", "stream",
        "account_id", "group_id", "api_key_id", "turns", "prompt_chars",
    )

    def __init__(self, impl: ModuleType) -> None:
        self._entry = impl.OpsLogEntry
        self._rows = [
            tuple(fields[name] for name in self.FIELDS)
            for fields in request_fields(BATCH, error_rate=0.0)
        ]

    def run(self) -> None:
        entry = self._entry
        for t, me, pa, st, la, mo, sr, ac, gr, ak, tu, pc in self._rows:
            entry(
                time=t, method=me, path=pa, status=st, latency_ms=la, model=mo,
                stream=sr, account_id=ac, group_id=gr, api_key_id=ak, turns=tu,
                prompt_chars=pc,
            )


class ToJson(Scenario):
    """``to_json()`` of entries never rendered (fresh ones each batch), or
    of entries already rendered once (the cached string)."""

    unit = "calls"
    ops = BATCH

    def __init__(self, impl: ModuleType, *, rendered: bool) -> None:
        self.key = "to-json-rendered" if rendered else "to-json-fresh"
        self.title = "to_json, already rendered" if rendered else "to_json, fresh entry"
        self._rendered = rendered
        self._fresh = _Fresh(impl, BATCH)
        self._entries = self._fresh()
        for entry in self._entries:
            entry.to_json()

    def prepare(self) -> None:
        if not self._rendered:
            self._entries = self._fresh()

    def run(self) -> None:
        for entry in self._entries:
            entry.to_json()


class Snapshot(Scenario):
    """``snapshot`` over a full history of ``size``, with no filter or with
    a model filter keeping 10%."""

    unit = "snapshots"
    ops = 1

    def __init__(self, impl: ModuleType, size: int, *, model_filter: bool) -> None:
        self.key = f"snapshot-{size}-" + ("model" if model_filter else "all")
        self.title = f"snapshot of {size:,}, " + (
            "model filter keeping 10%" if model_filter else "no filter"
        )
        self._broadcaster = impl.OpsLogBroadcaster(size)
        entries = _Fresh(impl, size)()
        for entry in entries:
            self._broadcaster.publish(entry)
        self._filter = impl.OpsLogFilter(model=SNAPSHOT_MODEL) if model_filter else None
        self._expected = sum(
            1 for e in entries if self._filter is None or e.model == SNAPSHOT_MODEL
        )

    def run(self) -> None:
        self._broadcaster.snapshot(self._filter)

    def verify(self) -> None:
        got = len(self._broadcaster.snapshot(self._filter))
        if got != self._expected:
            raise _unexpected("the snapshot's length", got, self._expected)


class _Worker:
    """A thread that runs each job it is given, and says when it is done.
    Kept across batches, so no batch pays for starting a thread."""

    def __init__(self, work: Callable[[Any], None]) -> None:
        self._work = work
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                self._work(job)
            except BaseException as exc:  # re-raised on the measuring thread
                self._done.put(exc)
            else:
                self._done.put(None)

    def start(self, job: Any) -> None:
        self._jobs.put(job)

    def wait(self) -> None:
        error = self._done.get()
        if error is not None:
            raise error

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join()


def _publish_all(publish: Callable[[Any], None], entries: list[Any]) -> None:
    for entry in entries:
        publish(entry)


class ThreadedPublish(Scenario):
    """Two threads publishing at once into one broadcaster with 10 drained
    subscribers. Time is wall time over both threads' publishes, so it
    reads against the one-thread figure: equal means no contention cost,
    half would be perfect parallelism. Each thread publishes 5,000 fresh
    entries a batch, so the hand-off to the threads is noise."""

    key = "publish-2-threads-drained-10"
    title = "publish, 2 threads at once, 10 drained"
    unit = "publishes"
    threads = 2
    per_thread = 5 * BATCH
    ops = threads * per_thread

    def __init__(self, impl: ModuleType) -> None:
        self._broadcaster = impl.OpsLogBroadcaster(HISTORY_CAP)
        # Buffers hold a whole batch, so every send is a delivery.
        self._subs = [self._broadcaster.subscribe(buf_size=self.ops) for _ in range(10)]
        self._fresh = _Fresh(impl, self.per_thread)
        self._batches: list[list[Any]] = []
        self._workers = [
            _Worker(partial(_publish_all, self._broadcaster.publish))
            for _ in range(self.threads)
        ]

    def prepare(self) -> None:
        for sub in self._subs:
            sub.drain()
        self._batches = [self._fresh() for _ in self._workers]

    def run(self) -> None:
        for worker, entries in zip(self._workers, self._batches, strict=True):
            worker.start(entries)
        for worker in self._workers:
            worker.wait()

    def verify(self) -> None:
        dropped = self._broadcaster.stats().dropped
        if dropped:
            raise _unexpected("the number of drops", dropped, 0)

    def close(self) -> None:
        for worker in self._workers:
            worker.stop()
        for sub in self._subs:
            sub.unsubscribe()


class _CountingLoop(asyncio.SelectorEventLoop):
    """Counts ``call_soon_threadsafe``: how a publisher on another thread
    wakes a parked consumer, so the count is the wake-ups it cost."""

    wakeups = 0

    def call_soon_threadsafe(
        self,
        callback: Callable[[Unpack[_Ts]], object],
        *args: Unpack[_Ts],
        context: Context | None = None,
    ) -> asyncio.Handle:
        self.wakeups += 1
        return super().call_soon_threadsafe(callback, *args, context=context)


class AsyncConsumer(Scenario):
    """An asyncio consumer (``async for``) reading every entry a publisher
    thread publishes. Time runs from handing the batch to the publisher to
    the consumer holding the last entry: its inverse is end-to-end
    throughput. The buffer holds a whole batch, so nothing drops."""

    key = "asyncio-consumer"
    title = "asyncio consumer of a publisher thread"
    unit = "entries"
    ops = 10 * BATCH
    # A liveness guard, not a measurement: a consumer that misses an entry
    # would otherwise wait forever.
    STUCK_AFTER_S = 60.0

    def __init__(self, impl: ModuleType) -> None:
        self._broadcaster = impl.OpsLogBroadcaster(HISTORY_CAP)
        self._sub = self._broadcaster.subscribe(buf_size=self.ops)
        self._fresh = _Fresh(impl, self.ops)
        self._entries: list[Any] = []
        self._loop = _CountingLoop()
        self._publisher = _Worker(partial(_publish_all, self._broadcaster.publish))
        self._batches = 0

    def prepare(self) -> None:
        self._entries = self._fresh()

    async def _consume(self) -> None:
        self._publisher.start(self._entries)
        received = 0
        async for _ in self._sub:
            received += 1
            if received == self.ops:
                break

    def run(self) -> None:
        self._loop.run_until_complete(asyncio.wait_for(self._consume(), self.STUCK_AFTER_S))
        self._publisher.wait()
        self._batches += 1

    def verify(self) -> None:
        dropped = self._broadcaster.stats().dropped
        if dropped or len(self._sub):
            raise _unexpected("drops, entries left unread", (dropped, len(self._sub)), (0, 0))

    def extra(self) -> dict[str, float]:
        return {"wakeups_per_batch": self._loop.wakeups / self._batches} if self._batches else {}

    def close(self) -> None:
        self._publisher.stop()
        self._sub.unsubscribe()
        self._loop.close()


# Every scenario, in the order the bench tool measures and prints them.
SCENARIOS: tuple[Callable[[ModuleType], Scenario], ...] = (
    *(partial(Publish, subscribers=n) for n in SUBSCRIBER_COUNTS),
    partial(Publish, subscribers=0, stamped=True),
    *(partial(Publish, subscribers=n, readers="stalled") for n in STALLED_COUNTS),
    *(partial(Publish, subscribers=n, readers="selective") for n in SELECTIVE_COUNTS),
    ThreadedPublish,
    AsyncConsumer,
    BuildEntry,
    partial(ToJson, rendered=False),
    partial(ToJson, rendered=True),
    *(
        partial(Snapshot, size=size, model_filter=model)
        for size in SNAPSHOT_SIZES
        for model in (False, True)
    ),
)
