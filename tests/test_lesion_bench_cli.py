"""`cxrkit bench lesions` end to end on the bundled images (tiny settings), and its outputs' contract."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cxrkit.classification.lesion_eval import BOX_CANDIDATES, COLUMNS, score_rows
from cxrkit.cli.main import main

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "cxrkit" / "demo" / "sample" / "nih" / "images"


@pytest.mark.slow
def test_bench_lesions_smoke(tmp_path, capsys):
    out = tmp_path / "b"
    rc = main(["bench", "lesions", "--out", str(out), "--images", str(SAMPLE), "--metadata", "none", "--epochs", "1",
               "--repeats", "1", "--input-size", "64", "--workers", "0", "--batch-size", "4", "--quiet",
               "--box-method", "auto"])
    assert rc == 0
    brief = json.loads(capsys.readouterr().out)
    assert set(brief["per_finding"]) == {"Effusion", "Mass", "Nodule"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"]["used"] == 6 and metrics["samples"]["test"] > 0
    with open(out / "test_predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == COLUMNS
    assert len(rows) == 3 * metrics["samples"]["test"]
    for r in rows:
        assert (r["gt_x"] == "") == (r["label"] == "0")
        assert 0 <= float(r["prob"]) <= 1
    assert (out / "roc.png").is_file()
    # Accuracy at T(IoU) 0.1 ... 0.7 beside T(IoBB) 0.1 ... 0.7 (and the paper's 0.25, 0.75, 0.9), per finding and overall.
    want = [f"acc_iou@{t / 10}" for t in range(1, 8)] + [f"acc_iobb@{t / 10}" for t in range(1, 8)] + [
        "acc_iobb@0.25", "acc_iobb@0.75", "acc_iobb@0.9", "mean_iou", "mean_iobb"]
    for d in [metrics["overall"], *metrics["per_finding"].values()]:
        assert all(k in d for k in want)
    assert "acc_iou@0.3>=0.6" in metrics["overall"]["targets"]
    # The box rule is the candidate with the best mean IoU on the *validation* images (ties: the earlier one).
    box = metrics["box_method"]
    val = box["validation"]
    assert list(val) == list(BOX_CANDIDATES) and {"paper", "paper@60", "t0.3-each", "t0.5-union"} <= set(val)
    best = max(v["mean_iou"] for v in val.values())
    rule = next(k for k, v in val.items() if v["mean_iou"] == best)
    assert box["chosen"] == {f: rule for f in ("Effusion", "Mass", "Nodule")}  # --box-method auto: one rule
    assert box["test_all_candidates"][rule]["mean_iou"] == pytest.approx(metrics["overall"]["mean_iou"])
    # The CSV is the chosen rule's top boxes: the figures recompute from it.
    typed = [{k: (None if v == "" else v if k in ("image", "finding") else float(v)) for k, v in r.items()}
             for r in rows]
    again = score_rows(typed)
    assert again["overall"]["mean_iou"] == pytest.approx(metrics["overall"]["mean_iou"], abs=1e-5)
    assert again["overall"]["acc_iobb@0.5"] == pytest.approx(metrics["overall"]["acc_iobb@0.5"])
    # model.pt carries the chosen rules on its card, so predict/localize/analyze draw its boxes the same way.
    from cxrkit.models import load_checkpoint

    card = load_checkpoint(out / "model.pt").card
    method, options = BOX_CANDIDATES[rule]
    assert {f: card.box_rule(f) for f in ("Effusion", "Mass", "Nodule")} == dict.fromkeys(
        ("Effusion", "Mass", "Nodule"), (method, options))
    # model.pt is a checkpoint that `cxrkit predict` loads.
    assert main(["predict", str(SAMPLE / "00004296_000.png"), "--model", str(out / "model.pt"), "--out", str(tmp_path / "p")]) == 0
    assert json.loads((tmp_path / "p" / "00004296_000.json").read_text())["model"] == "resnet_lite"


def test_score_rows_recomputes_auroc_and_iobb_from_the_csv_fields():
    rows = []
    for i, (label, prob) in enumerate([(1, 0.9), (1, 0.8), (0, 0.3), (0, 0.85)]):
        for f in ("Effusion", "Mass", "Nodule"):
            gt = (10.0, 10.0, 20.0, 20.0) if label else (None,) * 4
            pred = (12.0, 12.0, 8.0, 8.0) if i == 0 else (100.0, 100.0, 5.0, 5.0)
            rows.append({"image": f"i{i}", "finding": f, "label": label, "prob": prob,
                         **dict(zip(("gt_x", "gt_y", "gt_w", "gt_h"), gt)),
                         **dict(zip(("pred_x", "pred_y", "pred_w", "pred_h"), pred))})
    m = score_rows(rows)
    assert m["per_finding"]["Mass"]["auroc"] == pytest.approx(0.75)  # 3 of 4 pairs ordered right
    assert m["per_finding"]["Mass"]["acc_iobb@0.5"] == pytest.approx(0.5)  # i0 inside the box, i1 away
    # i0: an 8x8 box inside the 20x20 one: IoU 64/400 = 0.16 (> 0.1, not > 0.2); i1: 0.
    assert m["per_finding"]["Mass"]["mean_iou"] == pytest.approx(0.08)
    assert m["per_finding"]["Mass"]["acc_iou@0.1"] == 0.5 and m["per_finding"]["Mass"]["acc_iou@0.2"] == 0.0
    assert m["overall"]["acc_iou@0.1"] == 0.5 and m["overall"]["mean_iobb"] == pytest.approx(0.5)
    assert m["overall"]["targets"]["acc_iobb@0.5>=0.8"] is False and m["overall"]["targets"]["acc_iou@0.3>=0.6"] is False


def test_choose_box_rule_takes_the_best_validation_mean_iou_ties_to_the_earlier():
    from cxrkit.classification.lesion_eval import choose_box_rule

    def scores(values):
        return {k: {"overall": {"mean_iou": v}} for k, v in values.items()}

    assert choose_box_rule(scores({"paper": 0.2, "t0.3-each": 0.5, "t0.5-union": 0.4})) == "t0.3-each"
    assert choose_box_rule(scores({"t0.5-union": 0.5, "t0.3-each": 0.5, "paper": 0.1})) == "t0.3-each"  # order
    assert choose_box_rule(scores({"t0.1-each": 0.3, "paper": 0.3})) == "paper"


def test_bench_architecture_and_box_method_errors(tmp_path):
    from cxrkit.classification.lesion_bench import (
        LesionBenchConfig,
        bench_architecture,
        run_lesion_benchmark,
    )
    from cxrkit.errors import CxrkitError

    arch = dict(bench_architecture(LesionBenchConfig(cam_flips="hv", cam_flips_train=False, cam_stride=4, dilate=True)))
    assert arch == {"cam_flips": "hv", "cam_flips_train": False, "layer3_stride": 1, "dilate": True}
    assert bench_architecture(LesionBenchConfig(cam_flips="none")) == ()  # the shipped model's layout
    assert dict(bench_architecture(LesionBenchConfig())) == {"cam_flips": "hv", "cam_flips_train": True}  # default
    with pytest.raises(CxrkitError, match="only for resnet_lite"):
        bench_architecture(LesionBenchConfig(model="densenet121", cam_stride=4))
    with pytest.raises(CxrkitError, match="8 or 4"):
        bench_architecture(LesionBenchConfig(cam_stride=2))
    with pytest.raises(CxrkitError, match="box method 'adaptive'"):
        run_lesion_benchmark(SAMPLE, tmp_path / "x", LesionBenchConfig(box_method="adaptive"))


def test_base_image_cache_round_trip(tmp_path):
    from cxrkit.classification.lesion_bench import LesionBenchConfig, prepare_data
    from cxrkit.errors import CxrkitError

    cfg = LesionBenchConfig(work_size=128, input_size=64, repeats=1)
    cache = tmp_path / "base.npz"
    fresh = prepare_data(SAMPLE, cfg, progress=False, cache=cache)
    assert cache.is_file()
    again = prepare_data(None, cfg, progress=False, cache=cache)  # no image folder needed
    assert again.split == fresh.split and again.names == fresh.names
    for a, b in ((fresh.train, again.train), (fresh.test, again.test)):
        assert a.base.names == b.base.names and a.base.original_size == b.base.original_size
        assert (a.base.images == b.base.images).all() and (a.base.left == b.base.left).all()
        assert (a[0]["image"] == b[0]["image"]).all()
    with pytest.raises(CxrkitError, match="made for"):
        prepare_data(None, LesionBenchConfig(work_size=256), progress=False, cache=cache)


def test_parse_lse_r_accepts_one_number_or_per_finding_pairs():
    from cxrkit.classification.lesion_bench import (
        DEFAULT_LSE_R,
        lse_architecture,
        parse_lse_r,
    )
    from cxrkit.errors import CxrkitError

    assert parse_lse_r("4") == 4.0
    per = parse_lse_r("Effusion=4, Mass=6")
    assert per == (("Effusion", 4.0), ("Mass", 6.0))
    assert lse_architecture(per) == (("lse_r", (4.0, 6.0, DEFAULT_LSE_R)),)  # LESION_FINDINGS order
    assert lse_architecture(None) == ()
    for bad, msg in (("0", "positive"), ("x", "neither"), ("Hernia=3", "not one of"), ("Mass=-1", "positive"),
                     ("Mass=a", "number")):
        with pytest.raises(CxrkitError, match=msg):
            parse_lse_r(bad)


def test_bench_lesions_seeds_summary(tmp_path, capsys):
    """--seeds: one run per training seed on the same images, summary.json with every run, mean and sd."""
    out = tmp_path / "s"
    assert _tiny_run(out, "--seeds", "0", "1", "--cam-flips", "h", "--box-method", "auto-per-finding") == 0
    table = capsys.readouterr().out
    assert "seed 0" in table and "seed 1" in table and "acc_iou@0.3" in table and "targets on the means" in table
    runs = {k: json.loads((out / f"seed-{k}" / "metrics.json").read_text()) for k in (0, 1)}
    assert runs[0]["config"]["seed"] == 0 and runs[1]["config"]["seed"] == 1
    assert runs[0]["config"]["data_seed"] == runs[1]["config"]["data_seed"] == 0  # same data for both seeds
    ids = [[r["image"] for r in csv.DictReader(open(out / f"seed-{k}" / "test_predictions.csv"))] for k in (0, 1)]
    assert ids[0] == ids[1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and summary["missing_seeds"] == []
    for metric in ("mean_auroc", "acc_iobb@0.5", "acc_iou@0.3", "acc_iou@0.7", "mean_iou"):
        values = [runs[k]["overall"][metric] for k in (0, 1)]
        s = summary["overall"][metric]
        assert s["runs"] == pytest.approx(values, nan_ok=True)
        if all(v == v for v in values):
            assert s["mean"] == pytest.approx(sum(values) / 2)
            assert s["sd"] == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5)
    assert summary["per_finding"]["Nodule"]["acc_iou@0.3"]["runs"] == [runs[k]["per_finding"]["Nodule"]["acc_iou@0.3"]
                                                                      for k in (0, 1)]
    # auto-per-finding: each finding's rule is the best on that finding's validation positives.
    for k in (0, 1):
        box = runs[k]["box_method"]
        for f, rule in box["chosen"].items():
            per = {c: v["per_finding"][f]["mean_iou"] for c, v in box["validation"].items()}
            assert rule == next(c for c, v in per.items() if v == max(per.values()))
        assert summary["box_method"][str(k)] == box["chosen"]
    # --cam-flips: the views' displacement was estimated (no boxes) and stored in model.pt's card.
    from cxrkit.models import load_checkpoint

    shift = runs[0]["view_shift"]["shift_input_px"]
    assert set(shift) == {"Effusion", "Mass", "Nodule"} and all(d[1] == 0.0 for d in shift.values())  # "h": no dy
    card = load_checkpoint(out / "seed-0" / "model.pt").card
    assert [list(d) for d in card.arch_kwargs["cam_view_shift"]] == list(shift.values())
    assert card.arch_kwargs["cam_flips"] == "h"
    # bench/lesion_seeds_table.py prints the figures from these files.
    import subprocess
    import sys

    table = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "bench" / "lesion_seeds_table.py"),
                            f"tiny={out}", "--validation", "--per-finding", "--thresholds", "--geometry"],
                           capture_output=True, text=True, check=True).stdout
    st = summary["overall"]["acc_iou@0.3"]
    assert f"{st['mean']:.3f} ± {st['sd']:.3f} ({' / '.join(f'{v:.3f}' for v in st['runs'])})" in table
    assert "| tiny: Nodule |" in table and "| 0.7 |" in table and "width ratio" in table
    # Finished seeds are read, not trained again; --summarize-only lists the seeds that have no run.
    stamp = (out / "seed-0" / "train" / "metrics.csv").stat().st_mtime_ns
    assert _tiny_run(out, "--seeds", "0", "2", "--summarize-only", "--cam-flips", "h", "--box-method",
                     "auto-per-finding") == 0
    assert (out / "seed-0" / "train" / "metrics.csv").stat().st_mtime_ns == stamp and not (out / "seed-2").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [0] and summary["missing_seeds"] == [2]


def _tiny_run(out, *extra):
    return main(["bench", "lesions", "--out", str(out), "--images", str(SAMPLE), "--metadata", "none", "--epochs", "1",
                 "--repeats", "1", "--input-size", "64", "--workers", "0", "--batch-size", "4", "--quiet", *extra])


def test_bench_lesions_compose_selects_per_finding_on_validation(tmp_path, capsys):
    from cxrkit.classification.lesions import LESION_FINDINGS
    from cxrkit.errors import CxrkitError
    from cxrkit.models import load_checkpoint

    a, b = tmp_path / "r10", tmp_path / "r4"
    assert _tiny_run(a, "--lse-r", "10") == 0 and _tiny_run(b, "--lse-r", "4") == 0
    capsys.readouterr()
    out = tmp_path / "c"
    assert main(["bench", "lesions-compose", str(a), str(b), "--out", str(out), "--images", str(SAMPLE),
                 "--metadata", "none", "--quiet"]) == 0
    brief = json.loads(capsys.readouterr().out)
    m = json.loads((out / "metrics.json").read_text())
    comp, chosen = m["composition"], m["box_method"]["chosen"]
    assert brief["composition"] == comp["select"] and set(comp["select"]) == set(LESION_FINDINGS)
    for f, run in comp["select"].items():  # each finding from the run that localized it best on validation
        val = {r: comp["validation_per_run"][r][chosen][f] for r in comp["runs"]}
        assert val[run] == max(val.values())
        if val[str(a)] == val[str(b)]:
            assert run == str(a)  # ties keep the earlier run
    model = load_checkpoint(out / "model.pt")
    assert model.card.name == "finding_ensemble" and model.card.labels == tuple(LESION_FINDINGS)
    member_r = [dict(arch)["lse_r"] for arch in model.card.arch_kwargs["member_architectures"]]
    want = [10.0 if comp["select"][f] == str(a) else 4.0 for f in LESION_FINDINGS]
    assert [member_r[i] for i in model.card.arch_kwargs["select"]] == want
    with open(out / "test_predictions.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 3 * m["samples"]["test"]
    assert main(["predict", str(SAMPLE / "00004296_000.png"), "--model", str(out / "model.pt"), "--out",
                 str(tmp_path / "p")]) == 0
    c = tmp_path / "seed1"
    assert _tiny_run(c, "--seed", "1") == 0
    with pytest.raises(CxrkitError, match="seed"):
        from cxrkit.classification.lesion_compose import compose_runs

        compose_runs([a, c], SAMPLE, tmp_path / "bad", progress=False)
