"""``cxrkit`` console script entry point.

Each command group lives in its own module exposing ``register(subparsers)``; the handler is stored as
``func`` on the parsed namespace and returns an exit status.

Exit status, the same for every command: 0 success; 1 an input failed (a bad file, row or value:
:class:`~cxrkit.errors.InputError`, a model that cannot be used, an I/O error) or, for commands over many
images, at least one image failed (the others are done); 2 a usage error (a bad option or argument:
:class:`~cxrkit.errors.UsageError`, argparse's errors, a missing optional extra); 130 interrupted. Every
error is one line on stderr, ``cxrkit COMMAND: error: ...``; ``-vv`` adds the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import NoReturn, Sequence

from cxrkit import __version__
from cxrkit.errors import CxrkitError, one_line

log = logging.getLogger("cxrkit.cli")

# Command-group modules under cxrkit.cli, in the order they appear in --help.
COMMAND_MODULES: tuple[str, ...] = ("demo", "stats", "nih", "chexmask", "reports", "train", "predict", "evaluate",
                                    "bench", "measure", "segment", "qc", "analyze", "serve", "query", "batch", "models")


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit 2) that name the command and point to its ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="cxrkit", description="Chest X-ray toolkit for NIH ChestX-ray14 and CheXmask.")
    parser.add_argument("--version", action="version", version=f"cxrkit {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"cxrkit.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return the exit status."""
    # OpenMP threads that spin while they wait make torch's CPU operators up to 100x slower as soon as another
    # process wants the same cores (measured: hybridgnet forward 11 ms -> 1,270 ms with a training job beside
    # it), which the engine's own decode workers do. Passive waiting costs nothing measurable on an idle machine
    # (bench/bench_pipeline.py --omp both). Only effective before torch is imported; a user's value wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors (2, already printed), --help and --version (0)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    where = f"cxrkit {args.command}"
    handler = _StderrHandler()
    handler.setFormatter(_Formatter(where, debug=args.verbose >= 2))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(level)
    made = _missing_output_dirs(args)
    rc = 1
    try:
        rc = int(args.func(args) or 0)
        return rc
    except CxrkitError as exc:  # usage (2), input / model (1), missing extra (2)
        _say(where, one_line(exc), args.verbose)
        return exc.exit_code
    except OSError as exc:  # a file system refusal: permission, disk full, a vanished file
        if isinstance(exc, BrokenPipeError):  # e.g. `cxrkit stats ... | head`
            return 0
        if isinstance(exc, (FileExistsError, NotADirectoryError)):  # a file where a folder is written
            _say(where, f"{exc.filename}: exists and is not a folder; give a folder path (or remove the file)",
                 args.verbose)
            return 2
        _say(where, one_line(exc), args.verbose)
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"{where}: interrupted\n")
        return 130
    except Exception as exc:  # a bug: still one line, the traceback with -vv
        _say(where, f"internal error ({type(exc).__name__}: {one_line(exc)}); please report it, with the "
                    "traceback `-vv` shows", args.verbose)
        return 1
    finally:
        if rc != 0:
            _remove_empty(made)
        root.removeHandler(handler)
        root.setLevel(old_level)


# Namespace attributes that name where a command writes (a file or a folder).
_OUTPUT_ATTRS = ("out", "masks", "annotated", "out_dir")


def _missing_output_dirs(args: argparse.Namespace) -> list:
    """The folders a command's outputs would create (the output itself if it is a folder path, and every
    missing parent), deepest first, so a failed command can remove those it left empty."""
    from pathlib import Path

    made = []
    for attr in _OUTPUT_ATTRS:
        value = getattr(args, attr, None)
        if not isinstance(value, (str, Path)) or not str(value):
            continue
        p = Path(value).absolute()
        for q in [p, *p.parents]:
            if q.exists():
                break
            made.append(q)
    return made


def _remove_empty(folders: list) -> None:
    """Remove the folders of :func:`_missing_output_dirs` that exist and are empty (deepest first)."""
    for q in sorted(set(folders), key=lambda p: len(p.parts), reverse=True):
        try:
            if q.is_dir() and not any(q.iterdir()):
                q.rmdir()
        except OSError:
            pass


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (so tests that capture it, and callers that replace
    it, see the messages)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # noqa: D401 - logging's attribute
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


class _Formatter(logging.Formatter):
    """``cxrkit COMMAND: error: message`` (one line per failed input, as the final error); ``-vv`` adds the
    logger name."""

    def __init__(self, where: str, debug: bool) -> None:
        super().__init__()
        self.where, self.debug = where, debug

    def format(self, record: logging.LogRecord) -> str:
        name = f" [{record.name}]" if self.debug else ""
        text = f"{self.where}: {record.levelname.lower()}{name}: {record.getMessage()}"
        if record.exc_info and self.debug:
            text += "\n" + self.formatException(record.exc_info)
        return text


def _say(where: str, message: str, verbose: int) -> None:
    if verbose >= 2:
        log.exception("traceback")
    sys.stderr.write(f"{where}: error: {message}\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
