"""`cxrkit models import --format chexnet`: CheXNet-style DenseNet-121 files map exactly onto the ``chexnet`` model.

The source network below is a faithful copy of torchvision's DenseNet-121 (module names, layer order, forward:
features -> ReLU -> GAP -> classifier) wrapped as the CheXNet reimplementations wrap it (``self.densenet121`` with
``classifier = Sequential(Linear(1024, 14), Sigmoid())``); torchvision itself is not needed. Every parameter and
buffer is random (batch-norm statistics included), so a key mapped onto the wrong layer changes the outputs.
"""

from __future__ import annotations

import io
import json
import pickle
import types
from collections import OrderedDict
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cxrkit.cli.main import main
from cxrkit.errors import ModelError, UsageError
from cxrkit.findings import FINDINGS
from cxrkit.io.images import read_image
from cxrkit.models import (
    ModelCard,
    Normalization,
    default_card,
    load_checkpoint,
    load_model,
    read_checkpoint,
)
from cxrkit.models.checkpoint import file_sha256
from cxrkit.models.convert import INTENDED_USE, import_chexnet

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SAMPLE = resources.files("cxrkit.demo").joinpath("sample", "nih", "images")


# ----------------------------------------------------------------------------- torchvision's DenseNet-121, copied
class _DenseLayer(nn.Module):
    def __init__(self, n_in: int, growth: int = 32, bn_size: int = 4):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(n_in)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(n_in, bn_size * growth, kernel_size=1, stride=1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, kernel_size=3, stride=1, padding=1, bias=False)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        out = self.conv1(self.relu1(self.norm1(torch.cat(inputs, 1))))
        return self.conv2(self.relu2(self.norm2(out)))


class _DenseBlock(nn.ModuleDict):
    def __init__(self, n_layers: int, n_in: int, growth: int = 32):
        super().__init__()
        for i in range(n_layers):
            self.add_module(f"denselayer{i + 1}", _DenseLayer(n_in + i * growth, growth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class _Transition(nn.Sequential):
    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(n_in)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(n_in, n_out, kernel_size=1, stride=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class TorchvisionDenseNet121(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.features = nn.Sequential(OrderedDict([
            ("conv0", nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)),
            ("norm0", nn.BatchNorm2d(64)),
            ("relu0", nn.ReLU(inplace=True)),
            ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
        ]))
        n = 64
        for i, layers in enumerate((6, 12, 24, 16)):
            self.features.add_module(f"denseblock{i + 1}", _DenseBlock(layers, n))
            n += layers * 32
            if i != 3:
                self.features.add_module(f"transition{i + 1}", _Transition(n, n // 2))
                n //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(n))
        self.classifier = nn.Linear(n, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.features(x), inplace=True)
        out = torch.flatten(F.adaptive_avg_pool2d(out, (1, 1)), 1)
        return self.classifier(out)


class CheXNetModel(nn.Module):
    """arnoweng/CheXNet's and zoogzog/chexnet's ``DenseNet121`` wrapper."""

    def __init__(self, out_size: int = 14):
        super().__init__()
        self.densenet121 = TorchvisionDenseNet121()
        self.densenet121.classifier = nn.Sequential(nn.Linear(1024, out_size), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.densenet121(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The output before the Sigmoid."""
        net = self.densenet121
        out = torch.flatten(F.adaptive_avg_pool2d(F.relu(net.features(x)), (1, 1)), 1)
        return net.classifier[0](out)


def _randomize(net: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(0.1 * torch.randn(c, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
                m.num_batches_tracked.fill_(1000)
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.02)
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
    return net.eval()


# ----------------------------------------------------------------------------- the published file layouts
def _old_style(key: str) -> str:
    """torch < 0.4 dense-layer names: ``denselayer1.norm1.weight`` -> ``denselayer1.norm.1.weight``."""
    import re

    return re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", key)


def _layout(sd: dict[str, torch.Tensor], prefix: str, old: bool, counters: bool) -> dict[str, torch.Tensor]:
    out = OrderedDict()
    for k, v in sd.items():  # sd: CheXNetModel's own keys, "densenet121.features...."
        if not counters and k.endswith("num_batches_tracked"):
            continue
        k = k[len("densenet121."):]
        out[prefix + (_old_style(k) if old else k)] = v.clone()
    return out


class _TorchLegacyPickler(pickle.Pickler):
    """Pickles tensors as torch 0.3 did: ``torch._utils._rebuild_tensor(storage, offset, size, stride)``."""

    def reducer_override(self, obj):
        if type(obj) is torch.Tensor:
            return torch._utils._rebuild_tensor, (obj.storage(), obj.storage_offset(), tuple(obj.size()), obj.stride())
        return NotImplemented


def _save_torch03_style(obj, path: Path) -> None:
    legacy = types.ModuleType("torch03_pickle")
    legacy.Pickler, legacy.dump = _TorchLegacyPickler, pickle.dump
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage deprecation
        torch.save(obj, path, pickle_module=legacy, _use_new_zipfile_serialization=False)


def _sgd_state(sd) -> dict:
    params = [torch.zeros(1, requires_grad=True)]
    return torch.optim.SGD(params, lr=1e-3, momentum=0.9).state_dict()


LAYOUTS = ("arnoweng", "zoogzog", "zoogzog_module", "bare")


def write_layout(net: CheXNetModel, layout: str, path: Path) -> dict[str, torch.Tensor]:
    """Save ``net`` as the published files are laid out; returns the state dict written."""
    sd = net.state_dict()
    if layout == "arnoweng":  # model.pth.tar: DataParallel, torch 0.3 (legacy container, norm.1, no counters)
        state = _layout(sd, "module.densenet121.", old=True, counters=False)
        _save_torch03_style({"epoch": 100, "arch": "densenet121", "state_dict": state, "best_prec1": 0.0,
                             "optimizer": _sgd_state(state)}, path)
    elif layout == "zoogzog":  # m-25012018-123527.pth.tar style: no DataParallel prefix, numpy best_loss
        state = _layout(sd, "densenet121.", old=True, counters=False)
        torch.save({"epoch": 25, "state_dict": state, "best_loss": np.float64(0.1512),
                    "optimizer": _sgd_state(state)}, path)
    elif layout == "zoogzog_module":  # re-saved with a newer torch: DataParallel prefix, norm1, counters
        state = _layout(sd, "module.densenet121.", old=False, counters=True)
        torch.save({"epoch": 25, "state_dict": state, "best_loss": torch.tensor(0.1512),
                    "optimizer": _sgd_state(state)}, path)
    elif layout == "bare":  # torch.save(model.densenet121.state_dict())
        state = _layout(sd, "", old=False, counters=True)
        torch.save(state, path)
    else:
        raise AssertionError(layout)
    return state


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def source_net() -> CheXNetModel:
    torch.manual_seed(0)
    return _randomize(CheXNetModel(), seed=1234)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    names = sorted(p.name for p in SAMPLE.iterdir() if p.name.endswith(".png"))
    return [read_image(str(SAMPLE.joinpath(n))).pixels for n in names[:4]]


def imagenet_input(gray: np.ndarray, size: int = 224) -> torch.Tensor:
    """CheXNet's input for a uint8 image, with the normalization written out independently of cxrkit: x/255, gray
    replicated to RGB, ImageNet mean/std per channel -> (3, size, size). The resize is cxrkit's documented
    geometry (pad to a centred square, area resize), the same for both networks."""
    from cxrkit.io.geometry import SquareResize

    square = SquareResize(height=gray.shape[0], width=gray.shape[1], size=size).image_to_square(gray)
    x = square.astype(np.float32) / 255.0
    rgb = np.stack([(x - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)])
    return torch.from_numpy(rgb.astype(np.float32))


@pytest.fixture(scope="module")
def batch(images) -> torch.Tensor:
    return torch.stack([imagenet_input(im) for im in images])


@pytest.fixture(scope="module")
def source_logits(source_net, batch) -> torch.Tensor:
    with torch.no_grad():
        logits = source_net.logits(batch)
        assert torch.allclose(torch.sigmoid(logits), source_net(batch), atol=1e-6)
    return logits


# ----------------------------------------------------------------------------- card and preprocessing
def test_chexnet_card_is_the_source_networks_contract(images, batch):
    card = default_card("chexnet")
    assert card.task == "classification" and card.labels == FINDINGS and card.input_size == 224
    assert card.in_channels == 3 and card.outputs == ("logits", "cams")
    assert card.normalization == Normalization(mean=IMAGENET_MEAN, std=IMAGENET_STD)
    assert card.arch_kwargs["pool"] == "avg"
    # cxrkit's preprocessing of a square image == CheXNet's, computed independently above.
    from cxrkit.models import create_model

    model = create_model("chexnet")
    x, geoms = model.preprocess(images[:2])
    assert x.shape == (2, 3, 224, 224) and x.dtype == torch.float32
    assert torch.allclose(x, batch[:2], atol=1e-6)
    # Non-square: still padded to a centred square (zeros -> (0 - mean) / std per channel), geometry kept.
    tall = np.full((300, 200), 255, np.uint8)
    x, geoms = model.preprocess([tall])
    assert (geoms[0].height, geoms[0].width) == (300, 200)
    for c, (m, s) in enumerate(zip(IMAGENET_MEAN, IMAGENET_STD)):
        assert float(x[0, c, 112, 0]) == pytest.approx((0 - m) / s, abs=1e-5)  # left padding
        assert float(x[0, c, 112, 112]) == pytest.approx((1 - m) / s, abs=1e-5)  # the image


def test_per_channel_normalization_round_trips_and_single_floats_still_work():
    card = default_card("chexnet")
    d = json.loads(card.to_json())
    assert d["normalization"]["mean"] == list(IMAGENET_MEAN)
    assert ModelCard.from_dict(d) == card
    old = default_card("densenet121").to_dict()
    old["normalization"] = {"mean": 0.5, "std": 0.25, "per_image": False}  # as older checkpoints store it
    assert ModelCard.from_dict(old).normalization == Normalization(0.5, 0.25)
    assert Normalization(0.5, 0.25).channels is None and card.normalization.channels == 3
    with pytest.raises(Exception, match="3 channel means but 2"):
        Normalization(mean=(0.1, 0.2, 0.3), std=(0.2, 0.2))
    from cxrkit.models.preprocess import to_model_input

    with pytest.raises(ModelError, match="statistics for 3 channels but the model takes 1"):
        to_model_input(np.zeros((8, 8), np.uint8), default_card("densenet121").replace(
            input_size=8, normalization=card.normalization))
    # a 1-channel card is unchanged: (1, S, S), (x - 0.5) / 0.25
    x, _ = to_model_input(np.full((8, 8), 255, np.uint8), default_card("densenet121").replace(input_size=8))
    assert x.shape == (1, 8, 8) and float(x.max()) == pytest.approx(2.0)


# ----------------------------------------------------------------------------- conversion is exact
@pytest.fixture(scope="module")
def arnoweng(tmp_path_factory, source_net) -> tuple[Path, Path, dict[str, torch.Tensor]]:
    """arnoweng/CheXNet's layout (torch 0.3 legacy file) converted once: (source file, checkpoint, state written)."""
    d = tmp_path_factory.mktemp("arnoweng")
    state = write_layout(source_net, "arnoweng", d / "model.pth.tar")
    import_chexnet(d / "model.pth.tar", d / "model.pt")
    return d / "model.pth.tar", d / "model.pt", state


def test_import_reproduces_the_source_network(arnoweng, batch, source_logits, images):
    src, out, state = arnoweng
    assert any(".norm.1." in k for k in state) and not any("num_batches_tracked" in k for k in state)
    assert src.read_bytes()[:2] != b"PK"  # the legacy (pre-1.6, non-zip) container
    model = load_checkpoint(out)
    card = model.card
    assert card.name == "chexnet" and card.weights_sha256
    prov = card.provenance
    assert prov.intended_use == INTENDED_USE and not prov.synthetic and not prov.metrics
    assert file_sha256(src) in prov.source and "--format chexnet" in prov.source and "norm.1" in prov.source
    with torch.no_grad():
        x, _ = model.preprocess(images[:2])
        logits, cams = model.forward_with_cams(x)
    assert torch.allclose(x, batch[:2], atol=1e-6)
    assert torch.allclose(logits, source_logits[:2], atol=1e-5), float((logits - source_logits[:2]).abs().max())
    assert cams.shape == (2, 14, 7, 7)
    # the registry's way callers load it
    loaded = load_model(str(out), task="classification", needs="cams")
    assert loaded.card == card


def test_outputs_differ_between_images_for_a_real_mapping(source_logits):
    # Guards the test itself: equal logits would make the comparisons meaningless.
    assert float((source_logits[0] - source_logits[1]).abs().max()) > 0.05
    assert float(source_logits.abs().max()) < 20  # probabilities not saturated


@pytest.mark.parametrize("layout", [x for x in LAYOUTS if x != "arnoweng"])
def test_every_layout_gives_the_same_weights(tmp_path, source_net, arnoweng, layout):
    # Identical weights give identical outputs, checked against the source network above.
    src = tmp_path / "w.pth.tar"
    state = write_layout(source_net, layout, src)
    card = import_chexnet(src, tmp_path / "model.pt")
    assert ("norm.1" in card.provenance.source) == (layout == "zoogzog")
    got = read_checkpoint(tmp_path / "model.pt")["state_dict"]
    want = read_checkpoint(arnoweng[1])["state_dict"]
    assert got.keys() == want.keys()
    for key, value in got.items():
        if key.endswith("num_batches_tracked"):  # not in the old files (0 there), kept from newer ones
            assert int(value) == (1000 if any(k.endswith("num_batches_tracked") for k in state) else 0), key
        else:
            assert torch.equal(value, want[key]), key


def test_loading_old_keys_non_strictly_is_the_silent_failure_being_guarded(source_net, batch, source_logits):
    # What happens in the reported issues: torchvision-era code loading norm.1 keys with strict=False.
    state = _layout(source_net.state_dict(), "", old=True, counters=False)
    fresh = _randomize(TorchvisionDenseNet121(), seed=99)
    fresh.classifier = nn.Sequential(nn.Linear(1024, 14), nn.Sigmoid())
    missing, unexpected = fresh.load_state_dict(state, strict=False)
    assert len(missing) > 300 and len(unexpected) > 300  # every dense layer's batch norms and convs
    with torch.no_grad():
        assert not torch.allclose(torch.logit(fresh.eval()(batch[:2])), source_logits[:2], atol=1e-2)


# ----------------------------------------------------------------------------- command line
def test_cli_import_then_predict_and_evaluate(tmp_path, capsys, source_net, source_logits, images):
    src = tmp_path / "model.pth.tar"
    write_layout(source_net, "arnoweng", src)
    out = tmp_path / "model.pt"
    assert main(["models", "import", "--format", "chexnet", str(src), "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    card = load_checkpoint(out).card
    assert len(line.splitlines()) == 1 and str(out) in line and "chexnet" in line
    assert card.weights_sha256[:12] in line and file_sha256(src)[:12] in line

    # predict through the CLI: probabilities are the source network's Sigmoid outputs (the CLI runs bfloat16 on
    # the CPU, hence the tolerance; float32 equality is checked above and in the evaluate step below).
    img = tmp_path / "00013911_000.png"
    img.write_bytes(SAMPLE.joinpath("00013911_000.png").read_bytes())
    names = sorted(p.name for p in SAMPLE.iterdir() if p.name.endswith(".png"))[:4]
    k = names.index(img.name)
    assert main(["predict", str(img), "--model", str(out), "--out", str(tmp_path / "p")]) == 0
    pred = json.loads((tmp_path / "p" / "00013911_000.json").read_text())
    probs = np.array([pred["probabilities"][f] for f in FINDINGS])
    want = torch.sigmoid(source_logits[k]).numpy()
    assert np.abs(probs - want).max() < 0.02, np.abs(probs - want).max()  # measured: 4.6e-3
    assert pred["model"] == "chexnet" and (pred["width"], pred["height"]) == (1024, 1024)

    # evaluate reads a predict-split-style CSV of the converted model's float32 probabilities; its AUROCs are those
    # of the source network's outputs.
    from test_auroc import brute

    model = load_checkpoint(out)
    with torch.no_grad():  # what predict-split does: sigmoid of the logits, float32 here
        probs = torch.sigmoid(model(model.preprocess(images)[0])).numpy()
    frame = pd.DataFrame(probs, columns=[f"prob_{f}" for f in model.card.labels])
    frame.insert(0, "Image Index", names)
    frame.to_csv(tmp_path / "preds.csv", index=False)
    labels = np.array([[(i + j) % 2 for j in range(14)] for i in range(len(names))])  # every finding pos and neg
    header = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
              "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
    rows = []
    for n, lab in zip(names, labels):
        found = "|".join(f for f, v in zip(FINDINGS, lab) if v) or "No Finding"
        rows.append(f"{n},{found},0,{int(n[:8])},50,F,PA,1024,1024,0.14,0.14")
    (tmp_path / "meta.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    assert main(["evaluate", "--predictions", str(tmp_path / "preds.csv"), "--metadata", str(tmp_path / "meta.csv"),
                 "--out", str(tmp_path / "e"), "--n-boot", "0", "--no-plots"]) == 0
    table = pd.read_csv(tmp_path / "e" / "auroc.csv")
    source_probs = torch.sigmoid(source_logits).numpy()
    assert np.abs(frame.iloc[:, 1:].to_numpy() - source_probs).max() < 1e-5
    for j, f in enumerate(FINDINGS):
        assert table.auroc[j] == pytest.approx(brute(labels[:, j], source_probs[:, j]), abs=1e-9), f


def test_cli_errors_are_one_line(tmp_path, capsys, source_net):
    src = tmp_path / "w.pt"
    write_layout(source_net, "bare", src)
    assert main(["models", "import", "--format", "chexnet", str(src), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a folder" in err
    (tmp_path / "junk.pth.tar").write_bytes(b"not a torch file")
    assert main(["models", "import", "--format", "chexnet", str(tmp_path / "junk.pth.tar"),
                 "--out", str(tmp_path / "m.pt")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "junk.pth.tar: not a readable PyTorch file" in err
    assert not (tmp_path / "m.pt").exists()
    assert main(["models", "import", "--format", "densenet", str(src), "--out", str(tmp_path / "m.pt")]) == 2
    with pytest.raises(UsageError, match="is the source file"):
        import_chexnet(src, src)


# ----------------------------------------------------------------------------- strictness
@pytest.fixture(scope="module")
def bare_state(source_net) -> dict[str, torch.Tensor]:
    return _layout(source_net.state_dict(), "module.densenet121.", old=True, counters=False)


def _import_state(tmp_path, state) -> ModelCard:
    torch.save({"epoch": 1, "state_dict": state}, tmp_path / "w.pth.tar")
    return import_chexnet(tmp_path / "w.pth.tar", tmp_path / "m.pt")


def test_missing_key_is_named(tmp_path, bare_state):
    state = dict(bare_state)
    gone = "module.densenet121.features.denseblock3.denselayer7.norm.2.running_var"
    del state[gone]
    with pytest.raises(ModelError, match=r"missing keys module\.densenet121\.features\.denseblock3\.denselayer7\.norm2"
                                         r"\.running_var \(1 in all\)"):
        _import_state(tmp_path, state)
    state = {k: v for k, v in bare_state.items() if "classifier" not in k}
    with pytest.raises(ModelError, match=r"missing keys .*classifier\.0\.bias, .*classifier\.0\.weight \(2 in all\)"):
        _import_state(tmp_path, state)
    assert not (tmp_path / "m.pt").exists()


def test_unexpected_key_is_named(tmp_path, bare_state):
    state = dict(bare_state)
    state["module.densenet121.features.denseblock5.denselayer1.norm.1.weight"] = torch.ones(3)
    with pytest.raises(ModelError, match=r"unexpected keys module\.densenet121\.features\.denseblock5\.denselayer1"
                                         r"\.norm\.1\.weight \(1 in all\)"):
        _import_state(tmp_path, state)
    state = {("module.resnet50." + k[len("module.densenet121."):]): v for k, v in bare_state.items()}
    with pytest.raises(ModelError, match=r"unexpected keys .*, \.\.\. \(\d{3} in all\)"):
        _import_state(tmp_path, state)


def test_shape_mismatch_names_key_and_shapes(tmp_path, bare_state):
    state = dict(bare_state)
    state["module.densenet121.classifier.0.weight"] = torch.zeros(15, 1024)
    state["module.densenet121.classifier.0.bias"] = torch.zeros(15)
    with pytest.raises(ModelError, match=r"'module\.densenet121\.classifier\.0\.(weight|bias)' has shape "
                                         r"\(15(, 1024)?\), the model needs \(14(, 1024)?\)"):
        _import_state(tmp_path, state)
    state = dict(bare_state)
    state["module.densenet121.features.conv0.weight"] = torch.zeros(64, 1, 7, 7)
    with pytest.raises(ModelError, match=r"conv0\.weight' has shape \(64, 1, 7, 7\), the model needs \(64, 3, 7, 7\)"):
        _import_state(tmp_path, state)


def test_constant_outputs_are_refused(tmp_path, bare_state):
    state = dict(bare_state)
    state["module.densenet121.classifier.0.weight"] = torch.zeros(14, 1024)  # an untrained head: bias only
    with pytest.raises(ModelError, match="outputs do not depend on the input: wrong or untrained weights"):
        _import_state(tmp_path, state)
    assert not (tmp_path / "m.pt").exists()


def test_files_that_need_code_execution_are_refused(tmp_path, source_net):
    torch.save(source_net, tmp_path / "whole_model.pth")  # a pickled nn.Module: loading it would run code
    with pytest.raises(ModelError, match=r"whole_model\.pth: cannot be read without running code stored in the file"):
        import_chexnet(tmp_path / "whole_model.pth", tmp_path / "m.pt")
    torch.save({"state_dict": {"a": 1}}, tmp_path / "odd.pt")
    with pytest.raises(ModelError, match="entries are not tensors"):
        import_chexnet(tmp_path / "odd.pt", tmp_path / "m.pt")


def test_numpy_scalars_are_read_without_running_code(tmp_path):
    # zoogzog/chexnet-era files may hold best_loss as a numpy scalar, pickled by numpy 1.x as numpy.core.multiarray.
    from cxrkit.models.convert import read_torch_file

    buf = io.BytesIO()
    torch.save({"best_loss": np.float64(0.15), "w": torch.ones(2)}, buf, _use_new_zipfile_serialization=False)
    data = buf.getvalue()
    for name in (b"numpy._core.multiarray", b"numpy.core.multiarray"):
        (tmp_path / "f.pt").write_bytes(data.replace(b"numpy._core.multiarray", name))
        obj = read_torch_file(tmp_path / "f.pt")
        assert obj["best_loss"] == pytest.approx(0.15) and torch.equal(obj["w"], torch.ones(2))
