# SPDX-License-Identifier: Apache-2.0
"""`HealthMonitor`: input, synchronisation and output events in, one verdict per
status out; pure (no ROS), all times in seconds of one monotonic clock."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence

from ..launch_config import INPUT_TOPICS
from .measures import SlidingRate, cuda_memory_allocated_bytes
from .status import (
    ERROR,
    LEFT_IMAGE,
    LEFT_INFO,
    OK,
    RIGHT_IMAGE,
    RIGHT_INFO,
    STALE,
    STATUS_DEVICE,
    STATUS_INPUTS,
    STATUS_PROCESSING,
    STATUS_SYNC,
    WARN,
    HealthStatus,
)

_TRANSPORT_HINT = (
    ", so large messages are likely lost in transport (Fast DDS over UDP with small "
    "socket buffers: export FASTDDS_BUILTIN_TRANSPORTS='DEFAULT?sockets_size=4MB' for "
    "the camera driver and the node, and raise net.core.rmem_max to match)")
_STAMP_HISTORY = 20  # recent stamps per topic kept to look for a pairable stamp
_EPSILON_S = 1e-6  # stamps built from identical sec/nanosec may still differ in rounding


class HealthMonitor:
    """Collects input, synchronisation and output events and judges the node's health.

    Feed it from the node: `on_input` for every message on an input topic (index into
    `topics`), `on_sync` for every synchronised pair, `on_result` after publishing,
    `on_drop` for every pair not processed after synchronisation,
    `set_synchronizer_drops` with the synchronizer's total, `on_idle` for a pair
    skipped because no output has a subscriber, `on_time_jump` when input time went
    back, `set_publisher_counts` from `count_publishers()` now and then.
    `evaluate(now_s)` returns one HealthStatus per entry of STATUS_NAMES.
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

        self._input_rates = [SlidingRate(window_s) for _ in self.topics]
        self._last_arrival: list[float | None] = [None] * 4
        self._stamps: list[deque[float]] = [deque(maxlen=_STAMP_HISTORY) for _ in self.topics]
        self._publisher_counts: list[int | None] = [None] * 4
        self._images_live_since: float | None = None

        self._sync_rate = SlidingRate(window_s)
        self._last_sync: float | None = None
        self._output_rate = SlidingRate(window_s)
        self._latencies: deque[tuple[float, float]] = deque()
        self._last_result: float | None = None
        self._last_latency: float | None = None
        self.frames_processed = 0
        self.frames_dropped = 0  # after synchronisation (busy, failed, bad input)
        self.synchronizer_drops = 0
        self._last_idle: float | None = None
        self._last_jump: tuple[float, float] | None = None  # (size_s, when)
        self._qos_problems: list[str | None] | None = None  # None: not known

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

    def set_synchronizer_drops(self, total: int) -> None:
        """Pairs the synchronizer lost so far (incomplete, replaced, overflowed)."""
        with self._lock:
            self.synchronizer_drops = int(total)

    def on_idle(self, now_s: float) -> None:
        """A pair was skipped on purpose: no output has a subscriber."""
        with self._lock:
            self._last_idle = now_s

    def on_time_jump(self, size_s: float, now_s: float) -> None:
        """Input stamps went back by `size_s`: stamp history and latencies restart."""
        with self._lock:
            self._last_jump = (size_s, now_s)
            for stamps in self._stamps:
                stamps.clear()
            self._latencies.clear()
            self._last_latency = None

    def set_publisher_counts(self, counts: Sequence[int],
                             qos_problems: Sequence[str | None] | None = None) -> None:
        """Publishers currently matched by name on each input topic (count_publishers)
        and, per topic, why a publisher's QoS cannot match the subscription (None: all
        compatible, or unknown)."""
        if len(counts) != 4 or (qos_problems is not None and len(qos_problems) != 4):
            raise ValueError("one publisher count per input topic")
        with self._lock:
            self._publisher_counts = [int(count) for count in counts]
            self._qos_problems = None if qos_problems is None else list(qos_problems)

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
        if self._qos_problems is None:  # the node did not say: do not guess
            return (f" though {count} publisher(s) exist: it is not publishing, its QoS is "
                    "incompatible, or its messages are lost in transport")
        problem = self._qos_problems[index]
        if problem:
            fix = ("set qos_overrides.<topic>.subscription.reliability: best_effort"
                   if "reliable subscription" in problem.lower()
                   else "check qos_overrides.<topic>.subscription")
            return f" though {count} publisher(s) exist: QoS incompatible ({problem}; {fix})"
        text = f" though {count} publisher(s) with compatible QoS exist"
        if index in (LEFT_IMAGE, RIGHT_IMAGE) and any(
                self._last_arrival[info] is not None for info in (LEFT_INFO, RIGHT_INFO)):
            # camera_info (small) gets through, images (large) do not: transport.
            return text + ": camera_info arrives but images do not" + _TRANSPORT_HINT
        return text + ": it is not publishing, or its messages are lost in transport"

    def _stopped_cause(self, index: int, now_s: float) -> str:
        """For an image topic that stopped while its camera_info goes on: transport."""
        count = self._publisher_counts[index]
        if (index not in (LEFT_IMAGE, RIGHT_IMAGE) or not count or self._qos_problems is None
                or self._qos_problems[index]
                or not any(self._live(info, now_s) for info in (LEFT_INFO, RIGHT_INFO))):
            return ""
        return (f" though camera_info still arrives and {count} publisher(s) with compatible "
                "QoS exist" + _TRANSPORT_HINT)

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
                text = f"{topic} stopped {now_s - last:.1f} s ago" + self._stopped_cause(
                    index, now_s)
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
        # Only images arriving for sync_timeout_s without a pair are a failure: a
        # stream that just stopped is the inputs check's business.
        newest_image = max(t for t in (self._last_arrival[LEFT_IMAGE],
                                       self._last_arrival[RIGHT_IMAGE]) if t is not None)
        if newest_image - reference <= self.sync_timeout_s:
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
                causes.append(f"no messages on {topic}" + self._silence_cause(index))
            else:
                causes.append(f"no messages on {topic}")
        mismatch = self._stamp_mismatch()
        if mismatch:
            causes.append(mismatch)
        if causes:
            message = f"no pair for {failing_s:.1f} s: " + "; ".join(causes)
            return HealthStatus(STATUS_SYNC, ERROR, message, values)
        return HealthStatus(STATUS_SYNC, WARN, f"no pair for {failing_s:.1f} s while "
                            f"images arrive: {self._pairing_evidence(now_s)}", values)

    def _pairing_evidence(self, now_s: float) -> str:
        """What the monitor saw of a stall whose stamps could pair."""
        seen = []
        if self._last_jump is not None:
            size_s, when = self._last_jump
            seen.append(f"input time jumped back by {size_s:.1f} s {now_s - when:.1f} s ago")
        if self.synchronizer_drops:
            seen.append(f"the synchronizer dropped {self.synchronizer_drops} pair(s) "
                        "incomplete (a message lost, or queue_size too small for the delay "
                        "between the topics)")
        if not seen:
            seen.append("every message is still waiting for its partners (a topic "
                        "delayed by more than queue_size messages?)")
        return "; ".join(seen)

    def _processing(self, now_s: float) -> HealthStatus:
        while self._latencies and self._latencies[0][0] < now_s - self.window_s:
            self._latencies.popleft()
        recent = [latency for _time, latency in self._latencies]
        values = {
            "output rate [Hz]": f"{self._output_rate.hz(now_s):.2f}",
            "frames processed": str(self.frames_processed),
            "frames dropped": str(self.frames_dropped + self.synchronizer_drops),
            "dropped by the synchronizer": str(self.synchronizer_drops),
            "max latency bound [s]": f"{self.max_latency_s:g}",
        }
        if self._last_latency is not None:
            values["last latency [s]"] = f"{self._last_latency:.3f}"
        if recent:
            values["mean latency [s]"] = f"{sum(recent) / len(recent):.3f}"
            values["max latency [s]"] = f"{max(recent):.3f}"

        if self._last_result is None:
            if self._idle(now_s):
                return HealthStatus(STATUS_PROCESSING, OK,
                                    "idle: no subscriber on any output", values)
            if self._last_sync is None:
                return HealthStatus(STATUS_PROCESSING, STALE, "no pairs yet", values)
            return HealthStatus(STATUS_PROCESSING, STALE,
                                "waiting for the first result (model loading or warm-up)",
                                values)
        result_age = now_s - self._last_result
        if self._idle(now_s):
            return HealthStatus(STATUS_PROCESSING, OK, "idle: no subscriber on any output",
                                values)
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

    def _idle(self, now_s: float) -> bool:
        """The newest pair was skipped because nobody listens."""
        del now_s  # idle until a pair is processed again, however old
        return (self._last_idle is not None and self._last_sync is not None
                and self._last_idle >= self._last_sync)

    def _device(self) -> HealthStatus:
        allocated = self._gpu_memory_fn(self.device)
        text = "n/a" if allocated is None else f"{allocated / 2**20:.1f}"
        return HealthStatus(STATUS_DEVICE, OK, self.device,
                            {"device": self.device, "gpu memory allocated [MiB]": text,
                             **self.backend_info})
