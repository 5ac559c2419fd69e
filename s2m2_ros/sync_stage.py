# SPDX-License-Identifier: Apache-2.0
"""A front stage around the input synchronizer: drop counting and time jumps that do
not depend on which synchronizer runs (message_filters or :mod:`s2m2_ros.sync`).

The stage sees every input message before the synchronizer and every set it emits.
It keeps its own ledger of the messages the synchronizer may still emit, one per
stamp and input (both synchronizers key their queues by stamp), so it can tell:

* which messages were lost: replaced by a message with the same stamp, pushed out of
  a full queue (``queue_size`` per input, as message_filters' Python queues), older
  than a message of the same input that went out in a set (the C++ policies discard
  those), or pending when the synchronizer was reset;
* that input time jumped back: a message older than the previous one of its input
  (a bag played with ``--loop``, a simulator or ``/clock`` reset, a restarted
  driver). One topic comes from one publisher, in order, so its stamps never
  decrease otherwise. The stage then replaces the synchronizer with a fresh one (the
  old one would hold the newest stamps and, in message_filters' Python version,
  evict the new, older ones first) and reports the jump once.

After a jump, a message on another input that still belongs to the old time (its
stamp is nearer to the old stamps than to the new ones) is dropped rather than
taken for a second jump. A set the synchronizer emits with a message the ledger
already gave up (message_filters' Python synchronizers keep older messages) is not
delivered, so outputs never go back in time within one run of input time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .sync import (
    NANOSECONDS_PER_SECOND,
    ApproximateTimeSynchronizer,
    ExactTimeSynchronizer,
    stamp_nanoseconds,
)


@dataclass(frozen=True)
class TimeJump:
    """Input time went back on ``input_index`` from ``from_s`` to ``to_s``."""

    input_index: int
    from_s: float
    to_s: float

    @property
    def size_s(self) -> float:
        return self.from_s - self.to_s


class InputPort:
    """One synchronizer input with message_filters' filter interface
    (``registerCallback`` / ``signalMessage``), fed by the stage."""

    def __init__(self) -> None:
        self._callbacks: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def registerCallback(self, callback: Callable[..., Any], *args: Any) -> int:  # noqa: N802
        self._callbacks.append((callback, args))
        return len(self._callbacks) - 1

    def signalMessage(self, msg: Any) -> None:  # noqa: N802
        for callback, args in self._callbacks:
            callback(msg, *args)


# Builds a synchronizer that reads ``ports`` and calls ``callback(*msgs)`` per set.
SynchronizerFactory = Callable[[Sequence[InputPort], Callable[..., None]], Any]


def synchronizer_factory(*, approximate: bool, queue_size: int, tolerance_s: float,
                         message_filters: Any = None) -> SynchronizerFactory:
    """A factory for message_filters' synchronizers when that module is given, else for
    the ones in :mod:`s2m2_ros.sync`."""

    def build(ports: Sequence[InputPort], callback: Callable[..., None]) -> Any:
        if message_filters is not None:
            if approximate:
                sync = message_filters.ApproximateTimeSynchronizer(list(ports), queue_size,
                                                                   tolerance_s)
            else:
                sync = message_filters.TimeSynchronizer(list(ports), queue_size)
            sync.registerCallback(callback)
            return sync
        if approximate:
            sync = ApproximateTimeSynchronizer(len(ports), queue_size, tolerance_s, callback)
        else:
            sync = ExactTimeSynchronizer(len(ports), queue_size, callback)
        for index, port in enumerate(ports):
            port.registerCallback(lambda msg, index=index: sync.add(index, msg))
        return sync

    return build


class SynchronizerStage:
    """Feeds ``num_inputs`` inputs into a synchronizer from ``make_synchronizer``.

    ``on_set(*msgs)`` gets every delivered set; ``on_jump(jump)`` is called once per
    backward jump, after the reset and before the message that revealed it goes on;
    ``on_drop(pairs_dropped)`` whenever the drop count grows. All run with the
    stage's lock held, on the thread that called :meth:`add`.
    """

    def __init__(self, num_inputs: int, queue_size: int,
                 make_synchronizer: SynchronizerFactory, on_set: Callable[..., None], *,
                 on_jump: Callable[[TimeJump], None] | None = None,
                 on_drop: Callable[[int], None] | None = None) -> None:
        if num_inputs < 1 or queue_size < 1:
            raise ValueError("num_inputs and queue_size must be at least 1")
        self.num_inputs = num_inputs
        self.queue_size = queue_size
        self._make_synchronizer = make_synchronizer
        self._on_set = on_set
        self._on_jump = on_jump
        self._on_drop = on_drop
        self._lock = threading.RLock()
        self._pending: list[dict[int, Any]] = [{} for _ in range(num_inputs)]
        self._last_stamp: list[int | None] = [None] * num_inputs
        self._old_time_above: list[int | None] = [None] * num_inputs
        self._dropped = [0] * num_inputs
        self.sets_delivered = 0
        self.jumps = 0
        self._ports: list[InputPort] = []
        self.synchronizer: Any = None
        self._new_synchronizer()

    def _new_synchronizer(self) -> None:
        self._ports = [InputPort() for _ in range(self.num_inputs)]
        self.synchronizer = self._make_synchronizer(self._ports, self._emitted)

    @property
    def dropped_per_input(self) -> tuple[int, ...]:
        """Messages lost without being delivered in a set, per input."""
        with self._lock:
            return tuple(self._dropped)

    @property
    def pairs_dropped(self) -> int:
        """Sets lost: a lost set costs one message on each input that had one, so the
        input with the most losses counts them."""
        with self._lock:
            return max(self._dropped)

    def add(self, index: int, msg: Any) -> None:
        """Offer ``msg`` on input ``index``."""
        if not 0 <= index < self.num_inputs:
            raise IndexError(f"input index {index} outside 0..{self.num_inputs - 1}")
        stamp = stamp_nanoseconds(msg)
        with self._lock:
            dropped_before = max(self._dropped)
            old_time_above = self._old_time_above[index]
            if old_time_above is not None:
                if stamp > old_time_above:  # sent before the jump, arriving after it
                    self._dropped[index] += 1
                    self._report_drops(dropped_before)
                    return
                self._old_time_above[index] = None
            last = self._last_stamp[index]
            if last is not None and stamp < last:
                self._reset(index, stamp)
            self._last_stamp[index] = stamp
            pending = self._pending[index]
            if stamp in pending:  # both synchronizers keep one message per stamp
                self._dropped[index] += 1
            pending[stamp] = msg
            while len(pending) > self.queue_size:
                del pending[min(pending)]
                self._dropped[index] += 1
            self._report_drops(dropped_before)
            self._ports[index].signalMessage(msg)

    def _reset(self, index: int, stamp: int) -> None:
        newest = max(s for s in self._last_stamp if s is not None)
        jump = TimeJump(index, self._last_stamp[index] / NANOSECONDS_PER_SECOND,
                        stamp / NANOSECONDS_PER_SECOND)
        for other, pending in enumerate(self._pending):
            self._dropped[other] += len(pending)
            pending.clear()
            self._last_stamp[other] = None
            # Until this input shows the new time, stamps nearer the old time are old.
            self._old_time_above[other] = None if other == index else (newest + stamp) // 2
        self._new_synchronizer()
        self.jumps += 1
        if self._on_jump is not None:
            self._on_jump(jump)

    def _emitted(self, *msgs: Any) -> None:
        with self._lock:
            dropped_before = max(self._dropped)
            taken = []  # inputs whose message in this set was still pending
            for index, msg in enumerate(msgs):
                stamp = stamp_nanoseconds(msg)
                pending = self._pending[index]
                if pending.get(stamp) is msg:
                    del pending[stamp]
                    taken.append(index)
                for older in [s for s in pending if s < stamp]:
                    del pending[older]
                    self._dropped[index] += 1
            fresh = len(taken) == len(msgs)
            if not fresh:  # part of it was given up already: the rest is lost with it
                for index in taken:
                    self._dropped[index] += 1
            self._report_drops(dropped_before)
            if fresh:
                self.sets_delivered += 1
                self._on_set(*msgs)

    def _report_drops(self, dropped_before: int) -> None:
        if self._on_drop is not None and max(self._dropped) > dropped_before:
            self._on_drop(max(self._dropped))
