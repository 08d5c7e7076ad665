"""``cxrkit demo``: the offline demo on bundled sample data."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run every capability on bundled sample data, write DIR/index.html")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--sections", nargs="+", help="only these sections (default: all)")
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from cxrkit.demo.runner import SECTIONS, run_demo

    sections = tuple(args.sections) if args.sections else SECTIONS
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        print(f"cxrkit demo: error: unknown section(s) {unknown}; choose from {list(SECTIONS)}", file=sys.stderr)
        return 2
    index, failed = run_demo(args.out, sections)
    print(f"demo written to {index}")
    if failed:
        print(f"cxrkit demo: error: section(s) failed: {', '.join(failed)} (see {index})", file=sys.stderr)
        return 1
    return 0
