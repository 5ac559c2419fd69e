# SPDX-License-Identifier: Apache-2.0
"""Health of the stereo node: a pure `HealthMonitor` fed with events, and a
`DiagnosticsPublisher` that puts its verdicts on /diagnostics.

The monitor says what is wrong and, where it can tell, why: an input without a
publisher (remapping), a publisher whose messages never arrive (QoS), a missing
camera_info, or left/right stamps that never pair (synchronisation policy).
All times are seconds; `now_s` is any monotonic clock, the same for every call.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .launch_config import INPUT_TOPICS

# Levels as diagnostic_msgs/DiagnosticStatus.
OK = 0
WARN = 1
ERROR = 2
STALE = 3

LEFT_IMAGE, RIGHT_IMAGE, LEFT_INFO, RIGHT_INFO = range(4)

STATUS_INPUTS = "inputs"
STATUS_SYNC = "synchronization"
STATUS_PROCESSING = "processing"
STATUS_DEVICE = "device"
STATUS_NAMES = (STATUS_INPUTS, STATUS_SYNC, STATUS_PROCESSING, STATUS_DEVICE)

_STAMP_HISTORY = 20  # recent stamps per topic kept to look for a pairable stamp
_EPSILON_S = 1e-6  # stamps built from identical sec/nanosec may still differ in rounding


@dataclass(frozen=True)
class HealthStatus:
    """One named verdict, as a DiagnosticStatus without ROS."""

    name: str
    level: int
    message: str
    values: dict[str, str] = field(default_factory=dict)


def cuda_memory_allocated_bytes(device: str) -> int | None:
    """Bytes held by PyTorch's CUDA allocator on `device`, or None when not on CUDA.

    Only looks at torch if something already imported it: the monitor must not pull in
    torch (seconds of import) just to report "n/a".
    """
    torch = sys.modules.get("torch")
    if torch is None or not device.startswith("cuda"):
        return None
    try:
        if not torch.cuda.is_available():
            return None
        return int(torch.cuda.memory_allocated(device))
    except Exception:  # a bad device string or a lost context must not kill diagnostics
        return None


class _Rate:
    """Event times inside a sliding window, for a rate in Hz."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.times: deque[float] = deque()
        self.first_s: float | None = None

    def add(self, now_s: float) -> None:
        if self.first_s is None:
            self.first_s = now_s
        self.times.append(now_s)
        self.prune(now_s)

    def prune(self, now_s: float) -> None:
        while self.times and self.times[0] < now_s - self.window_s:
            self.times.popleft()

    def hz(self, now_s: float) -> float:
        self.prune(now_s)
        if self.first_s is not None and now_s - self.first_s >= self.window_s:
            # Over a full window, so that a stream that stops fades out instead of
            # reporting its old rate until the window empties.
            return len(self.times) / self.window_s
        if len(self.times) < 2:
            return 0.0
        # Until the window has filled: events over the time since the oldest one, up
        # to now (not to the newest event), so a burst that stopped fades out too.
        span = now_s - self.times[0]
        return (len(self.times) - 1) / span if span > 0 else 0.0


class HealthMonitor:
    """Collects input, synchronisation and output events and judges the node's health.

    Feed it from the node: `on_input` for every message on an input topic (index into
    `topics`), `on_sync` for every synchronised pair, `on_result` after publishing,
    `on_drop` for every pair not processed, `set_publisher_counts` from
    `count_publishers()` now and then. `evaluate(now_s)` returns one HealthStatus per
    entry of STATUS_NAMES.
    """

    def __init__(
        self,
        *,
        topics: Sequence[str] = INPUT_TOPICS,
        approximate_sync: bool = False,
        sync_tolerance_s: float = 0.0,
        stamp_matched_topics: Sequence[int] = (LEFT_IMAGE, RIGHT_IMAGE, LEFT_INFO, RIGHT_INFO),
        input_timeout_s: float = 3.0,
        sync_timeout_s: float = 2.0,
        max_latency_s: float = 1.0,
        window_s: float = 5.0,
        device: str = "cpu",
        start_s: float | None = None,
        gpu_memory_fn: Callable[[str], int | None] = cuda_memory_allocated_bytes,
    ) -> None:
        if len(topics) != 4:
            raise ValueError("topics: left image, right image, left info, right info")
        self.topics = tuple(topics)
        self.approximate_sync = approximate_sync
        # As stereo_image_proc: with approximate sync, 0 means "no bound".
        self.sync_tolerance_s = sync_tolerance_s
        # Topics whose stamps the synchronizer must pair with the left image's.
        self.stamp_matched_topics = tuple(stamp_matched_topics)
        self.input_timeout_s = input_timeout_s
        self.sync_timeout_s = sync_timeout_s
        self.max_latency_s = max_latency_s
        self.window_s = window_s
        self.device = device
        # Which backend runs and why (the node fills it in); shown with the device.
        self.backend_info: dict[str, str] = {}
        self._gpu_memory_fn = gpu_memory_fn
        self._lock = threading.Lock()
        self._start_s = start_s

        self._input_rates = [_Rate(window_s) for _ in self.topics]
        self._last_arrival: list[float | None] = [None] * 4
        self._stamps: list[deque[float]] = [deque(maxlen=_STAMP_HISTORY) for _ in self.topics]
        self._publisher_counts: list[int | None] = [None] * 4
        self._images_live_since: float | None = None

        self._sync_rate = _Rate(window_s)
        self._last_sync: float | None = None
        self._output_rate = _Rate(window_s)
        self._latencies: deque[tuple[float, float]] = deque()
        self._last_result: float | None = None
        self._last_latency: float | None = None
        self.frames_processed = 0
        self.frames_dropped = 0

    # ---- events ------------------------------------------------------------------------
    def _started(self, now_s: float) -> None:
        if self._start_s is None:
            self._start_s = now_s

    def _live(self, index: int, now_s: float) -> bool:
        last = self._last_arrival[index]
        return last is not None and now_s - last <= self.input_timeout_s

    def on_input(self, topic_index: int, stamp_s: float, now_s: float) -> None:
        """A message arrived on topics[topic_index] with header stamp `stamp_s`."""
        with self._lock:
            self._started(now_s)
            if topic_index in (LEFT_IMAGE, RIGHT_IMAGE) and not (
                self._live(LEFT_IMAGE, now_s) or self._live(RIGHT_IMAGE, now_s)
            ):
                self._images_live_since = now_s  # images (re)started after a silence
            self._last_arrival[topic_index] = now_s
            self._input_rates[topic_index].add(now_s)
            self._stamps[topic_index].append(stamp_s)

    def on_sync(self, now_s: float) -> None:
        """The synchronizer delivered a pair."""
        with self._lock:
            self._started(now_s)
            self._last_sync = now_s
            self._sync_rate.add(now_s)

    def on_result(self, latency_s: float, now_s: float) -> None:
        """Outputs for one pair were published `latency_s` after the pair was synchronised."""
        with self._lock:
            self._started(now_s)
            self._last_result = now_s
            self._last_latency = latency_s
            self._output_rate.add(now_s)
            self._latencies.append((now_s, latency_s))
            self.frames_processed += 1

    def on_drop(self) -> None:
        """A synchronised pair was not processed (busy, failed or incomplete)."""
        with self._lock:
            self.frames_dropped += 1

    def set_publisher_counts(self, counts: Sequence[int]) -> None:
        """Publishers currently matched by name on each input topic (count_publishers)."""
        if len(counts) != 4:
            raise ValueError("one publisher count per input topic")
        with self._lock:
            self._publisher_counts = [int(count) for count in counts]

    def set_device(self, device: str) -> None:
        """The device the backend really runs on (after `auto` was resolved)."""
        with self._lock:
            self.device = device

    @property
    def camera_info_seen(self) -> tuple[bool, bool]:
        """Whether a left and a right camera_info message has ever arrived."""
        with self._lock:
            return (self._last_arrival[LEFT_INFO] is not None,
                    self._last_arrival[RIGHT_INFO] is not None)

    # ---- verdicts ------------------------------------------------------------------------
    def evaluate(self, now_s: float) -> list[HealthStatus]:
        """One HealthStatus per STATUS_NAMES entry, judged at `now_s`."""
        with self._lock:
            self._started(now_s)
            return [self._inputs(now_s), self._sync(now_s), self._processing(now_s),
                    self._device()]

    def _silence_cause(self, index: int) -> str:
        count = self._publisher_counts[index]
        if count is None:
            return ""
        if count == 0:
            return " (no publisher: check the topic remapping and namespace)"
        return (f" though {count} publisher(s) exist: it is not publishing, or a QoS "
                "mismatch, e.g. a best-effort publisher and a reliable subscription (set "
                "qos_overrides.<topic>.subscription.reliability: best_effort)")

    def _inputs(self, now_s: float) -> HealthStatus:
        elapsed = now_s - self._start_s
        values: dict[str, str] = {}
        errors: list[str] = []
        warnings: list[str] = []
        waiting: list[str] = []
        for index, topic in enumerate(self.topics):
            last = self._last_arrival[index]
            values[f"{topic} rate [Hz]"] = f"{self._input_rates[index].hz(now_s):.2f}"
            values[f"{topic} age [s]"] = "never" if last is None else f"{now_s - last:.2f}"
            count = self._publisher_counts[index]
            values[f"{topic} publishers"] = "unknown" if count is None else str(count)
            if self._stamps[index]:
                values[f"{topic} last stamp [s]"] = f"{self._stamps[index][-1]:.6f}"
            is_info = index in (LEFT_INFO, RIGHT_INFO)
            if last is None:
                if elapsed > self.input_timeout_s:
                    errors.append(f"no messages on {topic} in {elapsed:.1f} s"
                                  + self._silence_cause(index))
                else:
                    waiting.append(topic)
            elif now_s - last > self.input_timeout_s:
                text = f"{topic} stopped {now_s - last:.1f} s ago"
                # The node may keep using the last camera_info; stopped images are fatal.
                (warnings if is_info else errors).append(text)
        if errors:
            return HealthStatus(STATUS_INPUTS, ERROR, "; ".join(errors + warnings), values)
        if warnings:
            return HealthStatus(STATUS_INPUTS, WARN, "; ".join(warnings), values)
        if waiting:
            return HealthStatus(STATUS_INPUTS, STALE, "waiting for " + ", ".join(waiting),
                                values)
        left_hz = self._input_rates[LEFT_IMAGE].hz(now_s)
        right_hz = self._input_rates[RIGHT_IMAGE].hz(now_s)
        return HealthStatus(STATUS_INPUTS, OK,
                            f"left {left_hz:.1f} Hz, right {right_hz:.1f} Hz", values)

    def _stamp_mismatch(self) -> str:
        """Why recent stamps cannot pair, or "" when they can (or cannot be judged)."""
        if self.approximate_sync and self.sync_tolerance_s <= 0.0:
            return ""  # an unbounded approximate policy pairs any stamps eventually
        tolerance = self.sync_tolerance_s if self.approximate_sync else 0.0
        left = self._stamps[LEFT_IMAGE]
        if not left:
            return ""
        problems = []
        for index in self.stamp_matched_topics:
            if index == LEFT_IMAGE or not self._stamps[index]:
                continue
            offset = min(abs(a - b) for a in left for b in self._stamps[index])
            if offset > tolerance + _EPSILON_S:
                problems.append(f"{self.topics[index]} is {offset * 1e3:.1f} ms from "
                                f"{self.topics[LEFT_IMAGE]}")
        if not problems:
            return ""
        if self.approximate_sync:
            rule = (f"approximate_sync_tolerance_seconds is {tolerance:g} s; raise it or "
                    "synchronise the cameras")
        else:
            rule = ("exact sync needs identical stamps; use approximate_sync:=true for "
                    "cameras that are not hardware-synchronised")
        return "stamps do not match: " + ", ".join(problems) + f" ({rule})"

    def _sync(self, now_s: float) -> HealthStatus:
        values = {"pairs rate [Hz]": f"{self._sync_rate.hz(now_s):.2f}",
                  "policy": (f"approximate (tolerance {self.sync_tolerance_s:g} s)"
                             if self.approximate_sync else "exact")}
        if self._last_sync is not None:
            values["last pair age [s]"] = f"{now_s - self._last_sync:.2f}"
        if not (self._live(LEFT_IMAGE, now_s) or self._live(RIGHT_IMAGE, now_s)):
            return HealthStatus(STATUS_SYNC, STALE, "no input images to pair", values)
        reference = self._images_live_since
        if self._last_sync is not None:
            reference = max(reference, self._last_sync)
        failing_s = now_s - reference
        if failing_s <= self.sync_timeout_s:
            if self._last_sync is None:
                return HealthStatus(STATUS_SYNC, STALE, "waiting for the first pair", values)
            return HealthStatus(STATUS_SYNC, OK,
                                f"{self._sync_rate.hz(now_s):.1f} pairs/s", values)

        causes = []
        for index, topic in enumerate(self.topics):
            if self._live(index, now_s):
                continue
            last = self._last_arrival[index]
            count = self._publisher_counts[index]
            if last is not None:
                silence = f"{topic} stopped {now_s - last:.1f} s ago"
                causes.append(("camera_info missing: " if index in (LEFT_INFO, RIGHT_INFO)
                               else "") + silence)
            elif index in (LEFT_INFO, RIGHT_INFO):
                text = f"camera_info missing: no messages on {topic}"
                if count == 0:
                    text += " (no publisher)"
                elif count:
                    text += (f" though {count} publisher(s) exist (not publishing, or a QoS "
                             "mismatch)")
                causes.append(text)
            elif count == 0:
                causes.append(f"no publisher on {topic}: check the topic remapping and "
                              "namespace")
            elif count:
                causes.append(f"QoS mismatch likely: {topic} has {count} publisher(s) but "
                              "no messages arrive")
            else:
                causes.append(f"no messages on {topic}")
        mismatch = self._stamp_mismatch()
        if mismatch:
            causes.append(mismatch)
        if causes:
            message = f"no pair for {failing_s:.1f} s: " + "; ".join(causes)
            return HealthStatus(STATUS_SYNC, ERROR, message, values)
        return HealthStatus(STATUS_SYNC, WARN,
                            f"no pair for {failing_s:.1f} s while images arrive; cause "
                            "unknown (queue_size too small for the stamp spread?)", values)

    def _processing(self, now_s: float) -> HealthStatus:
        while self._latencies and self._latencies[0][0] < now_s - self.window_s:
            self._latencies.popleft()
        recent = [latency for _time, latency in self._latencies]
        values = {
            "output rate [Hz]": f"{self._output_rate.hz(now_s):.2f}",
            "frames processed": str(self.frames_processed),
            "frames dropped": str(self.frames_dropped),
            "max latency bound [s]": f"{self.max_latency_s:g}",
        }
        if self._last_latency is not None:
            values["last latency [s]"] = f"{self._last_latency:.3f}"
        if recent:
            values["mean latency [s]"] = f"{sum(recent) / len(recent):.3f}"
            values["max latency [s]"] = f"{max(recent):.3f}"

        if self._last_result is None:
            if self._last_sync is None:
                return HealthStatus(STATUS_PROCESSING, STALE, "no pairs yet", values)
            return HealthStatus(STATUS_PROCESSING, STALE,
                                "waiting for the first result (model loading or warm-up)",
                                values)
        result_age = now_s - self._last_result
        if (result_age > self.input_timeout_s and self._last_sync is not None
                and self._last_sync > self._last_result):
            return HealthStatus(STATUS_PROCESSING, WARN,
                                f"no result for {result_age:.1f} s although pairs arrive",
                                values)
        if recent:
            mean = sum(recent) / len(recent)
            if mean > self.max_latency_s:
                return HealthStatus(STATUS_PROCESSING, WARN,
                                    f"latency {mean:.2f} s exceeds max_latency_s "
                                    f"{self.max_latency_s:g} s", values)
            return HealthStatus(STATUS_PROCESSING, OK,
                                f"{self._output_rate.hz(now_s):.1f} Hz, latency "
                                f"{mean * 1e3:.0f} ms", values)
        return HealthStatus(STATUS_PROCESSING, STALE,
                            f"no result for {result_age:.1f} s", values)

    def _device(self) -> HealthStatus:
        allocated = self._gpu_memory_fn(self.device)
        text = "n/a" if allocated is None else f"{allocated / 2**20:.1f}"
        return HealthStatus(STATUS_DEVICE, OK, self.device,
                            {"device": self.device, "gpu memory allocated [MiB]": text,
                             **self.backend_info})


class DiagnosticsPublisher:
    """Publishes a HealthMonitor's verdicts on /diagnostics once per `period_s`.

    With diagnostic_updater installed it registers one task per status on an Updater
    (names "<node name>: <status>", parameter diagnostic_updater.period); without it,
    it publishes the same DiagnosticArray from its own timer.
    """

    def __init__(
        self,
        node: Any,
        monitor: HealthMonitor,
        *,
        hardware_id: str | None = None,
        period_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        use_diagnostic_updater: bool | None = None,
    ) -> None:
        self.node = node
        self.monitor = monitor
        self._hardware_id = hardware_id
        self._clock = clock
        self._updater: Any = None
        self._publisher: Any = None
        self._timer: Any = None

        updater_module = None
        if use_diagnostic_updater is not False:
            try:
                import diagnostic_updater as updater_module
            except ImportError:
                if use_diagnostic_updater:
                    raise
        if updater_module is not None:
            try:
                self._updater = updater_module.Updater(node, period=period_s)
            except TypeError:  # releases before Humble take no period
                self._updater = updater_module.Updater(node)
            self._updater.setHardwareID(self.hardware_id)
            for name in STATUS_NAMES:
                self._updater.add(name, self._task(name))
        else:
            from diagnostic_msgs.msg import DiagnosticArray

            self._publisher = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
            self._timer = node.create_timer(period_s, self.publish_now)

    @property
    def hardware_id(self) -> str:
        """The given hardware id, else the monitor's device, else the node name."""
        return self._hardware_id or self.monitor.device or self.node.get_name()

    @property
    def uses_diagnostic_updater(self) -> bool:
        return self._updater is not None

    def _status_named(self, name: str) -> HealthStatus:
        for status in self.monitor.evaluate(self._clock()):
            if status.name == name:
                return status
        raise KeyError(name)

    def _task(self, name: str) -> Callable[[Any], Any]:
        def fill(stat: Any) -> Any:
            status = self._status_named(name)
            stat.summary(bytes([status.level]), status.message)
            stat.hardware_id = self.hardware_id
            for key, value in status.values.items():
                stat.add(key, value)
            return stat

        return fill

    def to_message(self) -> Any:
        """The current verdicts as a diagnostic_msgs/DiagnosticArray."""
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

        array = DiagnosticArray()
        array.header.stamp = self.node.get_clock().now().to_msg()
        prefix = self.node.get_name()
        for status in self.monitor.evaluate(self._clock()):
            array.status.append(DiagnosticStatus(
                level=bytes([status.level]),
                name=f"{prefix}: {status.name}",  # as diagnostic_updater names tasks
                message=status.message,
                hardware_id=self.hardware_id,
                values=[KeyValue(key=key, value=value) for key, value in status.values.items()],
            ))
        return array

    def publish_now(self) -> None:
        """Publish the verdicts immediately (the timer calls this every period)."""
        if self._updater is not None:
            self._updater.force_update()
        else:
            self._publisher.publish(self.to_message())

    def destroy(self) -> None:
        """Stop publishing; the node stays usable."""
        timer = self._timer or getattr(self._updater, "timer", None)
        publisher = self._publisher or getattr(self._updater, "publisher", None)
        if timer is not None:
            self.node.destroy_timer(timer)
        if publisher is not None:
            self.node.destroy_publisher(publisher)
        self._timer = self._publisher = self._updater = None
