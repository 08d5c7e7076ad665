"""Exceptions raised by cxrkit.

Every error names the offending file, row or value and what was expected; the CLI prints the
message as one line on stderr and exits non-zero.
"""

from __future__ import annotations


class CxrkitError(ValueError):
    """Bad input: a file, row or value that cxrkit cannot use."""


class MissingDependencyError(ImportError):
    """An optional dependency is not installed; the message carries the install hint."""


def require(module: str, extra: str):
    """Import an optional module lazily, raising an install hint when it is missing.

    >>> np = require("numpy", "core")
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            f"{module!r} is needed for this feature; install it with: pip install 'cxrkit[{extra}]'"
        ) from exc
