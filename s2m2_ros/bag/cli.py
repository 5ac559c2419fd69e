# SPDX-License-Identifier: Apache-2.0
"""``s2m2-bag INPUT OUTPUT``: depth, cloud, confidence and occlusion for every stereo
pair of a recorded bag, written to a new bag.

The backend and post-processing are the node's, configured from the node's parameters
(their defaults, ``-p name:=value`` and the flags below), so a bag made offline holds
what the node would have published for the same pairs, without dropping any.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import sys
from pathlib import Path
from typing import Any

from s2m2_ros.backends import available_backends
from s2m2_ros.bag.runner import BagJob, RunSummary, run_bag
from s2m2_ros.bag.topics import OUTPUT_CHOICES, BagError, parse_outputs
from s2m2_ros.bag.writer import STORAGES
from s2m2_ros.cli_args import OneLineErrorParser, non_negative_float, positive_int
from s2m2_ros.parameters import MODEL_NAMES, NODE_PARAMETERS, parse_parameter_string

EXIT_INTERRUPTED = 130


def _outputs(text: str) -> frozenset[str]:
    try:
        return parse_outputs(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _parameter(text: str) -> dict[str, Any]:
    try:
        return parse_parameter_string(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("node_parameters: ")) from None


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="s2m2-bag",
        description="Run every stereo pair of a rosbag2 bag (mcap or sqlite3) through the "
        "stereo node's backend and post-processing, and write a new bag with disparity, "
        "depth, depth/camera_info, points2, confidence and occlusion (plus the input "
        "messages). Ctrl-C stops after the current batch and leaves a valid bag; "
        "--resume continues it.")
    parser.add_argument("input", type=Path, metavar="INPUT", help="input bag folder")
    parser.add_argument("output", type=Path, metavar="OUTPUT", help="output bag folder (new)")
    network = parser.add_argument_group("backend (as the node's parameters)")
    network.add_argument("--backend", choices=["auto", *available_backends()],
                         help="stereo backend (default: the node's backend parameter)")
    network.add_argument("--model", type=str.upper, choices=MODEL_NAMES,
                         help="S2M2 model size, looked up like the node does (default M)")
    network.add_argument("--weights", metavar="PATH", help="checkpoint file (overrides --model)")
    network.add_argument("--weights-dir", metavar="DIR", help="folder searched for checkpoints")
    network.add_argument("--device", help="auto, cpu, cuda or cuda:N (default auto)")
    network.add_argument("--batch", type=positive_int, default=1, metavar="N",
                         help="pairs per network call where the backend batches (default 1)")
    network.add_argument("-p", "--param", type=_parameter, action="append", default=[],
                         metavar="NAME:=VALUE", help="any node parameter, e.g. "
                         "confidence_threshold:=0.3 depth_encoding:=16UC1 (repeatable)")
    topics = parser.add_argument_group("topics")
    topics.add_argument("--namespace", metavar="NS", help="input namespace holding left/"
                        "image_rect, right/image_rect, left/camera_info, right/camera_info "
                        "(default: the bag's only such set)")
    for role in ("left", "right", "left-info", "right-info"):
        topics.add_argument(f"--{role}", metavar="TOPIC",
                            help=f"{role.replace('-', ' ')} topic (relative: under NS)")
    topics.add_argument("--output-namespace", metavar="NS",
                        help="namespace of the outputs (default: the input namespace)")
    topics.add_argument("--approximate-sync", action="store_true",
                        help="pair by approximate stamps, as the node's approximate_sync")
    topics.add_argument("--sync-tolerance", type=non_negative_float, metavar="S",
                        help="with --approximate-sync, the largest stamp difference "
                        "(default 0: no bound)")
    topics.add_argument("--queue-size", type=positive_int, default=100, metavar="N",
                        help="synchronizer queue, in stamps (default 100)")
    output = parser.add_argument_group("output")
    output.add_argument("--outputs", type=_outputs, metavar="LIST",
                        help="comma-separated, from " + ",".join(OUTPUT_CHOICES)
                        + " (default: all, or the node's publish_* parameters)")
    output.add_argument("--outputs-only", action="store_true",
                        help="write only the outputs, not a copy of the input messages")
    output.add_argument("--storage", choices=STORAGES,
                        help="output storage (default: as the input bag)")
    again = output.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue an interrupted run into OUTPUT")
    again.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    output.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser


def node_parameters(args: argparse.Namespace) -> dict[str, Any]:
    """The node's parameters: defaults, then ``-p``, then the explicit flags."""
    params = {spec.name: spec.default for spec in NODE_PARAMETERS}
    for given in args.param:
        params.update(given)
    flags = {"backend": args.backend, "model": args.model, "weights": args.weights,
             "weights_dir": args.weights_dir, "device": args.device}
    params.update({name: value for name, value in flags.items() if value is not None})
    if args.approximate_sync:
        params["approximate_sync"] = True
    if args.sync_tolerance is not None:
        params["approximate_sync_tolerance_seconds"] = args.sync_tolerance
    return params


def build_job(args: argparse.Namespace, params: dict[str, Any]) -> BagJob:
    from s2m2_ros.node_config import settings_from

    settings = settings_from(params)  # the node's own parameter → settings map
    if args.outputs is not None:
        settings = dataclasses.replace(settings, outputs=args.outputs)
    if not settings.outputs:
        raise BagError("no outputs wanted: give --outputs")
    return BagJob(
        input=args.input, output=args.output, settings=settings, namespace=args.namespace,
        output_namespace=args.output_namespace,
        topic_overrides={"left": args.left, "right": args.right,
                         "left_info": args.left_info, "right_info": args.right_info},
        approximate_sync=params["approximate_sync"],
        sync_tolerance_s=params["approximate_sync_tolerance_seconds"],
        queue_size=args.queue_size, batch_size=args.batch, storage=args.storage,
        outputs_only=args.outputs_only, resume=args.resume, overwrite=args.overwrite,
        progress=not args.quiet)


def describe_summary(summary: RunSummary, output: Path) -> list[str]:
    """What the run did, in a few lines for the terminal."""
    frames = summary.frames_written + summary.frames_resumed
    rate = summary.frames_written / summary.elapsed_s if summary.elapsed_s > 0 else 0.0
    lines = [f"{output}: {frames} frames ({summary.frames_written} processed now"
             + (f", {summary.frames_resumed} from the interrupted run" if summary.frames_resumed
                else "")
             + f", {rate:.2f} frames/s) from {summary.topics.left} and "
             f"{summary.topics.right}; outputs under {summary.output_namespace or '/'}, "
             f"{summary.storage}"]
    if summary.skipped:
        counts = ", ".join(f"{kind} {count}" for kind, count in sorted(summary.skipped.items()))
        lines.append(f"skipped {sum(summary.skipped.values())} bad frames ({counts})")
    if summary.unpaired:
        match = "a close enough" if summary.approximate else "the same"
        lines.append(f"{summary.unpaired} frames could not be paired (no message with {match} "
                     "stamp on every input topic)")
    if summary.undecodable:
        lines.append(f"{summary.undecodable} input messages could not be decoded")
    if summary.not_copied:
        lines.append("not copied (no message definition): " + ", ".join(summary.not_copied))
    if summary.interrupted:
        lines.append(f"interrupted: {output} is a valid bag of the frames done; continue with "
                     "--resume")
    return lines


def main(argv: list[str] | None = None) -> int:
    """``s2m2-bag INPUT OUTPUT [options]``; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse: usage errors (2) and --help (0)
        return int(exit_.code or 0)
    missing = [name for name in ("rosbags", "tqdm") if importlib.util.find_spec(name) is None]
    if missing:
        print(f"error: s2m2-bag needs {' and '.join(missing)}: pip install {' '.join(missing)}",
              file=sys.stderr)
        return 1
    from s2m2_ros.node_config import StartupError, build_backend

    try:
        params = node_parameters(args)
        job = build_job(args, params)
        summary = run_bag(job, lambda: build_backend(params))
    except (BagError, StartupError, ValueError) as error:
        print("error: " + str(error).strip().replace("\n", " "), file=sys.stderr)
        return 1
    except OSError as error:
        print(f"error: {error.strerror or error}: {error.filename or ''}".rstrip(": "),
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    for line in describe_summary(summary, args.output):
        print(line, flush=True)
    if summary.interrupted:
        return EXIT_INTERRUPTED
    if summary.frames_written + summary.frames_resumed == 0:
        print("error: no frame was written", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
