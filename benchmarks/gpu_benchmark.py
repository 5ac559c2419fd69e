# SPDX-License-Identifier: Apache-2.0
"""S2M2 on an NVIDIA GPU: torch eager fp16, torch.compile fp16, ONNX Runtime CUDA fp16 and
ONNX Runtime TensorRT fp16, one table. Run by ``benchmarks/gpu_check.sh``.

Usage (from the repository root)::

    python benchmarks/gpu_benchmark.py --budget 420            # S, M at 640×480, 1216×1024
    python benchmarks/gpu_benchmark.py --dry-run               # CPU, tiny net: the logic only

Every row times the network's ``forward`` on padded float tensors already on the device
(the same input for every runtime): the median over ``--repeats`` calls after one warm-up
call; "first call" is that warm-up (torch.compile's compilation, TensorRT's engine
build), "prepare" what came before it (ONNX export). Errors are against torch eager
fp32 on the same GPU. Rows run in order of importance (S at 640×480 first) until
``--budget`` seconds are spent; the rest say they were skipped.

``--dry-run`` runs the same code on the CPU with the tiny S2M2(32, 1) at 96×64: torch
eager fp32, torch.compile with Dynamo's ``eager`` backend (no code generation), ONNX
Runtime's CPU provider in place of CUDA and TensorRT (rows say so).
It checks the argument handling, the export and the table, not the GPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from benchmark_common import format_table, machine_lines, median, parse_resolution

MODES = ("torch-eager", "torch-compile", "ort-cuda", "ort-tensorrt")
SIZES = {"S": (128, 1), "M": (192, 2), "tiny": (32, 1)}  # feature channels, transformers


def build_network(size: str, device: Any) -> Any:
    import torch

    from s2m2_ros.model import S2M2
    from s2m2_ros.zoo import MODELS

    channels, transformers = SIZES[size]
    if size in MODELS:
        spec = MODELS[size]
        channels, transformers = spec.feature_channels, spec.num_transformer
    torch.manual_seed(0)
    return S2M2(channels, transformers).eval().to(device)


def make_inputs(width: int, height: int, device: Any) -> tuple[Any, Any]:
    import torch

    generator = torch.Generator().manual_seed(1)
    left = torch.rand(1, 3, height, width, generator=generator) * 255.0
    right = torch.roll(left, shifts=-8, dims=-1)
    return left.to(device), right.to(device)


def _timed(call: Callable[[], Any], repeats: int, synchronize: Callable[[], None]
           ) -> tuple[float, list[float], Any]:
    started = time.perf_counter()
    output = call()
    synchronize()
    first = time.perf_counter() - started
    latencies = []
    for _ in range(repeats):
        started = time.perf_counter()
        output = call()
        synchronize()
        latencies.append(time.perf_counter() - started)
    return first, latencies, output


def _export_onnx(network: Any, left: Any, right: Any, folder: str) -> str:
    import torch

    path = os.path.join(folder, "s2m2.onnx")
    cpu_network = network.float().cpu()
    torch.onnx.export(cpu_network, (left.cpu(), right.cpu()), path, dynamo=True,
                      opset_version=18, input_names=["left", "right"],
                      output_names=["disparity", "visibility", "confidence"])
    network.to(left.device)
    return path


def _to_fp16(path: str) -> str:
    """fp16 weights and activations, fp32 inputs and outputs (ONNX Runtime's converter)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    converted = convert_float_to_float16(onnx.load(path), keep_io_types=True)
    fp16_path = path.replace(".onnx", "_fp16.onnx")
    onnx.save(converted, fp16_path)
    return fp16_path


def run_row(mode: str, size: str, width: int, height: int, args: argparse.Namespace,
            reference: dict[tuple[str, int, int], Any]) -> dict[str, Any]:
    """Time one configuration; the row's cells as a dict."""
    import numpy as np
    import torch

    device = torch.device("cpu" if args.dry_run else "cuda")
    synchronize = (lambda: None) if args.dry_run else torch.cuda.synchronize
    network = build_network(size, device)
    left, right = make_inputs(width, height, device)
    key = (size, width, height)
    row: dict[str, Any] = {"mode": mode, "size": size, "resolution": f"{width}×{height}"}
    if key not in reference:  # torch eager fp32, the reference of every row's error
        with torch.inference_mode():
            reference[key] = network(left, right)[0].float().cpu().numpy()
    autocast_dtype = torch.float32 if args.dry_run else torch.float16
    prepare_s = 0.0
    if mode.startswith("torch"):
        forward = network
        if mode == "torch-compile":
            # The dry run traces with Dynamo but skips inductor's code generation (minutes
            # of C++ compilation on a CPU for a check of this script's logic).
            forward = torch.compile(network, dynamic=False,
                                    backend="eager" if args.dry_run else "inductor")

        def call() -> Any:
            with torch.inference_mode(), torch.autocast(
                    device.type, dtype=autocast_dtype, enabled=not args.dry_run):
                return forward(left, right)[0]
        first, latencies, output = _timed(call, args.repeats, synchronize)
        disparity = output.float().cpu().numpy()
        row["precision"] = "fp32 (dry run)" if args.dry_run else "fp16 autocast"
    else:
        import onnxruntime as ort

        with tempfile.TemporaryDirectory(prefix="s2m2_gpu_") as folder:
            started = time.perf_counter()
            path = _export_onnx(network, left, right, folder)
            if not args.dry_run and mode == "ort-cuda":
                path = _to_fp16(path)
            prepare_s = time.perf_counter() - started
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            if args.dry_run:
                providers: list[Any] = ["CPUExecutionProvider"]
                row["precision"] = "fp32, CPU provider (dry run)"
            elif mode == "ort-cuda":
                providers = ["CUDAExecutionProvider"]
                row["precision"] = "fp16 (converted graph)"
            else:
                providers = [("TensorrtExecutionProvider", {
                    "trt_fp16_enable": True, "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": os.path.join(folder, "trt")}),
                    "CUDAExecutionProvider"]
                row["precision"] = "fp16 (TensorRT)"
            started = time.perf_counter()
            session = ort.InferenceSession(path, options, providers=providers)
            prepare_s += time.perf_counter() - started
            used = session.get_providers()[0]
            if not args.dry_run and used != (providers[0] if isinstance(providers[0], str)
                                             else providers[0][0]):
                raise RuntimeError(f"{mode}: ONNX Runtime fell back to {used}")
            feeds = {"left": left.cpu().numpy(), "right": right.cpu().numpy()}
            if args.dry_run:
                def call() -> Any:
                    return session.run(None, feeds)[0]  # every output, as the node
            else:
                binding = session.io_binding()
                for name, tensor in (("left", left), ("right", right)):
                    binding.bind_input(name, "cuda", 0, np.float32, list(tensor.shape),
                                       tensor.data_ptr())
                for name in ("disparity", "visibility", "confidence"):
                    binding.bind_output(name, "cuda")

                def call() -> Any:
                    session.run_with_iobinding(binding)
                    return binding.get_outputs()[0]
            first, latencies, output = _timed(call, args.repeats, lambda: None)
            disparity = output if args.dry_run else output.numpy()
    error = np.abs(np.asarray(disparity, dtype=np.float32).reshape(reference[key].shape)
                   - reference[key])
    latency = median(latencies)
    row.update({"prepare_s": prepare_s, "first_s": first, "latency_s": latency,
                "fps": 1.0 / latency, "max_error": float(error.max()),
                "median_error": float(np.median(error))})
    if not args.dry_run:
        row["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20 if mode.startswith(
            "torch") else None
        torch.cuda.reset_peak_memory_stats()
    return row


def format_rows(rows: list[dict[str, Any]], markdown: bool) -> str:
    headers = ["model", "resolution", "runtime", "precision", "median latency (ms)", "FPS",
               "first call (s)", "prepare (s)", "max |Δd| vs eager fp32 (px)",
               "median |Δd| (px)", "note"]
    cells = []
    for row in rows:
        if "error_text" in row:
            cells.append([row["size"], row["resolution"], row["mode"], "—", "—", "—", "—", "—",
                          "—", "—", row["error_text"]])
            continue
        cells.append([row["size"], row["resolution"], row["mode"], row["precision"],
                      f"{row['latency_s'] * 1e3:.1f}", f"{row['fps']:.1f}",
                      f"{row['first_s']:.1f}", f"{row['prepare_s']:.1f}",
                      f"{row['max_error']:.3g}", f"{row['median_error']:.3g}",
                      row.get("note", "")])
    return format_table(headers, cells, markdown)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=str.upper, choices=("S", "M"),
                        default=["S", "M"])
    parser.add_argument("--resolutions", nargs="+", type=parse_resolution,
                        default=None, metavar="WxH", help="default 640x480 1216x1024")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per row")
    parser.add_argument("--budget", type=float, default=420.0,
                        help="seconds for all rows; rows not started by then are skipped")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU, tiny network at 96x64: check the logic without a GPU")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be ≥ 1")
    if args.resolutions is None:
        args.resolutions = [parse_resolution(text) for text in ("640x480", "1216x1024")]
    if args.dry_run:
        args.sizes, args.resolutions = ["TINY"], [(96, 64)]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print(f"gpu_benchmark: skipped, torch {torch.__version__} sees no CUDA device "
              "(--dry-run checks the logic on the CPU)")
        return 0
    deadline = time.monotonic() + args.budget
    lines = machine_lines(device="cpu" if args.dry_run else "cuda")
    try:
        import onnxruntime as ort
        if not args.dry_run and hasattr(ort, "preload_dlls"):
            ort.preload_dlls()  # CUDA and cuDNN from the nvidia-* wheels torch brought
        lines.append(f"onnxruntime {ort.__version__}, providers: "
                     + ", ".join(ort.get_available_providers()))
    except ImportError as error:
        lines.append(f"onnxruntime not importable: {error}")
    print("## S2M2 on the GPU" + (" (DRY RUN on the CPU: not GPU numbers)" if args.dry_run
                                  else ""))
    print()
    for line in lines:
        print(f"- {line}")
    print()
    rows: list[dict[str, Any]] = []
    reference: dict[tuple[str, int, int], Any] = {}
    # Importance order: the smallest configuration in every runtime first.
    order = [(size, resolution) for resolution in args.resolutions for size in args.sizes]
    for size, (width, height) in order:
        for mode in args.modes:
            label = {"mode": mode, "size": size.replace("TINY", "tiny"),
                     "resolution": f"{width}×{height}"}
            if time.monotonic() > deadline:
                rows.append({**label, "error_text": f"skipped: the {args.budget:.0f} s "
                             "budget was spent"})
                continue
            print(f"[gpu_benchmark] {label['size']} {label['resolution']} {mode} ...",
                  file=sys.stderr, flush=True)
            try:
                rows.append(run_row(mode, label["size"], width, height, args, reference))
            except Exception as error:  # one failed runtime must not lose the table
                text = str(error).strip().splitlines()[0] if str(error).strip() else ""
                rows.append({**label, "error_text": f"failed: {type(error).__name__}: "
                             f"{text[:160]}"})
            finally:
                if not args.dry_run:
                    torch.cuda.empty_cache()
    print(format_rows(rows, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
