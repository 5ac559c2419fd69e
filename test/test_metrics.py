# SPDX-License-Identifier: Apache-2.0
"""Accuracy metrics on small hand-made arrays whose answers are worked out here."""

import math

import numpy as np
import pytest

from s2m2_ros.demo.metrics import disparity_metrics, evaluate, non_occluded_mask

NAN = float("nan")

# Ground truth with one unknown pixel, and a prediction with one hole.
GT = np.array([[1.0, 2.0, 3.0, NAN], [4.0, 5.0, 6.0, 7.0]], dtype=np.float32)
PRED = np.array([[1.5, 4.5, 3.0, 0.0], [NAN, 5.0, 9.0, 7.2]], dtype=np.float32)
# In reading order, skipping the unknown GT pixel: the absolute errors of the
# six predicted pixels, and one pixel without a prediction.
ERRORS = [0.5, 2.5, 0.0, 0.0, 3.0, 0.2]
MISSING = 1


def test_bad_n_counts_missing_predictions_as_bad():
    metrics = disparity_metrics(PRED, GT)
    count = len(ERRORS) + MISSING
    for threshold in (1, 2, 3):
        bad = sum(e > threshold for e in ERRORS) + MISSING
        assert metrics[f"bad{threshold}"] == pytest.approx(100.0 * bad / count, abs=1e-4)
    # bad-3 is strict: an error of exactly 3 px is not bad, so only the hole is.
    assert metrics["bad3"] == pytest.approx(100.0 / 7.0, abs=1e-4)


def test_epe_over_predicted_pixels_and_density():
    metrics = disparity_metrics(PRED, GT)
    assert metrics["epe"] == pytest.approx(sum(ERRORS) / len(ERRORS), abs=1e-5)
    assert metrics["density"] == pytest.approx(100.0 * 6 / 7, abs=1e-4)
    assert metrics["pixels"] == 7


def test_mask_restricts_the_evaluated_pixels():
    mask = np.ones_like(GT, dtype=bool)
    mask[1, 2] = False  # the 3 px error
    mask[1, 0] = False  # the hole
    metrics = disparity_metrics(PRED, GT, mask=mask)
    kept = [0.5, 2.5, 0.0, 0.0, 0.2]
    assert metrics["pixels"] == len(kept)
    assert metrics["bad1"] == pytest.approx(100.0 * 1 / 5)
    assert metrics["bad3"] == 0.0
    assert metrics["epe"] == pytest.approx(sum(kept) / 5)
    assert metrics["density"] == 100.0


def test_nothing_to_evaluate_gives_nan():
    metrics = disparity_metrics(PRED, np.full_like(GT, np.inf))
    assert metrics["pixels"] == 0
    assert math.isnan(metrics["bad1"]) and math.isnan(metrics["epe"])


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError):
        disparity_metrics(PRED, GT[:, :3])


def test_non_occluded_mask_of_a_foreground_bar():
    # One row: background at disparity 1, a foreground bar at columns 5-6 with
    # disparity 4. In the right image the bar lands on columns 1-2, hiding the
    # background pixels that land there (left columns 2 and 3); left column 0
    # lands outside the right image.
    gt = np.array([[1, 1, 1, 1, 1, 4, 4, 1, 1, 1]], dtype=np.float32)
    expected = np.array([[0, 1, 0, 0, 1, 1, 1, 1, 1, 1]], dtype=bool)
    np.testing.assert_array_equal(non_occluded_mask(gt), expected)


def test_non_occluded_mask_excludes_unknown_ground_truth():
    gt = np.array([[2, 2, NAN, 2, 2]], dtype=np.float32)
    np.testing.assert_array_equal(non_occluded_mask(gt), [[0, 0, 0, 1, 1]])


def test_evaluate_table_rows():
    gt = np.array([[1, 1, 1, 1, 1, 4, 4, 1, 1, 1]], dtype=np.float32)
    # Wrong by 5 px on the occluded pixels (columns 0, 2, 3), right elsewhere.
    pred = gt.copy()
    pred[0, [0, 2, 3]] += 5.0
    valid = np.ones_like(gt, dtype=bool)
    valid[0, [2, 3, 8]] = False
    table = evaluate(pred, gt, valid_pred=valid)
    assert table["all"]["bad3"] == pytest.approx(30.0)
    assert table["all"]["epe"] == pytest.approx(15.0 / 10)
    assert table["nonocc"]["pixels"] == 7
    assert table["nonocc"]["bad1"] == 0.0
    # Valid pixels: 7 of the 10; the only bad one is column 0.
    assert table["valid"]["pixels"] == 7
    assert table["valid"]["coverage"] == pytest.approx(70.0)
    assert table["valid"]["bad3"] == pytest.approx(100.0 / 7)
    # Valid and non-occluded: the 7 non-occluded minus column 8.
    assert table["valid_nonocc"]["pixels"] == 6
    assert table["valid_nonocc"]["coverage"] == pytest.approx(100.0 * 6 / 7)
    assert table["valid_nonocc"]["bad1"] == 0.0


def test_evaluate_uses_given_visibility():
    gt = np.full((2, 4), 1.0, dtype=np.float32)
    pred = gt + np.array([[0, 0, 4, 4], [0, 0, 0, 0]], dtype=np.float32)
    visibility = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], dtype=np.float32)
    table = evaluate(pred, gt, visibility_gt=visibility)
    assert table["all"]["bad3"] == pytest.approx(25.0)
    assert table["nonocc"]["bad3"] == 0.0
    assert table["nonocc"]["pixels"] == 6
    assert "valid" not in table
