# SPDX-License-Identifier: Apache-2.0
"""ONNX export and the runtimes that run it (OpenVINO, ONNX Runtime) on the golden pair.

Each export of even the tiny golden network takes tens of seconds on a loaded 2-core
machine, so the module exports three times in all: once through the engine cache
(shared by both runtimes and the second-start test), once through ``s2m2-export``, and
once to rebuild a deliberately corrupted cache entry. The cache lives in a temporary
folder; nothing here touches ~/.cache.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from s2m2_ros.backends import create_backend, runtime_installed
from s2m2_ros.backends.base import StereoResult

# Not importorskip: a plain `import openvino` sends telemetry (see backends/openvino.py).
pytestmark = pytest.mark.skipif(
    not (runtime_installed("openvino") and runtime_installed("onnxruntime")),
    reason="openvino and onnxruntime are not installed")

REPO_ROOT = Path(__file__).resolve().parents[1]
GOLDEN = REPO_ROOT.parent / "shared" / "golden" / "s2m2_c32_n1_golden.pt"
MAPS = ("disparity", "visibility", "confidence")
# The bounds: 1e-3 px disparity, 2e-2 visibility and confidence.
TOLERANCE = {"disparity": 1e-3, "visibility": 2e-2, "confidence": 2e-2}
GOLDEN_KEYS = {"disparity": "disparity", "visibility": "occlusion", "confidence": "confidence"}


@pytest.fixture(scope="module")
def golden() -> dict:
    if not GOLDEN.exists():
        pytest.skip(f"{GOLDEN} not present (the shared/ folder beside the repository)")
    return torch.load(GOLDEN, weights_only=True)


@pytest.fixture(scope="module")
def checkpoint(golden: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = golden["config"]
    assert config["use_positivity"] and config["refine_iter"] == 3  # the backends' defaults
    path = tmp_path_factory.mktemp("weights") / "golden.pth"
    torch.save({"state_dict": golden["checkpoint"]["state_dict"]}, path)
    return path


@pytest.fixture(scope="module")
def pair(golden: dict) -> tuple[np.ndarray, np.ndarray]:
    """The golden pair as H×W×3 uint8 RGB (its values are whole numbers 0–255)."""
    images = [golden[side][0].permute(1, 2, 0).numpy() for side in ("left", "right")]
    converted = [image.astype(np.uint8) for image in images]
    assert all(np.array_equal(a, b) for a, b in zip(images, converted, strict=True))
    return converted[0], converted[1]


@pytest.fixture(scope="module")
def torch_result(checkpoint: Path, pair) -> StereoResult:
    backend = create_backend("torch", weights=str(checkpoint), device="cpu", precision="fp32")
    return backend.infer(*pair)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("engines")


@pytest.fixture(scope="module")
def onnxruntime_run(checkpoint: Path, pair, cache_dir: Path):
    """The first backend on an empty cache: it exports the graph."""
    backend = create_backend("onnxruntime", weights=str(checkpoint), device="cpu",
                             precision="fp32", cache_dir=cache_dir)
    return backend, backend.infer(*pair)


@pytest.fixture(scope="module")
def openvino_run(checkpoint: Path, pair, cache_dir: Path, onnxruntime_run):
    backend = create_backend("openvino", weights=str(checkpoint), device="cpu",
                             precision="fp32", cache_dir=cache_dir)
    return backend, backend.infer(*pair)


def _assert_close(result: StereoResult, reference: StereoResult | dict,
                  tolerance: dict[str, float]) -> None:
    for name in MAPS:
        expected = (getattr(reference, name) if isinstance(reference, StereoResult)
                    else reference[GOLDEN_KEYS[name]][0, 0].numpy())
        actual = getattr(result, name)
        assert actual.shape == expected.shape and actual.dtype == np.float32
        error = float(np.abs(actual - expected).max())
        assert error < tolerance[name], f"{name}: max error {error}"


def _graph_files(cache_dir: Path) -> dict[str, int]:
    return {str(path.relative_to(cache_dir)): path.stat().st_mtime_ns
            for path in sorted(cache_dir.rglob("*")) if path.is_file()}


def test_onnxruntime_backend_matches_torch_and_golden(onnxruntime_run, torch_result,
                                                      golden) -> None:
    backend, result = onnxruntime_run
    _assert_close(result, torch_result, {name: 1e-3 for name in MAPS})
    _assert_close(result, golden, TOLERANCE)
    description = backend.describe()
    assert description["graphs_exported"] == 1 and description["graphs_reused"] == 0
    assert description["providers"] == "CPUExecutionProvider"


def test_openvino_backend_matches_torch_and_reuses_the_graph(openvino_run, torch_result,
                                                             golden) -> None:
    backend, result = openvino_run
    _assert_close(result, torch_result, {name: 1e-3 for name in MAPS})
    _assert_close(result, golden, TOLERANCE)
    description = backend.describe()
    # The graph onnxruntime exported into the same cache: no second export.
    assert description["graphs_exported"] == 0 and description["graphs_reused"] == 1


def test_shared_input_handling_on_an_exported_backend(openvino_run, pair) -> None:
    backend, result = openvino_run
    left, right = pair
    # BGR, 16-bit and an odd size (padded into the same 64×128 graph) take the
    # shared path; each must come back as the RGB 8-bit answer would.
    bgr = backend.infer(left[..., ::-1].copy(), right[..., ::-1].copy(), "bgr")
    wide = backend.infer(left.astype(np.uint16) * 257, right.astype(np.uint16) * 257)
    for other in (bgr, wide):
        for name in MAPS:
            np.testing.assert_allclose(getattr(other, name), getattr(result, name), atol=1e-5)
    cropped = backend.infer(left[:50, :100], right[:50, :100])
    assert cropped.disparity.shape == (50, 100)
    assert backend.describe()["graphs_exported"] == 0  # 50×100 pads to the same graph
    with pytest.raises(ValueError, match="differ"):
        backend.infer(left, right[:32])


def test_second_start_reuses_graph_and_compiled_model(openvino_run, checkpoint: Path, pair,
                                                      cache_dir: Path, tmp_path: Path) -> None:
    before = _graph_files(cache_dir)
    assert any(name.endswith("model.onnx") for name in before)
    assert any("/openvino-" in name for name in before), before  # OpenVINO's compiled blob
    np.save(tmp_path / "left.npy", pair[0])
    np.save(tmp_path / "right.npy", pair[1])
    code = (
        "import json, sys, numpy as np\n"
        "from s2m2_ros.backends import create_backend\n"
        f"backend = create_backend('openvino', weights={str(checkpoint)!r}, device='cpu',"
        f" cache_dir={str(cache_dir)!r})\n"
        f"result = backend.infer(np.load({str(tmp_path / 'left.npy')!r}),"
        f" np.load({str(tmp_path / 'right.npy')!r}))\n"
        f"np.save({str(tmp_path / 'disparity.npy')!r}, result.disparity)\n"
        "print(json.dumps(backend.describe()))\n"
        "print('openvino_telemetry' in sys.modules)\n")
    home = tmp_path / "home"
    home.mkdir()
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               timeout=600, cwd=REPO_ROOT, env={**os.environ, "HOME": str(home)})
    assert completed.returncode == 0, completed.stderr
    *_, described, telemetry_loaded = completed.stdout.strip().splitlines()
    # openvino's telemetry (loaded by a plain `import openvino`) never ran: not loaded,
    # and no client id written in the home folder.
    assert telemetry_loaded == "False" and list(home.iterdir()) == []
    description = json.loads(described)
    assert (description["graphs_exported"], description["graphs_reused"]) == (0, 1)
    assert "rebuilding" not in completed.stderr
    # Nothing written or rewritten: neither the graph nor OpenVINO's compiled model.
    assert _graph_files(cache_dir) == before
    np.testing.assert_array_equal(np.load(tmp_path / "disparity.npy"),
                                  openvino_run[1].disparity)


def test_corrupt_cache_entry_is_rebuilt_with_one_warning(onnxruntime_run, checkpoint: Path,
                                                         pair, cache_dir: Path,
                                                         tmp_path: Path, caplog) -> None:
    copy = tmp_path / "engines"
    shutil.copytree(cache_dir, copy)
    graph = next(copy.rglob("model.onnx"))
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])  # a torn write
    with caplog.at_level(logging.WARNING, logger="s2m2_ros"):
        backend = create_backend("onnxruntime", weights=str(checkpoint), device="cpu",
                                 cache_dir=copy)
        result = backend.infer(*pair)
    warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1, [record.getMessage() for record in warnings]
    message = warnings[0].getMessage()
    assert "rebuilding" in message and str(graph.parent) in message and "\n" not in message
    description = backend.describe()
    assert (description["graphs_rebuilt"], description["graphs_exported"]) == (1, 1)
    for name in MAPS:
        np.testing.assert_allclose(getattr(result, name), getattr(onnxruntime_run[1], name),
                                   atol=1e-5)


def test_s2m2_export_file_reproduces_golden_in_plain_onnxruntime(checkpoint: Path, golden,
                                                                  tmp_path: Path) -> None:
    import onnxruntime

    output = tmp_path / "golden.onnx"
    height, width = golden["left"].shape[-2:]
    completed = subprocess.run(
        [sys.executable, "-m", "s2m2_ros.export", "--weights", str(checkpoint),
         "--height", str(height), "--width", str(width), "--output", str(output)],
        capture_output=True, text=True, timeout=900, cwd=REPO_ROOT)
    assert completed.returncode == 0, completed.stderr
    assert f"exported {checkpoint}" in completed.stdout
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["left", "right"]
    assert [o.name for o in session.get_outputs()] == list(MAPS)
    for port in (*session.get_inputs(), *session.get_outputs()):
        assert port.type == "tensor(float)"
    assert session.get_inputs()[0].shape == [1, 3, height, width]
    assert session.get_outputs()[0].shape == [1, 1, height, width]
    outputs = session.run(None, {"left": golden["left"].numpy(),
                                 "right": golden["right"].numpy()})
    for name, array in zip(MAPS, outputs, strict=True):
        error = float(np.abs(array - golden[GOLDEN_KEYS[name]].numpy()).max())
        assert error < TOLERANCE[name], f"{name}: max error {error}"


def test_s2m2_export_refuses_sizes_that_are_not_multiples_of_32(checkpoint: Path,
                                                                tmp_path: Path) -> None:
    from s2m2_ros.export import main

    assert main(["--weights", str(checkpoint), "--height", "60", "--width", "128",
                 "--output", str(tmp_path / "x.onnx")]) == 1
    assert not (tmp_path / "x.onnx").exists()
