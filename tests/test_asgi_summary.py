"""The rolling summary's arithmetic against a brute-force count over the
same entries; its quantiles within the stated error of exact nearest-rank
quantiles."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

from fastopslog.asgi.summary import (
    LATENCY_RELATIVE_ERROR,
    Summary,
    bucket_value,
    latency_bucket,
    quantile,
)

NOW = 1_800_000_000.0
STATUSES = (200, 201, 204, 301, 304, 400, 401, 404, 429, 499, 500, 502, 503, 504, 0)
MODELS = ("gpt-4o", "claude", "llama", "")


@dataclass
class E:
    time: float
    seq: int
    status: int
    latency_ms: int
    model: str
    account_id: int


def entries(n: int, window: int, seed: int) -> list[E]:
    rng = random.Random(seed)
    made = []
    for seq in range(1, n + 1):
        made.append(
            E(
                time=NOW - rng.uniform(0, window + 30),  # some older than the window
                seq=seq,
                status=rng.choice(STATUSES),
                latency_ms=int(rng.lognormvariate(5, 1.5)) if rng.random() > 0.05 else 0,
                model=rng.choice(MODELS),
                account_id=rng.randrange(0, 6),
            )
        )
    return made


def exact_quantile(values: list[int], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[max(1, math.ceil(q * len(ordered))) - 1])


def close(got: float | None, want: float | None) -> bool:
    if got is None or want is None:
        return got is want
    # The stated relative error, and 0.005 for the report's rounding to 0.01.
    return abs(got - want) <= want * LATENCY_RELATIVE_ERROR + 0.005


def test_the_stated_latency_error_bounds_every_bucket() -> None:
    assert LATENCY_RELATIVE_ERROR < 0.045
    for latency in [0, 1, 2, 3, 7, 100, 999, 12345, 10**7, 2**40]:
        got = bucket_value(latency_bucket(latency))
        assert abs(got - latency) <= latency * LATENCY_RELATIVE_ERROR + 1e-9, latency


@pytest.mark.parametrize("seed", range(5))
def test_the_report_matches_brute_force(seed: int) -> None:
    window = 120
    summary = Summary(window, clock=lambda: NOW)
    made = entries(3000, window, seed)
    rng = random.Random(seed)
    shuffled = made[:]
    rng.shuffle(shuffled)
    for start in range(0, len(shuffled), 97):  # in batches, out of order
        summary.add(shuffled[start : start + 97])
    end = int(NOW)
    for seconds, model in ((window, None), (30, None), (window, "claude"), (1, None)):
        report = summary.report(seconds, model)
        start = end - seconds + 1
        inside = [e for e in made if start <= int(e.time) <= end]
        picked = [e for e in inside if model is None or e.model == model]
        series = report["series"]
        assert report["start"] == start and len(series["requests"]) == seconds
        for i, second in enumerate(range(start, end + 1)):
            those = [e for e in picked if int(e.time) == second]
            assert series["requests"][i] == len(those)
            assert series["5xx"][i] == sum(500 <= e.status < 600 for e in those)
            assert series["429"][i] == sum(e.status == 429 for e in those)
            for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
                assert close(series[name][i], exact_quantile([e.latency_ms for e in those], q))
        totals = report["totals"]
        assert totals["requests"] == len(picked)
        for klass in (2, 3, 4, 5):
            assert totals[f"{klass}xx"] == sum(e.status // 100 == klass for e in picked)
        assert totals["499"] == sum(e.status == 499 for e in picked)
        assert totals["errors"] == sum(e.status >= 400 for e in picked)
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            assert close(totals[name], exact_quantile([e.latency_ms for e in picked], q))
        # The top lists count the whole span, every model.
        requests = Counter(e.model for e in inside if e.model)
        errors = Counter(e.model for e in inside if e.model and e.status >= 400)
        top = report["top_models"]
        assert {t["model"]: (t["requests"], t["errors"]) for t in top["by_requests"]} == {
            m: (requests[m], errors[m]) for m in requests
        }
        assert [t["errors"] for t in top["by_errors"]] == sorted(errors.values(), reverse=True)
        accounts = Counter(e.account_id for e in inside if e.account_id)
        got: dict[Any, Any] = {t["account_id"]: t["requests"] for t in report["top_accounts"]["by_requests"]}
        assert got == dict(accounts)
    assert summary.fed == len(made)
    assert summary.too_old == sum(int(e.time) < end - window + 1 for e in made)
    assert summary.newest_seq == len(made)


def test_old_seconds_leave_the_window() -> None:
    now = [NOW]
    summary = Summary(10, clock=lambda: now[0])
    summary.add([E(NOW, 1, 200, 5, "m", 1)])
    assert summary.report()["totals"]["requests"] == 1
    now[0] += 10
    report = summary.report()
    assert report["totals"]["requests"] == 0 and report["models"] == []
    assert summary.seconds == {}


def test_quantile_of_an_empty_histogram_and_bad_window() -> None:
    assert quantile({}, 0.5) is None
    assert quantile({0: 3}, 0.99) == 0.0
    with pytest.raises(ValueError):
        Summary(0)
