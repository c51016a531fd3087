"""The shared-memory log (compiled core only): ``publish`` into it with no
reader in this process, beside the in-process broadcaster's, and a filtered
``snapshot`` of a full ring. Multi-process figures: ``benchmarks/shared_log.py``."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

from fastopslog import _workload, unlink_shared

pytestmark = pytest.mark.c_extension

CAP = 65536


@pytest.fixture
def shared(c_impl: ModuleType) -> Iterator[Any]:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    b = c_impl.SharedOpsLogBroadcaster(name, history_cap=CAP)
    try:
        yield b
    finally:
        b.close()
        unlink_shared(name)


class SharedPublish(_workload.Scenario):
    """``publish`` of fresh entries into the shared log, every page of its
    ring touched beforehand (as in a log that has wrapped once)."""

    unit = "publishes"
    ops = _workload.BATCH
    key = "shared-publish"
    title = "shared log: publish, no readers"

    def __init__(self, impl: ModuleType, shared: Any) -> None:
        self._shared = shared
        self._fields = _workload.request_fields(self.ops)
        self._entry = impl.OpsLogEntry
        self._entries: list[Any] = []
        for _ in range(CAP // self.ops + 1):
            self.prepare()
            self.run()
        self._start = shared.stats().published

    def prepare(self) -> None:
        self._entries = [self._entry(**f) for f in self._fields]

    def run(self) -> None:
        publish = self._shared.publish
        for entry in self._entries:
            publish(entry)

    def verify(self) -> None:
        done = self._shared.stats().published - self._start
        if done % self.ops or not done:
            raise RuntimeError(f"benchmark scenario went wrong: {done} publishes")


class SharedSnapshot(_workload.Scenario):
    """A filtered ``snapshot`` of a full ring matching nothing: the scan
    over shared memory, without the GIL."""

    unit = "snapshots"
    ops = 1
    key = "shared-snapshot-filtered"
    title = f"shared log: filtered snapshot of {CAP:,} records"

    def __init__(self, impl: ModuleType, shared: Any) -> None:
        self._shared = shared
        self._filter = impl.OpsLogFilter(model="no-such-model")
        for fields in _workload.request_fields(CAP):
            shared.publish(impl.OpsLogEntry(**fields))

    def run(self) -> None:
        if self._shared.snapshot(self._filter):
            raise RuntimeError("benchmark scenario went wrong: the snapshot matched")


def test_shared_publish(
    measure: Callable[[_workload.Scenario], None], c_impl: ModuleType, shared: Any
) -> None:
    measure(SharedPublish(c_impl, shared))


def test_shared_snapshot_filtered(
    measure: Callable[[_workload.Scenario], None], c_impl: ModuleType, shared: Any
) -> None:
    measure(SharedSnapshot(c_impl, shared))
