"""HybridGNet-style landmark segmentation (Gaggion et al., IEEE TMI 2022), written in plain torch.

A convolutional encoder maps the image to a variational latent (mu, logvar); a decoder of Chebyshev
spectral graph convolutions over the fixed CheXmask contour graph (three closed rings: right lung 44,
left lung 50, heart 26 nodes) turns a latent sample into 120 landmarks. The decoder works on a coarse
graph first (every other node of each ring), predicts intermediate landmarks, samples encoder features
at them (image-to-graph skip connection, IGSC), unpools to the full graph by ring interpolation and
refines. Outputs are (x, y) in [0, 1] of the model-input square (multiply by the side for pixels); masks
come from filling the contours, so each structure is one closed region without holes as long as its
contour does not cross itself (`cxrkit segmentation evaluate` counts the outputs where it does).

Shipped weights (``create_model("hybridgnet", pretrained=True)``, the default of ``cxrkit segment``): trained
by ``cxrkit segmentation train --out DIR --steps 12000 --threads 1`` (256 px, batch 8, seed 0, per-image
intensity standardization, augmentation with rotation, scale, shift, contrast, gamma and noise) on the 174
JSRT training images, best of the validation checkpoints; JSRT test Dice 0.973 / 0.964 / 0.936 (right
lung / left lung / heart, see docs/segmentation.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cxrkit.models.cards import ModelCard, Normalization, Provenance, arch
from cxrkit.models.module import CxrModule
from cxrkit.models.registry import register_model

RINGS: tuple[int, ...] = (44, 50, 26)  # right lung, left lung, heart (CheXmask order)


def ring_adjacency(sizes: tuple[int, ...]) -> torch.Tensor:
    """Adjacency (N, N) of disjoint closed rings of the given sizes (node order: ring by ring)."""
    n = sum(sizes)
    a = torch.zeros(n, n)
    start = 0
    for s in sizes:
        idx = torch.arange(start, start + s)
        a[idx, torch.roll(idx, -1)] = 1
        a[torch.roll(idx, -1), idx] = 1
        start += s
    return a


def scaled_laplacian(adj: torch.Tensor) -> torch.Tensor:
    """``2 L / lambda_max - I`` with the normalized Laplacian ``L = I - D^-1/2 A D^-1/2`` and lambda_max = 2."""
    d = adj.sum(1).clamp(min=1).rsqrt()
    return -(d[:, None] * adj * d[None, :])


def coarse_sizes(sizes: tuple[int, ...]) -> tuple[int, ...]:
    return tuple((s + 1) // 2 for s in sizes)


def unpool_matrix(sizes: tuple[int, ...]) -> torch.Tensor:
    """(N_fine, N_coarse) interpolation: even ring nodes copy a coarse node, odd ones average two."""
    fine, coarse = sum(sizes), sum(coarse_sizes(sizes))
    m = torch.zeros(fine, coarse)
    f0 = c0 = 0
    for s, cs in zip(sizes, coarse_sizes(sizes)):
        for i in range(s):
            if i % 2 == 0:
                m[f0 + i, c0 + i // 2] = 1
            else:
                m[f0 + i, c0 + i // 2] = 0.5
                m[f0 + i, c0 + ((i // 2 + 1) % cs)] = 0.5
        f0 += s
        c0 += cs
    return m


class ChebConv(nn.Module):
    """Chebyshev spectral graph convolution of order K on a fixed graph (Defferrard et al. 2016)."""

    def __init__(self, in_ch: int, out_ch: int, lap: torch.Tensor, k: int = 6):
        super().__init__()
        self.register_buffer("lap", lap, persistent=False)
        self.weight = nn.Parameter(torch.empty(k, in_ch, out_ch))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        nn.init.xavier_uniform_(self.weight.view(k * in_ch, out_ch))
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, N, C)
        lap = self.lap.to(x.dtype)
        tx0, out = x, x @ self.weight[0]
        if self.k > 1:
            tx1 = torch.einsum("nm,bmc->bnc", lap, x)
            out = out + tx1 @ self.weight[1]
            for i in range(2, self.k):
                tx2 = 2 * torch.einsum("nm,bmc->bnc", lap, tx1) - tx0
                out = out + tx2 @ self.weight[i]
                tx0, tx1 = tx1, tx2
        return out + self.bias


class _Encoder(nn.Module):
    def __init__(self, widths: tuple[int, ...]):
        super().__init__()
        c = 1
        self.stages = nn.ModuleList()
        for w in widths:
            self.stages.append(nn.Sequential(
                nn.Conv2d(c, w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)))
            c = w

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class HybridGNet(CxrModule):
    """Image -> 120 landmarks. ``forward`` returns a dict: ``landmarks`` (B, 120, 2) in [0, 1], the
    intermediate ``coarse`` landmarks (B, 60, 2), ``mu`` and ``logvar`` (B, latent)."""

    def __init__(self, card: ModelCard):
        super().__init__()
        self.card = card
        a = card.arch_kwargs
        widths = tuple(a.get("widths", (16, 32, 64, 96, 128, 128)))
        latent, hidden, k = int(a.get("latent", 64)), int(a.get("hidden", 32)), int(a.get("cheb_k", 6))
        self.skip_level = int(a.get("skip_level", 2))
        self.encoder = _Encoder(widths)
        side = card.input_size // 2 ** len(widths)
        self.to_latent = nn.Linear(widths[-1] * side * side, 2 * latent)
        cs = coarse_sizes(RINGS)
        self.n_coarse = sum(cs)
        lap_c = scaled_laplacian(ring_adjacency(cs))
        lap_f = scaled_laplacian(ring_adjacency(RINGS))
        self.register_buffer("unpool", unpool_matrix(RINGS), persistent=False)
        self.from_latent = nn.Linear(latent, self.n_coarse * hidden)
        self.hidden = hidden
        self.coarse_convs = nn.ModuleList([ChebConv(hidden, hidden, lap_c, k) for _ in range(2)])
        self.coarse_out = ChebConv(hidden, 2, lap_c, 1)
        skip_ch = widths[self.skip_level]
        self.fine_convs = nn.ModuleList([ChebConv(hidden + skip_ch + 2, hidden, lap_f, k),
                                         ChebConv(hidden, hidden, lap_f, k)])
        self.fine_out = ChebConv(hidden, 2, lap_f, 1)

    def forward(self, x: torch.Tensor, sample: bool | None = None) -> dict[str, torch.Tensor]:
        feats = self.encoder(x)
        stats = self.to_latent(feats[-1].flatten(1))
        mu, logvar = stats.chunk(2, dim=1)
        sample = self.training if sample is None else sample
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        h = F.relu(self.from_latent(z)).view(-1, self.n_coarse, self.hidden)
        for conv in self.coarse_convs:
            h = F.relu(conv(h))
        coarse = torch.sigmoid(self.coarse_out(h))
        # Unpool features and coordinates to the full graph; sample encoder features at the coordinates.
        hf = torch.einsum("fc,bcd->bfd", self.unpool.to(h.dtype), h)
        pts = torch.einsum("fc,bcd->bfd", self.unpool.to(coarse.dtype), coarse)
        grid = (pts * 2 - 1).unsqueeze(2)  # (B, N, 1, 2), x then y, align_corners=False convention
        skip = F.grid_sample(feats[self.skip_level], grid.to(feats[self.skip_level].dtype), align_corners=False)
        skip = skip.squeeze(-1).transpose(1, 2)  # (B, N, C)
        hf = torch.cat([hf, skip.to(hf.dtype), pts.to(hf.dtype)], dim=2)
        for conv in self.fine_convs:
            hf = F.relu(conv(hf))
        landmarks = (pts + torch.tanh(self.fine_out(hf)) * 0.1).clamp(0, 1)
        return {"landmarks": landmarks, "coarse": coarse, "mu": mu, "logvar": logvar}


_ARCH = dict(widths=(16, 32, 64, 96, 128, 128), latent=64, hidden=32, cheb_k=6, skip_level=2)


@register_model(ModelCard(
    name="hybridgnet", task="segmentation", labels=("right_lung", "left_lung", "heart"), input_size=256,
    in_channels=1, normalization=Normalization(per_image=True), architecture=arch(**_ARCH),
    weights_sha256="7bd3b0a3cfdf7af6097fe4089314070a1c8e281aa59fe09dfb70c99f1df321a6",
    description="HybridGNet-style: conv encoder, variational latent, Chebyshev graph decoder over the 120-node "
                "contour graph with graph unpooling and image-to-graph skip connections; trained on JSRT",
    outputs=("landmarks",),
    inference_precision="bf16",  # bench/bench_precision.py: JSRT test Dice within 0.001 of fp32 (bench/results/precision.txt)
    provenance=Provenance(
        training_data="the 174 JSRT training images (HybridGNet's split) with SCR expert masks and the expert landmark "
                      "contours of Gaggion et al.",
        metrics=(("jsrt_test_dice_right_lung", 0.973), ("jsrt_test_dice_left_lung", 0.964),
                 ("jsrt_test_dice_heart", 0.936)),
        metrics_command="cxrkit segmentation evaluate --split test --perturbations none --out DIR",
        license="Apache-2.0 (weights made by cxrkit); the training data (JSRT images, SCR masks) are for research use",
        intended_use="lungs and heart contours (CheXmask layout) and the cardiothoracic ratio on frontal chest "
                     "radiographs, for research; not a diagnostic device",
        source="cxrkit segmentation train --out DIR --steps 12000 --threads 1 (seed 0)")),
    weights_file="hybridgnet.pt")
def hybridgnet(card: ModelCard) -> HybridGNet:
    return HybridGNet(card)
