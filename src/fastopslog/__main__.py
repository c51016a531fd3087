"""``python -m fastopslog COMMAND``: ``bench``, ``demo``, ``serve`` and ``soak``.

Each command lives in its own module, which adds its arguments and sets
``run``. Only the module of the command being run is imported: ``--help``
lists the commands from the summaries here, without importing any of them.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

# command -> (module, one-line summary for --help)
COMMANDS = {
    "bench": ("._bench", "measure publish, snapshot and entry overhead"),
    "demo": ("._demo", "run a fake LLM gateway with the ops log middleware and live page"),
    "serve": (
        "._serve",
        "serve the admin routes and live page for a log outside this process (--redis URL or --shared NAME)",
    ),
    "soak": (
        "._soak",
        "run publishers, churning subscriptions and readers for a while, checking every count",
    ),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m fastopslog",
        description="fastopslog tools for the machine it is installed on.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    # The top-level parser has no option that takes a value, so the first
    # argument that is not an option is the command.
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    for name, (module, summary) in COMMANDS.items():
        command = commands.add_parser(name, help=summary)
        if name == chosen:
            import_module(module, __package__).add_arguments(command)
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
