# SPDX-License-Identifier: Apache-2.0
"""PFM/PLY files, colour maps, 16-bit depth and image reading."""

import os

import cv2
import numpy as np
import pytest

from s2m2_ros.image_io import (
    ImageReadError,
    colorize_disparity,
    colorize_unit,
    depth_to_png16,
    read_image,
    read_pfm,
    read_ply,
    write_pfm,
    write_ply,
)


@pytest.fixture
def rng():
    return np.random.default_rng(7)


# -- PFM -------------------------------------------------------------------------------


def test_pfm_round_trip_keeps_values_including_nan_and_inf(tmp_path, rng):
    array = rng.normal(size=(5, 7)).astype(np.float32) * 100
    array[0, 0], array[1, 2], array[4, 6] = np.nan, np.inf, -np.inf
    path = tmp_path / "d.pfm"
    write_pfm(path, array)
    back = read_pfm(path)
    assert back.dtype == np.float32 and back.shape == (5, 7)
    np.testing.assert_array_equal(back, array)


def test_pfm_layout_is_standard(tmp_path):
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    path = tmp_path / "d.pfm"
    write_pfm(path, array)
    data = path.read_bytes()
    header = b"Pf\n3 2\n-1.0\n"
    assert data.startswith(header)
    # Little-endian float32, bottom row first.
    stored = np.frombuffer(data[len(header) :], dtype="<f4")
    np.testing.assert_array_equal(stored, [3, 4, 5, 0, 1, 2])


def test_pfm_reads_big_endian_and_colour_files(tmp_path):
    array = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    path = tmp_path / "c.pfm"
    path.write_bytes(b"PF\n2 2\n1.0\n" + array[::-1].astype(">f4").tobytes())
    np.testing.assert_array_equal(read_pfm(path), array)
    write_pfm(tmp_path / "c2.pfm", array)
    np.testing.assert_array_equal(read_pfm(tmp_path / "c2.pfm"), array)


@pytest.mark.parametrize(
    "content", [b"P6\n2 2\n255\n", b"Pf\n2 x\n-1.0\n", b"Pf\n4 4\n-1.0\n" + b"\0" * 8, b""]
)
def test_pfm_rejects_bad_files(tmp_path, content):
    path = tmp_path / "bad.pfm"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match="bad.pfm"):
        read_pfm(path)


# -- PLY -------------------------------------------------------------------------------


def test_ply_round_trip_with_colours(tmp_path, rng):
    points = rng.normal(size=(10, 3)).astype(np.float32)
    colors = rng.integers(0, 256, size=(10, 3), dtype=np.uint8)
    path = tmp_path / "c.ply"
    write_ply(path, points, colors)
    data = path.read_bytes()
    header_end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:header_end].decode()
    assert "format binary_little_endian 1.0" in header
    assert "element vertex 10" in header
    assert header.index("property float x") < header.index("property uchar red")
    assert len(data) - header_end == 10 * (3 * 4 + 3)
    back_points, back_colors = read_ply(path)
    np.testing.assert_array_equal(back_points, points)
    np.testing.assert_array_equal(back_colors, colors)


def test_ply_without_colours_and_empty(tmp_path):
    path = tmp_path / "p.ply"
    write_ply(path, np.ones((3, 3), np.float32))
    points, colors = read_ply(path)
    assert colors is None and points.shape == (3, 3)
    write_ply(path, np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8))
    points, colors = read_ply(path)
    assert points.shape == (0, 3) and colors.shape == (0, 3)


def test_ply_reads_ascii(tmp_path):
    path = tmp_path / "a.ply"
    path.write_text(
        "ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\n"
        "property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\n"
        "end_header\n1 2 3 10 20 30\n4 5 6 40 50 60\n"
    )
    points, colors = read_ply(path)
    np.testing.assert_array_equal(points, [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(colors, [[10, 20, 30], [40, 50, 60]])


def test_ply_write_checks_shapes(tmp_path):
    with pytest.raises(ValueError):
        write_ply(tmp_path / "x.ply", np.zeros((4, 2)))
    with pytest.raises(ValueError):
        write_ply(tmp_path / "x.ply", np.zeros((4, 3)), np.zeros((3, 3), np.uint8))


def test_ply_rejects_other_files(tmp_path):
    path = tmp_path / "x.ply"
    path.write_bytes(b"not a ply")
    with pytest.raises(ImageReadError, match="x.ply"):
        read_ply(path)


# -- colour maps -----------------------------------------------------------------------


def _colormap_ends(colormap: int) -> tuple[np.ndarray, np.ndarray]:
    ends = cv2.applyColorMap(np.array([[0], [255]], dtype=np.uint8), colormap)
    return ends[0, 0], ends[1, 0]


def test_colorize_disparity_spans_turbo_and_blacks_out_invalid():
    disparity = np.tile(np.linspace(2.0, 40.0, 16, dtype=np.float32), (4, 1))
    disparity[0, 3] = np.nan
    valid = np.ones_like(disparity, dtype=bool)
    valid[2, 5] = False
    picture = colorize_disparity(disparity, valid)
    assert picture.shape == (4, 16, 3) and picture.dtype == np.uint8
    low, high = _colormap_ends(cv2.COLORMAP_TURBO)
    np.testing.assert_array_equal(picture[1, 0], low)  # smallest disparity
    np.testing.assert_array_equal(picture[1, -1], high)  # largest (nearest)
    np.testing.assert_array_equal(picture[0, 3], [0, 0, 0])
    np.testing.assert_array_equal(picture[2, 5], [0, 0, 0])


def test_colorize_disparity_explicit_range_clips():
    disparity = np.array([[0.0, 5.0, 10.0, 20.0]], dtype=np.float32)
    picture = colorize_disparity(disparity, vmin=5.0, vmax=10.0)
    low, high = _colormap_ends(cv2.COLORMAP_TURBO)
    np.testing.assert_array_equal(picture[0, 0], low)
    np.testing.assert_array_equal(picture[0, 1], low)
    np.testing.assert_array_equal(picture[0, 2], high)
    np.testing.assert_array_equal(picture[0, 3], high)


def test_colorize_disparity_all_invalid_is_black():
    picture = colorize_disparity(np.full((3, 4), np.nan, dtype=np.float32))
    assert picture.shape == (3, 4, 3) and not picture.any()


def test_colorize_unit_maps_0_and_1_to_the_colormap_ends():
    values = np.array([[0.0, 1.0, np.nan, 2.0]], dtype=np.float32)
    picture = colorize_unit(values)
    low, high = _colormap_ends(cv2.COLORMAP_VIRIDIS)
    np.testing.assert_array_equal(picture[0, 0], low)
    np.testing.assert_array_equal(picture[0, 1], high)
    np.testing.assert_array_equal(picture[0, 2], [0, 0, 0])
    np.testing.assert_array_equal(picture[0, 3], high)  # clipped


# -- depth PNG -------------------------------------------------------------------------


def test_depth_to_png16_millimetres_and_invalid_zero(tmp_path):
    depth = np.array([[1.2344, 0.5, np.nan, -1.0], [0.0, 70.0, 65.535, np.inf]], np.float32)
    png = depth_to_png16(depth)
    assert png.dtype == np.uint16
    np.testing.assert_array_equal(png, [[1234, 500, 0, 0], [0, 0, 65535, 0]])
    path = tmp_path / "depth.png"
    assert cv2.imwrite(str(path), png)
    np.testing.assert_array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), png)


# -- images ----------------------------------------------------------------------------


def test_read_image_returns_rgb(tmp_path, rng):
    bgr = rng.integers(0, 256, size=(6, 9, 3), dtype=np.uint8)
    path = tmp_path / "c.png"
    cv2.imwrite(str(path), bgr)
    image = read_image(path)
    assert image.shape == (6, 9, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, bgr[:, :, ::-1])


def test_read_image_grey_16bit_and_alpha(tmp_path, rng):
    grey = rng.integers(0, 65536, size=(5, 4), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "g.png"), grey)
    image = read_image(tmp_path / "g.png")
    assert image.dtype == np.uint16 and image.shape == (5, 4, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image[:, :, channel], grey)
    bgra = rng.integers(0, 256, size=(5, 4, 4), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), bgra[:, :, 2::-1])


def test_read_image_errors_name_the_file(tmp_path):
    with pytest.raises(ImageReadError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(ImageReadError, match="text.png"):
        read_image(tmp_path / "text.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.png"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(ImageReadError, match="is not a file"):
        read_image(tmp_path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads anything")
def test_read_image_unreadable(tmp_path):
    path = tmp_path / "locked.png"
    cv2.imwrite(str(path), np.zeros((2, 2), np.uint8))
    path.chmod(0)
    with pytest.raises(ImageReadError, match="locked.png"):
        read_image(path)
