# SPDX-License-Identifier: Apache-2.0
"""The convolutional stem: image → features at ½ and ¼ resolution."""

from __future__ import annotations

import torch
from torch import nn

from .layers import conv


class CNNEncoder(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv0 = nn.Sequential(conv(3, 16, 1), nn.GELU(), conv(16, 16, 1))
        self.conv1_down = nn.Sequential(
            conv(16, 64, 5, stride=2), nn.GELU(), conv(64, channels, 3))
        self.norm1 = nn.GroupNorm(8, channels)
        self.conv2 = nn.Sequential(conv(channels, channels, 3), nn.GELU(),
                                   conv(channels, channels, 3))
        self.conv2_down = nn.Sequential(conv(channels, channels, 3, stride=2))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(f4, f2)``: features at ¼ and ½ resolution."""
        f2 = self.norm1(self.conv1_down(self.conv0(x)))
        f2 = self.conv2(f2) + f2
        return self.conv2_down(f2), f2
