#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The GPU check, in about 8 minutes on a machine with an NVIDIA GPU: the CUDA tests,
# then S and M at 640×480 and 1216×1024 in torch eager fp16, torch.compile fp16,
# ONNX Runtime CUDA fp16 and ONNX Runtime TensorRT fp16 (engine build time included),
# printed as one table (benchmarks/gpu_benchmark.py).
#
# Usage: bash benchmarks/gpu_check.sh [--dry-run] [--markdown]
#   --dry-run    no GPU needed: the benchmark's logic on the CPU with a tiny network
#                (checks this script, the export and the table; not GPU numbers)
#   S2M2_GPU_PYTHON   interpreter with a CUDA build of torch (default: .venv's python,
#                     else python3)
#   S2M2_WHEELHOUSE   folder of wheels for what is missing (onnxruntime-gpu, tensorrt-cu12,
#                     onnx, onnxscript); without it pip asks its configured index
#   S2M2_GPU_BUDGET_S seconds for the benchmark rows (default 360; the tests get 90)
# Whatever cannot run says so on one line and the rest goes on; nothing is installed
# outside the chosen interpreter's environment.
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
dry_run=0
table_args=()
for argument in "$@"; do
  case "$argument" in
    --dry-run) dry_run=1 ;;
    --markdown) table_args+=(--markdown) ;;
    *) echo "gpu_check: unknown argument $argument (use --dry-run, --markdown)" >&2; exit 2 ;;
  esac
done
say() { echo "[gpu_check] $*"; }
started=$SECONDS

# Versions checked on PyPI (2026-12-01): the newest onnxruntime-gpu and TensorRT wheels.
ORT_GPU_VERSION=1.31.1
TENSORRT_VERSION=11.4.0.106
ONNX_VERSION=1.23.2
ONNXSCRIPT_VERSION=0.7.2

python="${S2M2_GPU_PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE

if (( ! dry_run )); then
  if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
    say "skipped: no NVIDIA GPU here (nvidia-smi missing or failing); --dry-run checks the logic"
    exit 0
  fi
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  if ! "$python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
      2>/dev/null; then
    say "skipped: $python has no CUDA build of torch ($("$python" -c \
      'import torch; print(torch.__version__)' 2>&1 | tail -1)); set S2M2_GPU_PYTHON"
    exit 0
  fi
fi

# Install a missing module from the wheelhouse (or pip's index); one line either way.
ensure() {  # ensure <import name> <requirement>
  if "$python" -c "import $1" 2>/dev/null; then return 0; fi
  local source=()
  if [[ -n "${S2M2_WHEELHOUSE:-}" ]]; then source=(--no-index --find-links "$S2M2_WHEELHOUSE"); fi
  say "installing $2 ${source[*]:+from $S2M2_WHEELHOUSE}"
  if ! timeout 240 "$python" -m pip install --quiet --retries 1 --timeout 20 \
      "${source[@]}" "$2" >/tmp/gpu_check_pip.log 2>&1; then
    say "could not install $2 ($(grep -m1 -E 'ERROR|error' /tmp/gpu_check_pip.log \
      | cut -c1-160)); its rows will say so"
    return 1
  fi
}
ensure onnx "onnx==$ONNX_VERSION"
ensure onnxscript "onnxscript==$ONNXSCRIPT_VERSION"
if (( dry_run )); then
  ensure onnxruntime "onnxruntime"
else
  # onnxruntime-gpu replaces the CPU-only onnxruntime (both install `onnxruntime`).
  if ! "$python" -c 'import onnxruntime as o, sys; sys.exit(0 if "CUDAExecutionProvider" in o.get_available_providers() else 1)' 2>/dev/null; then
    "$python" -m pip uninstall --quiet --yes onnxruntime >/dev/null 2>&1
    ensure onnxruntime "onnxruntime-gpu==$ORT_GPU_VERSION"
  fi
  ensure tensorrt "tensorrt-cu12==$TENSORRT_VERSION"
  # The TensorRT provider loads libnvinfer from the wheel's folder; ONNX Runtime loads
  # CUDA and cuDNN from the nvidia-* wheels that torch brought (preload_dlls).
  trt_libs="$("$python" -c 'import os, tensorrt_libs; print(os.path.dirname(tensorrt_libs.__file__))' 2>/dev/null)"
  if [[ -n "$trt_libs" ]]; then export LD_LIBRARY_PATH="$trt_libs:${LD_LIBRARY_PATH:-}"; fi
fi

# 1. The CUDA tests: the engine's (fp16 against fp32, compile warm-up), which need no
# ROS, so they run in the chosen interpreter directly (scripts/run_tests.sh would set
# up .venv first, which needs the network).
cuda_tests=(test/test_engine.py -k cuda -q -rs -p no:cacheprovider -o testpaths=test)
if (( dry_run )); then
  say "dry run: CUDA tests collected only"
  "$python" -m pytest --collect-only "${cuda_tests[@]}" | tail -1
else
  say "CUDA tests"
  timeout 90 "$python" -m pytest "${cuda_tests[@]}" \
    || say "CUDA tests: exit status $? (124: over the 90 s given to them)"
fi

# 2. The table.
budget="${S2M2_GPU_BUDGET_S:-360}"
if (( dry_run )); then
  "$python" benchmarks/gpu_benchmark.py --dry-run --repeats 2 "${table_args[@]}"
else
  timeout $(( budget + 120 )) "$python" benchmarks/gpu_benchmark.py --budget "$budget" \
    "${table_args[@]}" || say "gpu_benchmark.py: exit status $?"
fi
say "done in $(( SECONDS - started )) s"
