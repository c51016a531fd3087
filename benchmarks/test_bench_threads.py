"""Publishing from two threads at once, and an asyncio consumer fed by a
publisher thread."""

from __future__ import annotations

from fastopslog._workload import AsyncConsumer, ThreadedPublish


def test_publish_two_threads(measure, impl):
    measure(ThreadedPublish(impl))


def test_asyncio_consumer(measure, impl):
    measure(AsyncConsumer(impl))
