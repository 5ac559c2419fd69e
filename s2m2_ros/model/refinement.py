# SPDX-License-Identifier: Apache-2.0
"""Disparity refinement: a global pass that fills unreliable matches, and the
iterative local refiner (cost lookup + convolutional GRU)."""

from __future__ import annotations

import torch
from torch import nn

from .layers import conv, logit
from .matching import CostLookup
from .unet import Unet

_DISPARITY_SCALE = 100.0  # disparities enter the convolutions in hundreds of pixels
_COST_SCALE = 16.0


class GlobalRefiner(nn.Module):
    """Replaces low-confidence initial disparities by a Unet's estimate from context."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.init_feat = nn.Sequential(conv(2 + channels, channels, 3), nn.GELU(),
                                       conv(channels, channels, 1))
        self.refine_unet = Unet([channels, channels, channels], expansion=1, n_attn=1)
        self.out_feat = nn.Sequential(conv(channels, 1, 3))

    def forward(self, context: torch.Tensor, disparity: torch.Tensor,
                confidence: torch.Tensor) -> torch.Tensor:
        trusted = (confidence > 0.2).to(disparity.dtype)
        features = torch.cat((disparity / _DISPARITY_SCALE * trusted,
                              logit(trusted * confidence, 0.1), context), dim=1)
        update = self.out_feat(self.refine_unet(self.init_feat(features))[0]) * _DISPARITY_SCALE
        return trusted * disparity + (1.0 - trusted) * update


class ConvGRU(nn.Module):
    """Separable convolutional GRU: a vertical (3×1) then a horizontal (1×3) update."""

    def __init__(self, hidden_dim: int, input_dim: int, kernel_size: int = 3) -> None:
        super().__init__()
        channels = hidden_dim + input_dim
        pad = kernel_size // 2
        vertical = {"kernel_size": (kernel_size, 1), "padding": (pad, 0)}
        horizontal = {"kernel_size": (1, kernel_size), "padding": (0, pad)}
        self.convz1 = nn.Conv2d(channels, hidden_dim, **vertical)
        self.convr1 = nn.Conv2d(channels, hidden_dim, **vertical)
        self.convq1 = nn.Conv2d(channels, hidden_dim, **vertical)
        self.convz2 = nn.Conv2d(channels, hidden_dim, **horizontal)
        self.convr2 = nn.Conv2d(channels, hidden_dim, **horizontal)
        self.convq2 = nn.Conv2d(channels, hidden_dim, **horizontal)

    @staticmethod
    def _update(h: torch.Tensor, x: torch.Tensor, convz: nn.Conv2d, convr: nn.Conv2d,
                convq: nn.Conv2d) -> torch.Tensor:
        hx = torch.cat((h, x), dim=1)
        z = torch.sigmoid(convz(hx))
        r = torch.sigmoid(convr(hx))
        q = torch.tanh(convq(torch.cat((r * h, x), dim=1)))
        return (1.0 - z) * h + z * q

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        h = self._update(h, x, self.convz1, self.convr1, self.convq1)
        return self._update(h, x, self.convz2, self.convr2, self.convq2)


class LocalRefiner(nn.Module):
    """One refinement step updates disparity, confidence and visibility at ¼ resolution."""

    def __init__(self, channels: int, expansion: int = 1) -> None:
        super().__init__()
        self.disp_feat = nn.Sequential(conv(1, 96, 3), nn.GELU(), conv(96, 96, 3))
        self.corr_feat1 = nn.Sequential(conv(9, 96, 1), nn.GELU(), conv(96, 64, 1))
        self.corr_feat2 = nn.Sequential(conv(9, 96, 1), nn.GELU(), conv(96, 64, 1))
        self.conf_occ_feat = nn.Sequential(conv(2, 64, 3), nn.GELU(), conv(64, 32, 1))
        self.disp_corr_ctx_cat = nn.Sequential(
            conv(256 + channels, 2 * channels, 1), nn.GELU(), conv(2 * channels, channels, 3))
        self.refine_unet = Unet([channels, channels, 2 * channels], expansion, n_attn=1)
        self.disp_update = nn.Sequential(conv(channels, channels, 3), nn.GELU(),
                                         conv(channels, 1, 3, bias=False))
        self.conf_occ_update = nn.Sequential(conv(channels, channels, 3), nn.GELU(),
                                             conv(channels, 2, 3, bias=False))
        self.gru = ConvGRU(channels, channels, 3)

    def forward(self, hidden: torch.Tensor, context: torch.Tensor, disparity: torch.Tensor,
                confidence: torch.Tensor, visibility: torch.Tensor,
                lookup: CostLookup) -> tuple[torch.Tensor, ...]:
        confidence_logit = logit(confidence, 0.01)
        visibility_logit = logit(visibility, 0.01)
        cost0, cost1 = lookup(disparity)
        x = self.disp_corr_ctx_cat(torch.cat((
            self.disp_feat(disparity / _DISPARITY_SCALE),
            self.corr_feat1(cost0 / _COST_SCALE),
            self.corr_feat2(cost1 / _COST_SCALE),
            context,
            self.conf_occ_feat(torch.cat((confidence_logit, visibility_logit), dim=1)),
        ), dim=1))
        hidden = self.gru(hidden, self.refine_unet(x)[0])
        disparity = disparity + self.disp_update(hidden)
        confidence_delta, visibility_delta = self.conf_occ_update(hidden).chunk(2, dim=1)
        confidence = torch.sigmoid(confidence_delta + confidence_logit)
        visibility = torch.sigmoid(visibility_delta + visibility_logit)
        return hidden, disparity, confidence, visibility
