"""Per-finding model selection for the lesion-insertion benchmark (``cxrkit bench lesions-compose``).

Given finished ``cxrkit bench lesions`` runs with the same data settings (e.g. LSE sharpness r = 10 and
r = 4), choose on the **validation** images, for each finding, the run whose heatmaps localize it best
(mean IoU of the top box with the inserted box; ties keep the earlier run), and the heatmap-to-box setting that
maximizes the combined validation mean IoU; then score the combined model once on the test images. The combined model
is a :class:`~cxrkit.models.families.ensemble.FindingEnsemble` checkpoint (``DIR/model.pt``) that
``cxrkit predict`` loads like any classifier. Outputs as ``cxrkit bench lesions``: ``metrics.json``,
``test_predictions.csv``, ``roc.png``, ``overlays.png``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any, Sequence

from cxrkit.classification.lesion_bench import LesionBenchConfig, prepare_data
from cxrkit.classification.lesion_eval import (
    BOX_CANDIDATES,
    evaluate_on,
    plot_results,
    score_rows,
    write_rows,
)
from cxrkit.classification.lesions import LESION_FINDINGS
from cxrkit.errors import CxrkitError, UsageError
from cxrkit.io.atomic import write_text
from cxrkit.models import load_checkpoint, save_checkpoint
from cxrkit.models.families.ensemble import make_ensemble

log = logging.getLogger(__name__)

# Settings that only shape training; runs may differ in these and still be composed.
TRAINING_ONLY = ("lse_r", "epochs", "lr", "batch_size", "num_workers", "augment", "box_method", "model", "cam_flips",
                 "cam_flips_train", "cam_stride", "dilate", "align_views")


def _run_config(run: Path) -> dict[str, Any]:
    path = run / "metrics.json"
    if not (path.is_file() and (run / "model.pt").is_file()):
        raise CxrkitError(f"{run}: not a finished `cxrkit bench lesions` run (needs metrics.json and model.pt)")
    return json.loads(path.read_text())["config"]


def _data_config(configs: list[dict[str, Any]], runs: Sequence[Path]) -> LesionBenchConfig:
    # The data follow data_seed (older runs: seed); the training seed itself may differ between runs.
    shared = [{**{k: v for k, v in c.items() if k not in TRAINING_ONLY + ("seed", "data_seed")},
               "data_seed": c["seed"] if c.get("data_seed") is None else c["data_seed"]} for c in configs]
    maps = [(c.get("cam_flips", "none") != "none", c.get("cam_stride", 8)) for c in configs]  # class-map geometry
    for run, m in zip(runs[1:], maps[1:]):
        if m != maps[0]:
            raise UsageError(f"{run}: its class maps (flip-averaged {m[0]}, stride {m[1]}) differ from {runs[0]}'s "
                              f"(flip-averaged {maps[0][0]}, stride {maps[0][1]}); compose runs with the same maps")
    for run, c in zip(runs[1:], shared[1:]):
        diff = sorted(k for k in c if c[k] != shared[0].get(k))
        if diff:
            raise CxrkitError(f"{run}: its data settings differ from {runs[0]}'s ({', '.join(diff)}); the runs must "
                              "see the same images, splits and seeds")
    return LesionBenchConfig(**shared[0])


def compose_runs(runs: Sequence[str | Path], images_dir: str | Path, out: str | Path,
                 metadata: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Choose per finding among ``runs`` on validation, write and score the combined model (see module doc)."""
    t0 = time.perf_counter()
    runs = [Path(r) for r in runs]
    if len(runs) < 2:
        raise CxrkitError(f"give at least two runs to compose, got {len(runs)}")
    cfg = _data_config([_run_config(r) for r in runs], runs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = prepare_data(images_dir, cfg, metadata, progress)

    # validation: per run, per box setting, per finding
    val_rows = [evaluate_on(r / "model.pt", data.val, BOX_CANDIDATES, progress)[0] for r in runs]
    acc = [{b: score_rows(rows[b])["per_finding"] for b in BOX_CANDIDATES} for rows in val_rows]
    plans: dict[str, dict[str, Any]] = {}
    for b in BOX_CANDIDATES:
        select = [max(range(len(runs)), key=lambda i: (acc[i][b][f]["mean_iou"], -i)) for f in LESION_FINDINGS]
        combined = [row for f, i in zip(LESION_FINDINGS, select) for row in val_rows[i][b] if row["finding"] == f]
        plans[b] = {"select": select, "validation_mean_iou": score_rows(combined)["overall"]["mean_iou"]}
    best = max(p["validation_mean_iou"] for p in plans.values())
    chosen = next(b for b in BOX_CANDIDATES if plans[b]["validation_mean_iou"] == best)
    select = plans[chosen]["select"]
    log.info("compose: box setting %s, %s", chosen, {f: str(runs[i]) for f, i in zip(LESION_FINDINGS, select)})

    members = [load_checkpoint(r / "model.pt") for r in runs]
    model = make_ensemble(members, select, description=(
        "Per-finding selection (on validation) among `cxrkit bench lesions` runs: "
        + ", ".join(f"{f} from {runs[i].name}" for f, i in zip(LESION_FINDINGS, select))))
    save_checkpoint(out / "model.pt", model)

    test_rows, examples = evaluate_on(out / "model.pt", data.test, BOX_CANDIDATES, progress, example_config=chosen)
    rows = test_rows[chosen]
    write_rows(out / "test_predictions.csv", rows)
    metrics = score_rows(rows)
    metrics.update({
        "composition": {
            "runs": [str(r) for r in runs],
            "select": {f: str(runs[i]) for f, i in zip(LESION_FINDINGS, select)},
            "how": "per finding, the run with the best validation mean IoU (ties: the earlier run)",
            "validation_per_run": {str(r): {b: {f: acc[i][b][f]["mean_iou"] for f in LESION_FINDINGS}
                                            for b in BOX_CANDIDATES} for i, r in enumerate(runs)},
        },
        "box_method": {"chosen": chosen, "how": "best combined validation mean IoU",
                       "validation_mean_iou": {b: p["validation_mean_iou"] for b, p in plans.items()},
                       "test_all_candidates": {k: {m: score_rows(r)["overall"][m]
                                                   for m in ("mean_iou", "acc_iou@0.3", "acc_iobb@0.5")}
                                               for k, r in test_rows.items()}},
        "config": dataclasses.asdict(cfg),
        "images": {"used": len(data.names), "excluded_real_findings": len(data.excluded),
                   **{k: len(v) for k, v in data.split.items()}},
        "samples": {"val": len(data.val), "test": len(data.test)},
        "total_seconds": round(time.perf_counter() - t0, 1),
    })
    write_text(out / "metrics.json", json.dumps(metrics, indent=2, default=float))
    plot_results(out, rows, examples)
    return metrics
