"""Training: losses, augmentation, a few steps on tiny images, exact resume, DDP with gloo."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_nih import make_tiny_nih

from cxrkit.classification.losses import get_loss, masked_bce, weighted_bce
from cxrkit.classification.train import TrainConfig, epoch_indices
from cxrkit.errors import CxrkitError
from cxrkit.models.checkpoint import read_checkpoint
from cxrkit.transforms import AugmentConfig, augment_images

REPO = Path(__file__).resolve().parents[1]


def test_weighted_bce_balances_and_masks_nan():
    logits = torch.zeros(4, 2)
    y = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, float("nan")], [0.0, 0.0]])
    # 1 positive, 6 negatives: beta_P = 7, beta_N = 7/6; all losses ln 2.
    expected = np.log(2) * 0.5 * (7 * 1 + 7 / 6 * 6) / 7
    assert float(weighted_bce(logits, y)) == pytest.approx(expected, rel=1e-6)
    assert float(masked_bce(logits, y)) == pytest.approx(np.log(2), rel=1e-6)
    with pytest.raises(ValueError, match="choose one of"):
        get_loss("focal")


def test_augment_is_deterministic_per_generator_and_keeps_range():
    x = torch.rand(3, 1, 32, 32)
    a = augment_images(x, torch.Generator().manual_seed(1))
    b = augment_images(x, torch.Generator().manual_seed(1))
    c = augment_images(x, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1 and a.shape == x.shape
    # No flips by default: a left-bright image stays left-bright.
    y = torch.zeros(4, 1, 32, 32)
    y[..., :10] = 1
    z = augment_images(y, torch.Generator().manual_seed(0), AugmentConfig(noise_std=0))
    assert (z[..., :10].mean() > z[..., -10:].mean())


def test_epoch_indices_shard_the_same_permutation():
    full = epoch_indices(10, seed=3, epoch=1)
    r0, r1 = epoch_indices(10, 3, 1, rank=0, world=2), epoch_indices(10, 3, 1, rank=1, world=2)
    assert sorted(r0 + r1) == sorted(full) and len(r0) == len(r1) == 5
    assert epoch_indices(10, 3, 2) != full
    with pytest.raises(CxrkitError, match="loss 'x' is not one of"):
        TrainConfig(loss="x")


def _train_args(nih, out, epochs, extra=()):
    return ["train", "--images", str(nih["images"]), "--metadata", str(nih["metadata"]), "--split-dir",
            str(nih["split_dir"]), "--out", str(out), "--model", "resnet_lite", "--input-size", "32",
            "--epochs", str(epochs), "--batch-size", "4", "--workers", "0", "--val-fraction", "0.3",
            "--warmup-steps", "2", "--lr", "0.01", "--quiet", *extra]


def test_train_few_steps_checkpoints_metrics_and_exact_resume(tmp_path, capsys):
    from cxrkit.cli.main import main

    nih = make_tiny_nih(tmp_path / "data", n_patients=8)
    assert main(_train_args(nih, tmp_path / "a", 2)) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["epochs"] == 2
    metrics = (tmp_path / "a" / "metrics.csv").read_text().splitlines()
    header = metrics[0].split(",")
    assert header[:2] == ["step", "train_loss"] and {"epoch", "val_mean_auroc", "lr", "img_per_s"} <= set(header)
    assert len(metrics) == 3
    assert "val_mean_auroc" in metrics[0] and "auroc_Effusion" in metrics[0]
    full = read_checkpoint(tmp_path / "a" / "last.pt")
    assert (tmp_path / "a" / "best.pt").is_file()

    # Interrupted run: stop after 1 epoch, resume to 2 -> identical weights to the uninterrupted run.
    assert main(_train_args(nih, tmp_path / "b", 2, ("--stop-after-epochs", "1"))) == 0
    assert read_checkpoint(tmp_path / "b" / "last.pt")["training"]["state"]["history"][-1]["epoch"] == 1
    assert main(_train_args(nih, tmp_path / "b", 2)) == 0
    resumed = read_checkpoint(tmp_path / "b" / "last.pt")
    assert resumed["card"].weights_sha256 == full["card"].weights_sha256
    # Resuming with another configuration is refused with the differences named.
    capsys.readouterr()
    assert main(_train_args(nih, tmp_path / "b", 3, ("--lr", "0.5"))) == 2
    assert "another configuration" in capsys.readouterr().err


def test_train_errors_name_the_problem(tmp_path, capsys):
    from cxrkit.cli.main import main

    nih = make_tiny_nih(tmp_path / "data", n_patients=2)
    args = _train_args(nih, tmp_path / "a", 1)
    args[args.index("--images") + 1] = str(tmp_path / "nowhere")
    assert main(args) == 2
    assert "nowhere: image folder does not exist" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_cpu_processes_end_with_identical_weights(tmp_path):
    nih = make_tiny_nih(tmp_path / "data", n_patients=8)
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "cxrkit.cli.main", *_train_args(nih, out, 2)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check = json.loads((out / "ddp_check.json").read_text())
    assert check["world_size"] == 2 and check["identical"] is True
    assert check["digests"][0] == check["digests"][1]
    assert read_checkpoint(out / "last.pt")["card"].weights_sha256 == check["digests"][0]


def test_accumulation_plateau_and_bce_run(tmp_path, capsys):
    from cxrkit.cli.main import main

    nih = make_tiny_nih(tmp_path / "data", n_patients=8)
    args = _train_args(nih, tmp_path / "r", 2, ("--accum-steps", "2", "--schedule", "plateau", "--loss", "bce",
                                                "--no-bf16", "--no-augment"))
    assert main(args) == 0
    rows = (tmp_path / "r" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3


def test_predict_split_then_evaluate(tmp_path, capsys):
    import pandas as pd

    from cxrkit.cli.main import main

    nih = make_tiny_nih(tmp_path / "data", n_patients=8, n_test=3)
    assert main(_train_args(nih, tmp_path / "r", 1)) == 0
    common = ["--images", str(nih["images"]), "--metadata", str(nih["metadata"]), "--split-dir", str(nih["split_dir"])]
    assert main(["predict-split", "--model", str(tmp_path / "r" / "best.pt"), *common, "--out", str(tmp_path / "p.csv")]) == 0
    preds = pd.read_csv(tmp_path / "p.csv")
    assert len(preds) == 6 and list(preds.columns[:2]) == ["Image Index", "prob_Atelectasis"]
    assert main(["evaluate", "--predictions", str(tmp_path / "p.csv"), "--metadata", str(nih["metadata"]),
                 "--out", str(tmp_path / "e"), "--n-boot", "10", "--no-plots"]) == 0
    table = pd.read_csv(tmp_path / "e" / "auroc.csv")
    assert table.set_index("finding").loc["Effusion", "n_pos"] + table.set_index("finding").loc["Effusion", "n_neg"] == 6
