"""Imports in fresh interpreters, with warnings as errors (as multidict does).

- ``import fastopslog`` picks the compiled core by default, and the pure one
  with ``FASTOPSLOG_NO_EXTENSIONS=1``;
- every module of the package imports on its own (no circular import, no
  warning, nothing printed to stderr), with and without the compiled core.

``-I`` isolates the child from the environment (``PYTHON*`` variables, the
user site, the current directory), so it sees the installed package only.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pkgutil
import subprocess
import sys
from typing import Any

import pytest

PACKAGE = "fastopslog"
C_MODULE = "fastopslog._opslog_c"
PURE_MODULE = "fastopslog._opslog_py"
NO_EXT = "FASTOPSLOG_NO_EXTENSIONS"
CORE_NAMES = ("OpsLogBroadcaster", "OpsLogEntry", "OpsLogFilter", "OpsLogSubscription")
# Modules that must exist whatever is built; the walk below must find them.
KNOWN = {
    "fastopslog",
    "fastopslog._common",
    "fastopslog._gojson",
    "fastopslog._opslog_py",
    "fastopslog._waiting",
}
TIMEOUT = 120  # against a hang only


def _extensions_required() -> bool:
    value = os.environ.get("FASTOPSLOG_REQUIRE_EXTENSIONS", "")
    return value.strip().lower() in ("1", "true", "yes", "on")


def _importables() -> list[str]:
    # Found without importing the package here, so that a package that does
    # not import fails the tests below rather than their collection.
    spec = importlib.util.find_spec(PACKAGE)
    assert spec is not None and spec.submodule_search_locations is not None
    names = [PACKAGE]
    for info in pkgutil.walk_packages(spec.submodule_search_locations, prefix=PACKAGE + "."):
        # Importing a __main__ runs the command line tool.
        if info.name.rsplit(".", 1)[-1] != "__main__":
            names.append(info.name)
    return sorted(names)


def _env(no_extensions: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != NO_EXT}
    if no_extensions:
        env[NO_EXT] = "1"
    return env


def _run(code: str, no_extensions: bool) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-I", "-W", "error", "-c", code],
        env=_env(no_extensions),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def _check_clean(proc: subprocess.CompletedProcess[str], what: str) -> None:
    assert proc.returncode == 0, (
        f"{what} failed in a fresh interpreter (exit {proc.returncode}):\n{proc.stderr}"
    )
    assert proc.stderr == "", f"{what} wrote to stderr:\n{proc.stderr}"


PROBE = f"""
import json, sys
import fastopslog
print(json.dumps({{
    "use_extensions": fastopslog.USE_EXTENSIONS,
    "modules": {{n: getattr(fastopslog, n).__module__ for n in {CORE_NAMES!r}}},
    "missing": [n for n in fastopslog.__all__ if not hasattr(fastopslog, n)],
    "loaded": sorted(m for m in sys.modules if m.startswith("fastopslog")),
}}))
"""


def _probe(no_extensions: bool) -> dict[str, Any]:
    proc = _run(PROBE, no_extensions)
    _check_clean(proc, "import fastopslog")
    result: dict[str, Any] = json.loads(proc.stdout)
    assert result["missing"] == [], f"names in __all__ that are missing: {result['missing']}"
    return result


def _require_compiled() -> None:
    if importlib.util.find_spec(C_MODULE) is None:
        reason = f"{C_MODULE} is not built"
        if _extensions_required():
            pytest.fail(f"{reason}, and FASTOPSLOG_REQUIRE_EXTENSIONS is set", pytrace=False)
        pytest.skip(reason)


@pytest.mark.c_extension
def test_compiled_core_is_the_default() -> None:
    _require_compiled()
    result = _probe(no_extensions=False)
    assert result["use_extensions"] is True, (
        f"{C_MODULE} exists but `import fastopslog` fell back to the pure "
        f"implementation; try `python -c 'import {C_MODULE}'` for the error"
    )
    assert result["modules"] == {name: C_MODULE for name in CORE_NAMES}


def test_no_extensions_env_gives_the_pure_implementation() -> None:
    result = _probe(no_extensions=True)
    assert result["use_extensions"] is False
    assert result["modules"] == {name: PURE_MODULE for name in CORE_NAMES}
    assert C_MODULE not in result["loaded"], (
        f"{NO_EXT}=1 must not even load the compiled core: {result['loaded']}"
    )


def test_every_known_module_is_found() -> None:
    """Guards the parametrization below against an empty or partial walk."""
    found = set(_importables())
    assert KNOWN <= found, f"not found by pkgutil.walk_packages: {sorted(KNOWN - found)}"
    if importlib.util.find_spec(C_MODULE) is not None:
        assert C_MODULE in found


@pytest.mark.parametrize("no_extensions", [False, True], ids=["default", "no-extensions"])
@pytest.mark.parametrize("module", _importables())
def test_module_imports_on_its_own(module: str, no_extensions: bool) -> None:
    _check_clean(_run(f"import {module}", no_extensions), f"import {module}")
