# SPDX-License-Identifier: Apache-2.0
"""The ROS 2 stereo node: synchronised rectified pairs in; disparity, depth,
confidence, occlusion, a point cloud, a status message and diagnostics out.

Inference runs on a worker thread. The synchronizer callback only parks the
newest pair in a one-slot mailbox, so executor callbacks never wait for the
network; a pair replaced before the worker took it is counted as dropped.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rclpy.qos_overriding_options import QoSOverridingOptions
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from stereo_msgs.msg import DisparityImage

from .diagnostics import DiagnosticsPublisher, HealthMonitor
from .launch_config import INPUT_TOPICS, NODE_NAME
from .node_config import (
    RESTART_PARAMETERS,
    StartupError,
    build_backend,
    check_value,
    declare_parameters,
    settings_from,
)
from .node_inputs import create_inputs, publisher_report
from .node_reports import SkippedFrameWarnings, StereoStatus, rate_summary, status_message
from .parameters import DEPRECATED_TORCH_ALIAS, NODE_PARAMETERS
from .pipeline import MIN_IMAGE_SIDE_PX, OUTPUTS, InputError, OutputSettings, process_frame
from .shutdown import StopSignals
from .sync import stamp_of
from .sync_stage import TimeJump

# Output key (as in pipeline.OUTPUTS, plus the depth camera_info) → message type, topic.
OUTPUT_TOPICS = {
    "disparity": (DisparityImage, "disparity"),
    "depth": (Image, "depth"),
    "depth_info": (CameraInfo, "depth/camera_info"),
    "confidence": (Image, "confidence"),
    "occlusion": (Image, "occlusion"),
    "points": (PointCloud2, "points2"),
}


@dataclass
class _Pair:
    messages: tuple[Image, Image, CameraInfo, CameraInfo]
    received_s: float  # monotonic time the synchronizer completed the set


class StereoNode(Node):
    """``stereo_node``: S²M² (or SGBM) stereo depth for a rectified camera pair."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._params = declare_parameters(self)
        try:
            self._settings = settings_from(self._params)
        except ValueError as error:
            raise StartupError(str(error)) from None

        self._backend = build_backend(self._params)
        self._apply_backend_options(self._params)
        if self._params["backend"] == DEPRECATED_TORCH_ALIAS:
            self.get_logger().warning(
                f"backend '{DEPRECATED_TORCH_ALIAS}' is deprecated: use 'torch' (same backend)")

        output_qos = QoSProfile(depth=5)
        overrides = QoSOverridingOptions.with_default_policies()
        self._outputs = {
            name: self.create_publisher(msg_type, topic, output_qos,
                                        qos_overriding_options=overrides)
            for name, (msg_type, topic) in OUTPUT_TOPICS.items()}
        self._status_publisher = (
            self.create_publisher(StereoStatus, "~/status", 10) if StereoStatus else None)

        description = self._backend.describe()
        device = str(description.get("device", "cpu"))
        self._monitor = HealthMonitor(
            approximate_sync=self._params["approximate_sync"],
            sync_tolerance_s=self._params["approximate_sync_tolerance_seconds"],
            input_timeout_s=self._params["input_timeout_s"],
            max_latency_s=self._params["max_latency_s"], device=device)
        self._monitor.backend_info = {
            "backend": f"{description['backend']} ({self._backend.selection})",
            **({"runtime": str(description["runtime"])} if "runtime" in description else {})}
        self._diagnostics = DiagnosticsPublisher(self, self._monitor)

        self._mailbox: _Pair | None = None
        self._mailbox_ready = threading.Condition()
        self._running = True
        self._busy = False
        self._frames_processed = 0
        self._frames_dropped = 0  # replaced in the mailbox before the worker took them
        self._frames_failed = 0  # taken by the worker but unusable (InputError) or failed
        self._idle_skipped = 0
        self._was_idle = False
        self._skipped_warnings = SkippedFrameWarnings(self.get_logger())
        self._recent: deque[tuple[float, float]] = deque(maxlen=200)  # (done_s, latency_s)
        self._synchronizer, self._input_subscriptions = create_inputs(
            self, self._params, on_pair=self._on_synchronized, on_message=self._on_input,
            on_jump=self._on_time_jump, on_drop=self._monitor.set_synchronizer_drops)
        self._status_timer: Any = None

        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._compiled_sizes: set[tuple[int, int]] = set()
        self._worker = threading.Thread(target=self._work, name="s2m2_inference", daemon=True)
        self._worker.start()
        self._restart_status_timer()
        self._publisher_count_timer = self.create_timer(1.0, self._update_publisher_counts)
        self._update_publisher_counts()  # diagnostics know them from the first report

        describe = description
        weights = description.get("weights")
        topics = ", ".join(self.resolve_topic_name(t) for t in INPUT_TOPICS)
        self.get_logger().info(
            f"started: backend {describe['backend']} ({self._backend.selection}), model "
            f"{describe.get('model')}, "
            f"device {describe.get('device', 'cpu')}, precision "
            f"{describe.get('precision', 'n/a')}, weights {weights or 'none'}; inputs {topics}"
            + ("" if StereoStatus else "; status topic off (s2m2_ros/msg not generated: run "
                                       "scripts/build_interfaces.sh or build with colcon)"))

    # -- configuration -----------------------------------------------------------------

    def _apply_backend_options(self, params: dict[str, Any]) -> None:
        for option in self._backend.runtime_options:
            self._backend.set_option(option, params[option])

    def _on_set_parameters(self, parameters: list[Any]) -> SetParametersResult:
        by_name = {spec.name: spec for spec in NODE_PARAMETERS}
        updated = dict(self._params)
        for parameter in parameters:
            spec = by_name.get(parameter.name)
            if spec is None:
                continue
            if parameter.name in RESTART_PARAMETERS:
                return SetParametersResult(successful=False, reason=(
                    f"{parameter.name} needs a restart of the node"))
            problem = check_value(spec, parameter.value)
            if problem:
                return SetParametersResult(successful=False, reason=problem)
            updated[parameter.name] = parameter.value
        try:
            settings = settings_from(updated)
        except ValueError as error:
            return SetParametersResult(successful=False, reason=str(error))
        # Swap whole objects: a frame in flight keeps the settings it started with.
        self._params = updated
        self._settings = settings
        self._apply_backend_options(updated)
        self._monitor.max_latency_s = updated["max_latency_s"]
        self._monitor.input_timeout_s = updated["input_timeout_s"]
        self._restart_status_timer()
        return SetParametersResult(successful=True)

    def _restart_status_timer(self) -> None:
        """(Re)create the rate log timer for the current ``status_period_s``."""
        period = self._params["status_period_s"]
        timer = self._status_timer
        if timer is not None:
            if timer.timer_period_ns == round(period * 1e9):
                return
            self.destroy_timer(timer)
        self._status_timer = self.create_timer(period, self._log_rate) if period > 0 else None

    # -- inputs ----------------------------------------------------------------------------

    def _on_time_jump(self, jump: TimeJump) -> None:
        self.get_logger().warning(
            f"input time jumped back by {jump.size_s:.1f} s (bag loop or clock reset): "
            "resetting synchronizer and statistics")
        with self._mailbox_ready:
            if self._mailbox is not None:  # a pair of the old time: do not publish it
                self._mailbox = None
                self._frames_dropped += 1
                self._monitor.on_drop()
        self._recent.clear()
        self._monitor.on_time_jump(jump.size_s, time.monotonic())

    def _on_input(self, index: int, msg: Any) -> bool:
        self._monitor.on_input(index, stamp_of(msg), time.monotonic())
        return self._running

    def _has_subscribers(self) -> bool:
        """Whether anyone listens to an enabled output.

        The status topic does not count: it only describes processing, so a monitor
        watching it (``ros2 topic echo ~/status``) must not make the node infer for
        nobody.
        """
        counted = [self._outputs[name] for name in OUTPUTS if name in self._settings.outputs]
        if "depth" in self._settings.outputs:
            counted.append(self._outputs["depth_info"])
        return any(publisher.get_subscription_count() > 0 for publisher in counted)

    def _on_synchronized(self, left: Image, right: Image, left_info: CameraInfo,
                         right_info: CameraInfo) -> None:
        now = time.monotonic()
        self._monitor.on_sync(now)
        if not self._has_subscribers():
            self._idle_skipped += 1
            self._monitor.on_idle(now)
            if not self._was_idle:
                self._was_idle = True
                self.get_logger().info("no subscribers on any output: not processing")
            return
        if self._was_idle:
            self._was_idle = False
            self.get_logger().info("a subscriber appeared: processing resumes")
        with self._mailbox_ready:
            if self._mailbox is not None:
                # Newest pair wins: the one waiting is now stale.
                self._frames_dropped += 1
                self._monitor.on_drop()
            self._mailbox = _Pair((left, right, left_info, right_info), now)
            self._mailbox_ready.notify()

    def _update_publisher_counts(self) -> None:
        self._monitor.set_publisher_counts(*publisher_report(self, self._input_subscriptions))

    # -- processing ------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._mailbox_ready:
                while self._mailbox is None and self._running:
                    self._mailbox_ready.wait(timeout=0.5)
                if not self._running:
                    return
                pair, self._mailbox = self._mailbox, None
                self._busy = True
            try:
                self._process(pair)
            except InputError as error:
                if self._running:  # a frame cut short by shutdown is no failed frame
                    self._frame_failed()
                    self._skipped_warnings.warn(error.kind, str(error))
            except Exception as error:  # one bad frame must not stop the node
                if self._running:
                    self._frame_failed()
                    self._skipped_warnings.warn("processing", f"frame failed: "
                                                              f"{type(error).__name__}: {error}")
            finally:
                self._busy = False

    def _frame_failed(self) -> None:
        # A rejected pair is a dropped pair (StereoStatus.frames_dropped: "queue full,
        # unsynchronized or failed"; HealthMonitor.on_drop: "busy, failed or incomplete").
        self._frames_failed += 1
        self._monitor.on_drop()

    def _subscribed_outputs(self, settings: OutputSettings) -> OutputSettings:
        """Only build the outputs someone listens to (a cloud is the costliest)."""
        listened = {name for name in settings.outputs
                    if self._outputs[name].get_subscription_count() > 0}
        if "depth" in settings.outputs and self._outputs["depth_info"].get_subscription_count():
            listened.add("depth")
        return dataclasses.replace(settings, outputs=frozenset(listened))

    def _warm_up(self, width: int, height: int) -> None:
        """Compile the network for a new image size before its first frame."""
        if not self._backend.needs_warmup:
            return
        if (width, height) in self._compiled_sizes:
            return
        settings = self._settings
        if min(width, height) < MIN_IMAGE_SIDE_PX or width * height > settings.max_input_pixels:
            return  # the frame will be rejected; don't compile for it
        backend = self._backend.describe()["backend"]
        self.get_logger().info(f"preparing the {backend} backend for {width}x{height} images "
                               "(compile or export); the first frame waits for it")
        elapsed_ms = self._backend.warmup(height, width)
        self._compiled_sizes.add((width, height))
        self.get_logger().info(f"ready for {width}x{height} in {elapsed_ms / 1e3:.1f} s")

    def _process(self, pair: _Pair) -> None:
        left, right, left_info, right_info = pair.messages
        self._warm_up(int(left.width), int(left.height))
        started = time.monotonic()
        settings = self._subscribed_outputs(self._settings)
        products = process_frame(self._backend, left, right, left_info, right_info, settings)
        publish_started = time.perf_counter()
        for name, message in products.messages.items():
            if not self._running:  # shutting down: publish nothing more
                return
            self._outputs[name].publish(message)
        publish_ms = (time.perf_counter() - publish_started) * 1e3
        done = time.monotonic()
        latency_s = done - pair.received_s
        self._frames_processed += 1
        self._recent.append((done, latency_s))
        self._monitor.on_result(latency_s, done)
        timings = products.timings_ms
        postprocess_ms = sum(value for key, value in timings.items()
                             if key not in ("convert", "network"))
        if self._status_publisher is not None and self._running:
            self._status_publisher.publish(status_message(
                self._backend, left, products, postprocess_ms=postprocess_ms,
                publish_ms=publish_ms,
                receive_ms=(started - pair.received_s) * 1e3 + timings["convert"],
                end_to_end_ms=latency_s * 1e3, frames_processed=self._frames_processed,
                frames_dropped=self.frames_dropped))

    def _log_rate(self) -> None:
        rates = rate_summary(self._recent, time.monotonic(), self._params["status_period_s"])
        if rates:
            self.get_logger().info(f"{rates}; {self._frames_processed} processed, "
                                   f"{self.frames_dropped} dropped")

    def request_stop(self) -> None:
        """Take no more pairs and publish nothing more; a frame in flight runs to its
        end (native torch code cannot be interrupted) and is thrown away."""
        with self._mailbox_ready:
            self._running = False
            self._mailbox = None
            self._mailbox_ready.notify()

    @property
    def busy(self) -> bool:
        """Whether a frame is in flight."""
        return self._busy

    def stop(self, poll_s: float = 0.1) -> None:
        """Stop the worker thread and wait for it, however long its frame takes.

        Joins in short slices so that the main thread still runs signal handlers (a
        second Ctrl-C) while it waits.
        """
        self.request_stop()
        while self._worker.is_alive():
            self._worker.join(timeout=poll_s)

    @property
    def frames_processed(self) -> int:
        return self._frames_processed

    @property
    def frames_dropped(self) -> int:
        """Pairs not published: replaced while waiting, lost in the synchronizer, or
        rejected as bad input."""
        return self._frames_dropped + self._frames_failed + self._synchronizer.pairs_dropped


def _keep_large_buffers_mapped() -> None:
    """Ask glibc to reuse, not return, the multi-megabyte per-frame buffers.

    By default each frame's images and cloud are fresh mmap()s that the kernel has
    to fault in again: over half of the post-processing time at 1280×720.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 64 << 20)
    libc.mallopt(m_trim_threshold, 256 << 20)


def main(args: list[str] | None = None) -> int:
    """Console script ``stereo_node``."""
    _keep_large_buffers_mapped()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    logger = rclpy.logging.get_logger(NODE_NAME)
    signals = StopSignals(logger)
    node = None
    signals.install()  # a signal during start-up stops the node once it is built
    try:
        try:
            node = StereoNode()
        except StartupError as error:
            logger.error(f"cannot start: {error}")
            return 1
        except Exception as error:  # bad parameter types and the like: one clear line
            logger.error(f"cannot start: {type(error).__name__}: {error}")
            return 1
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not signals.requested and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
        if node.busy:
            logger.info("stopping after the frame in flight; it will not be published "
                        "(signal again to exit at once)")
    except ExternalShutdownException:
        pass
    finally:
        if node is not None:
            node.stop()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
