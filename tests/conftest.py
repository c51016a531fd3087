"""One suite for every implementation.

Every test that takes the ``impl`` fixture runs once against the pure module
``fastopslog._opslog_py`` (id ``pure``) and once against the compiled core
``fastopslog._opslog_c`` (id ``c``, marked ``c_extension``), the way
multidict and propcache run their suites.

When the compiled core cannot be imported, its tests are skipped with the
reason, unless ``FASTOPSLOG_REQUIRE_EXTENSIONS=1`` is set (CI sets it): then
they fail, so a broken build can never pass as a run of the pure module only.
``--no-c-extensions`` skips the compiled core on purpose.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType
from typing import Iterator

import pytest

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # pragma: no cover - hypothesis is a test dependency
    pass
else:
    # No example database in the work tree, and no per-example deadline:
    # the test machine is small and noisy.
    settings.register_profile(
        "fastopslog",
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.load_profile("fastopslog")

PURE_MODULE = "fastopslog._opslog_py"
C_MODULE = "fastopslog._opslog_c"
REQUIRE_ENV = "FASTOPSLOG_REQUIRE_EXTENSIONS"


def _extensions_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fastopslog")
    group.addoption(
        "--c-extensions",
        action="store_true",
        default=True,
        dest="c_extensions",
        help="also run every test against the compiled core (the default)",
    )
    group.addoption(
        "--no-c-extensions",
        action="store_false",
        dest="c_extensions",
        help="skip the tests of the compiled core",
    )


def pytest_configure(config: pytest.Config) -> None:
    if _extensions_required() and not config.getoption("c_extensions"):
        raise pytest.UsageError(
            f"{REQUIRE_ENV}=1 requires the compiled core to be tested, "
            "but --no-c-extensions was given"
        )


def _import_c() -> tuple[ModuleType | None, str]:
    try:
        return importlib.import_module(C_MODULE), ""
    except ImportError as exc:
        return None, f"{type(exc).__name__}: {exc}"


def pytest_report_header(config: pytest.Config) -> list[str]:
    if not config.getoption("c_extensions"):
        state = "disabled by --no-c-extensions"
    else:
        module, error = _import_c()
        state = f"available ({module.__file__})" if module else f"NOT importable ({error})"
    required = " (required)" if _extensions_required() else ""
    return [f"fastopslog compiled core{required}: {state}"]


@pytest.fixture(
    scope="session",
    params=[
        pytest.param("pure", id="pure"),
        pytest.param("c", id="c", marks=pytest.mark.c_extension),
    ],
)
def impl(request: pytest.FixtureRequest) -> ModuleType:
    """The implementation module under test: ``OpsLogEntry``,
    ``OpsLogFilter``, ``OpsLogBroadcaster``, ``OpsLogSubscription``."""
    if request.param == "pure":
        return importlib.import_module(PURE_MODULE)
    return request.getfixturevalue("c_impl")


@pytest.fixture(scope="session")
def c_impl(request: pytest.FixtureRequest) -> ModuleType:
    """The compiled core, for the tests of what only it has."""
    if not request.config.getoption("c_extensions"):
        pytest.skip("compiled core disabled by --no-c-extensions")
    module, error = _import_c()
    if module is None:
        if _extensions_required():
            pytest.fail(
                f"{REQUIRE_ENV}=1 but the compiled core {C_MODULE} cannot be "
                f"imported: {error}",
                pytrace=False,
            )
        pytest.skip(f"compiled core {C_MODULE} is not built ({error})")
    return module


@pytest.fixture
def fast_switch() -> Iterator[None]:
    """Make the interpreter switch threads far more often, so concurrent
    tests interleave for real; restored afterwards."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(5e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(old)
