"""Types shared by the demo sections."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path


@dataclass(frozen=True)
class DemoContext:
    """What a section gets: the output folder (write files under it, link them relatively)."""

    out: Path

    @property
    def sample_dir(self) -> Path:
        """Folder of the bundled sample data (read-only, inside the installed package)."""
        return Path(str(resources.files("cxrkit.demo") / "sample"))


@dataclass
class Section:
    """One block of the demo page: a title, an HTML fragment, and the files it wrote (relative paths)."""

    title: str
    html: str
    files: list[str] = field(default_factory=list)
