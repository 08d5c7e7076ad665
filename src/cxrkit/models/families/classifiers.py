"""Multi-label chest X-ray classifiers: DenseNet-121 (CheXNet-style, default), ResNet-50 (the
ChestX-ray14 paper's) and a light ResNet (``resnet_lite``: ResNet-18 depth, 24-96 channels, ~0.9 M parameters,
no max pool and a stride-1 last stage so the output stride is 8, LSE pooling; for CPU benchmarks and the
lesion-insertion model shipped with the demo), all from MONAI's networks, 1-channel.

Every classifier is ``backbone -> (ReLU) -> per-location linear class scores -> spatial pooling``. With
average pooling (``pool="avg"``, the default, CheXNet's GAP) this is exactly GAP followed by a linear
layer; ``pool="lse"`` is the ChestX-ray8 paper's log-sum-exp pooling (``1/r log mean exp(r s)``, between
average and max), which learns small lesions much faster. Either way the class activation maps (CAM,
Zhou et al. 2016) are the per-location scores, so localization needs no extra pass; Grad-CAM works on
``model.target_layer``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from cxrkit.findings import FINDINGS
from cxrkit.models.cards import ModelCard, Normalization, Provenance, arch
from cxrkit.models.module import CxrModule
from cxrkit.models.registry import register_model

# ImageNet-like grey statistics are meaningless without ImageNet weights; these are the mean/std of
# NIH ChestX-ray14 pixels scaled to [0, 1] (measured on the 200 bundled/shared images: ~0.50 / ~0.25).
_NORM = Normalization(mean=0.5, std=0.25)

POOLS = ("avg", "lse", "max")

# ``cam_flips`` architecture option: the flips (tensor dims of an (N, C, H, W) batch) whose class maps are averaged.
# "h": the input and its left-right mirror; "hv": also the up-down mirror and both. A map averaged over mirrored
# inputs is mirror-equivariant: a finding-specific displacement of the network's response from the lesion (which
# image-level training does not prevent) becomes a symmetric pair of responses around the lesion, and when the
# averaging is also used in training (``cam_flips_train``, default True) the pooling rewards responses that coincide,
# i.e. that sit on the lesion. Costs one backbone pass per view. Where the network still responds at a fixed
# displacement d from a lesion, the mirrored views respond at the mirror images of d and their average is a lobed
# map around the lesion; ``cam_view_shift`` (per label (dx, dy) in input pixels, estimated from the views' own
# peaks without boxes: cxrkit.classification.cam.estimate_view_shift) moves each view back before averaging.
CAM_FLIPS: dict[str, tuple[tuple[int, ...], ...]] = {"none": ((),), "h": ((), (3,)), "hv": ((), (3,), (2,), (2, 3))}


def lse_sharpness(value: Any, labels: Sequence[str]) -> tuple[float, ...]:
    """LSE pooling sharpness per label: ``value`` is one positive number for every label or a sequence with one
    positive number per label (in ``labels`` order). Lower r is closer to average pooling, higher to max pooling."""
    if isinstance(value, (int, float)):
        values = (float(value),) * len(labels)
    else:
        values = tuple(float(v) for v in value)
        if len(values) != len(labels):
            raise ValueError(f"lse_r has {len(values)} values but the model has {len(labels)} labels {list(labels)}")
    bad = [v for v in values if not v > 0]
    if bad:
        raise ValueError(f"lse_r must be positive (LSE pooling sharpness), got {bad[0]!r}")
    return values


class Classifier(CxrModule):
    """Backbone + GAP + linear multi-label head. ``forward`` returns logits (N, n_labels)."""

    def __init__(self, card: ModelCard, backbone: nn.Module, n_features: int, relu: bool):
        super().__init__()
        self.card = card
        self.backbone = backbone
        self.relu = relu
        self.dropout = nn.Dropout(float(card.arch_kwargs.get("dropout", 0.0)))
        self.head = nn.Linear(n_features, len(card.labels))
        self.pool = str(card.arch_kwargs.get("pool", "avg"))
        self.lse_r = lse_sharpness(card.arch_kwargs.get("lse_r", 10.0), card.labels)
        if self.pool not in POOLS:
            raise ValueError(f"pool {self.pool!r} is not one of {POOLS}")
        self.cam_flips = str(card.arch_kwargs.get("cam_flips", "none"))
        if self.cam_flips not in CAM_FLIPS:
            raise ValueError(f"cam_flips {self.cam_flips!r} is not one of {tuple(CAM_FLIPS)}")
        self.cam_flips_train = bool(card.arch_kwargs.get("cam_flips_train", True))
        shift = card.arch_kwargs.get("cam_view_shift")
        self.cam_view_shift = None if shift is None else tuple((float(a), float(b)) for a, b in shift)
        if self.cam_view_shift is not None and len(self.cam_view_shift) != len(card.labels):
            raise ValueError(f"cam_view_shift has {len(self.cam_view_shift)} (dx, dy) pairs for {len(card.labels)} labels")

    @property
    def target_layer(self) -> nn.Module:
        """The module whose output is the last feature map (for Grad-CAM hooks)."""
        return self.backbone

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last feature map (N, C, h, w), after the ReLU the head applies."""
        f = self.backbone(x)
        return torch.relu(f) if self.relu else f

    @property
    def flip_averaging(self) -> bool:
        """Whether this pass averages the class maps of flipped copies of the input (see ``cam_flips``)."""
        return self.cam_flips != "none" and (self.cam_flips_train or not self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.flip_averaging:
            return self.forward_with_cams(x)[0]
        f = self.features(x)
        if self.pool == "avg":
            return self.head(self.dropout(f.mean(dim=(2, 3))))
        return self.forward_with_cams(x, features=f)[0]

    def _pool(self, maps: torch.Tensor) -> torch.Tensor:
        if self.pool == "avg":
            return maps.mean(dim=(2, 3))
        if self.pool == "max":
            return maps.amax(dim=(2, 3))
        r = torch.tensor(self.lse_r, dtype=torch.float32, device=maps.device).view(1, -1)
        m = maps.float().flatten(2) * r.unsqueeze(2)
        return (torch.logsumexp(m, dim=2) - math.log(m.shape[2])) / r

    def forward_with_cams(self, x: torch.Tensor, features: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (N, K) and class activation maps (N, K, h, w) in one pass (CAM: sum_c w_kc f_c).

        With flip averaging (``cam_flips`` "h" or "hv", see :data:`CAM_FLIPS`) the maps are those of the input
        and its flipped copies, each brought to input resolution (feature cell ``k`` centred on input pixel
        ``k * stride``, as :func:`upsample_cams`), flipped back on the pixel grid and
        averaged, so (h, w) is the input's (S, S); the logits pool that averaged map.
        """
        if features is None and self.flip_averaging:
            return self._flip_averaged(x)
        f = self.features(x) if features is None else features
        if self.pool == "avg":
            f = self.dropout(f)
        cams = torch.einsum("kc,nchw->nkhw", self.head.weight.to(f.dtype), f)
        logits = self._pool(cams).to(self.head.bias.dtype) + self.head.bias
        return logits, cams

    def view_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Class maps of the input and of its flipped copies (``cam_flips``; "none": the input alone), (V, N, K, S, S):
        each at input resolution (feature cell ``k`` centred on input pixel ``k * stride``) and flipped back onto
        the input's pixel grid, before any ``cam_view_shift`` and before averaging."""
        if x.shape[-1] != x.shape[-2]:
            raise ValueError(f"flip-averaged class maps need a square input, got {tuple(x.shape[-2:])}")
        dims = CAM_FLIPS[self.cam_flips]
        n = x.shape[0]
        f = self.features(torch.cat([x.flip(d) if d else x for d in dims]))
        if self.pool == "avg":
            f = self.dropout(f)
        cams = upsample_cams(torch.einsum("kc,nchw->nkhw", self.head.weight.to(f.dtype), f), x.shape[-1])
        return torch.stack([cams[i * n:(i + 1) * n].flip(d) if d else cams[i * n:(i + 1) * n]
                            for i, d in enumerate(dims)])

    def _flip_averaged(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        views = self.view_maps(x)
        if self.cam_view_shift is not None:
            views = align_mirrored_views(views, CAM_FLIPS[self.cam_flips], self.cam_view_shift)
        maps = views.mean(0)
        logits = self._pool(maps).to(self.head.bias.dtype) + self.head.bias
        return logits, maps


def upsample_cams(maps: torch.Tensor, size: int) -> torch.Tensor:
    """(N, K, h, w) -> (N, K, size, size) at model-input resolution, bilinear between cell centres.

    In these networks (stride-2 convolutions and pools with "same" padding) feature cell ``k`` is centred
    on input pixel ``k * stride`` with ``stride = size / h``, not on ``(k + 0.5) * stride - 0.5`` as
    ``F.interpolate(align_corners=False)`` assumes (nor on ``k * (size - 1) / (h - 1)`` as
    ``align_corners=True`` does); either convention shifts the map down-right by up to half a cell, which
    is enough to push a small lesion's box off the lesion. Pixels beyond the last centre take its value.
    """
    n, k, h, w = maps.shape
    my = _interp_matrix(size, h, size / h).to(maps.device)
    mx = _interp_matrix(size, w, size / w).to(maps.device)
    return torch.einsum("ph,nkhw,qw->nkpq", my, maps.float(), mx)


def _interp_matrix(size: int, cells: int, stride: float) -> torch.Tensor:
    u = np.clip(np.arange(size, dtype=np.float64) / stride, 0, cells - 1)
    k0 = np.floor(u).astype(int)
    k1 = np.minimum(k0 + 1, cells - 1)
    frac = (u - k0).astype(np.float32)
    m = np.zeros((size, cells), np.float32)
    np.add.at(m, (np.arange(size), k0), 1 - frac)
    np.add.at(m, (np.arange(size), k1), frac)
    return torch.from_numpy(m)


def view_sign(dims: tuple[int, ...]) -> tuple[int, int]:
    """(x, y) signs of a displacement seen through the mirror of an (N, C, H, W) batch flipped on ``dims``."""
    return (-1 if 3 in dims else 1, -1 if 2 in dims else 1)


def align_mirrored_views(views: torch.Tensor, dims: tuple[tuple[int, ...], ...],
                 shift: tuple[tuple[float, float], ...]) -> torch.Tensor:
    """Move each view's maps by its mirror image of the per-label displacement ``shift`` ((dx, dy) input pixels,
    rounded): a network that responds at ``d`` from a lesion responds at ``g(d)`` in the view mirrored by ``g``,
    so ``view_g(p + g(d))`` responds on the lesion itself. Pixels moved in from outside repeat the border."""
    v, n, k, size, _ = views.shape
    out = views.clone()
    base = torch.arange(size, device=views.device)
    for i, d in enumerate(dims):
        sx, sy = view_sign(d)
        for j, (dx, dy) in enumerate(shift):
            iy = (base + int(round(sy * dy))).clamp(0, size - 1)
            ix = (base + int(round(sx * dx))).clamp(0, size - 1)
            out[i, :, j] = views[i, :, j][:, iy][:, :, ix]
    return out


def _densenet_backbone(card: ModelCard) -> tuple[nn.Module, int]:
    from monai.networks.nets import DenseNet121

    net = DenseNet121(spatial_dims=2, in_channels=card.in_channels, out_channels=1, pretrained=False)
    return net.features, net.class_layers.out.in_features


def _resnet_body(card: ModelCard, block: str, layers, widths, conv1_stride: int, max_pool: bool,
                 last_stride: int = 2, layer3_stride: int = 2, dilate: bool = False) -> tuple[nn.Module, int]:
    """MONAI ResNet body. ``last_stride=1`` keeps layer4 at layer3's resolution; ``layer3_stride=1`` also keeps
    layer3 at layer2's (output stride 4 for resnet_lite). ``dilate``: dilate the 3x3 convolutions after a removed
    stride (by 2 per removed stride, DeepLab-style), so the receptive field stays that of the strided network."""
    from monai.networks.nets import ResNet

    net = ResNet(block=block, layers=list(layers), block_inplanes=list(widths), spatial_dims=2,
                 n_input_channels=card.in_channels, conv1_t_stride=conv1_stride, no_max_pool=not max_pool,
                 num_classes=1)
    if last_stride == 1:  # keep layer4 at layer3's resolution: twice finer class activation maps
        first = net.layer4[0]
        first.conv1.stride = (1, 1)
        if first.downsample is not None:
            first.downsample[0].stride = (1, 1)
    if layer3_stride == 1:  # and layer3 at layer2's: four times finer than the standard layout
        first = net.layer3[0]
        first.conv1.stride = (1, 1)
        if first.downsample is not None:
            first.downsample[0].stride = (1, 1)
    if dilate:
        rate = 1
        for layer, stride in ((net.layer3, layer3_stride), (net.layer4, last_stride)):
            removed = stride == 1
            for i, blk in enumerate(layer):
                for conv in (m for m in blk.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)):
                    # the conv that lost the stride keeps the previous rate, the ones after it double it
                    d = rate if (removed and i == 0 and conv is blk.conv1) else rate * (2 if removed else 1)
                    conv.dilation, conv.padding = (d, d), (d, d)
            rate *= 2 if removed else 1
    parts = [net.conv1, net.bn1, net.act] + ([net.maxpool] if max_pool else [])
    body = nn.Sequential(*parts, net.layer1, net.layer2, net.layer3, net.layer4)
    return body, net.fc.in_features


def _card(name: str, description: str, input_size: int = 224) -> ModelCard:
    return ModelCard(
        name=name,
        task="classification",
        labels=FINDINGS,
        input_size=input_size,
        in_channels=1,
        normalization=_NORM,
        thresholds=None,
        architecture=arch(dropout=0.0, pool="avg"),
        description=description,
        outputs=("logits", "cams"),
    )


@register_model(_card("densenet121", "DenseNet-121 (CheXNet-style), GAP + linear head, 14 findings"))
def densenet121(card: ModelCard) -> Classifier:
    body, n = _densenet_backbone(card)
    return Classifier(card, body, n, relu=True)


@register_model(_card("resnet50", "ResNet-50 (the ChestX-ray14 paper's), GAP + linear head, 14 findings"))
def resnet50(card: ModelCard) -> Classifier:
    # Standard ImageNet layout: 7x7/2 stem + max pool, output stride 32.
    body, n = _resnet_body(card, "bottleneck", (3, 4, 6, 3), (64, 128, 256, 512), conv1_stride=2, max_pool=True)
    return Classifier(card, body, n, relu=False)


# The network of the CheXNet reimplementations (arnoweng/CheXNet, zoogzog/chexnet): torchvision's DenseNet-121
# (features -> ReLU -> GAP -> Linear 1024 -> 14; their Sigmoid is cxrkit's logits -> probabilities step) on the gray
# image replicated to 3 channels with ImageNet statistics, at 224 px. No weights ship: `cxrkit models import
# --format chexnet FILE --out model.pt` (cxrkit.models.convert) fills them from those repositories' files.
IMAGENET_NORM = Normalization(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
_CHEXNET_CARD = _card(
    "chexnet", "DenseNet-121 as in the CheXNet reimplementations (torchvision layout): gray image replicated to 3 "
    "channels, ImageNet normalization per channel, 224 px, ReLU + GAP + linear head, 14 NIH findings; weights from "
    "`cxrkit models import --format chexnet`").replace(in_channels=3, normalization=IMAGENET_NORM)


@register_model(_CHEXNET_CARD)
def chexnet(card: ModelCard) -> Classifier:
    return densenet121(card)


_LITE = dict(layers=(2, 2, 2, 2), widths=(24, 48, 96, 96), conv1_stride=2, last_stride=1, dropout=0.0, pool="lse",
             lse_r=10.0)


@register_model(_card("resnet_lite", "Light ResNet (ResNet-18 depth, 24-96 channels, output stride 8, LSE pooling): "
                      "CPU benchmarks and the shipped lesion-insertion model", 256).replace(architecture=arch(**_LITE)))
def resnet_lite(card: ModelCard) -> Classifier:
    a = {**_LITE, **card.arch_kwargs}
    body, n = _resnet_body(card, "basic", a["layers"], a["widths"], conv1_stride=a["conv1_stride"], max_pool=False,
                           last_stride=a["last_stride"], layer3_stride=int(a.get("layer3_stride", 2)),
                           dilate=bool(a.get("dilate", False)))
    return Classifier(card, body, n, relu=False)


# Trained with `cxrkit bench lesions --cam-flips hv --seeds 0 1 2` (defaults: mirror-averaged class maps, data seed 0)
# on the 200 real NIH images of the shared data with inserted Effusion / Mass / Nodule; the seed-2 model, chosen among
# the three by validation mean IoU (not by test), with the per-finding box rules its run chose on the validation
# images; shipped so the demo runs offline. Metrics: that run's test figures (its metrics.json, confirmed by
# rescoring this file). See README "Classification and localization".
_LESION_CARD = _card("resnet_lite_lesions", "resnet_lite with mirror-averaged class maps (cam_flips hv) trained by "
                     "`cxrkit bench lesions` on real NIH images with inserted Effusion / Mass / Nodule (a pipeline "
                     "demo, not a clinical model)", 256).replace(
    labels=("Effusion", "Mass", "Nodule"), thresholds=(0.5, 0.5, 0.5),
    architecture=arch(**_LITE, cam_flips="hv", cam_flips_train=True, cam_view_shift=((0, 0), (0, 0), (0, 0))),
    weights_sha256="21c4bc4651572776cec6d0c64da795f8f5c82849fa17d3f2bb634801bf926a03",
    # bench/bench_precision.py: test AUROC in bf16 within 0.001 of fp32 (bench/results/precision.txt); the metrics
    # below were measured with bf16 class maps, so `auto` now computes what they describe.
    inference_precision="bf16",
    # Chosen per finding on the validation images by mean IoU of the top box (metrics.json box_method.method).
    box_rules=(("Effusion", "threshold", (("component", "each"), ("threshold", 0.3))),
               ("Mass", "threshold", (("component", "union"), ("threshold", 0.5))),
               ("Nodule", "threshold", (("component", "each"), ("threshold", 0.7)))),
    provenance=Provenance(
        training_data="the 200 real NIH ChestX-ray14 images of the project's shared data with SYNTHETIC Effusion, "
                      "Mass and Nodule lesions inserted (cxrkit bench lesions, data seed 0, training seed 2); no "
                      "real labels",
        synthetic=True,
        metrics=(("lesion_bench_test_auroc_mean", 0.9944), ("lesion_bench_test_acc_iobb_0.5", 0.8193),
                 ("lesion_bench_test_acc_iou_0.3", 0.8916), ("lesion_bench_test_mean_iou", 0.4745)),
        metrics_command="cxrkit bench lesions --cam-flips hv --seeds 2 --out DIR (test split of the benchmark: 27 "
                        "unseen patients x 4 variants; top box per finding by this card's box rules, class maps in "
                        "bf16 on CPU); DIR/seed-2/metrics.json, confirmed by rescoring this file with "
                        "cxrkit.classification.lesion_bench.score_run",
        license="Apache-2.0 (weights made by cxrkit from NIH ChestX-ray14 images: public, cite Wang et al. CVPR 2017)",
        intended_use="demonstrates the classification and localization pipeline on the lesion-insertion benchmark; "
                     "NOT a findings classifier: its outputs on real radiographs are not findings",
        source="cxrkit bench lesions --cam-flips hv --seeds 0 1 2 (trained on an NVIDIA H200, scored on CPU); the "
               "seed-2 model, chosen by validation mean IoU (0.456; seeds 0/1: 0.407/0.377)"))


@register_model(_LESION_CARD, weights_file="resnet_lite_lesions.pt")
def resnet_lite_lesions(card: ModelCard) -> Classifier:
    return resnet_lite(card)
