# SPDX-License-Identifier: Apache-2.0
"""Run a stereo network on numpy image pairs: device, precision, padding, downscale, compile.

:class:`StereoEngine` takes H×W or H×W×{3,4} uint8/uint16/float arrays and returns a
:class:`StereoResult` at the input resolution. Everything between (upload, colour
handling, optional downscale, padding to multiples of 32, autocast, crop, upsample,
download) happens on the inference device, so a CUDA pipeline moves only the raw
8/16-bit pixels across the bus.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from s2m2_ros.padding import pad_to_multiple

PRECISIONS: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}
COLOR_ORDERS = ("rgb", "bgr")
SIZE_MULTIPLE = 32
_SUPPORTED_DTYPES = (np.uint8, np.uint16, np.float16, np.float32, np.float64)
# uint16 images span 0–65535 and the network expects 0–255: 65535 / 255 = 257 exactly,
# and dividing (not multiplying by 1/257) keeps 257·v → v exact in float32.
_UINT16_PER_UINT8 = 257.0


@dataclass
class StereoResult:
    """Network outputs at input resolution, as H×W float32 arrays."""

    disparity: np.ndarray  # pixels at input resolution (x_left − x_right)
    visibility: np.ndarray  # [0, 1]; 1 = seen by the right camera
    confidence: np.ndarray  # [0, 1]
    timings_ms: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class StereoBackend(Protocol):
    """Anything that turns a rectified pair into a :class:`StereoResult`."""

    name: str

    def infer(
        self, left: np.ndarray, right: np.ndarray, color_order: str = "rgb"
    ) -> StereoResult: ...


class EngineConfigError(ValueError):
    """A device, precision or option the engine cannot honour here."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` → ``cuda`` if available else ``cpu``; ``cpu``, ``cuda`` and ``cuda:N`` checked."""
    text = str(device).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise EngineConfigError(
                f"device {text!r} requested but CUDA is not available "
                f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}); "
                "use device 'cpu' or 'auto', or install a CUDA build of PyTorch"
            )
        try:
            resolved = torch.device(text)
        except RuntimeError as error:
            raise EngineConfigError(f"invalid device {text!r}: {error}") from error
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise EngineConfigError(
                f"device {text!r} does not exist: {count} CUDA device(s) visible "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})"
            )
        return torch.device("cuda", resolved.index if resolved.index is not None else 0)
    raise EngineConfigError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` → ``fp16`` on CUDA, ``fp32`` on CPU; checks the device supports the choice."""
    text = str(precision).strip().lower()
    if text == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    if text not in PRECISIONS:
        raise EngineConfigError(
            f"unknown precision {precision!r}: use 'auto', {', '.join(map(repr, PRECISIONS))}"
        )
    if text == "fp32":
        return text
    if device.type == "cuda":
        if text == "bf16" and not torch.cuda.is_bf16_supported(including_emulation=False):
            raise EngineConfigError(
                f"bf16 is not supported on {torch.cuda.get_device_name(device)}; use fp16"
            )
        return text
    # Torch warns and silently disables autocast for unsupported dtypes; make it an error.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with torch.autocast(device_type=device.type, dtype=PRECISIONS[text]):
                pass
        except (RuntimeError, ValueError) as error:
            raise EngineConfigError(
                f"{text} autocast is not supported on {device.type}: {error}"
            ) from error
    if any("not supported" in str(warning.message) for warning in caught):
        raise EngineConfigError(
            f"{text} autocast is not supported on {device.type} by torch {torch.__version__}; "
            "use fp32"
        )
    return text


def _check_image(image: np.ndarray, side: str) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{side} image must be a numpy array, got {type(image).__name__}")
    if image.ndim == 2:
        image = image[:, :, np.newaxis]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"{side} image must be H×W (mono) or H×W×3/4 (colour), got shape {image.shape}"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{side} image is empty (shape {image.shape})")
    if image.dtype.type not in _SUPPORTED_DTYPES:
        raise ValueError(
            f"{side} image has dtype {image.dtype}; expected uint8, uint16 or float (0–255)"
        )
    return image


class StereoEngine:
    """An S²M²-style network wrapped for numpy pairs in, :class:`StereoResult` out.

    ``device``: ``auto``/``cpu``/``cuda``/``cuda:N``. ``precision``: ``auto`` (fp16 on
    CUDA, fp32 on CPU), ``fp32``, ``fp16`` or ``bf16`` (autocast). ``compile``: wrap the
    network in ``torch.compile(dynamic=False)``; call :meth:`warmup` with the camera
    size before the first real frame. ``input_scale`` in (0, 1]: run the network on a
    smaller copy of the pair and return full-size maps, disparity in full-size pixels.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str | torch.device = "auto",
        precision: str = "auto",
        compile: bool = False,
        input_scale: float = 1.0,
        name: str = "S2M2",
    ) -> None:
        self.name = name
        # Serialises inference and option changes (a node sets options from another thread).
        self._lock = threading.Lock()
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.input_scale = input_scale  # validated by the setter
        self.compiled = bool(compile)
        self.weights_path: Path | None = None
        # Channels-last: oneDNN's convolutions are faster on NHWC (about 12 % for the
        # whole network on CPU), and the attention blocks' channel-last token views
        # of such tensors need no copies.
        self.model = model.to(self.device).eval().to(memory_format=torch.channels_last)
        self._forward: Any = (
            torch.compile(self.model, dynamic=False) if self.compiled else self.model
        )
        self._pinned: dict[tuple[tuple[int, ...], str], torch.Tensor] = {}

    @classmethod
    def from_model_name(
        cls,
        model: str = "M",
        weights: str | os.PathLike[str] | None = None,
        weights_dir: str | os.PathLike[str] | None = None,
        *,
        allow_negative: bool = False,
        refine_iters: int = 3,
        **engine_kwargs: Any,
    ) -> StereoEngine:
        """Build the network with :func:`s2m2_ros.zoo.build_model` and wrap it.

        ``weights`` (a checkpoint path) wins over ``model`` (a size name looked up in
        ``weights_dir``, ``$S2M2_WEIGHTS_DIR`` and the caches).
        """
        from s2m2_ros import zoo

        source: str | Path = Path(weights) if weights is not None else model
        network, path = zoo.build_model(
            source,
            weights_dir=weights_dir,
            allow_negative=allow_negative,
            refine_iters=refine_iters,
        )
        channels, transformers = zoo.infer_architecture(network.state_dict())
        spec = zoo.spec_for_architecture(channels, transformers)
        engine_kwargs.setdefault(
            "name", f"S2M2-{spec.name}" if spec else f"S2M2-C{channels}N{transformers}"
        )
        engine = cls(network, **engine_kwargs)
        engine.weights_path = path
        return engine

    # -- options forwarded to the network ---------------------------------------------

    @property
    def refine_iters(self) -> int:
        return int(self.model.refine_iters)

    @refine_iters.setter
    def refine_iters(self, value: int) -> None:
        if isinstance(value, bool) or int(value) != value or value < 0:
            raise ValueError(f"refine_iters must be a non-negative integer, got {value!r}")
        with self._lock:
            self.model.refine_iters = int(value)

    @property
    def allow_negative(self) -> bool:
        return bool(self.model.allow_negative)

    @allow_negative.setter
    def allow_negative(self, value: bool) -> None:
        with self._lock:
            self.model.allow_negative = bool(value)

    @property
    def input_scale(self) -> float:
        return self._input_scale

    @input_scale.setter
    def input_scale(self, value: float) -> None:
        scale = float(value)
        if not 0.0 < scale <= 1.0:
            raise EngineConfigError(f"input_scale must be in (0, 1], got {value!r}")
        with self._lock:
            self._input_scale = scale

    @property
    def parameters(self) -> int:
        return sum(parameter.numel() for parameter in self.model.parameters())

    def describe(self) -> dict[str, Any]:
        """What runs where, for logs and diagnostics."""
        return {
            "model": self.name,
            "device": str(self.device),
            "device_name": (
                torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
            ),
            "precision": self.precision,
            "compile": self.compiled,
            "parameters": self.parameters,
            "refine_iters": self.refine_iters,
            "allow_negative": self.allow_negative,
            "input_scale": self.input_scale,
            "weights": str(self.weights_path) if self.weights_path else None,
        }

    # -- inference ---------------------------------------------------------------------

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _upload(self, left: np.ndarray, right: np.ndarray) -> torch.Tensor:
        """Both images as one 2×H×W×C tensor of their own dtype on the device."""
        if self.device.type != "cuda":
            return torch.from_numpy(np.stack((left, right)))
        key = ((2, *left.shape), left.dtype.str)
        pinned = self._pinned.get(key)
        if pinned is None:
            # One page-locked buffer per image format, reused: the asynchronous copy
            # needs page-locked memory, and allocating it per frame is slow. The copy
            # has finished before the next frame overwrites it (infer synchronises).
            pinned = torch.from_numpy(np.empty(key[0], dtype=left.dtype)).pin_memory()
            self._pinned = {key: pinned}
        host = pinned.numpy()
        host[0] = left
        host[1] = right
        return pinned.to(self.device, non_blocking=True)

    @staticmethod
    def _to_network_input(pair: torch.Tensor, color_order: str) -> torch.Tensor:
        """2×H×W×C raw pixels → 2×3×H×W RGB in 0–255 (a channels-last view).

        8-bit pixels stay 8-bit here: the padding converts them to float32 in the
        same pass that copies them into the padded frame.
        """
        images = pair
        if pair.dtype == torch.uint16:
            images = pair.float() / _UINT16_PER_UINT8
        elif pair.dtype != torch.uint8:
            images = pair.float()
        channels = images.shape[-1]
        if channels == 1:
            images = images.expand(-1, -1, -1, 3)
        elif channels == 4:
            images = images[..., :3]
        if channels != 1 and color_order == "bgr":
            images = images.flip(-1)
        return images.permute(0, 3, 1, 2)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=PRECISIONS[self.precision])

    def infer(self, left: np.ndarray, right: np.ndarray, color_order: str = "rgb") -> StereoResult:
        """Disparity, visibility and confidence for a rectified pair (see class doc)."""
        order = str(color_order).strip().lower()
        if order not in COLOR_ORDERS:
            raise ValueError(f"color_order must be 'rgb' or 'bgr', got {color_order!r}")
        left = _check_image(left, "left")
        right = _check_image(right, "right")
        if left.shape != right.shape or left.dtype != right.dtype:
            raise ValueError(
                f"left and right images differ: left {left.shape} {left.dtype}, right "
                f"{right.shape} {right.dtype}; a rectified pair has one size and format"
            )
        height, width = left.shape[:2]
        with self._lock, torch.inference_mode():
            timings: dict[str, float] = {}
            start = time.perf_counter()
            images = self._to_network_input(self._upload(left, right), order)
            if self.input_scale < 1.0:
                small_size = (
                    max(1, round(height * self.input_scale)),
                    max(1, round(width * self.input_scale)),
                )
                images = F.interpolate(images.float(), size=small_size, mode="area")
            padded, pad_info = pad_to_multiple(images, SIZE_MULTIPLE)
            # No-ops when the padding already produced channels-last float32.
            padded = padded.float().contiguous(memory_format=torch.channels_last)
            self._synchronize()
            network_start = time.perf_counter()
            timings["upload"] = (network_start - start) * 1e3

            with self._autocast():
                disparity, visibility, confidence = self._forward(padded[:1], padded[1:])
            self._synchronize()
            download_start = time.perf_counter()
            timings["network"] = (download_start - network_start) * 1e3

            top, left_edge = pad_info.top, pad_info.left
            window = (..., slice(top, top + pad_info.height),
                      slice(left_edge, left_edge + pad_info.width))
            if (pad_info.height, pad_info.width) == (height, width):
                # Each map cropped and made contiguous in one copy (no stacking).
                maps = [output[0, 0][window[1:]].float().contiguous().cpu().numpy()
                        for output in (disparity, visibility, confidence)]
            else:
                outputs = torch.cat((disparity, visibility, confidence), dim=1).float()
                outputs = F.interpolate(
                    outputs[window], size=(height, width), mode="bilinear",
                    align_corners=False
                )
                # Disparity is a horizontal distance: rescale to full-resolution pixels
                # with the exact width ratio (the rounded size, not the nominal scale).
                outputs[:, 0] *= width / pad_info.width
                # Contiguous, so callers can hand the maps to cv2 or ROS messages directly.
                maps = list(outputs[0].contiguous().cpu().numpy())
            timings["download"] = (time.perf_counter() - download_start) * 1e3
        return StereoResult(
            disparity=maps[0],
            visibility=maps[1],
            confidence=maps[2],
            timings_ms=timings,
        )

    def warmup(self, height: int, width: int, channels: int = 3) -> float:
        """Run one inference at this image size (compiles under ``compile=True``); ms."""
        if height < 1 or width < 1:
            raise ValueError(f"warm-up size must be positive, got {height}×{width}")
        # Textured noise, not zeros: some kernels specialise on degenerate inputs.
        generator = np.random.default_rng(0)
        shape = (height, width) if channels == 1 else (height, width, channels)
        left = generator.integers(0, 256, size=shape, dtype=np.uint8)
        right = np.roll(left, -min(8, width - 1), axis=1)
        start = time.perf_counter()
        self.infer(left, right)
        return (time.perf_counter() - start) * 1e3


def padded_size(height: int, width: int, multiple: int = SIZE_MULTIPLE) -> tuple[int, int]:
    """The network input size for an image (what ``compile`` specialises on)."""
    return math.ceil(height / multiple) * multiple, math.ceil(width / multiple) * multiple
