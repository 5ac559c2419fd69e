# SPDX-License-Identifier: Apache-2.0
"""Geometry against OpenCV's rectification and image_geometry's Q matrix."""

import math

import cv2
import numpy as np
import pytest

from s2m2_ros.geometry import (
    CameraModelError,
    StereoCamera,
    ValidityThresholds,
    depth_and_validity,
    depth_from_disparity,
    disparity_image_fields,
    fill_invalid_disparity,
    fill_invalid_disparity_from,
    nan_where_invalid,
    points_from_depth,
    validity_mask,
)

WIDTH, HEIGHT = 64, 48


def rectified_rig() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P1, P2 and Q from cv2.stereoRectify of a slightly verged rig.

    Without CALIB_ZERO_DISPARITY the rectified principal points differ, so doffs != 0
    and the offset handling is exercised.
    """
    k_left = np.array([[500.0, 0, 32], [0, 500, 24], [0, 0, 1]])
    k_right = np.array([[505.0, 0, 30], [0, 503, 25], [0, 0, 1]])
    rotation, _ = cv2.Rodrigues(np.array([0.01, -0.02, 0.005]))
    translation = np.array([[-0.12], [0.003], [0.001]])
    no_distortion = np.zeros(5)
    _, _, p1, p2, q, _, _ = cv2.stereoRectify(
        k_left, no_distortion, k_right, no_distortion, (WIDTH, HEIGHT),
        rotation, translation, flags=0, alpha=-1,
    )
    return p1, p2, q


def image_geometry_q(p_left: np.ndarray, p_right: np.ndarray) -> np.ndarray:
    """Q as ROS 2 image_geometry StereoCameraModel::updateQ writes it.

    baseline() = -P_right(0,3) / P_right(0,0); updateQ uses Tx = -baseline().
    """
    tx = -(-p_right[0, 3] / p_right[0, 0])
    fx, fy, cx, cy = p_left[0, 0], p_left[1, 1], p_left[0, 2], p_left[1, 2]
    q = np.zeros((4, 4))
    q[0, 0] = fy * tx
    q[0, 3] = -fy * cx * tx
    q[1, 1] = fx * tx
    q[1, 3] = -fx * cy * tx
    q[2, 3] = fx * fy * tx
    q[3, 2] = -fy
    q[3, 3] = fy * (cx - p_right[0, 2])
    return q


@pytest.fixture
def rig():
    p1, p2, q = rectified_rig()
    camera = StereoCamera.from_projections(p1.reshape(-1), p2.reshape(-1), WIDTH, HEIGHT)
    return camera, p1, p2, q


def test_camera_parameters_come_from_the_projections(rig):
    camera, p1, p2, _ = rig
    assert camera.fx == p1[0, 0] and camera.fy == p1[1, 1]
    assert camera.cx == p1[0, 2] and camera.cy == p1[1, 2]
    assert camera.cx_right == p2[0, 2]
    assert camera.baseline_m == pytest.approx(-p2[0, 3] / p2[0, 0])
    assert camera.doffs == pytest.approx(p1[0, 2] - p2[0, 2])
    assert abs(camera.doffs) > 1.0  # the rig really is verged


def test_depth_and_points_recover_a_projected_point(rig):
    camera, p1, p2, _ = rig
    world = np.array([0.05, -0.03, 1.7, 1.0])  # in the rectified left camera frame
    left = p1 @ world
    right = p2 @ world
    u, v = left[0] / left[2], left[1] / left[2]
    disparity = left[0] / left[2] - right[0] / right[2]
    assert right[1] / right[2] == pytest.approx(v)  # rectified: same row

    depth = depth_from_disparity(np.array([[disparity]], dtype=np.float32), camera)
    assert depth[0, 0] == pytest.approx(1.7, rel=1e-5)

    # Back-project that depth at (u, v) with the formula, one pixel at a time.
    x = (u - camera.cx) * depth[0, 0] / camera.fx
    y = (v - camera.cy) * depth[0, 0] / camera.fy
    assert (x, y) == pytest.approx((0.05, -0.03), rel=1e-4)


def test_points_match_opencv_and_image_geometry_reprojection(rig):
    camera, p1, p2, q_opencv = rig
    rng = np.random.default_rng(3)
    disparity = rng.uniform(-5.0, 60.0, (HEIGHT, WIDTH)).astype(np.float32)
    depth = depth_from_disparity(disparity, camera)
    points = points_from_depth(depth, camera)

    usable = disparity - camera.doffs > 0
    assert usable.any() and (~usable).any()
    assert np.isnan(depth[~usable]).all()
    assert np.isnan(points[~usable]).all()

    for q in (q_opencv, image_geometry_q(p1, p2)):
        reference = cv2.reprojectImageTo3D(disparity, q.astype(np.float64))
        np.testing.assert_allclose(points[usable], reference[usable], rtol=2e-5, atol=1e-6)


def test_points_match_image_geometry_with_unequal_focal_lengths():
    # image_geometry builds the full Q so that fx != fy is handled; OpenCV's
    # stereoRectify never produces such a pair, so write the projections by hand.
    p_left = np.array([[480.0, 0, 30.5, 0], [0, 530.0, 22.0, 0], [0, 0, 1, 0]])
    p_right = np.array([[480.0, 0, 26.0, -480.0 * 0.09], [0, 530.0, 22.0, 0], [0, 0, 1, 0]])
    camera = StereoCamera.from_projections(p_left, p_right, WIDTH, HEIGHT)
    disparity = np.random.default_rng(4).uniform(5.0, 40.0, (HEIGHT, WIDTH)).astype(np.float32)
    points = points_from_depth(depth_from_disparity(disparity, camera), camera)
    reference = cv2.reprojectImageTo3D(disparity, image_geometry_q(p_left, p_right))
    np.testing.assert_allclose(points, reference, rtol=2e-5, atol=1e-6)


def test_depth_rejects_non_finite_and_non_positive_denominators():
    camera = StereoCamera.from_projections(
        [400, 0, 32, 0, 0, 400, 24, 0, 0, 0, 1, 0],
        [400, 0, 32, -40, 0, 400, 24, 0, 0, 0, 1, 0],
        WIDTH, HEIGHT,
    )
    disparity = np.array([[np.nan, np.inf, -np.inf, 0.0, -2.0, 20.0]], dtype=np.float32)
    depth = depth_from_disparity(disparity, camera)
    assert np.isnan(depth[0, :5]).all()
    assert depth[0, 5] == pytest.approx(400 * 0.1 / 20.0)
    assert depth.dtype == np.float32


def projections(fx=500.0, fy=500.0, tx=-60.0, fx_right=None, cy_right=24.0, ty=0.0):
    left = [fx, 0, 32, 0, 0, fy, 24, 0, 0, 0, 1, 0]
    right = [fx if fx_right is None else fx_right, 0, 30, tx, 0, fy, cy_right, ty, 0, 0, 1, 0]
    return left, right


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tx": 0.0}, "baseline"),
        ({"tx": 60.0}, "swapped"),
        ({"fx": 0.0, "fx_right": 0.0}, "positive"),
        ({"fy": -3.0}, "positive"),
        ({"fx": float("nan")}, "non-finite"),
        ({"fx_right": 520.0}, "fx"),
        ({"cy_right": 30.0}, "rows"),
        ({"ty": -10.0}, "vertical"),
    ],
)
def test_bad_camera_info_is_rejected_with_a_reason(kwargs, message):
    left, right = projections(**kwargs)
    with pytest.raises(CameraModelError, match=message):
        StereoCamera.from_projections(left, right, WIDTH, HEIGHT)


def test_missing_projection_and_bad_size_are_rejected():
    left, right = projections()
    with pytest.raises(CameraModelError, match="12 values"):
        StereoCamera.from_projections(left, [], WIDTH, HEIGHT)
    with pytest.raises(CameraModelError, match="size"):
        StereoCamera.from_projections(left, right, 0, HEIGHT)
    assert issubclass(CameraModelError, ValueError)


def test_focal_lengths_within_tolerance_are_accepted():
    left, right = projections(fx_right=500.2)  # 4e-4 relative: YAML rounding
    camera = StereoCamera.from_projections(left, right, WIDTH, HEIGHT)
    assert camera.baseline_m == pytest.approx(60.0 / 500.2)
    # stereo_image_proc: DisparityImage.f = model.right().fx()
    assert disparity_image_fields(camera)["f"] == 500.2


def test_points_shape_must_match_the_camera(rig):
    camera = rig[0]
    with pytest.raises(ValueError, match="camera model"):
        points_from_depth(np.ones((HEIGHT, WIDTH + 1), dtype=np.float32), camera)


def test_validity_mask_each_test_and_its_off_switch():
    disparity = np.array([[10.0, 10.0, 10.0, -3.0, np.nan, 10.0, 10.0, 10.0]], np.float32)
    confidence = np.array([[0.9, 0.05, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]], np.float32)
    visibility = np.array([[0.9, 0.9, 0.2, 0.9, 0.9, 0.9, 0.9, 0.9]], np.float32)
    depth = np.array([[2.0, 2.0, 2.0, 2.0, np.nan, 0.3, 50.0, 1.0]], np.float32)
    strict = ValidityThresholds(min_depth=0.5, max_depth=20.0)

    mask = validity_mask(disparity, visibility, confidence, depth, strict)
    np.testing.assert_array_equal(mask[0], [1, 0, 0, 0, 0, 0, 0, 1])

    lenient = ValidityThresholds(
        confidence_threshold=0.0, occlusion_threshold=0.0, allow_negative=True
    )
    mask = validity_mask(disparity, visibility, confidence, depth, lenient)
    np.testing.assert_array_equal(mask[0], [1, 1, 1, 1, 0, 1, 1, 1])

    # Limits are inclusive.
    at_limits = ValidityThresholds(min_depth=0.3, max_depth=50.0)
    mask = validity_mask(disparity, visibility, confidence, depth, at_limits)
    assert mask[0, 5] and mask[0, 6]

    # Without depth and without the optional inputs only the disparity is judged.
    mask = validity_mask(disparity, None, None, None, ValidityThresholds())
    np.testing.assert_array_equal(mask[0], [1, 1, 1, 0, 0, 1, 1, 1])
    assert mask.dtype == bool


def test_disparity_image_fields_match_stereo_image_proc():
    # A typical 1280x720 rectified camera_info pair (cx equal, as camera_calibration
    # writes it); stereo_image_proc: f = right P[0], T = -P_right[3] / P_right[0].
    left = [700.5, 0, 640.2, 0, 0, 700.5, 360.1, 0, 0, 0, 1, 0]
    right = [700.5, 0, 640.2, -84.06, 0, 700.5, 360.1, 0, 0, 0, 1, 0]
    camera = StereoCamera.from_projections(left, right, 1280, 720)
    fields = disparity_image_fields(camera, 1280, 720)
    assert fields["f"] == 700.5
    assert fields["t"] == pytest.approx(84.06 / 700.5)
    assert fields["min_disparity"] == 0.0
    assert fields["max_disparity"] == 1280.0
    assert fields["valid_window"] == (0, 0, 1280, 720)
    # float32 values near 1280 are 2**-13 apart; nothing coarser can occur.
    assert fields["delta_d"] == 2.0**-13
    assert np.float32(1280.0) + np.float32(fields["delta_d"]) != np.float32(1280.0)

    negative = disparity_image_fields(camera, allow_negative=True, max_disparity_px=256)
    assert (negative["min_disparity"], negative["max_disparity"]) == (-256.0, 256.0)
    assert disparity_image_fields(camera, delta_d_px=1 / 16)["delta_d"] == 1 / 16


def test_message_disparity_gives_depth_by_the_message_formula(rig):
    camera, *_ = rig
    rng = np.random.default_rng(5)
    disparity = rng.uniform(0.0, 60.0, (HEIGHT, WIDTH)).astype(np.float32)
    depth = depth_from_disparity(disparity, camera)
    valid = validity_mask(disparity, None, None, depth, ValidityThresholds())
    fields = disparity_image_fields(camera)
    published = fill_invalid_disparity(disparity, valid, fields["min_disparity"], camera.doffs)

    # DisparityImage.msg: Z = f T / d, anything below min_disparity is invalid.
    assert published.dtype == np.float32
    assert (published[valid] >= fields["min_disparity"]).all()
    assert (published[valid] <= fields["max_disparity"]).all()
    np.testing.assert_array_equal(published[~valid], fields["min_disparity"] - 1.0)
    np.testing.assert_allclose(
        fields["f"] * fields["t"] / published[valid], depth[valid], rtol=1e-5
    )
    assert not math.isclose(camera.doffs, 0.0)


def test_nan_where_invalid_touches_only_the_masked_values():
    values = np.array([1.5, -2.0, np.inf, 0.0, -np.inf, 3.0e-39, 7.0], dtype=np.float32)
    invalid = np.array([0, 1, 1, 0, 1, 1, 0], dtype=bool)
    before = values.copy()
    result = nan_where_invalid(values, invalid)
    assert result is values
    assert np.isnan(values[invalid]).all()
    assert values[~invalid].tobytes() == before[~invalid].tobytes()
    with pytest.raises(ValueError, match="float32"):
        nan_where_invalid(values.astype(np.float64), invalid)
    with pytest.raises(ValueError, match="bool"):
        nan_where_invalid(values, invalid.astype(np.uint8))


@pytest.mark.parametrize("doffs", [0.0, 3.5, -3.5])
@pytest.mark.parametrize("allow_negative", [False, True])
@pytest.mark.parametrize("depth_range", [(0.0, 0.0), (0.7, 20.0)])
def test_depth_and_validity_match_the_separate_steps_bit_for_bit(doffs, allow_negative,
                                                                  depth_range):
    rng = np.random.default_rng(3)
    camera = StereoCamera(fx=500.0, fy=500.0, cx=32.0, cy=24.0, cx_right=32.0 - doffs,
                          baseline_m=0.1, doffs=doffs, width=WIDTH, height=HEIGHT)
    thresholds = ValidityThresholds(0.1, 0.5, *depth_range, allow_negative)
    disparity = rng.normal(0.0, 50.0, (HEIGHT, WIDTH)).astype(np.float32)
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-45, 3e38, doffs,
                        doffs + 1e-6], dtype=np.float32)
    disparity.flat[rng.integers(0, disparity.size, 300)] = rng.choice(special, 300)
    visibility = rng.random((HEIGHT, WIDTH), dtype=np.float32)
    confidence = rng.random((HEIGHT, WIDTH), dtype=np.float32)
    confidence.flat[::13] = np.nan
    with np.errstate(all="ignore"):
        expected_depth = depth_from_disparity(disparity, camera)
        expected_valid = validity_mask(disparity, visibility, confidence, expected_depth,
                                       thresholds)
        nan_where_invalid(expected_depth, ~expected_valid)
        expected_filled = fill_invalid_disparity(disparity, expected_valid, -7.0, doffs)
        depth, valid, adjusted, nan_bits = depth_and_validity(
            disparity, visibility, confidence, camera, thresholds)
        filled = fill_invalid_disparity_from(adjusted, nan_bits, -7.0)
    np.testing.assert_array_equal(valid, expected_valid)
    np.testing.assert_array_equal(depth.view(np.uint32), expected_depth.view(np.uint32))
    np.testing.assert_array_equal(filled.view(np.uint32), expected_filled.view(np.uint32))
