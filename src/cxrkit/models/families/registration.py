"""``rca_regnet``: a learned 2-D registration network for RCA quality control.

Two stages, as in learned affine + deformable registration (MONAI's GlobalNet / LocalNet design):

* an affine net: a strided conv encoder over the (moving, fixed) pair, global pooling and a linear
  head that predicts ``theta = I + delta`` (initialized to the identity);
* a deformable net: a MONAI ``UNet`` over (affinely warped moving, fixed) and a zero-initialized conv head
  that predict a displacement field at a quarter of the input size (normalized units, bounded by ``tanh``).

Both heads start at zero, so an untrained network is the identity transform.

Input: two standardized images ``(N, 1, S, S)`` (see :func:`cxrkit.models.warp.standardize`); output a
:class:`cxrkit.models.warp.Transform` mapping fixed -> moving locations. Trained (``cxrkit registration
train``) with local NCC and a smoothness penalty on image pairs, optionally plus a soft-Dice loss on
labelled pairs; at inference it sees images only.

Shipped weights (``create_model("rca_regnet", pretrained=True)``, 0.6 MB): ``cxrkit registration train
--out DIR --steps 6000 --mask-weight 1 --threads 2`` (batch 8, seed 0; image loss on moving images from
the 174 JSRT training images and the 200 NIH images of the shared data, randomly misaligned, against the
JSRT training images; plus the auxiliary soft-Dice loss on labelled JSRT training pairs), 1,354 s on
two CPU threads; held-out local NCC 0.610. The purely unsupervised variant (``--mask-weight 0``) reached
a similar local NCC (0.612) but registered the heart less well: RCA Pearson r for the heart on the JSRT
validation split 0.932 vs 0.950 (docs/qc.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cxrkit.models.cards import ModelCard, Normalization, Provenance, arch
from cxrkit.models.module import CxrModule
from cxrkit.models.registry import register_model
from cxrkit.models.warp import Transform, standardize

_ARCH = dict(widths=(16, 32, 32, 64, 64), unet_channels=(16, 32, 32, 32), max_disp=0.25)


class RegNet(CxrModule):
    def __init__(self, card: ModelCard) -> None:
        super().__init__()
        from monai.networks.nets import UNet

        a = {**_ARCH, **card.arch_kwargs}
        self.card = card
        layers, c = [], 2
        for w in a["widths"]:
            layers += [torch.nn.Conv2d(c, w, 3, stride=2, padding=1), torch.nn.GroupNorm(4, w), torch.nn.ReLU()]
            c = w
        self.encoder = torch.nn.Sequential(*layers)
        self.affine_head = torch.nn.Linear(c, 6)
        torch.nn.init.zeros_(self.affine_head.weight)
        torch.nn.init.zeros_(self.affine_head.bias)
        ch = tuple(a["unet_channels"])
        self.deform = UNet(spatial_dims=2, in_channels=2, out_channels=ch[0], channels=ch, strides=(2,) * (len(ch) - 1),
                           num_res_units=1)
        self.flow = torch.nn.Conv2d(ch[0], 2, 3, padding=1)  # zero-initialized: an untrained net is the identity
        torch.nn.init.zeros_(self.flow.weight)
        torch.nn.init.zeros_(self.flow.bias)
        self.max_disp = float(a["max_disp"])

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor, deformable: bool = True):
        if moving.shape[0] == 1 and fixed.shape[0] > 1:
            moving = moving.expand(fixed.shape[0], *moving.shape[1:])
        h = self.encoder(torch.cat([moving, fixed], 1)).mean(dim=(2, 3))
        theta = torch.eye(2, 3, dtype=h.dtype, device=h.device) + self.affine_head(h).view(-1, 2, 3) * 0.1
        t = Transform(theta)
        if not deformable:
            return t
        warped = standardize(t.warp(moving))
        size = fixed.shape[-1] // 4
        d = self.flow(F.relu(self.deform(torch.cat([warped, fixed], 1))))
        d = F.interpolate(d, size=(size, size), mode="area")
        return Transform(theta, torch.tanh(d) * self.max_disp)


@register_model(ModelCard(
    name="rca_regnet", task="registration", labels=("moving", "fixed"), input_size=128, in_channels=2,
    normalization=Normalization(per_image=True), architecture=arch(**_ARCH),
    weights_sha256="675a4db1eede81f2aac75d695933a33b11b16b9965dc3eeac23f5c475b0548fb",
    description="learned affine + deformable registration of a radiograph to an RCA reference image; "
                "trained with local NCC + smoothness on JSRT train and NIH images, plus soft Dice on JSRT train pairs",
    outputs=("transform",),
    provenance=Provenance(
        training_data="image pairs from the 174 JSRT training images and 200 NIH ChestX-ray14 images; soft Dice on "
                      "labelled JSRT training pairs (SCR masks)",
        license="Apache-2.0 (weights made by cxrkit); the training data (JSRT, SCR) are for research use",
        intended_use="registering a radiograph to RCA reference images for segmentation quality control",
        source="cxrkit registration train --out DIR --steps 6000 --mask-weight 1 --threads 2 (seed 0)")),
    weights_file="rca_regnet.pt")
def rca_regnet(card: ModelCard) -> RegNet:
    return RegNet(card)
