# SPDX-License-Identifier: Apache-2.0
"""SGBM backend on a synthetic two-layer scene with a known disparity and occlusion."""

import cv2
import numpy as np
import pytest

from s2m2_ros.backends import StereoBackend, StereoResult, create_backend
from s2m2_ros.sgbm import (
    SgbmBackend,
    SgbmParameters,
    default_num_disparities,
    left_right_error,
)

HEIGHT, WIDTH = 96, 160
BACKGROUND_PX, FOREGROUND_PX = 6, 18
BAR = slice(70, 110)  # foreground columns in the left image
MARGIN = 32


def _texture(rng: np.random.Generator, channels: int) -> np.ndarray:
    noise = rng.uniform(0, 255, size=(HEIGHT, WIDTH + MARGIN, channels)).astype(np.float32)
    # A little blur gives SGBM's sub-pixel fit a smooth cost curve to work on.
    blurred = cv2.GaussianBlur(noise, (0, 0), 0.8).reshape(noise.shape)
    low, high = blurred.min(), blurred.max()
    return ((blurred - low) * (255.0 / (high - low))).astype(np.uint8)


def synthetic_pair(channels: int = 3, seed: int = 0):
    """Left/right views of a textured background plane and a nearer textured bar.

    The right view shows texture column ``x + MARGIN`` at right column ``x``;
    a left pixel with disparity ``d`` shows what the right view shows at
    ``x - d``. Returns left, right, true left disparity and a mask of the left
    pixels hidden from the right camera.
    """
    rng = np.random.default_rng(seed)
    background, foreground = _texture(rng, channels), _texture(rng, channels)
    columns = np.arange(WIDTH)
    in_bar = np.zeros(WIDTH, dtype=bool)
    in_bar[BAR] = True
    disparity_row = np.where(in_bar, FOREGROUND_PX, BACKGROUND_PX)

    # Right view: the bar sits FOREGROUND_PX further left than in the left view.
    bar_in_right = np.zeros(WIDTH, dtype=bool)
    bar_in_right[BAR.start - FOREGROUND_PX : BAR.stop - FOREGROUND_PX] = True
    right = np.where(
        bar_in_right[None, :, None],
        foreground[:, columns + MARGIN],
        background[:, columns + MARGIN],
    )
    source = columns - disparity_row + MARGIN
    left = np.where(in_bar[None, :, None], foreground[:, source], background[:, source])

    # Background pixels whose match falls under the bar, or off the right image.
    match = columns - disparity_row
    occluded_row = (~in_bar & bar_in_right[np.clip(match, 0, WIDTH - 1)]) | (match < 0)
    disparity = np.broadcast_to(disparity_row, (HEIGHT, WIDTH)).astype(np.float32)
    occluded = np.broadcast_to(occluded_row, (HEIGHT, WIDTH))
    if channels == 1:
        return left[..., 0], right[..., 0], disparity, occluded
    return left, right, disparity, occluded


def _interior(occluded: np.ndarray) -> np.ndarray:
    """Non-occluded pixels away from the image border and from the occlusion edges."""
    keep = ~cv2.dilate(occluded.astype(np.uint8), np.ones((1, 5), np.uint8)).astype(bool)
    keep[:4] = keep[-4:] = False
    keep[:, :4] = keep[:, -4:] = False
    # Discontinuities blur SGBM's block by a couple of pixels either side.
    for edge in (BAR.start, BAR.stop):
        keep[:, edge - 3 : edge + 3] = False
    return keep


@pytest.fixture(scope="module")
def backend() -> SgbmBackend:
    return SgbmBackend(SgbmParameters(num_disparities=32))


@pytest.mark.parametrize("channels", [1, 3])
def test_recovers_known_disparity(backend, channels):
    left, right, truth, occluded = synthetic_pair(channels)
    result = backend.infer(left, right)
    interior = _interior(occluded)
    error = np.abs(result.disparity - truth)[interior]
    close = np.isfinite(error) & (error <= 1.0)
    assert close.mean() > 0.95
    assert np.nanmedian(error) < 0.5


def test_output_types_and_ranges(backend):
    left, right, _, _ = synthetic_pair()
    result = backend.infer(left, right)
    assert isinstance(result, StereoResult)
    for array in (result.disparity, result.visibility, result.confidence):
        assert array.shape == (HEIGHT, WIDTH)
        assert array.dtype == np.float32
    finite = result.disparity[np.isfinite(result.disparity)]
    assert finite.min() >= 0.0 and finite.max() < 32.0
    assert set(np.unique(result.visibility)) <= {0.0, 1.0}
    assert result.confidence.min() >= 0.0 and result.confidence.max() <= 1.0
    # Where the matcher gave no disparity nothing is visible or confident.
    invalid = ~np.isfinite(result.disparity)
    assert np.all(result.visibility[invalid] == 0) and np.all(result.confidence[invalid] == 0)
    assert result.timings_ms["network"] > 0.0


def test_visibility_marks_the_occluded_band(backend):
    left, right, _, occluded = synthetic_pair()
    result = backend.infer(left, right)
    interior = _interior(occluded)
    # The band hidden behind the bar, without the image border (also occluded).
    band = occluded.copy()
    band[:, : BACKGROUND_PX + 1] = False
    assert band.sum() > 0
    assert result.visibility[band].mean() < 0.2
    assert result.visibility[interior].mean() > 0.9
    assert result.confidence[band].mean() < result.confidence[interior].mean() - 0.5


def test_is_a_stereo_backend():
    backend = create_backend("sgbm")
    assert isinstance(backend, StereoBackend)
    assert backend.name == "sgbm"
    assert backend.disparity_step_px == 1.0 / 16.0


def test_color_order_and_bit_depth_do_not_change_the_geometry(backend):
    left, right, truth, occluded = synthetic_pair()
    interior = _interior(occluded)
    reference = backend.infer(left, right, color_order="rgb").disparity
    bgr = backend.infer(left[..., ::-1].copy(), right[..., ::-1].copy(), color_order="bgr")
    np.testing.assert_array_equal(bgr.disparity, reference)
    # 16-bit input with the same content (x257 maps 0-255 onto 0-65535).
    deep = backend.infer(left.astype(np.uint16) * 257, right.astype(np.uint16) * 257)
    error = np.abs(deep.disparity - truth)[interior]
    assert (np.isfinite(error) & (error <= 1.0)).mean() > 0.95


def test_rejects_bad_inputs(backend):
    left, right, _, _ = synthetic_pair()
    with pytest.raises(ValueError):
        backend.infer(left, right[:, :-1])
    with pytest.raises(ValueError):
        backend.infer(left, right, color_order="yuv")
    with pytest.raises(TypeError):
        backend.infer(left.astype(np.int32), right.astype(np.int32))


def test_left_right_error_by_hand():
    nan = np.nan
    left = np.array([[nan, 1.0, 1.0, 3.0, 2.0]], dtype=np.float32)
    right = np.array([[1.0, 1.5, nan, 3.0, 9.0]], dtype=np.float32)
    # x=1: 1 - d_R(0)=1 → 0; x=2: 1 - d_R(1)=1.5 → 0.5; x=3: x-d = 0, 3 - 1 → 2;
    # x=4: x-d = 2 where d_R is missing.
    expected = np.array([[nan, 0.0, 0.5, 2.0, nan]], dtype=np.float32)
    np.testing.assert_allclose(left_right_error(left, right), expected)
    # A match left of the image is not checkable.
    out = left_right_error(np.array([[5.0, 5.0]], np.float32), np.ones((1, 2), np.float32))
    assert np.isnan(out).all()


def test_default_num_disparities():
    assert default_num_disparities(741) == 192  # 741/4 = 185.25 → next multiple of 16
    assert default_num_disparities(640) == 160
    assert default_num_disparities(10) == 16
    assert default_num_disparities(4000) == 256


def test_parameters_follow_opencv_recommendation():
    params = SgbmParameters(block_size=3).resolved(width=640, channels=3)
    assert (params.p1, params.p2) == (8 * 3 * 9, 32 * 3 * 9)
    with pytest.raises(ValueError):
        SgbmParameters(num_disparities=20)
    with pytest.raises(ValueError):
        SgbmParameters(block_size=4)
    with pytest.raises(ValueError):
        SgbmParameters(mode="fast")
