"""Reproducibility and training faults (issue 18.3, 18.5), on tiny runs of the three trainers.

* Same command, same seed, same machine: identical checkpoints (weights digest) and identical metrics
  (``metrics.csv`` without its timing columns) for the classifier, segmentation and registration trainers.
* SIGKILL at a random moment after the first checkpoint (several seeds, possibly during a write), then the same
  command again: the run resumes from ``last.pt`` and ends with the uninterrupted run's weights and metrics;
  every checkpoint left behind loads.
* Predictions are identical across ``--workers`` and ``--batch-size`` on the CPU for ``predict`` and ``analyze``
  (``segment`` and ``qc`` rows: tests/test_engine_jobs.py).
"""

from __future__ import annotations

import csv
import io
import json
import random
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import cv2
import pytest
from test_faults import _alive, _children_of
from test_qc_rca import make_reference
from test_segmentation import make_tiny_jsrt
from tiny_nih import make_tiny_nih

from cxrkit.cli.main import main
from cxrkit.models import load_checkpoint, read_checkpoint

SAMPLES = Path(str(resources.files("cxrkit.demo") / "sample" / "nih" / "images"))
TIMING = ("seconds", "img_per_s", "images_per_s", "time")


def _classifier(data: Path, out: Path, epochs: int = 4) -> list[str]:
    nih = make_tiny_nih(data, n_patients=8) if not (data / "images").is_dir() else {
        "images": data / "images", "metadata": data / "meta.csv", "split_dir": data}
    return ["train", "--images", str(nih["images"]), "--metadata", str(nih["metadata"]), "--split-dir",
            str(nih["split_dir"]), "--out", str(out), "--model", "resnet_lite", "--input-size", "32",
            "--epochs", str(epochs), "--batch-size", "4", "--workers", "0", "--val-fraction", "0.3",
            "--warmup-steps", "2", "--lr", "0.01", "--device", "cpu", "--quiet"]


def _segmentation(data: Path, out: Path, steps: int = 12) -> list[str]:
    jsrt, lm = (data / "jsrt", data / "lm") if (data / "jsrt").is_dir() else make_tiny_jsrt(data)
    return ["segmentation", "train", "--jsrt", str(jsrt), "--landmarks", str(lm), "--out", str(out),
            "--input-size", "64", "--steps", str(steps), "--eval-every", "2", "--batch-size", "2", "--quiet"]


def _registration(data: Path, out: Path, steps: int = 12) -> list[str]:
    ref = data / "jsrt"
    if not ref.is_dir():
        make_reference(ref)
        (ref / "split.csv").write_text("id,split\nR0,train\nR1,train\nR2,val\n")
    return ["registration", "train", "--jsrt", str(ref), "--images", str(ref / "images"), "--out", str(out),
            "--steps", str(steps), "--eval-every", "2", "--batch-size", "2", "--device", "cpu", "--quiet"]


TRAINERS = {"classifier": _classifier, "segmentation": _segmentation, "registration": _registration}


def _digest(run: Path) -> str:
    return read_checkpoint(run / "last.pt")["card"].weights_sha256


def _metrics(run: Path) -> list[dict[str, str]]:
    """metrics.csv without the columns that measure time."""
    rows = list(csv.DictReader(io.StringIO((run / "metrics.csv").read_text())))
    return [{k: v for k, v in r.items() if not any(t in k for t in TIMING)} for r in rows]


def _cli(argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "cxrkit.cli.main", *argv]


@pytest.mark.slow
@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_same_seed_same_checkpoint_and_metrics(trainer, tmp_path):
    make = TRAINERS[trainer]
    assert main(make(tmp_path / "data", tmp_path / "a")) == 0
    assert main(make(tmp_path / "data", tmp_path / "b")) == 0
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert (tmp_path / "a" / "best.pt").read_bytes() and _metrics(tmp_path / "a") == _metrics(tmp_path / "b")
    assert len(_metrics(tmp_path / "a")) >= 2
    # a different seed really changes the run (the comparison above can fail)
    assert main(make(tmp_path / "data", tmp_path / "c") + ["--seed", "7"]) == 0
    assert _digest(tmp_path / "c") != _digest(tmp_path / "a")


@pytest.mark.slow
@pytest.mark.parametrize("trainer", sorted(TRAINERS))
@pytest.mark.parametrize("seed", (0, 1))
def test_trainer_killed_then_rerun_ends_like_an_uninterrupted_run(trainer, seed, tmp_path):
    make = TRAINERS[trainer]
    ref, run = tmp_path / "ref", tmp_path / "run"
    # all three runs in fresh processes: the test process's torch thread count is whatever earlier tests left
    # (float sums differ with it), while a user's reruns start from the same defaults
    subprocess.run(_cli(make(tmp_path / "data", ref)), check=True, stdout=subprocess.DEVNULL)
    argv = _cli(make(tmp_path / "data", run))
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (run / "last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(random.Random(seed).uniform(0.0, 0.6))  # somewhere in the next steps, maybe mid-write
    killed = proc.poll() is None
    kids = _children_of(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert killed, f"{trainer}: the run ended before it could be killed; give it more steps"
    for k in kids:
        assert not _alive(k), "a worker outlived the killed trainer"
    for ckpt in run.rglob("*.pt"):  # whatever the kill left behind loads: no torn checkpoint
        read_checkpoint(ckpt)
    before = read_checkpoint(run / "last.pt")["training"]["state"]
    subprocess.run(_cli(make(tmp_path / "data", run)), check=True, stdout=subprocess.DEVNULL)
    assert _digest(run) == _digest(ref), f"{trainer}: resumed from {before.get('step', before.get('epoch'))}"
    assert _metrics(run) == _metrics(ref)
    load_checkpoint(run / "best.pt")


def _predict_images(root: Path) -> Path:
    for k, p in enumerate(sorted(SAMPLES.glob("*.png"))):
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        (root / ("a" if k % 2 else "b")).mkdir(parents=True, exist_ok=True)
        h, w = (300, 256) if k % 2 else (256, 320)
        cv2.imwrite(str(root / ("a" if k % 2 else "b") / f"{k}.png"), cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA))
    return root


def _jsons(folder: Path) -> dict[str, dict]:
    return {p.relative_to(folder).as_posix(): json.loads(p.read_text()) for p in sorted(folder.rglob("*.json"))}


@pytest.mark.slow
@pytest.mark.parametrize("command", ["predict", "analyze"])
def test_predictions_identical_across_workers_and_batch_sizes(command, tmp_path):
    images = _predict_images(tmp_path / "imgs")
    extra = ["--no-qc", "--no-preview", "--quiet"] if command == "analyze" else []
    runs = []
    for workers, batch in ((0, 1), (0, 5), (2, 2), (2, 16)):
        out = tmp_path / f"{command}_{workers}_{batch}"
        assert main([command, str(images), "--out", str(out), "--model", "resnet_lite_lesions", "--workers",
                     str(workers), "--batch-size", str(batch), "--device", "cpu", "--precision", "fp32", *extra]) == 0
        runs.append(_jsons(out))
    assert len(runs[0]) == len(list(SAMPLES.glob("*.png")))
    first = next(iter(runs[0].values()))
    assert first["probabilities"] and len(set(first["probabilities"].values())) > 1
    for other in runs[1:]:
        assert other == runs[0]  # every probability, box and landmark, exactly
