# SPDX-License-Identifier: Apache-2.0
"""torch.compile: the cold compile and the warm restart from inductor's on-disk cache.

Usage (from the repository root)::

    python benchmarks/compile_benchmark.py                      # S at 640×480, CPU
    python benchmarks/compile_benchmark.py --size S --resolution 320x240 --repeats 2

Three fresh processes run one after another, each building the engine with random
weights (seed 0) and timing ``StereoEngine.warmup`` (the node's warm-up: one call at
the camera size, which compiles under ``compile=True``) and then ``--repeats`` calls:

1. ``eager``: no compile, for reference;
2. ``compile, cold``: ``torch.compile`` with an empty ``TORCHINDUCTOR_CACHE_DIR``;
3. ``compile, warm``: a new process with the same ``TORCHINDUCTOR_CACHE_DIR``, as after
   a restart of the node: inductor's FX-graph and AOT caches on disk spare it the code
   generation and the C++ compilation, not the tracing by Dynamo.

The cache folder is a fresh temporary one unless ``--cache-dir`` names one (it is then
emptied first: the cold run must start without a cache). Timings on a loaded machine are
inflated; the script reports and never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

from benchmark_common import (
    format_table,
    machine_lines,
    median,
    parse_resolution,
    print_header,
    resolution_name,
)

SIZES = ("S", "M", "L", "XL")
_RESULT_MARKER = "COMPILE_BENCHMARK_RESULT "


def run_child(config: dict[str, Any]) -> dict[str, Any]:
    """Build the engine, time the warm-up call and the calls after it."""
    import numpy as np
    import torch

    from s2m2_ros.engine import StereoEngine
    from s2m2_ros.model import S2M2
    from s2m2_ros.zoo import MODELS

    if config["threads"]:
        torch.set_num_threads(config["threads"])
    spec = MODELS[config["size"]]
    torch.manual_seed(0)
    network = S2M2(spec.feature_channels, spec.num_transformer).eval()
    started = time.perf_counter()
    engine = StereoEngine(network, device="cpu", precision=config["precision"],
                          compile=config["compile"])
    build_s = time.perf_counter() - started
    warmup_s = engine.warmup(config["height"], config["width"]) / 1e3
    generator = np.random.default_rng(1)
    left = generator.integers(0, 256, (config["height"], config["width"], 3), dtype=np.uint8)
    right = np.roll(left, -8, axis=1)
    latencies = []
    for _ in range(config["repeats"]):
        started = time.perf_counter()
        engine.infer(left, right)
        latencies.append(time.perf_counter() - started)
    return {"build_s": build_s, "warmup_s": warmup_s, "latencies_s": latencies}


def run_in_subprocess(config: dict[str, Any], cache_dir: str, timeout_s: float
                      ) -> dict[str, Any]:
    environment = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache_dir)
    if config["threads"]:
        environment["OMP_NUM_THREADS"] = str(config["threads"])
    command = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(config)]
    started = time.perf_counter()
    try:
        completed = subprocess.run(command, capture_output=True, text=True, env=environment,
                                   timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s"}
    process_s = time.perf_counter() - started
    for line in reversed(completed.stdout.splitlines()):
        if line.startswith(_RESULT_MARKER):
            return {**json.loads(line[len(_RESULT_MARKER):]), "process_s": process_s}
    tail = (completed.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"exit {completed.returncode}: {tail[:200]}"}


def _cache_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(folder, name))
               for folder, _, names in os.walk(path) for name in names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=str.upper, choices=SIZES, default="S")
    parser.add_argument("--resolution", type=parse_resolution, default=(640, 480),
                        metavar="WxH", help="image size (default 640x480)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls after warm-up")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--cache-dir", help="TORCHINDUCTOR_CACHE_DIR to use (emptied first)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per process")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(_RESULT_MARKER + json.dumps(run_child(json.loads(args.child))), flush=True)
        return 0
    if args.repeats < 1:
        parser.error("--repeats must be ≥ 1")

    width, height = args.resolution
    lines = machine_lines(args.threads)
    lines.append(f"S2M2 {args.size} at {resolution_name(width, height)}, {args.precision}, "
                 "CPU, random weights; each row a fresh process")
    print_header("torch.compile: cold compile and warm restart", lines, args.markdown)
    temporary = None
    if args.cache_dir:
        cache_dir = os.path.abspath(args.cache_dir)
        shutil.rmtree(cache_dir, ignore_errors=True)
        os.makedirs(cache_dir)
    else:
        temporary = tempfile.TemporaryDirectory(prefix="s2m2_inductor_")
        cache_dir = temporary.name
    base = {"size": args.size, "width": width, "height": height,
            "precision": args.precision, "repeats": args.repeats, "threads": args.threads}
    runs = [("eager", False), ("compile, cold cache", True), ("compile, warm cache", True)]
    rows = []
    try:
        for label, compiled in runs:
            print(f"[compile_benchmark] {label} ...", file=sys.stderr, flush=True)
            result = run_in_subprocess({**base, "compile": compiled}, cache_dir, args.timeout)
            if "error" in result:
                rows.append([label, result["error"], "—", "—", "—", "—"])
                continue
            rows.append([label, f"{result['warmup_s']:.1f}",
                         f"{median(result['latencies_s']):.2f}",
                         f"{result['process_s']:.1f}",
                         f"{_cache_bytes(cache_dir) / 2**20:.0f}" if compiled else "—",
                         f"{result['build_s']:.2f}"])
    finally:
        if temporary is not None:
            temporary.cleanup()
    print(format_table(["run", "warm-up call (s)", "median call after (s)",
                        "whole process (s)", "inductor cache (MiB)", "engine build (s)"],
                       rows, args.markdown))
    print()
    print("warm-up call: StereoEngine.warmup at the image size (compilation included); "
          "whole process: interpreter start to exit, imports included.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
