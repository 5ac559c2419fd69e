# SPDX-License-Identifier: Apache-2.0
"""The stereo node's per-frame work, stage by stage, at several camera resolutions.

Usage (from the repository root)::

    python benchmarks/pipeline_benchmark.py                    # overhead only, 3 sizes
    python benchmarks/pipeline_benchmark.py --backend tiny     # S2M2(32, 1) in the loop
    python benchmarks/pipeline_benchmark.py --backend S --resolutions 640x480 --repeats 3
    unshare -n sh -c 'ip link set lo up; ROS_DOMAIN_ID=42 \\
        python benchmarks/pipeline_benchmark.py --publish'     # real publishes too

A frame goes through the functions the node calls (``pipeline.process_frame`` is
``prepare_pair`` → ``backend.infer`` → ``build_products``; the node then publishes
every message), called one by one here so that each can be timed:

* receive: ``rclpy.serialization.deserialize_message`` of the four input messages,
  the conversion rclpy does before the node's callbacks see them (the node does it
  on its executor thread, beside the inference worker);
* convert: ``prepare_pair`` (checks, camera model, bgr8 → RGB arrays);
* engine: ``StereoEngine.infer``'s own split, ``timings_ms``: upload (stack, float
  RGB, padding to multiples of 32), network, download (crop, maps to numpy); "engine,
  other" is the rest of the call (argument checks);
* ``build_products``' own ``timings_ms``: validity_depth, cloud, cloud_message,
  image_messages, and "build, other" for the remainder;
* serialize: ``serialize_message`` of every output message: rclpy's Python → C
  conversion plus CDR serialisation, which a publish does too. It stands in for the
  publish unless ``--publish`` is given;
* publish (``--publish``): ``Publisher.publish`` of every output message to topics
  that each have one subscriber in this process (QoS depth 5, as the node). This
  needs ``rclpy.init`` and so a private network: run it inside ``unshare -n``.

"Except network" adds up, per frame, convert + engine other than the network +
build_products + publish (serialize without ``--publish``), and its median is
printed against the issue's budget (< 10 ms at 640×480, < 25 ms at 1280×720). The
receive stage is printed beside it, not in it.

Backends: ``none`` (default) runs the real ``StereoEngine`` around a stub network that
returns the scene's precomputed maps (padded as the engine pads), so that everything
but the network is timed, the engine's pre- and post-processing included; ``tiny`` is
S2M2(32, 1) and ``S``…``XL`` the published sizes, all with random weights
(``torch.manual_seed(0)``). Random weights give meaningless maps, so build_products
gets the scene's maps, with the network's timings (``--network-maps`` keeps the
network's output instead).

Inputs: scikit-image's Middlebury Motorcycle pair resized to each resolution, as bgr8
Image messages with CameraInfo from its calibration. The maps are realistic: the
ground-truth disparity with its holes filled from the background side, visibility
0 where the left pixel is hidden from the right camera (computed from the disparity)
and confidence that drops at depth edges, so the validity mask is coherent, as a
trained network's would be.

The process calls the node's ``_keep_large_buffers_mapped`` (glibc mallopt:
M_MMAP_THRESHOLD 64 MiB, M_TRIM_THRESHOLD 256 MiB) first, as the node's ``main`` does,
unless ``--default-malloc``. Stages run one after the other on one thread; numbers
on a loaded or shared machine are inflated, and torch's intra-op threads suffer most
there (``--threads 1`` gives steadier numbers for the engine's small tensor copies).
``--profile`` prints cProfile's top functions of the timed frames. The script
reports, it never asserts.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from benchmark_common import (
    format_table,
    machine_lines,
    median,
    parse_resolution,
    print_header,
    resolution_name,
)

DEFAULT_RESOLUTIONS = ("640x480", "1280x720", "1920x1080")
BACKENDS = ("none", "tiny", "S", "M", "L", "XL")
# The budget for everything except the network, on a 2-core CPU.
BUDGET_MS = {(640, 480): 10.0, (1280, 720): 25.0}
SEED = 0

# Stage keys in printing order, with their labels.
STAGES: tuple[tuple[str, str], ...] = (
    ("receive", "receive: deserialize 4 inputs (not in 'except network')"),
    ("convert", "convert: prepare_pair"),
    ("upload", "engine: upload + pad"),
    ("network", "engine: network"),
    ("download", "engine: crop + download"),
    ("engine_other", "engine: other"),
    ("validity_depth", "build: validity + depth"),
    ("cloud", "build: cloud"),
    ("cloud_message", "build: cloud message"),
    ("image_messages", "build: image messages"),
    ("build_other", "build: other"),
    ("serialize", "serialize outputs"),
    ("publish", "publish outputs"),
)


# -- the scene -------------------------------------------------------------------------

@dataclass
class Scene:
    """One stereo frame at one resolution, and the maps a trained network would give."""

    left_bgr: np.ndarray
    right_bgr: np.ndarray
    p_left: np.ndarray   # 3×4 CameraInfo P matrices
    p_right: np.ndarray
    k_left: np.ndarray   # 3×3
    k_right: np.ndarray
    disparity: np.ndarray  # H×W float32, every pixel finite
    visibility: np.ndarray
    confidence: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        return self.left_bgr.shape[1], self.left_bgr.shape[0]


def _fill_from_left(disparity: np.ndarray) -> np.ndarray:
    """Holes filled row by row with the nearest known value on their left (background
    in the left view), then, for holes that start a row, on their right."""
    height, width = disparity.shape
    known = np.isfinite(disparity)
    columns = np.broadcast_to(np.arange(width), (height, width))
    rows = np.arange(height)[:, np.newaxis]
    source = np.maximum.accumulate(np.where(known, columns, -1), axis=1)
    filled = np.where(source >= 0, disparity[rows, np.maximum(source, 0)], np.nan)
    reverse = np.minimum.accumulate(np.where(known, columns, width)[:, ::-1], axis=1)[:, ::-1]
    filled = np.where(np.isnan(filled), disparity[rows, np.minimum(reverse, width - 1)], filled)
    return np.nan_to_num(filled, nan=float(np.nanmedian(disparity))).astype(np.float32)


def _visibility(disparity: np.ndarray) -> np.ndarray:
    """1 where the right camera sees the left pixel, 0 where a nearer point to its right
    lands on the same right-image column or the match falls outside the image."""
    width = disparity.shape[1]
    right_column = np.arange(width, dtype=np.float32) - disparity
    # The smallest right-image column reached by any pixel further right on the row.
    nearest_right = np.minimum.accumulate(right_column[:, ::-1], axis=1)[:, ::-1]
    hidden = np.empty_like(right_column, dtype=bool)
    hidden[:, :-1] = nearest_right[:, 1:] < right_column[:, :-1] - 1.0
    hidden[:, -1] = False
    hidden |= right_column < 0.0
    visibility = np.where(hidden, 0.03, 0.97).astype(np.float32)
    return cv2.GaussianBlur(visibility, (5, 5), 0)


def make_scene(width: int, height: int) -> Scene:
    """The Motorcycle pair (scikit-image) at ``width``×``height`` with realistic maps."""
    from s2m2_ros.demo.datasets import motorcycle_frames

    frame = next(motorcycle_frames())
    source_height, source_width = frame.left.shape[:2]
    interpolation = cv2.INTER_AREA if width < source_width else cv2.INTER_LINEAR
    size = (width, height)
    left = cv2.cvtColor(cv2.resize(frame.left, size, interpolation=interpolation),
                        cv2.COLOR_RGB2BGR)
    right = cv2.cvtColor(cv2.resize(frame.right, size, interpolation=interpolation),
                         cv2.COLOR_RGB2BGR)
    calibration = frame.camera.resized(width, height)
    p_left, p_right = calibration.projection_matrices()
    truth = cv2.resize(frame.ground_truth_disparity, size, interpolation=cv2.INTER_NEAREST)
    truth *= np.float32(width / source_width)
    disparity = _fill_from_left(truth)
    visibility = _visibility(disparity)
    edges = np.abs(cv2.Sobel(disparity, cv2.CV_32F, 1, 0, ksize=3)) + np.abs(
        cv2.Sobel(disparity, cv2.CV_32F, 0, 1, ksize=3))
    confidence = 0.97 * np.exp(-edges / np.float32(8.0))
    confidence = np.where(np.isfinite(truth), confidence, 0.05 * confidence)
    confidence = np.clip(cv2.GaussianBlur(confidence.astype(np.float32), (5, 5), 0), 0.01,
                         0.99).astype(np.float32)
    return Scene(left, right, p_left, p_right, calibration.intrinsics(),
                 calibration.intrinsics(right=True), disparity, visibility, confidence)


def input_messages(scene: Scene) -> tuple[Any, Any, Any, Any]:
    """bgr8 left and right Images and their CameraInfos, stamped alike."""
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import CameraInfo
    from std_msgs.msg import Header

    from s2m2_ros.conversions import array_to_image

    header = Header(stamp=Time(sec=1_700_000_000, nanosec=123_000_000),
                    frame_id="camera_left_optical_frame")
    width, height = scene.size
    messages = [array_to_image(scene.left_bgr, "bgr8", header),
                array_to_image(scene.right_bgr, "bgr8", header)]
    for p, k in ((scene.p_left, scene.k_left), (scene.p_right, scene.k_right)):
        info = CameraInfo(header=header, width=width, height=height,
                          distortion_model="plumb_bob")
        info.d = [0.0] * 5
        info.k = k.reshape(-1).tolist()
        info.r = np.eye(3).reshape(-1).tolist()
        info.p = p.reshape(-1).tolist()
        messages.append(info)
    return tuple(messages)


# -- backends ----------------------------------------------------------------------------

def _stub_network(scene: Scene) -> Any:
    """An nn.Module returning the scene's maps, padded as the engine pads its input."""
    import torch
    from torch import nn

    from s2m2_ros.padding import pad_to_multiple

    maps = torch.from_numpy(np.stack((scene.disparity, scene.visibility, scene.confidence)))

    class StubNetwork(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.padded, _ = pad_to_multiple(maps[np.newaxis], 32)
            self.refine_iters = 3
            self.allow_negative = False

        def forward(self, left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, ...]:
            if tuple(left.shape[-2:]) != tuple(self.padded.shape[-2:]):
                raise ValueError(f"stub made for {tuple(self.padded.shape[-2:])}, "
                                 f"got {tuple(left.shape[-2:])}")
            return self.padded[:, 0:1], self.padded[:, 1:2], self.padded[:, 2:3]

    return StubNetwork()


def make_backend(name: str, scene: Scene) -> Any:
    """A ``StereoEngine`` on the CPU around the stub, the tiny or a published-size network."""
    import torch

    from s2m2_ros.engine import StereoEngine
    from s2m2_ros.model import S2M2
    from s2m2_ros.zoo import MODELS

    if name == "none":
        return StereoEngine(_stub_network(scene), device="cpu", precision="fp32", name="stub")
    torch.manual_seed(SEED)
    if name == "tiny":
        network = S2M2(32, 1)
    else:
        spec = MODELS[name]
        network = S2M2(spec.feature_channels, spec.num_transformer)
    return StereoEngine(network.eval(), device="cpu", precision="fp32",
                        name=f"S2M2-{name} (random weights)")


# -- publishing --------------------------------------------------------------------------

class LoopbackPublisher:
    """The node's output publishers, each with one subscriber in this process."""

    def __init__(self) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from stereo_msgs.msg import DisparityImage

        # Output key → (topic, type), as the node creates them.
        topics = {
            "disparity": ("disparity", DisparityImage),
            "depth": ("depth", Image),
            "depth_info": ("depth/camera_info", CameraInfo),
            "confidence": ("confidence", Image),
            "occlusion": ("occlusion", Image),
            "points": ("points2", PointCloud2),
        }
        rclpy.init()
        self._rclpy = rclpy
        self.node = rclpy.create_node("pipeline_benchmark")
        self.listener = rclpy.create_node("pipeline_benchmark_listener")
        self.received = 0
        self.published = 0
        self.publishers: dict[str, Any] = {}
        self._subscriptions = []
        for key, (topic, message_type) in topics.items():
            self.publishers[key] = self.node.create_publisher(message_type, topic,
                                                              QoSProfile(depth=5))
            self._subscriptions.append(self.listener.create_subscription(
                message_type, topic, self._on_message, QoSProfile(depth=5)))
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.executor.add_node(self.listener)
        deadline = time.monotonic() + 20.0
        while any(p.get_subscription_count() < 1 for p in self.publishers.values()):
            if time.monotonic() > deadline:
                raise RuntimeError("publishers and subscribers did not match within 20 s")
            self.executor.spin_once(timeout_sec=0.05)

    def _on_message(self, message: Any) -> None:
        self.received += 1

    def publish(self, name: str, message: Any) -> float:
        """Publish one output message; ms spent in ``publish``."""
        started = time.perf_counter()
        self.publishers[name].publish(message)
        elapsed = (time.perf_counter() - started) * 1e3
        self.published += 1
        return elapsed

    def drain(self, timeout_s: float = 5.0) -> None:
        """Let the subscribers take what was published (not timed)."""
        deadline = time.monotonic() + timeout_s
        while self.received < self.published and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        self.executor.shutdown()
        self.listener.destroy_node()
        self.node.destroy_node()
        if self._rclpy.ok():
            self._rclpy.shutdown()


def _only_loopback() -> bool:
    """True inside a network namespace whose only interface is loopback (``unshare -n``)."""
    import socket

    try:  # asks the kernel about this process's namespace (/sys/class/net may not)
        return {name for _, name in socket.if_nameindex()} <= {"lo"}
    except OSError:
        return False


# -- one resolution ------------------------------------------------------------------------

@dataclass
class ResolutionResult:
    size: tuple[int, int]
    stages: dict[str, list[float]]
    except_network: list[float]
    end_to_end: list[float]
    serialize_by_message: dict[str, list[float]]
    publish_by_message: dict[str, list[float]]
    message_bytes: dict[str, int]
    valid_fraction: float


def run_resolution(width: int, height: int, args: argparse.Namespace,
                   loopback: LoopbackPublisher | None) -> ResolutionResult:
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import CameraInfo, Image

    from s2m2_ros.engine import StereoResult
    from s2m2_ros.pipeline import OutputSettings, build_products, prepare_pair

    scene = make_scene(width, height)
    backend = make_backend(args.backend, scene)
    settings = OutputSettings(dense_cloud=args.dense_cloud, depth_encoding=args.depth_encoding)
    serialized_inputs = [serialize_message(message) for message in input_messages(scene)]
    input_types = (Image, Image, CameraInfo, CameraInfo)

    stages: dict[str, list[float]] = {key: [] for key, _ in STAGES}
    except_network: list[float] = []
    end_to_end: list[float] = []
    serialize_by_message: dict[str, list[float]] = {}
    publish_by_message: dict[str, list[float]] = {}
    message_bytes: dict[str, int] = {}
    valid_fraction = float("nan")

    def one_frame(record: bool) -> None:
        nonlocal valid_fraction
        timings: dict[str, float] = {}
        frame_started = time.perf_counter()
        messages = [deserialize_message(data, message_type)
                    for data, message_type in zip(serialized_inputs, input_types, strict=True)]
        timings["receive"] = _since(frame_started)

        started = time.perf_counter()
        pair = prepare_pair(*messages, settings)
        timings["convert"] = _since(started)

        started = time.perf_counter()
        result = backend.infer(pair.left_rgb, pair.right_rgb, "rgb")
        infer_ms = _since(started)
        for key in ("upload", "network", "download"):
            timings[key] = result.timings_ms[key]
        timings["engine_other"] = infer_ms - sum(result.timings_ms.values())
        if not args.network_maps:
            result = StereoResult(scene.disparity, scene.visibility, scene.confidence,
                                  result.timings_ms)

        left, _, left_info, _ = messages
        started = time.perf_counter()
        products = build_products(pair, result, left.header, left_info, settings)
        build_ms = _since(started)
        timings.update(products.timings_ms)
        timings["build_other"] = build_ms - sum(products.timings_ms.values())
        valid_fraction = products.statistics.valid_fraction

        timings["serialize"] = 0.0
        for name, message in products.messages.items():
            started = time.perf_counter()
            data = serialize_message(message)
            elapsed = _since(started)
            timings["serialize"] += elapsed
            message_bytes[name] = len(data)
            if record:
                serialize_by_message.setdefault(name, []).append(elapsed)
        if loopback is not None:
            timings["publish"] = 0.0
            for name, message in products.messages.items():
                elapsed = loopback.publish(name, message)
                timings["publish"] += elapsed
                if record:
                    publish_by_message.setdefault(name, []).append(elapsed)
            loopback.drain()
        if not record:
            return
        for key, value in timings.items():
            stages[key].append(value)
        delivery = timings["publish"] if loopback is not None else timings["serialize"]
        overhead = (timings["convert"] + infer_ms - timings["network"] + build_ms + delivery)
        except_network.append(overhead)
        end_to_end.append(timings["receive"] + overhead + timings["network"])

    for _ in range(args.warmup):
        one_frame(record=False)
    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        profiler.enable()
    for _ in range(args.repeats):
        one_frame(record=True)
    if profiler is not None:
        profiler.disable()
        print(f"\ncProfile, {resolution_name(width, height)}, {args.repeats} frames, "
              f"top {args.profile} by own time:", file=sys.stderr)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(
            args.profile)
    return ResolutionResult((width, height), stages, except_network, end_to_end,
                            serialize_by_message, publish_by_message, message_bytes,
                            valid_fraction)


def _since(started: float) -> float:
    return (time.perf_counter() - started) * 1e3


# -- reporting ---------------------------------------------------------------------------

def _ms(values: list[float]) -> str:
    return f"{median(values):.2f}" if values else "—"


def stage_table(results: list[ResolutionResult], args: argparse.Namespace) -> str:
    headers = ["stage (median ms)", *(resolution_name(*r.size) for r in results)]
    rows: list[list[str]] = []
    for key, label in STAGES:
        if key == "publish" and not args.publish:
            continue
        if key == "network" and args.backend == "none":
            label = "engine: network (stub)"
        rows.append([label, *(_ms(r.stages[key]) for r in results)])
    delivery = "publish" if args.publish else "serialize"
    rows.append([f"**except network** (convert … {delivery})" if args.markdown else
                 f"EXCEPT NETWORK (convert … {delivery})",
                 *(_ms(r.except_network) for r in results)])
    rows.append(["budget (issue)", *(_budget(r.size) for r in results)])
    rows.append(["within budget", *(_verdict(r) for r in results)])
    rows.append(["end to end (receive … " + delivery + ")",
                 *(_ms(r.end_to_end) for r in results)])
    rows.append(["valid pixels", *(f"{r.valid_fraction:.1%}" for r in results)])
    return format_table(headers, rows, args.markdown)


def _budget(size: tuple[int, int]) -> str:
    budget = BUDGET_MS.get(size)
    return "—" if budget is None else f"< {budget:.0f}"


def _verdict(result: ResolutionResult) -> str:
    budget = BUDGET_MS.get(result.size)
    if budget is None:
        return "—"
    value = median(result.except_network)
    return "yes" if value < budget else f"no (+{value - budget:.1f} ms)"


def message_table(results: list[ResolutionResult], args: argparse.Namespace) -> str:
    headers = ["message"]
    for result in results:
        name = resolution_name(*result.size)
        headers += [f"{name} MB", f"{name} serialize ms"]
        if args.publish:
            headers.append(f"{name} publish ms")
    names = list(results[0].message_bytes) if results else []
    rows = []
    for name in names:
        row = [name]
        for result in results:
            row += [f"{result.message_bytes.get(name, 0) / 1e6:.2f}",
                    _ms(result.serialize_by_message.get(name, []))]
            if args.publish:
                row.append(_ms(result.publish_by_message.get(name, [])))
        rows.append(row)
    return format_table(headers, rows, args.markdown)


# -- command line ------------------------------------------------------------------------

def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time the stereo node's per-frame stages (convert, engine, validity and "
                    "depth, cloud, messages, serialisation, publish) at several resolutions.")
    parser.add_argument("--resolutions", nargs="+", type=parse_resolution,
                        default=[parse_resolution(text) for text in DEFAULT_RESOLUTIONS],
                        metavar="WxH", help="camera sizes (default 640x480 1280x720 1920x1080)")
    parser.add_argument("--backend", type=lambda text: text if text in ("none", "tiny")
                        else text.upper(), choices=BACKENDS, default="none",
                        help="none: stub network (overhead only, default); tiny: S2M2(32, 1); "
                             "S, M, L, XL: published sizes; all random weights")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed frames per resolution (default 30; 3 with a network)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed frames first (default 3; 1 with a network)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--publish", action="store_true",
                        help="also publish every output (rclpy.init: run inside unshare -n)")
    parser.add_argument("--skip-isolation-check", action="store_true",
                        help="allow --publish with network interfaces other than loopback")
    parser.add_argument("--dense-cloud", action="store_true", help="dense instead of organized "
                        "point cloud (node parameter dense_cloud)")
    parser.add_argument("--depth-encoding", choices=("32FC1", "16UC1"), default="32FC1")
    parser.add_argument("--network-maps", action="store_true",
                        help="post-process the network's own (random-weight) output")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc's malloc settings alone (the node changes them)")
    parser.add_argument("--profile", type=int, nargs="?", const=25, default=0, metavar="N",
                        help="cProfile the timed frames; print the top N functions (25)")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args(argv)
    with_network = args.backend != "none"
    if args.repeats is None:
        args.repeats = 3 if with_network else 30
    if args.warmup is None:
        args.warmup = 1 if with_network else 3
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be ≥ 1 and --warmup ≥ 0")
    if args.publish and not args.skip_isolation_check and not _only_loopback():
        parser.error("--publish opens a ROS participant: run it in a private network, e.g. "
                     "unshare -n sh -c 'ip link set lo up; ROS_DOMAIN_ID=42 python "
                     "benchmarks/pipeline_benchmark.py --publish'")
    return args


def _ros_defaults() -> None:
    """The test suite's ROS environment: Fast DDS, discovery on this machine only."""
    os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    if sys.prefix not in prefixes:
        os.environ["AMENT_PREFIX_PATH"] = os.pathsep.join([sys.prefix, *prefixes])


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    from s2m2_ros.node import _keep_large_buffers_mapped

    if not args.default_malloc:
        _keep_large_buffers_mapped()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    lines = machine_lines(args.threads)
    backend = {"none": "none (StereoEngine around a stub that returns precomputed maps)",
               "tiny": "tiny: S2M2(32, 1), random weights"}.get(
        args.backend, f"S2M2-{args.backend}, random weights")
    lines += [
        f"backend: {backend}; CPU, fp32",
        f"warm-up frames: {args.warmup}; timed frames: {args.repeats} per resolution; "
        "stages timed one after the other on one thread",
        "glibc malloc: " + ("defaults (--default-malloc)" if args.default_malloc else
                            "as the node sets it (node._keep_large_buffers_mapped: "
                            "M_MMAP_THRESHOLD 64 MiB, M_TRIM_THRESHOLD 256 MiB)"),
        "outputs: disparity, depth (" + args.depth_encoding + ") + camera_info, confidence, "
        "occlusion, " + ("dense" if args.dense_cloud else "organized") + " coloured cloud",
        "post-processing input: " + ("the network's own maps" if args.network_maps else
                                     "realistic maps of the scene (Motorcycle ground truth)"),
    ]
    if args.publish:
        lines.append("publish: every output to a topic with one subscriber in this process "
                     f"(RMW {os.environ.get('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')})")
    print_header("s2m2_ros pipeline, stage by stage", lines, args.markdown)

    loopback = None
    if args.publish:
        _ros_defaults()
        loopback = LoopbackPublisher()
    results = []
    try:
        for width, height in args.resolutions:
            print(f"[pipeline_benchmark] {resolution_name(width, height)} ...",
                  file=sys.stderr, flush=True)
            results.append(run_resolution(width, height, args, loopback))
        print(stage_table(results, args))
        print()
        print(message_table(results, args))
        if loopback is not None:
            print()
            print(f"delivered to the subscribers: {loopback.received} of {loopback.published} "
                  "published messages")
    finally:
        if loopback is not None:
            loopback.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
