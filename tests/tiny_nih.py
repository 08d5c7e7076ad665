"""A tiny synthetic NIH layout (images, v2020 metadata, official split lists) for training tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
          "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")


def make_tiny_nih(root: Path, n_patients: int = 8, per_patient: int = 2, size: int = 64, n_test: int = 2) -> dict:
    """Images where 'Effusion' images have a bright lower band (learnable), others 'No Finding'."""
    rng = np.random.default_rng(0)
    images = root / "images"
    images.mkdir(parents=True)
    rows, names = [], []
    for p in range(1, n_patients + 1):
        for k in range(per_patient):
            name = f"{p:08d}_{k:03d}.png"
            img = (rng.uniform(60, 120, (size, size))).astype(np.uint8)
            positive = (p + k) % 2 == 0
            if positive:
                img[size * 2 // 3 :, :] = 230
            cv2.imwrite(str(images / name), img)
            rows.append(f"{name},{'Effusion' if positive else 'No Finding'},{k},{p},50,M,PA,{size},{size},0.143,0.143")
            names.append(name)
    (root / "meta.csv").write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    test = names[-n_test * per_patient :] if n_test else []
    (root / "test_list.txt").write_text("\n".join(test) + "\n")
    (root / "train_val_list.txt").write_text("\n".join(n for n in names if n not in test) + "\n")
    return {"images": images, "metadata": root / "meta.csv", "split_dir": root, "names": names}
