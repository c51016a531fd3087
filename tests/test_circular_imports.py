"""Imports in fresh interpreters, with warnings as errors (as multidict does).

- ``import fastopslog`` picks the compiled core by default, and the pure one
  with ``FASTOPSLOG_NO_EXTENSIONS=1``; in a copy of the package, a core that
  is missing gives the pure one and a core that is there but broken raises;
- every module of the package imports on its own (no circular import, no
  warning, nothing printed to stderr), with and without the compiled core;
- ``python -m fastopslog --help`` lists the commands without importing
  them, and a command imports only its own module.

``-I`` isolates the child from the environment (``PYTHON*`` variables, the
user site, the current directory), so it sees the installed package only.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path
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
    "fastopslog._broadcaster_py",
    "fastopslog._entry_py",
    "fastopslog._filter_py",
    "fastopslog._opslog_py",
    "fastopslog._ring_py",
    "fastopslog._subscription_py",
    "fastopslog._waiting",
}
# The modules of the ``python -m fastopslog`` commands and what only they use.
TOOL_MODULES = {
    "fastopslog._bench",
    "fastopslog._demo",
    "fastopslog._demo_workers",
    "fastopslog._serve",
    "fastopslog._soak",
    "fastopslog._workload",
}
TIMEOUT = 120  # against a hang only


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


def _run(code: str, no_extensions: bool, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-I", "-W", "error", "-c", code, *args],
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


# Its arguments, if any, go in front of sys.path.
PROBE = f"""
import json, sys
sys.path[:0] = sys.argv[1:]
import fastopslog
print(json.dumps({{
    "file": fastopslog.__file__,
    "use_extensions": fastopslog.USE_EXTENSIONS,
    "modules": {{n: getattr(fastopslog, n).__module__ for n in {CORE_NAMES!r}}},
    "missing": [n for n in fastopslog.__all__ if not hasattr(fastopslog, n)],
    "loaded": sorted(m for m in sys.modules if m.startswith("fastopslog")),
}}))
"""


def _probe(no_extensions: bool, *path: str) -> dict[str, Any]:
    proc = _run(PROBE, no_extensions, *path)
    _check_clean(proc, "import fastopslog")
    result: dict[str, Any] = json.loads(proc.stdout)
    assert result["missing"] == [], f"names in __all__ that are missing: {result['missing']}"
    return result


@pytest.mark.c_extension
def test_compiled_core_is_the_default() -> None:
    result = _probe(no_extensions=False)
    assert result["use_extensions"] is True, (
        f"`import fastopslog` gave the pure implementation: {C_MODULE} is not built"
    )
    assert result["modules"] == {name: C_MODULE for name in CORE_NAMES}
    assert C_MODULE in _importables()


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


# Importing the compiled core, or the package by default, is a test of the core.
@pytest.mark.parametrize(
    "no_extensions",
    [
        pytest.param(False, id="default", marks=pytest.mark.c_extension),
        pytest.param(True, id="no-extensions"),
    ],
)
@pytest.mark.parametrize(
    "module",
    [pytest.param(m, marks=[pytest.mark.c_extension] if m == C_MODULE else []) for m in _importables()],
)
def test_module_imports_on_its_own(module: str, no_extensions: bool) -> None:
    _check_clean(_run(f"import {module}", no_extensions), f"import {module}")


# ------------------------------------------- a missing or a broken core ---


def _copy_of_the_package(tmp_path: Path, core: str | None) -> str:
    """A copy of the pure package under ``tmp_path``, with ``core`` (Python
    source) as its ``_opslog_c`` module, or none; returns the path to put in
    front of ``sys.path``."""
    spec = importlib.util.find_spec(PACKAGE)
    assert spec is not None and spec.origin is not None
    target = tmp_path / PACKAGE
    shutil.copytree(
        Path(spec.origin).parent, target,
        ignore=shutil.ignore_patterns("_opslog_c*", "__pycache__"),
    )
    if core is not None:
        (target / "_opslog_c.py").write_text(core)
    return str(tmp_path)


def test_a_missing_core_gives_the_pure_implementation(tmp_path: Path) -> None:
    path = _copy_of_the_package(tmp_path, core=None)
    result = _probe(False, path)
    assert result["file"].startswith(path), f"the copy was not imported: {result['file']}"
    assert result["use_extensions"] is False
    assert result["modules"] == {name: PURE_MODULE for name in CORE_NAMES}


@pytest.mark.parametrize(
    "core, error",
    [
        ('raise ImportError("undefined symbol: PyFoo")\n', "ImportError: undefined symbol: PyFoo"),
        # A missing module, but not the core itself: still a broken core.
        ("import fastopslog._no_such_dependency\n", "ModuleNotFoundError: No module named"),
    ],
    ids=["import-error", "its-own-import-missing"],
)
def test_a_broken_core_raises(tmp_path: Path, core: str, error: str) -> None:
    path = _copy_of_the_package(tmp_path, core)
    proc = _run(PROBE, False, path)
    assert proc.returncode == 1, f"a broken core was not refused:\n{proc.stdout}{proc.stderr}"
    assert error in proc.stderr and f"{path}/{PACKAGE}/_opslog_c.py" in proc.stderr, proc.stderr
    # FASTOPSLOG_NO_EXTENSIONS=1 is the way around it: the core is not even loaded.
    result = _probe(True, path)
    assert result["file"].startswith(path), f"the copy was not imported: {result['file']}"
    assert result["use_extensions"] is False
    assert result["modules"] == {name: PURE_MODULE for name in CORE_NAMES}
    assert C_MODULE not in result["loaded"]


# ------------------------------------------------ the command line tool ---


# Runs ``python -m fastopslog`` with its arguments, then writes the modules
# of the package it imported to stderr, whatever way it exits.
RUN_MAIN = f"""
import json, runpy, sys
sys.argv[0] = {PACKAGE!r}
try:
    runpy.run_module({PACKAGE!r}, run_name="__main__", alter_sys=True)
finally:
    loaded = sorted(m for m in sys.modules if m.split(".")[0] == {PACKAGE!r})
    print(json.dumps(loaded), file=sys.stderr)
"""


def _imported_by(*args: str) -> tuple[str, set[str]]:
    """What ``python -m fastopslog ARGS`` prints, and the modules of the
    package it imported."""
    proc = _run(RUN_MAIN, True, *args)
    assert proc.returncode == 0, proc.stderr
    imported = set(json.loads(proc.stderr.splitlines()[-1]))
    assert PACKAGE in imported, proc.stderr
    return proc.stdout, imported


def test_help_lists_the_commands_without_importing_them() -> None:
    out, imported = _imported_by("--help")
    assert re.findall(r"^    (\w+) ", out, re.M) == ["bench", "demo", "serve", "soak"], out
    assert imported & TOOL_MODULES == set(), f"--help imported {sorted(imported & TOOL_MODULES)}"


@pytest.mark.parametrize(
    "command, needs",
    [
        ("bench", {"_bench", "_workload"}),
        ("demo", {"_demo"}),
        ("serve", {"_serve"}),
        ("soak", {"_soak", "_workload"}),
    ],
)
def test_a_command_imports_only_its_own_module(command: str, needs: set[str]) -> None:
    out, imported = _imported_by(command, "--help")
    assert out.startswith(f"usage: python -m fastopslog {command} "), out
    assert imported & TOOL_MODULES == {f"{PACKAGE}.{name}" for name in needs}
