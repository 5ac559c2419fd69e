# SPDX-License-Identifier: Apache-2.0
"""The synchronizer front stage: time jumps, repeated stamps and drop counting, the
same with s2m2_ros.sync and with message_filters (where that is installed).

Expected sets and counts are worked out by hand from the message sequences.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

Time = pytest.importorskip("builtin_interfaces.msg").Time
Header = pytest.importorskip("std_msgs.msg").Header

from s2m2_ros.sync_stage import SynchronizerStage, TimeJump, synchronizer_factory  # noqa: E402

try:
    import message_filters
except ImportError:
    message_filters = None

SYNCHRONIZERS = [
    pytest.param(None, id="s2m2_ros.sync"),
    pytest.param("message_filters", id="message_filters", marks=pytest.mark.skipif(
        message_filters is None, reason="message_filters is not installed (full ROS only)")),
]


@dataclass
class Message:
    name: str
    header: Any


def msg(name: str, milliseconds: int) -> Message:
    return Message(name, Header(stamp=Time(sec=milliseconds // 1000,
                                           nanosec=milliseconds % 1000 * 1_000_000)))


class Run:
    """A stage over 2 inputs (left, right) that records sets, jumps and drop counts."""

    def __init__(self, which: str | None, *, approximate: bool = False,
                 tolerance_s: float = 0.010, queue_size: int = 5) -> None:
        self.sets: list[tuple[str, ...]] = []
        self.jumps: list[TimeJump] = []
        self.drop_reports: list[int] = []
        factory = synchronizer_factory(
            approximate=approximate, queue_size=queue_size, tolerance_s=tolerance_s,
            message_filters=message_filters if which else None)
        self.stage = SynchronizerStage(
            2, queue_size, factory, lambda *m: self.sets.append(tuple(x.name for x in m)),
            on_jump=self.jumps.append, on_drop=self.drop_reports.append)

    def pair(self, name: str, milliseconds: int, right_ms: int | None = None) -> None:
        self.stage.add(0, msg(f"L{name}", milliseconds))
        self.stage.add(1, msg(f"R{name}", milliseconds if right_ms is None else right_ms))


@pytest.mark.parametrize("which", SYNCHRONIZERS)
@pytest.mark.parametrize("approximate", [False, True], ids=["exact", "approximate"])
def test_a_jump_back_resets_once_and_the_first_pair_after_it_goes_out(which, approximate):
    run = Run(which, approximate=approximate)
    for index in range(3):
        run.pair(f"old{index}", 100_000 + 100 * index)
    run.stage.add(0, msg("Lstray", 100_300))  # its right image never comes
    run.pair("new0", 40_000)  # 60.3 s back
    run.pair("new1", 40_100)
    assert run.sets == [("Lold0", "Rold0"), ("Lold1", "Rold1"), ("Lold2", "Rold2"),
                        ("Lnew0", "Rnew0"), ("Lnew1", "Rnew1")]
    assert len(run.jumps) == 1
    assert run.jumps[0].size_s == pytest.approx(60.3)
    assert run.jumps[0].input_index == 0
    assert run.stage.pairs_dropped == 1  # the stray left image, pending at the reset
    assert run.drop_reports == [1]


@pytest.mark.parametrize("which", SYNCHRONIZERS)
@pytest.mark.parametrize("approximate", [False, True], ids=["exact", "approximate"])
def test_a_bag_loop_replays_every_pair_and_reports_each_loop(which, approximate):
    run = Run(which, approximate=approximate)
    stamps = [5_000 + 100 * index for index in range(4)]
    for loop in range(3):
        for stamp in stamps:
            run.pair(f"{loop}:{stamp}", stamp)
    assert run.sets == [(f"L{loop}:{stamp}", f"R{loop}:{stamp}")
                        for loop in range(3) for stamp in stamps]
    assert [round(jump.size_s, 3) for jump in run.jumps] == [0.3, 0.3]
    assert run.stage.pairs_dropped == 0


@pytest.mark.parametrize("which", SYNCHRONIZERS)
@pytest.mark.parametrize("approximate", [False, True], ids=["exact", "approximate"])
def test_all_zero_stamps_are_paired_one_by_one(which, approximate):
    run = Run(which, approximate=approximate)
    for index in range(6):
        run.pair(str(index), 0)
    assert run.sets == [(f"L{index}", f"R{index}") for index in range(6)]
    assert run.jumps == []
    assert run.stage.pairs_dropped == 0


@pytest.mark.parametrize("which", SYNCHRONIZERS)
def test_a_message_from_before_the_jump_is_dropped_not_a_second_jump(which):
    run = Run(which)
    run.pair("old", 100_000)
    run.stage.add(0, msg("Lold+", 100_100))
    run.stage.add(0, msg("Lnew", 40_000))  # the jump shows on the left first
    run.stage.add(1, msg("Rold+", 100_100))  # sent before the jump, arrives after it
    run.stage.add(1, msg("Rnew", 40_000))
    run.pair("next", 40_100)
    assert run.sets == [("Lold", "Rold"), ("Lnew", "Rnew"), ("Lnext", "Rnext")]
    assert len(run.jumps) == 1
    assert run.stage.dropped_per_input == (1, 1)  # Lold+ at the reset, Rold+ as stale


@pytest.mark.parametrize("which", SYNCHRONIZERS)
def test_an_unpaired_stamp_counts_as_dropped_once_a_later_pair_goes_out(which):
    run = Run(which)
    run.pair("a", 1_000, right_ms=1_010)  # exact: 10 ms apart never pair
    assert run.sets == []
    assert run.stage.pairs_dropped == 0  # they might still pair
    run.pair("b", 1_100)
    assert run.sets == [("Lb", "Rb")]
    assert run.stage.dropped_per_input == (1, 1)
    assert run.stage.pairs_dropped == 1


@pytest.mark.parametrize("which", SYNCHRONIZERS)
def test_queue_overflow_counts_the_oldest(which):
    run = Run(which, queue_size=2)
    for stamp in (100, 200, 300):
        run.stage.add(0, msg(f"L{stamp}", stamp))
    assert run.stage.dropped_per_input == (1, 0)
    run.stage.add(1, msg("R300", 300))
    assert run.sets == [("L300", "R300")]
    assert run.stage.dropped_per_input == (2, 0)


@pytest.mark.parametrize("which", SYNCHRONIZERS)
def test_a_set_older_than_one_delivered_is_never_delivered(which):
    """message_filters' Python ApproximateTimeSynchronizer keeps L100 after (L300, R290)
    went out and would pair it with R320; s2m2_ros.sync discarded it. Through the
    stage both deliver the same sets and count the same lost pairs."""
    run = Run(which, approximate=True, tolerance_s=0.25)
    run.stage.add(0, msg("L100", 100))
    run.stage.add(0, msg("L300", 300))
    run.stage.add(1, msg("R290", 290))
    run.stage.add(1, msg("R320", 320))
    assert run.sets == [("L300", "R290")]
    assert run.stage.pairs_dropped == 1
    assert run.jumps == []


def test_a_second_message_with_the_same_stamp_replaces_the_first():
    run = Run(None)
    run.stage.add(0, msg("L first", 0))
    run.stage.add(0, msg("L second", 0))
    run.stage.add(1, msg("R", 0))
    assert run.sets == [("L second", "R")]
    assert run.stage.dropped_per_input == (1, 0)


def test_bad_arguments():
    factory = synchronizer_factory(approximate=False, queue_size=1, tolerance_s=0.0)
    with pytest.raises(ValueError):
        SynchronizerStage(2, 0, factory, print)
    with pytest.raises(IndexError):
        SynchronizerStage(2, 1, factory, print).add(2, msg("x", 1))
