# SPDX-License-Identifier: Apache-2.0
"""``stereo_node``'s own account of itself, over DDS: the per-frame ``StereoStatus`` on
``~/status`` and the ``diagnostic_msgs/DiagnosticArray`` on /diagnostics (remapped into
the node's namespace by ``node_harness``), while frames flow and when they cannot pair
or stop.

The SGBM backend keeps the node fast and weight-free. Three nodes are started together
(their imports overlap): one that is fed real frames, one whose left and right stamps
never match, one that never gets the right camera_info. Expected values come from the
test's own inputs (camera calibration, image size, stamps) and from the output images
the node published for the same stamp.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("stereo_msgs.msg")
pytest.importorskip("diagnostic_msgs.msg")

from node_harness import (  # noqa: E402  (after the skips)
    DEFAULT_CAMERA,
    HEIGHT,
    INPUT_TOPICS,
    NODE_NAME,
    STATUS_MISSING,
    STATUS_TOPIC,
    WIDTH,
    NodeProcess,
    PairMessages,
    StereoRig,
    camera_info_message,
    image_array,
    image_message,
    pair_messages,
    stamp_ns,
    textured_pair,
)

FLOW_NAMESPACE = "/diag_flow"
STAMPS_NAMESPACE = "/diag_stamps"
NO_INFO_NAMESPACE = "/diag_no_info"
INPUT_TIMEOUT_S = 1.0
# The node's defaults, restated: the test's own reading of the status fractions.
CONFIDENCE_THRESHOLD = 0.1
OCCLUSION_THRESHOLD = 0.5
RIGHT_OFFSET_S = 0.3  # the skewed right camera's stamp lead in the sync-failure test
PUBLISH_PERIOD_S = 0.1  # 10 Hz, as a slow camera
DIAGNOSIS_TIMEOUT_S = 25.0  # a hang guard: verdicts come at 1 Hz after 1-3 s of trouble
FRAMES = 4

IMAGE_OUTPUTS = ("disparity", "depth", "confidence", "occlusion")
PRECISIONS = ("fp32", "fp16", "bf16")  # StereoStatus.msg's documented values


# -- diagnostics as the test sees them ----------------------------------------------------


def _level(value: Any) -> int:
    """A DiagnosticStatus level (``bytes`` of one in rclpy) as an int."""
    return value[0] if isinstance(value, (bytes, bytearray)) else int(value)


def _levels() -> tuple[int, int, int, int]:
    from diagnostic_msgs.msg import DiagnosticStatus

    return tuple(_level(level) for level in (DiagnosticStatus.OK, DiagnosticStatus.WARN,
                                             DiagnosticStatus.ERROR, DiagnosticStatus.STALE))


OK, WARN, ERROR, STALE = _levels()


class Verdicts:
    """One DiagnosticArray: its statuses by short name ("inputs", not "s2m2_stereo: inputs"),
    and when the test process received it."""

    def __init__(self, array: Any, received_s: float) -> None:
        self.received_s = received_s
        self.names = [status.name for status in array.status]
        prefix = f"{NODE_NAME}: "
        self.statuses = {status.name.removeprefix(prefix): status for status in array.status}

    def level(self, name: str) -> int:
        return _level(self.statuses[name].level)

    def message(self, name: str) -> str:
        return self.statuses[name].message

    def values(self, name: str) -> dict[str, str]:
        return {pair.key: pair.value for pair in self.statuses[name].values}

    def describe(self) -> str:
        return "; ".join(f"{name} [{self.level(name)}] {self.message(name)!r}"
                         for name in self.statuses)


class DiagnosticsLog:
    """Every DiagnosticArray on the rig's ``<namespace>/diagnostics``."""

    def __init__(self, rig: StereoRig) -> None:
        import threading

        from diagnostic_msgs.msg import DiagnosticArray

        self.lock = threading.Lock()
        self.arrays: list[Verdicts] = []
        self._subscription = rig.node.create_subscription(
            DiagnosticArray, rig.topic("diagnostics"), self._record, 10)

    def _record(self, array: Any) -> None:
        with self.lock:
            self.arrays.append(Verdicts(array, time.monotonic()))

    def find(self, predicate: Callable[[Verdicts], bool], after_s: float = 0.0) -> Verdicts | None:
        """The newest array received after ``after_s`` (monotonic) that satisfies
        ``predicate``, or None."""
        with self.lock:
            for verdicts in reversed(self.arrays):
                if verdicts.received_s >= after_s and predicate(verdicts):
                    return verdicts
        return None

    def latest(self) -> str:
        with self.lock:
            return self.arrays[-1].describe() if self.arrays else "no diagnostics at all"


def _has(verdicts: Verdicts, name: str, *levels: int) -> bool:
    return name in verdicts.statuses and verdicts.level(name) in levels


def stream_until(rig: StereoRig, make_pair: Callable[[], Any],
                 found: Callable[[], Verdicts | None], timeout_s: float,
                 publish: Callable[[Any], None] | None = None) -> Verdicts | None:
    """Publish a new pair every PUBLISH_PERIOD_S, as a camera would, until ``found()``
    returns a verdict or ``timeout_s`` passes."""
    send = publish or rig.publish
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        send(make_pair())
        verdicts = found()
        if verdicts is not None:
            return verdicts
        time.sleep(PUBLISH_PERIOD_S)
    return found()


def _textured(seed: int) -> tuple[np.ndarray, np.ndarray]:
    # SGBM needs texture and a real match: a 5 px shift gives a mix of valid and
    # invalid pixels (the left band the right camera does not see).
    return textured_pair(shift_px=5, seed=seed)


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, NodeProcess]]:
    base = {"backend": "sgbm", "status_period_s": 0.0}
    # A short input timeout where inputs are stopped on purpose; the default (3 s) where
    # every input must stay "live" through a sync failure.
    parameters = {FLOW_NAMESPACE: {**base, "input_timeout_s": INPUT_TIMEOUT_S},
                  STAMPS_NAMESPACE: base, NO_INFO_NAMESPACE: base}
    work_dir: Path = tmp_path_factory.mktemp("diagnostics_nodes")
    processes = {namespace: NodeProcess(dict(values), namespace, work_dir)
                 for namespace, values in parameters.items()}
    yield processes
    for process in processes.values():
        process.stop()


@pytest.fixture(scope="module")
def flow(nodes: dict[str, NodeProcess]) -> Iterator[tuple[StereoRig, DiagnosticsLog]]:
    """The rig and diagnostics log of the node that gets real frames."""
    rig = StereoRig(FLOW_NAMESPACE, output_topics=IMAGE_OUTPUTS)
    try:
        log = DiagnosticsLog(rig)
        rig.wait_connected(nodes[FLOW_NAMESPACE])
        yield rig, log
    finally:
        rig.close()
    node = nodes[FLOW_NAMESPACE]
    assert node.alive(), f"the node exited:\n{node.output()}"


@pytest.fixture
def quiet_rig(request: pytest.FixtureRequest,
              nodes: dict[str, NodeProcess]) -> Iterator[tuple[StereoRig, DiagnosticsLog]]:
    """A rig for the node named by the test's parameter (a namespace), with the
    disparity output subscribed so that a pair, if one formed, would be processed."""
    namespace = request.param
    rig = StereoRig(namespace, output_topics=("disparity",))
    try:
        log = DiagnosticsLog(rig)
        rig.wait_connected(nodes[namespace])
        yield rig, log
    finally:
        rig.close()
    assert nodes[namespace].alive(), f"the node exited:\n{nodes[namespace].output()}"


# -- 1. the status message after real frames ------------------------------------------------


def test_status_describes_each_frame(flow: tuple[StereoRig, DiagnosticsLog]) -> None:
    rig, _log = flow
    if rig.status_type is None:
        pytest.skip(STATUS_MISSING)
    earlier = rig.messages(STATUS_TOPIC)
    processed_before = earlier[-1].frames_processed if earlier else 0
    outputs_before = len(rig.messages("disparity"))

    statuses = []
    for frame in range(FRAMES):
        left, right = _textured(seed=20 + frame)  # a different scene each frame
        pair = pair_messages(left, right, rig.new_stamp())
        outputs = rig.round_trip(pair, topics=(*IMAGE_OUTPUTS, STATUS_TOPIC), timeout_s=60.0)
        status = outputs[STATUS_TOPIC]
        statuses.append(status)

        assert stamp_ns(status) == pair.stamp
        assert status.header.frame_id == pair.left.header.frame_id
        assert status.backend == "sgbm"
        assert "sgbm" in status.model.lower()
        assert status.device == "cpu"  # SGBM is OpenCV on the CPU
        assert status.precision in PRECISIONS
        assert (status.input_width, status.input_height) == (WIDTH, HEIGHT)
        # input_scale is 1: the backend saw the images at their own size.
        assert (status.inference_width, status.inference_height) == (WIDTH, HEIGHT)

        stages = (status.receive_ms, status.network_ms, status.postprocess_ms,
                  status.publish_ms)
        assert all(value >= 0.0 for value in (*stages, status.end_to_end_ms)), stages
        assert status.end_to_end_ms >= status.network_ms
        # The stages are disjoint parts of the pair's time in the node.
        assert status.end_to_end_ms >= sum(stages) - 1e-2, (status.end_to_end_ms, stages)

        fractions = (status.valid_fraction, status.occluded_fraction,
                     status.low_confidence_fraction, status.mean_confidence)
        assert all(0.0 <= value <= 1.0 for value in fractions), fractions
        depth = image_array(outputs["depth"])
        assert outputs["depth"].encoding == "32FC1"  # NaN where invalid (REP 118)
        finite = np.isfinite(depth)
        assert finite.any() and (~finite).any(), "the scene should be partly matched"
        assert status.valid_fraction == pytest.approx(finite.mean(), abs=1e-6)
        confidence = image_array(outputs["confidence"])
        assert status.mean_confidence == pytest.approx(confidence.mean(dtype=np.float64),
                                                       abs=1e-4)
        assert status.low_confidence_fraction == pytest.approx(
            (confidence < CONFIDENCE_THRESHOLD).mean(), abs=1e-6)
        occlusion = image_array(outputs["occlusion"])  # 1 - visibility
        assert status.occluded_fraction == pytest.approx(
            (occlusion > 1.0 - OCCLUSION_THRESHOLD).mean(), abs=1e-6)

        assert status.baseline_m == pytest.approx(DEFAULT_CAMERA.baseline_m, rel=1e-6)
        assert status.focal_length_px == pytest.approx(DEFAULT_CAMERA.fx, rel=1e-6)

    counts = [status.frames_processed for status in statuses]
    assert counts == sorted(set(counts)) and counts[0] > processed_before, counts

    # Every processed frame publishes one disparity image, and the rig hears all of them
    # (a pair offered twice by round_trip may be processed twice: counted on both sides).
    def outputs_match_count() -> bool:
        latest = rig.received[STATUS_TOPIC][-1].frames_processed
        return latest - processed_before == len(rig.received["disparity"]) - outputs_before

    rig.wait_for(outputs_match_count, timeout_s=10.0)
    latest = rig.messages(STATUS_TOPIC)[-1]
    assert latest.frames_processed >= counts[-1]
    assert (latest.frames_processed - processed_before
            == len(rig.messages("disparity")) - outputs_before)


# -- 2. diagnostics while frames flow -------------------------------------------------------


def test_diagnostics_ok_while_frames_flow(flow: tuple[StereoRig, DiagnosticsLog]) -> None:
    rig, log = flow
    left, right = _textured(seed=30)
    first = pair_messages(left, right, rig.new_stamp())
    rig.round_trip(first, topics=("disparity",), timeout_s=60.0)
    flowing_since = time.monotonic()
    published: list[int] = []

    def next_pair() -> PairMessages:
        pair = pair_messages(left, right, rig.new_stamp(after_s=PUBLISH_PERIOD_S))
        published.append(pair.stamp)
        return pair

    def counted(verdicts: Verdicts) -> bool:
        # One publisher per input: the rig's. The node counts publishers once a second
        # ("unknown" before the first count) from its graph cache, which may see the
        # rig's publishers a moment after their messages: wait for the count to settle.
        values = verdicts.values("inputs")
        return all(values.get(f"{topic} publishers") == "1" for topic in INPUT_TOPICS)

    def healthy() -> Verdicts | None:
        return log.find(lambda v: _has(v, "inputs", OK) and _has(v, "processing", OK)
                        and counted(v), after_s=flowing_since)

    verdicts = stream_until(rig, next_pair, healthy, DIAGNOSIS_TIMEOUT_S)
    assert verdicts is not None, f"never OK while frames flowed; last: {log.latest()}"

    for name in ("inputs", "synchronization", "processing", "device"):
        assert f"{NODE_NAME}: {name}" in verdicts.names, verdicts.names
        assert verdicts.statuses[name].hardware_id  # a device or the node's name

    inputs = verdicts.values("inputs")
    for topic in INPUT_TOPICS:
        assert float(inputs[f"{topic} rate [Hz]"]) > 0.0, (topic, inputs)
        assert 0.0 <= float(inputs[f"{topic} age [s]"]) <= INPUT_TIMEOUT_S, (topic, inputs)
    last_stamp_s = float(inputs["left/image_rect last stamp [s]"])
    assert any(abs(last_stamp_s - stamp / 1e9) < 1e-6 for stamp in [first.stamp, *published])

    processing = verdicts.values("processing")
    assert float(processing["output rate [Hz]"]) > 0.0, processing
    mean_s, max_s = float(processing["mean latency [s]"]), float(processing["max latency [s]"])
    assert 0.0 <= mean_s <= max_s, processing
    assert mean_s <= 1.0  # OK means within max_latency_s, whose default is 1 s
    assert processing["max latency bound [s]"] == "1"
    assert int(processing["frames processed"]) >= 1

    if rig.status_type is not None:
        # The latency diagnostics report is that of the frame counted last, as the status
        # of that frame reports it.
        frames = int(processing["frames processed"])

        def status_of_frame() -> Any:
            return next((status for status in rig.received.get(STATUS_TOPIC, [])
                         if status.frames_processed == frames), None)

        assert rig.wait_for(lambda: status_of_frame() is not None, timeout_s=10.0), frames
        status = next(status for status in rig.messages(STATUS_TOPIC)
                      if status.frames_processed == frames)
        assert abs(float(processing["last latency [s]"]) - status.end_to_end_ms / 1e3) \
            <= 0.0005 + 1e-6, (processing, status.end_to_end_ms)


# -- 3. sync failure: stamps that never match ------------------------------------------------


@pytest.mark.parametrize("quiet_rig", [STAMPS_NAMESPACE], indirect=True)
def test_mismatched_stamps_are_diagnosed(quiet_rig: tuple[StereoRig, DiagnosticsLog]) -> None:
    rig, log = quiet_rig
    left, right = _textured(seed=40)
    offset_ns = round(RIGHT_OFFSET_S * 1e9)

    def skewed_pair() -> PairMessages:
        # Stamps 1 s apart, the right camera 0.3 s ahead: no right stamp ever equals a
        # left one, and the nearest is always 300 ms away.
        stamp = rig.new_stamp(after_s=1.0)
        pair = pair_messages(left, right, stamp)
        late = stamp + offset_ns
        pair.right = image_message(right, "rgb8", late, "right_camera_optical_frame")
        pair.right_info = camera_info_message(DEFAULT_CAMERA, "right", WIDTH, HEIGHT, late,
                                              "right_camera_optical_frame")
        return pair

    started = time.monotonic()

    def diagnosed() -> Verdicts | None:
        return log.find(lambda v: _has(v, "synchronization", WARN, ERROR), after_s=started)

    verdicts = stream_until(rig, skewed_pair, diagnosed, DIAGNOSIS_TIMEOUT_S)
    assert verdicts is not None, f"no sync warning; last: {log.latest()}"
    message = verdicts.message("synchronization")
    assert "stamps do not match" in message, message
    offset_text = f"{RIGHT_OFFSET_S * 1e3:.1f} ms"
    assert f"right/image_rect is {offset_text} from left/image_rect" in message, message
    assert f"right/camera_info is {offset_text} from left/image_rect" in message, message
    assert "left/camera_info" not in message, message  # its stamps equal the left image's
    assert "exact" in message  # the policy that needs identical stamps
    assert verdicts.values("synchronization")["policy"] == "exact"
    # Every input arrives: the inputs themselves are fine, only the pairing fails.
    assert verdicts.level("inputs") == OK, verdicts.describe()
    assert rig.messages("disparity") == []


# -- 4. sync failure: the right camera_info never comes -----------------------------------


@pytest.mark.parametrize("quiet_rig", [NO_INFO_NAMESPACE], indirect=True)
def test_missing_right_camera_info_is_diagnosed(
        quiet_rig: tuple[StereoRig, DiagnosticsLog]) -> None:
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image

    rig, log = quiet_rig
    left, right = _textured(seed=50)
    # Left image, right image and left camera_info only, through publishers of our own:
    # the rig's right camera_info publisher stays silent.
    publishers = [rig.node.create_publisher(msg_type, rig.topic(topic), qos_profile_sensor_data)
                  for msg_type, topic in zip((Image, Image, CameraInfo), INPUT_TOPICS[:3],
                                             strict=True)]

    def three_of_four(pair: PairMessages) -> None:
        for publisher, message in zip(publishers, (pair.left, pair.right, pair.left_info),
                                      strict=True):
            publisher.publish(message)

    def pair_without_right_info() -> PairMessages:
        return pair_messages(left, right, rig.new_stamp())

    started = time.monotonic()

    def diagnosed() -> Verdicts | None:
        return log.find(lambda v: _has(v, "synchronization", WARN, ERROR), after_s=started)

    verdicts = stream_until(rig, pair_without_right_info, diagnosed, DIAGNOSIS_TIMEOUT_S,
                            publish=three_of_four)
    assert verdicts is not None, f"no sync warning; last: {log.latest()}"
    message = verdicts.message("synchronization")
    assert "camera_info missing" in message, message
    assert "right/camera_info" in message, message
    assert "left/camera_info" not in message, message
    assert "stamps do not match" not in message, message  # all stamps sent are equal
    assert rig.messages("disparity") == []

    # The inputs entry names the silent topic too, and only it, once the node has run
    # longer than input_timeout_s (before that it is "waiting" for it).
    def inputs_failed() -> Verdicts | None:
        return log.find(lambda v: _has(v, "inputs", ERROR), after_s=started)

    verdicts = stream_until(rig, pair_without_right_info, inputs_failed, DIAGNOSIS_TIMEOUT_S,
                            publish=three_of_four)
    assert verdicts is not None, f"no inputs error; last: {log.latest()}"
    inputs = verdicts.message("inputs")
    assert "right/camera_info" in inputs, inputs
    assert not any(topic in inputs for topic in INPUT_TOPICS[:3]), inputs
    assert verdicts.values("inputs")["right/camera_info age [s]"] == "never"


# -- 5. inputs stop -----------------------------------------------------------------------


def test_stopped_inputs_are_reported(flow: tuple[StereoRig, DiagnosticsLog]) -> None:
    rig, log = flow
    for frame in range(2):
        left, right = _textured(seed=60 + frame)
        rig.round_trip(pair_messages(left, right, rig.new_stamp()), topics=("disparity",),
                       timeout_s=60.0)
    stopped_at = time.monotonic()

    def stopped(verdicts: Verdicts) -> bool:
        return _has(verdicts, "inputs", ERROR, STALE) and "stopped" in verdicts.message(
            "inputs")

    def reported() -> Verdicts | None:
        return log.find(stopped, after_s=stopped_at + INPUT_TIMEOUT_S)

    assert rig.wait_for(lambda: reported() is not None, timeout_s=DIAGNOSIS_TIMEOUT_S), (
        f"stopped inputs not reported; last: {log.latest()}")
    verdicts = reported()
    message = verdicts.message("inputs")
    for topic in ("left/image_rect", "right/image_rect"):
        assert f"{topic} stopped" in message, message
        assert float(verdicts.values("inputs")[f"{topic} age [s]"]) > INPUT_TIMEOUT_S
    # Without images there is nothing to pair: the synchronizer is not blamed.
    assert verdicts.level("synchronization") == STALE, verdicts.describe()

    # Every verdict since the stop agrees with the age it reports beside it (both are
    # judged at one instant): silent past input_timeout_s is an error, within it not.
    with log.lock:
        since_stop = [v for v in log.arrays if v.received_s >= stopped_at]
    assert since_stop
    for verdicts in since_stop:
        age_s = float(verdicts.values("inputs")["left/image_rect age [s]"])
        says_stopped = "left/image_rect stopped" in verdicts.message("inputs")
        if age_s >= INPUT_TIMEOUT_S + 0.01:  # .2f rounding
            assert says_stopped and verdicts.level("inputs") == ERROR, verdicts.describe()
        elif age_s <= INPUT_TIMEOUT_S - 0.01:
            assert not says_stopped, verdicts.describe()
