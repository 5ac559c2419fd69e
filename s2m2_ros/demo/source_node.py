# SPDX-License-Identifier: Apache-2.0
"""`stereo_source`: publishes rectified stereo pairs, calibration and ground truth.

The demo's camera. Each frame is published as ``left/image_rect``,
``right/image_rect`` (rgb8), ``left/camera_info``, ``right/camera_info`` and,
where the data set has it, ``ground_truth/disparity`` (32FC1 pixels, NaN
unknown), all five with one header stamp (the publishing time, as a live
camera would stamp them). Frames come from the Motorcycle pair bundled with
scikit-image (default), a Middlebury or left/right image folder (``folder``)
or a ROS 2 bag (``bag``, played at its recorded rate); see
`s2m2_ros.demo.datasets`.

``wait_for_output`` paces the source by the stereo node: the next frame
waits until the node's output for the previous one arrived (or
``output_timeout_s`` passed), so a slow backend processes every frame
instead of dropping most of them.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from stereo_msgs.msg import DisparityImage

from s2m2_ros.conversions import array_to_image
from s2m2_ros.demo.datasets import (
    StereoCalibration,
    StereoFrame,
    _resize_frame,  # the datasets' own resize: calibration and GT scale with the images
    bag_frames,
    image_pair_folder,
    middlebury_folder,
    motorcycle_frames,
)
from s2m2_ros.sync import stamp_nanoseconds

BAG_SUFFIXES = (".mcap", ".db3")
DEFAULT_BAG_TOPICS = (
    "/left/image_rect",
    "/right/image_rect",
    "/left/camera_info",
    "/right/camera_info",
)


class SourceError(ValueError):
    """The configured source cannot be opened or its settings are inconsistent."""


# --- frame sources (no ROS) ---------------------------------------------------------


def source_kind(source: str | Path) -> str:
    """``"motorcycle"``, ``"bag"``, ``"middlebury"`` or ``"images"`` for a source name/path.

    A bag is a folder with ``metadata.yaml`` or an ``.mcap``/``.db3`` file; a
    Middlebury folder holds ``im0.png`` itself or in its sub-folders; any other
    folder is taken as left/right image pairs.
    """
    if str(source) == "motorcycle":
        return "motorcycle"
    path = Path(source).expanduser()
    if not path.exists():
        raise SourceError(f"source {path} does not exist (give 'motorcycle', a folder or a bag)")
    if path.is_file():
        if path.suffix.lower() in BAG_SUFFIXES:
            return "bag"
        raise SourceError(f"source {path} is a file but not a bag (.mcap, .db3)")
    if (path / "metadata.yaml").is_file():
        return "bag"
    if (path / "im0.png").is_file() or any((child / "im0.png").is_file()
                                           for child in path.iterdir() if child.is_dir()):
        return "middlebury"
    return "images"


@dataclass(frozen=True)
class SourceSettings:
    """Where frames come from and how they are prepared (the node's parameters)."""

    folder: str = ""
    bag: str = ""
    scale: float = 1.0
    focal_px: float = 0.0
    baseline_m: float = 0.0
    cx_offset_px: float = 0.0
    bag_topics: tuple[str, str, str, str] = DEFAULT_BAG_TOPICS


def frame_factory(settings: SourceSettings) -> tuple[str, Callable[[], Iterator[StereoFrame]]]:
    """(description, function returning a fresh frame iterator) for ``settings``.

    A fresh iterator per pass lets the node loop. Checks what can be checked
    before the first frame (paths, focal length and baseline of plain image
    folders) and raises `SourceError` with the fix.
    """
    if settings.folder and settings.bag:
        raise SourceError("set either 'folder' or 'bag', not both")
    if not settings.scale > 0.0:
        raise SourceError(f"scale must be positive, got {settings.scale}")
    scale = float(settings.scale)

    def scaled(frames: Callable[[], Iterator[StereoFrame]]) -> Callable[[], Iterator[StereoFrame]]:
        return lambda: (_resize_frame(frame, scale) for frame in frames())

    if settings.bag:
        if source_kind(settings.bag) != "bag":
            raise SourceError(f"bag {settings.bag} is not a ROS 2 bag (folder with "
                              "metadata.yaml, or an .mcap/.db3 file)")
        path = Path(settings.bag).expanduser()
        topics = settings.bag_topics
        return f"bag {path}", scaled(lambda: bag_frames(path, *topics))
    if settings.folder:
        kind = source_kind(settings.folder)
        path = Path(settings.folder).expanduser()
        if kind == "middlebury":
            return f"Middlebury folder {path}", scaled(lambda: middlebury_folder(path))
        if kind != "images":
            raise SourceError(f"folder {path} is a {kind}, not an image folder")
        if not (settings.focal_px > 0.0 and settings.baseline_m > 0.0):
            raise SourceError(
                f"{path} has no calibration: set focal_px (pixels, at the images' full "
                "size) and baseline_m (metres)"
            )
        return f"image folder {path}", scaled(
            lambda: image_pair_folder(
                path, settings.focal_px, settings.baseline_m,
                cx_offset_px=settings.cx_offset_px,
            )
        )
    return f"Middlebury 2014 Motorcycle (scikit-image) at scale {scale:g}", (
        lambda: motorcycle_frames(scale)
    )


# --- messages (message classes only, no rclpy) --------------------------------------


@dataclass
class FrameMessages:
    """The messages of one published frame, all with the same stamp."""

    left: Image
    right: Image
    left_info: CameraInfo
    right_info: CameraInfo
    ground_truth: Image | None


def camera_info(calibration: StereoCalibration, header: Header, right: bool) -> CameraInfo:
    """CameraInfo of a rectified camera: no distortion, R = I, P as in the ROS convention."""
    p_left, p_right = calibration.projection_matrices()
    info = CameraInfo()
    info.header = header
    info.width = int(calibration.width)
    info.height = int(calibration.height)
    info.distortion_model = "plumb_bob"
    info.d = [0.0] * 5
    info.k = calibration.intrinsics(right=right).reshape(-1).tolist()
    info.r = np.eye(3).reshape(-1).tolist()
    info.p = (p_right if right else p_left).reshape(-1).tolist()
    return info


def frame_messages(frame: StereoFrame, stamp: Time, frame_id_prefix: str = "") -> FrameMessages:
    """Build the four input messages (and ground truth) of ``frame`` stamped ``stamp``.

    Frame ids are ``<prefix>left_optical_frame`` and ``<prefix>right_optical_frame``;
    ground truth is in the left frame.
    """

    def header(side: str) -> Header:
        return Header(stamp=stamp, frame_id=f"{frame_id_prefix}{side}_optical_frame")

    ground_truth = None
    if frame.ground_truth_disparity is not None:
        ground_truth = array_to_image(
            np.ascontiguousarray(frame.ground_truth_disparity, dtype=np.float32),
            "32FC1", header("left"),
        )
    return FrameMessages(
        left=array_to_image(np.ascontiguousarray(frame.left), "rgb8", header("left")),
        right=array_to_image(np.ascontiguousarray(frame.right), "rgb8", header("right")),
        left_info=camera_info(frame.camera, header("left"), right=False),
        right_info=camera_info(frame.camera, header("right"), right=True),
        ground_truth=ground_truth,
    )


# --- the node -----------------------------------------------------------------------


# A reliable keep-last writer matches both reliable and best-effort readers
# (the stereo node reads with sensor-data QoS).
_PUBLISH_DEPTH = 5
_TICK_S = 0.01
_LINGER_S = 1.0


class StereoSourceNode(Node):
    """Publishes stereo frames from a data set; see the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("stereo_source", **kwargs)
        p = self._declare
        self._settings = SourceSettings(
            folder=p("folder", "", "Middlebury scene(s) or left/right image folder; empty: "
                     "the Motorcycle pair"),
            bag=p("bag", "", "ROS 2 bag folder or .mcap/.db3 file (played at its recorded "
                  "rate)"),
            scale=p("scale", 1.0, "resize factor applied to every frame (and its calibration "
                    "and ground truth)"),
            focal_px=p("focal_px", 0.0, "focal length in pixels of a plain image folder"),
            baseline_m=p("baseline_m", 0.0, "baseline in metres of a plain image folder"),
            cx_offset_px=p("cx_offset_px", 0.0, "cx_right - cx_left of a plain image folder"),
            bag_topics=(
                p("bag_left_topic", DEFAULT_BAG_TOPICS[0], "left image topic in the bag"),
                p("bag_right_topic", DEFAULT_BAG_TOPICS[1], "right image topic in the bag"),
                p("bag_left_info_topic", DEFAULT_BAG_TOPICS[2], "left camera_info in the bag"),
                p("bag_right_info_topic", DEFAULT_BAG_TOPICS[3], "right camera_info in the bag"),
            ),
        )
        self._rate_hz = p("rate_hz", 1.0, "frames per second of image sources (bags keep "
                          "their recorded rate); 0: as fast as pacing allows")
        self._loop = p("loop", True, "start again after the last frame")
        self._num_frames = p("num_frames", 0, "frames to publish before exiting; 0: no limit")
        self._frame_id_prefix = p("frame_id_prefix", "", "prefix of the optical frame ids")
        self._wait_for_subscribers = p("wait_for_subscribers", True, "publish nothing until "
                                       "both image topics have a subscriber")
        self._wait_for_recorder = p("wait_for_recorder", False, "also wait for the recorder: "
                                    "a subscriber on ground_truth/disparity (without ground "
                                    "truth: a second one on the left image)")
        wait_for_output = p("wait_for_output", "", "stereo_msgs/DisparityImage topic to pace "
                            "on: publish the next frame once this frame's output arrived; "
                            "empty: no pacing")
        self._output_timeout_s = p("output_timeout_s", 30.0, "with wait_for_output, publish "
                                   "the next frame anyway after this long")
        reliable = p("reliable", True, "publish reliably (matches reliable and best-effort "
                     "subscribers); false: best effort")

        self.description, self._frames = frame_factory(self._settings)
        self._is_bag = bool(self._settings.bag)
        self._iterator = self._frames()
        # Load the first frame now: a bad folder or bag fails at start, not later.
        self._upcoming = self._read_frame()
        if self._upcoming is None:
            raise SourceError(f"{self.description} has no frames")

        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=_PUBLISH_DEPTH,
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.VOLATILE,
        )
        self._left_pub = self.create_publisher(Image, "left/image_rect", qos)
        self._right_pub = self.create_publisher(Image, "right/image_rect", qos)
        self._left_info_pub = self.create_publisher(CameraInfo, "left/camera_info", qos)
        self._right_info_pub = self.create_publisher(CameraInfo, "right/camera_info", qos)
        # Only sources with ground truth advertise it: the recorder waits for ground
        # truth wherever the topic has a publisher.
        self._truth_pub = None
        if self._upcoming.ground_truth_disparity is not None:
            self._truth_pub = self.create_publisher(Image, "ground_truth/disparity", qos)

        self._outputs_seen: collections.deque[int] = collections.deque(maxlen=64)
        if wait_for_output:
            self.create_subscription(
                DisparityImage, wait_for_output,
                lambda msg: self._outputs_seen.append(stamp_nanoseconds(msg)),
                # Reliable like the stereo node's outputs: a lost output would stall
                # the source for output_timeout_s.
                qos,
            )
        self._paced = bool(wait_for_output)

        self.published = 0
        self.done = False
        self._started = False
        self._next_time = 0.0
        self._awaiting: int | None = None
        self._awaiting_since = 0.0
        self._exhausted = False
        self._finish_time: float | None = None
        self._last_wait_log = 0.0
        self._timer = self.create_timer(_TICK_S, self._tick)
        height, width = self._upcoming.left.shape[:2]
        self.get_logger().info(
            f"source: {self.description}, {width}x{height}, "
            f"{'recorded rate' if self._is_bag else f'{self._rate_hz:g} Hz'}"
            f"{', paced by ' + wait_for_output if wait_for_output else ''}"
        )

    def _declare(self, name: str, default: Any, description: str) -> Any:
        # Read-only: the source is opened once, so a change would need a restart.
        descriptor = ParameterDescriptor(description=description, read_only=True)
        return self.declare_parameter(name, default, descriptor).value

    def _read_frame(self) -> StereoFrame | None:
        """The next frame, starting over at the end when looping; None when exhausted."""
        for attempt in range(2):
            frame = next(self._iterator, None)
            if frame is not None:
                return frame
            if not self._loop or attempt == 1:
                return None
            self._iterator = self._frames()
        return None

    def _ready(self, now: float) -> bool:
        """Whether the subscribers asked for are there (logs every 5 s while waiting)."""
        waiting = []
        if self._wait_for_subscribers:
            for pub in (self._left_pub, self._right_pub):
                if pub.get_subscription_count() == 0:
                    waiting.append(pub.topic_name)
        if self._wait_for_recorder:
            # The recorder reads ground truth, and the left image beside the stereo node.
            if self._truth_pub is not None:
                if self._truth_pub.get_subscription_count() == 0:
                    waiting.append(self._truth_pub.topic_name)
            elif self._left_pub.get_subscription_count() < 2:
                waiting.append(f"{self._left_pub.topic_name} (a second subscriber)")
        if waiting and now - self._last_wait_log > 5.0:
            self._last_wait_log = now
            self.get_logger().info(f"waiting for subscribers on {', '.join(waiting)}")
        return not waiting

    def _tick(self) -> None:
        now = time.monotonic()
        if not self._started:
            if self._ready(now):
                self._started = True
                # Discovery is mutual: give the readers a moment to match us back.
                self._next_time = now + 0.5
            return
        if not self._output_arrived(now):
            return
        if self._exhausted:
            # Stay up a moment so reliable readers can still fetch the last frame.
            if self._finish_time is None:
                self._finish_time = now + _LINGER_S
            self.done = now >= self._finish_time
            return
        if now >= self._next_time:
            self._publish(now)

    def _output_arrived(self, now: float) -> bool:
        """With pacing: whether the last frame's output came (or we gave up waiting)."""
        if self._awaiting is None:
            return True
        if self._awaiting not in self._outputs_seen:
            if now - self._awaiting_since < self._output_timeout_s:
                return False
            self.get_logger().warning(
                f"no output for frame {self.published} after {self._output_timeout_s:g} s; "
                "going on"
            )
        self._awaiting = None
        return True

    def _publish(self, now: float) -> None:
        frame = self._upcoming
        if frame is None:
            return
        stamp = self.get_clock().now().to_msg()
        messages = frame_messages(frame, stamp, self._frame_id_prefix)
        # Calibration before images, so a synchronizer has it when the pair completes.
        self._left_info_pub.publish(messages.left_info)
        self._right_info_pub.publish(messages.right_info)
        if messages.ground_truth is not None and self._truth_pub is not None:
            self._truth_pub.publish(messages.ground_truth)
        self._left_pub.publish(messages.left)
        self._right_pub.publish(messages.right)
        self.published += 1
        self.get_logger().debug(f"published frame {self.published} ({frame.name})")
        if self._paced:
            self._awaiting = stamp_nanoseconds(messages.left)
            self._awaiting_since = now

        self._upcoming = self._read_frame()
        if self._upcoming is None or 0 < self._num_frames <= self.published:
            self.get_logger().info(f"published {self.published} frame(s); done")
            self._exhausted = True
            return
        if self._is_bag and frame.recorded_ns is not None and self._upcoming.recorded_ns:
            gap_s = (self._upcoming.recorded_ns - frame.recorded_ns) / 1e9
            # A loop back to the start has a negative gap: go on at once.
            self._next_time = now + max(gap_s, 0.0)
        else:
            self._next_time = now + (1.0 / self._rate_hz if self._rate_hz > 0 else 0.0)


def main(args: list[str] | None = None) -> int:
    """Console script ``stereo_source``."""
    rclpy.init(args=args)
    node = None
    status = 0
    try:
        node = StereoSourceNode()
        while rclpy.ok() and not node.done:
            rclpy.spin_once(node, timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except SourceError as error:
        print(f"stereo_source: {error}", flush=True)
        status = 1
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return status


if __name__ == "__main__":
    raise SystemExit(main())
