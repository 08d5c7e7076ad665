"""The one resumable-output protocol of cxrkit's long jobs: atomic parts plus a progress record.

A long job (``chexmask to-parquet``, ``batch``, the preprocessing cache) writes its output as parts, each
committed atomically (a hidden temporary renamed into place, then the folder synced), and keeps a
:class:`ProgressRecord`: one JSON file, replaced atomically, holding the job's *plan* (what it computes: its
inputs and options) and its *state* (what is done). A rerun of the same job reads the record and continues;
a rerun of another job into the same place is refused, naming the keys that differ, unless the caller asks
to start over. Temporaries left by a killed writer are removed before work resumes (:func:`remove_temporaries`).
A killed job therefore leaves whole parts and a record that never claims more than they hold.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable

from cxrkit.errors import UsageError
from cxrkit.io.atomic import write_text

log = logging.getLogger(__name__)


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename into it) to disk; a no-op where the OS does not allow it."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def commit_file(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Make the finished temporary ``tmp`` the file ``path``: flushed, renamed, the folder synced."""
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(Path(path).parent)


def remove_temporaries(folder: str | os.PathLike, patterns: Iterable[str] = (".*.tmp",)) -> int:
    """Remove the temporaries (hidden ``.*.tmp`` files by default) a killed writer left in ``folder``;
    returns how many. Call it only while no job writes there."""
    n = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    for pattern in patterns:
        for p in folder.glob(pattern):
            p.unlink(missing_ok=True)
            n += 1
    if n:
        log.info("%s: removed %d temporary file(s) of an interrupted run", folder, n)
    return n


class ProgressRecord:
    """A job's JSON progress record at ``path``: ``{"version", "plan", "state"}``, replaced atomically.

    Args:
        path: the record file.
        plan: what the job computes; a rerun continues only when the stored plan equals this one on ``keys``.
        keys: the plan keys that must match (None: all of them).
        version: the record format; another version is refused.
    """

    def __init__(self, path: str | os.PathLike, plan: dict[str, Any], keys: Iterable[str] | None = None,
                 version: int = 1) -> None:
        self.path = Path(path)
        self.plan = dict(plan)
        self.keys = tuple(keys) if keys is not None else tuple(plan)
        self.version = version

    def load(self, *, overwrite: bool = False, hint: str = "use another --out, or --overwrite to start over"
             ) -> dict[str, Any] | None:
        """The stored state of this job (None: nothing stored yet, or ``overwrite``); a record of another plan
        or format is a :class:`~cxrkit.errors.UsageError` naming the differences and ``hint``."""
        if overwrite or not self.path.is_file():
            return None
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"{self.path}: unreadable progress record ({exc}); {hint}") from None
        if not isinstance(doc, dict) or doc.get("version") != self.version or "plan" not in doc:
            raise UsageError(f"{self.path}: not a progress record of this version ({self.version}); {hint}")
        old = doc["plan"]
        diff = [k for k in self.keys if old.get(k) != self.plan.get(k)]
        if diff:
            raise UsageError(f"{self.path}: records another job (differs in {', '.join(diff)}: "
                             f"{ {k: old.get(k) for k in diff} } vs { {k: self.plan.get(k) for k in diff} }); {hint}")
        return doc.get("state")

    def save(self, state: dict[str, Any] | None = None) -> None:
        """Replace the record atomically with this plan and ``state``."""
        write_text(self.path, json.dumps({"version": self.version, "plan": self.plan, "state": state or {}},
                                         indent=1) + "\n")

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


__all__ = ["ProgressRecord", "commit_file", "fsync_dir", "remove_temporaries"]
