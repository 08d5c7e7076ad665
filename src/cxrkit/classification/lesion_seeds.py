"""The lesion-insertion benchmark over several training seeds (``cxrkit bench lesions --seeds K...``).

:func:`run_lesion_seeds` runs :func:`~cxrkit.classification.lesion_bench.run_lesion_benchmark` once per training
seed on the same data (``out/seed-<K>/``) and writes ``out/summary.json`` (:func:`summarize_runs`: every run's
figures, their mean and sample standard deviation).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cxrkit.classification.lesion_bench import (
    LesionBenchConfig,
    prepare_data,
    run_lesion_benchmark,
)
from cxrkit.errors import UsageError
from cxrkit.io.atomic import write_text

log = logging.getLogger(__name__)


def run_lesion_seeds(images_dir: str | Path | None, out: str | Path, cfg: LesionBenchConfig, seeds: Sequence[int],
                     metadata: str | Path | None = None, progress: bool = True,
                     cache: str | Path | None = None, summarize_only: bool = False) -> dict[str, Any]:
    """The benchmark once per training seed on the same data (``cfg.data_seed``, default ``cfg.seed``): runs in
    ``out/seed-<K>/`` (a finished run with the same configuration is read, not repeated; an interrupted one
    resumes from its last epoch), then ``out/summary.json`` (:func:`summarize_runs`). Returns the summary.

    ``summarize_only``: run nothing; summarize the seeds that finished (those missing are listed in the summary
    under ``missing_seeds``; an error if none finished)."""
    if not seeds or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds needs distinct training seeds, got {list(seeds)}")
    out = Path(out)
    base_cfg = dataclasses.replace(cfg, data_seed=cfg.data_seed_value)
    data = None if summarize_only else prepare_data(images_dir, base_cfg, metadata, progress, cache)
    runs: dict[int, dict[str, Any]] = {}
    missing = []
    for seed in seeds:
        run_cfg = dataclasses.replace(base_cfg, seed=int(seed))
        run_dir = out / f"seed-{seed}"
        done = run_dir / "metrics.json"
        if done.is_file():
            saved = json.loads(done.read_text())
            want = effective_config(dataclasses.asdict(run_cfg))
            had = effective_config(saved.get("config", {}))
            diff = sorted(k for k in want if k != "num_workers" and had.get(k) != want[k])
            if diff:
                raise UsageError(f"{done}: was run with other settings ({', '.join(diff)}); use a new --out")
            log.info("seed %d: finished earlier, read from %s", seed, done)
            runs[int(seed)] = saved
        elif summarize_only:
            missing.append(int(seed))
        else:
            runs[int(seed)] = run_lesion_benchmark(images_dir, run_dir, run_cfg, metadata, progress, data=data)
    if not runs:
        raise UsageError(f"{out}: none of the seeds {list(seeds)} has a finished run (seed-K/metrics.json)")
    summary = summarize_runs(runs)
    summary["missing_seeds"] = missing
    summary["config"] = dataclasses.asdict(base_cfg)
    write_text(out / "summary.json", json.dumps(summary, indent=2, default=float))
    return summary


# What a run made before a setting existed did: no flip averaging, hence no alignment.
_LEGACY = {"cam_flips": "none", "cam_flips_train": True, "align_views": False}


def effective_config(config: dict[str, Any]) -> dict[str, Any]:
    """A run's settings as JSON values, with the behaviour of runs made before a setting existed filled in
    (older defaults for the flip settings, current defaults otherwise) and the flip options dropped when no
    flips are used (they change nothing then)."""
    full = {**json.loads(json.dumps(dataclasses.asdict(LesionBenchConfig()))), **_LEGACY,
            **json.loads(json.dumps(config))}
    if full["cam_flips"] == "none":
        full.pop("cam_flips_train")
        full.pop("align_views")
    return full


def summarize_runs(runs: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Every run's figures (``runs``: seed -> metrics dict) with their mean and sample standard deviation
    (n - 1; 0 for a single run): ``overall`` and ``per_finding`` map each metric to
    ``{"runs": [...], "mean": m, "sd": s}`` (runs in ``seeds`` order); ``targets`` are judged on the means."""
    seeds = list(runs)

    def stats(values: list[float]) -> dict[str, Any]:
        v = np.array(values, float)
        return {"runs": [float(x) for x in v], "mean": float(v.mean()),
                "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0}

    first = runs[seeds[0]]
    overall = {m: stats([runs[s]["overall"][m] for s in seeds]) for m in first["overall"] if m != "targets"}
    per = {f: {m: stats([runs[s]["per_finding"][f][m] for s in seeds]) for m in d}
           for f, d in first["per_finding"].items()}
    targets = {"mean_auroc>=0.95": overall["mean_auroc"]["mean"] >= 0.95,
               "acc_iobb@0.5>=0.8": overall["acc_iobb@0.5"]["mean"] >= 0.8,
               "acc_iou@0.3>=0.6": overall["acc_iou@0.3"]["mean"] >= 0.6}
    return {"seeds": seeds, "box_method": {s: runs[s]["box_method"]["chosen"] for s in seeds},
            "overall": overall, "per_finding": per, "targets_on_means": targets}
