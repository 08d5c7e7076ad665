"""Demo sections. Each module defines ``build(ctx: DemoContext) -> Section``.

The demo runs the sections listed in :data:`cxrkit.demo.runner.SECTIONS` in order; a section that
raises is reported on the page (with its error) and the rest still run.
"""

# The public modules of this package (import them by name: ``from cxrkit.demo.sections import analysis``).
__all__ = ["analysis", "chexmask", "classification", "nih", "qc", "reports", "segmentation", "warehouse"]
