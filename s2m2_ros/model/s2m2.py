# SPDX-License-Identifier: Apache-2.0
"""The S²M² stereo network assembled from its parts."""

from __future__ import annotations

import torch
from torch import nn

from .encoder import CNNEncoder
from .layers import FeatureFusion, conv
from .matching import CostLookup, DispInit
from .refinement import GlobalRefiner, LocalRefiner
from .unet import StackedMRT, Unet
from .upsampling import UpsampleMask1x, UpsampleMask4x, convex_upsample, edge_guided_filter

SIZE_MULTIPLE = 32  # input height and width must be multiples of this


def normalize_image(image: torch.Tensor) -> torch.Tensor:
    """RGB 0–255 → [−1, 1]."""
    return (image / 255.0 - 0.5) * 2.0


class S2M2(nn.Module):
    """S²M² stereo network.

    ``forward(left, right)`` takes ``B×3×H×W`` float RGB images in 0–255 (H, W
    multiples of 32) and returns ``(disparity, visibility, confidence)``, each
    ``B×1×H×W``: disparity in left-image pixels, visibility near 1 where the
    left pixel is seen by the right camera (the checkpoint calls it
    "occlusion"), confidence near 1 where the match is reliable.
    """

    def __init__(self, feature_channels: int, num_transformer: int, allow_negative: bool = False,
                 refine_iters: int = 3, expansion: int = 1) -> None:
        super().__init__()
        c = feature_channels
        self.feature_channels = feature_channels
        self.num_transformer = num_transformer
        self.allow_negative = allow_negative
        self.refine_iters = refine_iters
        self.cnn_backbone = CNNEncoder(c)
        self.feat_pyramid = Unet([c, c, 2 * c], expansion, use_pe=True, n_attn=2 * num_transformer)
        self.transformer = StackedMRT(num_transformer, [c, c, 2 * c], expansion)
        self.disp_init = DispInit(c)
        self.upsample_mask_1x = UpsampleMask1x(c)
        self.upsample_mask_4x_refine = UpsampleMask4x(c)
        self.global_refiner = GlobalRefiner(c)
        self.feat_fusion_layer = FeatureFusion(c, 3)
        self.refiner = LocalRefiner(c, expansion)
        self.ctx_feat = nn.Sequential(conv(c, c, 1), nn.GELU(), conv(c, c, 1))

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, ...]:
        height, width = left.shape[-2:]
        if height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
            raise ValueError(
                f"S2M2 needs H and W multiples of {SIZE_MULTIPLE}, got {height}×{width}")
        positivity = not self.allow_negative
        left = normalize_image(left)
        images = torch.cat((left, normalize_image(right)), dim=0)           # 2B×3×H×W

        f4, f2 = self.cnn_backbone(images)                                   # ¼, ½
        # A copy, not a view: the right half is not needed again and can be freed.
        f2_left = f2[: left.shape[0]].clone()
        del f2
        pyramid = self.feat_pyramid(f4)                                      # ¼ … 1/32
        t4 = self.transformer(*pyramid)                                      # 2B×C×h×w
        disparity, confidence, visibility, cv = self.disp_init(t4, positivity)

        t0 = t4.chunk(2, dim=0)[0]
        q0 = pyramid[0].chunk(2, dim=0)[0]
        disparity = self.global_refiner(t0, disparity, confidence)
        if positivity:
            disparity = disparity.clamp_min(0.0)
        context = self.ctx_feat(self.feat_fusion_layer(t0, q0))
        hidden = torch.tanh(context)

        lookup = CostLookup(cv)
        column = torch.arange(disparity.shape[-1], device=disparity.device,
                              dtype=disparity.dtype)
        for _ in range(self.refine_iters):
            hidden, disparity, confidence, visibility = self.refiner(
                hidden, context, disparity, confidence, visibility, lookup)
            if positivity:
                disparity = disparity.clamp_min(0.0)
            # A match that falls left of the right image's first column is occluded.
            visibility = visibility * (column - disparity >= 0).to(visibility.dtype)

        weights_4x = self.upsample_mask_4x_refine(hidden, f2_left)          # B×9×H×W
        maps = torch.cat((4.0 * disparity, visibility, confidence), dim=1)
        maps = convex_upsample(maps, weights_4x, 4)
        weights_1x = self.upsample_mask_1x(maps[:, :1], left, f2_left)
        maps = edge_guided_filter(maps, weights_1x)
        disparity, visibility, confidence = maps.split(1, dim=1)
        return disparity, visibility, confidence
