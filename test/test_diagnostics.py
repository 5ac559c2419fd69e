# SPDX-License-Identifier: Apache-2.0
"""HealthMonitor verdicts on synthetic event timelines, and DiagnosticsPublisher over DDS."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import threading
import time
import types
from pathlib import Path

import pytest

from s2m2_ros import diagnostics
from s2m2_ros.diagnostics import (
    ERROR,
    LEFT_IMAGE,
    LEFT_INFO,
    OK,
    RIGHT_IMAGE,
    RIGHT_INFO,
    STALE,
    STATUS_NAMES,
    WARN,
    HealthMonitor,
    cuda_memory_allocated_bytes,
)

REPO = Path(__file__).resolve().parents[1]
PERIOD_S = 1 / 30


def by_name(monitor: HealthMonitor, now_s: float) -> dict[str, diagnostics.HealthStatus]:
    statuses = monitor.evaluate(now_s)
    assert [status.name for status in statuses] == list(STATUS_NAMES)
    return {status.name: status for status in statuses}


def feed(monitor: HealthMonitor, start_s: float, end_s: float, *, topics=(0, 1, 2, 3),
         right_offset_s: float = 0.0, info_stamp_s: float | None = None,
         sync: bool = True, latency_s: float | None = 0.05) -> float:
    """Simulate a 30 Hz camera pair from start_s to end_s; returns the last time."""
    now = start_s
    while now < end_s:
        stamp = now - 0.01  # stamped 10 ms before arrival
        for index in topics:
            if index == RIGHT_IMAGE:
                monitor.on_input(index, stamp + right_offset_s, now + 0.002)
            elif index in (LEFT_INFO, RIGHT_INFO):
                info = stamp if info_stamp_s is None else info_stamp_s
                monitor.on_input(index, info + (right_offset_s if index == RIGHT_INFO else 0),
                                 now + 0.001)
            else:
                monitor.on_input(index, stamp, now)
        if sync:
            monitor.on_sync(now + 0.003)
            if latency_s is not None:
                monitor.on_result(latency_s, now + 0.003 + latency_s)
        now += PERIOD_S
    return now


def no_gpu(_device: str) -> None:
    return None


def make(**kwargs) -> HealthMonitor:
    kwargs.setdefault("start_s", 0.0)
    kwargs.setdefault("gpu_memory_fn", no_gpu)
    return HealthMonitor(**kwargs)


# ---- healthy and starting up -----------------------------------------------------------

def test_healthy_stream_is_ok_with_rates_and_latency():
    monitor = make()
    last = feed(monitor, 0.0, 5.0)
    status = by_name(monitor, last)
    assert {name: s.level for name, s in status.items()} == dict.fromkeys(STATUS_NAMES, OK)
    assert float(status["inputs"].values["left/image_rect rate [Hz]"]) == pytest.approx(30, 0.05)
    assert float(status["synchronization"].values["pairs rate [Hz]"]) == pytest.approx(30, 0.05)
    assert float(status["processing"].values["mean latency [s]"]) == pytest.approx(0.05)
    assert status["processing"].values["frames processed"] == str(monitor.frames_processed)
    assert monitor.frames_processed >= 149  # 5 s at 30 Hz
    assert status["device"].values["gpu memory allocated [MiB]"] == "n/a"
    assert monitor.camera_info_seen == (True, True)


def test_before_any_input_everything_is_stale_not_an_error():
    monitor = make(input_timeout_s=3.0)
    status = by_name(monitor, 1.0)
    assert status["inputs"].level == STALE
    assert "left/image_rect" in status["inputs"].message
    assert status["synchronization"].level == STALE
    assert status["processing"].level == STALE
    assert monitor.camera_info_seen == (False, False)


def test_start_time_defaults_to_first_call():
    monitor = HealthMonitor(gpu_memory_fn=no_gpu, input_timeout_s=3.0)
    assert by_name(monitor, 1000.0)["inputs"].level == STALE
    assert by_name(monitor, 1002.0)["inputs"].level == STALE
    assert by_name(monitor, 1004.0)["inputs"].level == ERROR


# ---- inputs ----------------------------------------------------------------------------

def test_no_messages_and_no_publisher_points_at_the_remapping():
    monitor = make(input_timeout_s=3.0)
    monitor.set_publisher_counts([0, 0, 0, 0])
    status = by_name(monitor, 4.0)["inputs"]
    assert status.level == ERROR
    assert "no messages on left/image_rect" in status.message
    assert "no publisher" in status.message
    assert status.values["right/camera_info publishers"] == "0"


def test_no_messages_although_published_names_what_the_node_can_see():
    unknown = make(input_timeout_s=3.0)
    unknown.set_publisher_counts([2, 2, 1, 1])
    status = by_name(unknown, 4.0)["inputs"]
    assert status.level == ERROR
    assert "2 publisher(s) exist: it is not publishing, its QoS is incompatible" in (
        status.message)

    incompatible = make(input_timeout_s=3.0)
    reason = "ERROR: Best effort publisher and reliable subscription;"  # rclpy's words
    incompatible.set_publisher_counts([2, 2, 1, 1], [reason, None, None, None])
    message = by_name(incompatible, 4.0)["inputs"].message
    assert f"left/image_rect in 4.0 s though 2 publisher(s) exist: QoS incompatible ({reason}" in (
        message)
    assert "subscription.reliability: best_effort" in message
    assert "right/image_rect in 4.0 s though 2 publisher(s) with compatible QoS exist: it is " \
           "not publishing" in message


def test_images_stopping_is_an_error_after_the_timeout():
    monitor = make(input_timeout_s=3.0)
    last = feed(monitor, 0.0, 5.0)
    assert by_name(monitor, last + 2.9)["inputs"].level == OK
    status = by_name(monitor, last + 4.0)
    assert status["inputs"].level == ERROR
    assert "left/image_rect stopped" in status["inputs"].message
    assert status["synchronization"].level == STALE
    # 30 messages in the last second of a 5 s window: the rate fades, then vanishes.
    assert 5.0 < float(status["inputs"].values["left/image_rect rate [Hz]"]) < 7.0
    later = by_name(monitor, last + 10.0)["inputs"]
    assert float(later.values["left/image_rect rate [Hz]"]) == 0.0


def test_camera_info_stopping_is_only_a_warning():
    monitor = make(input_timeout_s=3.0)
    feed(monitor, 0.0, 1.0)  # info arrives for a second, then only images
    last = feed(monitor, 1.0, 6.0, topics=(LEFT_IMAGE, RIGHT_IMAGE))
    status = by_name(monitor, last)
    assert status["inputs"].level == WARN
    assert "left/camera_info stopped" in status["inputs"].message
    assert status["synchronization"].level == OK  # the node kept pairing


# ---- synchronisation -------------------------------------------------------------------

def test_sync_failure_from_missing_camera_info():
    monitor = make(sync_timeout_s=2.0)
    monitor.set_publisher_counts([1, 1, 0, 1])
    last = feed(monitor, 0.0, 1.5, topics=(LEFT_IMAGE, RIGHT_IMAGE, RIGHT_INFO), sync=False)
    assert by_name(monitor, last)["synchronization"].level == STALE  # still within timeout
    last = feed(monitor, last, 4.0, topics=(LEFT_IMAGE, RIGHT_IMAGE, RIGHT_INFO), sync=False)
    status = by_name(monitor, last)["synchronization"]
    assert status.level == ERROR
    assert "camera_info missing: no messages on left/camera_info (no publisher)" in status.message
    assert "right/camera_info" not in status.message
    assert "stamps" not in status.message
    assert monitor.camera_info_seen == (False, True)


def test_sync_failure_from_exact_stamps_that_differ():
    monitor = make(sync_timeout_s=2.0)
    monitor.set_publisher_counts([1, 1, 1, 1])
    last = feed(monitor, 0.0, 4.0, right_offset_s=0.010, sync=False)
    status = by_name(monitor, last)["synchronization"]
    assert status.level == ERROR
    assert "stamps do not match" in status.message
    assert "right/image_rect is 10.0 ms from left/image_rect" in status.message
    assert "approximate_sync:=true" in status.message
    assert "camera_info missing" not in status.message
    assert status.values["policy"] == "exact"


def test_late_arrival_of_equal_stamps_is_not_a_mismatch():
    # Right images arrive 2 ms after left ones with the same stamps: at most instants the
    # last stamps differ by a frame, yet they pair. Only the history shows that.
    monitor = make(sync_timeout_s=2.0)
    last = feed(monitor, 0.0, 4.0, sync=False)
    monitor.on_input(LEFT_IMAGE, last, last)  # left is one frame ahead right now
    status = by_name(monitor, last + 0.001)["synchronization"]
    assert status.level == WARN
    assert "stamps" not in status.message
    assert "still waiting for its partners" in status.message


def test_camera_info_stamps_must_match_when_synchronised_with_the_images():
    monitor = make(sync_timeout_s=2.0)
    last = feed(monitor, 0.0, 4.0, info_stamp_s=0.0, sync=False)
    status = by_name(monitor, last)["synchronization"]
    assert status.level == ERROR
    assert "left/camera_info is" in status.message
    # A node that caches camera_info pairs only the images: info stamps are no cause.
    cached = make(sync_timeout_s=2.0, stamp_matched_topics=(LEFT_IMAGE, RIGHT_IMAGE))
    last = feed(cached, 0.0, 4.0, info_stamp_s=0.0, sync=False)
    assert by_name(cached, last)["synchronization"].level == WARN


def test_approximate_sync_judges_stamps_against_the_tolerance():
    tight = make(approximate_sync=True, sync_tolerance_s=0.005)
    last = feed(tight, 0.0, 4.0, right_offset_s=0.010, sync=False)
    status = by_name(tight, last)["synchronization"]
    assert status.level == ERROR
    assert "approximate_sync_tolerance_seconds is 0.005 s" in status.message

    loose = make(approximate_sync=True, sync_tolerance_s=0.02)
    last = feed(loose, 0.0, 4.0, right_offset_s=0.010, sync=False)
    assert by_name(loose, last)["synchronization"].level == WARN

    unbounded = make(approximate_sync=True, sync_tolerance_s=0.0)
    last = feed(unbounded, 0.0, 4.0, right_offset_s=0.5, sync=False)
    status = by_name(unbounded, last)["synchronization"]
    assert status.level == WARN
    assert "stamps" not in status.message


def test_silent_right_camera_with_compatible_publisher_points_at_socket_buffers():
    """Both ends best effort, camera_info gets through, 640x480 images do not: Fast DDS's
    default UDP socket buffers, not QoS."""
    monitor = make(sync_timeout_s=2.0)
    monitor.set_publisher_counts([1, 1, 1, 1], [None] * 4)
    last = feed(monitor, 0.0, 4.0, topics=(LEFT_IMAGE, LEFT_INFO, RIGHT_INFO), sync=False)
    status = by_name(monitor, last)["synchronization"]
    assert status.level == ERROR
    assert "no messages on right/image_rect though 1 publisher(s) with compatible QoS" in (
        status.message)
    assert "camera_info arrives but images do not" in status.message
    assert "sockets_size" in status.message
    assert "QoS incompatible" not in status.message


def test_images_that_stop_while_camera_info_goes_on_point_at_socket_buffers():
    """A camera switched to a larger resolution: camera_info still arrives, images not."""
    monitor = make(input_timeout_s=3.0)
    monitor.set_publisher_counts([1, 1, 1, 1], [None] * 4)
    last = feed(monitor, 0.0, 2.0)
    last = feed(monitor, last, last + 5.0, topics=(LEFT_INFO, RIGHT_INFO), sync=False)
    status = by_name(monitor, last)["inputs"]
    assert status.level == ERROR
    assert "s ago though camera_info still arrives and 1 " \
           "publisher(s) with compatible QoS exist" in status.message
    assert "sockets_size" in status.message
    # Without live camera_info (the whole camera stopped) there is no such hint.
    everything = make(input_timeout_s=3.0)
    everything.set_publisher_counts([1, 1, 1, 1], [None] * 4)
    last = feed(everything, 0.0, 2.0)
    assert "sockets_size" not in by_name(everything, last + 5.0)["inputs"].message


def test_silent_right_camera_with_incompatible_publisher_is_diagnosed_as_qos():
    monitor = make(sync_timeout_s=2.0)
    monitor.set_publisher_counts([1, 1, 1, 1], [None, "best effort publisher", None, None])
    last = feed(monitor, 0.0, 4.0, topics=(LEFT_IMAGE, LEFT_INFO, RIGHT_INFO), sync=False)
    status = by_name(monitor, last)["synchronization"]
    assert status.level == ERROR
    assert "right/image_rect though 1 publisher(s) exist: QoS incompatible (best effort " \
           "publisher" in status.message
    assert "check qos_overrides.<topic>.subscription" in status.message
    assert "sockets_size" not in status.message


def test_a_stream_that_stops_is_no_sync_failure():
    """Between the sync timeout (2 s) and the input timeout (3 s) after the last pair the
    images have stopped too: that is no pairing problem."""
    monitor = make(sync_timeout_s=2.0, input_timeout_s=3.0)
    last = feed(monitor, 0.0, 5.0)
    for after_s in (2.1, 2.5, 2.9):
        assert by_name(monitor, last + after_s)["synchronization"].level == OK, after_s
    assert by_name(monitor, last + 3.5)["synchronization"].level == STALE


def test_a_stall_after_a_time_jump_names_the_jump_and_the_drops():
    monitor = make(sync_timeout_s=2.0)
    last = feed(monitor, 0.0, 1.0)
    monitor.on_time_jump(60.0, last)
    monitor.set_synchronizer_drops(4)
    last = feed(monitor, last, last + 3.0, sync=False)
    status = by_name(monitor, last)["synchronization"]
    assert status.level == WARN
    assert "input time jumped back by 60.0 s 3.0 s ago" in status.message
    assert "the synchronizer dropped 4 pair(s)" in status.message


def test_sync_clock_restarts_when_images_resume_after_a_silence():
    monitor = make(sync_timeout_s=2.0, input_timeout_s=3.0)
    feed(monitor, 0.0, 2.0)
    last = feed(monitor, 20.0, 21.0, sync=False)  # resumed 1 s ago, nothing paired yet
    assert by_name(monitor, last)["synchronization"].level == OK
    assert by_name(monitor, 24.5)["synchronization"].level == STALE  # images gone again


def test_sync_failure_after_pairs_stopped():
    monitor = make(sync_timeout_s=2.0)
    last = feed(monitor, 0.0, 2.0)
    last = feed(monitor, last, 6.0, right_offset_s=0.004, sync=False)
    status = by_name(monitor, last)["synchronization"]
    assert status.level == ERROR
    assert re.search(r"no pair for 4\.\d s", status.message)
    assert "right/image_rect is 4.0 ms" in status.message


# ---- processing ------------------------------------------------------------------------

def test_latency_above_bound_warns_but_a_single_spike_does_not():
    slow = make(max_latency_s=1.0)
    last = feed(slow, 0.0, 3.0, latency_s=1.5)
    status = by_name(slow, last + 1.5)["processing"]
    assert status.level == WARN
    assert "exceeds max_latency_s 1 s" in status.message

    spiky = make(max_latency_s=1.0)
    last = feed(spiky, 0.0, 3.0, latency_s=0.05)
    spiky.on_result(3.0, last)
    status = by_name(spiky, last)["processing"]
    assert status.level == OK
    assert float(status.values["max latency [s]"]) == pytest.approx(3.0)


def test_waiting_for_first_result_then_stuck_backend():
    monitor = make(input_timeout_s=3.0)
    last = feed(monitor, 0.0, 2.0, latency_s=None)
    status = by_name(monitor, last)["processing"]
    assert status.level == STALE
    assert "warm-up" in status.message
    monitor.on_result(0.2, last)
    last = feed(monitor, last, last + 4.0, latency_s=None)
    status = by_name(monitor, last)["processing"]
    assert status.level == WARN
    assert "although pairs arrive" in status.message


def test_drops_are_counted_with_the_synchronizer_s():
    monitor = make()
    for _ in range(3):
        monitor.on_drop()
    assert by_name(monitor, 0.1)["processing"].values["frames dropped"] == "3"
    monitor.set_synchronizer_drops(37)
    values = by_name(monitor, 0.2)["processing"].values
    assert values["frames dropped"] == "40"
    assert values["dropped by the synchronizer"] == "37"


def test_idle_on_purpose_is_ok_not_a_stuck_backend():
    monitor = make(input_timeout_s=3.0)
    last = feed(monitor, 0.0, 1.0)  # processed while someone listened
    now = last
    while now < last + 10.0:  # then pairs keep coming, and nobody listens
        monitor.on_input(LEFT_IMAGE, now, now)
        monitor.on_sync(now)
        monitor.on_idle(now)
        now += PERIOD_S
    status = by_name(monitor, now)["processing"]
    assert status.level == OK
    assert "idle" in status.message
    monitor.on_sync(now + 0.1)  # a pair for a subscriber that never gets a result
    later = by_name(monitor, now + 4.0)["processing"]
    assert later.level == WARN
    assert "although pairs arrive" in later.message


def test_a_time_jump_restarts_the_latency_statistics():
    monitor = make(max_latency_s=1.0)
    last = feed(monitor, 0.0, 2.0, latency_s=1.5)
    assert by_name(monitor, last)["processing"].level == WARN
    monitor.on_time_jump(5.0, last)
    status = by_name(monitor, last + 0.1)["processing"]
    assert "mean latency [s]" not in status.values
    assert "last latency [s]" not in status.values


# ---- device ----------------------------------------------------------------------------

def test_gpu_memory_is_reported_in_mib():
    monitor = make(device="cuda:0", gpu_memory_fn=lambda device: 3 * 2**20)
    status = by_name(monitor, 0.0)["device"]
    assert status.message == "cuda:0"
    assert status.values["gpu memory allocated [MiB]"] == "3.0"
    monitor.set_device("cuda:1")
    assert by_name(monitor, 0.0)["device"].values["device"] == "cuda:1"


def test_cuda_memory_reads_an_imported_torch_only(monkeypatch):
    asked = []

    def memory_allocated(device):
        asked.append(device)
        return 1234

    fake_torch = types.SimpleNamespace(cuda=types.SimpleNamespace(
        is_available=lambda: True, memory_allocated=memory_allocated))
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    assert cuda_memory_allocated_bytes("cuda:0") == 1234
    assert asked == ["cuda:0"]
    assert cuda_memory_allocated_bytes("cpu") is None
    monkeypatch.delitem(sys.modules, "torch")
    assert cuda_memory_allocated_bytes("cuda:0") is None


# ---- DiagnosticsPublisher over DDS -----------------------------------------------------

try:
    import diagnostic_msgs.msg  # noqa: F401
    import rclpy
except ImportError:  # the pure tests above still run
    rclpy = None


def receive_diagnostics(context, node_name: str, wanted: int, timeout_s: float = 20.0):
    """Spin a subscriber until a DiagnosticArray from `node_name` with `wanted` statuses."""
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor

    listener = rclpy.create_node("diagnostics_listener", context=context)
    received = []
    listener.create_subscription(DiagnosticArray, "/diagnostics", received.append, 10)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(listener)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
            for array in received:
                ours = [s for s in array.status if s.name.startswith(node_name + ": ")]
                if len(ours) == wanted:
                    return {s.name.split(": ", 1)[1]: s for s in ours}
        pytest.fail(f"no DiagnosticArray from {node_name} in {timeout_s} s "
                    f"({len(received)} other arrays)")
    finally:
        executor.shutdown()
        listener.destroy_node()


@pytest.fixture
def ros_context():
    if rclpy is None:
        pytest.skip("rclpy and diagnostic_msgs are needed for the /diagnostics tests")
    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.shutdown(context=context)


TALKER = textwrap.dedent("""
    import time
    import rclpy
    from s2m2_ros.diagnostics import DiagnosticsPublisher, HealthMonitor

    monitor = HealthMonitor(start_s=0.0, gpu_memory_fn=lambda device: None)
    monitor.set_publisher_counts([1, 1, 0, 1])
    now = 0.0
    while now < 5.0:  # images and the right camera_info, never the left camera_info
        for index in (0, 1, 3):
            monitor.on_input(index, now, now)
        now += 0.1
    rclpy.init()
    node = rclpy.create_node("diag_talker")
    DiagnosticsPublisher(node, monitor, period_s=0.2, clock=lambda: 5.0,
                         use_diagnostic_updater=False)
    deadline = time.monotonic() + 30.0
    while rclpy.ok() and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
""")


def test_fallback_publisher_reaches_another_process(ros_context, ros_env):
    env = dict(ros_env, PYTHONPATH=os.pathsep.join(
        [str(REPO), *filter(None, [ros_env.get("PYTHONPATH")])]))
    talker = subprocess.Popen([sys.executable, "-c", TALKER], env=env, cwd=REPO)
    try:
        statuses = receive_diagnostics(ros_context, "diag_talker", len(STATUS_NAMES))
    finally:
        talker.terminate()
        talker.wait(timeout=10)
    assert set(statuses) == set(STATUS_NAMES)
    sync = statuses["synchronization"]
    assert sync.level == bytes([ERROR])
    assert "camera_info missing: no messages on left/camera_info (no publisher)" in sync.message
    assert statuses["inputs"].level == bytes([ERROR])
    assert statuses["processing"].level == bytes([STALE])
    device = statuses["device"]
    assert device.level == bytes([OK])
    assert device.hardware_id == "cpu"
    assert {kv.key: kv.value for kv in device.values}["gpu memory allocated [MiB]"] == "n/a"


@pytest.mark.parametrize("use_updater", [False, True], ids=["own-timer", "diagnostic_updater"])
def test_publisher_sends_ok_statuses(ros_context, use_updater):
    if use_updater:
        pytest.importorskip("diagnostic_updater",
                            reason="diagnostic_updater is not installed (ROS 2 package)")
    from rclpy.executors import SingleThreadedExecutor

    monitor = make(device="cuda:0", gpu_memory_fn=lambda device: 2**21)
    clock_s = feed(monitor, 0.0, 3.0)
    node = rclpy.create_node("diag_healthy", context=ros_context)
    publisher = diagnostics.DiagnosticsPublisher(
        node, monitor, period_s=0.2, clock=lambda: clock_s, hardware_id="stereo-rig-1",
        use_diagnostic_updater=use_updater)
    assert publisher.uses_diagnostic_updater is use_updater
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    spinning = threading.Thread(target=executor.spin, daemon=True)
    spinning.start()
    try:
        statuses = receive_diagnostics(ros_context, "diag_healthy", len(STATUS_NAMES))
    finally:
        publisher.destroy()
        executor.shutdown()
        spinning.join(timeout=5)
        node.destroy_node()
    assert {name: s.level for name, s in statuses.items()} == dict.fromkeys(
        STATUS_NAMES, bytes([OK]))
    assert all(s.hardware_id == "stereo-rig-1" for s in statuses.values())
    values = {kv.key: kv.value for kv in statuses["device"].values}
    assert values["gpu memory allocated [MiB]"] == "2.0"
    inputs = {kv.key: kv.value for kv in statuses["inputs"].values}
    assert float(inputs["right/image_rect rate [Hz]"]) == pytest.approx(30, 0.05)


def test_to_message_mirrors_evaluate(ros_context):
    monitor = make()
    node = rclpy.create_node("diag_direct", context=ros_context)
    try:
        publisher = diagnostics.DiagnosticsPublisher(
            node, monitor, clock=lambda: 10.0, use_diagnostic_updater=False)
        array = publisher.to_message()
        expected = monitor.evaluate(10.0)
        assert [s.name for s in array.status] == [f"diag_direct: {e.name}" for e in expected]
        assert [s.level for s in array.status] == [bytes([e.level]) for e in expected]
        assert [s.message for s in array.status] == [e.message for e in expected]
        assert array.status[0].level == bytes([ERROR])  # 10 s without any input
        publisher.destroy()
    finally:
        node.destroy_node()
