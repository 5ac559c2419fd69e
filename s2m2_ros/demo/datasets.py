# SPDX-License-Identifier: Apache-2.0
"""Sources of rectified stereo pairs with calibration for the demo.

Every source yields `StereoFrame`s: RGB uint8 images, a `StereoCalibration`
in the ROS convention (``P_right[0, 3] = -fx · baseline``, disparity
``d = x_left - x_right``) and, where the data set has it, ground-truth
disparity with NaN where unknown.

* `motorcycle_frames`: the Middlebury 2014 Motorcycle pair bundled with scikit-image.
* `middlebury_folder`: a Middlebury 2014 / MiddEval3 scene folder, or a folder of them.
* `image_pair_folder`: ``left_*.png``/``right_*.png`` files or ``left/`` and
  ``right/`` folders, with the focal length and baseline given.
* `bag_frames`: a ROS 2 bag (sqlite3 or MCAP) read with ``rosbags``, no ROS needed.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from s2m2_ros.geometry import StereoCamera
from s2m2_ros.image_io import read_image, read_pfm

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm")


@dataclass(frozen=True)
class StereoCalibration:
    """Rectified pinhole pair: shared focal length and row, per-camera principal column."""

    fx: float
    fy: float
    cx_left: float
    cx_right: float
    cy: float
    baseline_m: float
    width: int
    height: int

    @property
    def cx_offset_px(self) -> float:
        """``cx_right - cx_left``: Middlebury's ``doffs``, and minus `StereoCamera.doffs`.

        Depth is ``fx · baseline_m / (d + cx_offset_px)``.
        """
        return self.cx_right - self.cx_left

    def to_stereo_camera(self) -> StereoCamera:
        """The node's camera model (`s2m2_ros.geometry.StereoCamera`) for this calibration."""
        p_left, p_right = self.projection_matrices()
        return StereoCamera.from_projections(
            p_left.reshape(-1), p_right.reshape(-1), self.width, self.height
        )

    def intrinsics(self, right: bool = False) -> np.ndarray:
        """3×3 camera matrix K of the left (or right) rectified camera."""
        cx = self.cx_right if right else self.cx_left
        return np.array(
            [[self.fx, 0.0, cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]], dtype=np.float64
        )

    def projection_matrices(self) -> tuple[np.ndarray, np.ndarray]:
        """3×4 projection matrices (P_left, P_right) as in sensor_msgs/CameraInfo."""
        p_left = np.zeros((3, 4), dtype=np.float64)
        p_left[:, :3] = self.intrinsics()
        p_right = np.zeros((3, 4), dtype=np.float64)
        p_right[:, :3] = self.intrinsics(right=True)
        p_right[0, 3] = -self.fx * self.baseline_m
        return p_left, p_right

    @classmethod
    def from_projection_matrices(
        cls, p_left: np.ndarray, p_right: np.ndarray, width: int, height: int
    ) -> StereoCalibration:
        """Calibration from CameraInfo P matrices (row-major 12 values or 3×4)."""
        p_left = np.asarray(p_left, dtype=np.float64).reshape(3, 4)
        p_right = np.asarray(p_right, dtype=np.float64).reshape(3, 4)
        fx = float(p_left[0, 0])
        if fx <= 0.0 or p_right[0, 0] <= 0.0:
            raise ValueError("projection matrices have no focal length (uncalibrated camera?)")
        return cls(
            fx=fx,
            fy=float(p_left[1, 1]),
            cx_left=float(p_left[0, 2]),
            cx_right=float(p_right[0, 2]),
            cy=float(p_left[1, 2]),
            # The left P may carry its own Tx (e.g. a rig whose origin is not the left camera).
            baseline_m=float((p_left[0, 3] - p_right[0, 3]) / p_right[0, 0]),
            width=int(width),
            height=int(height),
        )

    def resized(self, width: int, height: int) -> StereoCalibration:
        """Calibration of the same cameras imaged at ``width``×``height``.

        Uses the pixel-centre convention ``x' = (x + 0.5)·s - 0.5``, so a
        disparity scales by exactly ``s = width / self.width``.
        """
        sx = width / self.width
        sy = height / self.height
        return replace(
            self,
            fx=self.fx * sx,
            fy=self.fy * sy,
            cx_left=(self.cx_left + 0.5) * sx - 0.5,
            cx_right=(self.cx_right + 0.5) * sx - 0.5,
            cy=(self.cy + 0.5) * sy - 0.5,
            width=int(width),
            height=int(height),
        )


@dataclass
class StereoFrame:
    """One rectified pair: H×W×3 uint8 RGB images, calibration, optional GT disparity."""

    left: np.ndarray
    right: np.ndarray
    camera: StereoCalibration
    ground_truth_disparity: np.ndarray | None
    name: str
    # Header stamp and bag log time of bag frames, nanoseconds; None for still images.
    stamp_ns: int | None = None
    recorded_ns: int | None = None


def _resize_frame(frame: StereoFrame, scale: float) -> StereoFrame:
    """Images, calibration and GT disparity of ``frame`` at ``scale`` (≤ 1 in practice)."""
    if scale == 1.0:
        return frame
    if scale <= 0.0:
        raise ValueError(f"scale must be positive, got {scale}")
    height, width = frame.left.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    camera = frame.camera.resized(*size)
    gt = frame.ground_truth_disparity
    if gt is not None:
        # Nearest keeps depth edges and unknown pixels intact; values scale with the width.
        gt = cv2.resize(gt, size, interpolation=cv2.INTER_NEAREST) * np.float32(size[0] / width)
    return replace(
        frame,
        left=cv2.resize(frame.left, size, interpolation=interpolation),
        right=cv2.resize(frame.right, size, interpolation=interpolation),
        camera=camera,
        ground_truth_disparity=gt,
    )


def _unknown_to_nan(disparity: np.ndarray) -> np.ndarray:
    disparity = np.asarray(disparity, dtype=np.float32).copy()
    disparity[~np.isfinite(disparity)] = np.nan
    return disparity


# Middlebury 2014 "Motorcycle" calib.txt, full resolution (2964 px wide):
#   cam0=[3979.911 0 1244.772; 0 3979.911 1019.507; 0 0 1]
#   cam1=[3979.911 0 1369.115; 0 3979.911 1019.507; 0 0 1]
#   doffs=124.343  baseline=193.001 (mm)
# scikit-image bundles the pair down-sampled by 4 (downscale_local_mean), and its
# `stereo_motorcycle` docstring gives those values divided by 4 (focal 994.978,
# principal point 311.193/254.877, dx 31.086, baseline 193.001 mm) as valid for
# the 741×500 images. We use the same division.
_MOTORCYCLE_FULL = {
    "focal_px": 3979.911,
    "cx_left": 1244.772,
    "cx_right": 1369.115,
    "cy": 1019.507,
    "baseline_mm": 193.001,
}
_MOTORCYCLE_DOWNSAMPLE = 4.0


def motorcycle_calibration() -> StereoCalibration:
    """Calibration of scikit-image's quarter-scale Motorcycle pair (741×500)."""
    full = _MOTORCYCLE_FULL
    factor = _MOTORCYCLE_DOWNSAMPLE
    return StereoCalibration(
        fx=full["focal_px"] / factor,
        fy=full["focal_px"] / factor,
        cx_left=full["cx_left"] / factor,
        cx_right=full["cx_right"] / factor,
        cy=full["cy"] / factor,
        baseline_m=full["baseline_mm"] / 1000.0,
        width=741,
        height=500,
    )


def motorcycle_frames(scale: float = 1.0) -> Iterator[StereoFrame]:
    """The Middlebury 2014 Motorcycle pair from ``skimage.data.stereo_motorcycle()``.

    One frame at 741×500 (times ``scale``), with GT disparity (NaN where
    unknown). Calibration: see `motorcycle_calibration`. Needs scikit-image.
    """
    from skimage.data import stereo_motorcycle

    left, right, disparity = stereo_motorcycle()
    height, width = left.shape[:2]
    camera = motorcycle_calibration()
    if (camera.width, camera.height) != (width, height):
        camera = camera.resized(width, height)
    frame = StereoFrame(
        left=np.ascontiguousarray(left, dtype=np.uint8),
        right=np.ascontiguousarray(right, dtype=np.uint8),
        camera=camera,
        ground_truth_disparity=_unknown_to_nan(disparity),
        name="motorcycle" if scale == 1.0 else f"motorcycle@{scale:g}",
    )
    yield _resize_frame(frame, scale)


def _to_rgb8(images: list[tuple[np.ndarray, str]]) -> list[np.ndarray]:
    """Images of one pair as RGB uint8; 16-bit ones share one scale so they still match.

    Each entry is (array, "mono" | "rgb" | "bgr"); float arrays are taken as 0–255.
    """
    peak = max((int(a.max()) for a, _ in images if a.dtype == np.uint16), default=0)
    converted = []
    for array, order in images:
        if array.dtype == np.uint16:
            array = (array.astype(np.float32) * (255.0 / max(peak, 1))).round().astype(np.uint8)
        elif array.dtype != np.uint8:
            array = np.clip(np.nan_to_num(array), 0, 255).astype(np.uint8)
        if order == "mono":
            array = np.repeat(array[..., None], 3, axis=2)
        elif order == "bgr":
            array = np.ascontiguousarray(array[..., ::-1])
        converted.append(array)
    return converted


def _read_pair(left_path: Path, right_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Both images of a pair as RGB uint8 (16-bit files share one scale)."""
    left, right = _to_rgb8([(read_image(left_path), "rgb"), (read_image(right_path), "rgb")])
    if left.shape != right.shape:
        raise ValueError(f"{left_path} {left.shape} and {right_path} {right.shape} differ in size")
    return left, right


def parse_middlebury_calib(text: str) -> dict[str, Any]:
    """``calib.txt`` as a dict: ``cam0``/``cam1`` 3×3 arrays, numbers as floats."""
    values: dict[str, Any] = {}
    for line in text.splitlines():
        if "=" not in line:
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        if value.startswith("["):
            rows = [row.split() for row in value.strip("[]").split(";")]
            values[key] = np.array(rows, dtype=np.float64)
        else:
            try:
                values[key] = float(value)
            except ValueError:
                values[key] = value
    return values


def middlebury_calibration(calib: dict[str, Any], width: int, height: int) -> StereoCalibration:
    """StereoCalibration from a parsed Middlebury ``calib.txt`` (baseline in mm)."""
    cam0 = calib["cam0"]
    cam1 = calib.get("cam1", cam0)
    cx_right = float(cam1[0, 2])
    if "cam1" not in calib and "doffs" in calib:
        cx_right = float(cam0[0, 2]) + float(calib["doffs"])
    return StereoCalibration(
        fx=float(cam0[0, 0]),
        fy=float(cam0[1, 1]),
        cx_left=float(cam0[0, 2]),
        cx_right=cx_right,
        cy=float(cam0[1, 2]),
        baseline_m=float(calib["baseline"]) / 1000.0,
        width=int(calib.get("width", width)),
        height=int(calib.get("height", height)),
    )


def _middlebury_scene(folder: Path) -> StereoFrame:
    left, right = _read_pair(folder / "im0.png", folder / "im1.png")
    height, width = left.shape[:2]
    calib = parse_middlebury_calib((folder / "calib.txt").read_text())
    camera = middlebury_calibration(calib, width, height)
    if (camera.width, camera.height) != (width, height):
        raise ValueError(
            f"{folder}: calib.txt says {camera.width}×{camera.height}, images are {width}×{height}"
        )
    gt = None
    for name in ("disp0.pfm", "disp0GT.pfm"):
        if (folder / name).is_file():
            gt = _unknown_to_nan(read_pfm(folder / name))
            break
    return StereoFrame(left, right, camera, gt, folder.name)


def middlebury_folder(path: str | Path) -> Iterator[StereoFrame]:
    """Frames from a Middlebury scene folder (im0.png, im1.png, calib.txt, disp0.pfm).

    ``path`` is one scene, or a folder of scenes (e.g. MiddEval3's
    ``trainingQ``), read in name order. ``disp0.pfm`` (or ``disp0GT.pfm``) is
    optional; its inf values become NaN.
    """
    root = Path(path)
    if (root / "im0.png").is_file():
        yield _middlebury_scene(root)
        return
    scenes = sorted(p for p in root.iterdir() if (p / "im0.png").is_file())
    if not scenes:
        raise FileNotFoundError(f"no Middlebury scene (im0.png) in {root}")
    for scene in scenes:
        yield _middlebury_scene(scene)


def frame_name_key(name: str) -> list[Any]:
    """Natural sort key (``left_2`` before ``left_10``)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _image_files(folder: Path) -> list[Path]:
    files = (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return sorted(files, key=lambda p: frame_name_key(p.name))


def _pair_paths(root: Path) -> list[tuple[str, Path, Path]]:
    """(name, left, right) triples from left/ & right/ folders or left_*/right_* files."""
    if (root / "left").is_dir() and (root / "right").is_dir():
        rights = {p.stem: p for p in _image_files(root / "right")}
        return [
            (p.stem, p, rights[p.stem]) for p in _image_files(root / "left") if p.stem in rights
        ]
    rights = {p.stem[len("right") :]: p for p in _image_files(root) if p.stem.startswith("right")}
    pairs = []
    for left in _image_files(root):
        if left.stem.startswith("left"):
            key = left.stem[len("left") :]
            if key in rights:
                pairs.append((key.lstrip("_-") or left.stem, left, rights[key]))
    return pairs


def image_pair_folder(
    path: str | Path,
    focal_px: float,
    baseline_m: float,
    cx: float | None = None,
    cy: float | None = None,
    cx_offset_px: float = 0.0,
) -> Iterator[StereoFrame]:
    """Rectified pairs from ``left/``+``right/`` or ``left_*``+``right_*`` image files.

    Pairs are matched by name (the part after ``left``/``right``) in sorted
    order. The principal point defaults to the image centre; ``cx_offset_px``
    is ``cx_right - cx_left`` (Middlebury's ``doffs``). No ground truth.
    """
    root = Path(path)
    pairs = _pair_paths(root)
    if not pairs:
        raise FileNotFoundError(f"no left/right image pairs in {root}")
    for name, left_path, right_path in pairs:
        left, right = _read_pair(left_path, right_path)
        height, width = left.shape[:2]
        cx_left = (width - 1) / 2.0 if cx is None else float(cx)
        camera = StereoCalibration(
            fx=float(focal_px),
            fy=float(focal_px),
            cx_left=cx_left,
            cx_right=cx_left + float(cx_offset_px),
            cy=(height - 1) / 2.0 if cy is None else float(cy),
            baseline_m=float(baseline_m),
            width=width,
            height=height,
        )
        yield StereoFrame(left, right, camera, None, name)


# --- ROS 2 bags -----------------------------------------------------------------

_MONO8 = {"mono8", "8uc1"}
_MONO16 = {"mono16", "16uc1"}
_COLOR8 = {"rgb8": "rgb", "bgr8": "bgr", "8uc3": "bgr", "rgba8": "rgb", "bgra8": "bgr"}


def decode_image(msg: Any) -> tuple[np.ndarray, str]:
    """sensor_msgs/Image (any object with its fields) → (array, colour order).

    mono8/8UC1 and mono16/16UC1 give H×W uint8/uint16 ("mono"); rgb8, bgr8,
    rgba8, bgra8 and 8UC3 give H×W×3 uint8 ("rgb" or "bgr", alpha dropped).
    Honours ``step`` row padding and ``is_bigendian``.
    """
    encoding = str(msg.encoding).lower()
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    raw = np.frombuffer(
        bytes(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data, dtype=np.uint8
    )
    if raw.size < height * step:
        raise ValueError(f"image data has {raw.size} bytes, expected {height}×{step}")
    rows = raw[: height * step].reshape(height, step)
    if encoding in _MONO8:
        return rows[:, :width].copy(), "mono"
    if encoding in _MONO16:
        dtype = np.dtype(">u2" if msg.is_bigendian else "<u2")
        pixels = rows[:, : width * 2].copy().view(dtype).reshape(height, width)
        return pixels.astype(np.uint16), "mono"
    if encoding in _COLOR8:
        channels = 4 if encoding.endswith("a8") else 3
        pixels = rows[:, : width * channels].reshape(height, width, channels)[..., :3]
        return np.ascontiguousarray(pixels), _COLOR8[encoding]
    raise ValueError(f"unsupported image encoding {msg.encoding!r}")


def _stamp_ns(msg: Any) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def _info_at(infos: dict[int, Any], stamps: list[int], stamp: int) -> Any | None:
    """The camera info with this exact stamp, else the latest earlier one, else the first.

    ``stamps`` is ``sorted(infos)``.
    """
    if stamp in infos:
        return infos[stamp]
    if not stamps:
        return None
    index = bisect.bisect_right(stamps, stamp)
    return infos[stamps[max(index - 1, 0)]]


def bag_frames(
    path: str | Path,
    left_topic: str,
    right_topic: str,
    left_info_topic: str,
    right_info_topic: str,
    max_pending: int = 64,
) -> Iterator[StereoFrame]:
    """Stereo frames from a ROS 2 bag folder (sqlite3 or MCAP), in log-time order.

    Left and right images are paired by identical header stamps. Each pair
    takes the camera infos with the same stamp, or failing that the latest
    earlier ones (drivers that publish calibration less often). Images become
    RGB uint8 (mono is replicated, 16-bit is scaled by the pair's peak).
    ``stamp_ns`` is the header stamp and ``recorded_ns`` the later of the two
    images' log times, so a player can keep the bag's rate. Unpaired images
    are dropped once ``max_pending`` newer stamps are waiting.
    """
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    topics = {left_topic: "left", right_topic: "right"}
    info_topics = {left_info_topic: "left", right_info_topic: "right"}
    # Bags without embedded definitions (older rosbag2) fall back to Humble's types.
    with AnyReader([Path(path)], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as reader:
        present = {c.topic for c in reader.connections}
        missing = [t for t in (*topics, *info_topics) if t not in present]
        if missing:
            raise KeyError(f"topics not in bag {path}: {missing}; it has {sorted(present)}")

        # Calibration first: camera infos are small, and knowing all of them
        # lets each pair use the exact-stamp one whatever the log order.
        infos: dict[str, dict[int, Any]] = {"left": {}, "right": {}}
        info_connections = [c for c in reader.connections if c.topic in info_topics]
        for connection, _, raw in reader.messages(connections=info_connections):
            msg = reader.deserialize(raw, connection.msgtype)
            infos[info_topics[connection.topic]][_stamp_ns(msg)] = msg
        info_stamps = {side: sorted(by_stamp) for side, by_stamp in infos.items()}

        pending: dict[int, dict[str, tuple[Any, int]]] = {}
        image_connections = [c for c in reader.connections if c.topic in topics]
        for connection, log_time, raw in reader.messages(connections=image_connections):
            msg = reader.deserialize(raw, connection.msgtype)
            stamp = _stamp_ns(msg)
            slot = pending.setdefault(stamp, {})
            slot[topics[connection.topic]] = (msg, int(log_time))
            if len(slot) < 2:
                while len(pending) > max_pending:
                    del pending[min(pending)]
                continue
            del pending[stamp]
            left_info = _info_at(infos["left"], info_stamps["left"], stamp)
            right_info = _info_at(infos["right"], info_stamps["right"], stamp)
            if left_info is None or right_info is None:
                raise ValueError(f"no camera info in {path} for the images at stamp {stamp}")
            left_msg, left_time = slot["left"]
            right_msg, right_time = slot["right"]
            left, right = _to_rgb8([decode_image(left_msg), decode_image(right_msg)])
            if left.shape != right.shape:
                raise ValueError(f"left {left.shape} and right {right.shape} differ at {stamp}")
            height, width = left.shape[:2]
            camera = StereoCalibration.from_projection_matrices(
                left_info.p, right_info.p, width, height
            )
            yield StereoFrame(
                left=left,
                right=right,
                camera=camera,
                ground_truth_disparity=None,
                name=f"{stamp}",
                stamp_ns=stamp,
                recorded_ns=max(left_time, right_time),
            )
