"""The rolling summary behind ``/summary`` and the live page's charts.

Per second of the last ``window`` seconds: requests, status classes (2xx,
3xx, 4xx, 5xx, and 429 and 499 on their own as well), errors (status 400
and up), a latency histogram, and requests and errors per model and per
account. It is computed once per process for every dashboard, not per
browser and not from what a filtered stream happens to receive.

Where it is computed: :class:`SummaryFeed` reads every entry from one
unfiltered subscription, in batches, in a background task of the process
that serves the routes. The gateway's publish pays what one more
subscriber costs (one ring push per entry, measured in BENCHMARKS.md),
nothing else; the arithmetic runs in the dashboard's process, on its event
loop, a batch at a time. If the feed falls behind its buffer, the entries it
missed are counted (``dropped``) rather than guessed.

Latency quantiles come from a fixed log-bucket histogram,
``BUCKETS_PER_DOUBLING`` buckets per doubling of the latency: bucket ``b``
(``b >= 1``) holds latencies in ``[2**((b-1)/8), 2**(b/8))`` ms, bucket 0
holds 0 ms. A quantile is reported as its bucket's geometric middle, so it
is within ``LATENCY_RELATIVE_ERROR`` (2**(1/16) - 1, under 4.5 %) of the
exact nearest-rank quantile of the same entries, and exact at 0.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable
from typing import Any

from .. import SubscriptionClosed

logger = logging.getLogger("fastopslog.asgi")

BUCKETS_PER_DOUBLING = 8
LATENCY_RELATIVE_ERROR = 2 ** (1 / (2 * BUCKETS_PER_DOUBLING)) - 1
DEFAULT_WINDOW = 600
QUANTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
# The counters of a cell, in order; ``_add`` keeps them in a list.
COUNTS = ("requests", "2xx", "3xx", "4xx", "5xx", "429", "499", "errors")
_HIST = len(COUNTS)  # the histogram's index in a cell


def latency_bucket(latency_ms: int) -> int:
    """The histogram bucket of a latency (see the module docstring)."""
    if latency_ms <= 0:
        return 0
    return int(math.log2(latency_ms) * BUCKETS_PER_DOUBLING) + 1


def bucket_value(bucket: int) -> float:
    """The latency a bucket reports: its bounds' geometric middle."""
    if bucket == 0:
        return 0.0
    return float(2 ** ((bucket - 0.5) / BUCKETS_PER_DOUBLING))


def quantile(hist: dict[int, int], q: float) -> float | None:
    """The nearest-rank ``q`` quantile of a histogram (``None`` when empty):
    the value of rank ``ceil(q * n)``, at least 1, in sorted order."""
    total = sum(hist.values())
    if not total:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return round(bucket_value(bucket), 2)
    raise AssertionError("unreachable: the ranks add up to the total")


def _cell() -> list[Any]:
    return [0, 0, 0, 0, 0, 0, 0, 0, {}]


def _add(cell: list[Any], status: int, bucket: int) -> None:
    cell[0] += 1
    klass = status // 100
    if 2 <= klass <= 5:
        cell[klass - 1] += 1
        if klass >= 4:
            cell[7] += 1
            if status == 429:
                cell[5] += 1
            elif status == 499:
                cell[6] += 1
    hist = cell[_HIST]
    hist[bucket] = hist.get(bucket, 0) + 1


class _Second:
    """One second's cells: every entry, and each model's and account's."""

    __slots__ = ("accounts", "all", "models")

    def __init__(self) -> None:
        self.all = _cell()
        self.models: dict[str, list[Any]] = {}
        self.accounts: dict[int, list[int]] = {}


class Summary:
    """The rolling per-second summary. ``add`` entries as they come (any
    order within the window); ``report`` reads it. Not thread-safe: one
    event loop feeds and reads it."""

    def __init__(self, window: int = DEFAULT_WINDOW, clock: Any = time.time) -> None:
        if type(window) is not int or window < 1:
            raise ValueError("window must be an int of at least 1 (seconds)")
        self.window = window
        self.clock = clock
        self.started = clock()
        self.seconds: dict[int, _Second] = {}
        self.fed = 0
        self.too_old = 0
        self.dropped = 0
        self.newest_time = 0.0
        self.newest_seq = 0

    def add(self, entries: Iterable[Any]) -> None:
        """Count ``entries`` (anything with the entry fields ``time``,
        ``seq``, ``status``, ``latency_ms``, ``model``, ``account_id``) in
        the second of their ``time``; older than the window: counted in
        ``too_old`` only."""
        seconds = self.seconds
        oldest = int(self.clock()) - self.window + 1
        for entry in entries:
            when = entry.time
            second = int(when)
            self.fed += 1
            if entry.seq > self.newest_seq:
                self.newest_seq = entry.seq
            if second < oldest:
                self.too_old += 1
                continue
            if when > self.newest_time:
                self.newest_time = when
            cell = seconds.get(second)
            if cell is None:
                cell = seconds[second] = _Second()
            status = entry.status
            bucket = latency_bucket(entry.latency_ms)
            _add(cell.all, status, bucket)
            model = entry.model
            if model:
                per_model = cell.models.get(model)
                if per_model is None:
                    per_model = cell.models[model] = _cell()
                _add(per_model, status, bucket)
            account = entry.account_id
            if account:
                per_account = cell.accounts.get(account)
                if per_account is None:
                    per_account = cell.accounts[account] = [0, 0]
                per_account[0] += 1
                if status >= 400:
                    per_account[1] += 1
        self._evict(oldest)

    def _evict(self, oldest: int) -> None:
        for second in [s for s in self.seconds if s < oldest]:
            del self.seconds[second]

    def report(self, seconds: int | None = None, model: str | None = None, top: int = 10) -> dict[str, Any]:
        """The last ``seconds`` (default: the window), ending with the
        current second, as JSON-ready data: per-second series, totals,
        quantiles, top models and accounts. ``model``: the series and
        totals of that model only (the top lists stay global)."""
        span = self.window if seconds is None else max(1, min(seconds, self.window))
        now = self.clock()
        end = int(now)
        start = end - span + 1
        self._evict(end - self.window + 1)
        series: dict[str, list[Any]] = {name: [] for name in COUNTS}
        for name, _ in QUANTILES:
            series[name] = []
        total = _cell()
        models: dict[str, list[int]] = {}
        accounts: dict[int, list[int]] = {}
        for second in range(start, end + 1):
            found = self.seconds.get(second)
            cell = None
            if found is not None:
                cell = found.all if model is None else found.models.get(model)
                for name, per_model in found.models.items():
                    seen = models.setdefault(name, [0, 0])
                    seen[0] += per_model[0]
                    seen[1] += per_model[7]
                for account, counts in found.accounts.items():
                    seen = accounts.setdefault(account, [0, 0])
                    seen[0] += counts[0]
                    seen[1] += counts[1]
            if cell is None:
                cell = _cell()
            for i, name in enumerate(COUNTS):
                series[name].append(cell[i])
                total[i] += cell[i]
            for name, q in QUANTILES:
                series[name].append(quantile(cell[_HIST], q))
            for bucket, count in cell[_HIST].items():
                total[_HIST][bucket] = total[_HIST].get(bucket, 0) + count
        totals: dict[str, Any] = {name: total[i] for i, name in enumerate(COUNTS)}
        for name, q in QUANTILES:
            totals[name] = quantile(total[_HIST], q)
        return {
            "now": round(now, 3),
            "started": round(self.started, 3),
            "start": start,
            "step": 1,
            "seconds": span,
            "window": self.window,
            "model": model,
            "series": series,
            "totals": totals,
            "top_models": _tops(models, "model", top),
            "top_accounts": _tops(accounts, "account_id", top),
            "models": sorted(models),
            "newest_time": round(self.newest_time, 6) if self.newest_time else None,
            "newest_seq": self.newest_seq or None,
            "fed": self.fed,
            "too_old": self.too_old,
            "dropped": self.dropped,
            "latency_relative_error": round(LATENCY_RELATIVE_ERROR, 4),
        }


def _tops(counts: dict[Any, list[int]], key: str, top: int) -> dict[str, list[dict[str, Any]]]:
    def listed(index: int) -> list[dict[str, Any]]:
        ranked = sorted(
            (item for item in counts.items() if item[1][index]),
            key=lambda item: (-item[1][index], str(item[0])),
        )
        return [{key: name, "requests": c[0], "errors": c[1]} for name, c in ranked[:top]]

    return {"by_requests": listed(0), "by_errors": listed(1)}


class SummaryFeed:
    """Feeds a :class:`Summary` from an unfiltered subscription to
    ``broadcaster``, in batches, in a task on the event loop that first
    asks for it (``ensure``). Primed with the history the subscription can
    replay, so a dashboard opened late still sees the recent minutes."""

    def __init__(self, broadcaster: Any, window: int = DEFAULT_WINDOW, buf_size: int = 65536) -> None:
        self.broadcaster = broadcaster
        self.summary = Summary(window)
        self.buf_size = buf_size
        self._task: asyncio.Task[None] | None = None

    def ensure(self) -> Summary:
        """The summary, its feeding task started on this loop if not
        running (a new loop, as each test's, starts a new one)."""
        loop = asyncio.get_running_loop()
        task = self._task
        if task is None or task.done() or task.get_loop() is not loop:
            self._task = loop.create_task(self._run(), name="fastopslog-summary")
        return self.summary

    async def _run(self) -> None:
        summary = self.summary
        if summary.newest_seq:
            # A restarted feed (a new event loop) goes on after what it
            # counted, so nothing is counted twice.
            sub = self.broadcaster.subscribe(
                None, self.buf_size, since_seq=summary.newest_seq, overflow="drop_oldest"
            )
        else:
            sub = self.broadcaster.subscribe(
                None, self.buf_size, replay=self.buf_size, overflow="drop_oldest"
            )
        try:
            async with sub:
                while True:
                    first = await sub.aget()
                    batch = [first]
                    batch += sub.drain(self.buf_size)
                    summary.add(batch)
                    summary.dropped = sub.dropped
                    # Yield between batches, so a burst never holds the loop.
                    await asyncio.sleep(0.05)
        except SubscriptionClosed:
            return  # the broadcaster closed it (a fork, say): the next ensure() starts anew
        except Exception:  # pragma: no cover - a bug, logged rather than lost
            logger.exception("fastopslog: the summary feed stopped")
