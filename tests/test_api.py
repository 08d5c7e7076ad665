"""The Python API: lazy top-level exports, typed functions over arrays and files, generated API docs."""

from __future__ import annotations

import inspect
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

import cxrkit

SAMPLE = Path(str(resources.files("cxrkit.demo") / "sample" / "nih" / "images" / "00009745_000.png"))


def test_import_is_light_and_exports_are_lazy():
    code = "import sys, cxrkit; assert 'torch' not in sys.modules, 'import cxrkit pulled torch'; print(len(cxrkit.__all__))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    for name in cxrkit.__all__:
        assert getattr(cxrkit, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        cxrkit.nope  # noqa: B018


def test_segment_workers_and_model_cards_load_without_torch():
    """The engine's segment workers import only torch-free modules (a worker starts in ~0.1 s, not ~1 s), and
    ``cxrkit.models`` loads its torch parts on first use; its names still resolve."""
    code = ("import sys, cxrkit.segmentation.work, cxrkit.models.cards, cxrkit.models.preprocess; "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('cxrkit'))")
    subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    import cxrkit.models as models
    assert {n for n in models.__all__ if getattr(models, n) is None} == set()
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        models.nope  # noqa: B018


def test_public_functions_are_typed_and_documented():
    for name in ("read_image", "read_metadata", "iter_chexmask", "create_model", "load_model", "segment", "predict",
                 "analyze", "estimate_rca", "label_reports"):
        fn = getattr(cxrkit, name)
        sig = inspect.signature(fn)
        assert fn.__doc__ and len(fn.__doc__) > 40, name
        assert sig.return_annotation is not inspect.Signature.empty, f"{name} has no return annotation"
        for p in sig.parameters.values():
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                assert p.annotation is not inspect.Parameter.empty, f"{name}({p.name}) has no annotation"


def test_segment_analyze_predict_on_an_array_and_a_file():
    x = cxrkit.read_image(SAMPLE)
    s = cxrkit.segment(x.pixels, qc=True, device="cpu")[0]
    assert s.image_id == "image0" and s.landmarks.shape == (120, 2) and s.masks["heart"].shape == x.pixels.shape
    assert 0.3 < s.measurements.ctr < 0.8 and 0.5 < s.rca.mean <= 1
    row = s.row()
    assert row["ImageID"] == "image0" and row["Dice RCA (Mean)"] and row["Height"] == "1024"
    (f,) = cxrkit.segment(SAMPLE, device="cpu")
    assert f.image_id == SAMPLE.name and np.array_equal(f.landmarks, s.landmarks) and f.rca is None
    doc = cxrkit.analyze(SAMPLE, device="cpu")
    assert doc["classifier"] is None and doc["segmentation"]["landmarks"] == s.landmarks.tolist()
    (p,) = cxrkit.predict(SAMPLE, "resnet_lite_lesions", device="cpu")
    assert set(p.probabilities) == {"Effusion", "Mass", "Nodule"} and p.heatmaps.shape == (3, 1024, 1024)


def test_label_reports_styles():
    df = cxrkit.label_reports({"r1": "No pleural effusion. Mild cardiomegaly.", "r2": "Cannot exclude pneumonia."})
    assert list(df["id"]) == ["r1", "r2"] and df.loc[0, "Effusion"] == 0 and df.loc[0, "Cardiomegaly"] == 1
    assert df.loc[1, "Pneumonia"] == -1 and df.loc[1, "Mass"] is None
    nih = cxrkit.label_reports(["Mild cardiomegaly."], style="nih")
    assert nih.loc[0, "Finding Labels"] == "Cardiomegaly"


def test_api_docs_build(tmp_path):
    """The API reference is generated from the docstrings (pdoc); every public module must import and render."""
    pytest.importorskip("pdoc")
    out = tmp_path / "api"
    src = Path(cxrkit.__file__).parent
    packages = ["cxrkit", "cxrkit.api"] + sorted(f"cxrkit.{p.name}" for p in src.iterdir() if (p / "__init__.py").is_file())
    p = subprocess.run([sys.executable, "-m", "pdoc", *packages, "-o", str(out), "--no-show-source"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert (out / "cxrkit.html").is_file() and (out / "cxrkit" / "api.html").is_file()
    assert (out / "cxrkit" / "segmentation" / "infer.html").is_file()
