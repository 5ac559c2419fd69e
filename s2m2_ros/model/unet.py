# SPDX-License-Identifier: Apache-2.0
"""Four-level U-shaped feature pyramids: the convolutional Unet and the
multi-resolution transformer (MRT) stacked on top of it."""

from __future__ import annotations

import torch
from torch import nn

from .attention import BasicAttnBlock, GlobalAttnBlock
from .layers import ConvBlock2D, FeatureFusion, down_conv, up_conv

Pyramid = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _add_resampling(module: nn.Module, d0: int, d1: int, d2: int) -> None:
    """The level-to-level convolutions both pyramids share (registered first, as in
    the checkpoints): ``down_conv0..2`` (×½) and ``up_conv0..2`` (×2)."""
    module.down_conv0 = down_conv(d0, d1)
    module.down_conv1 = down_conv(d1, d2)
    module.down_conv2 = down_conv(d2, d2)
    module.up_conv0 = up_conv(d1, d0)
    module.up_conv1 = up_conv(d2, d1)
    module.up_conv2 = up_conv(d2, d2)


class Unet(nn.Module):
    """Conv encoder/decoder over three levels with global attention at the bottleneck.

    ``dims = [d0, d1, d2]`` are the channels at ×1, ×½ and ×¼ of the input grid;
    the bottleneck (×⅛) keeps ``d2``.
    """

    def __init__(self, dims: list[int], expansion: int = 1, use_pe: bool = False,
                 n_attn: int = 1) -> None:
        super().__init__()
        d0, d1, d2 = dims
        _add_resampling(self, d0, d1, d2)
        self.concat_conv0 = FeatureFusion(d0, 1)
        self.concat_conv1 = FeatureFusion(d1, 1)
        self.concat_conv2 = FeatureFusion(d2, 1)
        self.enc0 = ConvBlock2D(d0, expansion)
        self.enc1 = ConvBlock2D(d1, expansion)
        self.enc2 = ConvBlock2D(d2, expansion)
        self.enc3s = nn.ModuleList(
            GlobalAttnBlock(d2, 8, expansion, use_pe=use_pe) for _ in range(n_attn))
        self.dec0 = ConvBlock2D(d0, expansion)
        self.dec1 = ConvBlock2D(d1, expansion)
        self.dec2 = ConvBlock2D(d2, expansion)
        self.dec3s = nn.ModuleList(GlobalAttnBlock(d2, 8, expansion) for _ in range(n_attn))

    def forward(self, z: torch.Tensor) -> Pyramid:
        z0 = self.enc0(z)
        z1 = self.enc1(self.down_conv0(z0))
        z2 = self.enc2(self.down_conv1(z1))
        z3 = self.down_conv2(z2)
        for block in (*self.enc3s, *self.dec3s):
            z3 = block(z3)
        y2 = self.dec2(self.concat_conv2(z2, self.up_conv2(z3)))
        y1 = self.dec1(self.concat_conv1(z1, self.up_conv1(y2)))
        y0 = self.dec0(self.concat_conv0(z0, self.up_conv0(y1)))
        return y0, y1, y2, z3


class MRT(nn.Module):
    """One multi-resolution transformer: row-wise attention at every level of the
    pyramid and global cross/self attention at the coarsest one."""

    def __init__(self, dims: list[int], expansion: int = 1) -> None:
        super().__init__()
        d0, d1, d2 = dims
        _add_resampling(self, d0, d1, d2)
        self.down_concat1 = FeatureFusion(d1, 1)
        self.down_concat2 = FeatureFusion(d2, 1)
        self.down_concat3 = FeatureFusion(d2, 1)
        self.up_concat0 = FeatureFusion(d0, 1)
        self.up_concat1 = FeatureFusion(d1, 1)
        self.up_concat2 = FeatureFusion(d2, 1)
        self.enc_attn0 = BasicAttnBlock(d0, 1, expansion)
        self.enc_attn1 = BasicAttnBlock(d1, 2, expansion)
        self.enc_attn2 = BasicAttnBlock(d2, 4, expansion)
        self.enc_attn3s = nn.ModuleList(
            GlobalAttnBlock(d2, 8, expansion, use_cross_attn=True) for _ in range(2))
        self.dec_attn0 = BasicAttnBlock(d0, 1, expansion)
        self.dec_attn1 = BasicAttnBlock(d1, 2, expansion)
        self.dec_attn2 = BasicAttnBlock(d2, 4, expansion)
        self.dec_attn3s = nn.ModuleList(
            GlobalAttnBlock(d2, 8, expansion, use_cross_attn=True) for _ in range(2))

    def forward(self, z0: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor,
                z3: torch.Tensor) -> Pyramid:
        z0 = self.enc_attn0(z0)
        z1 = self.enc_attn1(self.down_concat1(z1, self.down_conv0(z0)))
        z2 = self.enc_attn2(self.down_concat2(z2, self.down_conv1(z1)))
        z3 = self.down_concat3(z3, self.down_conv2(z2))
        for block in (*self.enc_attn3s, *self.dec_attn3s):
            z3 = block(z3)
        z2 = self.dec_attn2(self.up_concat2(z2, self.up_conv2(z3)))
        z1 = self.dec_attn1(self.up_concat1(z1, self.up_conv1(z2)))
        z0 = self.dec_attn0(self.up_concat0(z0, self.up_conv0(z1)))
        return z0, z1, z2, z3


class StackedMRT(nn.Module):
    """``N`` MRTs in sequence; returns the finest level."""

    def __init__(self, num_transformer: int, dims: list[int], expansion: int = 1) -> None:
        super().__init__()
        self.uformer_list = nn.ModuleList(MRT(dims, expansion) for _ in range(num_transformer))

    def forward(self, *pyramid: torch.Tensor) -> torch.Tensor:
        for mrt in self.uformer_list:
            pyramid = mrt(*pyramid)
        return pyramid[0]
