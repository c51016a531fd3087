"""``python -m fastopslog bench``: the hot-path overhead of each available
implementation, measured on the user's own machine.

Each scenario of :mod:`fastopslog._workload` runs in batches; a batch is
timed with ``time.perf_counter_ns`` while the garbage collector is paused
(as ``timeit`` does), and a row reports the median batch divided by the
operations in it. Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from types import ModuleType
from typing import Any

from . import __version__, _workload


@dataclass(frozen=True)
class Budget:
    """How long to measure each scenario: at least ``min_batches`` after one
    untimed warm-up batch, then more while ``seconds`` (setup of each batch
    included) are not spent."""

    min_batches: int
    seconds: float
    max_batches: int = 1000


QUICK = Budget(min_batches=3, seconds=0.1)
FULL = Budget(min_batches=9, seconds=2.0)


@dataclass
class Result:
    impl: str
    key: str = ""
    title: str = ""
    unit: str = ""
    ops_per_batch: int = 1
    batch_ns: list[int] = field(default_factory=list)
    extra: dict[str, float] = field(default_factory=dict)
    # Why the scenario could not be measured; a core under development may
    # fail one scenario, and the others are still worth reporting.
    error: str = ""

    @property
    def ns_per_op(self) -> float:
        return statistics.median(self.batch_ns) / self.ops_per_batch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``python -m fastopslog bench``."""
    parser.description = (
        "Measure the hot-path overhead of each available implementation: "
        "nanoseconds per operation (median of timed batches), operations "
        "per second, and the compiled/pure time ratio when both are there."
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer batches per scenario: seconds, not minutes"
    )
    parser.add_argument(
        "--json", metavar="PATH", help="also write results and machine details here"
    )
    parser.add_argument(
        "--impl",
        choices=("both", "pure", "c", "auto"),
        default="both",
        help=(
            "both: every implementation that imports (the default); "
            "auto: the one `import fastopslog` uses"
        ),
    )
    parser.set_defaults(run=run)


def _implementations(choice: str) -> tuple[dict[str, ModuleType], dict[str, str]]:
    """The modules to measure, and why any asked for is missing."""
    if choice == "auto":
        import fastopslog

        names = ["c" if fastopslog.USE_EXTENSIONS else "pure"]
    elif choice == "both":
        names = list(_workload.IMPLEMENTATIONS)
    else:
        names = [choice]
    modules, missing = {}, {}
    for name in names:
        try:
            modules[name] = _workload.load_implementation(name)
        except ImportError as exc:
            missing[name] = str(exc)
    return modules, missing


def measure(scenario: _workload.Scenario, budget: Budget) -> list[int]:
    """Nanoseconds of each timed batch."""
    scenario.prepare()
    scenario.run()  # warm-up: caches, lazy imports, the first allocation of buffers
    timed: list[int] = []
    deadline = time.perf_counter() + budget.seconds
    while len(timed) < budget.min_batches or (
        len(timed) < budget.max_batches and time.perf_counter() < deadline
    ):
        scenario.prepare()
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            start = time.perf_counter_ns()
            scenario.run()
            timed.append(time.perf_counter_ns() - start)
        finally:
            if gc_was_enabled:
                gc.enable()
    scenario.verify()
    return timed


def measure_one(
    make: Callable[[ModuleType], _workload.Scenario],
    name: str,
    module: ModuleType,
    budget: Budget,
) -> Result:
    """Set up, measure and release one scenario for one implementation,
    saying what it is doing on stderr."""
    result = Result(name)
    try:
        with make(module) as scenario:
            result.key, result.title = scenario.key, scenario.title
            result.unit, result.ops_per_batch = scenario.unit, scenario.ops
            print(f"{scenario.title} ... ", end="", file=sys.stderr, flush=True)
            result.batch_ns = measure(scenario, budget)
            result.extra = scenario.extra()
    except Exception as exc:  # reported, and the other scenarios still run
        result.error = f"{type(exc).__name__}: {exc}"
        print(f"FAILED: {result.error}", file=sys.stderr)
    else:
        print(f"{format_ns(result.ns_per_op)} ({len(result.batch_ns)} batches)", file=sys.stderr)
    return result


def format_ns(ns: float) -> str:
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def format_rate(ns: float) -> str:
    rate = 1e9 / ns
    for unit, scale in (("M/s", 1e6), ("k/s", 1e3)):
        if rate >= scale:
            return f"{rate / scale:.3g} {unit}"
    return f"{rate:.3g} /s"


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                name, _, value = line.partition(":")
                if name.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or None


def metadata(
    args: argparse.Namespace, modules: dict[str, ModuleType], missing: dict[str, str]
) -> dict[str, Any]:
    import fastopslog

    return {
        "command": f"python -m fastopslog bench --impl {args.impl}"
        + (" --quick" if args.quick else ""),
        "fastopslog": __version__,
        "measured": {name: module.__name__ for name, module in modules.items()},
        "not_available": missing,
        "import_fastopslog_uses": "c" if fastopslog.USE_EXTENSIONS else "pure",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _header(meta: dict[str, Any]) -> str:
    lines = [
        f"{meta['command']}  (fastopslog {meta['fastopslog']}, {meta['date']})",
        f"{meta['python']} on {meta['platform']}",
        f"CPU: {meta['cpu'] or 'unknown'}, {meta['cpu_count']} logical CPUs",
        "measured: "
        + ", ".join(f"{name} ({module})" for name, module in meta["measured"].items()),
        f"`import fastopslog` uses: {meta['import_fastopslog_uses']}",
    ]
    for name, reason in meta["not_available"].items():
        lines.append(f"not available: {name} ({reason})")
    return "\n".join(lines)


def _cells(result: Result) -> list[str]:
    if result.error:
        return ["failed", ""]
    return [format_ns(result.ns_per_op), format_rate(result.ns_per_op)]


def _title(row: dict[str, Result]) -> str:
    return next((r.title for r in row.values() if r.title), "(a scenario that failed to set up)")


def table(rows: list[dict[str, Result]], impls: list[str]) -> str:
    """One row per scenario; the ratio column when both implementations ran."""
    header = ["scenario"]
    for name in impls:
        header += [f"{name} per op", f"{name} ops/s"]
    ratio = impls == ["pure", "c"]
    if ratio:
        header.append("c/pure")
    lines = [header]
    for row in rows:
        cells = [_title(row)]
        for name in impls:
            cells += _cells(row[name])
        if ratio:
            pure, c = row["pure"], row["c"]
            cells.append("" if pure.error or c.error else f"{c.ns_per_op / pure.ns_per_op:.3g}")
        lines.append(cells)
    widths = [max(len(cells[i]) for cells in lines) for i in range(len(header))]
    text = [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()
        for cells in lines
    ]
    text.insert(1, "-" * max(map(len, text)))
    text += ["", "per op: median batch time / operations in the batch."]
    if ratio:
        text.append("c/pure: compiled time / pure time (below 1: the compiled core is faster).")
    for row in rows:
        for r in row.values():
            for figure, value in r.extra.items():
                text.append(
                    f"{_title(row)} [{r.impl}]: {figure} = {value:.3g}"
                    f" (batches of {r.ops_per_batch:,} {r.unit})"
                )
            if r.error:
                text.append(f"{_title(row)} [{r.impl}] failed: {r.error}")
    return "\n".join(text)


def run(args: argparse.Namespace) -> int:
    modules, missing = _implementations(args.impl)
    if not modules:
        print(f"nothing to measure: {missing}", file=sys.stderr)
        return 2
    budget = QUICK if args.quick else FULL
    total = len(_workload.SCENARIOS) * len(modules)
    rows: list[dict[str, Result]] = []
    done = 0
    # Implementations alternate scenario by scenario, so a burst of noise
    # from a neighbour on the machine hits one row rather than one column.
    for make in _workload.SCENARIOS:
        row = {}
        for name, module in modules.items():
            done += 1
            counter = f"[{done:{len(str(total))}}/{total}]"
            print(f"{counter} {name:4} ", end="", file=sys.stderr, flush=True)
            row[name] = measure_one(make, name, module, budget)
        rows.append(row)
    meta = metadata(args, modules, missing)
    print(_header(meta))
    print()
    print(table(rows, list(modules)))
    if args.json:
        results = [
            {**asdict(r), **({} if r.error else {"ns_per_op": r.ns_per_op})}
            for row in rows
            for r in row.values()
        ]
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({**meta, "results": results}, out, indent=1)
            out.write("\n")
        print(f"\nwrote {args.json}", file=sys.stderr)
    return 1 if any(r.error for row in rows for r in row.values()) else 0
