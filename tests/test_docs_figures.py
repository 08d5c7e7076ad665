"""Benchmark figures in README.md and docs/*.md are read from the raw outputs that hold them.

``bench/render_docs.py --check`` must pass on the real pages; every marker names a figure of
``bench/figures.toml`` and every figure is used; changing a result file makes the check fail until the
pages are rendered again. Fast: text only, no benchmark runs.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "render_docs.py"


def _load():
    spec = importlib.util.spec_from_file_location("render_docs", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


rd = _load()


def _copy_repo(dst: Path) -> Path:
    """The pages, the spec and the result files, copied to ``dst`` (a stand-in repository root)."""
    shutil.copy2(REPO / "README.md", dst / "README.md")
    shutil.copytree(REPO / "docs", dst / "docs", ignore=shutil.ignore_patterns("img", "*.png"))
    (dst / "bench").mkdir()
    shutil.copy2(REPO / "bench" / "figures.toml", dst / "bench" / "figures.toml")
    shutil.copytree(REPO / "bench" / "results", dst / "bench" / "results")
    figures, _ = rd.load_figures(REPO)
    for file in {f.file for f in figures.values() if f is not None}:  # the rest (e.g. the model cards' files)
        if not (dst / file).exists():
            (dst / file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / file, dst / file)
    return dst


def test_real_pages_agree_with_result_files():
    mismatches, errors, written = rd.run(REPO, check=True)
    assert errors == [] and mismatches == [], "\n".join(errors + mismatches)
    assert written == []


def test_check_command_exits_0_on_the_real_pages():
    out = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "agree" in out.stdout


def test_every_marker_is_known_and_every_figure_used():
    figures, errors = rd.load_figures(REPO)
    assert errors == [] and len(figures) >= 50
    used = set()
    for page in rd.doc_files(REPO):
        used |= {m.group(1) for m in rd.FIG.finditer((REPO / page).read_text(encoding="utf-8"))}
    assert used - set(figures) == set()
    assert set(figures) - used == set()
    # the benchmark table itself carries markers in every script row
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    rows = [line for line in readme.splitlines() if line.startswith(("| `bench/bench_", "| same, "))]
    assert len(rows) >= 15 and all("<!--fig:" in line for line in rows), [r[:60] for r in rows if "<!--fig:" not in r]


def test_result_files_start_with_their_command():
    figures, _ = rd.load_figures(REPO)
    files = {f.file for f in figures.values()}
    for page in rd.doc_files(REPO):  # raw outputs quoted whole count as used too
        files |= {m.group(1) for m in rd.FILE_BLOCK.finditer((REPO / page).read_text(encoding="utf-8"))}
    for path in sorted((REPO / "bench" / "results").glob("*.txt")):
        first, second = path.read_text(encoding="utf-8").splitlines()[:2]
        m = re.fullmatch(r"\$ (?:\.venv/bin/python (bench/bench_\w+\.py)|\.venv/bin/cxrkit [a-z-]+)( .*)?", first)
        assert m and (m.group(1) is None or (REPO / m.group(1)).is_file()), (path.name, first)
        assert second.startswith("# ") and "nproc" in second, (path.name, second)
        assert f"bench/results/{path.name}" in files, f"{path.name} holds no figure of the spec"


def test_changed_result_fails_the_check_and_render_fixes_it(tmp_path):
    root = _copy_repo(tmp_path)
    assert rd.run(root, check=True)[:2] == ([], [])
    rle = root / "bench" / "results" / "rle.txt"
    text = rle.read_text(encoding="utf-8")
    assert text.count("discard cold 3.60x") == 1
    rle.write_text(text.replace("discard cold 3.60x", "discard cold 9.99x"), encoding="utf-8")

    mismatches, errors, written = rd.run(root, check=True)
    assert errors == [] and written == []
    assert any(re.fullmatch(r"README\.md:\d+ fig rle_discard_speedup_cold: doc says 3\.60x, "
                            r"bench/results/rle\.txt says 9\.99x", line) for line in mismatches), mismatches
    assert rd.main(["--check", "--root", str(root)]) == 1
    assert "9.99x" not in (root / "README.md").read_text(encoding="utf-8")  # --check changed nothing

    assert rd.main(["--root", str(root)]) == 0
    assert "<!--fig:rle_discard_speedup_cold-->9.99x<!--/fig-->" in (root / "README.md").read_text(encoding="utf-8")
    assert rd.run(root, check=True)[:2] == ([], [])


def test_quoted_output_block_follows_its_file(tmp_path):
    root = _copy_repo(tmp_path)
    rca = root / "bench" / "results" / "rca.txt"
    rca.write_text(rca.read_text(encoding="utf-8") + "an extra line\n", encoding="utf-8")
    mismatches, errors, _ = rd.run(root, check=True)
    assert errors == [] and any("figfile bench/results/rca.txt" in m and m.startswith("docs/qc.md:") for m in mismatches)
    rd.run(root, check=False)
    assert "an extra line\n```\n<!--/figfile-->" in (root / "docs" / "qc.md").read_text(encoding="utf-8")
    assert rd.run(root, check=True)[:2] == ([], [])


@pytest.mark.parametrize("spec, page, expected", [
    ('[a]\nfile = "r.txt"\npattern = \'speed ([\\d.]+x)\'\n', "<!--fig:b-->1x<!--/fig-->",
     r"README\.md:1 fig b: no such figure in bench/figures\.toml"),
    ('[a]\nfile = "r.txt"\npattern = \'(\\d+) ms\'\n', "<!--fig:a-->1<!--/fig-->",
     r"bench/figures\.toml \[a\]: pattern .* matches 2 times in r\.txt \(lines \[1, 2\]\), expected exactly once"),
    ('[a]\nfile = "r.txt"\npattern = \'nothing (\\d+)\'\n', "<!--fig:a-->1<!--/fig-->",
     r"bench/figures\.toml \[a\]: pattern .* matches 0 times in r\.txt, expected exactly once"),
    ('[a]\nfile = "missing.txt"\npattern = \'(\\d+)\'\n', "<!--fig:a-->1<!--/fig-->",
     r"bench/figures\.toml \[a\]: cannot read missing\.txt: .*"),
    ('[a]\nfile = "r.txt"\npattern = \'speed ([\\d.]+)(x)\'\n', "<!--fig:a-->1<!--/fig-->",
     r"bench/figures\.toml \[a\]: pattern .* has 2 capture groups, expected exactly 1"),
    ('[a]\nfile = "r.txt"\npattern = \'speed ([\\d.]+x)\'\n', "text <!--fig:a-->2.5x",
     r"README\.md:1: a <!--fig:NAME--> marker not closed by <!--/fig--> on the same line"),
])
def test_errors_are_one_line_each_and_exit_1(tmp_path, capsys, spec, page, expected):
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "figures.toml").write_text(spec, encoding="utf-8")
    (tmp_path / "r.txt").write_text("run 12 ms\nrun 13 ms\nspeed 2.5x\n", encoding="utf-8")
    (tmp_path / "README.md").write_text(page + "\n", encoding="utf-8")
    assert rd.main(["--check", "--root", str(tmp_path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert any(re.fullmatch(expected, line) for line in lines), lines


def test_format_rounds_and_keeps_thousands(tmp_path):
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "figures.toml").write_text(
        '[t]\nfile = "r.txt"\npattern = \'took ([\\d.]+) us\'\nformat = "{num:,.0f}"\n', encoding="utf-8")
    (tmp_path / "r.txt").write_text("took 1213.7 us\n", encoding="utf-8")
    (tmp_path / "README.md").write_text("a <!--fig:t-->old<!--/fig--> us\n", encoding="utf-8")
    assert rd.main(["--root", str(tmp_path)]) == 0
    assert (tmp_path / "README.md").read_text(encoding="utf-8") == "a <!--fig:t-->1,214<!--/fig--> us\n"
