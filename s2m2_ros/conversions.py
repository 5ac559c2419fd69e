# SPDX-License-Identifier: Apache-2.0
"""ROS message ↔ numpy: Image, CameraInfo, DisparityImage and PointCloud2.

Only message classes are used (no ``rclpy.init``), so this works in plain tests.
Images are read without copying (``np.frombuffer`` over the message buffer, honouring
``step`` padding and ``is_bigendian``); message bodies are written as one
``array.array('B')`` (see ``_to_message_bytes``).
"""

from __future__ import annotations

import array
import sys

import cv2
import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField, RegionOfInterest
from std_msgs.msg import Header
from stereo_msgs.msg import DisparityImage

from .cloud import CloudLayout


class ImageConversionError(ValueError):
    """An Image message that cannot be read or an array that cannot be written."""


# encoding → (numpy base type without byte order, channels, colour order hint).
# 8UC3 is OpenCV's default channel order, BGR, as cv_bridge assumes.
_ENCODINGS: dict[str, tuple[str, int, str]] = {
    "mono8": ("u1", 1, "mono"),
    "8UC1": ("u1", 1, "mono"),
    "mono16": ("u2", 1, "mono"),
    "16UC1": ("u2", 1, "mono"),
    "rgb8": ("u1", 3, "rgb"),
    "bgr8": ("u1", 3, "bgr"),
    "8UC3": ("u1", 3, "bgr"),
    "rgba8": ("u1", 4, "rgb"),
    "bgra8": ("u1", 4, "bgr"),
    "32FC1": ("f4", 1, "mono"),
}

SUPPORTED_ENCODINGS = tuple(_ENCODINGS)


def _encoding(encoding: str) -> tuple[str, int, str]:
    try:
        return _ENCODINGS[encoding]
    except KeyError:
        raise ImageConversionError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(_ENCODINGS)}"
        ) from None


def image_to_array(msg: Image) -> tuple[np.ndarray, str]:
    """The pixels of ``msg`` as H×W (one channel) or H×W×C, and a colour order hint.

    The hint is "rgb", "bgr" or "mono". The array is a read-through view of the
    message buffer where byte order allows (rows may be strided when ``step`` pads
    them); copy it before changing it or the message.
    """
    base, channels, order = _encoding(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ImageConversionError(f"{msg.encoding} image has zero size ({width}x{height})")
    item_size = np.dtype(base).itemsize
    row_bytes = width * channels * item_size
    if step < row_bytes:
        raise ImageConversionError(
            f"{msg.encoding} image step {step} is smaller than width*channels*bytes = "
            f"{width}*{channels}*{item_size} = {row_bytes}"
        )
    buffer = memoryview(msg.data).cast("B")
    if len(buffer) < step * height:
        raise ImageConversionError(
            f"{msg.encoding} image data is truncated: {len(buffer)} bytes, "
            f"step*height = {step}*{height} = {step * height} expected"
        )
    rows = np.frombuffer(buffer, dtype=np.uint8, count=step * height).reshape(height, step)
    byte_order = ">" if msg.is_bigendian else "<"
    dtype = np.dtype(byte_order + base)
    # Dropping the row padding keeps the last axis contiguous, so the view is legal.
    pixels = rows[:, :row_bytes].view(dtype)
    pixels = pixels.reshape(height, width) if channels == 1 else pixels.reshape(
        height, width, channels
    )
    if item_size > 1 and not dtype.isnative:
        pixels = pixels.astype(dtype.newbyteorder("="))
    return pixels, order


def to_network_rgb(image: np.ndarray, encoding: str) -> np.ndarray:
    """H×W×3 RGB (uint8 or uint16) for the network from an ``image_to_array`` result.

    Grey is replicated to three channels, alpha dropped and BGR reordered.
    """
    _, channels, order = _encoding(encoding)
    if image.dtype not in (np.uint8, np.uint16):
        raise ImageConversionError(
            f"{encoding} ({image.dtype}) is not a camera image the network can take"
        )
    # OpenCV's channel shuffles are ~50x faster than numpy's strided copies.
    if channels == 1:
        return cv2.cvtColor(image.reshape(image.shape[0], image.shape[1]), cv2.COLOR_GRAY2RGB)
    if image.ndim != 3 or image.shape[2] != channels:
        raise ImageConversionError(
            f"{encoding} needs H×W×{channels}, got an array of shape {image.shape}"
        )
    code = {
        (3, "rgb"): None,
        (3, "bgr"): cv2.COLOR_BGR2RGB,
        (4, "rgb"): cv2.COLOR_RGBA2RGB,
        (4, "bgr"): cv2.COLOR_BGRA2RGB,
    }[(channels, order)]
    return np.ascontiguousarray(image) if code is None else cv2.cvtColor(image, code)


def _new_message(message_type: type) -> object:
    """An empty message whose ``uint8[]`` setters keep an ``array('B')`` as it is.

    Since Jazzy, generated setters copy an ``array('B')`` (``array.array('B', value)``)
    unless field checking is on, in which case they store it. A fresh copy of a
    15 MB cloud costs several ms of page faults, so ask for checking (the other
    setters' checks are cheap). Humble's setters always store it and its constructor
    rejects the unknown keyword.
    """
    try:
        return message_type(check_fields=True)
    except (AssertionError, TypeError):
        return message_type()


def _to_message_bytes(array_like: np.ndarray) -> array.array:
    """Copy an array's bytes into the ``array('B')`` that generated messages store.

    Setters given anything else build ``array.array('B', value)``: one memcpy from
    bytes, but an element-by-element loop from a numpy array or memoryview (seconds
    for an HD image), and with field checking on, bytes are checked element by
    element too. ``frombytes`` takes any buffer, so numpy → array('B') is one copy.
    """
    body = array.array("B")
    body.frombytes(np.ascontiguousarray(array_like).reshape(-1).view(np.uint8))
    return body


def array_to_image(image: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """An Image message holding ``image`` (H×W or H×W×C) in ``encoding``.

    The data are written in this machine's byte order (``is_bigendian`` says which),
    rows unpadded.
    """
    base, channels, _ = _encoding(encoding)
    expected_dtype = np.dtype(base)
    if image.dtype.kind != expected_dtype.kind or image.dtype.itemsize != expected_dtype.itemsize:
        raise ImageConversionError(
            f"{encoding} needs {expected_dtype.name} values, got {image.dtype}"
        )
    image_channels = 1 if image.ndim == 2 else image.shape[2] if image.ndim == 3 else -1
    if image_channels != channels:
        raise ImageConversionError(
            f"{encoding} needs {channels} channel(s), got an array of shape {image.shape}"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageConversionError(f"cannot publish an empty image of shape {image.shape}")
    native = image.astype(image.dtype.newbyteorder("="), copy=False)
    msg = _new_message(Image)
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(image.shape[0]), int(image.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = int(sys.byteorder == "big" and expected_dtype.itemsize > 1)
    msg.step = msg.width * channels * expected_dtype.itemsize
    msg.data = _to_message_bytes(native)
    return msg


def make_disparity_image(
    disparity: np.ndarray, header: Header, fields: dict
) -> DisparityImage:
    """A stereo_msgs/DisparityImage from a float32 H×W disparity already filled for
    the message (see ``geometry.fill_invalid_disparity``) and the metadata of
    ``geometry.disparity_image_fields``. Both headers are ``header``, as in
    stereo_image_proc.
    """
    msg = _new_message(DisparityImage)
    msg.header = header
    msg.image = array_to_image(np.asarray(disparity, dtype=np.float32), "32FC1", header)
    msg.f = float(fields["f"])
    msg.t = float(fields["t"])
    x_offset, y_offset, width, height = fields["valid_window"]
    msg.valid_window = RegionOfInterest(
        x_offset=int(x_offset), y_offset=int(y_offset), width=int(width), height=int(height)
    )
    msg.min_disparity = float(fields["min_disparity"])
    msg.max_disparity = float(fields["max_disparity"])
    msg.delta_d = float(fields["delta_d"])
    return msg


def make_point_cloud2(layout: CloudLayout, header: Header) -> PointCloud2:
    """A sensor_msgs/PointCloud2 from a ``cloud.build_cloud`` layout."""
    msg = _new_message(PointCloud2)
    msg.header = header
    msg.height = layout.height
    msg.width = layout.width
    msg.fields = [
        PointField(name=field.name, offset=field.offset, datatype=field.datatype,
                   count=field.count)
        for field in layout.fields
    ]
    msg.is_bigendian = layout.is_bigendian
    msg.point_step = layout.point_step
    msg.row_step = layout.row_step
    msg.is_dense = layout.is_dense
    # build_cloud allocates the body as array('B'): handed over without a copy.
    body = layout.data
    msg.data = body if isinstance(body, array.array) else _to_message_bytes(body)
    return msg


def camera_info_matrices(msg: CameraInfo) -> tuple[np.ndarray, np.ndarray, int, int]:
    """``(P 3×4, K 3×3, width, height)`` of a CameraInfo, as float64 arrays."""
    projection = np.asarray(msg.p, dtype=np.float64)
    intrinsics = np.asarray(msg.k, dtype=np.float64)
    if projection.size != 12 or intrinsics.size != 9:
        raise ValueError(
            f"CameraInfo P must have 12 and K 9 values, got {projection.size} and "
            f"{intrinsics.size}"
        )
    return projection.reshape(3, 4).copy(), intrinsics.reshape(3, 3).copy(), int(
        msg.width
    ), int(msg.height)
