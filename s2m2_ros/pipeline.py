# SPDX-License-Identifier: Apache-2.0
"""One stereo frame from messages in to messages out, without a node.

The node feeds synchronised messages here and publishes what comes back; the
end-to-end benchmark calls the same functions stage by stage. Every way a frame
can be unusable raises :class:`InputError` with a ``kind`` the node counts and
throttles its warnings by.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sensor_msgs.msg import CameraInfo, Image

from .backends.base import StereoBackend, StereoResult
from .cloud import cloud_from_depth
from .conversions import (
    ImageConversionError,
    array_to_image,
    image_to_array,
    make_disparity_image,
    make_point_cloud2,
    to_network_rgb,
)
from .geometry import (
    CameraModelError,
    StereoCamera,
    ValidityThresholds,
    depth_and_validity,
    disparity_image_fields,
    fill_invalid_disparity_from,
)
from .sync import stamp_of

DEPTH_ENCODINGS = ("32FC1", "16UC1")
MIN_IMAGE_SIDE_PX = 16  # below this the network's 1/32 bottleneck has nothing to see
OUTPUTS = ("disparity", "depth", "confidence", "occlusion", "points")
_MILLIMETRES_PER_METRE = 1000.0


class InputError(ValueError):
    """A frame that cannot be processed; ``kind`` names the problem for counting."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class OutputSettings:
    """What the node publishes and which pixels it trusts; replaced as a whole on a
    parameter change so a frame never sees half of an update."""

    thresholds: ValidityThresholds = field(default_factory=ValidityThresholds)
    depth_encoding: str = "32FC1"
    use_color: bool = True
    dense_cloud: bool = False
    outputs: frozenset[str] = frozenset(OUTPUTS)
    max_input_pixels: int = 4096 * 3072
    max_stamp_skew_s: float = 0.0  # 0: no check (the synchronizer already matched stamps)

    def __post_init__(self) -> None:
        if self.depth_encoding not in DEPTH_ENCODINGS:
            raise ValueError(f"depth_encoding must be one of {DEPTH_ENCODINGS}, "
                             f"got {self.depth_encoding!r}")
        unknown = set(self.outputs) - set(OUTPUTS)
        if unknown:
            raise ValueError(f"unknown outputs {sorted(unknown)}; known: {OUTPUTS}")


@dataclass
class PreparedPair:
    """Network-ready images and the camera model of one synchronised frame."""

    left_rgb: np.ndarray
    right_rgb: np.ndarray
    left_pixels: np.ndarray  # the left image as received, for colouring the cloud
    left_order: str          # "rgb", "bgr" or "mono"
    camera: StereoCamera


@dataclass
class FrameStatistics:
    valid_fraction: float
    occluded_fraction: float
    low_confidence_fraction: float
    mean_confidence: float


@dataclass
class FrameProducts:
    """The messages of one frame (keys: OUTPUTS plus ``depth_info``) and its numbers."""

    messages: dict[str, object]
    statistics: FrameStatistics
    camera: StereoCamera
    timings_ms: dict[str, float]
    inference_size: tuple[int, int]  # (width, height) the network saw


def _read_image(msg: Image, side: str) -> tuple[np.ndarray, str]:
    try:
        return image_to_array(msg)
    except ImageConversionError as error:
        kind = "encoding" if "unsupported" in str(error) else "image_data"
        raise InputError(kind, f"{side} image: {error}") from None


def prepare_pair(left: Image, right: Image, left_info: CameraInfo, right_info: CameraInfo,
                 settings: OutputSettings) -> PreparedPair:
    """Check that the four messages describe one usable rectified pair and convert them."""
    if (left.width, left.height) != (right.width, right.height):
        raise InputError("size_mismatch", f"left image is {left.width}x{left.height} but right "
                                          f"is {right.width}x{right.height}")
    if left.encoding != right.encoding:
        raise InputError("encoding_mismatch", f"left image is {left.encoding} but right is "
                                              f"{right.encoding}")
    width, height = int(left.width), int(left.height)
    if min(width, height) < MIN_IMAGE_SIDE_PX:
        raise InputError("image_size", f"image {width}x{height} is too small: each side needs "
                                       f"at least {MIN_IMAGE_SIDE_PX} px")
    if width * height > settings.max_input_pixels:
        raise InputError("image_size", f"image {width}x{height} has more than the "
                                       f"{settings.max_input_pixels} pixels allowed by "
                                       "max_input_pixels")
    for side, info in (("left", left_info), ("right", right_info)):
        if (int(info.width), int(info.height)) != (width, height):
            raise InputError("camera_info_size", f"{side} camera_info is for "
                                                 f"{info.width}x{info.height} images but the "
                                                 f"images are {width}x{height}")
    if settings.max_stamp_skew_s > 0.0:
        skew = abs(stamp_of(left) - stamp_of(right))
        if skew > settings.max_stamp_skew_s:
            raise InputError("stamp_skew", f"left and right stamps differ by {skew:.3f} s "
                                           f"(more than {settings.max_stamp_skew_s} s)")
    try:
        camera = StereoCamera.from_projections(left_info.p, right_info.p, width, height)
    except CameraModelError as error:
        raise InputError("camera_model", f"camera_info: {error}") from None

    left_pixels, left_order = _read_image(left, "left")
    right_pixels, _ = _read_image(right, "right")
    try:
        left_rgb = to_network_rgb(left_pixels, left.encoding)
        right_rgb = to_network_rgb(right_pixels, right.encoding)
    except ImageConversionError as error:
        raise InputError("encoding", str(error)) from None
    return PreparedPair(left_rgb, right_rgb, left_pixels, left_order, camera)


def frame_statistics(result: StereoResult, valid: np.ndarray,
                     thresholds: ValidityThresholds) -> FrameStatistics:
    occlusion_cut = thresholds.occlusion_threshold or 0.5

    def fraction(mask: np.ndarray) -> float:
        # count_nonzero is several times faster than mean() on a boolean image.
        return np.count_nonzero(mask) / mask.size

    return FrameStatistics(
        valid_fraction=fraction(valid),
        occluded_fraction=fraction(result.visibility < occlusion_cut),
        low_confidence_fraction=fraction(result.confidence < thresholds.confidence_threshold),
        mean_confidence=float(result.confidence.mean()),
    )


def depth_image(depth_m: np.ndarray, valid: np.ndarray, encoding: str) -> np.ndarray:
    """REP 118 depth: float metres with NaN, or uint16 millimetres with 0, where invalid.

    In 16UC1 a depth that rounds past 65535 mm cannot be written; it becomes 0
    (invalid) rather than a saturated 65.535 m, which would be a wrong distance.
    """
    if encoding == "32FC1":
        return depth_m  # already NaN wherever `valid` is False (see build_products)
    millimetres = np.rint(depth_m * _MILLIMETRES_PER_METRE)  # NaN stays NaN
    representable = valid & (millimetres <= np.iinfo(np.uint16).max)  # NaN compares False
    return np.where(representable, millimetres, 0).astype(np.uint16)


def build_products(pair: PreparedPair, result: StereoResult, header: object,
                   left_info: CameraInfo, settings: OutputSettings,
                   disparity_step_px: float | None = None) -> FrameProducts:
    """Validity, depth, points and the output messages from one network result.

    ``disparity_step_px``: the backend's disparity quantisation for DisparityImage's
    ``delta_d`` (SGBM: 1/16 px); None for a float network output.
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()
    camera = pair.camera
    thresholds = settings.thresholds
    # depth_from_disparity + validity_mask + nan_where_invalid(depth, ~valid), fused.
    depth_m, valid, adjusted, nan_bits = depth_and_validity(
        result.disparity, result.visibility, result.confidence, camera, thresholds)
    statistics = frame_statistics(result, valid, thresholds)
    timings["validity_depth"] = (time.perf_counter() - started) * 1e3

    messages: dict[str, object] = {}
    wanted = settings.outputs
    if "points" in wanted:
        started = time.perf_counter()
        colors = None
        if settings.use_color:
            colors = pair.left_pixels
            if colors.ndim == 3 and colors.dtype != np.uint8:
                colors = (colors >> 8).astype(np.uint8)
        color_order = "bgr" if pair.left_order == "bgr" else "rgb"
        layout = cloud_from_depth(depth_m, camera, None, colors,
                                  organized=not settings.dense_cloud, color_order=color_order)
        timings["cloud"] = (time.perf_counter() - started) * 1e3
        started = time.perf_counter()
        messages["points"] = make_point_cloud2(layout, header)
        timings["cloud_message"] = (time.perf_counter() - started) * 1e3

    started = time.perf_counter()
    if "disparity" in wanted:
        fields = disparity_image_fields(camera, allow_negative=thresholds.allow_negative,
                                        delta_d_px=disparity_step_px)
        # fill_invalid_disparity(result.disparity, valid, min_disparity, camera.doffs)
        filled = fill_invalid_disparity_from(adjusted, nan_bits, fields["min_disparity"])
        messages["disparity"] = make_disparity_image(filled, header, fields)
    if "depth" in wanted:
        encoding = settings.depth_encoding
        messages["depth"] = array_to_image(depth_image(depth_m, valid, encoding), encoding,
                                           header)
        depth_info = CameraInfo()
        for slot in CameraInfo.get_fields_and_field_types():
            setattr(depth_info, slot, getattr(left_info, slot))
        depth_info.header = header
        messages["depth_info"] = depth_info
    if "confidence" in wanted:
        messages["confidence"] = array_to_image(result.confidence, "32FC1", header)
    if "occlusion" in wanted:
        occlusion = np.subtract(1.0, result.visibility, dtype=np.float32)
        messages["occlusion"] = array_to_image(occlusion, "32FC1", header)
    timings["image_messages"] = (time.perf_counter() - started) * 1e3
    height, width = result.disparity.shape
    return FrameProducts(messages, statistics, camera, timings, (width, height))


def process_frame(backend: StereoBackend, left: Image, right: Image, left_info: CameraInfo,
                  right_info: CameraInfo, settings: OutputSettings) -> FrameProducts:
    """All stages of one frame: convert, infer, post-process, build messages."""
    started = time.perf_counter()
    pair = prepare_pair(left, right, left_info, right_info, settings)
    convert_ms = (time.perf_counter() - started) * 1e3
    color_order = "rgb"  # prepare_pair already reordered to RGB
    started = time.perf_counter()
    result = backend.infer(pair.left_rgb, pair.right_rgb, color_order)
    network_ms = (time.perf_counter() - started) * 1e3
    # A continuous backend's delta_d comes from float32 spacing (geometry.disparity_fields).
    step_px = backend.disparity_step_px or None
    products = build_products(pair, result, left.header, left_info, settings, step_px)
    products.timings_ms = {"convert": convert_ms, "network": network_ms, **products.timings_ms}
    return products


StereoMessages = tuple[Image, Image, CameraInfo, CameraInfo]  # left, right, their infos


def process_frames(backend: StereoBackend, frames: Sequence[StereoMessages],
                   settings: OutputSettings,
                   batch_size: int = 1) -> list[FrameProducts | InputError]:
    """:func:`process_frame` for several frames, up to ``batch_size`` at a time through
    :meth:`StereoBackend.infer_batch` (pairs of one size and type share a batch).

    The result has one entry per frame, in order: its products, or the InputError that
    made it unusable. Any other failure propagates, as from :func:`process_frame`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    outcomes: list[FrameProducts | InputError | None] = [None] * len(frames)
    prepared: dict[int, PreparedPair] = {}
    convert_ms: dict[int, float] = {}
    for index, (left, right, left_info, right_info) in enumerate(frames):
        started = time.perf_counter()
        try:
            prepared[index] = prepare_pair(left, right, left_info, right_info, settings)
        except InputError as error:
            outcomes[index] = error
        convert_ms[index] = (time.perf_counter() - started) * 1e3
    # infer_batch takes pairs of one size: group by what the network will see.
    groups: dict[tuple[tuple[int, ...], str], list[int]] = {}
    for index, pair in prepared.items():
        groups.setdefault((pair.left_rgb.shape, pair.left_rgb.dtype.str), []).append(index)
    step_px = backend.disparity_step_px or None
    for indices in groups.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            started = time.perf_counter()
            results = backend.infer_batch(
                [(prepared[i].left_rgb, prepared[i].right_rgb) for i in chunk], "rgb")
            network_ms = (time.perf_counter() - started) * 1e3 / len(chunk)
            for index, result in zip(chunk, results, strict=True):
                left, _, left_info, _ = frames[index]
                products = build_products(prepared[index], result, left.header, left_info,
                                          settings, step_px)
                products.timings_ms = {"convert": convert_ms[index], "network": network_ms,
                                       **products.timings_ms}
                outcomes[index] = products
    return [outcome for outcome in outcomes if outcome is not None]
