# SPDX-License-Identifier: Apache-2.0
"""Export the network to ONNX for one input size, and ``s2m2-export``.

The file has inputs ``left`` and ``right`` (float32 1×3×H×W, RGB 0–255) and outputs
``disparity``, ``visibility`` and ``confidence`` (1×1×H×W, in that order), for one fixed
H×W (multiples of 32): the matching stage's row chunks and the refinement loop unroll
for that size, which is also what lets the runtimes plan every buffer ahead.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from s2m2_ros.backends.inputs import SIZE_MULTIPLE

__all__ = ["INPUT_NAMES", "OPSET", "OUTPUT_NAMES", "export_onnx", "main"]

#: ONNX opset of the exported graphs (the lowest the issue allows: widest runtime support).
OPSET = 18
#: Run onnxscript's graph optimizer after the export. Off: on this network it takes about
#: twice as long as the export itself, and OpenVINO and ONNX Runtime fold constants and
#: fuse operations themselves when they compile the graph.
OPTIMIZE = False
INPUT_NAMES = ("left", "right")
_NAME_SCOPES = "pkg.torch.onnx.name_scopes"  # node metadata: the module path, outermost first
OUTPUT_NAMES = ("disparity", "visibility", "confidence")


def _check_size(height: int, width: int) -> None:
    if height < SIZE_MULTIPLE or width < SIZE_MULTIPLE or height % SIZE_MULTIPLE \
            or width % SIZE_MULTIPLE:
        raise ValueError(f"export size must be positive multiples of {SIZE_MULTIPLE}, "
                         f"got {height}×{width}")


@contextlib.contextmanager
def _quiet_exporter():
    """The dynamo exporter prints progress lines and warnings for every export; keep
    them out of the node's log (errors still raise)."""
    loggers = [logging.getLogger(name)
               for name in ("torch.onnx", "onnxscript", "onnx_ir", "torch.export")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _name_nodes_by_module(graph: Any) -> None:
    """Prefix each node's name with the module it came from (``disp_init/node_MatMul_7``).

    The exporter records the module path only in node metadata, which the runtimes
    drop; in the name it survives into OpenVINO's friendly names and lets a runtime
    keep one stage (the matching, ``disp_init``) in float32 under reduced precision.
    """
    for node in graph:
        scopes_text = node.metadata_props.get(_NAME_SCOPES, "")
        try:
            scopes = ast.literal_eval(scopes_text) if scopes_text else []
        except (ValueError, SyntaxError):
            continue
        # [..., module path, FX node name]; the top level module's path is ''.
        module = scopes[-2] if len(scopes) >= 2 else ""
        if module and node.name and not node.name.startswith(f"{module}/"):
            node.name = f"{module}/{node.name}"


def export_onnx(model: nn.Module, height: int, width: int,
                output: str | os.PathLike[str], opset: int = OPSET) -> Path:
    """Write ``model`` (an eval-mode S2M2 on the CPU) as ONNX for ``height``×``width``.

    The file appears atomically (written beside ``output``, then renamed), so a reader
    never sees half a model. Returns the path.
    """
    _check_size(height, width)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    left = torch.rand(1, 3, height, width, generator=generator) * 255.0
    right = torch.rand(1, 3, height, width, generator=generator) * 255.0
    model = model.eval()
    handle, temporary_name = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.",
                                              suffix=".part")
    os.close(handle)
    temporary = Path(temporary_name)
    try:
        with torch.no_grad(), _quiet_exporter():
            program = torch.onnx.export(
                model, (left, right), dynamo=True, opset_version=opset,
                input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                optimize=OPTIMIZE, verbose=False)
            _name_nodes_by_module(program.model.graph)
            # One self-contained file: our largest network (XL) is far below 2 GB.
            program.save(str(temporary), external_data=False)
        os.replace(temporary, output)
    finally:
        temporary.unlink(missing_ok=True)
    return output


def _build_parser() -> argparse.ArgumentParser:
    from s2m2_ros.zoo import MODELS

    parser = argparse.ArgumentParser(
        prog="s2m2-export",
        description="Export the S2M2 network to ONNX for one input size (multiples of 32).")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--weights", help="checkpoint file")
    source.add_argument("--model", default="M", choices=tuple(MODELS),
                        help="model size, looked up like s2m2-infer does (default M)")
    parser.add_argument("--weights-dir", help="folder searched for --model's checkpoint")
    parser.add_argument("--height", type=int, required=True, help="input height (pixels)")
    parser.add_argument("--width", type=int, required=True, help="input width (pixels)")
    parser.add_argument("--allow-negative", action="store_true",
                        help="allow negative disparities (no positivity constraint)")
    parser.add_argument("--refine-iters", type=int, default=3,
                        help="refinement iterations baked into the graph (default 3)")
    parser.add_argument("--opset", type=int, default=OPSET,
                        help=f"ONNX opset, {OPSET} or later (default {OPSET})")
    parser.add_argument("--output", required=True, help="the .onnx file to write")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``s2m2-export``; errors are one line on stderr and exit status 1 (2: usage)."""
    from s2m2_ros.zoo import CheckpointError, build_model

    args = _build_parser().parse_args(argv)
    try:
        _check_size(args.height, args.width)
        if args.opset < OPSET:
            raise ValueError(f"--opset must be {OPSET} or later, got {args.opset}")
        if args.refine_iters < 0:
            raise ValueError(f"--refine-iters must be >= 0, got {args.refine_iters}")
        start = time.perf_counter()
        network, path = build_model(
            Path(args.weights) if args.weights else args.model,
            weights_dir=args.weights_dir, allow_negative=args.allow_negative,
            refine_iters=args.refine_iters)
        output = export_onnx(network, args.height, args.width, args.output, args.opset)
    except (CheckpointError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"exported {path} at {args.height}x{args.width} to {output} "
          f"({output.stat().st_size / 1e6:.1f} MB, opset {args.opset}) in "
          f"{time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
