# SPDX-License-Identifier: Apache-2.0
"""The node's frame pipeline without a node: which InputError each bad frame raises,
that huge claimed sizes are refused before any pixel is touched, the 16UC1 depth
encoding, and output selection with a backend of known output."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg")
pytest.importorskip("stereo_msgs.msg")

from node_harness import (  # noqa: E402  (after the skips)
    BAD_INPUTS,
    DEFAULT_CAMERA,
    HEIGHT,
    WIDTH,
    Camera,
    cloud_fields,
    image_array,
    pair_messages,
    textured_pair,
)

from s2m2_ros.backends import StereoBackend, StereoResult  # noqa: E402
from s2m2_ros.pipeline import (  # noqa: E402
    OUTPUTS,
    InputError,
    OutputSettings,
    depth_image,
    prepare_pair,
    process_frame,
)

STAMP = 5_000_000_000


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_each_bad_frame_raises_its_kind(case: str) -> None:
    build, kind = BAD_INPUTS[case]
    with pytest.raises(InputError) as raised:
        prepare_pair(*build(STAMP).as_tuple(), OutputSettings())
    assert raised.value.kind == kind
    assert str(raised.value)


def test_huge_claimed_size_is_refused_before_reading_or_allocating() -> None:
    build, _ = BAD_INPUTS["huge claimed size"]
    pair = build(STAMP)
    for image in (pair.left, pair.right):
        image.data = b""  # nothing at all to read: a reader would report truncation
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as raised:
            prepare_pair(*pair.as_tuple(), OutputSettings())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert raised.value.kind == "image_size"
    assert "max_input_pixels" in str(raised.value)
    assert peak < 1 << 20  # 30 GB claimed; nothing near an image was allocated


def test_max_input_pixels_is_the_limit() -> None:
    left, right = textured_pair()
    pair = pair_messages(left, right, STAMP)
    prepare_pair(*pair.as_tuple(), OutputSettings(max_input_pixels=WIDTH * HEIGHT))
    with pytest.raises(InputError) as raised:
        prepare_pair(*pair.as_tuple(), OutputSettings(max_input_pixels=WIDTH * HEIGHT - 1))
    assert raised.value.kind == "image_size"


def test_stamp_skew_check_when_asked_for() -> None:
    left, right = textured_pair()
    pair = pair_messages(left, right, STAMP)
    pair.right.header.stamp.nanosec += 50_000_000
    prepare_pair(*pair.as_tuple(), OutputSettings())  # off by default
    with pytest.raises(InputError) as raised:
        prepare_pair(*pair.as_tuple(), OutputSettings(max_stamp_skew_s=0.01))
    assert raised.value.kind == "stamp_skew"


def test_good_pair_is_converted_with_its_camera_model() -> None:
    left, right = textured_pair()
    camera = Camera(cx_right=33.0)
    prepared = prepare_pair(*pair_messages(left, right, STAMP, camera=camera).as_tuple(),
                            OutputSettings())
    np.testing.assert_array_equal(prepared.left_rgb, left)
    np.testing.assert_array_equal(prepared.right_rgb, right)
    assert prepared.camera.doffs == pytest.approx(camera.cx - camera.cx_right)
    assert prepared.camera.baseline_m == pytest.approx(camera.baseline_m)


def test_depth_16uc1_is_rounded_millimetres_with_zero_for_invalid() -> None:
    depth_m = np.array([[0.0004, 0.0006, 1.2344, 1.2346],
                        [65.535, 65.5356, 100.0, np.nan]], dtype=np.float32)
    valid = np.array([[True, True, True, False],
                      [True, True, True, True]])
    millimetres = depth_image(depth_m, valid, "16UC1")
    assert millimetres.dtype == np.uint16
    np.testing.assert_array_equal(millimetres, [[0, 1, 1234, 0],
                                                [65535, 0, 0, 0]])


def test_depth_32fc1_is_the_metres_as_given() -> None:
    depth_m = np.array([[1.5, np.nan]], dtype=np.float32)
    out = depth_image(depth_m, np.array([[True, False]]), "32FC1")
    assert out.dtype == np.float32
    assert out[0, 0] == 1.5 and np.isnan(out[0, 1])


class ConstantBackend(StereoBackend):
    """A backend whose answer is known: a plane at ``disparity_px`` everywhere, sure
    and visible except a block it calls occluded."""

    name = "constant"

    def describe(self) -> dict[str, str]:
        return {"backend": self.name, "model": "constant", "device": "cpu",
                "precision": "fp32"}

    def __init__(self, disparity_px: float) -> None:
        self.disparity_px = disparity_px

    def infer(self, left: np.ndarray, right: np.ndarray, color_order: str = "rgb"
              ) -> StereoResult:
        height, width = left.shape[:2]
        visibility = np.ones((height, width), dtype=np.float32)
        visibility[:10, :20] = 0.0
        return StereoResult(np.full((height, width), self.disparity_px, dtype=np.float32),
                            visibility, np.full((height, width), 0.9, dtype=np.float32))


def test_dense_cloud_keeps_only_valid_points() -> None:
    left, right = textured_pair()
    camera = DEFAULT_CAMERA
    products = process_frame(ConstantBackend(4.0), *pair_messages(left, right, STAMP)
                             .as_tuple(), OutputSettings(dense_cloud=True))
    cloud = products.messages["points"]
    assert cloud.height == 1 and cloud.is_dense
    assert cloud.width == WIDTH * HEIGHT - 10 * 20
    fields = cloud_fields(cloud)
    np.testing.assert_allclose(fields["z"], camera.fx * camera.baseline_m / 4.0, rtol=1e-6)
    depth = image_array(products.messages["depth"])
    assert np.isnan(depth[:10, :20]).all() and np.isfinite(depth[10:, :]).all()


def test_only_the_enabled_outputs_are_built() -> None:
    left, right = textured_pair()
    pair = pair_messages(left, right, STAMP)
    products = process_frame(ConstantBackend(4.0), *pair.as_tuple(),
                             OutputSettings(outputs=frozenset({"disparity"})))
    assert set(products.messages) == {"disparity"}
    products = process_frame(ConstantBackend(4.0), *pair.as_tuple(),
                             OutputSettings(outputs=frozenset({"depth"})))
    assert set(products.messages) == {"depth", "depth_info"}
    with pytest.raises(ValueError):
        OutputSettings(outputs=frozenset({"depth", "colour"}))
    assert set(OUTPUTS) == {"disparity", "depth", "confidence", "occlusion", "points"}
