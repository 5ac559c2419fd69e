# SPDX-License-Identifier: Apache-2.0
"""End-to-end tests of ``stereo_node`` with the SGBM backend and approximate
synchronisation with a tolerance, run as its own process (see ``node_harness``).

The expected disparity comes from ``SgbmBackend`` run here on the same pair
(OpenCV's matcher is deterministic).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("stereo_msgs.msg")

from node_harness import (  # noqa: E402  (after the skips)
    DEFAULT_CAMERA,
    HEIGHT,
    IMAGE_TOPICS,
    STATUS_TOPIC,
    WIDTH,
    NodeProcess,
    StereoRig,
    camera_info_message,
    cloud_fields,
    connected_rig,
    image_array,
    image_message,
    pair_messages,
    stamp_ns,
    textured_pair,
)

NAMESPACE = "/sgbm"
TOLERANCE_S = 0.02
CONFIDENCE_THRESHOLD = 0.1
OCCLUSION_THRESHOLD = 0.5


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    process = NodeProcess({"backend": "sgbm", "approximate_sync": True,
                           "approximate_sync_tolerance_seconds": TOLERANCE_S,
                           "status_period_s": 0.0},
                          NAMESPACE, tmp_path_factory.mktemp("sgbm_node"))
    yield process
    process.stop()


@pytest.fixture(scope="module")
def rig(node: NodeProcess) -> Iterator[StereoRig]:
    with connected_rig(node, NAMESPACE) as rig:
        yield rig


def _pair() -> tuple[np.ndarray, np.ndarray]:
    # Wider shift than the network tests: SGBM needs texture and a real match.
    return textured_pair(shift_px=5, seed=11)


def test_sgbm_publishes_every_output(rig: StereoRig) -> None:
    from s2m2_ros.sgbm import SgbmBackend

    left, right = _pair()
    pair = pair_messages(left, right, rig.new_stamp())
    outputs = rig.round_trip(pair, timeout_s=60.0)

    for topic, msg in outputs.items():
        assert stamp_ns(msg) == pair.stamp, topic
        assert msg.header.frame_id == pair.left.header.frame_id, topic
    for topic in IMAGE_TOPICS:
        image = outputs[topic].image if topic == "disparity" else outputs[topic]
        assert (image.width, image.height) == (WIDTH, HEIGHT), topic
    assert (outputs["points2"].width, outputs["points2"].height) == (WIDTH, HEIGHT)

    result = SgbmBackend().infer(left, right, "rgb")
    d = result.disparity
    valid = ((d > 0) & np.isfinite(d) & (result.confidence >= CONFIDENCE_THRESHOLD)
             & (result.visibility >= OCCLUSION_THRESHOLD))
    assert valid.any() and (~valid).any()
    message = outputs["disparity"]
    values = image_array(message.image)
    np.testing.assert_allclose(values[valid], d[valid], rtol=1e-6)
    assert np.all(values[~valid] < message.min_disparity)
    assert message.delta_d == pytest.approx(1.0 / 16.0)  # OpenCV SGBM: 4 fractional bits
    assert message.t == pytest.approx(DEFAULT_CAMERA.baseline_m)

    depth = image_array(outputs["depth"])
    np.testing.assert_allclose(depth[valid],
                               DEFAULT_CAMERA.fx * DEFAULT_CAMERA.baseline_m / d[valid],
                               rtol=1e-5)
    assert np.all(np.isnan(depth[~valid]))
    np.testing.assert_allclose(cloud_fields(outputs["points2"])["z"][valid], depth[valid])
    np.testing.assert_allclose(image_array(outputs["confidence"]), result.confidence,
                               atol=1e-6)
    np.testing.assert_allclose(image_array(outputs["occlusion"]), 1.0 - result.visibility,
                               atol=1e-6)
    if rig.status_type is not None:
        assert outputs[STATUS_TOPIC].backend == "sgbm"


def test_pair_within_the_tolerance_is_published_with_the_left_stamp(rig: StereoRig) -> None:
    left, right = _pair()
    stamp = rig.new_stamp()
    pair = pair_messages(left, right, stamp)
    late = stamp + round(TOLERANCE_S / 4 * 1e9)
    pair.right = image_message(right, "rgb8", late, "right_camera_optical_frame")
    pair.right_info = camera_info_message(DEFAULT_CAMERA, "right", WIDTH, HEIGHT, late,
                                          "right_camera_optical_frame")
    outputs = rig.round_trip(pair, timeout_s=60.0)
    assert all(stamp_ns(msg) == stamp for msg in outputs.values())
    assert rig.outputs_with_stamp(late) == []


def test_pair_beyond_the_tolerance_is_never_published(rig: StereoRig,
                                                      node: NodeProcess) -> None:
    left, right = _pair()
    before = rig.round_trip(pair_messages(left, right, rig.new_stamp()), timeout_s=60.0)
    stamp = rig.new_stamp()
    skewed = pair_messages(left, right, stamp)
    late = stamp + round(TOLERANCE_S * 25 * 1e9)  # half a second off
    skewed.right = image_message(right, "rgb8", late, "right_camera_optical_frame")
    skewed.right_info = camera_info_message(DEFAULT_CAMERA, "right", WIDTH, HEIGHT, late,
                                            "right_camera_optical_frame")
    rig.publish(skewed)
    rig.new_stamp(after_s=1.0)  # the next pair is later than both halves

    good = pair_messages(left, right, rig.new_stamp())
    outputs = rig.round_trip(good, timeout_s=60.0)
    assert rig.outputs_with_stamp(stamp) == []
    assert rig.outputs_with_stamp(late) == []
    assert node.alive()
    if rig.status_type is not None:
        # The unmatched halves were discarded when the later pair went out.
        assert outputs[STATUS_TOPIC].frames_dropped > before[STATUS_TOPIC].frames_dropped
