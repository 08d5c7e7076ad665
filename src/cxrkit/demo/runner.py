"""Run every demo section on the bundled sample data and write ``index.html``.

Each section is a module in :mod:`cxrkit.demo.sections` with ``build(ctx) -> Section``. A section that
fails (for example an optional dependency is missing) is shown on the page with its error; the demo
still finishes and reports the failure in its exit status.
"""

from __future__ import annotations

import html
import importlib
import logging
import time
from pathlib import Path

from cxrkit import __version__
from cxrkit.demo.section import DemoContext, Section
from cxrkit.io.atomic import write_text

log = logging.getLogger(__name__)

# Section modules under cxrkit.demo.sections, in page order.
SECTIONS: tuple[str, ...] = ("nih", "chexmask", "reports", "classification", "segmentation", "qc", "analysis", "warehouse")

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cxrkit demo</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
h1 {{ margin-bottom: 0; }} h2 {{ border-bottom: 2px solid #ddd; padding-bottom: .2em; margin-top: 2em; }}
table {{ border-collapse: collapse; font-size: 13px; }} td, th {{ border: 1px solid #ccc; padding: 2px 6px; }}
img {{ max-width: 100%; }} .grid {{ display: flex; flex-wrap: wrap; gap: 10px; }}
.grid figure {{ margin: 0; width: 250px; font-size: 12px; }} .err {{ color: #b00; white-space: pre-wrap; }}
nav a {{ margin-right: 1em; }} .warn {{ background: #fff3cd; border: 1px solid #e0c060; padding: 6px 10px; }}
</style></head><body>
<h1>cxrkit demo</h1><p>cxrkit {version}, generated in {seconds:.1f} s on bundled sample data, offline.</p>
<nav>{nav}</nav>
{body}
</body></html>
"""


def run_demo(out: str | Path, sections: tuple[str, ...] = SECTIONS) -> tuple[Path, list[str]]:
    """Build the demo under ``out``; returns the path of ``index.html`` and the failed section names."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = DemoContext(out=out)
    start = time.perf_counter()
    built: list[tuple[str, Section]] = []
    failed: list[str] = []
    for name in sections:
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(f"cxrkit.demo.sections.{name}")
            section = module.build(ctx)
        except Exception as exc:  # a broken section must not hide the others
            log.exception("demo section %s failed", name)
            failed.append(name)
            section = Section(title=name, html=f'<p class="err">This section failed: {html.escape(repr(exc))}</p>')
        log.info("demo section %s: %.1f s", name, time.perf_counter() - t0)
        built.append((name, section))
    nav = "".join(f'<a href="#{n}">{html.escape(s.title)}</a>' for n, s in built)
    body = "".join(f'<section id="{n}"><h2>{html.escape(s.title)}</h2>{s.html}</section>' for n, s in built)
    index = out / "index.html"
    write_text(index, _PAGE.format(version=__version__, seconds=time.perf_counter() - start, nav=nav, body=body))
    return index, failed
