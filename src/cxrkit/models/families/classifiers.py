"""Multi-label chest X-ray classifiers: DenseNet-121 (CheXNet-style, default), ResNet-50 (the
ChestX-ray14 paper's) and ResNet-18 (light, for CPU benchmarks), all from MONAI's networks, 1-channel.

Every classifier is ``backbone -> (ReLU) -> global average pooling -> linear``, so class activation maps
(CAM, Zhou et al. 2016) come straight from the last feature map and the linear weights; Grad-CAM works
on ``model.target_layer``.
"""

from __future__ import annotations

import torch
from torch import nn

from cxrkit.findings import FINDINGS
from cxrkit.models.cards import ModelCard, Normalization, arch
from cxrkit.models.module import CxrModule
from cxrkit.models.registry import register_model

# ImageNet-like grey statistics are meaningless without ImageNet weights; these are the mean/std of
# NIH ChestX-ray14 pixels scaled to [0, 1] (measured on the 200 bundled/shared images: ~0.50 / ~0.25).
_NORM = Normalization(mean=0.5, std=0.25)


class Classifier(CxrModule):
    """Backbone + GAP + linear multi-label head. ``forward`` returns logits (N, n_labels)."""

    def __init__(self, card: ModelCard, backbone: nn.Module, n_features: int, relu: bool):
        super().__init__()
        self.card = card
        self.backbone = backbone
        self.relu = relu
        self.dropout = nn.Dropout(float(card.arch_kwargs.get("dropout", 0.0)))
        self.head = nn.Linear(n_features, len(card.labels))

    @property
    def target_layer(self) -> nn.Module:
        """The module whose output is the last feature map (for Grad-CAM hooks)."""
        return self.backbone

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last feature map (N, C, h, w), after the ReLU the head applies."""
        f = self.backbone(x)
        return torch.relu(f) if self.relu else f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return self.head(self.dropout(f.mean(dim=(2, 3))))

    def forward_with_cams(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (N, K) and class activation maps (N, K, h, w) in one pass (CAM: sum_c w_kc f_c)."""
        f = self.features(x)
        logits = self.head(f.mean(dim=(2, 3)))
        cams = torch.einsum("kc,nchw->nkhw", self.head.weight.to(f.dtype), f)
        return logits, cams


def _densenet_backbone(card: ModelCard) -> tuple[nn.Module, int]:
    from monai.networks.nets import DenseNet121

    net = DenseNet121(spatial_dims=2, in_channels=card.in_channels, out_channels=1, pretrained=False)
    return net.features, net.class_layers.out.in_features


def _resnet_backbone(depth: int):
    def make(card: ModelCard) -> tuple[nn.Module, int]:
        from monai.networks import nets

        net = getattr(nets, f"resnet{depth}")(spatial_dims=2, n_input_channels=card.in_channels, num_classes=1)
        body = nn.Sequential(net.conv1, net.bn1, net.act, net.maxpool, net.layer1, net.layer2, net.layer3,
                             net.layer4)
        return body, net.fc.in_features

    return make


def _card(name: str, description: str, input_size: int = 224) -> ModelCard:
    return ModelCard(
        name=name,
        task="classification",
        labels=FINDINGS,
        input_size=input_size,
        in_channels=1,
        normalization=_NORM,
        thresholds=None,
        architecture=arch(dropout=0.0),
        description=description,
    )


@register_model(_card("densenet121", "DenseNet-121 (CheXNet-style), GAP + linear head, 14 findings"))
def densenet121(card: ModelCard) -> Classifier:
    body, n = _densenet_backbone(card)
    return Classifier(card, body, n, relu=True)


@register_model(_card("resnet50", "ResNet-50 (the ChestX-ray14 paper's), GAP + linear head, 14 findings"))
def resnet50(card: ModelCard) -> Classifier:
    body, n = _resnet_backbone(50)(card)
    return Classifier(card, body, n, relu=False)


@register_model(_card("resnet18", "ResNet-18, GAP + linear head; light model for CPU benchmarks", 256))
def resnet18(card: ModelCard) -> Classifier:
    body, n = _resnet_backbone(18)(card)
    return Classifier(card, body, n, relu=False)
