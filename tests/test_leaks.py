"""Leak checks, each in a fresh interpreter (as multidict does).

The scripts in ``tests/isolated/`` take the implementation on their command
line (``pure`` or ``c``, the name of the facade's ``implementation``), exit
non-zero with a message saying what leaked, and are run here once per
implementation:

- ``publish_churn.py``: a million publishes (200,000 for the slower pure
  implementation) with subscriptions coming and going leave reference
  counts, gc-tracked objects, allocated blocks, traced memory and RSS flat;
- ``entries_collectable.py``: weak references to published entries die once
  history and every buffer (drained, evicted, unsubscribed, collected) let
  go of them;
- ``dropped_subscription.py``: a subscription dropped without
  ``unsubscribe()`` is unsubscribed by the garbage collector, also when the
  collector runs inside another call on the same broadcaster, and its
  buffered entries are freed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ISOLATED = Path(__file__).parent / "isolated"
TIMEOUT = 300  # against a hang only; the scripts take seconds

SCRIPTS = ["publish_churn", "entries_collectable", "dropped_subscription"]

pytestmark = pytest.mark.leaks


@pytest.mark.parametrize("script", SCRIPTS)
def test_leaks(script: str, implementation: Any) -> None:
    name = implementation.name
    path = ISOLATED / f"{script}.py"
    try:
        proc = subprocess.run(
            [sys.executable, "-I", "-W", "error", str(path), name],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{script} [{name}] did not finish in {TIMEOUT} s:\n{exc.stderr!r}", pytrace=False)
    report = f"{script} [{name}] exited {proc.returncode}\n--- stdout\n{proc.stdout}--- stderr\n{proc.stderr}"
    if proc.returncode != 0:
        pytest.fail(report, pytrace=False)
    # A warning, or an exception swallowed in a finalizer, is a failure too.
    if proc.stderr:
        pytest.fail(f"wrote to stderr: {report}", pytrace=False)
    assert proc.stdout.rstrip().endswith(f"{script} [{name}]: ok"), report
