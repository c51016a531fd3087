"""What the isolated leak scripts share: picking the implementation from
argv, memory readings, and failures that end the script with a clear
message and a non-zero exit status."""

from __future__ import annotations

import gc
import importlib
import os
import sys
from collections import Counter
from types import ModuleType

MODULES = {"pure": "fastopslog._opslog_py", "c": "fastopslog._opslog_c"}

# Exceptions raised where nobody can catch them (in __del__, in a weakref
# callback, in the garbage collector) are failures too.
UNRAISABLE: list[str] = []


def _unraisable(info: sys.UnraisableHookArgs) -> None:
    UNRAISABLE.append(f"{info.exc_type.__name__}: {info.exc_value} (in {info.object!r})")


sys.unraisablehook = _unraisable


def implementation() -> tuple[str, ModuleType]:
    """The implementation named by the first command line argument."""
    if len(sys.argv) < 2 or sys.argv[1] not in MODULES:
        sys.exit(f"usage: {os.path.basename(sys.argv[0])} {{{'|'.join(MODULES)}}} [...]")
    name = sys.argv[1]
    return name, importlib.import_module(MODULES[name])


def rss_bytes() -> int:
    """Resident set size, from /proc/self/statm; where there is no /proc,
    the peak resident set size (which a leak raises as well); 0 where there
    is neither."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        try:
            import resource
        except ImportError:  # Windows: no reading; the other checks remain
            return 0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def full_collect() -> None:
    for _ in range(3):
        gc.collect()


class Failures:
    """Collects failed checks; ``finish()`` reports them and exits 1."""

    def __init__(self, script: str, impl: str) -> None:
        self.script = script
        self.impl = impl
        self.messages: list[str] = []

    def check(self, ok: object, message: str) -> bool:
        if not ok:
            self.messages.append(message)
        return bool(ok)

    def finish(self) -> None:
        for message, count in Counter(UNRAISABLE).items():
            self.messages.append(f"unraisable exception ({count} times): {message}")
        if self.messages:
            print(f"{self.script} [{self.impl}]: {len(self.messages)} check(s) failed:", file=sys.stderr)
            for message in self.messages:
                print(f"  - {message}", file=sys.stderr)
            sys.exit(1)
        print(f"{self.script} [{self.impl}]: ok")
