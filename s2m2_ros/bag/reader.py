# SPDX-License-Identifier: Apache-2.0
"""Reading a rosbag2 bag and pairing its stereo messages as the node does.

Messages of the four input topics become rclpy messages by deserialising the bag's CDR
bytes with ``rclpy.serialization`` (no ROS context or participant is needed for that)
and go through the node's synchronizer, offered in the bag's log-time order as a
subscription would have received them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo, Image

from s2m2_ros.bag.topics import BagError, StereoTopics
from s2m2_ros.pipeline import StereoMessages
from s2m2_ros.sync import ApproximateTimeSynchronizer, ExactTimeSynchronizer, stamp_nanoseconds

_INPUT_CLASSES = (Image, Image, CameraInfo, CameraInfo)
NO_BOUND_S = 1e9  # approximate sync with tolerance 0: no bound, as the node


class InputBag:
    """A rosbag2 bag (its folder, or a bare .mcap or .db3 file) open for reading; a
    context manager."""

    def __init__(self, path: str | Path) -> None:
        from rosbags.rosbag2 import Reader

        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"cannot read bag {self.path}: no such file or directory")
        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except Exception as error:  # rosbags raises several types: all mean unreadable
            reason = str(error).strip().splitlines()[0] if str(error).strip() else \
                type(error).__name__
            raise BagError(f"cannot read bag {self.path}: {reason}") from None
        self.connections = list(self._reader.connections)

    def __enter__(self) -> InputBag:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._reader.close()

    @property
    def storage(self) -> str:
        """``"mcap"`` or ``"sqlite3"``: the storage of the bag's files."""
        names = [path.name for path in self.path.iterdir()] if self.path.is_dir() else \
            [self.path.name]
        return "mcap" if any(".mcap" in name for name in names) else "sqlite3"

    @property
    def custom_data(self) -> dict[str, str]:
        """metadata.yaml's custom_data (none for a bare storage file)."""
        metadata = getattr(self._reader.storage, "metadata", None)
        return dict(getattr(metadata, "custom", None) or {})

    def topic_types(self) -> dict[str, str]:
        """Topic → message type name."""
        return {connection.topic: connection.msgtype for connection in self.connections}

    def message_count(self, topic: str) -> int:
        return sum(c.msgcount for c in self.connections if c.topic == topic)

    def messages(self, topics: set[str] | None = None) -> Iterator[tuple[Any, int, bytes]]:
        """(connection, log time in ns, CDR bytes) in log-time order (all, or ``topics``)."""
        connections = [c for c in self.connections if topics is None or c.topic in topics]
        if not connections:
            return
        for connection, log_time, raw in self._reader.messages(connections=connections):
            yield connection, int(log_time), raw


@dataclass
class StereoFrame:
    """One synchronised set of input messages, and when its left image was logged."""

    messages: StereoMessages
    log_time_ns: int

    @property
    def stamp_ns(self) -> int:
        return stamp_nanoseconds(self.messages[0])


class _Logged:
    """A message with its log time, as the synchronizer sees it (it reads ``header``)."""

    __slots__ = ("log_time_ns", "msg")

    def __init__(self, msg: Any, log_time_ns: int) -> None:
        self.msg = msg
        self.log_time_ns = log_time_ns

    @property
    def header(self) -> Any:
        return self.msg.header


class FramePairer:
    """The four input topics through the node's synchronizer; complete sets pile up in
    :attr:`ready` until taken.

    ``queue_size`` is the node's parameter, but offline nothing arrives late, so a bag
    recorded from a working camera pairs fully with the default of 100.
    """

    def __init__(self, topics: StereoTopics, approximate: bool = False,
                 tolerance_s: float = 0.0, queue_size: int = 100) -> None:
        self._index = {topic: index for index, topic in enumerate(topics.inputs)}
        if approximate:
            self._sync: Any = ApproximateTimeSynchronizer(
                4, queue_size, tolerance_s or NO_BOUND_S, self._on_set)
        else:
            self._sync = ExactTimeSynchronizer(4, queue_size, self._on_set)
        self.ready: list[StereoFrame] = []
        self.undecodable = 0  # messages whose bytes were not a valid message of the type
        self._left_images = 0
        self._paired = 0

    @property
    def topics(self) -> set[str]:
        return set(self._index)

    def offer(self, topic: str, raw: bytes, log_time_ns: int) -> None:
        """Deserialise and synchronise a message; other topics are ignored."""
        index = self._index.get(topic)
        if index is None:
            return
        try:
            msg = deserialize_message(bytes(raw), _INPUT_CLASSES[index])
        except Exception:  # rclpy raises a bare RuntimeError-like error on bad CDR
            self.undecodable += 1
            return
        self._left_images += index == 0
        self._sync.add(index, _Logged(msg, log_time_ns))

    def _on_set(self, *logged: _Logged) -> None:
        left, right, left_info, right_info = (item.msg for item in logged)
        self._paired += 1
        self.ready.append(StereoFrame((left, right, left_info, right_info),
                                      logged[0].log_time_ns))

    def take(self, count: int | None = None) -> list[StereoFrame]:
        """Remove and return the oldest ``count`` ready frames (all without a count)."""
        count = len(self.ready) if count is None else count
        taken, self.ready = self.ready[:count], self.ready[count:]
        return taken

    @property
    def unpaired(self) -> int:
        """Left images not (yet) part of a complete set."""
        return self._left_images - self._paired
