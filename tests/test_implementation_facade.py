"""The implementation facade's one rule, in a child pytest on a copy of the
package without its compiled core: the core's tests fail (they never skip),
and ``--no-c-extensions`` leaves them out."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
TIMEOUT = 120  # against a hang only

TEST = '''
def test_uses_the_implementation(impl):
    assert impl.OpsLogBroadcaster(4).stats().published == 0
'''

# The copy goes in front of sys.path; the facade is loaded as a plugin.
RUN = """
import sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import pytest
sys.exit(pytest.main(["-p", "conftest", "-p", "no:cacheprovider", "-q", "-rfEs", *sys.argv[3:]]))
"""


def _without_core(tmp_path: Path) -> Path:
    spec = importlib.util.find_spec("fastopslog")
    assert spec is not None and spec.origin is not None
    packages = tmp_path / "site"
    shutil.copytree(
        Path(spec.origin).parent, packages / "fastopslog",
        ignore=shutil.ignore_patterns("_opslog_c*", "__pycache__"),
    )
    (tmp_path / "test_one.py").write_text(TEST)
    return packages


def _pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    packages = _without_core(tmp_path)
    return subprocess.run(
        [sys.executable, "-c", RUN, str(packages), str(ROOT), "test_one.py", *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )


def test_a_missing_core_fails_its_tests(tmp_path: Path) -> None:
    proc = _pytest(tmp_path)
    report = proc.stdout + proc.stderr
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, report
    assert "1 passed, 1 error" in report, report
    assert "ERROR test_one.py::test_uses_the_implementation[c]" in report, report
    assert "the compiled core fastopslog._opslog_c does not import" in report, report
    assert "skipped" not in report, report


def test_no_c_extensions_leaves_the_core_out(tmp_path: Path) -> None:
    proc = _pytest(tmp_path, "--no-c-extensions")
    report = proc.stdout + proc.stderr
    assert proc.returncode == pytest.ExitCode.OK, report
    assert "1 passed, 1 deselected" in report, report
