"""``cxrkit`` console script entry point.

Each command group lives in its own module exposing ``register(subparsers)``; the handler is stored as
``func`` on the parsed namespace and returns an exit status. Errors from bad input
(:class:`~cxrkit.errors.CxrkitError`) are printed as one line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from cxrkit import __version__
from cxrkit.errors import CxrkitError, MissingDependencyError

# Command-group modules under cxrkit.cli, in the order they appear in --help.
COMMAND_MODULES: tuple[str, ...] = ("demo", "stats", "nih", "chexmask", "reports", "train", "predict", "evaluate", "bench", "measure", "segment", "qc", "analyze", "serve", "query", "batch")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxrkit",
        description="Chest X-ray toolkit for NIH ChestX-ray14 and CheXmask.",
    )
    parser.add_argument("--version", action="version", version=f"cxrkit {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"cxrkit.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (CxrkitError, MissingDependencyError, FileNotFoundError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"cxrkit {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `cxrkit stats ... | head`
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
