# SPDX-License-Identifier: Apache-2.0
"""Throughput of ``s2m2-bag``: frames per second through the whole tool (read, pair,
network, post-processing, write), one pair at a time against ``--batch N``, and SGBM.

Builds a bag of textured ``--resolution`` pairs and an S-size checkpoint with random
weights (speed does not depend on the weights' values), then runs the tool in-process on
the same bag once per configuration, in rounds (every configuration once per round), so
that each ratio compares runs made minutes apart on the same machine and a change of
load shows as a drift between the rounds. Run it as a file::

    python benchmarks/bag_benchmark.py --frames 4 --batches 1,2,4
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from benchmark_common import format_table, machine_lines, parse_resolution, print_header

from s2m2_ros.backends import StereoBackend, create_backend
from s2m2_ros.bag.runner import BagJob, run_bag
from s2m2_ros.pipeline import OutputSettings

FX, BASELINE_M = 500.0, 0.12


def write_bag(path: Path, frames: int, width: int, height: int) -> None:
    """A bag of ``frames`` rgb8 pairs (textured left, right shifted by 8 px) under /stereo."""
    import cv2
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore
    from sensor_msgs.msg import CameraInfo
    from std_msgs.msg import Header

    from s2m2_ros.conversions import array_to_image

    store = get_typestore(Stores.ROS2_KILTED)
    topics = {"/stereo/left/image_rect": "sensor_msgs/msg/Image",
              "/stereo/right/image_rect": "sensor_msgs/msg/Image",
              "/stereo/left/camera_info": "sensor_msgs/msg/CameraInfo",
              "/stereo/right/camera_info": "sensor_msgs/msg/CameraInfo"}
    generator = np.random.default_rng(0)
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        connections = {topic: writer.add_connection(topic, kind, typestore=store)
                       for topic, kind in topics.items()}
        for index in range(frames):
            stamp_ns = 1_700_000_000 * 10**9 + index * 100_000_000
            header = Header(frame_id="left_optical")
            header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 10**9)
            noise = generator.integers(0, 256, (height, width, 3), dtype=np.uint8)
            left = cv2.GaussianBlur(noise, (5, 5), 0)
            right = np.roll(left, -8, axis=1)
            messages = {"/stereo/left/image_rect": array_to_image(left, "rgb8", header),
                        "/stereo/right/image_rect": array_to_image(right, "rgb8", header)}
            for side, tx in (("left", 0.0), ("right", -FX * BASELINE_M)):
                info = CameraInfo(header=header, width=width, height=height)
                cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
                info.k = [FX, 0.0, cx, 0.0, FX, cy, 0.0, 0.0, 1.0]
                info.p = [FX, 0.0, cx, tx, 0.0, FX, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
                messages[f"/stereo/{side}/camera_info"] = info
            for topic, message in messages.items():
                writer.write(connections[topic], stamp_ns, serialize_message(message))


def random_checkpoint(path: Path, size: str) -> Path:
    import torch

    from s2m2_ros.model import S2M2
    from s2m2_ros.zoo import MODELS

    spec = MODELS[size]
    torch.manual_seed(0)
    torch.save({"state_dict": S2M2(spec.feature_channels, spec.num_transformer).state_dict()},
               path)
    return path


def timed_run(bag: Path, output: Path, backend: StereoBackend, batch: int) -> tuple[float, int]:
    """Seconds the tool spent converting the bag, and frames written."""
    job = BagJob(input=bag, output=output, settings=OutputSettings(), batch_size=batch,
                 progress=False, overwrite=True)
    summary = run_bag(job, lambda: backend)
    return summary.elapsed_s, summary.frames_written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=4, help="pairs in the bag (default 4)")
    parser.add_argument("--resolution", type=parse_resolution, default=(640, 480))
    parser.add_argument("--model", default="S", help="network size (default S)")
    parser.add_argument("--batches", default="1,2,4", help="--batch values for the network")
    parser.add_argument("--rounds", type=int, default=1, help="repeat every configuration")
    parser.add_argument("--no-network", action="store_true", help="SGBM only")
    parser.add_argument("--plain", action="store_true", help="aligned text, not Markdown")
    args = parser.parse_args()
    width, height = args.resolution
    batches = [int(text) for text in args.batches.split(",")]

    with tempfile.TemporaryDirectory(prefix="s2m2_bag_benchmark_") as folder:
        root = Path(folder)
        bag = root / "input"
        write_bag(bag, args.frames, width, height)
        sgbm = create_backend("sgbm")  # max_batch 1: --batch only groups the calls
        configurations: list[tuple[str, StereoBackend, int]] = [
            ("sgbm", sgbm, batch) for batch in batches]
        if not args.no_network:
            weights = random_checkpoint(root / f"{args.model}.pth", args.model)
            network = create_backend("torch", weights=str(weights), device="cpu")
            network.warmup(height, width)  # first-call allocations are not throughput
            configurations += [(f"torch {args.model}", network, batch) for batch in batches]
        seconds: dict[tuple[str, int], list[float]] = {}
        for _ in range(args.rounds):
            for name, backend, batch in configurations:
                elapsed, written = timed_run(bag, root / "output", backend, batch)
                if written != args.frames:
                    raise SystemExit(f"{name} --batch {batch}: wrote {written} of "
                                     f"{args.frames} frames")
                seconds.setdefault((name, batch), []).append(elapsed / written)

    rows = []
    for (name, batch), per_frame in seconds.items():
        median = statistics.median(per_frame)
        one = statistics.median(seconds[(name, 1)]) if (name, 1) in seconds else float("nan")
        runs = ", ".join(f"{value:.2f}" for value in per_frame)
        rows.append([name, batch, runs, f"{median:.2f}", f"{1.0 / median:.2f}",
                     f"{one / median:.2f}×"])
    print_header(f"s2m2-bag throughput, {width}×{height}, {args.frames} frames × "
                 f"{args.rounds} round(s), {time.strftime('%Y-%m-%d')}",
                 machine_lines(), markdown=not args.plain)
    print(format_table(["backend", "--batch", "s/frame, each run in order", "median s/frame",
                        "frames/s", "vs --batch 1"], rows,
                       markdown=not args.plain))


if __name__ == "__main__":
    main()
