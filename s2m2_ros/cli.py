# SPDX-License-Identifier: Apache-2.0
"""``s2m2-infer``: run S²M² on one rectified image pair and write the results to files.

Writes ``disparity.pfm`` (raw float disparity), ``disparity.png`` (colourised, invalid
pixels black), ``confidence.png`` and ``occlusion.png`` (1 − visibility); with
``--focal`` and ``--baseline`` also ``depth.png`` (16-bit millimetres, 0 = invalid) and
``cloud.ply`` (coloured points of the valid pixels, left camera optical frame).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from s2m2_ros import geometry, image_io
from s2m2_ros.backends import BACKEND_NAMES, BackendError, create_backend
from s2m2_ros.cli_args import OneLineErrorParser, positive_float
from s2m2_ros.engine import EngineConfigError
from s2m2_ros.zoo import MODELS, CheckpointError, user_cache_dir


def _scale(text: str) -> float:
    value = positive_float(text)
    if value > 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be in (0, 1]")
    return value


def _iterations(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="s2m2-infer",
        description="Dense disparity, confidence and occlusion (and optionally depth and a "
        "point cloud) for one rectified stereo pair with the S2M2 network.",
    )
    parser.add_argument("left", type=Path, help="left rectified image")
    parser.add_argument("right", type=Path, help="right rectified image")
    parser.add_argument(
        "--backend",
        default="auto",
        choices=BACKEND_NAMES,
        help="auto (torch with CUDA, else openvino when installed, else torch), torch, "
        "openvino, onnxruntime or sgbm (default auto)",
    )
    parser.add_argument(
        "--model",
        default="M",
        type=str.upper,
        choices=list(MODELS),
        help="model size, looked up in --weights-dir, $S2M2_WEIGHTS_DIR and the caches "
        f"({user_cache_dir()}) (default M)",
    )
    parser.add_argument(
        "--weights",
        type=Path,
        metavar="PATH",
        help="checkpoint file (overrides --model; the architecture is read from the file)",
    )
    parser.add_argument(
        "--weights-dir", type=Path, metavar="DIR", help="directory holding CH*NTR*.pth checkpoints"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("s2m2_out"),
        metavar="DIR",
        help="output directory (default ./s2m2_out)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "fp16", "bf16"],
        help="auto = fp16 on CUDA, fp32 on CPU",
    )
    parser.add_argument(
        "--refine-iters",
        type=_iterations,
        default=3,
        metavar="N",
        help="local refinement steps (default 3)",
    )
    parser.add_argument(
        "--allow-negative",
        action="store_true",
        help="allow negative disparities (verged or imperfectly rectified rigs)",
    )
    parser.add_argument(
        "--scale",
        type=_scale,
        default=1.0,
        help="run the network at this fraction of the resolution, in (0, 1]",
    )
    parser.add_argument(
        "--focal",
        type=positive_float,
        metavar="PX",
        help="focal length in pixels (with --baseline: depth.png, cloud.ply)",
    )
    parser.add_argument(
        "--baseline", type=positive_float, metavar="M", help="stereo baseline in metres"
    )
    parser.add_argument(
        "--cx", type=float, metavar="PX", help="principal point x (default: image centre)"
    )
    parser.add_argument(
        "--cy", type=float, metavar="PX", help="principal point y (default: image centre)"
    )
    parser.add_argument(
        "--doffs",
        type=float,
        default=0.0,
        metavar="PX",
        help="cx_left - cx_right (Middlebury 'doffs'; default 0)",
    )
    return parser


def _colors_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return np.round(image / 257.0).astype(np.uint8)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def run(args: argparse.Namespace) -> int:
    """Do the work for parsed arguments; exceptions are reported by :func:`main`."""
    start = time.perf_counter()
    left = image_io.read_image(args.left)
    right = image_io.read_image(args.right)
    if left.shape != right.shape:
        raise ValueError(
            f"the images differ in size: {args.left} is {left.shape[1]}x{left.shape[0]}, "
            f"{args.right} is {right.shape[1]}x{right.shape[0]}; give a rectified pair"
        )
    if left.dtype != right.dtype:
        raise ValueError(f"the images differ in bit depth: {left.dtype} and {right.dtype}")
    height, width = left.shape[:2]

    backend = create_backend(
        args.backend,
        model=args.model,
        weights=args.weights,
        weights_dir=args.weights_dir,
        allow_negative=args.allow_negative,
        refine_iters=args.refine_iters,
        device=args.device,
        precision=args.precision,
        input_scale=args.scale,
    )
    info = backend.describe()
    load_ms = (time.perf_counter() - start) * 1e3
    print(
        f"loaded backend {info['backend']} ({backend.selection}): {info['model']} from "
        f"{info.get('weights') or 'no weights'} on {info['device']}, {info['precision']} "
        f"in {load_ms:.0f} ms",
        flush=True,
    )

    start = time.perf_counter()
    result = backend.infer(left, right)
    inference_ms = (time.perf_counter() - start) * 1e3
    stages = ", ".join(f"{name} {value:.0f}" for name, value in result.timings_ms.items())
    scale = f" at scale {args.scale:g}" if args.scale != 1.0 else ""
    print(f"inference {width}x{height}{scale}: {inference_ms:.0f} ms ({stages} ms)", flush=True)

    start = time.perf_counter()
    thresholds = geometry.ValidityThresholds(allow_negative=args.allow_negative)
    depth = None
    camera = None
    if args.focal is not None:
        cx = (width - 1) / 2.0 if args.cx is None else args.cx
        cy = (height - 1) / 2.0 if args.cy is None else args.cy
        camera = geometry.StereoCamera(
            fx=args.focal, fy=args.focal, cx=cx, cy=cy, cx_right=cx - args.doffs,
            baseline_m=args.baseline, doffs=args.doffs, width=width, height=height,
        )  # fmt: skip
        depth = geometry.depth_from_disparity(result.disparity, camera)
    valid = geometry.validity_mask(
        result.disparity, result.visibility, result.confidence, depth, thresholds
    )

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "disparity.pfm"]
    image_io.write_pfm(written[-1], result.disparity)
    outputs = {
        "disparity.png": image_io.colorize_disparity(result.disparity, valid),
        "confidence.png": image_io.colorize_unit(result.confidence),
        "occlusion.png": image_io.colorize_unit(1.0 - result.visibility),
    }
    if camera is not None and depth is not None:
        outputs["depth.png"] = image_io.depth_to_png16(np.where(valid, depth, np.nan))
    for name, picture in outputs.items():
        written.append(out / name)
        image_io.write_image(written[-1], picture)
    if camera is not None and depth is not None:
        points = geometry.points_from_depth(depth, camera)[valid]
        colors = _colors_uint8(left)[valid]
        written.append(out / "cloud.ply")
        image_io.write_ply(written[-1], points, colors)
    write_ms = (time.perf_counter() - start) * 1e3
    print(
        f"wrote {len(written)} files to {out} in {write_ms:.0f} ms "
        f"({', '.join(path.name for path in written)}); "
        f"{valid.mean() * 100:.1f}% of pixels valid",
        flush=True,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """``s2m2-infer LEFT RIGHT [options]``; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse: usage errors (2) and --help (0)
        return int(exit_.code or 0)
    if (args.focal is None) != (args.baseline is None):
        print("error: --focal and --baseline go together (both, or neither)", file=sys.stderr)
        return 2
    try:
        return run(args)
    except (BackendError, CheckpointError, EngineConfigError, image_io.ImageReadError,
            ValueError) as error:
        message = str(error)
    except OSError as error:
        message = f"{error.strerror or error}: {error.filename}" if error.filename else str(error)
    except RuntimeError as error:  # e.g. CUDA out of memory
        first = str(error).strip().splitlines()
        message = f"inference failed: {first[0] if first else type(error).__name__}"
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    print("error: " + message.strip().replace("\n", " "), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
