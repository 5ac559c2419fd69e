# SPDX-License-Identifier: Apache-2.0
"""Input and output handling that every network backend shares, written once.

Checks (shape, dtype, one size and format for both images), colour order, mono and
16-bit input, the optional ``input_scale`` downscale, padding to multiples of 32 and,
after the network, crop and upsample back to the input size. The functions work on
torch tensors on any device: the torch backend runs them on its inference device, the
ONNX runtimes (OpenVINO, ONNX Runtime) on the CPU around their own session.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from s2m2_ros.padding import PadInfo, pad_to_multiple

__all__ = ["COLOR_ORDERS", "SIZE_MULTIPLE", "StereoResult", "check_color_order",
           "check_input_scale", "check_pair", "maps_at_input_size", "network_size",
           "padded_size", "prepare_network_input", "to_network_input"]

COLOR_ORDERS = ("rgb", "bgr")
SIZE_MULTIPLE = 32
_SUPPORTED_DTYPES = (np.uint8, np.uint16, np.float16, np.float32, np.float64)
# uint16 images span 0–65535 and the network expects 0–255: 65535 / 255 = 257 exactly,
# and dividing (not multiplying by 1/257) keeps 257·v → v exact in float32.
_UINT16_PER_UINT8 = 257.0


@dataclass
class StereoResult:
    """Network outputs at input resolution, as H×W float32 arrays."""

    disparity: np.ndarray  # pixels at input resolution (x_left − x_right)
    visibility: np.ndarray  # [0, 1]; 1 = seen by the right camera
    confidence: np.ndarray  # [0, 1]
    timings_ms: dict[str, float] = field(default_factory=dict)


def check_color_order(color_order: str) -> str:
    """``"rgb"`` or ``"bgr"`` (any case, surrounding spaces allowed); ValueError else."""
    order = str(color_order).strip().lower()
    if order not in COLOR_ORDERS:
        raise ValueError(f"color_order must be 'rgb' or 'bgr', got {color_order!r}")
    return order


def check_input_scale(value: float) -> float:
    """``input_scale`` as a float in (0, 1]; ValueError else."""
    scale = float(value)
    if not 0.0 < scale <= 1.0:
        raise ValueError(f"input_scale must be in (0, 1], got {value!r}")
    return scale


def _check_image(image: np.ndarray, side: str) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{side} image must be a numpy array, got {type(image).__name__}")
    if image.ndim == 2:
        image = image[:, :, np.newaxis]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"{side} image must be H×W (mono) or H×W×3/4 (colour), got shape {image.shape}"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{side} image is empty (shape {image.shape})")
    if image.dtype.type not in _SUPPORTED_DTYPES:
        raise ValueError(
            f"{side} image has dtype {image.dtype}; expected uint8, uint16 or float (0–255)"
        )
    return image


def check_pair(left: np.ndarray, right: np.ndarray,
               color_order: str = "rgb") -> tuple[np.ndarray, np.ndarray, str]:
    """Both images as H×W×C arrays of one size and dtype, and the checked colour order."""
    order = check_color_order(color_order)
    left = _check_image(left, "left")
    right = _check_image(right, "right")
    if left.shape != right.shape or left.dtype != right.dtype:
        raise ValueError(
            f"left and right images differ: left {left.shape} {left.dtype}, right "
            f"{right.shape} {right.dtype}; a rectified pair has one size and format"
        )
    return left, right, order


def to_network_input(pair: torch.Tensor, color_order: str) -> torch.Tensor:
    """N×H×W×C raw pixels → N×3×H×W RGB in 0–255 (a channels-last view).

    8-bit pixels stay 8-bit here: the padding converts them to float32 in the same pass
    that copies them into the padded frame.
    """
    images = pair
    if pair.dtype == torch.uint16:
        images = pair.float() / _UINT16_PER_UINT8
    elif pair.dtype != torch.uint8:
        images = pair.float()
    channels = images.shape[-1]
    if channels == 1:
        images = images.expand(-1, -1, -1, 3)
    elif channels == 4:
        images = images[..., :3]
    if channels != 1 and color_order == "bgr":
        images = images.flip(-1)
    return images.permute(0, 3, 1, 2)


def network_size(height: int, width: int, input_scale: float) -> tuple[int, int]:
    """The image size the network sees for an input size (before padding)."""
    if input_scale >= 1.0:
        return height, width
    return max(1, round(height * input_scale)), max(1, round(width * input_scale))


def padded_size(height: int, width: int, multiple: int = SIZE_MULTIPLE) -> tuple[int, int]:
    """The network input size for an image (what compiled graphs specialise on)."""
    return math.ceil(height / multiple) * multiple, math.ceil(width / multiple) * multiple


def prepare_network_input(pair: torch.Tensor, color_order: str,
                          input_scale: float = 1.0) -> tuple[torch.Tensor, PadInfo]:
    """N×H×W×C raw pixels → the padded N×3×H'×W' float32 (channels-last) network input.

    Downscales by ``input_scale`` first (area filter) and pads to multiples of 32; the
    :class:`PadInfo` says where the (scaled) image sits for :func:`maps_at_input_size`.
    """
    images = to_network_input(pair, color_order)
    height, width = images.shape[-2:]
    small_size = network_size(height, width, input_scale)
    if small_size != (height, width):
        images = F.interpolate(images.float(), size=small_size, mode="area")
    padded, pad_info = pad_to_multiple(images, SIZE_MULTIPLE)
    # No-ops when the padding already produced channels-last float32.
    return padded.float().contiguous(memory_format=torch.channels_last), pad_info


def maps_at_input_size(disparity: torch.Tensor, visibility: torch.Tensor,
                       confidence: torch.Tensor, pad_info: PadInfo, height: int,
                       width: int) -> list[np.ndarray]:
    """The network's N×1×H'×W' maps of the first pair, cropped (and upsampled when the
    input was scaled) to ``height``×``width``: three contiguous float32 numpy arrays."""
    top, left_edge = pad_info.top, pad_info.left
    rows = slice(top, top + pad_info.height)
    columns = slice(left_edge, left_edge + pad_info.width)
    if (pad_info.height, pad_info.width) == (height, width):
        # Each map cropped and made contiguous in one copy (no stacking).
        return [output[0, 0][rows, columns].float().contiguous().cpu().numpy()
                for output in (disparity, visibility, confidence)]
    outputs = torch.cat((disparity[:1], visibility[:1], confidence[:1]), dim=1).float()
    outputs = F.interpolate(outputs[..., rows, columns], size=(height, width),
                            mode="bilinear", align_corners=False)
    # Disparity is a horizontal distance: rescale to full-resolution pixels with the
    # exact width ratio (the rounded size, not the nominal scale).
    outputs[:, 0] *= width / pad_info.width
    # Contiguous, so callers can hand the maps to cv2 or ROS messages directly.
    return list(outputs[0].contiguous().cpu().numpy())


def timed_warmup(infer: Callable[[np.ndarray, np.ndarray], object], height: int, width: int,
                 channels: int = 3) -> float:
    """Milliseconds ``infer`` takes for one textured pair of this size (a warm-up run)."""
    if height < 1 or width < 1:
        raise ValueError(f"warm-up size must be positive, got {height}×{width}")
    # Textured noise, not zeros: some kernels specialise on degenerate inputs.
    generator = np.random.default_rng(0)
    shape = (height, width) if channels == 1 else (height, width, channels)
    left = generator.integers(0, 256, size=shape, dtype=np.uint8)
    right = np.roll(left, -min(8, width - 1), axis=1)
    start = time.perf_counter()
    infer(left, right)
    return (time.perf_counter() - start) * 1e3
