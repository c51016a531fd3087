"""The ASGI tests on every implementation.

The middleware and the routes build entries and filters of the
implementation ``import fastopslog`` picked, as a gateway does, so the ASGI
test modules run in this process on that one (``package_implementation``).
Here they run again, in a child pytest, on each other implementation under
test: ``FASTOPSLOG_NO_EXTENSIONS`` in the child's environment picks it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).parent
ASGI_MODULES = [
    "test_asgi_middleware.py",
    "test_asgi_routes.py",
    "test_asgi_uvicorn.py",
    "test_asgi_browser.py",
]
TIMEOUT = 900  # against a hang only; the modules take under a minute


def test_the_asgi_modules_exist() -> None:
    """Guards the list above against a renamed or moved module."""
    missing = [name for name in ASGI_MODULES if not (TESTS / name).is_file()]
    assert missing == []


def test_asgi_modules_on(other_implementation: Any) -> None:
    code = (
        "import sys, fastopslog, pytest\n"
        "print('implementation:', 'c' if fastopslog.USE_EXTENSIONS else 'pure')\n"
        "sys.exit(pytest.main(sys.argv[1:]))\n"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code, "-q", "-p", "no:cacheprovider", *ASGI_MODULES],
            cwd=TESTS,
            env=other_implementation.env(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the ASGI modules did not finish in {TIMEOUT} s:\n{exc.stdout!r}", pytrace=False)
    report = f"exit {proc.returncode}\n--- stdout\n{proc.stdout}--- stderr\n{proc.stderr}"
    assert proc.stdout.startswith(f"implementation: {other_implementation.name}\n"), report
    if proc.returncode != 0:
        pytest.fail(f"the ASGI modules on {other_implementation.name}: {report}", pytrace=False)
