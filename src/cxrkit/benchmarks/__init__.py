"""Benchmarks that are experiments, beside the tasks they measure: CheXmask's technical validation
(:mod:`~cxrkit.benchmarks.chexmask_validation`). They may import any task; nothing but the apps imports them."""

__all__: list[str] = []
