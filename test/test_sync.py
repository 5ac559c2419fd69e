# SPDX-License-Identifier: Apache-2.0
"""Exact and approximate synchronizers with plain stamped objects."""

import threading
from dataclasses import dataclass, field

import pytest

from s2m2_ros.sync import ApproximateTimeSynchronizer, ExactTimeSynchronizer, stamp_of


@dataclass
class Stamp:
    sec: int
    nanosec: int


@dataclass
class Header:
    stamp: Stamp


@dataclass
class Message:
    name: str
    header: Header = field(default_factory=lambda: Header(Stamp(0, 0)))


def msg(name: str, milliseconds: int) -> Message:
    return Message(name, Header(Stamp(milliseconds // 1000, milliseconds % 1000 * 1_000_000)))


class Recorder:
    def __init__(self):
        self.sets = []

    def __call__(self, *messages):
        self.sets.append(tuple(m.name for m in messages))


def test_stamp_of_reads_seconds_and_nanoseconds():
    assert stamp_of(Message("a", Header(Stamp(12, 500_000_000)))) == 12.5
    with pytest.raises(TypeError, match="header.stamp"):
        stamp_of(object())


def test_exact_emits_once_all_inputs_share_a_stamp():
    recorder = Recorder()
    sync = ExactTimeSynchronizer(3, 5, recorder)
    sync.add(0, msg("L1", 100))
    sync.add(1, msg("R1", 100))
    assert recorder.sets == []
    sync.add(2, msg("I1", 101))  # 1 ms off: not the same stamp
    assert recorder.sets == []
    sync.add(2, msg("I1'", 100))
    assert recorder.sets == [("L1", "R1", "I1'")]
    assert sync.emitted == 1


def test_exact_out_of_order_arrival_and_older_sets_dropped():
    recorder = Recorder()
    sync = ExactTimeSynchronizer(2, 10, recorder)
    sync.add(1, msg("R2", 200))
    sync.add(0, msg("L1", 100))
    sync.add(0, msg("L2", 200))  # completes 200 before 100 is complete
    assert recorder.sets == [("L2", "R2")]
    assert sync.dropped_per_input == (1, 0)  # L1 can no longer be emitted in order
    sync.add(1, msg("R1", 100))  # late: taken, but its partner is gone
    assert recorder.sets == [("L2", "R2")]
    assert sync.dropped_per_input == (1, 0)
    sync.add(1, msg("R3", 300))
    sync.add(0, msg("L3", 300))
    assert recorder.sets == [("L2", "R2"), ("L3", "R3")]
    assert sync.dropped_per_input == (1, 1)  # R1 went with the older pending sets


def test_exact_queue_overflow_drops_the_oldest_stamp():
    recorder = Recorder()
    sync = ExactTimeSynchronizer(2, 2, recorder)
    for stamp in (100, 200, 300):
        sync.add(0, msg(f"L{stamp}", stamp))
    assert sync.dropped == 1
    sync.add(1, msg("R100", 100))  # its partner was dropped: a new lone stamp
    assert recorder.sets == []
    sync.add(1, msg("R200", 200))
    # 100 came back as a new incomplete set and overflowed again; 200 completes.
    assert recorder.sets == [("L200", "R200")]
    sync.add(1, msg("R300", 300))
    assert recorder.sets == [("L200", "R200"), ("L300", "R300")]


def test_exact_repeated_stamps_pair_set_by_set():
    """A driver that stamps every frame 0: each complete set goes out (C++ ExactTime)."""
    recorder = Recorder()
    sync = ExactTimeSynchronizer(2, 5, recorder)
    sync.add(0, msg("L", 0))
    sync.add(1, msg("R", 0))
    sync.add(1, msg("R again", 0))
    sync.add(0, msg("L again", 0))
    sync.add(0, msg("L replaced", 0))  # no partner yet: it replaces nothing
    sync.add(0, msg("L newest", 0))  # replaces "L replaced" (one message per stamp)
    sync.add(1, msg("R newest", 0))
    assert recorder.sets == [("L", "R"), ("L again", "R again"), ("L newest", "R newest")]
    assert sync.dropped_per_input == (1, 0)


@pytest.mark.parametrize("approximate", [False, True])
def test_a_pair_older_than_the_last_one_is_not_refused(approximate: bool):
    """Input time going back (bag loop, clock reset): pairing goes on at once."""
    recorder = Recorder()
    sync = (ApproximateTimeSynchronizer(2, 5, 0.010, recorder) if approximate
            else ExactTimeSynchronizer(2, 5, recorder))
    for stamp in (60_000, 60_100):
        sync.add(0, msg(f"L{stamp}", stamp))
        sync.add(1, msg(f"R{stamp}", stamp))
    sync.add(0, msg("L0", 0))
    sync.add(1, msg("R0", 0))
    assert recorder.sets == [("L60000", "R60000"), ("L60100", "R60100"), ("L0", "R0")]
    assert sync.dropped == 0


def test_approximate_matches_within_slop_only():
    recorder = Recorder()
    sync = ApproximateTimeSynchronizer(2, 10, 0.010, recorder)
    sync.add(0, msg("L1", 1000))
    sync.add(1, msg("R far", 1025))  # 25 ms > 10 ms slop
    assert recorder.sets == []
    sync.add(1, msg("R1", 1008))
    assert recorder.sets == [("L1", "R1")]
    sync.add(0, msg("L2", 1030))  # 5 ms from "R far"
    assert recorder.sets == [("L1", "R1"), ("L2", "R far")]


def test_approximate_slop_boundary_is_inclusive():
    recorder = Recorder()
    sync = ApproximateTimeSynchronizer(2, 10, 0.010, recorder)
    sync.add(0, msg("L", 1000))
    sync.add(1, msg("R", 1010))
    assert recorder.sets == [("L", "R")]


def test_approximate_picks_the_closest_and_drops_older():
    recorder = Recorder()
    sync = ApproximateTimeSynchronizer(3, 10, 0.020, recorder)
    sync.add(1, msg("R a", 990))
    sync.add(1, msg("R b", 1004))
    sync.add(2, msg("I a", 985))
    sync.add(2, msg("I b", 1001))
    sync.add(0, msg("L", 1000))
    assert recorder.sets == [("L", "R b", "I b")]
    # R a and I a are older than what was emitted on their inputs: discarded.
    assert sync.dropped_per_input == (0, 1, 1)
    sync.add(1, msg("R late", 995))  # taken; lost when a newer set goes out
    assert sync.dropped_per_input == (0, 1, 1)
    sync.add(0, msg("L2", 1100))
    sync.add(1, msg("R2", 1100))
    sync.add(2, msg("I2", 1100))
    assert recorder.sets == [("L", "R b", "I b"), ("L2", "R2", "I2")]
    assert sync.dropped_per_input == (0, 2, 1)


def test_approximate_whole_set_must_fit_in_slop():
    recorder = Recorder()
    sync = ApproximateTimeSynchronizer(3, 10, 0.010, recorder)
    sync.add(1, msg("R", 992))  # 8 ms before L
    sync.add(2, msg("I", 1008))  # 8 ms after L: span 16 ms > slop
    sync.add(0, msg("L", 1000))
    assert recorder.sets == []
    sync.add(2, msg("I close", 999))
    assert recorder.sets == [("L", "R", "I close")]


def test_approximate_queue_overflow_and_a_late_message():
    recorder = Recorder()
    sync = ApproximateTimeSynchronizer(2, 2, 0.005, recorder)
    for stamp in (100, 200, 300):
        sync.add(0, msg(f"L{stamp}", stamp))
    assert sync.dropped_per_input == (1, 0)
    sync.add(1, msg("R100", 101))  # L100 is gone
    assert recorder.sets == []
    sync.add(1, msg("R200", 201))
    sync.add(1, msg("R200 again", 202))  # L200 already used: waits, no partner
    assert recorder.sets == [("L200", "R200")]
    sync.add(1, msg("R300", 299))
    assert recorder.sets == [("L200", "R200"), ("L300", "R300")]
    assert sync.emitted == 2
    assert sync.dropped_per_input == (1, 2)  # L100; R100 and "R200 again"


def test_threads_see_every_pair_exactly_once():
    recorder = Recorder()
    sync = ExactTimeSynchronizer(2, 1000, recorder)

    def feed(index: int) -> None:
        for stamp in range(1, 501):
            sync.add(index, msg(f"{index}:{stamp}", stamp))

    threads = [threading.Thread(target=feed, args=(index,)) for index in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # A set that goes out discards older incomplete ones, but every message is either
    # emitted once or counted as dropped (the last stamp completes and clears the rest).
    emitted = [int(names[0].split(":")[1]) for names in recorder.sets]
    assert emitted == sorted(set(emitted))
    assert all(names == (f"0:{stamp}", f"1:{stamp}")
               for names, stamp in zip(recorder.sets, emitted, strict=True))
    assert 2 * len(emitted) + sync.dropped == 1000
    assert emitted


def test_bad_arguments():
    with pytest.raises(ValueError):
        ExactTimeSynchronizer(0, 5, print)
    with pytest.raises(ValueError):
        ApproximateTimeSynchronizer(2, 0, 0.1, print)
    with pytest.raises(ValueError):
        ApproximateTimeSynchronizer(2, 5, -0.1, print)
    with pytest.raises(IndexError):
        ExactTimeSynchronizer(2, 5, print).add(2, msg("x", 1))
