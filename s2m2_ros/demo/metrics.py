# SPDX-License-Identifier: Apache-2.0
"""Disparity accuracy against ground truth: bad-N percentages, end-point error, density.

Conventions (Middlebury-style, chosen so sparse and dense methods compare fairly):

* Only pixels with finite ground truth are evaluated (NaN or inf = unknown).
* A pixel whose prediction is missing (non-finite) counts as *bad* for every
  threshold: a hole is not a correct answer.
* EPE is the mean absolute error over the evaluated pixels that do have a
  finite prediction; ``density`` says what percentage of pixels that is, so a
  low EPE at a low density is visible as such.
"""

from __future__ import annotations

import numpy as np

BAD_THRESHOLDS_PX = (1.0, 2.0, 3.0)


def disparity_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    mask: np.ndarray | None = None,
    thresholds_px: tuple[float, ...] = BAD_THRESHOLDS_PX,
) -> dict[str, float]:
    """Accuracy of ``pred`` over pixels where ``gt`` is finite (and ``mask`` is true).

    Returns ``bad1``, ``bad2``, ``bad3`` (percent of evaluated pixels with
    ``|pred - gt| > N`` or no prediction; keys follow ``thresholds_px``),
    ``epe`` (pixels, over finite predictions), ``density`` (percent of
    evaluated pixels with a finite prediction) and ``pixels`` (how many were
    evaluated). Percentages and EPE are NaN when nothing is evaluated.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    region = np.isfinite(gt)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != gt.shape:
            raise ValueError(f"mask {mask.shape} and ground truth {gt.shape} differ in shape")
        region &= mask
    count = int(region.sum())
    predicted = region & np.isfinite(pred)
    error = np.abs(pred[predicted] - gt[predicted])
    missing = count - error.size

    result: dict[str, float] = {}
    for threshold in thresholds_px:
        key = f"bad{threshold:g}"
        bad = int(np.count_nonzero(error > threshold)) + missing
        result[key] = 100.0 * bad / count if count else float("nan")
    result["epe"] = float(error.mean()) if error.size else float("nan")
    result["density"] = 100.0 * error.size / count if count else float("nan")
    result["pixels"] = float(count)
    return result


def non_occluded_mask(gt: np.ndarray, tolerance_px: float = 1.0) -> np.ndarray:
    """Pixels of the left view whose ground-truth match is visible in the right image.

    Only the left ground truth is needed (the Motorcycle pair has no right
    one). Every left pixel is splatted into a right-image z-buffer at the two
    columns around ``x - d`` (floor and ceil: this closes the one-column gaps
    that rounding leaves on slanted surfaces, at the price of growing an
    occluder by under a pixel when its disparity is fractional). A pixel is
    non-occluded when its GT is finite, ``x - d`` rounds into the right image,
    and no surface nearer by more than ``tolerance_px`` of disparity landed
    on that column.
    """
    gt = np.asarray(gt, dtype=np.float32)
    height, width = gt.shape
    known = np.isfinite(gt)
    columns = np.arange(width, dtype=np.float32)[None, :]
    target = columns - np.where(known, gt, 0.0)
    nearest_column = np.rint(target)
    inside = known & (nearest_column >= 0) & (nearest_column < width)
    row_start = (np.arange(height) * width)[:, None]

    # Z-buffer: the largest disparity (nearest surface) landing on each right-image column.
    nearest = np.full(height * width, -np.inf, dtype=np.float32)
    for splat in (np.floor(target), np.ceil(target)):
        lands = known & (splat >= 0) & (splat < width)
        flat = np.broadcast_to(row_start, gt.shape)[lands] + splat[lands].astype(np.intp)
        np.maximum.at(nearest, flat, gt[lands])

    flat = np.broadcast_to(row_start, gt.shape)[inside] + nearest_column[inside].astype(np.intp)
    seen = np.zeros_like(known)
    seen[inside] = gt[inside] >= nearest[flat] - tolerance_px
    return seen


def evaluate(
    pred: np.ndarray,
    gt: np.ndarray,
    visibility_gt: np.ndarray | None = None,
    valid_pred: np.ndarray | None = None,
) -> dict[str, dict[str, float]]:
    """The demo's accuracy table.

    Rows: ``all`` (every pixel with GT) and ``nonocc`` (GT pixels visible in
    the right view: ``visibility_gt > 0.5`` when given, else
    `non_occluded_mask`), both over the raw prediction. With ``valid_pred``
    (the pixels the node published as valid) also ``valid`` and
    ``valid_nonocc``: the same regions restricted to valid pixels, each with a
    ``coverage`` entry, the percentage of that region's GT pixels marked valid.
    """
    gt = np.asarray(gt, dtype=np.float32)
    nonocc = non_occluded_mask(gt) if visibility_gt is None else np.asarray(visibility_gt) > 0.5
    known = np.isfinite(gt)
    table = {
        "all": disparity_metrics(pred, gt),
        "nonocc": disparity_metrics(pred, gt, mask=nonocc),
    }
    if valid_pred is not None:
        valid = np.asarray(valid_pred, dtype=bool)
        for name, region in (("valid", known), ("valid_nonocc", known & nonocc)):
            row = disparity_metrics(pred, gt, mask=region & valid)
            total = int(region.sum())
            row["coverage"] = 100.0 * row["pixels"] / total if total else float("nan")
            table[name] = row
    return table
