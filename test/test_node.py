# SPDX-License-Identifier: Apache-2.0
"""End-to-end tests of ``stereo_node`` with the S²M² backend, run as its own process.

One node (a tiny random S2M2(32, 1) on the CPU, exact synchronisation) serves the
whole module; the test process plays camera and consumer over DDS (see
``node_harness``). Expected values are computed here: the disparity by a
``StereoEngine`` loaded from the same checkpoint, depth and points from the camera
calibration with the formulas of image_geometry.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("stereo_msgs.msg")

from node_harness import (  # noqa: E402  (after the skips)
    BAD_INPUTS,
    DEFAULT_CAMERA,
    HEIGHT,
    IMAGE_TOPICS,
    OUTPUT_TOPICS,
    STATUS_MISSING,
    STATUS_TOPIC,
    WIDTH,
    Camera,
    NodeProcess,
    PairMessages,
    StereoRig,
    camera_info_message,
    cloud_fields,
    connected_rig,
    grey,
    image_array,
    image_message,
    pair_messages,
    stamp_ns,
    textured_pair,
    write_tiny_checkpoint,
)

NAMESPACE = "/s2m2"
CONFIDENCE_THRESHOLD = 0.1  # the node's defaults, restated: the test's own validity rule
OCCLUSION_THRESHOLD = 0.5
# Node and test run the same network on the same CPU, but with different thread
# counts, so sums may be ordered differently; values are O(1).
NETWORK_ATOL = 1e-4
IDLE_LINE = "no subscribers on any output: not processing"
RESUME_LINE = "a subscriber appeared: processing resumes"


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("weights") / "tiny.pth")


@pytest.fixture(scope="module")
def engine(checkpoint: Path):
    from s2m2_ros.engine import StereoEngine

    return StereoEngine.from_model_name(weights=checkpoint, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def node(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    process = NodeProcess({"backend": "torch", "weights": str(checkpoint), "device": "cpu",
                           "status_period_s": 0.0},
                          NAMESPACE, tmp_path_factory.mktemp("s2m2_node"))
    yield process
    process.stop()


@pytest.fixture(scope="module")
def rig(node: NodeProcess) -> Iterator[StereoRig]:
    with connected_rig(node, NAMESPACE) as rig:
        # Warm-up: the first pair also proves the path works before the real checks.
        left, right = textured_pair()
        rig.round_trip(pair_messages(left, right, rig.new_stamp()), timeout_s=90.0)
        yield rig


@pytest.fixture
def alive(node: NodeProcess, rig: StereoRig) -> Iterator[StereoRig]:
    """The rig, with a check after the test that the node is still running."""
    yield rig
    assert node.alive(), f"the node exited:\n{node.output()}"


# -- expected values ----------------------------------------------------------------------


@dataclass
class Expected:
    """What the outputs must hold for one pair, from the engine run in the test."""

    disparity: np.ndarray
    visibility: np.ndarray
    confidence: np.ndarray
    valid: np.ndarray
    certain: np.ndarray  # pixels not within NETWORK_ATOL of a validity threshold
    depth: np.ndarray  # metres, NaN where invalid


def expected_outputs(engine, left: np.ndarray, right: np.ndarray, camera: Camera,
                     color_order: str = "rgb",
                     confidence_threshold: float = CONFIDENCE_THRESHOLD) -> Expected:
    result = engine.infer(left, right, color_order)
    disparity, visibility, confidence = result.disparity, result.visibility, result.confidence
    adjusted = disparity - camera.doffs
    valid = ((disparity > 0) & (adjusted > 0) & (confidence >= confidence_threshold)
             & (visibility >= OCCLUSION_THRESHOLD))
    certain = ((np.abs(disparity) > NETWORK_ATOL) & (np.abs(adjusted) > NETWORK_ATOL)
               & (np.abs(confidence - confidence_threshold) > NETWORK_ATOL)
               & (np.abs(visibility - OCCLUSION_THRESHOLD) > NETWORK_ATOL))
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.where(valid, camera.fx * camera.baseline_m / adjusted, np.nan)
    return Expected(disparity, visibility, confidence, valid, certain, depth)


def packed_rgb(left_rgb: np.ndarray) -> np.ndarray:
    rgb = left_rgb.astype(np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


# -- checks shared by tests ---------------------------------------------------------------


def check_headers(outputs: dict, pair: PairMessages) -> None:
    for topic, msg in outputs.items():
        assert stamp_ns(msg) == pair.stamp, topic
        assert msg.header.frame_id == pair.left.header.frame_id, topic
    assert outputs["disparity"].image.header.frame_id == pair.left.header.frame_id
    assert stamp_ns(outputs["disparity"].image) == pair.stamp


def check_sizes(outputs: dict, width: int, height: int) -> None:
    for topic in IMAGE_TOPICS:
        image = outputs[topic].image if topic == "disparity" else outputs[topic]
        assert (image.width, image.height) == (width, height), topic
        assert len(image.data) == image.step * image.height, topic
    assert (outputs["points2"].width, outputs["points2"].height) == (width, height)
    info = outputs["depth/camera_info"]
    assert (info.width, info.height) == (width, height)


def check_disparity(msg, expected: Expected, camera: Camera) -> None:
    width, height = msg.image.width, msg.image.height
    assert msg.image.encoding == "32FC1"
    assert msg.f == pytest.approx(camera.right_fx)  # right P[0], as stereo_image_proc
    assert msg.t == pytest.approx(camera.baseline_m)  # -P_right[3] / P_right[0]
    assert msg.delta_d > 0.0
    assert msg.min_disparity < msg.max_disparity
    window = msg.valid_window
    assert window.x_offset + window.width <= width and window.width > 0
    assert window.y_offset + window.height <= height and window.height > 0

    values = image_array(msg.image)
    sure_valid = expected.valid & expected.certain
    sure_invalid = ~expected.valid & expected.certain
    assert sure_valid.any() and sure_invalid.any(), "the test pair should give both"
    # Valid pixels hold the disparity pre-adjusted for the principal points, d - doffs.
    np.testing.assert_allclose(values[sure_valid],
                               expected.disparity[sure_valid] - camera.doffs,
                               atol=NETWORK_ATOL)
    assert np.all(values[sure_valid] >= msg.min_disparity)
    assert np.all(values[sure_valid] <= msg.max_disparity)
    # Invalid pixels are marked by a value below min_disparity.
    assert np.all(values[sure_invalid] < msg.min_disparity)


def check_depth(msg, expected: Expected) -> None:
    assert msg.encoding == "32FC1"
    depth = image_array(msg)
    sure_valid = expected.valid & expected.certain
    np.testing.assert_allclose(depth[sure_valid], expected.depth[sure_valid], rtol=1e-3)
    assert np.all(np.isnan(depth[~expected.valid & expected.certain]))


def check_points(msg, expected: Expected, camera: Camera, left_rgb: np.ndarray) -> None:
    assert not msg.is_dense  # organized, NaN for invalid pixels
    fields = cloud_fields(msg)
    assert {"x", "y", "z", "rgb"} <= set(fields)
    sure_valid = expected.valid & expected.certain
    rows, columns = np.mgrid[0:msg.height, 0:msg.width]
    z = expected.depth
    np.testing.assert_allclose(fields["z"][sure_valid], z[sure_valid], rtol=1e-3)
    np.testing.assert_allclose(fields["x"][sure_valid],
                               ((columns - camera.cx) * z / camera.fx)[sure_valid],
                               rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(fields["y"][sure_valid],
                               ((rows - camera.cy) * z / camera.fy)[sure_valid],
                               rtol=1e-3, atol=1e-5)
    sure_invalid = ~expected.valid & expected.certain
    for axis in "xyz":
        assert np.all(np.isnan(fields[axis][sure_invalid])), axis
    np.testing.assert_array_equal(fields["rgb"], packed_rgb(left_rgb))


def check_confidence_and_occlusion(outputs: dict, expected: Expected) -> None:
    confidence = image_array(outputs["confidence"])
    occlusion = image_array(outputs["occlusion"])
    for image in (outputs["confidence"], outputs["occlusion"]):
        assert image.encoding == "32FC1"
    assert np.all((confidence >= 0.0) & (confidence <= 1.0))
    assert np.all((occlusion >= 0.0) & (occlusion <= 1.0))
    np.testing.assert_allclose(confidence, expected.confidence, atol=NETWORK_ATOL)
    np.testing.assert_allclose(occlusion, 1.0 - expected.visibility, atol=NETWORK_ATOL)


def check_depth_info(msg, pair: PairMessages) -> None:
    info = pair.left_info
    assert list(msg.k) == pytest.approx(list(info.k))
    assert list(msg.p) == pytest.approx(list(info.p))
    assert list(msg.r) == pytest.approx(list(info.r))
    assert msg.distortion_model == info.distortion_model


# -- outputs ------------------------------------------------------------------------------


def test_every_output_matches_the_engine_and_the_calibration(alive: StereoRig, engine) -> None:
    rig = alive
    left, right = textured_pair(seed=1)
    pair = pair_messages(left, right, rig.new_stamp())
    outputs = rig.round_trip(pair)

    check_headers(outputs, pair)
    check_sizes(outputs, WIDTH, HEIGHT)
    expected = expected_outputs(engine, left, right, DEFAULT_CAMERA)
    check_disparity(outputs["disparity"], expected, DEFAULT_CAMERA)
    check_depth(outputs["depth"], expected)
    check_points(outputs["points2"], expected, DEFAULT_CAMERA, left)
    check_confidence_and_occlusion(outputs, expected)
    check_depth_info(outputs["depth/camera_info"], pair)

    if rig.status_type is not None:
        status = outputs[STATUS_TOPIC]
        assert (status.input_width, status.input_height) == (WIDTH, HEIGHT)
        assert (status.inference_width, status.inference_height) == (WIDTH, HEIGHT)
        assert status.backend == "torch"
        assert status.device == "cpu"
        assert status.baseline_m == pytest.approx(DEFAULT_CAMERA.baseline_m)
        assert status.focal_length_px == pytest.approx(DEFAULT_CAMERA.fx)
        uncertain = float((~expected.certain).mean())
        assert abs(status.valid_fraction - expected.valid.mean()) <= uncertain + 1e-6
        assert status.mean_confidence == pytest.approx(expected.confidence.mean(), abs=1e-4)
        # Every processed frame publishes one status, and the rig hears all of them.
        assert status.frames_processed == len(rig.messages(STATUS_TOPIC))


@pytest.mark.parametrize("encoding", ["bgr8", "mono8", "mono16", "rgba8"])
def test_encodings_reach_the_network_and_the_cloud_colours(alive: StereoRig, engine,
                                                           encoding: str) -> None:
    rig = alive
    left_rgb, right_rgb = textured_pair(seed=2)
    if encoding == "bgr8":
        left, right = left_rgb[..., ::-1], right_rgb[..., ::-1]
        reference = expected_outputs(engine, left_rgb, right_rgb, DEFAULT_CAMERA)
        colours = left_rgb
    elif encoding == "rgba8":
        alpha = np.full((HEIGHT, WIDTH, 1), 7, dtype=np.uint8)
        left, right = np.concatenate((left_rgb, alpha), 2), np.concatenate((right_rgb, alpha), 2)
        reference = expected_outputs(engine, left_rgb, right_rgb, DEFAULT_CAMERA)
        colours = left_rgb
    else:
        left_grey, right_grey = grey(left_rgb), grey(right_rgb)
        # 16-bit grey v*257 is the same brightness as 8-bit v.
        scale = 257 if encoding == "mono16" else 1
        dtype = np.uint16 if encoding == "mono16" else np.uint8
        left = left_grey.astype(dtype) * dtype(scale)
        right = right_grey.astype(dtype) * dtype(scale)
        reference = expected_outputs(engine, left_grey, right_grey, DEFAULT_CAMERA)
        colours = np.repeat(left_grey[..., np.newaxis], 3, axis=2)
    pair = pair_messages(left, right, rig.new_stamp(), encoding=encoding)
    outputs = rig.round_trip(pair)
    check_headers(outputs, pair)
    check_disparity(outputs["disparity"], reference, DEFAULT_CAMERA)
    check_points(outputs["points2"], reference, DEFAULT_CAMERA, colours)


def test_principal_point_offset_is_taken_out_of_the_disparity(alive: StereoRig,
                                                              engine) -> None:
    rig = alive
    # doffs = 1.5 px; the right focal length off by YAML-style rounding (5e-4).
    camera = Camera(cx=34.5, cx_right=33.0, baseline_m=0.12, fx_right=60.03)
    left, right = textured_pair(seed=3)
    pair = pair_messages(left, right, rig.new_stamp(), camera=camera)
    outputs = rig.round_trip(pair)
    expected = expected_outputs(engine, left, right, camera)
    check_disparity(outputs["disparity"], expected, camera)
    check_depth(outputs["depth"], expected)
    check_points(outputs["points2"], expected, camera, left)
    # The message's disparity and its f, T give the depth: Z = f * T / d_message
    # (up to the 5e-4 between the left fx the depth uses and the right one in f).
    message = outputs["disparity"]
    values = image_array(message.image)
    sure_valid = expected.valid & expected.certain
    np.testing.assert_allclose(message.f * message.t / values[sure_valid],
                               image_array(outputs["depth"])[sure_valid], rtol=2e-3)


def test_status_period_change_starts_the_rate_log(alive: StereoRig,
                                                  node: NodeProcess) -> None:
    """The node was started with status_period_s 0 (no rate log); setting it at run
    time must start one."""
    rig = alive
    rate_line = " Hz, latency median"
    assert rate_line not in node.output()
    result = rig.set_parameters({"status_period_s": 0.5})[0]
    assert result.successful, result.reason
    try:
        left, right = textured_pair(seed=12)
        for _attempt in range(5):
            rig.round_trip(pair_messages(left, right, rig.new_stamp()), topics=["disparity"])
            if node.wait_for_output(rate_line, 2.0):
                break
        assert rate_line in node.output(), node.output()[-2000:]
    finally:
        restored = rig.set_parameters({"status_period_s": 0.0})[0]
        assert restored.successful, restored.reason


# -- parameters at run time ---------------------------------------------------------------


def test_depth_in_millimetres_after_switching_to_16uc1(alive: StereoRig, engine) -> None:
    rig = alive
    results = rig.set_parameters({"depth_encoding": "16UC1"})
    assert results[0].successful, results[0].reason
    try:
        left, right = textured_pair(seed=4)
        pair = pair_messages(left, right, rig.new_stamp())
        depth = rig.round_trip(pair, topics=["depth"])["depth"]
        assert depth.encoding == "16UC1"
        assert (depth.width, depth.height, depth.step) == (WIDTH, HEIGHT, 2 * WIDTH)
        millimetres = image_array(depth)
        expected = expected_outputs(engine, left, right, DEFAULT_CAMERA)
        sure_valid = expected.valid & expected.certain
        np.testing.assert_allclose(millimetres[sure_valid],
                                   np.rint(expected.depth[sure_valid] * 1000.0), atol=1.0)
        assert np.all(millimetres[~expected.valid & expected.certain] == 0)
    finally:
        restored = rig.set_parameters({"depth_encoding": "32FC1"})
        assert restored[0].successful, restored[0].reason


def test_confidence_threshold_of_one_leaves_no_valid_pixel(alive: StereoRig, engine) -> None:
    rig = alive
    left, right = textured_pair(seed=5)
    reference = expected_outputs(engine, left, right, DEFAULT_CAMERA, confidence_threshold=1.0)
    assert not np.any(reference.confidence >= 1.0), "the tiny network is never that sure"
    results = rig.set_parameters({"confidence_threshold": 1.0})
    assert results[0].successful, results[0].reason
    try:
        pair = pair_messages(left, right, rig.new_stamp())
        outputs = rig.round_trip(pair)
        assert np.all(np.isnan(image_array(outputs["depth"])))
        disparity = outputs["disparity"]
        assert np.all(image_array(disparity.image) < disparity.min_disparity)
        assert np.all(np.isnan(cloud_fields(outputs["points2"])["z"]))
        if rig.status_type is not None:
            assert outputs[STATUS_TOPIC].valid_fraction == 0.0
            assert outputs[STATUS_TOPIC].low_confidence_fraction == 1.0
    finally:
        restored = rig.set_parameters({"confidence_threshold": CONFIDENCE_THRESHOLD})
        assert restored[0].successful, restored[0].reason
    # And back: the same pair gives valid depth again.
    outputs = rig.round_trip(pair_messages(left, right, rig.new_stamp()), topics=["depth"])
    assert np.any(np.isfinite(image_array(outputs["depth"])))


@pytest.mark.parametrize(("name", "value", "reason_word"), [
    ("model", "S", "model"),  # read-only: needs a restart
    ("device", "cuda", "device"),  # read-only
    ("confidence_threshold", 1.5, ""),  # out of its 0..1 range
    ("depth_encoding", "8UC1", "depth_encoding"),  # not one of the choices
])
def test_invalid_parameter_changes_are_rejected_with_a_reason(
        alive: StereoRig, name: str, value: object, reason_word: str) -> None:
    rig = alive
    before = rig.get_parameters([name])[0]
    result = rig.set_parameters({name: value})[0]
    assert not result.successful
    assert result.reason.strip()
    assert reason_word in result.reason
    assert rig.get_parameters([name])[0] == before


# -- QoS and load -------------------------------------------------------------------------


def test_inputs_are_subscribed_best_effort(alive: StereoRig) -> None:
    """A camera driver's sensor-data (best-effort) publisher must be able to match; the
    rig itself publishes that way in every test."""
    from rclpy.qos import ReliabilityPolicy

    rig = alive
    for topic in ("left/image_rect", "right/image_rect", "left/camera_info",
                  "right/camera_info"):
        infos = [info for info in rig.node.get_subscriptions_info_by_topic(rig.topic(topic))
                 if info.node_name == "s2m2_stereo"]
        assert len(infos) == 1, topic
        assert infos[0].qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT, topic


def test_newest_pair_wins_under_a_burst(alive: StereoRig) -> None:
    rig = alive
    left, right = textured_pair(seed=6)
    baseline = rig.round_trip(pair_messages(left, right, rig.new_stamp()))
    pairs = [pair_messages(left, right, rig.new_stamp(after_s=0.033)) for _ in range(10)]
    burst = [pair.stamp for pair in pairs]
    for pair in pairs:
        rig.publish(pair)
    rig.outputs_for(burst[-1], timeout_s=60.0)

    got = [stamp for stamp in rig.stamps("disparity") if stamp in burst]
    assert got == sorted(set(got)), "outputs must come in increasing stamp order"
    assert got[-1] == burst[-1], "the newest pair is always processed"
    assert len(got) < len(burst), "a pair that was replaced must not be processed late"
    for topic in rig.subscribed:
        assert [s for s in rig.stamps(topic) if s in burst] == got, topic
    if rig.status_type is not None:
        before = baseline[STATUS_TOPIC]
        after = rig.outputs_for(burst[-1], [STATUS_TOPIC])[STATUS_TOPIC]
        assert after.frames_processed == before.frames_processed + len(got)
        assert after.frames_dropped > before.frames_dropped


# -- bad inputs ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_rejected_and_the_node_carries_on(alive: StereoRig, node: NodeProcess,
                                                       case: str) -> None:
    rig = alive
    build, kind = BAD_INPUTS[case]
    dropped_before = rig.latest_diagnostics_dropped()
    bad = build(rig.new_stamp())
    # The worker is idle (the previous test's outputs all arrived), so the only pair
    # the node can drop now is this one: its drop counter rising means it was taken
    # and rejected. Best-effort inputs may lose a message: offer the set again.
    for _attempt in range(3):
        rig.publish(bad)
        dropped = rig.wait_diagnostics_dropped(dropped_before + 1, timeout_s=6.0)
        if dropped is not None and dropped > dropped_before:
            break
    assert dropped is not None and dropped > dropped_before, (
        f"the node never dropped the bad pair:\n{node.output()[-3000:]}")
    assert f"skipping frame ({kind}," in node.output()

    left, right = textured_pair(seed=8)
    good = pair_messages(left, right, rig.new_stamp())
    outputs = rig.round_trip(good)
    check_sizes(outputs, WIDTH, HEIGHT)
    assert rig.outputs_with_stamp(bad.stamp) == [], "nothing may be published for it"
    if rig.status_type is not None:
        assert outputs[STATUS_TOPIC].frames_dropped >= dropped


def test_unpaired_stamp_is_never_published(alive: StereoRig) -> None:
    """Exact synchronisation: a right image 10 ms off its left one has no partner."""
    rig = alive
    left, right = textured_pair(seed=9)
    before = rig.round_trip(pair_messages(left, right, rig.new_stamp()))
    stamp = rig.new_stamp()
    pair = pair_messages(left, right, stamp)
    offset = stamp + 10_000_000
    pair.right = image_message(right, "rgb8", offset, "right")
    pair.right_info = camera_info_message(DEFAULT_CAMERA, "right", WIDTH, HEIGHT, offset,
                                          "right")
    rig.publish(pair)
    rig.new_stamp(after_s=0.5)
    good = pair_messages(left, right, rig.new_stamp())
    outputs = rig.round_trip(good)
    assert rig.outputs_with_stamp(stamp) == []
    assert rig.outputs_with_stamp(offset) == []
    if rig.status_type is not None:
        # The incomplete set was discarded when the later one went out.
        assert outputs[STATUS_TOPIC].frames_dropped > before[STATUS_TOPIC].frames_dropped


# -- lazy processing (last: it changes the rig's subscriptions) ----------------------------


def test_nothing_is_processed_while_only_the_status_is_watched(alive: StereoRig,
                                                               node: NodeProcess) -> None:
    rig = alive
    if rig.status_type is None:
        pytest.skip(STATUS_MISSING)
    left, right = textured_pair(seed=10)
    idle_lines = node.output().count(IDLE_LINE)
    rig.unsubscribe(OUTPUT_TOPICS)
    try:
        # Offer pairs until the node says it has noticed that nobody listens.
        for _attempt in range(20):
            rig.publish(pair_messages(left, right, rig.new_stamp()))
            if node.wait_for_output_count(IDLE_LINE, idle_lines + 1, timeout_s=1.5):
                break
        assert node.output().count(IDLE_LINE) > idle_lines, node.output()[-3000:]

        unwatched = [pair_messages(left, right, rig.new_stamp()) for _ in range(3)]
        for pair in unwatched:
            rig.publish(pair)
            time.sleep(0.2)
        time.sleep(1.0)  # time to (wrongly) process them; a status would show it

        rig.subscribe("disparity")
        assert rig.wait_for(lambda: rig.matched_publishers("disparity") > 0, 10.0)
        # The node may see the new subscriber a moment after the rig does: offer new
        # pairs (fresh stamps) until one is processed.
        for _attempt in range(20):
            watched = pair_messages(left, right, rig.new_stamp())
            rig.publish(watched)
            if rig.wait_for(lambda stamp=watched.stamp: stamp in rig.stamps("disparity"),
                            3.0):
                break
        outputs = rig.outputs_for(watched.stamp, ["disparity", STATUS_TOPIC])
        for pair in unwatched:
            assert rig.outputs_with_stamp(pair.stamp) == []
        statuses = rig.messages(STATUS_TOPIC)
        assert outputs[STATUS_TOPIC].frames_processed == len(statuses)
        assert RESUME_LINE in node.output()
    finally:
        for topic in OUTPUT_TOPICS:
            rig.subscribe(topic)
