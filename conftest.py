"""The implementation facade every test and benchmark derives its fixtures from.

fastopslog has two implementations of one API: the pure module
``fastopslog._opslog_py`` and the compiled core ``fastopslog._opslog_c``.
:class:`Implementation` names one of them (after multidict's
``MultidictImplementation``). The ``implementation`` fixture is parametrized
over both (ids ``pure`` and ``c``, the compiled one marked ``c_extension``);
``impl`` is its module, ``c_impl`` the compiled core for what only it has.

One rule for the compiled core: when it is missing, or there but broken, its
tests fail; they never skip. ``--no-c-extensions`` is the one way to leave it
out: it deselects every test marked ``c_extension`` and sets
``FASTOPSLOG_NO_EXTENSIONS=1``, so that ``import fastopslog`` gives the pure
implementation too.

What takes the package's default implementation, as a gateway does (the ASGI
middleware and routes), runs on the one ``import fastopslog`` picked in this
process (``package_implementation``); a test that takes
``other_implementation`` gets each other implementation under test, to run a
child process on it with ``other_implementation.env()``.

It sits at the root of the repository so that ``tests/`` and ``benchmarks/``
share it, with the Hypothesis profile and ``fast_switch``.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

import pytest
from hypothesis import HealthCheck, settings

# No example database in the work tree, and no per-example deadline: the
# test machine is small and noisy.
settings.register_profile(
    "fastopslog", database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("fastopslog")

NO_EXTENSIONS_ENV = "FASTOPSLOG_NO_EXTENSIONS"


@dataclass(frozen=True)
class Implementation:
    """One implementation of the API: its test id, module and kind."""

    name: str
    module_name: str
    compiled: bool

    def __str__(self) -> str:
        return self.name

    @property
    def module(self) -> ModuleType:
        """The imported module; a compiled core that does not import fails
        the test that asked for it."""
        try:
            return importlib.import_module(self.module_name)
        except ImportError as exc:
            if not self.compiled:
                raise
            pytest.fail(
                f"the compiled core {self.module_name} does not import "
                f"({type(exc).__name__}: {exc}); --no-c-extensions leaves it out",
                pytrace=False,
            )

    def env(self) -> dict[str, str]:
        """``os.environ`` for a child process whose ``import fastopslog``
        picks this implementation."""
        env = {k: v for k, v in os.environ.items() if k != NO_EXTENSIONS_ENV}
        if not self.compiled:
            env[NO_EXTENSIONS_ENV] = "1"
        return env


PURE = Implementation("pure", "fastopslog._opslog_py", compiled=False)
COMPILED = Implementation("c", "fastopslog._opslog_c", compiled=True)


def _param(implementation: Implementation) -> object:
    marks = [pytest.mark.c_extension] if implementation.compiled else []
    return pytest.param(implementation, id=implementation.name, marks=marks)


def _under_test(config: pytest.Config) -> tuple[Implementation, ...]:
    return (PURE, COMPILED) if config.getoption("c_extensions") else (PURE,)


def _package_implementation() -> Implementation:
    import fastopslog

    return COMPILED if fastopslog.USE_EXTENSIONS else PURE


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
        help="leave the compiled core out: deselect its tests, import the pure implementation",
    )


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("c_extensions"):
        # Before any test module imports fastopslog, so that its default
        # is the pure implementation too.
        os.environ[NO_EXTENSIONS_ENV] = "1"


def pytest_report_header(config: pytest.Config) -> str:
    if not config.getoption("c_extensions"):
        return "fastopslog compiled core: left out by --no-c-extensions"
    return f"fastopslog compiled core: {COMPILED.module_name} (its tests fail if it does not import)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("c_extensions"):
        return
    kept: list[pytest.Item] = []
    left_out: list[pytest.Item] = []
    for item in items:
        (left_out if item.get_closest_marker("c_extension") else kept).append(item)
    config.hook.pytest_deselected(items=left_out)
    items[:] = kept


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "other_implementation" in metafunc.fixturenames:
        # The compiled one is marked, so --no-c-extensions deselects it.
        default = _package_implementation()
        others = [_param(i) for i in (PURE, COMPILED) if i != default]
        metafunc.parametrize("other_implementation", others)


@pytest.fixture(scope="session", params=[_param(PURE), _param(COMPILED)])
def implementation(request: pytest.FixtureRequest) -> Implementation:
    """The implementation under test."""
    result: Implementation = request.param
    return result


@pytest.fixture(scope="session")
def impl(implementation: Implementation) -> ModuleType:
    """The module under test: ``OpsLogEntry``, ``OpsLogFilter``,
    ``OpsLogBroadcaster``, ``OpsLogSubscription``."""
    return implementation.module


@pytest.fixture(scope="session")
def c_impl() -> ModuleType:
    """The compiled core, for the tests (marked ``c_extension``) of what only it has."""
    return COMPILED.module


@pytest.fixture(scope="session")
def package_implementation() -> Implementation:
    """The implementation ``import fastopslog`` picked in this process."""
    return _package_implementation()


@pytest.fixture(scope="session")
def implementations_under_test(pytestconfig: pytest.Config) -> tuple[ModuleType, ...]:
    """The modules of every implementation under test (both, unless
    ``--no-c-extensions``)."""
    return tuple(i.module for i in _under_test(pytestconfig))


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
