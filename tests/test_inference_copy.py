"""``CxrModule.infer`` runs an inference copy (convolution + batch norm folded, channels-last on the CPU): the
same outputs as ``forward`` up to float rounding, the original left alone, the copy rebuilt when the weights
change; and the precision rule (``--precision auto``) that goes with it."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from cxrkit.models import create_model, list_models, load_model
from cxrkit.models.device import cpu_has_bf16, resolve_precision
from cxrkit.models.inference import fold_batchnorm, inference_copy

REPO = Path(__file__).resolve().parents[1]


def _inputs(model, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    card = model.card
    shape = (n, 1 if card.name == "rca_regnet" else card.in_channels, card.input_size, card.input_size)
    x = torch.randn(shape, generator=g)
    return (x, torch.randn(shape, generator=g)) if card.name == "rca_regnet" else (x,)


def _tensors(out):
    if isinstance(out, dict):
        return [v for _, v in sorted(out.items())]
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for t in (out.theta, out.disp) if t is not None]  # a registration Transform


def _randomize_batchnorm(model, seed=1):
    """Non-trivial running statistics and affine parameters, so a wrong fold shows."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return model


@pytest.mark.parametrize("name", list_models())
def test_infer_equals_forward_for_every_family(name):
    torch.manual_seed(0)
    model = _randomize_batchnorm(create_model(name)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    xs = _inputs(model)
    with torch.inference_mode():
        want = _tensors(model(*xs))
    got = _tensors(model.infer(*xs))
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.shape == b.shape
        tol = 1e-4 * max(1.0, float(b.abs().max()))
        assert float((a.float() - b.float()).abs().max()) <= tol, name
    after = model.state_dict()
    assert after.keys() == before.keys()  # the cache is not a submodule: no state_dict entry
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_hybridgnet_copy_folds_every_conv_batchnorm_pair_and_keeps_the_original():
    model = load_model("hybridgnet")
    fast = inference_copy(model)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert n_bn == 12 and not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == n_bn  # original untouched
    assert fast.card == model.card
    conv = next(m for m in fast.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_fold_needs_eval_mode():
    model = create_model("hybridgnet").train()
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(model)


def test_the_copy_follows_the_weights():
    model = create_model("hybridgnet").eval()
    (x,) = _inputs(model)
    first = model.infer(x)["landmarks"].clone()
    other = create_model("hybridgnet").eval()  # different random weights
    model.load_state_dict(other.state_dict())
    with torch.inference_mode():
        want = model(x)["landmarks"]
    got = model.infer(x)["landmarks"]
    assert not torch.allclose(first, want, atol=1e-4)  # the weights did change the output
    assert torch.allclose(got, want, atol=1e-4)  # and infer saw the change


def test_infer_in_training_mode_is_forward():
    model = create_model("hybridgnet").train()
    (x,) = _inputs(model)
    torch.manual_seed(3)
    a = model.infer(x)["landmarks"]
    torch.manual_seed(3)
    with torch.inference_mode():
        b = model(x)["landmarks"]
    assert torch.equal(a, b)  # sampling in training mode: the same draw
    assert "_cxr_inference" not in model.__dict__


def test_infer_on_the_meta_device():
    model = create_model("hybridgnet").to_empty(device="meta").eval()
    out = model.infer(torch.empty(2, 1, 256, 256, device="meta"))
    assert out["landmarks"].device.type == "meta" and out["landmarks"].shape == (2, 120, 2)


# ---- precision: the card's measured-safe default, on a device that runs it natively


def test_cpu_bf16_is_read_from_the_cpu_flags(tmp_path):
    (tmp_path / "with").write_text("processor: 0\nflags\t\t: fpu sse avx512f avx512_bf16 avx512_vnni\n")
    (tmp_path / "without").write_text("processor: 0\nflags\t\t: fpu sse avx2 fma\n")
    assert cpu_has_bf16(str(tmp_path / "with")) == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert cpu_has_bf16(str(tmp_path / "without")) is False
    assert cpu_has_bf16(str(tmp_path / "missing")) is False


def test_auto_precision_is_fp32_where_bf16_would_be_emulated(monkeypatch):
    import cxrkit.models.device as device

    card = load_model("hybridgnet").card
    assert card.inference_precision == "bf16"
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: False)
    assert resolve_precision("auto", card, "cpu") == "fp32"
    assert resolve_precision("bf16", card, "cpu") == "bf16"  # asked for explicitly: as asked
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: True)
    assert resolve_precision("auto", card, "cpu") == "bf16"


def test_new_weights_do_not_inherit_the_shipped_precision():
    assert create_model("hybridgnet").card.inference_precision == "fp32"
    assert create_model("hybridgnet", pretrained=True).card.inference_precision == "bf16"


def test_each_card_precision_is_the_verdict_of_the_precision_bench():
    """The shipped cards' ``inference_precision`` is what bench/bench_precision.py measured (its output file):
    bf16 only where every Dice (or AUROC) was within 0.001 of fp32."""
    text = (REPO / "bench/results/precision.txt").read_text()
    verdicts = {"hybridgnet": r"hybridgnet on JSRT test.*?bf16 safe: (yes|no)",
                "rca_regnet": r"rca_regnet, Dice RCA.*?bf16 safe: (yes|no)"}
    verdicts["resnet_lite_lesions"] = r"resnet_lite_lesions on the lesion benchmark.*?bf16 safe: (yes|no)"
    for name, pattern in verdicts.items():
        (verdict,) = re.findall(pattern, text, flags=re.S)
        want = "bf16" if verdict == "yes" else "fp32"
        assert load_model(name).card.inference_precision == want, name
    (diff,) = re.findall(r"largest Dice difference ([\d.]+) \(tolerance 0.001\)", text)
    assert (float(diff) <= 0.001) == (load_model("hybridgnet").card.inference_precision == "bf16")


def test_square_image_skips_the_padding_copy_but_never_returns_its_input():
    from cxrkit.io.geometry import SquareResize

    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (512, 512), dtype=np.uint8)
    g = SquareResize(512, 512, 128)
    out = g.image_to_square(img)
    import cv2

    assert np.array_equal(out, cv2.resize(img, (128, 128), interpolation=cv2.INTER_AREA))
    same = SquareResize(128, 128, 128).image_to_square(img[:128, :128])
    assert np.array_equal(same, img[:128, :128]) and not np.shares_memory(same, img)


def test_copy_made_under_inference_mode_holds_ordinary_tensors():
    """The engine's jobs call ``infer`` inside ``torch.inference_mode()``; the cached copy must still be usable
    outside it (its tensors are not inference tensors)."""
    model = create_model("hybridgnet").eval()
    (x,) = _inputs(model)
    with torch.inference_mode():
        model.infer(x)
    fast = model.inference_view()
    assert not any(p.is_inference() for p in fast.parameters())
    with torch.no_grad():
        assert fast(x)["landmarks"].shape == (2, 120, 2)
