"""Fixtures for the pytest-benchmark suite.

Every benchmark takes ``impl`` from the implementation facade in the root
``conftest.py`` (``pure`` and ``c``, the compiled core failing, not skipping,
when it does not import; ``--no-c-extensions`` leaves it out), so each gets a
name of its own (``test_x[pure-...]``, ``test_x[c-...]``) and results compare
across runs.

The scenarios themselves are in ``fastopslog._workload``, shared with
``python -m fastopslog bench``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from fastopslog import _workload

# Timed rounds per benchmark, after one warm-up round. Fixed, because
# pedantic mode (needed for the untimed setup of each round) does not
# calibrate; 25 keeps the slowest pure scenarios to a few seconds each.
ROUNDS = 25


@pytest.fixture
def measure(benchmark: BenchmarkFixture) -> Callable[[_workload.Scenario], None]:
    """Benchmark a scenario: each round is one batch of ``scenario.ops``
    operations, timed after an untimed ``prepare()``. The group names the
    batch, so read a round's time divided by it: with 1,000 operations a
    round, microseconds per round are nanoseconds per operation."""

    def measure(scenario: _workload.Scenario) -> None:
        with scenario:
            benchmark.group = f"{scenario.title} (round = {scenario.ops:,} {scenario.unit})"
            benchmark.extra_info["ops_per_round"] = scenario.ops
            benchmark.pedantic(
                scenario.run, setup=scenario.prepare, rounds=ROUNDS, warmup_rounds=1
            )
            scenario.verify()
            benchmark.extra_info.update(scenario.extra())

    return measure
