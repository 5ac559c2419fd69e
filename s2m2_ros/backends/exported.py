# SPDX-License-Identifier: Apache-2.0
"""What the backends that run an exported ONNX graph (OpenVINO, ONNX Runtime) share.

The network is exported once per padded input size and graph options (through the
engine cache), and each runtime compiles the graph into its own session; the
subclass only says how to load a graph and run it. Input handling is the shared
:mod:`s2m2_ros.backends.inputs`, run on the CPU around the runtime.
"""

from __future__ import annotations

import os
import threading
import time
from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from s2m2_ros.backends.base import BackendError, StereoBackend, StereoResult
from s2m2_ros.backends.cache import (
    EngineCache,
    GraphKey,
    checkpoint_digest,
    export_network,
    runtime_folder,
)
from s2m2_ros.backends.inputs import (
    check_input_scale,
    check_pair,
    maps_at_input_size,
    prepare_network_input,
)

#: left, right (1×3×H×W float32, RGB 0–255) → disparity, visibility, confidence.
GraphRunner = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


class ExportedGraphBackend(StereoBackend):
    """The network as an exported graph, one compiled session per padded size.

    ``refine_iters`` and ``allow_negative`` are baked into a graph, so changing them at
    run time switches to (and on first use exports) the graph for the new values.
    """

    runtime_options: ClassVar[frozenset[str]] = frozenset(
        {"refine_iters", "allow_negative", "input_scale"})
    #: The runtime's Python package, for the "install it" message.
    runtime_package: ClassVar[str]

    def __init__(self, weights: Path, *, refine_iters: int, allow_negative: bool,
                 input_scale: float, cache_dir: str | os.PathLike[str] | None,
                 opset: int) -> None:
        from s2m2_ros import zoo

        self.weights_path = weights
        self._lock = threading.Lock()
        self._network: torch.nn.Module | None = None
        self._refine_iters = 3
        self.refine_iters = refine_iters
        self.allow_negative = bool(allow_negative)
        self._input_scale = 1.0
        self.input_scale = input_scale
        self.opset = int(opset)
        self.cache = EngineCache(cache_dir)
        self._checkpoint = checkpoint_digest(weights)
        try:
            state_dict = zoo.load_state_dict(weights)
            channels, transformers = zoo.infer_architecture(state_dict)
        except zoo.CheckpointError as error:
            text = str(error)
            raise BackendError(text if str(weights) in text else f"{weights}: {text}") from None
        spec = zoo.spec_for_architecture(channels, transformers)
        self.model_name = f"S2M2-{spec.name}" if spec else f"S2M2-C{channels}N{transformers}"
        self._architecture = (channels, transformers)
        self._state_dict: dict[str, torch.Tensor] | None = state_dict
        self._runners: dict[GraphKey, GraphRunner] = {}
        self.first_call_ms: dict[tuple[int, int], float] = {}

    # -- options -----------------------------------------------------------------------

    @property
    def refine_iters(self) -> int:
        return self._refine_iters

    @refine_iters.setter
    def refine_iters(self, value: int) -> None:
        if isinstance(value, bool) or int(value) != value or value < 0:
            raise ValueError(f"refine_iters must be a non-negative integer, got {value!r}")
        self._refine_iters = int(value)

    @property
    def input_scale(self) -> float:
        return self._input_scale

    @input_scale.setter
    def input_scale(self, value: float) -> None:
        try:
            self._input_scale = check_input_scale(value)
        except ValueError as error:
            raise BackendError(str(error)) from None

    def set_option(self, name: str, value: Any) -> None:
        if name not in self.runtime_options:
            raise BackendError(f"backend {self.name!r} has no run-time option {name!r}")
        with self._lock:
            setattr(self, name, value)

    @property
    def needs_warmup(self) -> bool:
        return True  # a new size exports (or loads) and compiles a graph

    # -- what a runtime provides -------------------------------------------------------

    @property
    @abstractmethod
    def runtime_tag(self) -> str:
        """Folder name of this runtime's compiled cache: runtime, version, device,
        precision (and whatever else changes the compiled result)."""

    @abstractmethod
    def load_graph(self, onnx_path: Path, compiled_cache: Path) -> GraphRunner:
        """Compile ``onnx_path`` (using and filling ``compiled_cache``) into a runner."""

    def runtime_description(self) -> dict[str, Any]:
        """Runtime-specific keys for :meth:`describe`."""
        return {}

    # -- graphs ------------------------------------------------------------------------

    def _network_for_export(self) -> torch.nn.Module:
        from s2m2_ros.model import S2M2

        if self._network is None:
            network = S2M2(*self._architecture)
            assert self._state_dict is not None
            network.load_state_dict(self._state_dict, strict=True)
            self._network = network.eval()
            self._state_dict = None  # the network holds the weights now
        self._network.refine_iters = self.refine_iters
        self._network.allow_negative = self.allow_negative
        return self._network

    def graph_key(self, height: int, width: int) -> GraphKey:
        """The cache key of the graph for a padded ``height``×``width`` input."""
        return GraphKey(self._checkpoint, height, width, self.refine_iters,
                        self.allow_negative, self.opset, torch.__version__.split("+")[0])

    def _runner(self, key: GraphKey) -> GraphRunner:
        runner = self._runners.get(key)
        if runner is not None:
            return runner
        start = time.perf_counter()
        export = export_network(self._network_for_export(), key.height, key.width, key.opset)
        onnx_path = self.cache.graph(key, export)
        compiled = runtime_folder(onnx_path, self.runtime_tag)
        try:
            runner = self.load_graph(onnx_path, compiled)
        except BackendError:
            raise
        except Exception as error:
            # The graph matched its checksum, so the runtime's compiled cache is what
            # it could not use: drop that (only) and compile again, once.
            self.cache.discard_compiled(compiled, f"{self.name} could not load it: "
                                        f"{_first_line(error)}")
            try:
                runner = self.load_graph(onnx_path, runtime_folder(onnx_path,
                                                                   self.runtime_tag))
            except Exception as second:
                raise BackendError(f"{self.name} cannot compile {onnx_path}: "
                                   f"{_first_line(second)}") from None
        self._runners[key] = runner
        self.first_call_ms[(key.height, key.width)] = (time.perf_counter() - start) * 1e3
        return runner

    # -- inference ---------------------------------------------------------------------

    def infer(self, left: np.ndarray, right: np.ndarray, color_order: str = "rgb") -> StereoResult:
        left, right, order = check_pair(left, right, color_order)
        height, width = left.shape[:2]
        with self._lock, torch.inference_mode():
            timings: dict[str, float] = {}
            start = time.perf_counter()
            padded, pad_info = prepare_network_input(
                torch.from_numpy(np.stack((left, right))), order, self.input_scale)
            # The graph takes plain NCHW float32 arrays.
            images = padded.contiguous().numpy()
            runner = self._runner(self.graph_key(*images.shape[-2:]))
            network_start = time.perf_counter()
            timings["upload"] = (network_start - start) * 1e3
            outputs = runner(images[:1], images[1:])
            download_start = time.perf_counter()
            timings["network"] = (download_start - network_start) * 1e3
            maps = maps_at_input_size(*(torch.from_numpy(np.asarray(output))
                                        for output in outputs), pad_info, height, width)
            timings["download"] = (time.perf_counter() - download_start) * 1e3
        return StereoResult(maps[0], maps[1], maps[2], timings)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self.model_name,
            "weights": str(self.weights_path),
            "refine_iters": self.refine_iters,
            "allow_negative": self.allow_negative,
            "input_scale": self.input_scale,
            "engine_cache": str(self.cache.root),
            "graphs_exported": self.cache.stats.exports,
            "graphs_reused": self.cache.stats.reused,
            "graphs_rebuilt": self.cache.stats.rebuilt,
            **self.runtime_description(),
        }


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def missing_runtime(package: str, backend: str) -> BackendError:
    """The one-line error for a backend whose runtime is not installed."""
    return BackendError(
        f"backend {backend!r} needs the Python package {package!r}, which is not installed "
        f"here: pip install {package} (pinned in requirements.txt), or choose another "
        "backend (torch, sgbm)")


def find_checkpoint(model: str, weights: str | os.PathLike[str] | None,
                    weights_dir: str | os.PathLike[str] | None) -> Path:
    """The checkpoint file for ``weights`` or ``model``; BackendError when missing."""
    from s2m2_ros.zoo import CheckpointError, find_weights

    try:
        return find_weights(model, weights=weights or None, weights_dir=weights_dir or None)
    except (CheckpointError, ValueError) as error:
        raise BackendError(str(error)) from None
