"""``publish`` on the hot path: fan-out to drained, stalled and selective
subscribers, and stamping an entry whose time is 0."""

from __future__ import annotations

import pytest

from fastopslog import _workload
from fastopslog._workload import Publish


@pytest.mark.parametrize("subscribers", _workload.SUBSCRIBER_COUNTS)
def test_publish_drained(measure, impl, subscribers):
    measure(Publish(impl, subscribers))


@pytest.mark.parametrize("subscribers", _workload.STALLED_COUNTS)
def test_publish_stalled(measure, impl, subscribers):
    measure(Publish(impl, subscribers, "stalled"))


@pytest.mark.parametrize("subscribers", _workload.SELECTIVE_COUNTS)
def test_publish_selective(measure, impl, subscribers):
    measure(Publish(impl, subscribers, "selective"))


def test_publish_stamped(measure, impl):
    measure(Publish(impl, 0, stamped=True))
