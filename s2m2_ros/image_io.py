# SPDX-License-Identifier: Apache-2.0
"""Files and pictures for stereo results: PFM and PLY readers/writers, colour maps,
16-bit depth PNGs and image loading with clear errors.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

PathLike = str | os.PathLike[str]

# Largest depth a 16-bit millimetre PNG can hold.
PNG16_MAX_DEPTH_M = 65.535


class ImageReadError(ValueError):
    """An image or data file is missing, unreadable or malformed."""


# -- PFM ---------------------------------------------------------------------------------


def write_pfm(path: PathLike, array: np.ndarray) -> None:
    """Write an H×W (``Pf``) or H×W×3 (``PF``) float array as little-endian PFM."""
    data = np.asarray(array, dtype=np.float32)
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[:, :, 0]
    if data.ndim == 2:
        header = "Pf"
    elif data.ndim == 3 and data.shape[2] == 3:
        header = "PF"
    else:
        raise ValueError(f"PFM holds H×W or H×W×3 arrays, got shape {data.shape}")
    height, width = data.shape[:2]
    # PFM stores rows bottom to top; a negative scale means little-endian.
    rows = np.ascontiguousarray(data[::-1], dtype="<f4")
    with open(path, "wb") as file:
        file.write(f"{header}\n{width} {height}\n-1.0\n".encode("ascii"))
        file.write(rows.tobytes())


def _read_token(file, path: Path) -> bytes:
    token = b""
    while True:
        char = file.read(1)
        if not char:
            raise ImageReadError(f"{path}: truncated PFM header")
        if char.isspace():
            if token:
                return token
            continue
        token += char
        if len(token) > 32:
            raise ImageReadError(f"{path}: not a PFM file (malformed header)")


def read_pfm(path: PathLike) -> np.ndarray:
    """Read a PFM file into an H×W (or H×W×3) float32 array, top row first."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            kind = _read_token(file, path)
            if kind not in (b"Pf", b"PF"):
                raise ImageReadError(f"{path}: not a PFM file (header {kind[:8]!r})")
            try:
                width = int(_read_token(file, path))
                height = int(_read_token(file, path))
                scale = float(_read_token(file, path))
            except ValueError as error:
                raise ImageReadError(f"{path}: malformed PFM header ({error})") from error
            payload = file.read()
    except OSError as error:
        raise ImageReadError(f"{path}: cannot read ({error.strerror or error})") from error
    if width <= 0 or height <= 0 or scale == 0.0:
        raise ImageReadError(f"{path}: invalid PFM size {width}×{height} or scale {scale}")
    channels = 3 if kind == b"PF" else 1
    count = width * height * channels
    if len(payload) < 4 * count:
        raise ImageReadError(
            f"{path}: truncated PFM data ({len(payload)} bytes for {width}×{height}×{channels})"
        )
    dtype = "<f4" if scale < 0 else ">f4"
    data = np.frombuffer(payload, dtype=dtype, count=count)
    shape = (height, width, 3) if channels == 3 else (height, width)
    return data.reshape(shape)[::-1].astype(np.float32)


# -- PLY ---------------------------------------------------------------------------------

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip


def write_ply(path: PathLike, points: np.ndarray, colors: np.ndarray | None = None) -> None:
    """Write N×3 points (and N×3 uint8 RGB colours) as a binary little-endian PLY."""
    xyz = np.asarray(points, dtype=np.float32)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"points must be N×3, got shape {xyz.shape}")
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colors is not None:
        rgb = np.asarray(colors)
        if rgb.shape != xyz.shape:
            raise ValueError(f"colors must be N×3 like points {xyz.shape}, got {rgb.shape}")
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertices = np.empty(len(xyz), dtype=fields)
    vertices["x"], vertices["y"], vertices["z"] = xyz.T
    if colors is not None:
        rgb = np.clip(rgb, 0, 255).astype(np.uint8)
        vertices["red"], vertices["green"], vertices["blue"] = rgb.T
    header = ["ply", "format binary_little_endian 1.0", "comment written by s2m2_ros",
              f"element vertex {len(xyz)}", "property float x", "property float y",
              "property float z"]  # fmt: skip
    if colors is not None:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    header.append("end_header")
    with open(path, "wb") as file:
        file.write(("\n".join(header) + "\n").encode("ascii"))
        file.write(vertices.tobytes())


def read_ply(path: PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Read the vertices of a PLY point cloud: (N×3 float32 xyz, N×3 uint8 rgb or None).

    A small parser for the files :func:`write_ply` and common tools produce: ``ascii``
    or binary, a ``vertex`` element with scalar properties (faces and lists are not
    supported).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ImageReadError(f"{path}: cannot read ({error.strerror or error})") from error
    marker = data.find(b"end_header")
    if not data.startswith(b"ply") or marker < 0:
        raise ImageReadError(f"{path}: not a PLY file")
    newline = data.find(b"\n", marker)
    body = data[newline + 1 :] if newline >= 0 else b""
    lines = data[:marker].decode("ascii", errors="replace").splitlines()
    fmt, count, fields, element = None, None, [], None
    for line in lines:
        words = line.split()
        if not words:
            continue
        if words[0] == "format":
            fmt = words[1]
        elif words[0] == "element":
            element = words[1]
            if element == "vertex":
                count = int(words[2])
            elif count is None:
                raise ImageReadError(f"{path}: elements before 'vertex' are not supported")
        elif words[0] == "property" and element == "vertex":
            if words[1] == "list" or words[1] not in _PLY_TYPES:
                raise ImageReadError(f"{path}: unsupported vertex property {line.strip()!r}")
            fields.append((words[2], _PLY_TYPES[words[1]]))
    if count is None or not fields:
        raise ImageReadError(f"{path}: no vertex element")
    names = [name for name, _ in fields]
    if not {"x", "y", "z"} <= set(names):
        raise ImageReadError(f"{path}: vertices lack x, y, z")
    if fmt == "ascii":
        values = np.array(body.decode("ascii").split()[: count * len(fields)], dtype=np.float64)
        if values.size < count * len(fields):
            raise ImageReadError(f"{path}: truncated PLY data")
        table = values.reshape(count, len(fields))
        vertices = {name: table[:, index] for index, name in enumerate(names)}
    elif fmt in ("binary_little_endian", "binary_big_endian"):
        order = "<" if fmt == "binary_little_endian" else ">"
        dtype = np.dtype([(name, order + code) for name, code in fields])
        if len(body) < count * dtype.itemsize:
            raise ImageReadError(f"{path}: truncated PLY data")
        table = np.frombuffer(body, dtype=dtype, count=count)
        vertices = {name: table[name] for name in names}
    else:
        raise ImageReadError(f"{path}: unsupported PLY format {fmt!r}")
    points = np.stack([vertices[axis] for axis in "xyz"], axis=1).astype(np.float32)
    colors = None
    if {"red", "green", "blue"} <= set(names):
        colors = np.stack([vertices[c] for c in ("red", "green", "blue")], axis=1)
        colors = colors.astype(np.uint8)
    return points, colors


# -- colour maps -------------------------------------------------------------------------


def _apply_colormap(unit: np.ndarray, valid: np.ndarray, colormap: int) -> np.ndarray:
    levels = np.zeros(unit.shape, dtype=np.uint8)
    levels[valid] = np.round(np.clip(unit[valid], 0.0, 1.0) * 255.0).astype(np.uint8)
    colored = cv2.applyColorMap(levels, colormap)
    colored[~valid] = 0
    return colored


def colorize_disparity(
    disparity: np.ndarray,
    valid: np.ndarray | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
) -> np.ndarray:
    """H×W×3 uint8 BGR picture of a disparity map (TURBO: near is red), invalid black.

    ``valid`` defaults to the finite pixels; ``vmin``/``vmax`` default to the range of
    the valid disparities.
    """
    disparity = np.asarray(disparity, dtype=np.float32)
    if disparity.ndim != 2:
        raise ValueError(f"disparity must be H×W, got shape {disparity.shape}")
    mask = np.isfinite(disparity)
    if valid is not None:
        mask &= np.asarray(valid, dtype=bool)
    if not mask.any():
        return np.zeros((*disparity.shape, 3), dtype=np.uint8)
    low = float(disparity[mask].min()) if vmin is None else float(vmin)
    high = float(disparity[mask].max()) if vmax is None else float(vmax)
    span = high - low if high > low else 1.0
    return _apply_colormap((disparity - low) / span, mask, cv2.COLORMAP_TURBO)


def colorize_unit(values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """H×W×3 uint8 BGR picture of a map in [0, 1] (confidence, occlusion); NaN black."""
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2:
        raise ValueError(f"values must be H×W, got shape {values.shape}")
    mask = np.isfinite(values)
    if valid is not None:
        mask &= np.asarray(valid, dtype=bool)
    return _apply_colormap(values, mask, cv2.COLORMAP_VIRIDIS)


def depth_to_png16(depth_m: np.ndarray) -> np.ndarray:
    """Depth in metres → uint16 millimetres, 0 where invalid (non-finite, ≤ 0, or too far
    for 16 bits: beyond 65.535 m), the convention of ROS ``16UC1`` depth images.
    """
    depth = np.asarray(depth_m, dtype=np.float64)
    millimetres = np.round(depth * 1000.0)
    keep = np.isfinite(millimetres) & (millimetres > 0) & (millimetres <= 65535)
    result = np.zeros(depth.shape, dtype=np.uint16)
    result[keep] = millimetres[keep].astype(np.uint16)
    return result


# -- images ------------------------------------------------------------------------------


def read_image(path: PathLike) -> np.ndarray:
    """Read an image file as an H×W×3 RGB array (uint8, or uint16 for 16-bit files).

    Grey images are replicated to three channels and alpha is dropped. Raises
    :class:`ImageReadError` for missing, unreadable or undecodable files.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: image file does not exist")
    if not path.is_file():
        raise ImageReadError(f"{path}: is not a file")
    try:
        # imdecode from bytes avoids cv2.imread's silent None and non-ASCII path issues.
        encoded = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise ImageReadError(f"{path}: cannot read ({error.strerror or error})") from error
    image = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED) if encoded.size else None
    if image is None:
        raise ImageReadError(f"{path}: not a readable image (unsupported format or corrupt)")
    if image.dtype not in (np.uint8, np.uint16):
        # e.g. 32-bit float TIFF/EXR: take it as 0–255 intensities like the engine does.
        image = image.astype(np.float32)
    if image.ndim == 2:
        return np.repeat(image[:, :, np.newaxis], 3, axis=2)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    if image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    raise ImageReadError(f"{path}: unsupported channel count {image.shape[2]}")


def write_image(path: PathLike, image_bgr: np.ndarray) -> None:
    """Write an image with cv2, raising OSError instead of returning False."""
    path = Path(path)
    if not cv2.imwrite(str(path), image_bgr):
        raise OSError(f"could not write {path}")


__all__ = [
    "ImageReadError",
    "colorize_disparity",
    "colorize_unit",
    "depth_to_png16",
    "read_image",
    "read_pfm",
    "read_ply",
    "write_image",
    "write_pfm",
    "write_ply",
]
