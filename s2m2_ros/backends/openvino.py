# SPDX-License-Identifier: Apache-2.0
"""``openvino``: the exported network compiled by OpenVINO for the CPU.

fp32 by default; ``precision`` ``bf16`` (or ``fp16`` where the CPU has it) is an
opt-in, with the optimal-transport matching kept in fp32. Compiled graphs are cached
(OpenVINO's model cache) beside the exported ONNX in the engine cache, so a second
start neither re-exports nor recompiles.

Importing openvino here does not load its telemetry (see :func:`_import_openvino`).

Tuning hooks: :data:`CPU_PROPERTIES` (the defaults for every compile) and the
backend options ``num_threads``, ``performance_hint`` and ``properties`` (any
OpenVINO property, applied last).
"""

from __future__ import annotations

import os
import sys
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

#: OpenVINO properties every compile starts from (the benchmarks tune these).
CPU_PROPERTIES: dict[str, Any] = {
    # One request at a time, as fast as possible: what a camera stream wants.
    "PERFORMANCE_HINT": "LATENCY",
}
#: precision option → OpenVINO's inference precision hint, and the CPU capability it needs.
_PRECISIONS = {"fp32": ("f32", None), "bf16": ("bf16", "BF16"), "fp16": ("f16", "FP16")}
#: Operations of the matching stage (optimal transport and the sub-pixel window) whose
#: names the exporter derives from the ``disp_init`` module; kept in fp32 under bf16/fp16.
FP32_SCOPES: tuple[str, ...] = ("disp_init",)
# OpenVINO's runtime attribute that keeps a node's precision when the rest is lowered.
_KEEP_PRECISION = "disable_fp16_compression_0"
_CONVERSION_TOOLS = "openvino.tools.ovc"


def _import_openvino() -> Any:
    """``import openvino``, without its model-conversion tools.

    ``openvino/__init__`` imports ``openvino.tools.ovc`` (``convert_model``) when it can,
    and that module, on import, writes a client id under ~/intel and sends a usage event
    to Google Analytics unless the user opted out. The backend reads ONNX with
    ``openvino.Core`` and needs none of it: the tools are hidden for the import (their
    absence is a case openvino handles), then made importable again for anyone who
    asks for them explicitly.
    """
    if "openvino" not in sys.modules:
        hidden = _CONVERSION_TOOLS not in sys.modules
        if hidden:
            sys.modules[_CONVERSION_TOOLS] = None  # type: ignore[assignment]
        try:
            import openvino  # noqa: F401
        except ImportError:
            raise missing_runtime("openvino", "openvino") from None
        finally:
            if hidden and sys.modules.get(_CONVERSION_TOOLS, 0) is None:
                del sys.modules[_CONVERSION_TOOLS]
    module = sys.modules["openvino"]
    if module is None:  # blocked, as a test does to simulate a missing runtime
        raise missing_runtime("openvino", "openvino")
    return module


class OpenVinoBackend(ExportedGraphBackend):
    """The exported network compiled by OpenVINO on the CPU."""

    name: ClassVar[str] = "openvino"
    runtime_package: ClassVar[str] = "openvino"

    def __init__(self, weights: Path, *, precision: str, num_threads: int,
                 performance_hint: str, properties: dict[str, Any] | None,
                 **graph_options: Any) -> None:
        self._openvino = _import_openvino()
        self._core = self._openvino.Core()
        super().__init__(weights, **graph_options)
        self.precision = self._check_precision(precision)
        self.properties: dict[str, Any] = dict(CPU_PROPERTIES)
        if performance_hint:
            self.properties["PERFORMANCE_HINT"] = performance_hint
        if num_threads:
            self.properties["INFERENCE_NUM_THREADS"] = int(num_threads)
        self.properties["INFERENCE_PRECISION_HINT"] = _PRECISIONS[self.precision][0]
        self.properties.update(properties or {})

    def _check_precision(self, precision: str) -> str:
        text = str(precision).strip().lower()
        if text == "auto":
            return "fp32"  # reduced precision is an opt-in (see the module doc)
        if text not in _PRECISIONS:
            raise BackendError(f"openvino precision must be auto, fp32, bf16 or fp16, "
                               f"got {precision!r}")
        capability = _PRECISIONS[text][1]
        available = self._core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if capability and capability not in available:
            raise BackendError(f"{text} is not supported by this CPU under openvino "
                               f"(capabilities: {', '.join(available)}); use fp32")
        return text

    @property
    def runtime_tag(self) -> str:
        return f"openvino-{self._openvino.__version__.split('-')[0]}-cpu-{self.precision}"

    def load_graph(self, onnx_path: Path, compiled_cache: Path) -> GraphRunner:
        config = {**self.properties, "CACHE_DIR": str(compiled_cache)}
        if self.precision == "fp32":
            # From the file path: on a cache hit OpenVINO does not even read the graph.
            compiled = self._core.compile_model(str(onnx_path), "CPU", config)
        else:
            model = self._core.read_model(str(onnx_path))
            for operation in model.get_ops():
                if any(scope in operation.get_friendly_name() for scope in FP32_SCOPES):
                    operation.get_rt_info()[_KEEP_PRECISION] = ""
            compiled = self._core.compile_model(model, "CPU", config)
        request = compiled.create_infer_request()
        outputs = [compiled.output(name) for name in ("disparity", "visibility", "confidence")]

        def run(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, ...]:
            results = request.infer({"left": left, "right": right})
            # Copies: the request reuses its output buffers on the next call.
            return tuple(np.array(results[output]) for output in outputs)
        return run

    def runtime_description(self) -> dict[str, Any]:
        return {"device": "cpu", "device_name": self._core.get_property("CPU",
                                                                        "FULL_DEVICE_NAME"),
                "precision": self.precision,
                "runtime": f"openvino {self._openvino.__version__}"}


@register_backend("openvino")
def create_openvino_backend(*, model: str = "M", weights: str | os.PathLike[str] | None = None,
                            weights_dir: str | os.PathLike[str] | None = None,
                            device: str = "auto", precision: str = "auto",
                            compile: bool = False, allow_negative: bool = False,
                            refine_iters: int = 3, input_scale: float = 1.0,
                            cache_dir: str | os.PathLike[str] | None = None,
                            num_threads: int = 0, performance_hint: str = "",
                            properties: dict[str, Any] | None = None,
                            opset: int = OPSET) -> OpenVinoBackend:
    """OpenVINO on the CPU (``device`` auto or cpu; ``compile`` is implied and ignored).

    ``num_threads`` 0: OpenVINO's choice; ``performance_hint``: LATENCY (default) or
    THROUGHPUT; ``properties``: OpenVINO properties applied last; ``cache_dir``: the
    engine cache root (default ``$S2M2_ENGINE_CACHE`` or ~/.cache/s2m2_ros/engines).
    """
    del compile  # every graph is compiled
    if str(device).strip().lower() not in ("auto", "cpu"):
        raise BackendError(f"backend 'openvino' runs on the CPU here; device {device!r} is "
                           "not supported (use cpu or auto, or backend torch/onnxruntime "
                           "for CUDA)")
    _import_openvino()  # the missing-runtime message before looking for weights
    path = find_checkpoint(model, weights, weights_dir)
    return OpenVinoBackend(path, precision=precision, num_threads=num_threads,
                           performance_hint=performance_hint, properties=properties,
                           refine_iters=refine_iters, allow_negative=allow_negative,
                           input_scale=input_scale, cache_dir=cache_dir, opset=opset)
