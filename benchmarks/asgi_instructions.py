"""Instructions per request of one middleware on Starlette or FastAPI, in
process, counted by callgrind: a figure that does not move with the load of
a shared machine, and whose profile (``callgrind_annotate`` on the dump it
leaves) says where they go.

    python benchmarks/asgi_instructions.py starlette opslog [--number 2000] [--out cg.out]

Variants: ``plain`` (no middleware), ``pass`` (pass-through), ``status``
(the status-reading send wrapper), ``opslog`` (OpsLogMiddleware), ``dash``
(OpsLogMiddleware with 100 subscriptions whose filter nothing matches). The
process under callgrind warms up, then this driver zeroes the counters
(``callgrind_control --zero``), lets it serve ``--number`` requests with
the scopes of ``asgi_overhead apps``, and dumps them.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import subprocess
import sys
from typing import Any

# The neighbour module, by name: benchmarks/ is a directory of scripts, not
# a package on mypy's path (its conftest would clash with the root one).
asgi_overhead = importlib.import_module("asgi_overhead")

VARIANTS = ("plain", "pass", "status", "opslog", "dash")


def _app(framework: str, variant: str) -> Any:
    from fastopslog import OpsLogBroadcaster, OpsLogFilter
    from fastopslog.asgi import OpsLogMiddleware

    app = asgi_overhead._framework_app(framework)
    ops = OpsLogBroadcaster(history_cap=1000)
    if variant == "pass":
        app.add_middleware(asgi_overhead.PassThrough)
    elif variant == "status":
        app.add_middleware(asgi_overhead.SeeStatus)
    elif variant in ("opslog", "dash"):
        app.add_middleware(OpsLogMiddleware, broadcaster=ops)
    if variant == "dash":
        app.state.dashboards = [ops.subscribe(OpsLogFilter(min_status=500)) for _ in range(100)]
    return app


async def _serve(args: argparse.Namespace) -> None:
    """The counted side: warm up, then at each "go" of the driver serve the
    requests, or finish."""
    app = _app(args.framework, args.variant)
    await asgi_overhead._batch(app, 300)
    print("ready", flush=True)
    sys.stdin.readline()
    await asgi_overhead._batch(app, args.number)
    print("ready", flush=True)
    sys.stdin.readline()


def _drive(args: argparse.Namespace) -> None:
    command = [
        "valgrind", "--tool=callgrind", f"--callgrind-out-file={args.out}",
        sys.executable, __file__, args.framework, args.variant, "--number", str(args.number), "--counted",
    ]
    child = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert child.stdin is not None and child.stdout is not None
    for step in ("--zero", "--dump"):
        if child.stdout.readline().strip() != "ready":
            raise SystemExit("the counted process failed")
        subprocess.run(["callgrind_control", step, str(child.pid)], check=True, capture_output=True)
        child.stdin.write("go\n")
        child.stdin.flush()
    child.wait(600)
    with open(args.out + ".1") as dump:
        total = next(int(line.split()[1]) for line in dump if line.startswith(("summary:", "totals:")))
    print(f"{args.framework} {args.variant}: {total / args.number:.0f} instructions/request")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python benchmarks/asgi_instructions.py")
    parser.add_argument("framework", choices=("starlette", "fastapi"))
    parser.add_argument("variant", choices=VARIANTS)
    parser.add_argument("--number", type=int, default=2000)
    parser.add_argument("--out", default="", help="callgrind's dump (default: in the current directory)")
    parser.add_argument("--counted", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.counted:
        asyncio.run(_serve(args))
        return
    args.out = args.out or os.path.abspath(f"callgrind.{args.framework}-{args.variant}.out")
    _drive(args)


if __name__ == "__main__":
    main()
