# SPDX-License-Identifier: Apache-2.0
"""The demo's Markdown report (backend, latency, accuracy) and its picture mosaic.

`parse_report_numbers` reads the report's tables back, so tests and CI can
check that what the report says is what was measured.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from s2m2_ros.image_io import colorize_disparity, colorize_unit

WEIGHTS_HINT = (
    "Get the weights with `s2m2-download M` (or from https://huggingface.co/minimok/s2m2) "
    "and run the demo again."
)
FALLBACK_WARNING = (
    "**Warning: no S²M² weights were found, so these results come from the classical "
    "SGBM baseline, not from the S²M² network.** " + WEIGHTS_HINT
)

# Row keys of `metrics.evaluate` and their labels in the report.
METRIC_ROWS = {
    "all": "all pixels",
    "nonocc": "non-occluded",
    "valid": "valid only (all)",
    "valid_nonocc": "valid only (non-occluded)",
}
METRIC_COLUMNS = {
    "bad1": "bad-1 %",
    "bad2": "bad-2 %",
    "bad3": "bad-3 %",
    "epe": "EPE px",
    "density": "density %",
    "coverage": "coverage %",
    "pixels": "pixels",
}
_INFO_LABELS = {
    "backend": "Backend",
    "model": "Model",
    "weights": "Weights",
    "device": "Device",
    "precision": "Precision",
    "dataset": "Data",
    "resolution": "Resolution",
    "frames": "Frames",
}


def _number(value: float, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def latency_summary(latency: Mapping[str, Sequence[float]]) -> dict[str, dict[str, float]]:
    """Per stage: sample count, median and 90th percentile in milliseconds."""
    summary = {}
    for stage, samples in latency.items():
        values = np.asarray(list(samples), dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            continue
        summary[stage] = {
            "count": float(values.size),
            "median": float(np.median(values)),
            "p90": float(np.percentile(values, 90)),
            "mean": float(values.mean()),
        }
    return summary


def frames_per_second(latency: Mapping[str, Sequence[float]], stage: str = "total") -> float:
    """Throughput ``1000 / mean(latency[stage])``; NaN without that stage."""
    values = np.asarray(list(latency.get(stage, ())), dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0 or values.mean() <= 0:
        return float("nan")
    return 1000.0 / float(values.mean())


def is_fallback(info: Mapping[str, Any]) -> bool:
    """Whether the run used the SGBM baseline instead of the network."""
    return bool(info.get("fallback")) or str(info.get("backend", "")).lower() == "sgbm"


def render_report(
    info: Mapping[str, Any],
    metrics: Mapping[str, Mapping[str, float]] | None,
    latency: Mapping[str, Sequence[float]],
) -> str:
    """The report as Markdown text; see `write_report`."""
    lines = ["# S²M² stereo demo report", ""]
    if is_fallback(info):
        lines += [f"> {FALLBACK_WARNING}", ""]

    lines += ["## Setup", ""]
    for key, label in _INFO_LABELS.items():
        if key in info:
            lines.append(f"- {label}: {info[key]}")
    for key, value in info.items():
        if key not in _INFO_LABELS and key not in ("fallback", "fps"):
            lines.append(f"- {key}: {value}")
    lines.append("")

    lines += ["## Latency", ""]
    summary = latency_summary(latency)
    if summary:
        lines += ["| stage | median ms | p90 ms | frames |", "| --- | ---: | ---: | ---: |"]
        for stage, row in summary.items():
            lines.append(
                f"| {stage} | {_number(row['median'])} | {_number(row['p90'])} "
                f"| {int(row['count'])} |"
            )
        lines.append("")
    else:
        lines += ["No latency samples were recorded.", ""]
    fps = info.get("fps", frames_per_second(latency))
    lines += [f"Frames per second: {_number(float(fps))}", ""]

    lines += ["## Accuracy", ""]
    if not metrics:
        lines += ["No ground truth: accuracy not measured.", ""]
    else:
        columns = [c for c in METRIC_COLUMNS if any(c in row for row in metrics.values())]
        lines.append(
            "| pixels evaluated | " + " | ".join(METRIC_COLUMNS[c] for c in columns) + " |"
        )
        lines.append("| --- |" + " ---: |" * len(columns))
        for key, row in metrics.items():
            cells = [
                _number(row[c], 0 if c == "pixels" else 2) if c in row else "" for c in columns
            ]
            lines.append(f"| {METRIC_ROWS.get(key, key)} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "bad-N: percentage of ground-truth pixels whose error exceeds N pixels; a pixel "
            "without a prediction counts as bad. EPE: mean absolute error over the pixels "
            "that have a prediction (density). Non-occluded: ground-truth pixels visible in "
            "the right image. Valid only: pixels the node published as valid; coverage is "
            "their share of the ground-truth pixels.",
            "",
        ]
    return "\n".join(lines)


def write_report(
    path: str | Path,
    info: Mapping[str, Any],
    metrics: Mapping[str, Mapping[str, float]] | None,
    latency: Mapping[str, Sequence[float]],
) -> Path:
    """Write the Markdown report and return its path.

    ``info``: what ran (``backend``, ``model``, ``weights``, ``device``,
    ``precision``, ``dataset``, ``resolution``, ``frames``, any more keys are
    listed too; ``fallback=True`` or ``backend="sgbm"`` adds the missing-weights
    warning; ``fps`` overrides the throughput computed from ``latency["total"]``).
    ``metrics``: `s2m2_ros.demo.metrics.evaluate`'s table, or None without GT.
    ``latency``: per stage, the per-frame milliseconds.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(info, metrics, latency), encoding="utf-8")
    return path


def _parse_cell(text: str) -> float:
    text = text.strip()
    return float("nan") if text in ("n/a", "") else float(text)


def parse_report_numbers(markdown: str) -> dict[str, Any]:
    """Numbers back out of a report: ``fallback``, ``fps``, ``latency``, ``metrics``.

    ``latency[stage]`` has ``median`` and ``p90``; ``metrics[row]`` is keyed
    like `metrics.evaluate` (``all``, ``nonocc``, ...) with columns ``bad1``…
    """
    labels_to_rows = {label: key for key, label in METRIC_ROWS.items()}
    labels_to_columns = {label: key for key, label in METRIC_COLUMNS.items()}
    result: dict[str, Any] = {
        "fallback": FALLBACK_WARNING in markdown,
        "fps": float("nan"),
        "latency": {},
        "metrics": {},
    }
    section = ""
    header: list[str] = []
    for line in markdown.splitlines():
        if line.startswith("## "):
            section = line[3:].strip().lower()
            header = []
            continue
        match = re.match(r"Frames per second: (\S+)", line)
        if match:
            result["fps"] = _parse_cell(match.group(1))
            continue
        if not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if set("".join(cells)) <= set("-: "):
            continue
        if not header:
            header = cells
            continue
        if section == "latency":
            result["latency"][cells[0]] = {
                "median": _parse_cell(cells[1]),
                "p90": _parse_cell(cells[2]),
            }
        elif section == "accuracy":
            row = {
                labels_to_columns.get(name, name): _parse_cell(value)
                for name, value in zip(header[1:], cells[1:], strict=False)
                if value
            }
            result["metrics"][labels_to_rows.get(cells[0], cells[0])] = row
    return result


# --- mosaic ----------------------------------------------------------------------


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    scale = max(tile.shape[1] / 640.0, 0.4)
    thickness = max(int(round(2 * scale)), 1)
    (text_width, text_height), baseline = cv2.getTextSize(
        text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness
    )
    margin = max(int(4 * scale), 2)
    # A dark box keeps white text readable on any tile, the all-white valid mask included.
    cv2.rectangle(
        tile, (0, 0), (text_width + 2 * margin, text_height + baseline + 2 * margin), (0, 0, 0), -1
    )
    origin = (margin, margin + text_height)
    cv2.putText(tile, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness)
    return tile


def _grey_tile(values: np.ndarray) -> np.ndarray:
    grey = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float32)), 0.0, 1.0) * 255.0
    return cv2.cvtColor(grey.astype(np.uint8), cv2.COLOR_GRAY2BGR)


def make_mosaic(
    left_rgb: np.ndarray,
    disparity: np.ndarray,
    depth: np.ndarray,
    confidence: np.ndarray,
    occlusion: np.ndarray,
    valid: np.ndarray,
) -> np.ndarray:
    """2×3 labelled BGR uint8 grid: left, disparity, depth / confidence, occlusion, valid.

    ``occlusion`` is in [0, 1], 1 = occluded (e.g. ``1 - visibility``), shown
    white; ``valid`` is a boolean mask, valid white. Disparity and depth use
    `image_io.colorize_disparity` (TURBO, near is red; depth clipped to its
    2–98th percentiles, printed in the label), confidence `image_io.colorize_unit`.
    Each tile has the left image's size, so the mosaic is ``2H × 3W × 3``.
    """
    left = np.asarray(left_rgb)
    height, width = left.shape[:2]
    if left.dtype != np.uint8:
        peak = max(float(left.max()), 1.0)
        left = (left.astype(np.float32) * (255.0 / peak)).astype(np.uint8)
    if left.ndim == 2:
        left_bgr = cv2.cvtColor(left, cv2.COLOR_GRAY2BGR)
    else:
        left_bgr = cv2.cvtColor(np.ascontiguousarray(left[..., :3]), cv2.COLOR_RGB2BGR)

    valid = np.asarray(valid, dtype=bool)
    depth = np.asarray(depth, dtype=np.float32)
    shown = np.isfinite(depth) & (depth > 0)
    depth_label = "depth"
    depth_range: dict[str, float] = {}
    if shown.any():
        low, high = (float(v) for v in np.percentile(depth[shown], [2, 98]))
        # Negated so near is red in both the disparity and the depth tile.
        depth_range = {"vmin": -high, "vmax": -low}
        depth_label = f"depth {low:.2f}-{high:.2f} m"

    tiles = {
        "left": left_bgr,
        "disparity": colorize_disparity(np.asarray(disparity, dtype=np.float32)),
        depth_label: colorize_disparity(np.where(shown, -depth, np.nan), **depth_range),
        "confidence": colorize_unit(np.asarray(confidence, dtype=np.float32)),
        "occlusion": _grey_tile(occlusion),
        "valid": _grey_tile(valid),
    }
    labelled = []
    for label, tile in tiles.items():
        if tile.shape[:2] != (height, width):
            tile = cv2.resize(tile, (width, height), interpolation=cv2.INTER_NEAREST)
        labelled.append(_label(np.ascontiguousarray(tile, dtype=np.uint8), label))
    return np.vstack([np.hstack(labelled[:3]), np.hstack(labelled[3:])])
