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
    """Pad a B×C×H×W image tensor so H and W are multiples of ``multiple``.

    Returns the padded tensor (float32 for integer input, else the input's dtype)
    and the :class:`PadInfo` to :func:`crop` outputs with. An input whose size is
    already a multiple is returned as is (same tensor, same dtype).
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

    # Integer pixels become float32 while they are copied into the padded frame.
    source = images
    dtype = images.dtype if images.is_floating_point() else torch.float32
    coarse_height = max(1, math.ceil(height / FILL_DOWNSAMPLE))
    coarse_width = max(1, math.ceil(width / FILL_DOWNSAMPLE))
    # The fill is the area down-sample enlarged bilinearly, a separable product
    # rows @ coarse @ colsᵀ. Only the border strips are computed, and each from the
    # few coarse rows (or columns) it actually weights: both the full enlargement
    # and the full down-sample were most of the cost at 720p.
    rows = _interpolation_matrix(padded_height, coarse_height, source)
    cols = _interpolation_matrix(padded_width, coarse_width, source)
    layout = (torch.channels_last if source.is_contiguous(memory_format=torch.channels_last)
              else torch.contiguous_format)
    padded = torch.empty((*source.shape[:-2], padded_height, padded_width), dtype=dtype,
                         device=source.device, memory_format=layout)
    padded[..., top : top + height, left : left + width] = source
    for strip in (slice(0, top), slice(top + height, padded_height)):
        if strip.stop > strip.start:
            needed = _used(rows[strip])
            coarse = torch.cat([_area_band(source, -2, i, coarse_height, coarse_width)
                                for i in needed], dim=-2)
            padded[..., strip, :] = (rows[strip][:, needed] @ coarse @ cols.T).to(dtype)
    for strip in (slice(0, left), slice(left + width, padded_width)):
        if strip.stop > strip.start:
            needed = _used(cols[strip])
            coarse = torch.cat([_area_band(source, -1, j, coarse_width, coarse_height)
                                for j in needed], dim=-1)
            padded[..., :, strip] = (rows @ coarse @ cols[strip][:, needed].T).to(dtype)
    return padded, info


def _used(weights: torch.Tensor) -> list[int]:
    """The coarse cells (columns of ``weights``) that some output actually uses."""
    return torch.nonzero(weights.abs().sum(dim=0)).flatten().tolist()


def _area_band(source: torch.Tensor, axis: int, index: int, cells: int,
               other_cells: int) -> torch.Tensor:
    """Cell row (``axis`` −2) or column (−1) ``index`` of the area down-sample to
    ``cells`` along ``axis`` and ``other_cells`` across it, as F.interpolate's
    "area" mode (adaptive average pooling) computes it, from that band alone."""
    size = source.shape[axis]
    start, stop = (index * size) // cells, -(-((index + 1) * size) // cells)
    band = source.narrow(axis, start, stop - start).float()
    # Interpolation kernels are not implemented for every reduced precision on
    # every device; average in float32.
    shape = (1, other_cells) if axis == -2 else (other_cells, 1)
    return F.adaptive_avg_pool2d(band, shape)


def _interpolation_matrix(out_size: int, in_size: int, like: torch.Tensor) -> torch.Tensor:
    """``out_size × in_size`` float32 weights of 1-D linear resampling
    (align_corners=False), the per-axis factor of F.interpolate's bilinear mode, on
    ``like``'s device."""
    impulses = torch.eye(in_size, device=like.device, dtype=torch.float32).unsqueeze(0)
    return F.interpolate(impulses, size=out_size, mode="linear", align_corners=False)[0].T


def crop(tensor: torch.Tensor, info: PadInfo) -> torch.Tensor:
    """Cut the original H×W region out of a padded ``...×H'×W'`` tensor (a view)."""
    if tuple(tensor.shape[-2:]) != (info.padded_height, info.padded_width):
        raise ValueError(
            f"tensor is {tensor.shape[-2]}×{tensor.shape[-1]} but the padding produced "
            f"{info.padded_height}×{info.padded_width}"
        )
    return tensor[..., info.top : info.top + info.height, info.left : info.left + info.width]
