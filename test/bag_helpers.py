# SPDX-License-Identifier: Apache-2.0
"""Stereo bags written with ``rosbags`` (its own serializer, not rclpy's), and read back.

Pictures are a textured left image and the same shifted by a known disparity on the
right, so SGBM and the network both have something to match.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

FX, BASELINE_M = 60.0, 0.12
BASE_STAMP_NS = 1_700_000_000 * 10**9
FRAME_PERIOD_NS = 50_000_000
UNRELATED_TOPIC = "/imu_rate"  # a std_msgs/String topic that has nothing to do with stereo


@dataclass
class FrameSpec:
    width: int
    height: int
    encoding: str = "rgb8"  # rgb8, bgr8 or mono8
    right_width: int | None = None  # differs from width: a bad (size-mismatched) pair
    shift_px: int = 4


@dataclass
class StereoBag:
    path: Path
    stamps: list[int]
    left_log_times: list[int]
    namespace: str
    topic_counts: dict[str, int] = field(default_factory=dict)


def textured(height: int, width: int, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (3, 3), 0)


def _pixels(rgb: np.ndarray, encoding: str) -> np.ndarray:
    if encoding == "mono8":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if encoding == "bgr8":
        return rgb[..., ::-1].copy()
    return rgb


def write_stereo_bag(path: Path, frames: list[FrameSpec], storage: str = "mcap",
                     namespace: str = "/stereo", unrelated: bool = True,
                     right_stamp_offset_ns: int = 0) -> StereoBag:
    """A rosbag2 bag with the four stereo_image_proc topics under ``namespace``.

    The right image (and its info) may be stamped ``right_stamp_offset_ns`` later, for
    approximate sync. Log order per frame: right image, left image, infos (a recorder
    sees them in any order).
    """
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)  # a bag recorded on another distro
    types = store.types
    image_type, info_type = "sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo"
    string_type = "std_msgs/msg/String"

    def header(stamp: int, frame_id: str):
        return types["std_msgs/msg/Header"](
            stamp=types["builtin_interfaces/msg/Time"](sec=stamp // 10**9,
                                                        nanosec=stamp % 10**9),
            frame_id=frame_id)

    def image(stamp: int, pixels: np.ndarray, encoding: str, frame_id: str):
        height, width = pixels.shape[:2]
        return types[image_type](header=header(stamp, frame_id), height=height, width=width,
                                 encoding=encoding, is_bigendian=0,
                                 step=pixels.strides[0],
                                 data=np.ascontiguousarray(pixels).reshape(-1))

    def info(stamp: int, width: int, height: int, tx: float, frame_id: str):
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        return types[info_type](
            header=header(stamp, frame_id), height=height, width=width,
            distortion_model="plumb_bob", d=np.zeros(5),
            k=np.array([FX, 0, cx, 0, FX, cy, 0, 0, 1], dtype=np.float64),
            r=np.eye(3).reshape(-1),
            p=np.array([FX, 0, cx, tx, 0, FX, cy, 0, 0, 0, 1, 0], dtype=np.float64),
            binning_x=0, binning_y=0,
            roi=types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0,
                                                           width=0, do_rectify=False))

    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    names = {role: f"{namespace}/{role}" for role in
             ("left/image_rect", "right/image_rect", "left/camera_info", "right/camera_info")}
    bag = StereoBag(path, [], [], namespace)
    with Writer(path, version=8, storage_plugin=plugin) as writer:
        kinds = {names["left/image_rect"]: image_type, names["right/image_rect"]: image_type,
                 names["left/camera_info"]: info_type, names["right/camera_info"]: info_type}
        if unrelated:
            kinds[UNRELATED_TOPIC] = string_type
        connections = {topic: writer.add_connection(topic, kind, typestore=store)
                       for topic, kind in kinds.items()}

        def write(topic: str, msg, log_time: int) -> None:
            writer.write(connections[topic], log_time, store.serialize_cdr(msg, kinds[topic]))
            bag.topic_counts[topic] = bag.topic_counts.get(topic, 0) + 1

        for index, spec in enumerate(frames):
            stamp = BASE_STAMP_NS + index * FRAME_PERIOD_NS
            right_stamp = stamp + right_stamp_offset_ns
            log_time = stamp + 3_000_000
            left_rgb = textured(spec.height, spec.width, seed=index)
            right_rgb = np.roll(left_rgb, -spec.shift_px, axis=1)
            if spec.right_width is not None:
                right_rgb = np.ascontiguousarray(right_rgb[:, :spec.right_width])
            right_width = right_rgb.shape[1]
            write(names["right/image_rect"], image(right_stamp, _pixels(right_rgb,
                  spec.encoding), spec.encoding, "right_optical"), log_time)
            write(names["left/image_rect"], image(stamp, _pixels(left_rgb, spec.encoding),
                  spec.encoding, "left_optical"), log_time + 1000)
            write(names["left/camera_info"], info(stamp, spec.width, spec.height, 0.0,
                  "left_optical"), log_time + 2000)
            write(names["right/camera_info"], info(right_stamp, right_width, spec.height,
                  -FX * BASELINE_M, "right_optical"), log_time + 3000)
            if unrelated:
                write(UNRELATED_TOPIC, types[string_type](data=f"tick {index}"),
                      log_time + 4000)
            bag.stamps.append(stamp)
            bag.left_log_times.append(log_time + 1000)
    return bag


@dataclass
class BagMessage:
    topic: str
    msgtype: str
    log_time: int
    raw: bytes


def read_bag(path: Path) -> tuple[list[BagMessage], dict[str, str]]:
    """Every message of a bag in log order, and its metadata's custom_data."""
    from rosbags.rosbag2 import Reader

    with Reader(path) as reader:
        messages = [BagMessage(c.topic, c.msgtype, int(t), bytes(raw))
                    for c, t, raw in reader.messages()]
        return messages, dict(reader.storage.metadata.custom or {})


def by_topic(messages: list[BagMessage]) -> dict[str, list[BagMessage]]:
    grouped: dict[str, list[BagMessage]] = {}
    for message in messages:
        grouped.setdefault(message.topic, []).append(message)
    return grouped
