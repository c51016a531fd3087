"""``python -m fastopslog COMMAND``. Each command lives in its own module,
which adds its parser and sets ``run``; so far: ``bench`` and ``soak``."""

from __future__ import annotations

import argparse
import sys

from . import _bench, _soak
from . import _demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fastopslog",
        description="fastopslog tools for the machine it is installed on.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    _bench.add_parser(commands)
    _demo.add_parser(commands)
    _soak.add_parser(commands)
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
