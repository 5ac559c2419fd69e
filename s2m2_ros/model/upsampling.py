# SPDX-License-Identifier: Apache-2.0
"""Learned upsampling: convex ×4 upsampling from ¼ resolution and an
edge-guided 3×3 filter at full resolution."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import conv


class UpsampleMask4x(nn.Module):
    """Predicts 9 convex-combination weights per full-resolution pixel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_x = nn.ConvTranspose2d(channels, 64, 2, stride=2)
        self.conv_y = conv(channels, 64, 3)
        self.conv_concat = nn.Sequential(conv(128, 128, 3), nn.ReLU(),
                                         nn.ConvTranspose2d(128, 9, 2, stride=2))

    def forward(self, hidden: torch.Tensor, left_half_res: torch.Tensor) -> torch.Tensor:
        return self.conv_concat(torch.cat((self.conv_x(hidden), self.conv_y(left_half_res)), 1))


class UpsampleMask1x(nn.Module):
    """Predicts 9 filter weights per pixel from disparity, image and features."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_disp = nn.Sequential(nn.ConvTranspose2d(1, 16, 3, padding=1), nn.ReLU())
        self.conv_rgb = nn.Sequential(nn.ConvTranspose2d(3, 16, 3, padding=1), nn.ReLU())
        self.conv_ctx = nn.ConvTranspose2d(channels, 16, 2, stride=2)
        self.conv_concat = nn.Sequential(conv(48, 48, 3), nn.ReLU(), nn.ConvTranspose2d(48, 9, 1))

    def forward(self, disparity: torch.Tensor, image: torch.Tensor,
                left_half_res: torch.Tensor) -> torch.Tensor:
        return self.conv_concat(torch.cat(
            (self.conv_disp(disparity), self.conv_rgb(image), self.conv_ctx(left_half_res)), 1))


def _neighbourhoods(x: torch.Tensor) -> torch.Tensor:
    """B×C×H×W → B×C×9×H×W: each pixel's 3×3 neighbours (edge replicated), row-major."""
    batch, channels, height, width = x.shape
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return F.unfold(padded, 3).view(batch, channels, 9, height, width)


def convex_upsample(x: torch.Tensor, weights: torch.Tensor, factor: int = 4) -> torch.Tensor:
    """Upsample ``x`` (B×C×h×w) by ``factor`` as a softmax-weighted mix of 3×3 neighbours."""
    neighbours = _neighbourhoods(x)
    batch, channels, _, height, width = neighbours.shape
    neighbours = F.interpolate(neighbours.view(batch, channels * 9, height, width),
                               scale_factor=factor, mode="nearest")
    neighbours = neighbours.view(batch, channels, 9, height * factor, width * factor)
    return (torch.softmax(weights, dim=1).unsqueeze(1) * neighbours).sum(dim=2)


def edge_guided_filter(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Full-resolution 3×3 filter of ``x`` with per-pixel softmax weights."""
    return (torch.softmax(weights, dim=1).unsqueeze(1) * _neighbourhoods(x)).sum(dim=2)
