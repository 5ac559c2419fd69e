# SPDX-License-Identifier: Apache-2.0
"""Small convolutional building blocks shared by every part of the network."""

from __future__ import annotations

import torch
from torch import nn


def conv(in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
         bias: bool = True) -> nn.Conv2d:
    """A 2-D convolution with 'same' padding (kernel // 2)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                     padding=kernel_size // 2, bias=bias)


def logit(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Inverse sigmoid of ``x`` clamped to ``[eps, 1 - eps]``."""
    x = x.clamp(eps, 1.0 - eps)
    return torch.log(x / (1.0 - x))


class FeatureFusion(nn.Module):
    """Gated merge of two maps of ``dim`` channels: ``fusion(a, b) + w·a + (1 − w)·b``."""

    def __init__(self, dim: int, kernel_size: int) -> None:
        super().__init__()
        self.feature_gate = nn.Sequential(
            conv(2 * dim, dim, kernel_size), nn.GELU(), conv(dim, dim, 1), nn.Sigmoid())
        self.feature_fusion = nn.Sequential(
            conv(2 * dim, 2 * dim, kernel_size), nn.GELU(), conv(2 * dim, dim, 1))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        z = torch.cat((a, b), dim=1)
        # The clamp keeps both inputs alive in the blend, even for a saturated gate.
        gate = self.feature_gate(z).clamp(0.01, 0.99)
        return self.feature_fusion(z) + gate * a + (1.0 - gate) * b


class ConvBlock2D(nn.Module):
    """A 3×3 and a 1×1 two-layer branch, summed (no residual)."""

    def __init__(self, dim: int, expansion: int = 1) -> None:
        super().__init__()
        hidden = expansion * dim
        self.convs = nn.Sequential(conv(dim, hidden, 3), nn.GELU(), conv(hidden, dim, 3))
        self.convs_1x = nn.Sequential(conv(dim, hidden, 1), nn.ReLU(), conv(hidden, dim, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.convs(z) + self.convs_1x(z)


def down_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Halve the resolution (average pooling), then mix channels."""
    return nn.Sequential(nn.AvgPool2d(2), conv(in_channels, out_channels, 1))


def up_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Double the resolution (bilinear), then mix channels."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        conv(in_channels, out_channels, 1))
