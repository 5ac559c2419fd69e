# SPDX-License-Identifier: Apache-2.0
"""Pad images to multiples of 32 with a smooth fill, and crop network outputs back.

The network needs H and W divisible by 32. Zero or replicated borders create
strong false edges that the matcher latches onto; instead the padding is filled
with a heavily blurred copy of the image (area down-sample to about H/32×W/32,
bilinear back up to the padded size) and the original pixels are pasted in the
centre, so the border continues the image's colours without new structure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Down-sampling factor of the blurred fill: one colour per network 1/32 cell.
FILL_DOWNSAMPLE = 32


@dataclass(frozen=True)
class PadInfo:
    """Where the original image sits inside the padded one (pixels)."""

    top: int
    bottom: int
    left: int
    right: int
    height: int  # original height
    width: int  # original width

    @property
    def padded_height(self) -> int:
        return self.top + self.height + self.bottom

    @property
    def padded_width(self) -> int:
        return self.left + self.width + self.right

    @property
    def is_identity(self) -> bool:
        return self.top == self.bottom == self.left == self.right == 0


def _split(total: int) -> tuple[int, int]:
    # Symmetric, the odd pixel goes to the end (bottom / right).
    before = total // 2
    return before, total - before


def pad_to_multiple(images: torch.Tensor, multiple: int = 32) -> tuple[torch.Tensor, PadInfo]:
    """Pad a B×C×H×W float tensor so H and W are multiples of ``multiple``.

    Returns the padded tensor and the :class:`PadInfo` to :func:`crop` outputs with.
    An input whose size is already a multiple is returned as is (same tensor).
    """
    if images.dim() != 4:
        raise ValueError(f"expected a B×C×H×W tensor, got shape {tuple(images.shape)}")
    if multiple < 1:
        raise ValueError(f"multiple must be a positive integer, got {multiple}")
    height, width = images.shape[-2:]
    if height == 0 or width == 0:
        raise ValueError(f"cannot pad an empty image ({height}×{width})")
    padded_height = math.ceil(height / multiple) * multiple
    padded_width = math.ceil(width / multiple) * multiple
    top, bottom = _split(padded_height - height)
    left, right = _split(padded_width - width)
    info = PadInfo(top, bottom, left, right, height, width)
    if info.is_identity:
        return images, info

    source = images if images.is_floating_point() else images.float()
    coarse_size = (
        max(1, math.ceil(height / FILL_DOWNSAMPLE)),
        max(1, math.ceil(width / FILL_DOWNSAMPLE)),
    )
    # Interpolation kernels are not implemented for every reduced precision on
    # every device; blur in float32 and cast back.
    coarse = F.interpolate(source.float(), size=coarse_size, mode="area")
    # The bilinear enlargement is separable, rows @ coarse @ colsᵀ; only the border
    # strips are computed (the whole enlarged frame was most of the cost at 720p).
    rows = _interpolation_matrix(padded_height, coarse_size[0], coarse)
    cols = _interpolation_matrix(padded_width, coarse_size[1], coarse)
    layout = (torch.channels_last if source.is_contiguous(memory_format=torch.channels_last)
              else torch.contiguous_format)
    padded = torch.empty((*source.shape[:-2], padded_height, padded_width), dtype=source.dtype,
                         device=source.device, memory_format=layout)
    padded[..., top : top + height, left : left + width] = source
    for strip in (slice(0, top), slice(top + height, padded_height)):
        if strip.stop > strip.start:
            padded[..., strip, :] = (rows[strip] @ coarse @ cols.T).to(source.dtype)
    for strip in (slice(0, left), slice(left + width, padded_width)):
        if strip.stop > strip.start:
            padded[..., :, strip] = (rows @ coarse @ cols[strip].T).to(source.dtype)
    return padded, info


def _interpolation_matrix(out_size: int, in_size: int, like: torch.Tensor) -> torch.Tensor:
    """``out_size × in_size`` weights of 1-D linear resampling (align_corners=False),
    the per-axis factor of F.interpolate's bilinear mode."""
    impulses = torch.eye(in_size, device=like.device, dtype=like.dtype).unsqueeze(0)
    return F.interpolate(impulses, size=out_size, mode="linear", align_corners=False)[0].T


def crop(tensor: torch.Tensor, info: PadInfo) -> torch.Tensor:
    """Cut the original H×W region out of a padded ``...×H'×W'`` tensor (a view)."""
    if tuple(tensor.shape[-2:]) != (info.padded_height, info.padded_width):
        raise ValueError(
            f"tensor is {tensor.shape[-2]}×{tensor.shape[-1]} but the padding produced "
            f"{info.padded_height}×{info.padded_width}"
        )
    return tensor[..., info.top : info.top + info.height, info.left : info.left + info.width]
