"""Real jobs on the engine: the same rows whatever the number of workers and the batch size (on the CPU)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import cv2
import pytest

from cxrkit.cli.main import main

SAMPLES = Path(str(resources.files("cxrkit.demo") / "sample" / "nih" / "images"))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    for k, p in enumerate(sorted(SAMPLES.glob("*.png"))):
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        h, w = (512, 430) if k % 2 else (400, 512)  # non-square, both ways
        cv2.imwrite(str(root / f"{k}.png"), cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA))
    (root / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return root


@pytest.mark.parametrize("qc", [False, True])
def test_segment_rows_identical_across_workers_and_batch_sizes(images, tmp_path, qc):
    from test_qc_rca import make_reference

    extra = ["--qc", "--reference", str(make_reference(tmp_path / "ref"))] if qc else []
    texts = []
    for workers, batch in ((0, 1), (0, 4), (2, 3), (2, 16)):
        out = tmp_path / f"s{workers}_{batch}.csv"
        assert main(["segment", str(images), "--out", str(out), "--workers", str(workers), "--batch-size", str(batch),
                     "--quiet", "--device", "cpu", "--precision", "fp32", *extra]) == 1  # bad.png fails alone
        texts.append(out.read_text())
        assert "bad.png" in out.with_suffix(".errors.csv").read_text()
    assert all(t == texts[0] for t in texts[1:])
    assert texts[0].count("\n") == 1 + len(list(SAMPLES.glob("*.png")))
    if qc:
        assert all(r.split(",")[1] for r in texts[0].splitlines()[1:])  # Dice RCA filled
