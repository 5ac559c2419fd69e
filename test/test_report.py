# SPDX-License-Identifier: Apache-2.0
"""Markdown report contents and the picture mosaic."""

import math

import numpy as np
import pytest

from s2m2_ros.demo.metrics import evaluate
from s2m2_ros.demo.report import (
    latency_summary,
    make_mosaic,
    parse_report_numbers,
    write_report,
)

LATENCY = {
    "network": [10.0, 20.0, 30.0, 40.0, 50.0],
    "total": [20.0, 30.0, 40.0, 50.0, 60.0],
}


def _metrics():
    gt = np.array([[1, 1, 1, 1, 1, 4, 4, 1, 1, 1]], dtype=np.float32)
    pred = gt.copy()
    pred[0, [0, 2, 3]] += 5.0
    pred[0, 9] = np.nan
    valid = np.isfinite(pred)
    valid[0, 2] = False
    return evaluate(pred, gt, valid_pred=valid)


def test_report_states_the_numbers_it_was_given(tmp_path):
    metrics = _metrics()
    info = {"backend": "s2m2", "model": "S2M2-M", "device": "cuda:0", "precision": "fp16"}
    path = write_report(tmp_path / "out" / "report.md", info, metrics, LATENCY)
    text = path.read_text()
    for value in info.values():
        assert value in text
    assert "Warning" not in text

    parsed = parse_report_numbers(text)
    assert parsed["fallback"] is False
    # Medians and 90th percentiles worked out by hand (linear interpolation).
    assert parsed["latency"]["network"] == {"median": 30.0, "p90": 46.0}
    assert parsed["latency"]["total"] == {"median": 40.0, "p90": 56.0}
    assert parsed["fps"] == pytest.approx(1000.0 / 40.0, abs=0.01)
    assert set(parsed["metrics"]) == {"all", "nonocc", "valid", "valid_nonocc"}
    for row, values in metrics.items():
        for column, value in values.items():
            assert parsed["metrics"][row][column] == pytest.approx(value, abs=0.006), (row, column)


def test_report_hand_checked_accuracy_row(tmp_path):
    text = write_report(tmp_path / "r.md", {"backend": "s2m2"}, _metrics(), LATENCY).read_text()
    row = parse_report_numbers(text)["metrics"]["all"]
    # 10 GT pixels: 3 off by 5 px, 1 missing; EPE over the 9 predicted = 15 / 9.
    assert row["bad3"] == pytest.approx(40.0)
    assert row["epe"] == pytest.approx(1.67, abs=0.005)
    assert row["density"] == pytest.approx(90.0)


def test_sgbm_fallback_warns_and_says_how_to_get_weights(tmp_path):
    text = write_report(tmp_path / "r.md", {"backend": "sgbm"}, None, LATENCY).read_text()
    assert "Warning" in text and "SGBM" in text
    assert "s2m2-download M" in text
    assert "https://huggingface.co/minimok/s2m2" in text
    parsed = parse_report_numbers(text)
    assert parsed["fallback"] is True
    assert parsed["metrics"] == {}
    assert "No ground truth" in text


def test_report_without_latency(tmp_path):
    text = write_report(tmp_path / "r.md", {"backend": "s2m2"}, None, {}).read_text()
    assert math.isnan(parse_report_numbers(text)["fps"])


def test_latency_summary_ignores_non_finite_samples():
    summary = latency_summary({"stage": [1.0, float("nan"), 3.0], "empty": []})
    assert summary["stage"]["median"] == 2.0 and summary["stage"]["count"] == 2
    assert "empty" not in summary


def test_mosaic_layout():
    height, width = 40, 60
    rng = np.random.default_rng(0)
    left = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    disparity = rng.uniform(1, 20, (height, width)).astype(np.float32)
    disparity[-5:] = np.nan
    depth = 10.0 / disparity
    confidence = rng.uniform(0, 1, (height, width)).astype(np.float32)
    occlusion = np.zeros((height, width), np.float32)
    occlusion[:, :10] = 1.0
    valid = np.isfinite(disparity)
    mosaic = make_mosaic(left, disparity, depth, confidence, occlusion, valid)
    assert mosaic.shape == (2 * height, 3 * width, 3) and mosaic.dtype == np.uint8
    # Below the label strip the left tile is the left image in BGR order.
    np.testing.assert_array_equal(mosaic[30:height, :width], left[30:, :, ::-1])
    # Bottom row: occlusion tile white where occluded, valid tile black where invalid.
    occlusion_tile = mosaic[height:, width : 2 * width]
    assert (occlusion_tile[30:, :10] == 255).all() and (occlusion_tile[30:, 10:] == 0).all()
    valid_tile = mosaic[height:, 2 * width :]
    assert (valid_tile[30:-5] == 255).all() and (valid_tile[-5:] == 0).all()
    # Invalid disparities are black in the disparity tile, valid ones are not.
    disparity_tile = mosaic[:height, width : 2 * width]
    assert (disparity_tile[-5:] == 0).all()
    assert disparity_tile[30:-5].max(axis=2).min() > 0
