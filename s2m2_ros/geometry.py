# SPDX-License-Identifier: Apache-2.0
"""Rectified stereo geometry: camera model from CameraInfo P matrices, disparity to
depth and points, the validity rule, and the DisparityImage metadata.

Conventions follow ROS' image_geometry ``StereoCameraModel`` (ROS 2, ``updateQ``).
With the baseline ``B = -P_right[3] / P_right[0]`` (its ``baseline()``), ``Tx = -B``
and ``doffs = cx_left - cx_right`` it builds::

        [ fy*Tx  0      0    -fy*cx*Tx    ]
    Q = [ 0      fx*Tx  0    -fx*cy*Tx    ]      [X Y Z W]^T = Q [u v d 1]^T
        [ 0      0      0     fx*fy*Tx    ]
        [ 0      0     -fy    fy*doffs    ]

where ``d = x_left - x_right`` is the raw disparity the network estimates.
Dividing out W gives

    Z = fx * B / (d - doffs),  X = (u - cx) * Z / fx,  Y = (v - cy) * Z / fy,

which is what this module computes, without building Q.

DisparityImage carries the disparity *pre-adjusted* for the principal-point offset
(``d - doffs``, see stereo_msgs/DisparityImage.msg and stereo_image_proc's
``processDisparity``), so that ``Z = f * T / d_message``. For the common rectification
with ``cx_left == cx_right`` (``doffs == 0``) both are the same number. (When it is not,
stereo_image_proc's point_cloud node, which applies Q to that pre-adjusted disparity,
subtracts doffs twice; depth and points here come from the raw disparity.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Rectified pairs share the focal lengths (image_geometry asserts equality); allow
# the rounding that YAML round trips of calibration files introduce.
FOCAL_RELATIVE_TOLERANCE = 1e-3
# Rectified rows must line up; a larger cy difference means the pair is not rectified.
CY_TOLERANCE_PX = 1.0


class CameraModelError(ValueError):
    """The CameraInfo pair does not describe a usable rectified horizontal stereo rig."""


def _projection(p: Sequence[float] | np.ndarray, side: str) -> np.ndarray:
    try:
        matrix = np.asarray(p, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as error:
        raise CameraModelError(f"{side} projection matrix is not numeric: {error}") from error
    if matrix.size != 12:
        raise CameraModelError(
            f"{side} projection matrix P must have 12 values (3x4, row-major), "
            f"got {matrix.size}; is the CameraInfo filled in?"
        )
    if not np.all(np.isfinite(matrix)):
        raise CameraModelError(f"{side} projection matrix P has non-finite values: {matrix}")
    return matrix


@dataclass(frozen=True)
class StereoCamera:
    """A rectified horizontal stereo pair, as image_geometry's StereoCameraModel sees it.

    ``fx, fy, cx, cy`` come from the left P, ``cx_right`` from the right P,
    ``baseline_m = -P_right[3] / P_right[0]`` and ``doffs = cx - cx_right``.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    cx_right: float
    baseline_m: float
    doffs: float
    width: int
    height: int
    # stereo_image_proc publishes the right fx as DisparityImage.f; None means "same as fx".
    fx_right: float | None = None

    @classmethod
    def from_projections(
        cls,
        p_left: Sequence[float] | np.ndarray,
        p_right: Sequence[float] | np.ndarray,
        width: int,
        height: int,
    ) -> StereoCamera:
        """Build the model from the two CameraInfo ``p`` arrays (row-major 3×4).

        Raises CameraModelError for anything image_geometry would assert on or that
        would give meaningless depth: missing/zero/negative baseline, non-positive
        focal lengths, left/right focal lengths or rows that disagree, vertical stereo.
        The left P[3] is ignored, as image_geometry does.
        """
        left = _projection(p_left, "left")
        right = _projection(p_right, "right")
        if int(width) <= 0 or int(height) <= 0:
            raise CameraModelError(f"image size must be positive, got {width}x{height}")
        fx, fy, cx, cy = left[0], left[5], left[2], left[6]
        fx_right, fy_right, cx_right, cy_right = right[0], right[5], right[2], right[6]
        for name, value in (
            ("left fx", fx), ("left fy", fy), ("right fx", fx_right), ("right fy", fy_right)
        ):
            if not value > 0.0:
                raise CameraModelError(
                    f"{name} = {value} in P must be positive; is the camera calibrated?"
                )
        if not math.isclose(fx, fx_right, rel_tol=FOCAL_RELATIVE_TOLERANCE):
            raise CameraModelError(
                f"left fx {fx} and right fx {fx_right} differ: the pair is not rectified "
                "with a common projection"
            )
        if not math.isclose(fy, fy_right, rel_tol=FOCAL_RELATIVE_TOLERANCE):
            raise CameraModelError(
                f"left fy {fy} and right fy {fy_right} differ: the pair is not rectified "
                "with a common projection"
            )
        if abs(cy - cy_right) > CY_TOLERANCE_PX:
            raise CameraModelError(
                f"left cy {cy} and right cy {cy_right} differ by more than "
                f"{CY_TOLERANCE_PX} px: rows are not aligned"
            )
        tx = right[3]
        if tx == 0.0:
            raise CameraModelError(
                "right P[3] (Tx = -fx * baseline) is 0: no baseline; the right CameraInfo "
                "must carry the stereo translation"
            )
        if abs(right[7]) > 1e-3 * abs(tx):
            raise CameraModelError(
                f"right P[7] (Ty = {right[7]}) is not 0: vertical stereo is not supported"
            )
        baseline_m = -tx / fx_right
        if baseline_m < 0.0:
            raise CameraModelError(
                f"baseline {baseline_m} m is negative (right P[3] = {tx} > 0): "
                "are the left and right inputs swapped?"
            )
        return cls(
            fx=float(fx),
            fy=float(fy),
            cx=float(cx),
            cy=float(cy),
            cx_right=float(cx_right),
            baseline_m=float(baseline_m),
            doffs=float(cx - cx_right),
            width=int(width),
            height=int(height),
            fx_right=float(fx_right),
        )


def nan_where_invalid(values: np.ndarray, invalid: np.ndarray) -> np.ndarray:
    """Set float32 ``values`` to NaN in place where ``invalid`` (bool, same shape); returns it.

    Done on the bit patterns: OR-ing 0x7FC00000 makes any float32 a quiet NaN and
    leaves the others untouched. Unlike ``np.where``/``copyto(where=)``, which branch
    per element and run 5–10× slower on speckled masks, this costs the same on any mask.
    """
    if values.dtype != np.float32 or invalid.dtype != bool or values.shape != invalid.shape:
        raise ValueError(
            f"need float32 values and a bool mask of the same shape, got {values.dtype} "
            f"{values.shape} and {invalid.dtype} {invalid.shape}"
        )
    nan_bits = invalid.view(np.uint8) * np.uint32(0x7FC00000)
    np.bitwise_or(values.view(np.uint32), nan_bits, out=values.view(np.uint32))
    return values


def depth_from_disparity(disparity: np.ndarray, camera: StereoCamera) -> np.ndarray:
    """Depth in metres (float32, H×W) from raw disparity ``d = x_left - x_right`` in pixels.

    ``Z = fx * B / (d - doffs)``, the Q-matrix reprojection of image_geometry;
    NaN where ``d - doffs <= 0`` (the point would be at or behind infinity) or ``d`` is
    not finite.
    """
    denominator = np.subtract(disparity, np.float32(camera.doffs), dtype=np.float32)
    # `< inf` also rejects +inf disparity, which would otherwise give depth 0.
    unusable = ~((denominator > 0.0) & (denominator < np.inf))
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.divide(np.float32(camera.fx * camera.baseline_m), denominator, out=denominator)
    return nan_where_invalid(depth, unusable)


def pixel_rays(camera: StereoCamera) -> tuple[np.ndarray, np.ndarray]:
    """``(u - cx) / fx`` for every column and ``(v - cy) / fy`` for every row, float32.

    The rays are separable, so back-projection needs two vectors, not H×W grids.
    """
    ray_x = (np.arange(camera.width, dtype=np.float64) - camera.cx) / camera.fx
    ray_y = (np.arange(camera.height, dtype=np.float64) - camera.cy) / camera.fy
    return ray_x.astype(np.float32), ray_y.astype(np.float32)


def points_from_depth(depth: np.ndarray, camera: StereoCamera) -> np.ndarray:
    """Back-project depth (H×W, metres) through the left P into H×W×3 float32 XYZ.

    ``X = (u - cx) Z / fx``, ``Y = (v - cy) Z / fy`` in the optical frame (x right,
    y down, z forward). NaN depth gives NaN points. For a point cloud message,
    ``cloud.cloud_from_depth`` does this without the H×W×3 array.
    """
    if depth.shape != (camera.height, camera.width):
        raise ValueError(
            f"depth is {depth.shape[1]}x{depth.shape[0]} but the camera model is "
            f"{camera.width}x{camera.height}"
        )
    ray_x, ray_y = pixel_rays(camera)
    points = np.empty((camera.height, camera.width, 3), dtype=np.float32)
    np.multiply(depth, ray_x[np.newaxis, :], out=points[..., 0])
    np.multiply(depth, ray_y[:, np.newaxis], out=points[..., 1])
    points[..., 2] = depth
    return points


@dataclass(frozen=True)
class ValidityThresholds:
    """Which pixels become depth and points. A threshold of 0 switches its test off.

    ``confidence_threshold``: keep confidence >= this. ``occlusion_threshold``: keep
    visibility (1 = seen by the right camera) >= this. ``min_depth`` / ``max_depth``
    in metres. ``allow_negative``: accept raw disparities <= 0 (verged rigs).
    """

    confidence_threshold: float = 0.1
    occlusion_threshold: float = 0.5
    min_depth: float = 0.0
    max_depth: float = 0.0
    allow_negative: bool = False


def validity_mask(
    disparity: np.ndarray,
    visibility: np.ndarray | None,
    confidence: np.ndarray | None,
    depth: np.ndarray | None,
    thresholds: ValidityThresholds,
) -> np.ndarray:
    """Boolean H×W mask of pixels to publish.

    A pixel is valid when its raw disparity is finite and (unless ``allow_negative``)
    positive, its confidence and visibility reach their thresholds, and, when
    ``depth`` is given, its depth is finite and inside ``[min_depth, max_depth]``.
    ``visibility``/``confidence`` of None skip those tests.
    """
    if thresholds.allow_negative:
        valid = np.isfinite(disparity)
    else:
        # NaN compares False and +inf is excluded, so this is "finite and > 0".
        valid = (disparity > 0.0) & (disparity < np.inf)
    if confidence is not None and thresholds.confidence_threshold > 0.0:
        valid &= confidence >= thresholds.confidence_threshold
    if visibility is not None and thresholds.occlusion_threshold > 0.0:
        valid &= visibility >= thresholds.occlusion_threshold
    if depth is not None:
        # depth_from_disparity yields only NaN or positive values and NaN compares
        # False, so these comparisons double as the finiteness test.
        if thresholds.min_depth > 0.0:
            valid &= depth >= thresholds.min_depth
        else:
            valid &= depth > 0.0
        if thresholds.max_depth > 0.0:
            valid &= depth <= thresholds.max_depth
        else:
            valid &= depth < np.inf
    return valid


def disparity_image_fields(
    camera: StereoCamera,
    width: int | None = None,
    height: int | None = None,
    max_disparity_px: float | None = None,
    allow_negative: bool = False,
    delta_d_px: float | None = None,
) -> dict:
    """The metadata of a stereo_msgs/DisparityImage for this camera.

    Returns ``f`` (right P[0], as stereo_image_proc), ``t`` (baseline in metres),
    ``min_disparity``, ``max_disparity``, ``delta_d`` and
    ``valid_window = (x_offset, y_offset, width, height)``.

    Decisions, all in the message's pre-adjusted disparity ``d - doffs``:

    * Raw search range: ``[0, max_disparity_px]`` (``[-max_disparity_px, ...]`` with
      ``allow_negative``); ``max_disparity_px`` defaults to the image width, the most a
      left pixel can shift. Both ends are shifted by ``-doffs`` so every published valid
      value lies inside ``[min_disparity, max_disparity]`` and ``min_disparity - 1``
      marks invalid pixels, as the message defines. (stereo_image_proc does not shift
      them; with ``doffs == 0`` the numbers are identical.)
    * ``delta_d``: the message calls it the smallest disparity increment. Unlike SGBM
      (fixed point, 1/16 px), the network writes continuous float32 values, whose step
      is the float32 spacing; the coarsest spacing in the range is the one at its
      largest magnitude, e.g. 2**-13 ≈ 1.2e-4 px for a 1280 px wide image. That is the
      true quantisation, and it keeps ``delta_Z = Z²/(fT)·delta_d`` a bound rather than
      an invented figure; accuracy is what the confidence image reports. Pass
      ``delta_d_px`` (e.g. 1/16 for the SGBM backend) to override.
    * ``valid_window``: the whole image. Block matching loses a border of half the
      correlation window plus the search range; the network estimates every pixel
      and marks the ones it cannot see through visibility and confidence instead.
    """
    width = camera.width if width is None else int(width)
    height = camera.height if height is None else int(height)
    raw_max = float(width if max_disparity_px is None else max_disparity_px)
    if raw_max <= 0.0:
        raise ValueError(f"max_disparity_px must be positive, got {raw_max}")
    raw_min = -raw_max if allow_negative else 0.0
    min_disparity = raw_min - camera.doffs
    max_disparity = raw_max - camera.doffs
    if delta_d_px is None:
        largest = max(abs(min_disparity), abs(max_disparity))
        delta_d = float(np.spacing(np.float32(largest)))
    else:
        delta_d = float(delta_d_px)
    return {
        "f": camera.fx if camera.fx_right is None else camera.fx_right,
        "t": camera.baseline_m,
        "min_disparity": min_disparity,
        "max_disparity": max_disparity,
        "delta_d": delta_d,
        "valid_window": (0, 0, width, height),
    }


def fill_invalid_disparity(
    disparity: np.ndarray,
    valid: np.ndarray,
    min_disparity: float,
    doffs: float = 0.0,
) -> np.ndarray:
    """Disparity for a DisparityImage: ``d - doffs`` where valid, ``min_disparity - 1``
    elsewhere (the message treats anything below ``min_disparity`` as invalid).

    Pass ``camera.doffs`` to pre-adjust as the message requires; returns a new
    float32 array. A valid value below ``min_disparity - 1`` is out of the declared
    range and is written as invalid too.
    """
    adjusted = np.subtract(disparity, np.float32(doffs), dtype=np.float32)
    nan_where_invalid(adjusted, ~valid)
    # fmax returns the other operand for NaN: a branch-free fill of the invalid pixels.
    return np.fmax(adjusted, np.float32(min_disparity - 1.0), out=adjusted)


def depth_and_validity(
    disparity: np.ndarray,
    visibility: np.ndarray | None,
    confidence: np.ndarray | None,
    camera: StereoCamera,
    thresholds: ValidityThresholds,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``depth_from_disparity``, ``validity_mask`` on its depth and ``nan_where_invalid``
    of the depth with ``~valid``, bit for bit, in fewer passes over the image.

    Returns ``(depth, valid, adjusted, nan_bits)``: depth in metres, NaN wherever
    ``valid`` is False; the float32 ``d - doffs`` (reusable in place by
    ``fill_invalid_disparity_from``); and the uint32 NaN bits of ``~valid``.

    Why the shortcuts are exact: depth is NaN-masked here only once, at the end,
    with the final mask (OR-ing the NaN bits is idempotent, so the bits match).
    Without the early masking, an unusable ``d - doffs`` (not in ``(0, inf)``) gives a
    depth that is NaN, 0, negative or infinite, which the depth tests reject anyway;
    a depth passing them lies in ``(0, inf)``, so ``d - doffs`` is positive and finite,
    hence ``d`` is finite and, when ``doffs >= 0``, positive: the disparity tests
    are then implied and skipped.
    """
    doffs = np.float32(camera.doffs)
    adjusted = np.subtract(disparity, doffs, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.divide(np.float32(camera.fx * camera.baseline_m), adjusted)
    if thresholds.min_depth > 0.0:
        valid = np.greater_equal(depth, thresholds.min_depth)
    else:
        valid = np.greater(depth, 0.0)
    scratch = np.empty_like(valid)
    if thresholds.max_depth > 0.0:
        valid &= np.less_equal(depth, thresholds.max_depth, out=scratch)
    else:
        valid &= np.less(depth, np.inf, out=scratch)
    if not thresholds.allow_negative and not doffs >= 0.0:
        valid &= np.greater(disparity, 0.0, out=scratch)
    if confidence is not None and thresholds.confidence_threshold > 0.0:
        valid &= np.greater_equal(confidence, thresholds.confidence_threshold, out=scratch)
    if visibility is not None and thresholds.occlusion_threshold > 0.0:
        valid &= np.greater_equal(visibility, thresholds.occlusion_threshold, out=scratch)
    np.logical_not(valid, out=scratch)
    nan_bits = np.multiply(scratch.view(np.uint8), np.uint32(0x7FC00000), dtype=np.uint32)
    np.bitwise_or(depth.view(np.uint32), nan_bits, out=depth.view(np.uint32))
    return depth, valid, adjusted, nan_bits


def fill_invalid_disparity_from(
    adjusted: np.ndarray, nan_bits: np.ndarray, min_disparity: float
) -> np.ndarray:
    """``fill_invalid_disparity`` from the ``adjusted`` and ``nan_bits`` of
    ``depth_and_validity`` (same camera): overwrites ``adjusted`` and returns it."""
    np.bitwise_or(adjusted.view(np.uint32), nan_bits, out=adjusted.view(np.uint32))
    return np.fmax(adjusted, np.float32(min_disparity - 1.0), out=adjusted)
