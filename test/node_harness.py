# SPDX-License-Identifier: Apache-2.0
"""Run the stereo node as its own process and talk to it over DDS, for the node tests.

:class:`NodeProcess` starts ``python -m s2m2_ros.node`` with ``--ros-args`` and keeps
its console output in a file. :class:`StereoRig` is the camera and the consumer: an
rclpy node in the test process (its own rclpy context, spun on a background thread)
that publishes rectified pairs with camera_info as a camera driver would (sensor-data
QoS, best effort) and records every output, the status and the diagnostics.

Messages are built and read here without ``s2m2_ros.conversions``, so the tests do
not check the node's conversions against themselves.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
NODE_NAME = "s2m2_stereo"
INPUT_TOPICS = ("left/image_rect", "right/image_rect", "left/camera_info", "right/camera_info")
IMAGE_TOPICS = ("disparity", "depth", "confidence", "occlusion")
OUTPUT_TOPICS = ("disparity", "depth", "depth/camera_info", "confidence", "occlusion",
                 "points2")
STATUS_TOPIC = f"{NODE_NAME}/status"
STARTED_LINE = "started: backend"
NANOSECONDS_PER_SECOND = 1_000_000_000

# 50 x 70: neither side a multiple of 32, so padding and cropping are exercised.
HEIGHT, WIDTH = 50, 70


def status_message_type() -> type | None:
    """The generated ``s2m2_ros/StereoStatus`` class, or None where it was not built."""
    try:
        from s2m2_ros.msg import StereoStatus
    except ImportError:
        return None
    return StereoStatus


STATUS_MISSING = ("s2m2_ros.msg.StereoStatus is not importable (run "
                  "scripts/build_interfaces.sh): the node publishes no status")


def write_tiny_checkpoint(path: Path, seed: int = 0, channels: int = 32) -> Path:
    """A randomly initialised S2M2(channels, 1) in the published ``{"state_dict": ...}``
    layout (32 channels: the tiny network)."""
    import torch

    from s2m2_ros.model import S2M2

    torch.manual_seed(seed)
    model = S2M2(channels, 1)
    torch.save({"state_dict": model.state_dict()}, path)
    return path


# -- test data ----------------------------------------------------------------------------


def textured_pair(height: int = HEIGHT, width: int = WIDTH, shift_px: int = 3,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A colour left image of blurred noise and the right image seeing it ``shift_px``
    further left: a fronto-parallel plane at disparity ``shift_px``."""
    import cv2

    generator = np.random.default_rng(seed)
    noise = generator.integers(0, 256, size=(height, width + shift_px, 3), dtype=np.uint8)
    texture = cv2.GaussianBlur(noise, (3, 3), 0)
    left = np.ascontiguousarray(texture[:, :width])
    right = np.ascontiguousarray(texture[:, shift_px:])  # right(x) = left(x + shift)
    return left, right


@dataclass(frozen=True)
class Camera:
    """A rectified pair's calibration; ``cx_right`` differs from ``cx`` for a rig
    rectified with distinct principal points."""

    fx: float = 60.0
    fy: float = 61.0
    cx: float = 34.5
    cy: float = 24.5
    cx_right: float = 34.5
    baseline_m: float = 0.1
    # The right P's focal length; rectification gives both sides one, up to rounding.
    fx_right: float | None = None

    @property
    def doffs(self) -> float:
        return self.cx - self.cx_right

    @property
    def right_fx(self) -> float:
        return self.fx if self.fx_right is None else self.fx_right


DEFAULT_CAMERA = Camera()


def stamp_message(nanoseconds: int) -> Any:
    from builtin_interfaces.msg import Time

    return Time(sec=nanoseconds // NANOSECONDS_PER_SECOND,
                nanosec=nanoseconds % NANOSECONDS_PER_SECOND)


def stamp_ns(msg: Any) -> int:
    stamp = msg.header.stamp
    return int(stamp.sec) * NANOSECONDS_PER_SECOND + int(stamp.nanosec)


_ENCODING_LAYOUT = {"rgb8": ("u1", 3), "bgr8": ("u1", 3), "mono8": ("u1", 1),
                    "mono16": ("<u2", 1), "rgba8": ("u1", 4), "16UC1": ("<u2", 1),
                    "32FC1": ("<f4", 1)}


def image_message(pixels: np.ndarray, encoding: str, stamp: int, frame_id: str) -> Any:
    """A sensor_msgs/Image holding ``pixels`` little-endian, rows unpadded."""
    from sensor_msgs.msg import Image

    pixels = np.ascontiguousarray(pixels)
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    msg = Image()
    msg.header.stamp = stamp_message(stamp)
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(pixels.shape[0]), int(pixels.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = msg.width * channels * pixels.dtype.itemsize
    msg.data = pixels.astype(pixels.dtype.newbyteorder("<"), copy=False).tobytes()
    return msg


def camera_info_message(camera: Camera, side: str, width: int, height: int, stamp: int,
                        frame_id: str) -> Any:
    """The rectified CameraInfo of one side: P carries the baseline on the right."""
    from sensor_msgs.msg import CameraInfo

    cx = camera.cx if side == "left" else camera.cx_right
    fx = camera.fx if side == "left" else camera.right_fx
    tx = 0.0 if side == "left" else -fx * camera.baseline_m
    msg = CameraInfo()
    msg.header.stamp = stamp_message(stamp)
    msg.header.frame_id = frame_id
    msg.width, msg.height = int(width), int(height)
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    msg.k = [fx, 0.0, cx, 0.0, camera.fy, camera.cy, 0.0, 0.0, 1.0]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [fx, 0.0, cx, tx, 0.0, camera.fy, camera.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


@dataclass
class PairMessages:
    """The four messages of one stereo frame, in the node's input order."""

    left: Any
    right: Any
    left_info: Any
    right_info: Any

    @property
    def stamp(self) -> int:
        return stamp_ns(self.left)

    def as_tuple(self) -> tuple[Any, Any, Any, Any]:
        return self.left, self.right, self.left_info, self.right_info


def pair_messages(left: np.ndarray, right: np.ndarray, stamp: int, *,
                  encoding: str = "rgb8", camera: Camera = DEFAULT_CAMERA,
                  frame_id: str = "left_camera_optical_frame") -> PairMessages:
    """Messages for a pair with one stamp; the right side has its own frame_id."""
    height, width = left.shape[:2]
    return PairMessages(
        image_message(left, encoding, stamp, frame_id),
        image_message(right, encoding, stamp, "right_camera_optical_frame"),
        camera_info_message(camera, "left", width, height, stamp, frame_id),
        camera_info_message(camera, "right", width, height, stamp,
                            "right_camera_optical_frame"))


def grey(rgb: np.ndarray) -> np.ndarray:
    """RGB to 8-bit grey (OpenCV's weights)."""
    import cv2

    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


# -- bad inputs: each with the InputError kind the pipeline must raise -----------------


def _good() -> tuple[np.ndarray, np.ndarray]:
    return textured_pair(seed=7)


def _resized_right(stamp: int) -> PairMessages:
    left, right = _good()
    return pair_messages(left, right[:, :60].copy(), stamp)


def _mixed_encodings(stamp: int) -> PairMessages:
    left, right = _good()
    pair = pair_messages(left, right, stamp)
    pair.right = image_message(right[..., ::-1], "bgr8", stamp, "right")
    return pair


def _unsupported_encoding(stamp: int) -> PairMessages:
    pair = pair_messages(*_good(), stamp)
    for image in (pair.left, pair.right):  # YUV 4:2:2, two bytes a pixel
        image.encoding = "yuv422"
        image.step = 2 * WIDTH
        image.data = bytes(2 * WIDTH * HEIGHT)
    return pair


def _float_images(stamp: int) -> PairMessages:
    left, right = _good()
    return pair_messages(grey(left).astype(np.float32), grey(right).astype(np.float32),
                         stamp, encoding="32FC1")


def _truncated(stamp: int) -> PairMessages:
    pair = pair_messages(*_good(), stamp)
    pair.right.data = bytes(pair.right.data)[: len(pair.right.data) // 2]
    return pair


def _camera_info_of_another_size(stamp: int) -> PairMessages:
    pair = pair_messages(*_good(), stamp)
    pair.left_info = camera_info_message(DEFAULT_CAMERA, "left", 64, 48, stamp, "left")
    return pair


def _zero_baseline(stamp: int) -> PairMessages:
    pair = pair_messages(*_good(), stamp)
    p = list(pair.right_info.p)
    p[3] = 0.0
    pair.right_info.p = p
    return pair


def _non_finite_intrinsics(stamp: int) -> PairMessages:
    pair = pair_messages(*_good(), stamp)
    p, k = list(pair.left_info.p), list(pair.left_info.k)
    p[0] = k[0] = math.nan
    p[2] = k[2] = math.inf
    pair.left_info.p, pair.left_info.k = p, k
    return pair


def _focal_lengths_disagree(stamp: int) -> PairMessages:
    camera = DEFAULT_CAMERA
    pair = pair_messages(*_good(), stamp)
    fx_right = camera.fx * 1.5
    p = list(pair.right_info.p)
    p[0], p[3] = fx_right, -fx_right * camera.baseline_m
    pair.right_info.p = p
    return pair


def _one_pixel(stamp: int) -> PairMessages:
    pixel = np.full((1, 1, 3), 128, dtype=np.uint8)
    return pair_messages(pixel, pixel.copy(), stamp)


def _huge_claimed_size(stamp: int) -> PairMessages:
    """100 000 x 100 000 pixels claimed, 300 bytes sent: rejected on the claim alone."""
    pixels = np.zeros((10, 10, 3), dtype=np.uint8)
    pair = pair_messages(pixels, pixels.copy(), stamp)
    for image in (pair.left, pair.right):
        image.width = image.height = 100_000
        image.step = 3 * 100_000
    for info in (pair.left_info, pair.right_info):
        info.width = info.height = 100_000
    return pair


BAD_INPUTS: dict[str, tuple[Callable[[int], PairMessages], str]] = {
    "left and right of different sizes": (_resized_right, "size_mismatch"),
    "left and right of different encodings": (_mixed_encodings, "encoding_mismatch"),
    "unsupported encoding": (_unsupported_encoding, "encoding"),
    "float images": (_float_images, "encoding"),
    "truncated data": (_truncated, "image_data"),
    "camera_info for another size": (_camera_info_of_another_size, "camera_info_size"),
    "zero baseline": (_zero_baseline, "camera_model"),
    "non-finite intrinsics": (_non_finite_intrinsics, "camera_model"),
    "focal lengths disagree": (_focal_lengths_disagree, "camera_model"),
    "huge claimed size": (_huge_claimed_size, "image_size"),
    "1x1 image": (_one_pixel, "image_size"),
}


# -- reading outputs ----------------------------------------------------------------------


def image_array(msg: Any) -> np.ndarray:
    """The pixels of an output Image (unpadded rows of the given step)."""
    base, channels = _ENCODING_LAYOUT[msg.encoding]
    dtype = np.dtype(base).newbyteorder(">" if msg.is_bigendian else "<")
    rows = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.step)
    row_bytes = msg.width * channels * dtype.itemsize
    pixels = rows[:, :row_bytes].copy().view(dtype)
    shape = (msg.height, msg.width) if channels == 1 else (msg.height, msg.width, channels)
    return pixels.reshape(shape).astype(dtype.newbyteorder("="))


def cloud_fields(msg: Any) -> dict[str, np.ndarray]:
    """Each PointCloud2 field as an array of ``height x width``, read by name and offset
    (``rgb`` as the uint32 it packs)."""
    assert not msg.is_bigendian
    formats = {field.name: ("<u4" if field.name == "rgb" else "<f4") for field in msg.fields}
    dtype = np.dtype({"names": list(formats), "formats": list(formats.values()),
                      "offsets": [field.offset for field in msg.fields],
                      "itemsize": msg.point_step})
    assert msg.row_step == msg.point_step * msg.width
    points = np.frombuffer(bytes(msg.data), dtype=dtype).reshape(msg.height, msg.width)
    return {name: np.array(points[name]) for name in formats}


# -- the node process ---------------------------------------------------------------------


def _parameter_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def node_environment(log_dir: Path) -> dict[str, str]:
    """The test's ROS settings (domain, RMW, discovery range from conftest) for a child,
    with unbuffered output, one torch thread (2 shared cores) and its own log folder."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["OMP_NUM_THREADS"] = "1"
    env["RCUTILS_COLORIZED_OUTPUT"] = "0"
    env["ROS_LOG_DIR"] = str(log_dir)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    return env


class NodeProcess:
    """``python -m s2m2_ros.node`` in ``namespace`` with ``parameters``; output in a file.

    /diagnostics is remapped into the namespace so that nodes of one test run do not
    mix their verdicts.
    """

    def __init__(self, parameters: dict[str, Any], namespace: str, work_dir: Path) -> None:
        self.namespace = namespace
        work_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = work_dir / f"{namespace.strip('/') or 'root'}.log"
        self.command = [sys.executable, "-m", "s2m2_ros.node", "--ros-args",
                        "-r", f"__ns:={namespace}",
                        "-r", f"/diagnostics:={namespace}/diagnostics"]
        for name, value in parameters.items():
            self.command += ["-p", f"{name}:={_parameter_text(value)}"]
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=node_environment(work_dir / "ros_log"), cwd=work_dir)

    def output(self) -> str:
        """Everything the node printed so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_for_output(self, text: str, timeout_s: float) -> bool:
        """Wait until ``text`` appears in the output; False on timeout or exit."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.output():
                return True
            if not self.alive():
                return text in self.output()
            time.sleep(0.1)
        return False

    def wait_for_output_count(self, text: str, count: int, timeout_s: float) -> bool:
        """Wait until ``text`` appears at least ``count`` times in the output."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.output().count(text) >= count:
                return True
            if time.monotonic() >= deadline or not self.alive():
                return self.output().count(text) >= count
            time.sleep(0.1)

    def wait_exit(self, timeout_s: float) -> int:
        """The exit status; raises subprocess.TimeoutExpired if it is still running."""
        return self.process.wait(timeout=timeout_s)

    def stop(self, timeout_s: float = 20.0) -> int:
        """Ctrl-C the node (as a terminal would) and wait; killed if it does not exit."""
        if self.alive():
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10.0)
        self._log.close()
        return int(self.process.returncode)


# -- the test's side of the graph ---------------------------------------------------------


class StereoRig:
    """Camera driver and consumer for a node in ``namespace``.

    Records every message on the output topics it subscribes to, the status (when the
    message type exists) and the processing verdict on ``<namespace>/diagnostics``.
    """

    def __init__(self, namespace: str, output_topics: Iterable[str] = OUTPUT_TOPICS,
                 input_qos: Any = None,
                 camera_namespaces: tuple[str, str] = ("left", "right")) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image

        self.namespace = namespace.rstrip("/")
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("stereo_test_rig", context=self.context)
        self._condition = threading.Condition()
        self.received: dict[str, list[Any]] = {}
        self._subscriptions: dict[str, Any] = {}
        self.diagnostics_dropped: int | None = None
        self.diagnostics_count = 0
        self._spin_error: Exception | None = None

        qos = input_qos if input_qos is not None else qos_profile_sensor_data
        types = (Image, Image, CameraInfo, CameraInfo)
        # The node's inputs left/..., right/... as remapped (e.g. by a launch) to the cameras.
        cameras = {"left": camera_namespaces[0], "right": camera_namespaces[1]}
        input_topics = [cameras[side] + "/" + name
                        for side, name in (topic.split("/", 1) for topic in INPUT_TOPICS)]
        self._publishers = [self.node.create_publisher(msg_type, self.topic(topic), qos)
                            for msg_type, topic in zip(types, input_topics, strict=True)]
        self.status_type = status_message_type()
        for topic in output_topics:
            self.subscribe(topic)
        if self.status_type is not None:
            self.subscribe(STATUS_TOPIC)
        self._diagnostics = self.node.create_subscription(
            DiagnosticArray, self.topic("diagnostics"), self._on_diagnostics, 10)

        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self.node)
        self._spinning = True
        self._thread = threading.Thread(target=self._spin, name="rig_spin", daemon=True)
        self._thread.start()
        self._next_stamp = 1_000 * NANOSECONDS_PER_SECOND

    # -- plumbing --------------------------------------------------------------------------

    def topic(self, name: str) -> str:
        return f"{self.namespace}/{name}"

    def _spin(self) -> None:
        # An exception in a callback would end this thread silently and every later
        # wait would time out; keep it and raise it from wait_for instead.
        try:
            while self._spinning:
                self._executor.spin_once(timeout_sec=0.05)
        except Exception as error:  # noqa: BLE001 - reported to the test by wait_for
            with self._condition:
                self._spin_error = error
                self._condition.notify_all()

    def _message_type(self, topic: str) -> type:
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from stereo_msgs.msg import DisparityImage

        if topic == STATUS_TOPIC:
            return self.status_type
        return {"disparity": DisparityImage, "depth/camera_info": CameraInfo,
                "points2": PointCloud2}.get(topic, Image)

    def subscribe(self, topic: str) -> None:
        """Record ``topic`` (reliable, deep queue: the node publishes reliably)."""
        from rclpy.qos import QoSProfile

        if topic in self._subscriptions:
            return

        def record(msg: Any, topic: str = topic) -> None:
            with self._condition:
                self.received.setdefault(topic, []).append(msg)
                self._condition.notify_all()

        self._subscriptions[topic] = self.node.create_subscription(
            self._message_type(topic), self.topic(topic), record, QoSProfile(depth=100))

    def unsubscribe(self, topics: Iterable[str]) -> None:
        for topic in list(topics):
            subscription = self._subscriptions.pop(topic, None)
            if subscription is not None:
                self.node.destroy_subscription(subscription)

    def matched_publishers(self, topic: str) -> int:
        """Publishers the rig's subscription to ``topic`` is connected to."""
        return self._subscriptions[topic].get_publisher_count()

    @property
    def subscribed(self) -> tuple[str, ...]:
        return tuple(self._subscriptions)

    def _on_diagnostics(self, msg: Any) -> None:
        for status in msg.status:
            if not status.name.endswith(": processing"):
                continue
            values = {pair.key: pair.value for pair in status.values}
            # diagnostic_updater's first statuses ("Node starting up") carry no values.
            if "frames dropped" not in values:
                continue
            with self._condition:
                self.diagnostics_dropped = int(values["frames dropped"])
                self.diagnostics_count += 1
                self._condition.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until ``predicate()`` (evaluated under the rig's lock) holds."""
        deadline = time.monotonic() + timeout_s
        with self._condition:
            while not predicate():
                if self._spin_error is not None:
                    raise RuntimeError("the rig stopped receiving: a callback raised "
                                       f"{self._spin_error!r}") from self._spin_error
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(timeout=min(remaining, 0.2))
            return True

    def inputs_matched(self) -> bool:
        """Whether a subscriber (the node) listens on every input topic."""
        return all(p.get_subscription_count() > 0 for p in self._publishers)

    def wait_connected(self, node: NodeProcess, timeout_s: float = 90.0) -> None:
        """Wait for the node to start and both directions of every topic to match."""
        assert node.wait_for_output(STARTED_LINE, timeout_s), (
            f"node did not start:\n{node.output()}")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert node.alive(), f"node exited:\n{node.output()}"
            inputs = self.inputs_matched()
            outputs = all(s.get_publisher_count() > 0 for s in self._subscriptions.values())
            if inputs and outputs:
                return
            time.sleep(0.1)
        raise AssertionError(f"topics never matched the node's:\n{node.output()}")

    def close(self) -> None:
        self._spinning = False
        self._thread.join(timeout=5.0)
        self._executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()

    # -- inputs ----------------------------------------------------------------------------

    def new_stamp(self, after_s: float = 0.1) -> int:
        """A stamp later than every earlier one (synchronizers never go back in time)."""
        self._next_stamp += round(after_s * NANOSECONDS_PER_SECOND)
        return self._next_stamp

    def publish(self, pair: PairMessages | Sequence[Any]) -> None:
        """Left image, right image, left info, right info, as a driver would."""
        messages = pair.as_tuple() if isinstance(pair, PairMessages) else tuple(pair)
        for publisher, message in zip(self._publishers, messages, strict=True):
            publisher.publish(message)

    # -- outputs ---------------------------------------------------------------------------

    def messages(self, topic: str) -> list[Any]:
        with self._condition:
            return list(self.received.get(topic, []))

    def stamps(self, topic: str) -> list[int]:
        return [stamp_ns(msg) for msg in self.messages(topic)]

    def _find(self, topic: str, stamp: int) -> Any | None:
        for msg in self.received.get(topic, []):
            if stamp_ns(msg) == stamp:
                return msg
        return None

    def outputs_for(self, stamp: int, topics: Iterable[str] | None = None,
                    timeout_s: float = 30.0) -> dict[str, Any]:
        """The message with ``stamp`` on each of ``topics`` (default: all subscribed)."""
        wanted = tuple(self.subscribed if topics is None else topics)
        self.wait_for(lambda: all(self._find(t, stamp) is not None for t in wanted),
                      timeout_s)
        with self._condition:
            found = {topic: self._find(topic, stamp) for topic in wanted}
        missing = [topic for topic, msg in found.items() if msg is None]
        assert not missing, f"no output with stamp {stamp} on {missing}"
        return found

    def round_trip(self, pair: PairMessages, topics: Iterable[str] | None = None,
                   timeout_s: float = 30.0) -> dict[str, Any]:
        """Publish ``pair`` and return its outputs. Inputs are best effort: when nothing
        comes back within a few seconds the same messages are offered again (the
        synchronizer completes a set from a repeated message)."""
        wanted = tuple(self.subscribed if topics is None else topics)
        deadline = time.monotonic() + timeout_s
        while True:
            self.publish(pair)
            wait_s = min(8.0, max(0.0, deadline - time.monotonic()))
            if self.wait_for(lambda: all(self._find(t, pair.stamp) is not None
                                         for t in wanted), wait_s):
                return self.outputs_for(pair.stamp, wanted, timeout_s=0.0)
            if time.monotonic() >= deadline:
                return self.outputs_for(pair.stamp, wanted, timeout_s=0.0)

    def outputs_with_stamp(self, stamp: int) -> list[str]:
        """The topics (status included) on which a message with ``stamp`` arrived."""
        with self._condition:
            return [topic for topic in self.received if self._find(topic, stamp) is not None]

    def wait_diagnostics_dropped(self, at_least: int, timeout_s: float = 10.0) -> int | None:
        """Wait for the node's /diagnostics to report ``frames dropped >= at_least``."""
        self.wait_for(lambda: (self.diagnostics_dropped or 0) >= at_least, timeout_s)
        return self.diagnostics_dropped

    def latest_diagnostics_dropped(self, timeout_s: float = 10.0) -> int:
        """A fresh ``frames dropped`` value: the one of the next diagnostics message."""
        with self._condition:
            count = self.diagnostics_count
        assert self.wait_for(lambda: self.diagnostics_count > count, timeout_s), (
            "no diagnostics from the node")
        return int(self.diagnostics_dropped)

    # -- parameters ------------------------------------------------------------------------

    def set_parameters(self, values: dict[str, Any], timeout_s: float = 10.0) -> list[Any]:
        """Call the node's SetParameters service (``ros2 param set``); the results."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        client = self.node.create_client(SetParameters,
                                         self.topic(f"{NODE_NAME}/set_parameters"))
        try:
            assert client.wait_for_service(timeout_sec=timeout_s), "no set_parameters service"
            request = SetParameters.Request(parameters=[
                Parameter(name, value=value).to_parameter_msg()
                for name, value in values.items()])
            return list(self._call(client, request, timeout_s).results)
        finally:
            self.node.destroy_client(client)

    def get_parameters(self, names: Sequence[str], timeout_s: float = 10.0) -> list[Any]:
        """The node's current values of ``names`` (``ros2 param get``), as Python values."""
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        client = self.node.create_client(GetParameters,
                                         self.topic(f"{NODE_NAME}/get_parameters"))
        try:
            assert client.wait_for_service(timeout_sec=timeout_s), "no get_parameters service"
            response = self._call(client, GetParameters.Request(names=list(names)), timeout_s)
            return [parameter_value_to_python(value) for value in response.values]
        finally:
            self.node.destroy_client(client)

    def _call(self, client: Any, request: Any, timeout_s: float) -> Any:
        future = client.call_async(request)
        done = threading.Event()
        future.add_done_callback(lambda _future: done.set())
        assert done.wait(timeout_s), "service call timed out"
        return future.result()


@contextlib.contextmanager
def connected_rig(node: NodeProcess, namespace: str) -> Iterator[StereoRig]:
    """A rig on ``namespace`` whose topics are matched with ``node``'s; closed after."""
    rig = StereoRig(namespace)
    try:
        rig.wait_connected(node)
        yield rig
    finally:
        rig.close()
