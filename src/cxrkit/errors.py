"""Exceptions raised by cxrkit, by kind.

Every error names the offending file, row or value and what was expected. The kinds decide what a caller
does with them:

=================================  ========================================  ========  ==============
class                              meaning                                   CLI exit  service status
=================================  ========================================  ========  ==============
:class:`UsageError`                a bad option, argument or combination     2         400
:class:`InputError`                a file, row or value that cannot be used  1         400
:class:`UnknownModelError`         an unknown registry name (or no weights)  2         500
:class:`ModelError`                a checkpoint or model that cannot be used 1         500
:class:`MissingDependencyError`    an optional extra is not installed        2         500
=================================  ========================================  ========  ==============

All derive from :class:`CxrkitError`; anything else escaping cxrkit is a bug (the CLI prints one line and
exits 1, the service answers 500 and logs the traceback).
"""

from __future__ import annotations

import importlib
from types import ModuleType


class CxrkitError(Exception):
    """Base of every error cxrkit raises on purpose; also used for bad input not yet given a finer kind."""

    exit_code: int = 1


class InputError(CxrkitError):
    """Bad input: a file, row or value that cxrkit cannot use (the message names it and what was expected)."""


class UsageError(CxrkitError):
    """A command-line option, argument or combination of them that cannot work (exit status 2)."""

    exit_code = 2


class ModelError(CxrkitError):
    """A model or checkpoint that cannot be used: unknown name, unreadable or tampered file, wrong task,
    weights that do not fit the architecture."""


class UnknownModelError(ModelError, UsageError):
    """A model name that the registry does not have (or has without weights): a usage error (exit 2)."""


class MissingDependencyError(CxrkitError, ImportError):
    """An optional dependency is not installed; the message carries the install hint."""

    exit_code = 2


def require(module: str, extra: str) -> ModuleType:
    """Import an optional module lazily, raising an install hint when it is missing.

    >>> np = require("numpy", "core")
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            f"{module!r} is needed for this feature; install it with: pip install 'cxrkit[{extra}]'"
        ) from exc


def one_line(exc: BaseException, where: object | None = None) -> str:
    """``exc`` as one line, prefixed with ``where`` (a file, row, ...) unless the message already names it."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        text = f"{exc.filename}: {exc.strerror}"
    if where is not None and str(where) not in text:
        text = f"{where}: {text}"
    return text
