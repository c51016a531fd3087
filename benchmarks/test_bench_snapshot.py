"""``snapshot`` over a full history."""

from __future__ import annotations

import pytest

from fastopslog import _workload
from fastopslog._workload import Snapshot


@pytest.mark.parametrize("size", _workload.SNAPSHOT_SIZES)
def test_snapshot_all(measure, impl, size):
    measure(Snapshot(impl, size, model_filter=False))


@pytest.mark.parametrize("size", _workload.SNAPSHOT_SIZES)
def test_snapshot_model_filter(measure, impl, size):
    measure(Snapshot(impl, size, model_filter=True))
