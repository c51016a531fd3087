"""Fixtures for the pytest-benchmark suite.

Every benchmark takes ``impl``, parametrized over the implementations
(``pure``, ``c``), so each gets a name of its own (``test_x[pure-...]``,
``test_x[c-...]``) and results compare across runs. ``c`` is skipped when the
compiled core is not built, unless ``FASTOPSLOG_REQUIRE_EXTENSIONS=1`` is set
(CI sets it): then it fails, so a broken build cannot pass as a pure run.

The scenarios themselves are in ``fastopslog._workload``, shared with
``python -m fastopslog bench``.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Callable

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from fastopslog import _workload

# Read as tests/conftest.py reads it, so one setting means the same to both.
REQUIRE_EXTENSIONS = os.environ.get("FASTOPSLOG_REQUIRE_EXTENSIONS", "").strip().lower() in (
    "1", "true", "yes", "on",
)
# Timed rounds per benchmark, after one warm-up round. Fixed, because
# pedantic mode (needed for the untimed setup of each round) does not
# calibrate; 25 keeps the slowest pure scenarios to a few seconds each.
ROUNDS = 25


@pytest.fixture(
    scope="session",
    params=["pure", pytest.param("c", marks=pytest.mark.c_extension)],
)
def impl(request: pytest.FixtureRequest) -> ModuleType:
    """The implementation module under measurement."""
    name: str = request.param
    try:
        return _workload.load_implementation(name)
    except ImportError as exc:
        if name == "pure":
            raise
        if REQUIRE_EXTENSIONS:
            pytest.fail(
                f"FASTOPSLOG_REQUIRE_EXTENSIONS is set, but the compiled core does not import: {exc}"
            )
        pytest.skip(f"the compiled core is not built: {exc}")


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
