"""Test-only set-up: the Hypothesis profile and ``fast_switch``.

The implementation fixtures (``implementation``, ``impl``, ``c_impl``, ...)
come from the facade in the repository's root ``conftest.py``, shared with
``benchmarks/``."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # pragma: no cover - hypothesis is a test dependency
    pass
else:
    # No example database in the work tree, and no per-example deadline:
    # the test machine is small and noisy.
    settings.register_profile(
        "fastopslog",
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.load_profile("fastopslog")


@pytest.fixture
def fast_switch() -> Iterator[None]:
    """Make the interpreter switch threads far more often, so concurrent
    tests interleave for real; restored afterwards."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(5e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(old)
