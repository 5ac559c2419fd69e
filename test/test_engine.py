# SPDX-License-Identifier: Apache-2.0
"""StereoEngine on CPU with a tiny random network (C=32, N=1); CUDA checks when present."""

import copy

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from s2m2_ros.backends import StereoBackend
from s2m2_ros.backends.torch import TorchBackend
from s2m2_ros.engine import (
    EngineConfigError,
    StereoEngine,
    StereoResult,
    resolve_precision,
)
from s2m2_ros.model import S2M2
from s2m2_ros.padding import crop, pad_to_multiple

HEIGHT, WIDTH = 30, 45  # odd sizes: padded to 32×64, unevenly on the right

# Measured on this tiny random network (30×45 pair, disparities 2.7–3.4 px): bf16 autocast
# differs from fp32 by 0.17 px mean / 0.59 px max in disparity and ≤ 0.027 in
# visibility/confidence; fp16 by 0.011 px mean / 0.031 px max. Bounds leave headroom.
BF16_DISPARITY_MEAN_PX, BF16_DISPARITY_MAX_PX, BF16_UNIT_MAX = 0.4, 1.5, 0.08


@pytest.fixture(scope="module")
def network() -> S2M2:
    torch.manual_seed(0)
    return S2M2(32, 1).eval()


@pytest.fixture(scope="module")
def engine(network) -> StereoEngine:
    return StereoEngine(network, device="cpu", precision="fp32")


def _textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).random((height, width, 3)) * 255
    return cv2.GaussianBlur(noise.astype(np.uint8), (3, 3), 0)


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    left = _textured(HEIGHT, WIDTH)
    return left, np.ascontiguousarray(np.roll(left, -3, axis=1))


@pytest.fixture(scope="module")
def reference(engine, pair) -> StereoResult:
    return engine.infer(*pair)


def _direct(network: S2M2, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """The network run by hand: RGB float tensors, smooth padding, crop. 3×H×W."""
    images = torch.from_numpy(np.stack((left, right))).float().permute(0, 3, 1, 2)
    padded, info = pad_to_multiple(images, 32)
    with torch.inference_mode():
        outputs = network(padded[:1], padded[1:])
    return torch.cat([crop(output, info) for output in outputs], dim=1)[0].numpy()


def _maps(result: StereoResult) -> np.ndarray:
    return np.stack((result.disparity, result.visibility, result.confidence))


def test_result_has_the_input_size_and_timings(reference):
    for array in (reference.disparity, reference.visibility, reference.confidence):
        assert array.shape == (HEIGHT, WIDTH) and array.dtype == np.float32
        assert array.flags.c_contiguous
        assert np.isfinite(array).all()
    assert reference.visibility.min() >= 0.0 and reference.visibility.max() <= 1.0
    assert reference.confidence.min() >= 0.0 and reference.confidence.max() <= 1.0
    assert reference.disparity.min() >= 0.0  # positivity is on by default
    assert set(reference.timings_ms) == {"upload", "network", "download"}
    assert all(value >= 0.0 for value in reference.timings_ms.values())
    assert reference.timings_ms["network"] > 0.0


def test_equals_the_network_on_a_padded_input(network, pair, reference):
    expected = _direct(network, *pair)
    np.testing.assert_allclose(_maps(reference), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("variant", ["bgr", "uint16", "rgba", "float32"])
def test_input_formats_give_the_same_result(engine, pair, reference, variant):
    left, right = pair
    if variant == "bgr":
        result = engine.infer(left[:, :, ::-1], right[:, :, ::-1], color_order="BGR")
    elif variant == "uint16":
        result = engine.infer(left.astype(np.uint16) * 257, right.astype(np.uint16) * 257)
    elif variant == "rgba":
        alpha = np.random.default_rng(1).integers(0, 256, (HEIGHT, WIDTH, 1), dtype=np.uint8)
        result = engine.infer(np.concatenate((left, alpha), 2), np.concatenate((right, alpha), 2))
    else:
        result = engine.infer(left.astype(np.float32), right.astype(np.float32))
    np.testing.assert_array_equal(_maps(result), _maps(reference))


def test_mono_equals_replicated_rgb(engine, pair):
    left = cv2.cvtColor(pair[0], cv2.COLOR_RGB2GRAY)
    right = cv2.cvtColor(pair[1], cv2.COLOR_RGB2GRAY)
    mono = engine.infer(left, right, color_order="bgr")  # colour order is moot for mono
    replicated = engine.infer(np.dstack([left] * 3), np.dstack([right] * 3))
    np.testing.assert_array_equal(_maps(mono), _maps(replicated))
    assert mono.disparity.shape == (HEIGHT, WIDTH)


def test_input_scale_returns_full_size_disparity_in_full_size_pixels(network, pair):
    height, width = 2 * HEIGHT, 2 * WIDTH
    left = _textured(height, width, seed=3)
    right = np.ascontiguousarray(np.roll(left, -6, axis=1))
    result = StereoEngine(network, device="cpu", input_scale=0.5).infer(left, right)
    assert result.disparity.shape == (height, width)

    # Independently: area-resize to half size, run the network, upsample, double.
    small = [
        cv2.resize(image.astype(np.float32), (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
        for image in (left, right)
    ]
    half = torch.from_numpy(_direct(network, *small))[None]
    full = F.interpolate(half, size=(height, width), mode="bilinear", align_corners=False)[0]
    np.testing.assert_allclose(result.disparity, 2.0 * full[0].numpy(), atol=1e-3, rtol=0)
    np.testing.assert_allclose(result.visibility, full[1].numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(result.confidence, full[2].numpy(), atol=1e-4, rtol=0)
    assert result.disparity.mean() == pytest.approx(2.0 * half[0, 0].mean().item(), rel=0.02)


def test_bf16_autocast_on_cpu_stays_close_to_fp32(network, pair, reference):
    result = StereoEngine(network, device="cpu", precision="bf16").infer(*pair)
    difference = np.abs(result.disparity - reference.disparity)
    assert difference.mean() < BF16_DISPARITY_MEAN_PX
    assert difference.max() < BF16_DISPARITY_MAX_PX
    assert np.abs(result.visibility - reference.visibility).max() < BF16_UNIT_MAX
    assert np.abs(result.confidence - reference.confidence).max() < BF16_UNIT_MAX
    assert result.disparity.dtype == np.float32


def test_mismatched_or_malformed_inputs_raise_value_error(engine, pair):
    left, right = pair
    with pytest.raises(ValueError, match="differ"):
        engine.infer(left, right[:, :-1])
    with pytest.raises(ValueError, match="differ"):
        engine.infer(left, right.astype(np.uint16))
    with pytest.raises(ValueError, match="color_order"):
        engine.infer(left, right, color_order="yuv")
    with pytest.raises(ValueError, match="dtype"):
        engine.infer(left.astype(np.int32), right.astype(np.int32))
    with pytest.raises(ValueError, match="H×W"):
        engine.infer(left[None], right[None])
    with pytest.raises(ValueError, match="empty"):
        engine.infer(left[:0], right[:0])


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_asking_for_cuda_without_it_is_a_clear_error(network, device):
    with pytest.raises(EngineConfigError, match="CUDA is not available"):
        StereoEngine(network, device=device)


def test_other_bad_options(network):
    with pytest.raises(EngineConfigError, match="unknown device"):
        StereoEngine(network, device="tpu")
    with pytest.raises(EngineConfigError, match="precision"):
        StereoEngine(network, device="cpu", precision="fp8")
    for scale in (0.0, 1.5, -0.5):
        with pytest.raises(EngineConfigError, match="input_scale"):
            StereoEngine(network, device="cpu", input_scale=scale)
    assert issubclass(EngineConfigError, ValueError)


def test_precision_defaults():
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("BF16", torch.device("cpu")) == "bf16"


def test_options_forward_to_the_network(network):
    engine = StereoEngine(network, device="cpu")
    before = (network.refine_iters, network.allow_negative)
    try:
        engine.refine_iters = 1
        engine.allow_negative = True
        assert (network.refine_iters, network.allow_negative) == (1, True)
        assert (engine.refine_iters, engine.allow_negative) == (1, True)
        with pytest.raises(ValueError):
            engine.refine_iters = -1
        with pytest.raises(ValueError):
            engine.refine_iters = 1.5
    finally:
        network.refine_iters, network.allow_negative = before


def test_describe_and_backend_interface(engine, network):
    info = engine.describe()
    assert info["model"] == "S2M2"
    assert info["device"] == "cpu" and info["precision"] == "fp32"
    assert info["compile"] is False
    assert info["parameters"] == sum(p.numel() for p in network.parameters())
    backend = TorchBackend(engine)  # what create_backend("torch") wraps the engine in
    assert isinstance(backend, StereoBackend)
    assert backend.describe()["backend"] == "torch"
    assert backend.describe()["parameters"] == info["parameters"]


def test_from_model_name_with_a_checkpoint(tmp_path, network):
    path = tmp_path / "tiny.pth"
    torch.save({"state_dict": network.state_dict()}, path)
    engine = StereoEngine.from_model_name(weights=path, device="cpu", refine_iters=2)
    assert engine.name == "S2M2-C32N1"
    assert engine.weights_path == path
    assert engine.refine_iters == 2 and engine.allow_negative is False
    assert engine.describe()["weights"] == str(path)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
def test_cuda_fp16_is_close_to_fp32(network, pair):
    cpu = StereoEngine(network, device="cpu", precision="fp32").infer(*pair)
    network = copy.deepcopy(network)  # the engine moves it; keep the CPU one for the others
    fp32 = StereoEngine(network, device="cuda", precision="fp32").infer(*pair)
    fp16 = StereoEngine(network, device="cuda", precision="auto")
    assert fp16.precision == "fp16"
    result = fp16.infer(*pair)
    difference = np.abs(result.disparity - fp32.disparity)
    assert difference.mean() < 0.1 and difference.max() < 0.5
    assert np.abs(result.confidence - fp32.confidence).max() < 0.05
    np.testing.assert_allclose(fp32.disparity, cpu.disparity, atol=1e-2, rtol=0)


@cuda
def test_cuda_compile_warmup(network, pair):
    network = copy.deepcopy(network)
    engine = StereoEngine(network, device="cuda", precision="fp16", compile=True)
    assert engine.warmup(HEIGHT, WIDTH) > 0.0
    eager = StereoEngine(network, device="cuda", precision="fp16").infer(*pair)
    compiled = engine.infer(*pair)
    assert np.abs(compiled.disparity - eager.disparity).mean() < 0.1
    assert engine.describe()["compile"] is True
