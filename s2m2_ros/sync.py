# SPDX-License-Identifier: Apache-2.0
"""Exact and approximate time synchronizers with message_filters semantics.

Used when the ``message_filters`` package is not installed. Messages are matched on
``header.stamp`` (any object with ``.header.stamp.sec`` / ``.nanosec`` works), compared
as integer nanoseconds so equal stamps are exactly equal.

When a set is emitted, the pending messages older than it are discarded (and counted
as dropped), as the C++ policies do. A message that arrives later is taken whatever
its stamp, as there: a pair is never refused for being older than the last one, so
input time that jumps back (bag loop, clock reset) and repeated stamps keep pairing.
Detecting such jumps and keeping outputs in order is the job of
:mod:`s2m2_ros.sync_stage`, in front of whichever synchronizer runs.

The callback runs with the lock held, as in message_filters, so sets are delivered
one at a time and in order; it may call ``add`` again (the lock is re-entrant).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

NANOSECONDS_PER_SECOND = 1_000_000_000


def stamp_nanoseconds(msg: Any) -> int:
    """``msg.header.stamp`` as integer nanoseconds."""
    try:
        stamp = msg.header.stamp
        return int(stamp.sec) * NANOSECONDS_PER_SECOND + int(stamp.nanosec)
    except AttributeError as error:
        raise TypeError(
            f"{type(msg).__name__} has no header.stamp.sec/nanosec to synchronize on"
        ) from error


def stamp_of(msg: Any) -> float:
    """``msg.header.stamp`` in seconds."""
    return stamp_nanoseconds(msg) / NANOSECONDS_PER_SECOND


class _Synchronizer:
    def __init__(self, num_inputs: int, queue_size: int, callback: Callable[..., Any]) -> None:
        if num_inputs < 1:
            raise ValueError(f"num_inputs must be at least 1, got {num_inputs}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        self.num_inputs = num_inputs
        self.queue_size = queue_size
        self._callback = callback
        self._lock = threading.RLock()
        self._dropped = [0] * num_inputs
        self._emitted = 0

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.num_inputs:
            raise IndexError(f"input index {index} outside 0..{self.num_inputs - 1}")

    @property
    def dropped(self) -> int:
        """Messages discarded without being part of an emitted set, all inputs."""
        with self._lock:
            return sum(self._dropped)

    @property
    def dropped_per_input(self) -> tuple[int, ...]:
        """Messages discarded without being emitted, per input."""
        with self._lock:
            return tuple(self._dropped)

    @property
    def emitted(self) -> int:
        """Number of sets delivered to the callback."""
        with self._lock:
            return self._emitted


class ExactTimeSynchronizer(_Synchronizer):
    """Emits ``callback(*msgs)`` once every input has a message with the same stamp.

    At most ``queue_size`` distinct stamps wait for completion; beyond that the
    oldest incomplete set is dropped (message_filters ExactTime). A message that
    replaces one with the same stamp on the same input drops the earlier one.
    """

    def __init__(self, num_inputs: int, queue_size: int, callback: Callable[..., Any]) -> None:
        super().__init__(num_inputs, queue_size, callback)
        self._pending: dict[int, list[Any]] = {}

    def add(self, index: int, msg: Any) -> None:
        """Offer ``msg`` on input ``index``."""
        self._check_index(index)
        stamp = stamp_nanoseconds(msg)
        with self._lock:
            slots = self._pending.setdefault(stamp, [None] * self.num_inputs)
            if slots[index] is not None:
                self._dropped[index] += 1
            slots[index] = msg
            if all(slot is not None for slot in slots):
                del self._pending[stamp]
                for older in [pending for pending in self._pending if pending < stamp]:
                    self._drop_set(older)
                self._emitted += 1
                self._callback(*slots)
                return
            while len(self._pending) > self.queue_size:
                self._drop_set(min(self._pending))

    def _drop_set(self, stamp: int) -> None:
        for index, slot in enumerate(self._pending.pop(stamp)):
            if slot is not None:
                self._dropped[index] += 1


class ApproximateTimeSynchronizer(_Synchronizer):
    """Emits ``callback(*msgs)`` for messages whose stamps span at most ``slop_s``.

    The matching is message_filters' Python ApproximateTimeSynchronizer: each input
    keeps up to ``queue_size`` messages (the oldest is dropped beyond that); when a
    message arrives, the candidates of every other input within ``slop_s`` of it are
    ordered by closeness, and the first combination (``itertools.product`` order)
    whose whole span is within ``slop_s`` is emitted. Afterwards each input loses the
    emitted message and every older one (the C++ policy's rule); later arrivals are
    taken whatever their stamp.
    """

    def __init__(
        self,
        num_inputs: int,
        queue_size: int,
        slop_s: float,
        callback: Callable[..., Any],
    ) -> None:
        super().__init__(num_inputs, queue_size, callback)
        if not slop_s >= 0.0:
            raise ValueError(f"slop_s must be non-negative, got {slop_s}")
        self.slop_s = float(slop_s)
        self._slop_ns = round(slop_s * NANOSECONDS_PER_SECOND)
        self._queues: list[dict[int, Any]] = [{} for _ in range(num_inputs)]

    def add(self, index: int, msg: Any) -> None:
        """Offer ``msg`` on input ``index``."""
        self._check_index(index)
        stamp = stamp_nanoseconds(msg)
        with self._lock:
            queue = self._queues[index]
            if stamp in queue:
                self._dropped[index] += 1
            queue[stamp] = msg
            while len(queue) > self.queue_size:
                del queue[min(queue)]
                self._dropped[index] += 1
            if stamp not in queue:
                return  # it was itself the oldest and fell out of a full queue
            match = self._find_match(index, stamp)
            if match is None:
                return
            messages = []
            for other, (other_queue, other_stamp) in enumerate(
                zip(self._queues, match, strict=True)
            ):
                messages.append(other_queue.pop(other_stamp))
                for older in [pending for pending in other_queue if pending < other_stamp]:
                    del other_queue[older]
                    self._dropped[other] += 1
            self._emitted += 1
            self._callback(*messages)

    def _find_match(self, index: int, stamp: int) -> list[int] | None:
        candidates: list[list[int]] = []
        for other, queue in enumerate(self._queues):
            if other == index:
                continue
            close = sorted(
                (pending for pending in queue if abs(pending - stamp) <= self._slop_ns),
                key=lambda pending: abs(pending - stamp),
            )
            if not close:
                return None
            candidates.append(close)
        for combination in itertools.product(*candidates):
            stamps = list(combination)
            stamps.insert(index, stamp)
            if max(stamps) - min(stamps) <= self._slop_ns:
                return stamps
        return None
