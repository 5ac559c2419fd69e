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
import os
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from s2m2_ros.backends.inputs import (
    COLOR_ORDERS,
    SIZE_MULTIPLE,
    StereoResult,
    check_input_scale,
    check_pair,
    maps_at_input_size,
    padded_size,
    prepare_network_input,
    timed_warmup,
    to_network_input,
)

PRECISIONS: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}
# Re-exported: the shared input handling lives in s2m2_ros.backends.inputs.
__all__ = ["COLOR_ORDERS", "PRECISIONS", "SIZE_MULTIPLE", "EngineConfigError",
           "StereoEngine", "StereoResult", "padded_size", "resolve_device", "resolve_precision"]


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
        try:
            scale = check_input_scale(value)
        except ValueError as error:
            raise EngineConfigError(str(error)) from None
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

    def _upload(self, images: list[np.ndarray]) -> torch.Tensor:
        """The images as one N×H×W×C tensor of their own dtype on the device."""
        if self.device.type != "cuda":
            return torch.from_numpy(np.stack(images))
        key = ((len(images), *images[0].shape), images[0].dtype.str)
        pinned = self._pinned.get(key)
        if pinned is None:
            # One page-locked buffer per image format, reused: the asynchronous copy
            # needs page-locked memory, and allocating it per frame is slow. The copy
            # has finished before the next frame overwrites it (infer synchronises).
            pinned = torch.from_numpy(np.empty(key[0], dtype=images[0].dtype)).pin_memory()
            self._pinned = {key: pinned}
        host = pinned.numpy()
        for index, image in enumerate(images):
            host[index] = image
        return pinned.to(self.device, non_blocking=True)

    # Kept for the benchmarks, which time this step on its own.
    _to_network_input = staticmethod(to_network_input)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=PRECISIONS[self.precision])

    def infer(self, left: np.ndarray, right: np.ndarray, color_order: str = "rgb") -> StereoResult:
        """Disparity, visibility and confidence for a rectified pair (see class doc)."""
        return self.infer_batch([(left, right)], color_order)[0]

    def infer_batch(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]],
                    color_order: str = "rgb") -> list[StereoResult]:
        """:meth:`infer` for pairs of one size and format, run through the network as one
        batch (``timings_ms`` are the batch's, shared by its results)."""
        if not pairs:
            return []
        checked = [check_pair(left, right, color_order) for left, right in pairs]
        order = checked[0][2]
        first = checked[0][0]
        for left, _right, _order in checked[1:]:
            if left.shape != first.shape or left.dtype != first.dtype:
                raise ValueError(
                    f"a batch needs pairs of one size and format: {first.shape} "
                    f"{first.dtype} and {left.shape} {left.dtype}")
        height, width = first.shape[:2]
        count = len(checked)
        with self._lock, torch.inference_mode():
            timings: dict[str, float] = {}
            start = time.perf_counter()
            # Lefts first, then rights: the network takes them as two batches.
            images = [pair[0] for pair in checked] + [pair[1] for pair in checked]
            padded, pad_info = prepare_network_input(self._upload(images), order,
                                                     self.input_scale)
            self._synchronize()
            network_start = time.perf_counter()
            timings["upload"] = (network_start - start) * 1e3

            with self._autocast():
                outputs = self._forward(padded[:count], padded[count:])
            self._synchronize()
            download_start = time.perf_counter()
            timings["network"] = (download_start - network_start) * 1e3
            results = []
            for index in range(count):
                maps = maps_at_input_size(*(output[index:index + 1] for output in outputs),
                                          pad_info, height, width)
                results.append(StereoResult(maps[0], maps[1], maps[2], timings))
            timings["download"] = (time.perf_counter() - download_start) * 1e3
        return results

    def warmup(self, height: int, width: int, channels: int = 3) -> float:
        """Run one inference at this image size (compiles under ``compile=True``); ms."""
        return timed_warmup(self.infer, height, width, channels)

