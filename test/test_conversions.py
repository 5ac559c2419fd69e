# SPDX-License-Identifier: Apache-2.0
"""Message ↔ numpy conversions, checked through CDR serialization (no rclpy.init)."""

import array
import struct

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header
from stereo_msgs.msg import DisparityImage

from s2m2_ros.cloud import build_cloud
from s2m2_ros.conversions import (
    ImageConversionError,
    array_to_image,
    camera_info_matrices,
    image_to_array,
    make_disparity_image,
    make_point_cloud2,
    to_network_rgb,
)

HEIGHT, WIDTH = 3, 5


def make_image(encoding, pixels, pad=0, big_endian=False):
    """An Image built with struct/bytes, independently of the module under test."""
    rows = []
    for row in pixels:
        raw = row.astype(row.dtype.newbyteorder(">" if big_endian else "<")).tobytes()
        rows.append(raw + b"\xee" * pad)
    msg = Image(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding)
    msg.is_bigendian = int(big_endian)
    msg.step = len(rows[0])
    msg.data = array.array("B", b"".join(rows))
    return msg


RNG = np.random.default_rng(11)
CASES = [
    ("mono8", RNG.integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8), "mono"),
    ("8UC1", RNG.integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8), "mono"),
    ("mono16", RNG.integers(0, 65536, (HEIGHT, WIDTH), dtype=np.uint16), "mono"),
    ("16UC1", RNG.integers(0, 65536, (HEIGHT, WIDTH), dtype=np.uint16), "mono"),
    ("rgb8", RNG.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8), "rgb"),
    ("bgr8", RNG.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8), "bgr"),
    ("8UC3", RNG.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8), "bgr"),
    ("rgba8", RNG.integers(0, 256, (HEIGHT, WIDTH, 4), dtype=np.uint8), "rgb"),
    ("bgra8", RNG.integers(0, 256, (HEIGHT, WIDTH, 4), dtype=np.uint8), "bgr"),
    ("32FC1", RNG.normal(size=(HEIGHT, WIDTH)).astype(np.float32), "mono"),
]


@pytest.mark.parametrize(("encoding", "pixels", "order"), CASES)
@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize("big_endian", [False, True])
def test_image_to_array_reads_every_encoding(encoding, pixels, order, pad, big_endian):
    msg = make_image(encoding, pixels, pad=pad, big_endian=big_endian)
    result, hint = image_to_array(msg)
    assert hint == order
    assert result.shape == pixels.shape
    assert result.dtype.kind == pixels.dtype.kind
    assert result.dtype.itemsize == pixels.dtype.itemsize
    np.testing.assert_array_equal(result, pixels)


def test_big_endian_values_are_read_in_the_right_order():
    msg = Image(height=1, width=2, encoding="mono16", is_bigendian=1, step=4)
    msg.data = array.array("B", struct.pack(">HH", 0x0102, 0xA0B0))
    result, _ = image_to_array(msg)
    assert result.tolist() == [[0x0102, 0xA0B0]]
    msg.is_bigendian = 0
    assert image_to_array(msg)[0].tolist() == [[0x0201, 0xB0A0]]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"encoding": "yuv422"}, "unsupported"),
        ({"step": 4}, "step"),
        ({"height": 4}, "truncated"),
        ({"width": 0}, "zero size"),
        ({"height": 0}, "zero size"),
    ],
)
def test_broken_images_raise_a_clear_error(change, message):
    msg = make_image("mono16", np.zeros((HEIGHT, WIDTH), dtype=np.uint16))
    for field, value in change.items():
        setattr(msg, field, value)
    with pytest.raises(ImageConversionError, match=message):
        image_to_array(msg)
    assert issubclass(ImageConversionError, ValueError)


def test_to_network_rgb():
    rgb = RNG.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    bgra = np.dstack([rgb[..., ::-1], np.zeros((HEIGHT, WIDTH), np.uint8)])
    for encoding, image in (("rgb8", rgb), ("bgr8", rgb[..., ::-1]), ("bgra8", bgra)):
        result = to_network_rgb(image, encoding)
        np.testing.assert_array_equal(result, rgb)
        assert result.flags.c_contiguous

    grey = RNG.integers(0, 65536, (HEIGHT, WIDTH), dtype=np.uint16)
    result = to_network_rgb(grey, "mono16")
    assert result.shape == (HEIGHT, WIDTH, 3) and result.dtype == np.uint16
    for channel in range(3):
        np.testing.assert_array_equal(result[..., channel], grey)

    with pytest.raises(ImageConversionError):
        to_network_rgb(np.zeros((HEIGHT, WIDTH), np.float32), "32FC1")


def test_padded_rgb_message_to_network_input():
    rgb = RNG.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    msg = make_image("bgr8", rgb[..., ::-1].copy(), pad=5)
    image, hint = image_to_array(msg)
    assert hint == "bgr"
    np.testing.assert_array_equal(to_network_rgb(image, msg.encoding), rgb)


@pytest.mark.parametrize(("encoding", "pixels", "order"), CASES)
def test_array_to_image_survives_serialization(encoding, pixels, order):
    header = Header(frame_id="left_optical")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    msg = array_to_image(pixels, encoding, header)
    assert msg.step == pixels.shape[1] * pixels.itemsize * (
        1 if pixels.ndim == 2 else pixels.shape[2]
    )
    again = deserialize_message(serialize_message(msg), Image)
    assert again.encoding == encoding and again.header.frame_id == "left_optical"
    assert (again.header.stamp.sec, again.header.stamp.nanosec) == (12, 345)
    np.testing.assert_array_equal(image_to_array(again)[0], pixels)


def test_array_to_image_rejects_mismatches():
    with pytest.raises(ImageConversionError, match="float32"):
        array_to_image(np.zeros((2, 2), np.float64), "32FC1")
    with pytest.raises(ImageConversionError, match="channel"):
        array_to_image(np.zeros((2, 2), np.uint8), "rgb8")
    with pytest.raises(ImageConversionError, match="unsupported"):
        array_to_image(np.zeros((2, 2), np.uint8), "jpeg")


def test_disparity_image_message():
    header = Header(frame_id="left")
    disparity = RNG.uniform(0, 30, (HEIGHT, WIDTH)).astype(np.float32)
    fields = {
        "f": 700.5, "t": 0.12, "min_disparity": 0.0, "max_disparity": 5.0,
        "delta_d": 2.0**-13, "valid_window": (0, 0, WIDTH, HEIGHT),
    }
    msg = deserialize_message(
        serialize_message(make_disparity_image(disparity, header, fields)), DisparityImage
    )
    assert msg.header.frame_id == msg.image.header.frame_id == "left"
    assert msg.image.encoding == "32FC1"
    assert (msg.f, msg.t) == (np.float32(700.5), np.float32(0.12))
    assert (msg.min_disparity, msg.max_disparity, msg.delta_d) == (0.0, 5.0, 2.0**-13)
    window = msg.valid_window
    assert (window.x_offset, window.y_offset, window.width, window.height) == (
        0, 0, WIDTH, HEIGHT
    )
    values = struct.unpack(f"<{HEIGHT * WIDTH}f", bytes(msg.image.data))
    np.testing.assert_array_equal(np.array(values, np.float32).reshape(HEIGHT, WIDTH), disparity)


def test_point_cloud_message():
    points = RNG.uniform(-1, 1, (HEIGHT, WIDTH, 3)).astype(np.float32)
    colors = RNG.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    layout = build_cloud(points, colors=colors)
    msg = deserialize_message(
        serialize_message(make_point_cloud2(layout, Header(frame_id="left"))), PointCloud2
    )
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (HEIGHT, WIDTH, 16, 16 * WIDTH)
    assert not msg.is_bigendian and not msg.is_dense
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1),
        ("z", 8, PointField.FLOAT32, 1), ("rgb", 12, PointField.FLOAT32, 1),
    ]
    assert bytes(msg.data) == layout.data.tobytes()


def test_camera_info_matrices():
    msg = CameraInfo(width=640, height=480)
    msg.k = [500.0, 0.0, 320.0, 0.0, 501.0, 240.0, 0.0, 0.0, 1.0]
    msg.p = [500.0, 0.0, 320.0, -60.0, 0.0, 501.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    projection, intrinsics, width, height = camera_info_matrices(msg)
    assert projection.shape == (3, 4) and intrinsics.shape == (3, 3)
    assert projection[0, 3] == -60.0 and projection[1, 1] == 501.0
    assert intrinsics[1, 2] == 240.0
    assert (width, height) == (640, 480)
