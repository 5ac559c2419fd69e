# SPDX-License-Identifier: Apache-2.0
"""The backend registry, ``auto``, option checks, a missing runtime, and the torch and
sgbm backends through ``create_backend`` (nothing here exports a graph: see
test_backends_export.py for the ONNX runtimes' outputs and the engine cache)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from node_harness import node_environment, textured_pair, write_tiny_checkpoint

from s2m2_ros.backends import (
    BACKEND_NAMES,
    BackendError,
    StereoBackend,
    available_backends,
    choose_auto,
    create_backend,
)
from s2m2_ros.engine import StereoEngine

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("weights") / "tiny.pth")


def _python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=REPO_ROOT, env=env)


def test_every_backend_is_known_and_unknown_names_are_refused() -> None:
    assert set(available_backends()) == {"torch", "openvino", "onnxruntime", "sgbm"}
    assert BACKEND_NAMES[0] == "auto"
    with pytest.raises(BackendError, match="unknown backend 'tensorflow'.*openvino"):
        create_backend("tensorflow")


def test_sgbm_runs_the_example_without_weights() -> None:
    backend = create_backend("sgbm", weights="CH128NTR1.pth", device="cpu", precision="fp32")
    assert isinstance(backend, StereoBackend)
    for height, width in ((16, 16), (48, 80)):
        left, right = textured_pair(height, width)
        result = backend.infer(left, right)
        for name in ("disparity", "visibility", "confidence"):
            array = getattr(result, name)
            assert array.shape == (height, width) and array.dtype == np.float32
    assert backend.describe()["backend"] == "sgbm"


def test_auto_follows_the_device_and_the_installed_runtimes(monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_auto("cuda:0")[0] == "torch"  # asked for: torch says why it cannot
    name, reason = choose_auto("auto")
    assert name == "openvino" and "no CUDA device" in reason and "installed" in reason
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed
    name, reason = choose_auto("cpu")
    assert name == "torch" and "openvino not installed" in reason
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert choose_auto("auto") == ("torch", "CUDA device present")


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
def test_missing_runtime_is_one_clear_line(runtime: str, checkpoint: Path) -> None:
    completed = _python(
        f"import sys; sys.modules[{runtime!r}] = None\n"
        "from s2m2_ros.backends import BackendError, create_backend\n"
        "try:\n"
        f"    create_backend({runtime!r}, weights={str(checkpoint)!r}, device='cpu')\n"
        "except BackendError as error:\n"
        "    print(error)\n"
        "from s2m2_ros.backends import choose_auto\n"
        "print(choose_auto('auto')[0])\n")
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.strip().splitlines()
    assert len(lines) == 2, completed.stdout
    assert f"pip install {runtime}" in lines[0] and f"'{runtime}'" in lines[0]
    assert lines[1] == ("torch" if runtime == "openvino" else "openvino")


def test_node_without_openvino_refuses_it_in_one_line_and_starts_on_auto(
        checkpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("rclpy")
    launcher = ("import sys; sys.modules['openvino'] = None\n"
                "from s2m2_ros.node import main\n"
                "sys.exit(main(sys.argv[1:]))\n")

    def start(backend: str, namespace: str) -> subprocess.Popen:
        command = [sys.executable, "-c", launcher, "--ros-args", "-r", f"__ns:={namespace}",
                   "-p", f"backend:={backend}", "-p", f"weights:={checkpoint}",
                   "-p", "device:=cpu"]
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, cwd=tmp_path,
                                env=node_environment(tmp_path / namespace.strip("/")))

    refused = start("openvino", "/no_openvino")
    output, _ = refused.communicate(timeout=120)
    assert refused.returncode == 1
    errors = [line for line in output.splitlines() if "cannot start" in line]
    assert len(errors) == 1 and "pip install openvino" in errors[0], output
    assert "Traceback" not in output

    fallback = start("auto", "/auto_without_openvino")
    try:
        lines: list[str] = []
        assert fallback.stdout is not None
        for line in fallback.stdout:
            lines.append(line)
            if "started: backend" in line or len(lines) > 200:
                break
        started = "".join(lines)
        assert "started: backend torch (auto: device cpu requested, openvino not installed)" \
            in started, started
    finally:
        fallback.terminate()
        fallback.communicate(timeout=60)


def test_options_are_checked_before_anything_is_built(checkpoint: Path) -> None:
    with pytest.raises(BackendError, match="runs on the CPU"):
        create_backend("openvino", weights=str(checkpoint), device="cuda")
    with pytest.raises(BackendError, match="precision 'bf16' on cpu"):
        create_backend("onnxruntime", weights=str(checkpoint), device="cpu", precision="bf16")
    with pytest.raises(BackendError, match="does not exist"):
        create_backend("openvino", weights=str(checkpoint) + ".missing", device="cpu")
    with pytest.raises(BackendError, match="input_scale"):
        create_backend("openvino", weights=str(checkpoint), device="cpu", input_scale=1.5)
    backend = create_backend("onnxruntime", weights=str(checkpoint), device="cpu")
    description = backend.describe()
    assert (description["backend"], description["device"], description["precision"]) == (
        "onnxruntime", "cpu", "fp32")
    assert description["model"] == "S2M2-C32N1"
    assert description["weights"] == str(checkpoint)
    with pytest.raises(BackendError, match="no run-time option 'precision'"):
        backend.set_option("precision", "fp16")
    backend.set_option("refine_iters", 2)
    assert backend.describe()["refine_iters"] == 2


def test_torch_backend_is_the_engine_and_batches(checkpoint: Path) -> None:
    backend = create_backend("torch", weights=str(checkpoint), device="cpu", precision="fp32",
                             max_batch=2)
    engine = StereoEngine.from_model_name(weights=checkpoint, device="cpu", precision="fp32")
    pairs = [textured_pair(40, 72, shift_px=shift, seed=shift) for shift in (2, 3, 5)]
    batched = backend.infer_batch(pairs)
    singles = [engine.infer(left, right) for left, right in pairs]
    assert len(batched) == 3
    for result, single in zip(batched, singles, strict=True):
        for name in ("disparity", "visibility", "confidence"):
            assert getattr(result, name).shape == (40, 72)
            np.testing.assert_allclose(getattr(result, name), getattr(single, name),
                                       atol=1e-4, rtol=0)
    # The pairs' answers differ far more than that: the batch kept each pair's own.
    assert np.abs(singles[0].disparity - singles[2].disparity).max() > 1e-3
    with pytest.raises(ValueError, match="one size"):
        backend.infer_batch([textured_pair(40, 72), textured_pair(40, 64)])
    description = backend.describe()
    assert {key: description[key] for key in ("backend", "device", "precision")} == {
        "backend": "torch", "device": "cpu", "precision": "fp32"}
    assert backend.selection == "requested"


def test_cli_prints_the_backend_it_ran(checkpoint: Path, tmp_path: Path) -> None:
    import cv2

    left, right = textured_pair(32, 48)
    for name, image in (("left.png", left), ("right.png", right)):
        cv2.imwrite(str(tmp_path / name), image)
    completed = subprocess.run(
        [sys.executable, "-m", "s2m2_ros.cli", str(tmp_path / "left.png"),
         str(tmp_path / "right.png"), "--backend", "sgbm", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert completed.returncode == 0, completed.stderr
    assert "loaded backend sgbm (requested)" in completed.stdout
    assert (tmp_path / "out" / "disparity.pfm").is_file()


def test_describe_is_json_serialisable(checkpoint: Path) -> None:
    # Status and diagnostics publish these values as text.
    for name in ("torch", "onnxruntime", "sgbm"):
        backend = create_backend(name, weights=str(checkpoint), device="cpu")
        json.dumps(backend.describe())
