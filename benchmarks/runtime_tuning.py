# SPDX-License-Identifier: Apache-2.0
"""Runtime settings side by side in one process: torch against OpenVINO and ONNX Runtime
configurations on one exported graph, calls interleaved, medians and errors.

Usage (from the repository root)::

    python benchmarks/runtime_tuning.py --size S --resolution 640x480 --rounds 3
    python benchmarks/runtime_tuning.py --pair motorcycle --candidates torch ov-f32 \\
        ov-f16 ov-bf16 torch-bf16 --onnx /tmp/s_480x640.onnx

It times the network alone on the padded float pair (no image conversion), one call per
candidate per round in turn (torch, ov-f32, …, torch, ov-f32, …), so every candidate sees
the same drift of a shared machine's load; the ratio is each median over torch's. The
errors are the disparity against torch fp32 on the same input (``noise``: a random
texture shifted by 8 px; ``motorcycle``: scikit-image's Middlebury pair cropped to the
size). Random weights (seed 0) unless ``--weights``. This is where the settings that
``s2m2_ros.backends`` uses were chosen; ``model_benchmark.py --backends`` measures the
backends themselves.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from benchmark_common import build_network, machine_lines, median, parse_resolution

# What a camera stream wants: one request at a time on both cores.
_LATENCY = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": 2}
#: name → (runtime, settings). OpenVINO: compile properties; ONNX Runtime: intra-op threads.
CANDIDATES: dict[str, tuple[str, dict[str, Any]]] = {
    "torch": ("torch", {}),
    "torch-bf16": ("torch", {"autocast": "bf16"}),
    "ov-f32-plain": ("openvino", {"INFERENCE_PRECISION_HINT": "f32"}),
    "ov-f32": ("openvino", {**_LATENCY, "INFERENCE_PRECISION_HINT": "f32"}),
    "ov-f32-pinned": ("openvino", {**_LATENCY, "INFERENCE_PRECISION_HINT": "f32",
                                   "ENABLE_CPU_PINNING": True}),
    "ov-f16": ("openvino", {**_LATENCY, "INFERENCE_PRECISION_HINT": "f16"}),
    "ov-bf16": ("openvino", {**_LATENCY, "INFERENCE_PRECISION_HINT": "bf16"}),
    "ort": ("onnxruntime", {"threads": 2}),
}


def make_pair(kind: str, width: int, height: int) -> tuple[Any, Any]:
    import numpy as np
    import torch

    if kind == "motorcycle":
        import skimage.data

        left, right, _ = skimage.data.stereo_motorcycle()  # 500×741
        if height > left.shape[0] or width > left.shape[1]:
            raise SystemExit(f"the Motorcycle pair is {left.shape[1]}×{left.shape[0]}; "
                             f"{width}×{height} does not fit")
        top, side = (left.shape[0] - height) // 2, (left.shape[1] - width) // 2

        def crop(image: Any) -> Any:
            patch = np.ascontiguousarray(image[top:top + height, side:side + width])
            return torch.from_numpy(patch).permute(2, 0, 1)[None].float().contiguous()
        return crop(left), crop(right)
    generator = torch.Generator().manual_seed(1)
    left = torch.rand(1, 3, height, width, generator=generator) * 255.0
    return left, torch.roll(left, shifts=-8, dims=-1)


def build_candidate(name: str, network: Any, onnx_path: str, left: Any, right: Any
                    ) -> Callable[[], Any]:
    import torch

    runtime, settings = CANDIDATES[name]
    if runtime == "torch":
        autocast = settings.get("autocast") == "bf16"

        def run_torch() -> Any:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                        enabled=autocast):
                return network(left, right)[0].float().numpy()
        return run_torch
    feeds = {"left": left.numpy(), "right": right.numpy()}
    if runtime == "openvino":
        import openvino

        compiled = openvino.Core().compile_model(onnx_path, "CPU", settings)
        request = compiled.create_infer_request()
        output = compiled.output(0)
        return lambda: request.infer(feeds)[output].copy()
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = settings["threads"]
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = onnxruntime.InferenceSession(onnx_path, options,
                                           providers=["CPUExecutionProvider"])
    return lambda: session.run(None, feeds)[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=str.upper, default="S", choices=("S", "M", "L", "XL"))
    parser.add_argument("--resolution", type=parse_resolution, default=(640, 480),
                        metavar="WxH", help="multiples of 32 (default 640x480)")
    parser.add_argument("--pair", choices=("noise", "motorcycle"), default="noise")
    parser.add_argument("--candidates", nargs="+", choices=tuple(CANDIDATES),
                        default=["torch", "ov-f32-plain", "ov-f32", "ov-f32-pinned",
                                 "ov-bf16", "ort"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--onnx", help="an ONNX export of this network and size to reuse "
                        "(written here when it does not exist)")
    args = parser.parse_args(argv)
    width, height = args.resolution
    if width % 32 or height % 32:
        parser.error("--resolution: width and height must be multiples of 32")

    import numpy as np
    import torch

    from s2m2_ros.export import export_onnx

    torch.set_num_threads(args.threads)
    for line in machine_lines(args.threads):
        print(f"- {line}")
    network = build_network(args.size).to(memory_format=torch.channels_last)  # as the engine
    left, right = make_pair(args.pair, width, height)
    with tempfile.TemporaryDirectory(prefix="s2m2_tuning_") as folder:
        onnx_path = args.onnx or os.path.join(folder, "network.onnx")
        if not os.path.exists(onnx_path):
            started = time.perf_counter()
            export_onnx(build_network(args.size), height, width, onnx_path)
            print(f"- ONNX export: {time.perf_counter() - started:.1f} s")
        with torch.inference_mode():
            reference = network(left, right)[0].numpy()
        calls: dict[str, Callable[[], Any]] = {}
        for name in args.candidates:
            started = time.perf_counter()
            calls[name] = build_candidate(name, network, onnx_path, left, right)
            build_s = time.perf_counter() - started
            started = time.perf_counter()
            error = np.abs(np.asarray(calls[name]()).reshape(reference.shape) - reference)
            print(f"{name:15s} build {build_s:6.1f} s, first call "
                  f"{time.perf_counter() - started:6.1f} s; |Δd| vs torch fp32: max "
                  f"{error.max():.3g}, mean {error.mean():.3g}, p99 "
                  f"{np.percentile(error, 99):.3g}, > 1 px {np.mean(error > 1) * 100:.2f} %",
                  flush=True)
        times: dict[str, list[float]] = {name: [] for name in args.candidates}
        for round_index in range(args.rounds):
            for name, call in calls.items():
                started = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - started)
            print(f"round {round_index + 1}: " + ", ".join(
                f"{name} {values[-1]:.2f}" for name, values in times.items())
                + f" s; load {os.getloadavg()[0]:.1f}", flush=True)
    base = median(times["torch"]) if "torch" in times else None
    for name, values in times.items():
        ratio = f", {median(values) / base:.2f}× torch" if base else ""
        print(f"{name:15s} median {median(values):.3f} s{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
