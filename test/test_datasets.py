# SPDX-License-Identifier: Apache-2.0
"""Demo data sources: the bundled Motorcycle pair, Middlebury folders, image folders, bags."""

import re

import cv2
import numpy as np
import pytest

from s2m2_ros.demo.datasets import (
    StereoCalibration,
    bag_frames,
    decode_image,
    image_pair_folder,
    middlebury_folder,
    motorcycle_frames,
)
from s2m2_ros.geometry import depth_from_disparity


def _photometric_error(frame, shift_sign: float) -> float:
    """Median |left(x) - right(x - sign·d)| over pixels with GT, grey levels."""
    gt = frame.ground_truth_disparity
    height, width = gt.shape
    known = np.isfinite(gt)
    columns = np.rint(np.arange(width)[None, :] - shift_sign * np.where(known, gt, 0)).astype(int)
    inside = known & (columns >= 0) & (columns < width)
    rows = np.broadcast_to(np.arange(height)[:, None], gt.shape)
    left = frame.left.astype(np.float32).mean(axis=2)
    right = frame.right.astype(np.float32).mean(axis=2)
    matched = right[rows, np.clip(columns, 0, width - 1)]
    return float(np.median(np.abs(left - matched)[inside]))


@pytest.fixture(scope="module")
def motorcycle():
    pytest.importorskip("skimage")
    return next(motorcycle_frames())


@pytest.fixture(scope="module")
def motorcycle_half():
    pytest.importorskip("skimage")
    return next(motorcycle_frames(scale=0.5))


def test_motorcycle_images_and_ground_truth(motorcycle):
    assert motorcycle.left.shape == motorcycle.right.shape == (500, 741, 3)
    assert motorcycle.left.dtype == np.uint8
    gt = motorcycle.ground_truth_disparity
    assert gt.shape == (500, 741) and gt.dtype == np.float32
    assert not np.isinf(gt).any()  # unknown is NaN, not inf
    assert 0.8 < np.isfinite(gt).mean() < 1.0
    # The GT follows x_right = x_left - d: warping by it matches the images far
    # better than no shift or the opposite sign.
    assert _photometric_error(motorcycle, +1) < 0.3 * _photometric_error(motorcycle, 0)
    assert _photometric_error(motorcycle, +1) < 0.3 * _photometric_error(motorcycle, -1)


def test_motorcycle_calibration_matches_scikit_image_docstring(motorcycle):
    from skimage.data import stereo_motorcycle

    doc = stereo_motorcycle.__doc__

    def documented(label: str) -> float:
        return float(re.search(label + r":\s*([\d.]+)", doc).group(1))

    camera = motorcycle.camera
    assert camera.fx == pytest.approx(documented("Focal length"), abs=1e-3)
    assert camera.fy == camera.fx
    assert camera.cx_left == pytest.approx(documented("Principal point x"), abs=1e-3)
    assert camera.cy == pytest.approx(documented("Principal point y"), abs=1e-3)
    assert camera.cx_offset_px == pytest.approx(documented("Principal point dx"), abs=1e-3)
    assert camera.baseline_m == pytest.approx(documented("Baseline") / 1000.0, abs=1e-6)
    assert (camera.width, camera.height) == (741, 500)


def test_motorcycle_depth_is_plausible(motorcycle):
    camera = motorcycle.camera
    gt = motorcycle.ground_truth_disparity
    known = gt[np.isfinite(gt)]
    depth = camera.fx * camera.baseline_m / (known + camera.cx_offset_px)
    # A motorbike photographed in a room: a couple of metres away.
    assert 1.5 < np.median(depth) < 5.0
    assert depth.min() > 1.0 and depth.max() < 10.0
    # The node's camera model, built from the P matrices, agrees.
    node_depth = depth_from_disparity(gt, camera.to_stereo_camera())
    np.testing.assert_allclose(node_depth[np.isfinite(gt)], depth, rtol=1e-5)


def test_projection_matrices_are_consistent(motorcycle):
    camera = motorcycle.camera
    p_left, p_right = camera.projection_matrices()
    assert p_left.shape == p_right.shape == (3, 4)
    np.testing.assert_allclose(p_left[:, :3], camera.intrinsics())
    np.testing.assert_allclose(p_right[:, :3], camera.intrinsics(right=True))
    assert p_left[0, 3] == 0.0
    assert p_right[0, 3] == pytest.approx(-camera.fx * camera.baseline_m)
    # A point 3 m ahead projects with the disparity that depth formula predicts.
    point = np.array([0.2, -0.1, 3.0, 1.0])
    left, right = p_left @ point, p_right @ point
    disparity = left[0] / left[2] - right[0] / right[2]
    assert camera.fx * camera.baseline_m / (disparity + camera.cx_offset_px) == pytest.approx(3.0)
    assert left[1] / left[2] == pytest.approx(right[1] / right[2])
    again = StereoCalibration.from_projection_matrices(p_left, p_right, 741, 500)
    assert again == camera


def test_half_scale_is_consistent(motorcycle, motorcycle_half):
    half = motorcycle_half
    height, width = half.left.shape[:2]
    assert abs(height - 250) <= 1 and abs(width - 370.5) <= 1
    assert half.right.shape == half.left.shape
    assert half.ground_truth_disparity.shape == (height, width)
    assert (half.camera.width, half.camera.height) == (width, height)
    assert half.camera.fx == pytest.approx(motorcycle.camera.fx * width / 741)
    # Same scene, same metres: depth quantiles agree across scales.
    full_gt, half_gt = motorcycle.ground_truth_disparity, half.ground_truth_disparity

    def depth_quantiles(gt, camera):
        known = gt[np.isfinite(gt)]
        return np.percentile(
            camera.fx * camera.baseline_m / (known + camera.cx_offset_px), [10, 50, 90]
        )

    np.testing.assert_allclose(
        depth_quantiles(half_gt, half.camera),
        depth_quantiles(full_gt, motorcycle.camera),
        rtol=0.02,
    )
    assert _photometric_error(half, +1) < 0.3 * _photometric_error(half, 0)


# --- Middlebury and plain image folders --------------------------------------------


def _write_pfm_by_hand(path, array):
    """PFM as the format describes it: header, then rows bottom to top, little-endian."""
    with open(path, "wb") as stream:
        stream.write(f"Pf\n{array.shape[1]} {array.shape[0]}\n-1.0\n".encode())
        stream.write(np.ascontiguousarray(array[::-1], dtype="<f4").tobytes())


def _write_rgb(path, rgb):
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _make_scene(folder, seed, with_gt=True):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    left = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)
    right = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)
    _write_rgb(folder / "im0.png", left)
    _write_rgb(folder / "im1.png", right)
    (folder / "calib.txt").write_text(
        "cam0=[1000.5 0 9.25; 0 1001.5 5.75; 0 0 1]\n"
        "cam1=[1000.5 0 12.5; 0 1001.5 5.75; 0 0 1]\n"
        "doffs=3.25\nbaseline=120.5\nwidth=20\nheight=12\nndisp=64\nvmin=2\nvmax=40\n"
    )
    gt = None
    if with_gt:
        gt = np.arange(12 * 20, dtype=np.float32).reshape(12, 20) / 10.0
        gt[0, 0] = np.inf
        _write_pfm_by_hand(folder / "disp0.pfm", gt)
    return left, right, gt


def test_middlebury_folder_round_trip(tmp_path):
    left, right, gt = _make_scene(tmp_path / "Scene", seed=1)
    (frame,) = list(middlebury_folder(tmp_path / "Scene"))
    np.testing.assert_array_equal(frame.left, left)
    np.testing.assert_array_equal(frame.right, right)
    camera = frame.camera
    assert (camera.fx, camera.fy, camera.cx_left, camera.cx_right, camera.cy) == (
        1000.5,
        1001.5,
        9.25,
        12.5,
        5.75,
    )
    assert camera.baseline_m == pytest.approx(0.1205)
    assert (camera.width, camera.height) == (20, 12)
    assert camera.cx_offset_px == pytest.approx(3.25)
    # Row order survives the bottom-up PFM layout; inf (unknown) becomes NaN.
    expected = gt.copy()
    expected[0, 0] = np.nan
    np.testing.assert_array_equal(frame.ground_truth_disparity, expected)
    assert frame.name == "Scene"


def test_middlebury_folder_of_scenes(tmp_path):
    _make_scene(tmp_path / "B", seed=2, with_gt=False)
    _make_scene(tmp_path / "A", seed=3)
    frames = list(middlebury_folder(tmp_path))
    assert [f.name for f in frames] == ["A", "B"]
    assert frames[0].ground_truth_disparity is not None
    assert frames[1].ground_truth_disparity is None


def test_middlebury_size_mismatch_is_reported(tmp_path):
    _make_scene(tmp_path / "S", seed=4, with_gt=False)
    calib = (tmp_path / "S" / "calib.txt").read_text().replace("width=20", "width=40")
    (tmp_path / "S" / "calib.txt").write_text(calib)
    with pytest.raises(ValueError, match="calib"):
        list(middlebury_folder(tmp_path / "S"))


def test_image_pair_files(tmp_path):
    rng = np.random.default_rng(5)
    images = {}
    for index in (10, 2):
        images[index] = [rng.integers(0, 256, (8, 10, 3), dtype=np.uint8) for _ in range(2)]
        _write_rgb(tmp_path / f"left_{index}.png", images[index][0])
        _write_rgb(tmp_path / f"right_{index}.png", images[index][1])
    _write_rgb(tmp_path / "left_99.png", images[2][0])  # no partner: skipped
    frames = list(image_pair_folder(tmp_path, focal_px=400.0, baseline_m=0.1, cx_offset_px=2.0))
    assert [f.name for f in frames] == ["2", "10"]  # natural order
    for frame, index in zip(frames, (2, 10), strict=True):
        np.testing.assert_array_equal(frame.left, images[index][0])
        np.testing.assert_array_equal(frame.right, images[index][1])
        assert frame.ground_truth_disparity is None
    camera = frames[0].camera
    assert (camera.cx_left, camera.cy) == (4.5, 3.5)  # centre of a 10×8 image
    assert camera.cx_offset_px == 2.0 and camera.fx == camera.fy == 400.0


def test_image_pair_subfolders(tmp_path):
    rng = np.random.default_rng(6)
    (tmp_path / "left").mkdir()
    (tmp_path / "right").mkdir()
    left = rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)
    right = rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)
    _write_rgb(tmp_path / "left" / "000.png", left)
    _write_rgb(tmp_path / "right" / "000.png", right)
    (frame,) = list(image_pair_folder(tmp_path, focal_px=300.0, baseline_m=0.05, cx=1.0, cy=2.0))
    np.testing.assert_array_equal(frame.left, left)
    np.testing.assert_array_equal(frame.right, right)
    assert (frame.camera.cx_left, frame.camera.cy, frame.camera.baseline_m) == (1.0, 2.0, 0.05)


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        list(image_pair_folder(tmp_path, focal_px=1.0, baseline_m=1.0))
    with pytest.raises(FileNotFoundError):
        list(middlebury_folder(tmp_path))


# --- ROS 2 bags ------------------------------------------------------------------

HEIGHT, WIDTH = 6, 8
FX, BASELINE_M, CX_LEFT, CX_RIGHT, CY = 420.0, 0.12, 3.5, 4.25, 2.5


def _image_message(types, stamp, array, encoding, step_padding=0, bigendian=False):
    header = types["std_msgs/msg/Header"](
        stamp=types["builtin_interfaces/msg/Time"](sec=stamp // 10**9, nanosec=stamp % 10**9),
        frame_id="camera",
    )
    rows = array
    if array.dtype == np.uint16:
        rows = array.astype(">u2" if bigendian else "<u2")
    rows = rows.reshape(HEIGHT, -1).view(np.uint8)
    if step_padding:
        rows = np.hstack([rows, np.full((HEIGHT, step_padding), 77, np.uint8)])
    return types["sensor_msgs/msg/Image"](
        header=header,
        height=HEIGHT,
        width=WIDTH,
        encoding=encoding,
        is_bigendian=int(bigendian),
        step=rows.shape[1],
        data=np.ascontiguousarray(rows).reshape(-1),
    )


def _info_message(types, stamp, cx, tx):
    header = types["std_msgs/msg/Header"](
        stamp=types["builtin_interfaces/msg/Time"](sec=stamp // 10**9, nanosec=stamp % 10**9),
        frame_id="camera",
    )
    k = np.array([FX, 0, cx, 0, FX, CY, 0, 0, 1], dtype=np.float64)
    p = np.array([FX, 0, cx, tx, 0, FX, CY, 0, 0, 0, 1, 0], dtype=np.float64)
    roi = types["sensor_msgs/msg/RegionOfInterest"](
        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
    )
    return types["sensor_msgs/msg/CameraInfo"](
        header=header,
        height=HEIGHT,
        width=WIDTH,
        distortion_model="plumb_bob",
        d=np.zeros(5),
        k=k,
        r=np.eye(3).reshape(-1),
        p=p,
        binning_x=0,
        binning_y=0,
        roi=roi,
    )


@pytest.fixture(params=["sqlite3", "mcap"])
def stereo_bag(request, tmp_path):
    """A bag with four stereo pairs in four encodings, plus an unpaired left image."""
    pytest.importorskip("rosbags")
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.ROS2_HUMBLE)
    types = typestore.types
    rng = np.random.default_rng(7)
    base = 1_700_000_000 * 10**9
    stamps = [base + i * 50_000_000 for i in range(4)]
    mono = [rng.integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8) for _ in range(2)]
    color = [rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(4)]
    deep = [rng.integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8) for _ in range(2)]
    deep[0][0, 0] = 255  # so the pair's 16-bit peak is 255·257 and scaling is exact
    # Expected RGB outputs, and the messages that should produce them.
    expected = [
        [np.dstack([m] * 3) for m in mono],
        color[0:2],
        color[2:4],
        [np.dstack([d] * 3) for d in deep],
    ]
    pairs = [
        [_image_message(types, stamps[0], m, "mono8", step_padding=3) for m in mono],
        [_image_message(types, stamps[1], c, "rgb8") for c in color[0:2]],
        [_image_message(types, stamps[2], c[..., ::-1].copy(), "bgr8") for c in color[2:4]],
        [
            _image_message(types, stamps[3], d.astype(np.uint16) * 257, "mono16", 2, bigendian)
            for d, bigendian in zip(deep, (False, True), strict=True)
        ],
    ]
    plugin = StoragePlugin.MCAP if request.param == "mcap" else StoragePlugin.SQLITE3
    path = tmp_path / f"bag_{request.param}"
    log_times = []
    with Writer(path, version=8, storage_plugin=plugin) as writer:
        image_type, info_type = "sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo"
        connections = {
            topic: writer.add_connection(topic, msgtype, typestore=typestore)
            for topic, msgtype in (
                ("/left/image_rect", image_type),
                ("/right/image_rect", image_type),
                ("/left/camera_info", info_type),
                ("/right/camera_info", info_type),
            )
        }

        def write(topic, msg, msgtype, log_time):
            data = typestore.serialize_cdr(msg, msgtype)
            writer.write(connections[topic], log_time, data)

        for i, stamp in enumerate(stamps):
            log_time = stamp + 5_000_000
            # Right before left in log order, and infos after the images.
            write("/right/image_rect", pairs[i][1], image_type, log_time)
            write("/left/image_rect", pairs[i][0], image_type, log_time + 1000)
            write(
                "/left/camera_info",
                _info_message(types, stamp, CX_LEFT, 0.0),
                info_type,
                log_time + 2000,
            )
            write(
                "/right/camera_info",
                _info_message(types, stamp, CX_RIGHT, -FX * BASELINE_M),
                info_type,
                log_time + 3000,
            )
            log_times.append(log_time + 1000)
            if i == 1:
                lonely = _image_message(types, stamp + 1, mono[0], "mono8")
                write("/left/image_rect", lonely, image_type, log_time + 4000)
    return path, stamps, expected, log_times


def test_bag_frames_round_trip(stereo_bag):
    path, stamps, expected, log_times = stereo_bag
    frames = list(
        bag_frames(
            path, "/left/image_rect", "/right/image_rect", "/left/camera_info", "/right/camera_info"
        )
    )
    assert [f.stamp_ns for f in frames] == stamps
    assert [f.recorded_ns for f in frames] == log_times
    for frame, (left, right) in zip(frames, expected, strict=True):
        assert frame.left.dtype == np.uint8 and frame.left.shape == (HEIGHT, WIDTH, 3)
        np.testing.assert_array_equal(frame.left, left)
        np.testing.assert_array_equal(frame.right, right)
        assert frame.ground_truth_disparity is None
        camera = frame.camera
        assert (camera.fx, camera.cx_left, camera.cx_right, camera.cy) == (
            FX,
            CX_LEFT,
            CX_RIGHT,
            CY,
        )
        assert camera.baseline_m == pytest.approx(BASELINE_M)
        assert (camera.width, camera.height) == (WIDTH, HEIGHT)


def test_bag_missing_topic_is_reported(stereo_bag):
    path = stereo_bag[0]
    with pytest.raises(KeyError, match="/nope"):
        list(
            bag_frames(
                path, "/nope", "/right/image_rect", "/left/camera_info", "/right/camera_info"
            )
        )


class _Message:
    def __init__(self, **fields):
        self.__dict__.update(fields)


def test_decode_image_encodings():
    pixels = np.array([[1, 2], [3, 65535]], dtype=np.uint16)
    big = _Message(
        encoding="mono16", height=2, width=2, step=4, is_bigendian=1,
        data=pixels.astype(">u2").view(np.uint8).reshape(-1),
    )  # fmt: skip
    array, order = decode_image(big)
    assert order == "mono" and array.dtype == np.uint16
    np.testing.assert_array_equal(array, pixels)
    rgba = np.arange(2 * 2 * 4, dtype=np.uint8).reshape(2, 2, 4)
    message = _Message(
        encoding="rgba8", height=2, width=2, step=8, is_bigendian=0, data=rgba.reshape(-1)
    )
    array, order = decode_image(message)
    assert order == "rgb"
    np.testing.assert_array_equal(array, rgba[..., :3])
    with pytest.raises(ValueError, match="encoding"):
        decode_image(
            _Message(
                encoding="yuv422",
                height=1,
                width=1,
                step=2,
                is_bigendian=0,
                data=np.zeros(2, np.uint8),
            )
        )
