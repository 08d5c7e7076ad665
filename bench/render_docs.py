"""Docs figures from the files that hold them: fill (or check) the benchmark figures in README.md and docs/*.md.

Usage: python bench/render_docs.py [--check] [--root DIR] [--spec bench/figures.toml]

Every figure a page quotes from a benchmark lives in the raw output of the command that measured it,
``bench/results/<name>.txt`` (first line ``$ <exact command>``). ``bench/figures.toml`` names each figure
and says where to find it::

    [rle_discard_speedup_warm]
    file = "bench/results/rle.txt"
    pattern = 'discard cold [\\d.]+x, warm ([\\d.]+x)'   # a regex with exactly one capture group,
                                                       # matching exactly once in the file (re.MULTILINE)
    format = "{num:,.0f}"                              # optional, default "{value}": a str.format template;
                                                       # value = the captured text, num = it as a float
                                                       # (thousands commas dropped)

The pages carry markers that render as the bare value on GitHub:

* ``<!--fig:NAME-->VALUE<!--/fig-->`` on one line: VALUE is the figure ``NAME`` from the spec;
* ``<!--figfile:bench/results/x.txt-->`` on a line of its own, then a fenced block holding that whole file (a
  ``.md`` file -- a Markdown table, its command in ``<!-- $ ... -->`` comment lines -- goes in unfenced),
  then ``<!--/figfile-->``: a raw output quoted verbatim.

Without ``--check`` the values between markers are rewritten from the files (each changed page written
atomically). With ``--check`` nothing is written; each page value that differs from its file is one line
(``README.md:376 fig rle_discard_speedup: doc says 3.6x, bench/results/rle.txt says 3.60x``) and the exit
status is 1. Errors (an unknown figure name, a pattern that does not match or matches twice, a missing
file, a marker left open, a figure no page uses in ``--check``) are one line each, exit status 1.
Exit status 0 when every page agrees with its files.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPEC = Path("bench/figures.toml")
FIG = re.compile(r"<!--fig:([A-Za-z0-9_.-]+)-->(.*?)<!--/fig-->")
FIG_OPEN = re.compile(r"<!--fig:[A-Za-z0-9_.-]+-->")
FILE_BLOCK = re.compile(r"^<!--figfile:([^>]+?)-->\n(.*?)^<!--/figfile-->$", re.M | re.S)
FILE_OPEN = re.compile(r"<!--figfile:[^>]+?-->")


@dataclass(frozen=True)
class Figure:
    """One figure of the spec: its value, as the pages show it, and the file it comes from."""

    name: str
    file: str
    value: str


def doc_files(root: Path) -> list[Path]:
    """The pages that may carry figures: README.md and docs/*.md under ``root`` (relative paths)."""
    pages = [Path("README.md")] if (root / "README.md").is_file() else []
    return pages + sorted(p.relative_to(root) for p in (root / "docs").glob("*.md"))


def load_figures(root: Path, spec: Path = SPEC) -> tuple[dict[str, Figure | None], list[str]]:
    """Read the spec and extract every figure from its file; returns (figures by name, error lines).

    A figure whose entry has an error maps to None (its error line says why)."""
    errors: list[str] = []
    try:
        entries = tomllib.loads((root / spec).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        return {}, [f"{spec}: cannot read the figure spec: {e}"]
    figures: dict[str, Figure | None] = {}
    texts: dict[str, str] = {}
    for name, entry in entries.items():
        where = f"{spec} [{name}]"
        figures[name] = None
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or not isinstance(entry.get("pattern"), str):
            errors.append(f"{where}: expected a table with string keys 'file' and 'pattern'")
            continue
        unknown = set(entry) - {"file", "pattern", "format"}
        if unknown:
            errors.append(f"{where}: unknown keys {sorted(unknown)} (expected file, pattern, format)")
            continue
        file = entry["file"]
        if file not in texts:
            try:
                texts[file] = (root / file).read_text(encoding="utf-8")
            except OSError as e:
                errors.append(f"{where}: cannot read {file}: {e.strerror or e}")
                continue
        try:
            rx = re.compile(entry["pattern"], re.M)
        except re.error as e:
            errors.append(f"{where}: bad pattern {entry['pattern']!r}: {e}")
            continue
        if rx.groups != 1:
            errors.append(f"{where}: pattern {entry['pattern']!r} has {rx.groups} capture groups, expected exactly 1")
            continue
        matches = list(rx.finditer(texts[file]))
        if len(matches) != 1:
            lines = [texts[file].count("\n", 0, m.start()) + 1 for m in matches]
            errors.append(f"{where}: pattern {entry['pattern']!r} matches {len(matches)} times in {file}"
                          + (f" (lines {lines})" if lines else "") + ", expected exactly once")
            continue
        raw = matches[0].group(1)
        try:
            num = float(raw.replace(",", "").rstrip("x%"))
        except ValueError:
            num = None
        template = entry.get("format", "{value}")
        try:
            value = template.format(value=raw, num=num)
        except (KeyError, IndexError, ValueError, TypeError) as e:
            errors.append(f"{where}: format {template!r} cannot format {raw!r}: {e}")
            continue
        figures[name] = Figure(name, file, value)
    return figures, errors


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def render_text(page: str, text: str, figures: dict[str, Figure | None], root: Path) -> tuple[str, list[str], list[str], set[str]]:
    """Fill one page's markers: returns (new text, mismatch lines, error lines, figure names used)."""
    mismatches: list[str] = []
    errors: list[str] = []
    used: set[str] = set()
    src = text  # the text the current substitution scans (for line numbers); the closures read it when called

    def fig(m: re.Match) -> str:
        name, old = m.group(1), m.group(2)
        where = f"{page}:{_line(src, m.start())}"
        if name not in figures:
            errors.append(f"{where} fig {name}: no such figure in {SPEC}")
            return m.group(0)
        used.add(name)
        if figures[name] is None:  # its spec entry failed; that error is already listed
            return m.group(0)
        new = figures[name].value
        if old != new:
            mismatches.append(f"{where} fig {name}: doc says {old}, {figures[name].file} says {new}")
        return f"<!--fig:{name}-->{new}<!--/fig-->"

    def block(m: re.Match) -> str:
        file, old = m.group(1).strip(), m.group(2)
        where = f"{page}:{_line(src, m.start())}"
        try:
            body = (root / file).read_text(encoding="utf-8")
        except OSError as e:
            errors.append(f"{where} figfile {file}: cannot read it: {e.strerror or e}")
            return m.group(0)
        body = body if body.endswith("\n") else body + "\n"
        # a .md result (a Markdown table a script printed, its command in leading <!-- $ ... --> comments) goes in
        # as it is, so it renders as a table; any other file is quoted in a fenced block
        new = body if file.endswith(".md") else "```\n" + body + "```\n"
        if old != new:
            mismatches.append(f"{where} figfile {file}: the quoted block differs from the file")
        return f"<!--figfile:{m.group(1)}-->\n{new}<!--/figfile-->"

    # fig values never hold a newline, so filling them first keeps the line numbers of the figfile blocks
    out = FIG.sub(fig, text)
    for i, line in enumerate(out.split("\n")):
        if len(FIG_OPEN.findall(line)) != len(FIG.findall(line)):
            errors.append(f"{page}:{i + 1}: a <!--fig:NAME--> marker not closed by <!--/fig--> on the same line")
    if len(FILE_OPEN.findall(out)) != len(FILE_BLOCK.findall(out)):
        errors.append(f"{page}: a <!--figfile:...--> marker without its closing <!--/figfile--> line")
    src = out
    out = FILE_BLOCK.sub(block, out)
    return out, mismatches, errors, used


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run(root: Path, check: bool, spec: Path = SPEC) -> tuple[list[str], list[str], list[Path]]:
    """Check or render every page under ``root``; returns (mismatch lines, error lines, pages rewritten)."""
    figures, errors = load_figures(root, spec)
    mismatches: list[str] = []
    used: set[str] = set()
    written: list[Path] = []
    for page in doc_files(root):
        text = (root / page).read_text(encoding="utf-8")
        new, mis, err, names = render_text(str(page), text, figures, root)
        mismatches += mis
        errors += err
        used |= names
        if not check and new != text:
            _write_atomic(root / page, new)
            written.append(page)
    if check:
        errors += [f"{spec} [{name}]: no page uses this figure" for name in figures if name not in used]
    return mismatches, errors, written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="change nothing; list every page value that differs, exit 1")
    ap.add_argument("--root", type=Path, default=REPO, help="repository root (default: this checkout)")
    ap.add_argument("--spec", type=Path, default=SPEC, help="figure spec, relative to --root")
    args = ap.parse_args(argv)
    mismatches, errors, written = run(args.root, args.check, args.spec)
    for line in errors + mismatches:
        print(line)
    if args.check:
        if not errors and not mismatches:
            print(f"{len(doc_files(args.root))} pages agree with their result files")
        return 1 if errors or mismatches else 0
    for page in written:
        print(f"updated {page}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
