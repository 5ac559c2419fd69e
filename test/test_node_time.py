# SPDX-License-Identifier: Apache-2.0
"""``stereo_node`` under real robot time, over DDS: input time that jumps back (bag
loop, simulator or clock reset), a loop of the same stamps, all-zero stamps; and the
run-time checks of min_depth/max_depth and max_input_pixels.

Two SGBM nodes (cheap, no weights), one with exact and one with approximate
synchronisation, started together. Each test offers a pair and waits for a new output
with its stamp before offering the next (the node keeps only the newest pair while
busy), re-offering a pair whose output does not come (best-effort inputs may lose a
message).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("stereo_msgs.msg")

from node_harness import (  # noqa: E402  (after the skips)
    NANOSECONDS_PER_SECOND,
    NodeProcess,
    StereoRig,
    pair_messages,
    textured_pair,
)

JUMP_LINE = "input time jumped back by"
SYNC_MODES = {"exact": {}, "approximate": {"approximate_sync": True,
                                           "approximate_sync_tolerance_seconds": 0.02}}


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, NodeProcess]]:
    folder = tmp_path_factory.mktemp("time")
    processes = {}
    try:
        for mode, parameters in SYNC_MODES.items():
            processes[mode] = NodeProcess({"backend": "sgbm", "status_period_s": 0.0,
                                           **parameters}, f"/time_{mode}", folder / mode)
        yield processes
    finally:
        for process in processes.values():
            process.stop()


@pytest.fixture(scope="module")
def rigs(nodes: dict[str, NodeProcess]) -> Iterator[dict[str, StereoRig]]:
    rigs = {}
    try:
        for mode, node in nodes.items():
            rigs[mode] = StereoRig(node.namespace, output_topics=("disparity",))
            rigs[mode].wait_connected(node)
        yield rigs
    finally:
        for rig in rigs.values():
            rig.close()


def _pair(stamp: int):
    left, right = textured_pair(shift_px=5, seed=11)
    return pair_messages(left, right, stamp)


def _offer_until_processed(rig: StereoRig, stamp: int, attempts: int = 4,
                           wait_s: float = 15.0) -> None:
    """Offer the pair with ``stamp`` until one more disparity with that stamp arrives."""
    before = rig.stamps("disparity").count(stamp)
    pair = _pair(stamp)
    for _attempt in range(attempts):
        rig.publish(pair)
        if rig.wait_for(lambda: rig.stamps("disparity").count(stamp) > before, wait_s):
            return
    raise AssertionError(f"no new output for stamp {stamp}")


def _seconds(value: float) -> int:
    return round(value * NANOSECONDS_PER_SECOND)


@pytest.mark.parametrize("mode", list(SYNC_MODES))
def test_a_60_s_jump_back_resumes_with_the_first_pair_and_is_logged_once(
        nodes: dict[str, NodeProcess], rigs: dict[str, StereoRig], mode: str) -> None:
    node, rig = nodes[mode], rigs[mode]
    start = rig.new_stamp()
    for index in range(3):
        _offer_until_processed(rig, start + _seconds(0.1 * index))
    jumps_before = node.output().count(JUMP_LINE)
    back = start + _seconds(0.2) - _seconds(60.0)
    for index in range(5):  # each of them comes out, the first one included
        _offer_until_processed(rig, back + _seconds(0.1 * index))
    assert node.output().count(JUMP_LINE) == jumps_before + 1, node.output()[-2000:]
    assert "input time jumped back by 60.0 s (bag loop or clock reset): resetting " \
           "synchronizer and statistics" in node.output()
    assert node.alive()


@pytest.mark.parametrize("mode", list(SYNC_MODES))
def test_a_bag_loop_of_the_same_stamps_is_processed_every_time(
        nodes: dict[str, NodeProcess], rigs: dict[str, StereoRig], mode: str) -> None:
    node, rig = nodes[mode], rigs[mode]
    loop = [rig.new_stamp() for _ in range(3)]
    jumps_before = node.output().count(JUMP_LINE)
    for _ in range(3):
        for stamp in loop:
            _offer_until_processed(rig, stamp)
    for stamp in loop:
        assert rig.stamps("disparity").count(stamp) >= 3, stamp
    # The second and third pass each went back 0.2 s: one line per jump.
    assert node.output().count(JUMP_LINE) == jumps_before + 2, node.output()[-2000:]


@pytest.mark.parametrize("mode", list(SYNC_MODES))
def test_all_zero_stamps_are_processed_pair_by_pair(
        rigs: dict[str, StereoRig], mode: str) -> None:
    rig = rigs[mode]
    for count in range(1, 5):
        _offer_until_processed(rig, 0)
        assert rig.stamps("disparity").count(0) >= count
    rig.new_stamp()  # later tests go on from the rig's clock


def test_min_depth_above_max_depth_is_rejected_at_run_time(
        rigs: dict[str, StereoRig]) -> None:
    rig = rigs["exact"]
    assert all(result.successful for result in rig.set_parameters({"max_depth": 5.0}))
    [result] = rig.set_parameters({"min_depth": 6.0})
    assert not result.successful
    assert "min_depth (6 m) is greater than max_depth (5 m)" in result.reason
    assert rig.get_parameters(["min_depth", "max_depth"]) == [0.0, 5.0]
    assert all(result.successful for result in rig.set_parameters({"max_depth": 0.0}))
    # 0 means "no limit": any min_depth goes with it.
    assert all(result.successful for result in rig.set_parameters({"min_depth": 6.0}))
    assert all(result.successful for result in rig.set_parameters({"min_depth": 0.0}))


def test_max_input_pixels_is_a_parameter(nodes: dict[str, NodeProcess],
                                         rigs: dict[str, StereoRig]) -> None:
    node, rig = nodes["exact"], rigs["exact"]
    assert rig.get_parameters(["max_input_pixels"]) == [4096 * 3072]
    left, _right = textured_pair(shift_px=5, seed=11)
    pixels = left.shape[0] * left.shape[1]
    assert all(r.successful for r in rig.set_parameters({"max_input_pixels": pixels - 1}))
    try:
        stamp = rig.new_stamp()
        for _attempt in range(4):
            rig.publish(_pair(stamp))
            if node.wait_for_output("allowed by max_input_pixels", 10.0):
                break
        assert f"has more than the {pixels - 1} pixels allowed by max_input_pixels" in (
            node.output())
        assert stamp not in rig.stamps("disparity")
    finally:
        assert all(r.successful for r in rig.set_parameters({"max_input_pixels": pixels}))
    _offer_until_processed(rig, rig.new_stamp())


class Verdicts:
    """The node's newest /diagnostics statuses by name (``processing``, ...)."""

    def __init__(self, rig: StereoRig) -> None:
        from diagnostic_msgs.msg import DiagnosticArray

        self.rig = rig
        self.latest: dict[str, tuple[int, str, dict[str, str]]] = {}
        self._subscription = rig.node.create_subscription(
            DiagnosticArray, rig.topic("diagnostics"), self._on_diagnostics, 10)

    def _on_diagnostics(self, msg) -> None:
        with self.rig._condition:
            for status in msg.status:
                name = status.name.rsplit(": ", 1)[-1]
                self.latest[name] = (status.level[0] if isinstance(status.level, bytes)
                                     else int(status.level), status.message,
                                     {pair.key: pair.value for pair in status.values})
            self.rig._condition.notify_all()

    def close(self) -> None:
        self.rig.node.destroy_subscription(self._subscription)


def test_synchronizer_drops_are_in_the_diagnostics_count(rigs: dict[str, StereoRig]) -> None:
    """Exact sync: a set whose right half is 10 ms off never pairs; once a later pair
    goes out it is lost, and /diagnostics counts it (it said 0 before)."""
    rig = rigs["exact"]
    verdicts = Verdicts(rig)
    try:
        _offer_until_processed(rig, rig.new_stamp())
        assert rig.wait_for(lambda: "processing" in verdicts.latest, 10.0)
        before = int(verdicts.latest["processing"][2]["dropped by the synchronizer"])
        stamp = rig.new_stamp()
        pair = _pair(stamp)
        skewed = _pair(stamp + _seconds(0.010))
        rig.publish([pair.left, skewed.right, pair.left_info, skewed.right_info])
        _offer_until_processed(rig, rig.new_stamp(after_s=0.5))

        def counted() -> bool:
            values = verdicts.latest["processing"][2]
            return int(values["dropped by the synchronizer"]) > before
        assert rig.wait_for(counted, 10.0), verdicts.latest["processing"]
        values = verdicts.latest["processing"][2]
        assert int(values["frames dropped"]) >= int(values["dropped by the synchronizer"])
    finally:
        verdicts.close()


def test_idle_without_subscribers_is_not_a_warning(nodes: dict[str, NodeProcess],
                                                   rigs: dict[str, StereoRig]) -> None:
    node, rig = nodes["approximate"], rigs["approximate"]
    verdicts = Verdicts(rig)
    rig.unsubscribe(["disparity"])
    try:
        started = time.monotonic()
        while time.monotonic() - started < 8.0:  # longer than input_timeout_s (3 s)
            rig.publish(_pair(rig.new_stamp()))
            time.sleep(0.2)
        assert "no subscribers on any output: not processing" in node.output()
        assert rig.wait_for(lambda: "processing" in verdicts.latest, 5.0)
        level, message, _values = verdicts.latest["processing"]
        assert level == 0, message  # OK
        assert "idle" in message
    finally:
        verdicts.close()
        rig.subscribe("disparity")
        assert rig.wait_for(lambda: rig.matched_publishers("disparity") > 0, 10.0)


def test_images_lost_in_transport_are_diagnosed_as_such(nodes: dict[str, NodeProcess],
                                                        rigs: dict[str, StereoRig]) -> None:
    """1280x960 rgb8 pairs over the test namespace's Fast DDS defaults: camera_info gets
    through, the 3.7 MB images do not (of 640x480 ones about one in five does). Both
    ends are best effort, so /diagnostics must point at the transport (socket buffers),
    not at QoS."""
    rig = rigs["approximate"]
    verdicts = Verdicts(rig)
    try:
        left, right = textured_pair(960, 1280, shift_px=5, seed=11)
        stamps = []
        started = time.monotonic()
        while time.monotonic() - started < 6.0:  # longer than input_timeout_s (3 s)
            pair = pair_messages(left, right, rig.new_stamp())
            stamps.append(pair.stamp)
            rig.publish(pair)
            time.sleep(0.2)
        time.sleep(1.0)
        if any(stamp in rig.stamps("disparity") for stamp in stamps):
            pytest.skip("1280x960 rgb8 images get through this machine's DDS transport: "
                        "no loss to diagnose")

        def diagnosed() -> bool:
            return "sockets_size" in verdicts.latest.get("inputs", (0, "", {}))[1]
        assert rig.wait_for(diagnosed, 5.0), verdicts.latest.get("inputs")
        level, message, _values = verdicts.latest["inputs"]
        assert level == 2  # ERROR
        assert "left/image_rect stopped" in message
        assert "camera_info still arrives" in message
        assert "with compatible QoS" in message
        assert "QoS incompatible" not in message
    finally:
        verdicts.close()
