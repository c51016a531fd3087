"""Building entries and rendering them as JSON."""

from __future__ import annotations

from fastopslog._workload import BuildEntry, ToJson


def test_entry_from_12_keywords(measure, impl):
    measure(BuildEntry(impl))


def test_to_json_fresh(measure, impl):
    measure(ToJson(impl, rendered=False))


def test_to_json_rendered(measure, impl):
    measure(ToJson(impl, rendered=True))
