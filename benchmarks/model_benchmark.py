# SPDX-License-Identifier: Apache-2.0
"""Latency and peak memory of the S²M² network: backend × precision × model size × resolution.

Usage (from the repository root)::

    python benchmarks/model_benchmark.py                       # S, M, L, XL at 640×480
    python benchmarks/model_benchmark.py --sizes S --backends torch openvino onnxruntime \
        --precisions fp32 bf16 --rounds 3 --markdown          # backends, alternating
    python benchmarks/model_benchmark.py --sizes S M --resolutions 640x480 1216x1024 \\
        --precisions fp32 bf16 --repeats 5 --warmup 1 --markdown
    python benchmarks/model_benchmark.py --device cuda --compile --raw
    python benchmarks/model_benchmark.py --memory-estimate --markdown

Networks have random weights (``torch.manual_seed``): latency and memory do not
depend on the weights' values, and no checkpoint is needed (the seeded network is
saved to a temporary checkpoint, which every backend loads). Backends are built with
``create_backend`` exactly as the node builds them (``--backend-options`` adds
options, e.g. OpenVINO properties). Each configuration runs in a fresh subprocess,
so its peak memory is its own.

Backends and starts
    ``--rounds N`` runs the whole list of configurations N times in turn, so that the
    backends alternate (torch, openvino, torch, openvino, …) and share the drift of
    a shared machine's load; each row is then the median of the rounds' medians, and
    "× torch fp32" divides it by the torch fp32 row of the same model and size from
    the same run. "first start" is building the backend plus its first call in a
    process with an empty cache (ONNX export and compilation for the exported
    backends, compilation under ``--compile``); "second start" the same in a new
    process given the cache the first one filled (engine cache, OpenVINO's model
    cache, inductor's ``TORCHINDUCTOR_CACHE_DIR``), as after a restart of the node.

What is measured
    ``engine``: ``StereoEngine.infer`` with H×W×3 uint8 numpy images in and numpy maps
    out (upload, colour conversion, padding to multiples of 32, network, crop,
    download). ``raw`` (``--raw``): the network's ``forward`` on padded float tensors
    already on the device. Latency is the median over ``--repeats`` calls after
    ``--warmup`` calls; "first call" is the first call's time (oneDNN/cuDNN set-up,
    and compilation under ``--compile``). FPS = 1 / median latency.

    Memory on CPU: the child reads its resident set size (VmRSS) once the model is
    built, then resets the kernel's high-water mark (``/proc/self/clear_refs``, 5)
    so that VmHWM (what ``getrusage``'s ``ru_maxrss`` reports) afterwards is the peak
    of the inference calls alone. "peak RSS" is that high-water mark (the whole
    process: interpreter, libraries, weights, activations); "over model" is it minus
    the RSS after building (activations, outputs, oneDNN scratch, allocator slack).
    Where the reset is refused, ``ru_maxrss`` is used and the row says so. glibc
    keeps freed blocks below its (dynamic) mmap threshold for reuse, so RSS runs
    well above the live tensor bytes (for S at 320×240–640×480, 1.6–2× them);
    ``--malloc node`` gives the children the node's mallopt settings, ``--malloc
    tight`` settings under which every block of 64 KiB or more goes back to the
    kernel when freed, so that RSS follows the live bytes. On CUDA:
    ``torch.cuda.max_memory_allocated`` and that minus the memory allocated once the
    model is on the GPU (the row's note gives ``max_memory_reserved``).

``--memory-estimate``: computed, not measured
    For S/M/L/XL at 640×480, 1216×1024 and 2432×2048 (or ``--resolutions``) the
    peak is computed by running the engine's tensor path (uint8 pair → float RGB →
    padding → network → crop) on *fake* tensors (``torch._subclasses.FakeTensorMode``:
    shapes and dtypes only, no data, so XL at 2432×2048 costs nothing) under a
    ``TorchDispatchMode`` that adds every new tensor storage's bytes when an
    operator creates it and subtracts them when the storage is freed. Its maximum
    is the exact peak of live tensor bytes of that operator sequence, which real
    and fake runs share (checked: identical to the byte at 256×320). Weights
    (parameters × 4 bytes) are counted separately and added. Not counted: memory
    inside single kernels (oneDNN/cuDNN workspaces, the blocked buffers of the
    flash-attention kernels), allocator rounding and fragmentation, the CUDA
    context, the interpreter and libraries. To show how close that comes to a
    real process, the same configurations are measured at the small
    ``--measure-resolutions`` (default 320×240 and 640×480) as above, under glibc's
    default malloc and under ``tight`` (see above; ``--malloc`` chooses), and the
    numbers are printed side by side; every column says whether it is computed or
    measured. With ``tight`` the measurement is the computation plus a constant
    of about 30 MiB (libraries and oneDNN state set up by the first call; S at
    320×240: 131 MiB measured, 100 computed; at 640×480: 407 and 376); glibc's
    default allocator adds 60–90 % on top. The dominant tensors are the ¼-resolution matching volume
    (B·h·w² float32, h = H/4, w = W/4, several live copies in the transport
    solver) and, in the feature pyramid's bottleneck self-attention with relative
    positions, the explicit 2B·8·L² attention weights (L = H/32·W/32 tokens);
    ``--detail`` lists the largest tensors live at each peak.

    The CPU benchmark uses the same computation to skip configurations that would
    not fit in the available memory (``--force`` runs them anyway).

Timings on a loaded or shared machine are inflated; this script reports, it never
asserts. The machine (CPU, cores, load, torch version, threads) heads the output.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from benchmark_common import (
    MIB,
    SEED,
    available_memory_bytes,
    build_network,
    format_table,
    machine_lines,
    median,
    parse_resolution,
    print_header,
    resolution_name,
    textured_pair,
)
from memory_estimate import estimate_memory

SIZES = ("S", "M", "L", "XL")
PRECISION_CHOICES = ("fp32", "bf16", "fp16")
DEFAULT_RESOLUTIONS = ("640x480",)
ESTIMATE_RESOLUTIONS = ("640x480", "1216x1024", "2432x2048")
MEASURE_RESOLUTIONS = ("320x240", "640x480")
_RESULT_MARKER = "MODEL_BENCHMARK_RESULT "
# glibc malloc settings of the child (environment variables read at start-up):
# "node" is what the node sets with mallopt (node._keep_large_buffers_mapped);
# "tight" returns every allocation of 64 KiB or more to the kernel when freed, so
# that RSS follows the live bytes (the check of the computed memory).
MALLOC_SETTINGS: dict[str, dict[str, str]] = {
    "default": {},
    "node": {"MALLOC_MMAP_THRESHOLD_": str(64 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)},
    "tight": {"MALLOC_MMAP_THRESHOLD_": str(64 << 10), "MALLOC_TRIM_THRESHOLD_": "0"},
}
# A configuration whose computed peak exceeds this share of MemAvailable is skipped
# on CPU: the computation leaves out the process itself and allocator slack.
_MEMORY_HEADROOM = 0.8


# -- one configuration, in a child process ------------------------------------------------

def _status_kib(field_name: str) -> int | None:
    with open("/proc/self/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return None


def _reset_peak_rss() -> bool:
    """Reset VmHWM (and so ru_maxrss) to the current RSS; False where refused."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int:
    import resource

    hwm = _status_kib("VmHWM")
    if hwm is not None:
        return hwm * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _build_backend(config: dict[str, Any]) -> Any:
    """The configuration's backend, through ``create_backend`` like the node builds it."""
    from s2m2_ros.backends import create_backend

    options: dict[str, Any] = {"weights": config["checkpoint"], "device": config["device"],
                               "precision": config["precision"],
                               "compile": config["compile"] and config["path"] == "engine"}
    if config["backend"] != "torch":
        options["cache_dir"] = config["cache_dir"]
    options.update(config["options"])
    return create_backend(config["backend"], **options)


def run_configuration(config: dict[str, Any]) -> dict[str, Any]:
    """Build, warm up and time one configuration; the result as a JSON-able dict."""
    import numpy as np
    import torch

    from s2m2_ros.backends import BackendError
    from s2m2_ros.engine import StereoEngine
    from s2m2_ros.padding import pad_to_multiple

    if config["threads"]:
        torch.set_num_threads(config["threads"])
    result: dict[str, Any] = {**config, "ok": False, "threads_used": torch.get_num_threads()}
    width, height = config["width"], config["height"]
    started = time.perf_counter()
    try:
        backend = _build_backend(config)
    except (BackendError, TypeError) as error:
        result["error"] = f"unsupported: {str(error).splitlines()[0]}"
        return result
    result["build_s"] = time.perf_counter() - started
    result["describe"] = {key: str(value) for key, value in backend.describe().items()}
    engine = getattr(backend, "engine", None)  # the torch backend's StereoEngine
    device = engine.device if engine is not None else torch.device("cpu")
    left, right = textured_pair(width, height)
    forward: Any
    if config["path"] == "raw":
        if engine is None:
            result["error"] = "unsupported: --raw times the torch backend's network only"
            return result
        network = engine.model
        forward_network = torch.compile(network, dynamic=False) if config["compile"] else network
        with torch.inference_mode():
            images = StereoEngine._to_network_input(
                torch.from_numpy(np.stack((left, right))).to(device), "rgb")
            padded, _ = pad_to_multiple(images, 32)
            left_tensor, right_tensor = padded[:1].clone(), padded[1:].clone()
            del images, padded

        def forward() -> None:
            with torch.inference_mode(), engine._autocast():
                forward_network(left_tensor, right_tensor)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
    else:
        network_ms: list[float] = []

        def forward() -> None:
            timings = backend.infer(left, right).timings_ms
            network_ms.append(timings.get("network", float("nan")))

    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        result["allocated_after_build"] = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        result["rss_after_build"] = (_status_kib("VmRSS") or 0) * 1024
        result["peak_reset"] = _reset_peak_rss()

    latencies: list[float] = []
    try:
        for index in range(max(1, config["warmup"] + config["repeats"])):
            started = time.perf_counter()
            forward()
            elapsed = time.perf_counter() - started
            if index == 0:
                result["first_call_s"] = elapsed
            if index >= config["warmup"]:
                latencies.append(elapsed)
    except torch.cuda.OutOfMemoryError as error:
        result["error"] = f"CUDA out of memory: {str(error).splitlines()[0]}"
        return result
    result["latencies_s"] = latencies
    if config["path"] == "engine":
        result["network_ms"] = network_ms[config["warmup"]:]
    if device.type == "cuda":
        result["peak"] = torch.cuda.max_memory_allocated(device)
        result["peak_reserved"] = torch.cuda.max_memory_reserved(device)
        result["peak_over_model"] = result["peak"] - result["allocated_after_build"]
    else:
        result["peak"] = _peak_rss_bytes()
        result["peak_over_model"] = result["peak"] - result["rss_after_build"]
    result["ok"] = True
    return result


def run_in_subprocess(config: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """``run_configuration`` in a fresh interpreter; failures come back as ``error``."""
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith("MALLOC_")}
    environment.update(MALLOC_SETTINGS[config["malloc"]])
    if config["threads"]:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            environment[name] = str(config["threads"])
    # torch.compile's on-disk cache lives beside the exported backends' engine cache, so
    # the second start of a compiled configuration finds what the first one compiled.
    environment["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(config["cache_dir"], "inductor")
    command = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(config)]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, env=environment,
                                   timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return {**config, "ok": False, "error": f"timed out after {timeout_s:.0f} s"}
    for line in reversed(completed.stdout.splitlines()):
        if line.startswith(_RESULT_MARKER):
            return json.loads(line[len(_RESULT_MARKER):])
    if completed.returncode < 0:
        reason = f"killed by signal {-completed.returncode}"
        if completed.returncode == -9:
            reason += " (out of memory?)"
    else:
        tail = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        reason = f"exit {completed.returncode}: {tail[:200]}"
    return {**config, "ok": False, "error": reason}


# -- reporting ----------------------------------------------------------------------------

def _mib(value: float | None) -> str:
    return "—" if value is None else f"{value / MIB:,.0f}"


def _parameters(count: int | None) -> str:
    return "—" if count is None else f"{count / 1e6:.1f} M"


def _ratio_key(result: dict[str, Any]) -> tuple[Any, ...]:
    return (result["size"], result["width"], result["height"], result["path"],
            result["malloc"])


def benchmark_table(results: list[dict[str, Any]], device: str,
                    markdown: bool) -> str:
    """One row per configuration; with ``--rounds`` the medians over its rounds."""
    memory = ("peak allocated (MiB)", "over model (MiB)") if device == "cuda" else (
        "peak RSS (MiB)", "inference peak over model (MiB)")
    headers = ["backend", "model", "parameters", "resolution", "precision", "path", "malloc",
               "median latency (s)", "× torch fp32", "FPS", "first start (s)",
               "second start (s)", *memory, "note"]
    # Medians of the torch fp32 rows of the same model, size, path and allocator: the
    # ratio's denominator, measured in the same run (rounds interleave the backends).
    torch_fp32 = {_ratio_key(result): median(result["latencies_s"]) for result in results
                  if result["ok"] and result["backend"] == "torch"
                  and result["precision"] == "fp32" and not result["compile"]}
    from s2m2_ros.zoo import MODELS

    rows = []
    for result in results:
        resolution = resolution_name(result["width"], result["height"])
        common = [result["backend"], result["size"],
                  _parameters(MODELS[result["size"]].parameters), resolution,
                  result["precision"], result["path"], result["malloc"]]
        if not result["ok"]:
            rows.append([*common, *["—"] * 7, result.get("error", "failed")])
            continue
        latency = median(result["latencies_s"])
        reference = torch_fp32.get(_ratio_key(result))
        notes = []
        if result.get("rounds", 1) > 1:
            notes.append(f"median of {result['rounds']} rounds × {result['repeats']} calls")
        if result.get("peak_reset") is False:
            notes.append("peak RSS includes model building (clear_refs refused)")
        if result.get("compile"):
            notes.append("compiled")
        if result.get("options"):
            notes.append(json.dumps(result["options"], sort_keys=True))
        if device == "cuda":
            notes.append(f"reserved {_mib(result['peak_reserved'])} MiB")
        second = result.get("second_start_s")
        rows.append([*common, f"{latency:.3f}",
                     f"{latency / reference:.2f}" if reference else "—",
                     f"{1.0 / latency:.2f}", f"{result['first_start_s']:.2f}",
                     "—" if second is None else f"{second:.2f}", _mib(result["peak"]),
                     _mib(result["peak_over_model"]), "; ".join(notes)])
    return format_table(headers, rows, markdown)


def _save_random_checkpoint(size: str, folder: str) -> str:
    """The seeded random network of ``size`` as a checkpoint file the backends load."""
    import torch

    path = os.path.join(folder, f"random_{size}.pth")
    if not os.path.exists(path):
        torch.save({"state_dict": build_network(size).state_dict()}, path)
    return path


def _merge_rounds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from a configuration's rounds: all latencies, the largest peak."""
    good = [run for run in runs if run["ok"]]
    if not good:
        return runs[0]
    merged = dict(good[0])
    merged["latencies_s"] = [median(run["latencies_s"]) for run in good]
    merged["rounds"] = len(good)
    for name in ("peak", "peak_over_model"):
        merged[name] = max(run[name] for run in good)
    return merged


def run_benchmark(args: argparse.Namespace, device: str) -> list[dict[str, Any]]:
    """Every configuration in a fresh process; ``--rounds`` repeats the whole list, so
    backends alternate (torch, openvino, torch, openvino, …) and share the load's drift."""
    paths = ["engine", "raw"] if args.raw else ["engine"]
    workspace = tempfile.TemporaryDirectory(prefix="s2m2_model_benchmark_")
    configs = []
    for size in args.sizes:
        checkpoint = _save_random_checkpoint(size, workspace.name)
        for (width, height), precision, path, malloc, backend in itertools.product(
                args.resolutions, args.precisions, paths, args.malloc, args.backends):
            cache_dir = os.path.join(workspace.name, f"cache_{size}_{width}x{height}"
                                     if args.shared_cache else f"cache_{len(configs)}")
            configs.append({"backend": backend, "size": size, "width": width,
                            "height": height, "precision": precision, "path": path,
                            "device": device, "compile": args.compile, "threads": args.threads,
                            "warmup": args.warmup, "repeats": args.repeats, "malloc": malloc,
                            "checkpoint": checkpoint, "cache_dir": cache_dir,
                            "options": args.backend_options.get(backend, {})})
    runs: list[list[dict[str, Any]]] = [[] for _ in configs]
    try:
        for round_index in range(args.rounds):
            for index, config in enumerate(configs):
                label = (f"{config['backend']} {config['size']} "
                         f"{resolution_name(config['width'], config['height'])} "
                         f"{config['precision']} {config['path']}, malloc {config['malloc']}, "
                         f"round {round_index + 1}/{args.rounds}")
                skip = None if device == "cuda" or args.force else _memory_skip_reason(
                    config["size"], config["width"], config["height"], config["precision"])
                if skip:
                    print(f"[model_benchmark] {label}: skipped, {skip}", file=sys.stderr)
                    runs[index].append({**config, "ok": False, "error": f"skipped: {skip}"})
                    continue
                print(f"[model_benchmark] {label} ...", file=sys.stderr, flush=True)
                result = run_in_subprocess(config, args.timeout)
                if result["ok"]:
                    result["first_start_s"] = result["build_s"] + result["first_call_s"]
                if round_index == 0 and result["ok"] and args.second_start:
                    # A new process with the cache the first one filled: a restart.
                    print(f"[model_benchmark] {label}: second start ...", file=sys.stderr,
                          flush=True)
                    again = run_in_subprocess({**config, "warmup": 0, "repeats": 0},
                                              args.timeout)
                    if again["ok"]:
                        result["second_start_s"] = again["build_s"] + again["first_call_s"]
                runs[index].append(result)
    finally:
        workspace.cleanup()
    return [_merge_rounds(config_runs) for config_runs in runs]


def _memory_skip_reason(size: str, width: int, height: int, precision: str) -> str | None:
    from s2m2_ros.engine import EngineConfigError

    available = available_memory_bytes()
    if available is None:
        return None
    try:
        needed = estimate_memory(size, width, height, precision).total
    except EngineConfigError:
        return None  # the child reports the precision as unsupported
    if needed <= _MEMORY_HEADROOM * available:
        return None
    return (f"computed peak {needed / 2**30:.1f} GiB > {_MEMORY_HEADROOM:.0%} of the "
            f"{available / 2**30:.1f} GiB available (--force runs it)")


def run_memory_estimate(args: argparse.Namespace) -> None:
    from s2m2_ros.engine import EngineConfigError
    from s2m2_ros.zoo import MODELS

    resolutions = args.resolutions if args.resolutions_given else [
        parse_resolution(text) for text in ESTIMATE_RESOLUTIONS]
    measured: dict[tuple[str, int, int, str, str], dict[str, Any]] = {}
    workspace = tempfile.TemporaryDirectory(prefix="s2m2_memory_estimate_")
    for size, (width, height), precision, malloc in itertools.product(
            args.sizes, args.measure_resolutions, args.precisions, args.malloc):
        config = {"backend": "torch", "size": size, "width": width, "height": height,
                  "precision": precision, "path": "engine", "device": "cpu", "compile": False,
                  "threads": args.threads, "warmup": 0, "repeats": 1, "malloc": malloc,
                  "checkpoint": _save_random_checkpoint(size, workspace.name),
                  "cache_dir": os.path.join(workspace.name, "cache"), "options": {}}
        skip = None if args.force else _memory_skip_reason(size, width, height, precision)
        label = f"{size} {resolution_name(width, height)} {precision}, malloc {malloc}"
        if skip:
            print(f"[model_benchmark] measuring {label}: skipped, {skip}", file=sys.stderr)
            continue
        print(f"[model_benchmark] measuring {label} ...", file=sys.stderr, flush=True)
        measured[(size, width, height, precision, malloc)] = run_in_subprocess(
            config, args.timeout)
    workspace.cleanup()

    headers = ["model", "parameters", "weights (MiB)", "resolution", "precision",
               "activations (MiB, computed)", "weights + activations (MiB, computed)"]
    measuring = bool(args.measure_resolutions)
    for malloc in args.malloc if measuring else ():
        headers += [f"peak over model (MiB, measured, malloc {malloc})",
                    f"measured / computed (malloc {malloc})"]
    if measuring:
        headers.append("peak RSS (MiB, measured)")
    rows = []
    details = []
    all_resolutions = sorted({*resolutions, *args.measure_resolutions},
                             key=lambda size: size[0] * size[1])
    for size in args.sizes:
        for width, height in all_resolutions:
            for precision in args.precisions:
                print(f"[model_benchmark] computing {size} {resolution_name(width, height)} "
                      f"{precision} ...", file=sys.stderr, flush=True)
                try:
                    estimate = estimate_memory(size, width, height, precision,
                                               keep_largest=5 if args.detail else 0)
                except EngineConfigError as error:
                    row = [size, _parameters(MODELS[size].parameters), "—",
                           resolution_name(width, height), precision, f"unsupported: {error}"]
                    rows.append(row + ["—"] * (len(headers) - len(row)))
                    continue
                row = [size, _parameters(MODELS[size].parameters), _mib(estimate.weights),
                       resolution_name(width, height), precision, _mib(estimate.activations),
                       _mib(estimate.total)]
                peaks = []
                for malloc in args.malloc if measuring else ():
                    result = measured.get((size, width, height, precision, malloc))
                    over = ratio = "—"
                    if result is not None and result["ok"]:
                        over = _mib(result["peak_over_model"])
                        ratio = f"{result['peak_over_model'] / estimate.activations:.2f}"
                        peaks.append(f"{_mib(result['peak'])} ({malloc})")
                    elif result is not None:
                        over = result.get("error", "failed")
                    row += [over, ratio]
                rows.append([*row, ", ".join(peaks) or "—"] if measuring else row)
                if args.detail:
                    details.append((f"{size} {resolution_name(width, height)} {precision}",
                                    estimate.largest))
    print(format_table(headers, rows, args.markdown))
    print()
    print("Computed: peak of live tensor bytes of the engine's tensor path on fake tensors, "
          "plus the weights (parameters × 4 B); kernel workspaces, allocator slack, the "
          "interpreter and, on GPU, the CUDA context are not in it. Measured: a real CPU run "
          "in a fresh process (RSS high-water mark over one call, minus the RSS once the "
          "model is built) under glibc's default malloc, the node's mallopt settings "
          "('node') or one that returns every block of 64 KiB or more when freed ('tight', "
          "so RSS follows the live bytes). See the script's docstring.")
    for label, largest in details:
        print()
        print(f"Largest tensors live at the computed peak, {label}:")
        for nbytes, operator, shape in largest:
            print(f"  {nbytes / MIB:10,.1f} MiB  {operator}  {list(shape)}")


# -- command line ------------------------------------------------------------------------

def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="S2M2 latency and peak memory by model size, resolution and precision "
                    "(random weights; one subprocess per configuration).")
    parser.add_argument("--sizes", nargs="+", type=str.upper, choices=SIZES, default=list(SIZES),
                        help="model sizes (default: S M L XL)")
    parser.add_argument("--resolutions", nargs="+", type=parse_resolution, default=None,
                        metavar="WxH", help="image sizes (default 640x480; with "
                        "--memory-estimate 640x480 1216x1024 2432x2048)")
    parser.add_argument("--precisions", nargs="+", type=str.lower, choices=PRECISION_CHOICES,
                        default=None, help="autocast precisions (default: fp32 on CPU, "
                        "fp32 bf16 fp16 on CUDA)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first (default 1)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--compile", action="store_true", help="torch.compile the network")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch (intra-op) threads in each child (default: torch's choice)")
    parser.add_argument("--raw", action="store_true",
                        help="also time the raw network forward on padded device tensors")
    parser.add_argument("--backends", nargs="+", default=["torch"], metavar="NAME",
                        help="backends built with create_backend (default torch; e.g. "
                             "torch openvino onnxruntime)")
    parser.add_argument("--backend-options", nargs="+", default=[], metavar="NAME:JSON",
                        help='extra create_backend options of one backend, e.g. '
                             '\'openvino:{"num_threads": 2}\'')
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the whole list of configurations this many times, "
                             "alternating backends; medians over the rounds (default 1)")
    parser.add_argument("--second-start", action=argparse.BooleanOptionalAction, default=True,
                        help="after each configuration's first run, start it once more with "
                             "the cache (export, compile) it filled (default on)")
    parser.add_argument("--shared-cache", action="store_true",
                        help="one engine cache per model and image size: the ONNX export is "
                             "paid by the first exported backend's first start only")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds allowed per configuration (default 1800)")
    parser.add_argument("--force", action="store_true",
                        help="run CPU configurations even when their computed peak memory "
                             "exceeds the available memory")
    parser.add_argument("--malloc", nargs="+", choices=tuple(MALLOC_SETTINGS), default=None,
                        help="glibc malloc settings of the children: default, node (the "
                             "node's mallopt), tight (RSS follows live bytes); default: "
                             "default, and with --memory-estimate default tight")
    parser.add_argument("--json", metavar="PATH", help="also write the raw results as JSON")
    estimate = parser.add_argument_group("memory estimate")
    estimate.add_argument("--memory-estimate", action="store_true",
                          help="compute peak memory (fake tensors) and compare with "
                               "measurements at small sizes, instead of timing")
    estimate.add_argument("--measure-resolutions", nargs="*", type=parse_resolution,
                          default=None, metavar="WxH",
                          help="resolutions measured for comparison (default 320x240 "
                               "640x480; none: give the option without values)")
    estimate.add_argument("--detail", action="store_true",
                          help="list the largest tensors live at each computed peak")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0 or args.rounds < 1:
        parser.error("--repeats and --rounds must be ≥ 1 and --warmup ≥ 0")
    options: dict[str, dict[str, Any]] = {}
    for text in args.backend_options:
        name, _, value = text.partition(":")
        try:
            options[name] = {**options.get(name, {}), **json.loads(value)}
        except json.JSONDecodeError as error:
            parser.error(f"--backend-options {text!r}: not NAME:JSON ({error})")
    args.backend_options = options
    args.resolutions_given = args.resolutions is not None
    if args.resolutions is None:
        args.resolutions = [parse_resolution(text) for text in DEFAULT_RESOLUTIONS]
    if args.malloc is None:
        args.malloc = ["default", "tight"] if args.memory_estimate else ["default"]
    if args.measure_resolutions is None:
        args.measure_resolutions = [parse_resolution(text) for text in MEASURE_RESOLUTIONS]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    if args.child:
        result = run_configuration(json.loads(args.child))
        print(_RESULT_MARKER + json.dumps(result), flush=True)
        return 0

    import torch

    if args.device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    else:
        device = args.device
    if args.memory_estimate:
        device = "cpu"  # computed on CPU fake tensors, measured on the CPU
    if args.precisions is None:
        args.precisions = ["fp32", "bf16", "fp16"] if device == "cuda" else ["fp32"]

    markdown = args.markdown
    if args.memory_estimate:
        title = "S2M2 peak memory (computed, and measured where marked)"
    else:
        title = "S2M2 latency and peak memory"
    lines = machine_lines(args.threads, device)
    lines.append(f"device: {device}; random weights (seed {SEED}); each configuration in a "
                 "fresh process")
    if not args.memory_estimate:
        lines.append(f"warm-up calls: {args.warmup}; timed calls: {args.repeats}")
    print_header(title, lines, markdown)

    if args.memory_estimate:
        run_memory_estimate(args)
        return 0
    results = run_benchmark(args, device)
    print(benchmark_table(results, device, markdown))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as output:
            json.dump({"machine": lines, "results": results}, output, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
