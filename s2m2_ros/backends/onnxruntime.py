# SPDX-License-Identifier: Apache-2.0
"""``onnxruntime``: the exported network run by ONNX Runtime.

Execution providers follow ``device``: on ``cuda``/``cuda:N`` (or ``auto`` with a CUDA
build) TensorRT, then CUDA, then CPU, as far as this onnxruntime build has them; on
``cpu`` the CPU provider. ``precision`` auto is fp16 on the GPU (TensorRT builds fp16
engines; the CUDA provider runs a float16 copy of the graph with the matching stage
kept in float32) and fp32 on the CPU. TensorRT engines and the float16 graph are
cached beside the exported ONNX in the engine cache.

Tuning hooks: :data:`SESSION_CONFIG` (session config entries for every session),
:data:`TENSORRT_OPTIONS` and :data:`CUDA_OPTIONS` (provider options), and the backend
options ``num_threads``, ``optimization_level`` and ``providers`` (an explicit list).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from s2m2_ros.backends import register_backend
from s2m2_ros.backends.base import BackendError
from s2m2_ros.backends.exported import (
    ExportedGraphBackend,
    GraphRunner,
    find_checkpoint,
    missing_runtime,
)
from s2m2_ros.export import OPSET

#: Session config entries (``SessionOptions.add_session_config_entry``) for every session.
SESSION_CONFIG: dict[str, str] = {}
#: TensorRT provider options; the engine cache path and fp16 are set per backend.
TENSORRT_OPTIONS: dict[str, Any] = {
    "trt_engine_cache_enable": True,
    "trt_timing_cache_enable": True,
    # The refinement loop and the upsampling make a deep graph: give the builder room.
    "trt_max_workspace_size": 4 << 30,
}
#: CUDA provider options; the device id is set per backend.
CUDA_OPTIONS: dict[str, Any] = {"cudnn_conv_algo_search": "EXHAUSTIVE"}
_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
#: Node-name fragments of the matching stage, kept float32 in the float16 graph.
FP32_SCOPES: tuple[str, ...] = ("disp_init",)


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise missing_runtime("onnxruntime", "onnxruntime") from None
    return onnxruntime


class OnnxRuntimeBackend(ExportedGraphBackend):
    """The exported network in an ``onnxruntime.InferenceSession``."""

    name: ClassVar[str] = "onnxruntime"
    runtime_package: ClassVar[str] = "onnxruntime"

    def __init__(self, weights: Path, *, device: str, precision: str, num_threads: int,
                 optimization_level: str, providers: list[str] | None,
                 **graph_options: Any) -> None:
        self._ort = _import_onnxruntime()
        self.device, self._device_id = self._resolve_device(device)
        self.precision = self._resolve_precision(precision)
        self.providers = self._choose_providers(providers)
        self.num_threads = int(num_threads)
        self.optimization_level = optimization_level
        super().__init__(weights, **graph_options)

    def _resolve_device(self, device: str) -> tuple[str, int]:
        text = str(device).strip().lower()
        gpu = "CUDAExecutionProvider" in self._ort.get_available_providers()
        if text == "auto":
            text = "cuda" if gpu else "cpu"
        if text == "cpu":
            return "cpu", 0
        if text == "cuda" or text.startswith("cuda:"):
            if not gpu:
                raise BackendError(
                    f"device {device!r} needs onnxruntime with CUDA (onnxruntime-gpu); this "
                    f"onnxruntime {self._ort.__version__} has "
                    f"{', '.join(self._ort.get_available_providers())}")
            index = text.partition(":")[2]
            if index and not index.isdigit():
                raise BackendError(f"invalid device {device!r}: use cpu, cuda or cuda:N")
            return f"cuda:{int(index or 0)}", int(index or 0)
        raise BackendError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N")

    def _resolve_precision(self, precision: str) -> str:
        text = str(precision).strip().lower()
        if text == "auto":
            return "fp16" if self.device != "cpu" else "fp32"
        if text == "fp32" or (text == "fp16" and self.device != "cpu"):
            return text
        raise BackendError(f"onnxruntime runs fp32 on the CPU and fp32 or fp16 on CUDA; "
                           f"precision {precision!r} on {self.device} is not supported")

    def _choose_providers(self, requested: list[str] | None) -> list[str]:
        available = self._ort.get_available_providers()
        if requested:
            missing = [name for name in requested if name not in available]
            if missing:
                raise BackendError(f"onnxruntime providers {', '.join(missing)} are not in "
                                   f"this build ({', '.join(available)})")
            return list(requested)
        wanted = [*_GPU_PROVIDERS, "CPUExecutionProvider"] if self.device != "cpu" \
            else ["CPUExecutionProvider"]
        return [name for name in wanted if name in available]

    @property
    def runtime_tag(self) -> str:
        first = self.providers[0].removesuffix("ExecutionProvider").lower()
        return f"onnxruntime-{self._ort.__version__}-{first}-{self.precision}"

    def _provider_options(self, compiled_cache: Path) -> list[tuple[str, dict[str, Any]]]:
        chosen = []
        for name in self.providers:
            options: dict[str, Any] = {}
            if name == "TensorrtExecutionProvider":
                options = {**TENSORRT_OPTIONS, "device_id": self._device_id,
                           "trt_fp16_enable": self.precision == "fp16",
                           "trt_engine_cache_path": str(compiled_cache),
                           "trt_timing_cache_path": str(compiled_cache)}
            elif name == "CUDAExecutionProvider":
                options = {**CUDA_OPTIONS, "device_id": self._device_id}
            chosen.append((name, options))
        return chosen

    def _session_graph(self, onnx_path: Path, compiled_cache: Path) -> Path:
        """The graph the session loads: the export, or its float16 copy for CUDA fp16."""
        if self.precision != "fp16" or self.providers[0] != "CUDAExecutionProvider":
            return onnx_path  # TensorRT lowers precision itself; CPU stays fp32
        half = compiled_cache / "model-fp16.onnx"
        if not half.is_file():
            import onnx
            from onnxruntime.transformers.float16 import convert_float_to_float16

            graph = onnx.load(str(onnx_path))
            keep = [node.name for node in graph.graph.node
                    if any(scope in node.name for scope in FP32_SCOPES)]
            converted = convert_float_to_float16(graph, keep_io_types=True,
                                                 node_block_list=keep)
            temporary = half.with_suffix(".part")
            onnx.save(converted, str(temporary))
            os.replace(temporary, half)
        return half

    def load_graph(self, onnx_path: Path, compiled_cache: Path) -> GraphRunner:
        options = self._ort.SessionOptions()
        if self.num_threads:
            options.intra_op_num_threads = self.num_threads
        if self.optimization_level:
            options.graph_optimization_level = getattr(
                self._ort.GraphOptimizationLevel, self.optimization_level)
        options.log_severity_level = 3  # errors only: no per-node placement chatter
        for key, value in SESSION_CONFIG.items():
            options.add_session_config_entry(key, value)
        session = self._ort.InferenceSession(
            str(self._session_graph(onnx_path, compiled_cache)), sess_options=options,
            providers=self._provider_options(compiled_cache))
        names = ["disparity", "visibility", "confidence"]

        def run(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, ...]:
            return tuple(session.run(names, {"left": left, "right": right}))
        return run

    def runtime_description(self) -> dict[str, Any]:
        return {"device": self.device, "precision": self.precision,
                "runtime": f"onnxruntime {self._ort.__version__}",
                "providers": ", ".join(self.providers)}


@register_backend("onnxruntime")
def create_onnxruntime_backend(*, model: str = "M",
                               weights: str | os.PathLike[str] | None = None,
                               weights_dir: str | os.PathLike[str] | None = None,
                               device: str = "auto", precision: str = "auto",
                               compile: bool = False, allow_negative: bool = False,
                               refine_iters: int = 3, input_scale: float = 1.0,
                               cache_dir: str | os.PathLike[str] | None = None,
                               num_threads: int = 0, optimization_level: str = "",
                               providers: list[str] | None = None,
                               opset: int = OPSET) -> OnnxRuntimeBackend:
    """ONNX Runtime (``compile`` is implied and ignored).

    ``num_threads`` 0: onnxruntime's choice; ``optimization_level``: a
    ``GraphOptimizationLevel`` name (e.g. ORT_ENABLE_ALL), empty for the default;
    ``providers``: execution providers in order, overriding the choice from ``device``.
    """
    del compile  # every graph is compiled by the session
    _import_onnxruntime()
    path = find_checkpoint(model, weights, weights_dir)
    return OnnxRuntimeBackend(path, device=device, precision=precision,
                              num_threads=num_threads, optimization_level=optimization_level,
                              providers=providers, refine_iters=refine_iters,
                              allow_negative=allow_negative, input_scale=input_scale,
                              cache_dir=cache_dir, opset=opset)
