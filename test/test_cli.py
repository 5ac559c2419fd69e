# SPDX-License-Identifier: Apache-2.0
"""``s2m2-infer`` run in-process on a tiny checkpoint and small PNG pairs."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from s2m2_ros.cli import main
from s2m2_ros.engine import StereoEngine
from s2m2_ros.image_io import read_image, read_pfm, read_ply
from s2m2_ros.model import S2M2

HEIGHT, WIDTH = 30, 45
FOCAL_PX, BASELINE_M = 40.0, 0.1


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    checkpoint = folder / "ckpt.pth"
    torch.save({"state_dict": S2M2(32, 1).state_dict()}, checkpoint)
    noise = np.random.default_rng(0).random((HEIGHT, WIDTH, 3)) * 255
    left = cv2.GaussianBlur(noise.astype(np.uint8), (3, 3), 0)
    cv2.imwrite(str(folder / "left.png"), left)
    cv2.imwrite(str(folder / "right.png"), np.roll(left, -3, axis=1))
    cv2.imwrite(str(folder / "small.png"), left[:-2])
    (folder / "text.png").write_text("not an image")
    (folder / "text.pth").write_text("not a checkpoint")
    return {
        "checkpoint": checkpoint,
        "left": folder / "left.png",
        "right": folder / "right.png",
        "small": folder / "small.png",
        "text_png": folder / "text.png",
        "text_pth": folder / "text.pth",
    }


@pytest.fixture(scope="module")
def expected_disparity(files) -> np.ndarray:
    engine = StereoEngine.from_model_name(weights=files["checkpoint"], device="cpu")
    return engine.infer(read_image(files["left"]), read_image(files["right"])).disparity


def _run(files, out: Path, *extra: str) -> int:
    return main(
        [str(files["left"]), str(files["right"]), "--weights", str(files["checkpoint"]),
         "--out", str(out), "--device", "cpu", "--backend", "torch", *extra]
    )  # fmt: skip


def test_writes_the_maps(files, expected_disparity, tmp_path, capsys):
    assert _run(files, tmp_path / "out") == 0
    out = tmp_path / "out"
    assert sorted(path.name for path in out.iterdir()) == [
        "confidence.png", "disparity.pfm", "disparity.png", "occlusion.png",
    ]  # fmt: skip
    for name in ("disparity.png", "confidence.png", "occlusion.png"):
        picture = cv2.imread(str(out / name))
        assert picture is not None and picture.shape == (HEIGHT, WIDTH, 3)
    disparity = read_pfm(out / "disparity.pfm")
    np.testing.assert_allclose(disparity, expected_disparity, atol=1e-6, rtol=0)
    stdout = capsys.readouterr().out
    assert "inference" in stdout and "network" in stdout and "ms" in stdout
    assert "wrote 4 files" in stdout


def test_depth_and_cloud_with_focal_and_baseline(files, expected_disparity, tmp_path):
    out = tmp_path / "out"
    assert _run(files, out, "--focal", str(FOCAL_PX), "--baseline", str(BASELINE_M)) == 0
    disparity = read_pfm(out / "disparity.pfm")
    depth_mm = cv2.imread(str(out / "depth.png"), cv2.IMREAD_UNCHANGED)
    assert depth_mm.dtype == np.uint16 and depth_mm.shape == (HEIGHT, WIDTH)
    known = depth_mm > 0
    assert known.any()
    expected_mm = FOCAL_PX * BASELINE_M / disparity[known] * 1000.0
    np.testing.assert_allclose(depth_mm[known], expected_mm, atol=0.51)

    points, colors = read_ply(out / "cloud.ply")
    assert len(points) >= known.sum() and np.isfinite(points).all()
    # Each point projects back onto a pixel (principal point at the image centre)
    # whose disparity gives its depth, and carries that pixel's colour.
    cx, cy = (WIDTH - 1) / 2.0, (HEIGHT - 1) / 2.0
    u = points[:, 0] * FOCAL_PX / points[:, 2] + cx
    v = points[:, 1] * FOCAL_PX / points[:, 2] + cy
    columns, rows = np.round(u).astype(int), np.round(v).astype(int)
    np.testing.assert_allclose(u, columns, atol=1e-3)
    np.testing.assert_allclose(v, rows, atol=1e-3)
    np.testing.assert_allclose(
        points[:, 2], FOCAL_PX * BASELINE_M / disparity[rows, columns], rtol=1e-5
    )
    np.testing.assert_array_equal(colors, read_image(files["left"])[rows, columns])


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in captured.out + captured.err
    return lines[0]


def test_missing_image(files, tmp_path, capsys):
    code = main([str(tmp_path / "nope.png"), str(files["right"]),
                 "--weights", str(files["checkpoint"])])  # fmt: skip
    assert code == 1
    assert "nope.png" in _one_error_line(capsys)


def test_unreadable_image(files, tmp_path, capsys):
    code = main([str(files["left"]), str(files["text_png"]),
                 "--weights", str(files["checkpoint"])])  # fmt: skip
    assert code == 1
    assert "text.png" in _one_error_line(capsys)


def test_mismatched_sizes(files, tmp_path, capsys):
    code = main([str(files["left"]), str(files["small"]), "--weights", str(files["checkpoint"]),
                 "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 1
    assert "differ in size" in _one_error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_weights_not_found(files, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("S2M2_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    code = main([str(files["left"]), str(files["right"]), "--model", "s",
                 "--weights-dir", str(tmp_path / "weights")])  # fmt: skip
    assert code == 1
    line = _one_error_line(capsys)
    assert str(tmp_path / "weights" / "CH128NTR1.pth") in line and "s2m2-download S" in line


def test_invalid_checkpoint(files, capsys):
    code = main([str(files["left"]), str(files["right"]), "--weights", str(files["text_pth"])])
    assert code == 1
    assert "text.pth" in _one_error_line(capsys)


@pytest.mark.parametrize(
    "extra",
    [["--focal", "500"], ["--scale", "2"], ["--refine-iters", "-1"], ["--model", "XXL"],
     ["--precision", "fp8"]],
)  # fmt: skip
def test_usage_errors_exit_2(files, capsys, extra):
    assert main([str(files["left"]), str(files["right"]), *extra]) == 2
    _one_error_line(capsys)


def test_missing_arguments_exit_2(capsys):
    assert main([]) == 2
    _one_error_line(capsys)


def test_bad_device_is_one_line(files, capsys):
    code = main([str(files["left"]), str(files["right"]), "--weights", str(files["checkpoint"]),
                 "--device", "tpu"])  # fmt: skip
    assert code == 1
    assert "tpu" in _one_error_line(capsys)
