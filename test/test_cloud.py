# SPDX-License-Identifier: Apache-2.0
"""PointCloud2 layouts, read back byte by byte with struct."""

import math
import struct

import numpy as np
import pytest

from s2m2_ros import cloud
from s2m2_ros.cloud import FLOAT32, CloudField, build_cloud, cloud_from_depth, point_dtype
from s2m2_ros.geometry import StereoCamera, points_from_depth

HEIGHT, WIDTH = 3, 4


def sample_points() -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.uniform(-2.0, 5.0, (HEIGHT, WIDTH, 3)).astype(np.float32)


def sample_mask() -> np.ndarray:
    valid = np.ones((HEIGHT, WIDTH), dtype=bool)
    valid[0, 1] = valid[2, 3] = valid[1, 0] = False
    return valid


def unpack(layout, index: int, rgb_offset: int | None) -> tuple:
    """x, y, z and the rgb word of point ``index``, read with struct."""
    raw = layout.data.tobytes()
    base = index * layout.point_step
    xyz = struct.unpack_from("<3f", raw, base)
    rgb = struct.unpack_from("<I", raw, base + rgb_offset)[0] if rgb_offset is not None else None
    return xyz, rgb


def test_organized_colour_cloud_layout_and_bytes():
    points, valid = sample_points(), sample_mask()
    colors = np.arange(HEIGHT * WIDTH * 3, dtype=np.uint8).reshape(HEIGHT, WIDTH, 3) * 7
    layout = build_cloud(points, valid, colors)

    assert layout.fields == [
        CloudField("x", 0, FLOAT32, 1),
        CloudField("y", 4, FLOAT32, 1),
        CloudField("z", 8, FLOAT32, 1),
        CloudField("rgb", 12, FLOAT32, 1),
    ]
    assert (layout.point_step, layout.row_step) == (16, 16 * WIDTH)
    assert (layout.height, layout.width, layout.is_dense) == (HEIGHT, WIDTH, False)
    assert len(layout.data.tobytes()) == 16 * HEIGHT * WIDTH
    assert not layout.is_bigendian

    for row in range(HEIGHT):
        for column in range(WIDTH):
            xyz, rgb = unpack(layout, row * WIDTH + column, 12)
            red, green, blue = (int(c) for c in colors[row, column])
            assert rgb == (red << 16) | (green << 8) | blue
            if valid[row, column]:
                assert xyz == tuple(float(value) for value in points[row, column])
            else:
                assert all(math.isnan(value) for value in xyz)


def test_bgr_mono_and_16_bit_colours_pack_the_same_rgb():
    points = sample_points()
    rgb = np.random.default_rng(1).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    from_rgb = build_cloud(points, colors=rgb)
    from_bgr = build_cloud(points, colors=rgb[..., ::-1], color_order="bgr")
    from_bgra = build_cloud(
        points, colors=np.dstack([rgb[..., ::-1], np.full((HEIGHT, WIDTH), 255, np.uint8)]),
        color_order="bgr",
    )
    assert from_bgr.data.tobytes() == from_rgb.data.tobytes()
    assert from_bgra.data.tobytes() == from_rgb.data.tobytes()

    grey = rgb[..., 0]
    mono = build_cloud(points, colors=grey)
    words = np.frombuffer(mono.data.tobytes(), dtype=np.dtype("<u4")).reshape(-1, 4)[:, 3]
    expected = grey.reshape(-1).astype(np.uint32) * 0x010101
    np.testing.assert_array_equal(words, expected)

    wide = build_cloud(points, colors=grey.astype(np.uint16) << 8 | 0x7F)
    assert wide.data.tobytes() == mono.data.tobytes()

    wide_rgb = build_cloud(points, colors=rgb.astype(np.uint16) << 8 | 0x7F)
    assert wide_rgb.data.tobytes() == from_rgb.data.tobytes()
    from_rgba = build_cloud(
        points, colors=np.dstack([rgb, np.full((HEIGHT, WIDTH), 9, np.uint8)]))
    assert from_rgba.data.tobytes() == from_rgb.data.tobytes()


def test_without_colour_there_is_no_rgb_field():
    points = sample_points()
    layout = build_cloud(points, sample_mask())
    assert [field.name for field in layout.fields] == ["x", "y", "z"]
    assert layout.point_step == 12
    values = np.frombuffer(layout.data.tobytes(), dtype="<f4").reshape(HEIGHT, WIDTH, 3)
    valid = sample_mask()
    np.testing.assert_array_equal(values[valid], points[valid])
    assert np.isnan(values[~valid]).all()


def test_dense_cloud_drops_invalid_and_non_finite_points():
    points, valid = sample_points(), sample_mask()
    points[2, 0, 2] = np.nan  # marked valid but not finite: must still go
    colors = np.random.default_rng(2).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    layout = build_cloud(points, valid, colors, organized=False)

    keep = valid.copy()
    keep[2, 0] = False
    assert (layout.height, layout.width) == (1, int(keep.sum()))
    assert layout.is_dense
    assert layout.row_step == layout.width * layout.point_step
    for index, (row, column) in enumerate(zip(*np.nonzero(keep), strict=True)):
        xyz, rgb = unpack(layout, index, 12)
        assert xyz == tuple(float(value) for value in points[row, column])
        red, green, blue = (int(c) for c in colors[row, column])
        assert rgb == (red << 16) | (green << 8) | blue


def test_padded_layout_is_the_point_cloud_node_one():
    points = sample_points()
    colors = np.full((HEIGHT, WIDTH, 3), (1, 2, 3), dtype=np.uint8)
    layout = build_cloud(points, colors=colors, padded=True)
    assert [(field.name, field.offset) for field in layout.fields] == [
        ("x", 0), ("y", 4), ("z", 8), ("rgb", 16)
    ]
    assert layout.point_step == 32
    raw = layout.data.tobytes()
    for index in range(HEIGHT * WIDTH):
        base = index * 32
        assert struct.unpack_from("<I", raw, base + 16)[0] == 0x010203
        assert raw[base + 12:base + 16] == bytes(4)  # padding is zeroed
        assert raw[base + 20:base + 32] == bytes(12)
    assert build_cloud(points, padded=True).point_step == 16


@pytest.fixture(params=[1 << 14, 5], ids=["one block", "blocks of 5 points"])
def block_size(request, monkeypatch):
    """Run with the real block size and with blocks that split rows and images."""
    monkeypatch.setattr(cloud, "_BLOCK_POINTS", request.param)
    return request.param


@pytest.mark.parametrize("organized", [True, False])
@pytest.mark.parametrize("padded", [False, True])
def test_cloud_from_depth_equals_back_projected_points(block_size, organized, padded):
    camera = StereoCamera.from_projections(
        [400, 0, 1.5, 0, 0, 410, 1.0, 0, 0, 0, 1, 0],
        [400, 0, 1.5, -40, 0, 410, 1.0, 0, 0, 0, 1, 0],
        WIDTH, HEIGHT,
    )
    depth = np.random.default_rng(9).uniform(0.5, 4.0, (HEIGHT, WIDTH)).astype(np.float32)
    depth[2, 2] = np.nan
    valid = sample_mask()
    colors = np.random.default_rng(3).integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8)
    options = {"organized": organized, "padded": padded}

    direct = cloud_from_depth(depth, camera, valid, colors, **options)
    via_points = build_cloud(points_from_depth(depth, camera), valid, colors, **options)
    # Equal as float32 words (NaN == NaN here: NaN payload bits may differ).
    np.testing.assert_array_equal(
        np.frombuffer(direct.data, dtype="<f4"), np.frombuffer(via_points.data, dtype="<f4")
    )
    assert (direct.height, direct.width) == (via_points.height, via_points.width)

    # And the numbers are the pinhole back-projection, point by point.
    keep = valid & np.isfinite(depth)
    read = np.frombuffer(direct.data, dtype=point_dtype(direct.fields, direct.point_step))
    pixels = [(v, u) for v in range(HEIGHT) for u in range(WIDTH)]
    if not organized:
        pixels = [(v, u) for v, u in pixels if keep[v, u]]
    assert read.size == len(pixels)
    for point, (v, u) in zip(read, pixels, strict=True):
        if not keep[v, u]:
            assert np.isnan([point["x"], point["y"], point["z"]]).all()
            continue
        z = float(depth[v, u])
        assert point["z"] == z
        assert point["x"] == pytest.approx((u - 1.5) * z / 400, rel=1e-6)
        assert point["y"] == pytest.approx((v - 1.0) * z / 410, rel=1e-6)
        assert point["rgb"] == int(colors[v, u]) * 0x010101


def test_build_cloud_blocks_match_one_pass(block_size):
    points, valid = sample_points(), sample_mask()
    rgb = np.random.default_rng(4).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    for organized in (True, False):
        layout = build_cloud(points, valid, rgb, organized=organized)
        words = np.frombuffer(layout.data, dtype="<f4").reshape(-1, 4)
        expected = points[valid] if not organized else np.where(valid[..., None], points, np.nan)
        np.testing.assert_array_equal(words[:, :3], expected.reshape(-1, 3))
        rgb_words = words.view("<u4")[:, 3]
        chosen = rgb[valid] if not organized else rgb.reshape(-1, 3)
        np.testing.assert_array_equal(
            rgb_words,
            chosen[:, 0].astype(np.uint32) << 16 | chosen[:, 1].astype(np.uint32) << 8
            | chosen[:, 2],
        )


def test_bad_inputs_are_rejected():
    points = sample_points()
    with pytest.raises(ValueError, match="H×W×3"):
        build_cloud(points[..., :2])
    with pytest.raises(ValueError, match="mask"):
        build_cloud(points, np.ones((HEIGHT + 1, WIDTH), dtype=bool))
    with pytest.raises(ValueError, match="colours"):
        build_cloud(points, colors=np.zeros((HEIGHT, WIDTH + 1, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="color_order"):
        build_cloud(points, colors=np.zeros((HEIGHT, WIDTH, 3), np.uint8), color_order="hsv")
