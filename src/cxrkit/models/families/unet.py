"""``unet``: MONAI's UNet as the pixel-classifier baseline for lungs + heart segmentation.

Three sigmoid channels (right lung, left lung, heart) at the model-input square; masks are thresholded
at 0.5, so unlike the landmark model nothing forces one region per structure. Trained on the same JSRT
data by ``cxrkit segmentation train --model unet``.
"""

from __future__ import annotations

import torch

from cxrkit.models.cards import ModelCard, Normalization, arch
from cxrkit.models.module import CxrModule
from cxrkit.models.registry import register_model

_ARCH = dict(channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2)


class UNetSeg(CxrModule):
    """``forward`` returns a dict with ``logits`` (B, 3, S, S)."""

    def __init__(self, card: ModelCard):
        super().__init__()
        from monai.networks.nets import UNet

        a = {**_ARCH, **card.arch_kwargs}
        self.card = card
        self.net = UNet(spatial_dims=2, in_channels=card.in_channels, out_channels=len(card.labels),
                        channels=tuple(a["channels"]), strides=tuple(a["strides"]), num_res_units=int(a["num_res_units"]))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.net(x)}


@register_model(ModelCard(
    name="unet", task="segmentation", labels=("right_lung", "left_lung", "heart"), input_size=256, in_channels=1,
    normalization=Normalization(per_image=True), architecture=arch(**_ARCH),
    description="MONAI UNet pixel baseline (3 sigmoid channels)", outputs=("masks",)))
def unet(card: ModelCard) -> UNetSeg:
    return UNetSeg(card)
