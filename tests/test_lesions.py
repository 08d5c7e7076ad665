"""Synthetic lesion insertion: exact boxes inside the lungs, deterministic, physically plausible."""

from __future__ import annotations

import numpy as np
import pytest

from cxrkit.classification.lesion_data import (
    BaseImages,
    LesionDataset,
    fit_lung_template,
    lung_template,
)
from cxrkit.classification.lesions import (
    LESION_FINDINGS,
    insert_effusion,
    insert_findings,
    insert_nodule,
)


def _phantom(size: int = 256):
    """Bright body, two dark lung ellipses (right lung on the image left)."""
    img = np.full((size, size), 0.8, np.float32)
    yy, xx = np.mgrid[:size, :size]
    right = ((xx - size * 0.3) / (size * 0.14)) ** 2 + ((yy - size * 0.45) / (size * 0.3)) ** 2 <= 1
    left = ((xx - size * 0.7) / (size * 0.14)) ** 2 + ((yy - size * 0.45) / (size * 0.3)) ** 2 <= 1
    img[right | left] = 0.25
    return img, right, left


def test_nodule_box_inside_lungs_and_brighter():
    img, right, left = _phantom()
    out, box = insert_nodule(img, right | left, np.random.default_rng(0))
    x, y, w, h = (int(v) for v in box)
    assert (right | left)[y : y + h, x : x + w].all()  # fully inside a lung
    assert out[y : y + h, x : x + w].mean() > img[y : y + h, x : x + w].mean() + 0.02
    changed = np.abs(out - img) > 0.01
    ys, xs = np.nonzero(changed)
    # All visible change lies within the box grown by the blur margin.
    assert xs.min() >= x - 3 and xs.max() <= x + w + 3 and ys.min() >= y - 3 and ys.max() <= y + h + 3


def test_effusion_fills_the_base_of_one_lung():
    img, right, left = _phantom()
    out, box = insert_effusion(img, right, np.random.default_rng(1), lateral_side="left")
    x, y, w, h = box
    ys, _ = np.nonzero(right)
    assert y + h == pytest.approx(ys.max() + 1, abs=1)  # reaches the lung base
    assert y > ys.min() + 0.5 * (ys.max() - ys.min())  # only the lower part
    assert np.abs(out[left] - img[left]).max() < 1e-3  # the other lung is untouched


def test_insert_findings_is_deterministic_and_labels_match_boxes():
    img, right, left = _phantom()
    a, boxes_a = insert_findings(img, right, left, dict.fromkeys(LESION_FINDINGS, True), np.random.default_rng(5))
    b, boxes_b = insert_findings(img, right, left, dict.fromkeys(LESION_FINDINGS, True), np.random.default_rng(5))
    assert boxes_a == boxes_b and np.array_equal(a, b)
    assert set(boxes_a) == set(LESION_FINDINGS)
    none, no_boxes = insert_findings(img, right, left, {}, np.random.default_rng(5))
    assert no_boxes == {} and np.array_equal(none, img)


def test_dataset_samples_follow_the_contract():
    img, right, left = _phantom(128)
    base = BaseImages(["00000001_000.png"], img[None], right[None], left[None], [(1024, 1024)])
    ds = LesionDataset(base, input_size=64, repeats=6, seed=3, prevalence=0.5)
    assert len(ds) == 6
    s = ds[2]
    assert s["image"].shape == (1, 64, 64) and s["labels"].shape == (3,)
    boxes = s["boxes"].numpy()
    for k in range(3):
        assert np.isnan(boxes[k]).all() == (s["labels"][k] == 0)
    present = ~np.isnan(boxes[:, 0])
    assert (boxes[present, 2] > 8).all()  # boxes are in 1024-pixel original coordinates
    assert ds[2]["id"] == s["id"] == "00000001_000.png#2"
    assert np.array_equal(ds[2]["image"].numpy(), s["image"].numpy())


def test_lung_template_fit_finds_dark_fields():
    img, right, left = _phantom(256)
    rl, ll = lung_template()
    assert rl.shape == (44, 2) and ll.shape == (50, 2) and rl[:, 0].mean() < ll[:, 0].mean()
    r, lft, _ = fit_lung_template((img * 255).astype(np.uint8))
    fitted = r | lft
    assert img[fitted].mean() < 0.45  # mostly on the dark lungs
