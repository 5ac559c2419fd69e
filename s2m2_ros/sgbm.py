# SPDX-License-Identifier: Apache-2.0
"""Classical OpenCV semi-global matching backend with the same `StereoResult` as S²M².

It is the fallback when no S²M² weights are available and the reference the
network is compared against. The parameters are those of `stereo_image_proc`'s
SGBM disparity node. OpenCV gives no per-pixel matching cost, so visibility
and confidence both come from a left-right consistency check:

* the right-view disparity is computed by the same matcher on the mirrored
  pair, ``d_R = fliplr(match(fliplr(right), fliplr(left)))`` (the
  ``cv2.ximgproc`` right matcher is not in ``opencv-python-headless``);
* ``err(x) = |d_L(x) - d_R(x - d_L(x))|``;
* visibility is 1 where ``err <= lr_threshold_px``, 0 elsewhere, including
  where either disparity is invalid or ``x - d_L`` leaves the right image;
* confidence is ``exp(-err² / (2 σ²))`` where both disparities exist, else 0.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import cv2
import numpy as np

from s2m2_ros.backends.inputs import StereoResult

_MODES = {
    "sgbm": cv2.STEREO_SGBM_MODE_SGBM,
    "hh": cv2.STEREO_SGBM_MODE_HH,
    "sgbm_3way": cv2.STEREO_SGBM_MODE_SGBM_3WAY,
    "hh4": cv2.STEREO_SGBM_MODE_HH4,
}

# OpenCV returns fixed-point disparities with 4 fractional bits.
_DISPARITY_SCALE = 16.0


def default_num_disparities(width: int, cap: int = 256) -> int:
    """A quarter of the image width rounded up to a multiple of 16, within [16, cap]."""
    quarter = -(-max(int(width), 1) // 4)
    rounded = -(-quarter // 16) * 16
    return int(min(max(rounded, 16), cap))


@dataclass(frozen=True)
class SgbmParameters:
    """StereoSGBM settings: stereo_image_proc's SGBM parameters under OpenCV's names.

    (stereo_image_proc's ``correlation_window_size`` is ``block_size``,
    ``disparity_range`` is ``num_disparities``, ``speckle_size`` is
    ``speckle_window_size``.) ``num_disparities=None`` picks
    `default_num_disparities` of the image width. ``p1``/``p2`` of ``None``
    use OpenCV's recommended ``8·cn·block_size²`` and ``32·cn·block_size²``.
    ``mode``: ``sgbm_3way`` (default, fastest), ``sgbm``, ``hh`` (full
    8-direction, slow) or ``hh4``.
    """

    min_disparity: int = 0
    num_disparities: int | None = None
    block_size: int = 5
    p1: int | None = None
    p2: int | None = None
    disp12_max_diff: int = 1
    pre_filter_cap: int = 31
    uniqueness_ratio: int = 10
    speckle_window_size: int = 100
    speckle_range: int = 4
    mode: str = "sgbm_3way"
    # Match colour images with cn = 3 rather than converting to grey first.
    use_color: bool = False
    # Pad the left edge so the leftmost num_disparities columns get the full
    # search range; OpenCV (and stereo_image_proc) leave that band invalid.
    pad_left_border: bool = True

    def __post_init__(self) -> None:
        if self.num_disparities is not None and (
            self.num_disparities <= 0 or self.num_disparities % 16
        ):
            raise ValueError(
                f"num_disparities must be a positive multiple of 16, got {self.num_disparities}"
            )
        if self.block_size < 1 or self.block_size % 2 == 0:
            raise ValueError(f"block_size must be odd and positive, got {self.block_size}")
        if self.mode not in _MODES:
            raise ValueError(f"mode must be one of {sorted(_MODES)}, got {self.mode!r}")
        if self.p1 is not None and self.p2 is not None and self.p2 <= self.p1:
            raise ValueError("p2 must be greater than p1")

    def resolved(self, width: int, channels: int) -> SgbmParameters:
        """These parameters with every ``None`` replaced by its value for this image."""
        area = self.block_size * self.block_size
        return replace(
            self,
            num_disparities=self.num_disparities or default_num_disparities(width),
            p1=self.p1 if self.p1 is not None else 8 * channels * area,
            p2=self.p2 if self.p2 is not None else 32 * channels * area,
        )

    def create_matcher(self, width: int, channels: int) -> cv2.StereoSGBM:
        """An OpenCV StereoSGBM configured for images of this width and channel count."""
        params = self.resolved(width, channels)
        return cv2.StereoSGBM_create(
            minDisparity=params.min_disparity,
            numDisparities=params.num_disparities,
            blockSize=params.block_size,
            P1=params.p1,
            P2=params.p2,
            disp12MaxDiff=params.disp12_max_diff,
            preFilterCap=params.pre_filter_cap,
            uniquenessRatio=params.uniqueness_ratio,
            speckleWindowSize=params.speckle_window_size,
            speckleRange=params.speckle_range,
            mode=_MODES[params.mode],
        )


def to_matcher_image(
    image: np.ndarray, color_order: str, use_color: bool, scale: float
) -> np.ndarray:
    """uint8 mono (or BGR with ``use_color``) view of a backend input image.

    Accepts H×W or H×W×{1,3,4} uint8, uint16 or float (0–255) images, like
    the engine. ``scale`` maps uint16 intensities to 0–255; both images of a
    pair must use the same one or their matching costs would not be comparable.
    """
    if color_order not in ("rgb", "bgr"):
        raise ValueError(f"color_order must be 'rgb' or 'bgr', got {color_order!r}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"expected H×W or H×W×{{1,3,4}} images, got shape {image.shape}")
    if image.dtype == np.uint16:
        image = np.clip(image.astype(np.float32) * scale, 0, 255).astype(np.uint8)
    elif np.issubdtype(image.dtype, np.floating):
        image = np.clip(np.nan_to_num(image), 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise TypeError(f"expected uint8, uint16 or float images, got {image.dtype}")
    if image.ndim == 2:
        return np.ascontiguousarray(image)
    if use_color:
        return np.ascontiguousarray(image[..., ::-1] if color_order == "rgb" else image)
    code = cv2.COLOR_RGB2GRAY if color_order == "rgb" else cv2.COLOR_BGR2GRAY
    return cv2.cvtColor(np.ascontiguousarray(image), code)


def left_right_error(disparity_left: np.ndarray, disparity_right: np.ndarray) -> np.ndarray:
    """``|d_L(x) - d_R(x - d_L(x))|``, NaN where either side has no disparity.

    Both maps are float, NaN where invalid; ``d_R`` is indexed by right-image
    columns and is positive like ``d_L``.
    """
    height, width = disparity_left.shape
    columns = np.arange(width, dtype=np.float32)[None, :]
    target = np.rint(columns - np.nan_to_num(disparity_left, nan=0.0))
    inside = np.isfinite(disparity_left) & (target >= 0) & (target < width)
    index = np.where(inside, target, 0).astype(np.intp)
    matched = np.take_along_axis(disparity_right, index, axis=1)
    error = np.abs(disparity_left - matched)
    error[~inside] = np.nan
    return error


class SgbmBackend:
    """`StereoBackend` running OpenCV StereoSGBM on the CPU."""

    name = "sgbm"
    # OpenCV's SGBM works in fixed point with 4 fractional bits.
    disparity_step_px = 1.0 / 16.0
    device = "cpu"

    def describe(self) -> dict[str, object]:
        """What runs where, for logs and the status message (as StereoEngine.describe)."""
        return {"model": "sgbm", "device": "cpu", "precision": "fp32",
                "block_size": self.parameters.block_size}

    def __init__(
        self,
        parameters: SgbmParameters | None = None,
        lr_threshold_px: float = 1.0,
        confidence_sigma_px: float = 1.0,
    ) -> None:
        self.parameters = parameters or SgbmParameters()
        self.lr_threshold_px = float(lr_threshold_px)
        self.confidence_sigma_px = float(confidence_sigma_px)
        self._matchers: dict[tuple[int, int], cv2.StereoSGBM] = {}

    def _matcher(self, width: int, channels: int) -> cv2.StereoSGBM:
        key = (width, channels)
        if key not in self._matchers:
            self._matchers[key] = self.parameters.create_matcher(width, channels)
        return self._matchers[key]

    def _match(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """Left-view disparity in float32 pixels, NaN where the matcher gave none."""
        width = left.shape[1]
        channels = 1 if left.ndim == 2 else left.shape[2]
        matcher = self._matcher(width, channels)
        pad = 0
        if self.parameters.pad_left_border:
            pad = matcher.getNumDisparities() + max(matcher.getMinDisparity(), 0)
            left = cv2.copyMakeBorder(left, 0, 0, pad, 0, cv2.BORDER_CONSTANT, value=0)
            right = cv2.copyMakeBorder(right, 0, 0, pad, 0, cv2.BORDER_CONSTANT, value=0)
        raw = matcher.compute(left, right)[:, pad:]
        invalid = raw < matcher.getMinDisparity() * _DISPARITY_SCALE
        disparity = raw.astype(np.float32) / _DISPARITY_SCALE
        disparity[invalid] = np.nan
        return disparity

    def infer(self, left: np.ndarray, right: np.ndarray, color_order: str = "rgb") -> StereoResult:
        """Disparity, LR-check visibility and confidence for one rectified pair."""
        if left.shape != right.shape:
            raise ValueError(f"left {left.shape} and right {right.shape} differ in shape")
        start = time.perf_counter()
        scale = 1.0
        if left.dtype == np.uint16:
            # Stretch the pair's own range: a 10/12-bit camera would otherwise use a
            # sliver of 0-255 and SGBM's integer costs would lose the texture.
            colour = (..., slice(0, 3)) if left.ndim == 3 else (...,)
            peak = max(int(left[colour].max()), int(right[colour].max()), 1)
            scale = 255.0 / peak
        use_color = self.parameters.use_color
        left_8 = to_matcher_image(left, color_order, use_color, scale)
        right_8 = to_matcher_image(right, color_order, use_color, scale)
        prepared = time.perf_counter()

        disparity = self._match(left_8, right_8)
        # The mirrored pair puts the right camera on the left with positive disparities.
        disparity_right = self._match(
            np.ascontiguousarray(right_8[:, ::-1]), np.ascontiguousarray(left_8[:, ::-1])
        )[:, ::-1]
        matched = time.perf_counter()

        error = left_right_error(disparity, disparity_right)
        checked = np.isfinite(error)
        visibility = (checked & (error <= self.lr_threshold_px)).astype(np.float32)
        sigma = max(self.confidence_sigma_px, 1e-6)
        confidence = np.exp(-np.square(np.where(checked, error, 0.0)) / (2.0 * sigma * sigma))
        confidence = np.where(checked, confidence, 0.0).astype(np.float32)
        done = time.perf_counter()

        return StereoResult(
            disparity=disparity,
            visibility=visibility,
            confidence=confidence,
            timings_ms={
                "preprocess": (prepared - start) * 1e3,
                "network": (matched - prepared) * 1e3,
                "postprocess": (done - matched) * 1e3,
            },
        )
