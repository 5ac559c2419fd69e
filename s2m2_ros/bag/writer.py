# SPDX-License-Identifier: Apache-2.0
"""Writing the output bag, and taking over the finished frames of an interrupted one.

rosbags writes ``metadata.yaml`` (and, for MCAP, the file's summary) only when a bag is
closed, so a bag is readable once :meth:`OutputBag.close` ran: the runner makes sure it
does on Ctrl-C. ``--resume`` cannot append to a closed bag; it moves the old one aside,
copies its finished frames into a new bag and processes only the rest.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from rclpy.serialization import deserialize_message, serialize_message

from s2m2_ros.bag.reader import InputBag
from s2m2_ros.bag.topics import OUTPUT_CLASSES, BagError
from s2m2_ros.sync import stamp_nanoseconds

BAG_VERSION = 8  # rosbag2 metadata version 8: read by Iron and later
STORAGES = ("mcap", "sqlite3")
CUSTOM_OUTPUTS = "s2m2_bag.outputs"  # custom_data key: the output topics, comma-separated
_BAG_MARKERS = ("metadata.yaml", ".mcap", ".db3")


def _output_typestore() -> Any:
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)  # the message definitions rclpy here uses


class OutputBag:
    """A new rosbag2 bag: the outputs under their topics, input messages copied as-is."""

    def __init__(self, path: Path, storage: str, outputs: Mapping[str, tuple[str, str]]) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        if storage not in STORAGES:
            raise BagError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self.path = path
        self._writer = Writer(path, version=BAG_VERSION, storage_plugin=plugin)
        try:
            self._writer.open()
        except Exception as error:
            raise BagError(f"cannot write bag {path}: {error}") from None
        self._typestore = _output_typestore()
        self._outputs = {key: self._writer.add_connection(topic, kind, typestore=self._typestore)
                         for key, (topic, kind) in outputs.items()}
        self._by_topic = {connection.topic: connection for connection in self._outputs.values()}
        self._copies: dict[tuple[str, str], Any] = {}
        self._writer.set_custom_data(CUSTOM_OUTPUTS, ",".join(sorted(self._by_topic)))
        self.skipped_topics: list[str] = []

    def copy_connection(self, connection: Any) -> Any | None:
        """An output connection for an input one (same topic, type, definition and QoS);
        None where the type's definition is in neither the bag nor rosbags' Kilted types."""
        key = (connection.topic, connection.msgtype)
        if key in self._copies:
            return self._copies[key]
        msgdef, digest = connection.msgdef.data, connection.digest
        if not msgdef or not digest:  # older bags store neither: use the known definitions
            try:
                msgdef, _ = self._typestore.generate_msgdef(connection.msgtype, ros_version=2)
                digest = self._typestore.hash_rihs01(connection.msgtype)
            except Exception:
                self.skipped_topics.append(connection.topic)
                self._copies[key] = None
                return None
        ext = connection.ext
        self._copies[key] = self._writer.add_connection(
            connection.topic, connection.msgtype, msgdef=msgdef, rihs01=digest,
            serialization_format=getattr(ext, "serialization_format", "cdr"),
            offered_qos_profiles=getattr(ext, "offered_qos_profiles", ()))
        return self._copies[key]

    def write_copy(self, connection: Any, log_time_ns: int, raw: bytes) -> None:
        """Write an input message unchanged (nothing where its type could not be copied)."""
        target = self.copy_connection(connection)
        if target is not None:
            self._writer.write(target, log_time_ns, raw)

    def write_frame(self, messages: Mapping[str, object], log_time_ns: int) -> None:
        """One frame's output messages (keys as in OUTPUT_TOPICS) at one log time."""
        for key, message in messages.items():
            self._writer.write(self._outputs[key], log_time_ns, serialize_message(message))

    def write_raw(self, topic: str, log_time_ns: int, raw: bytes) -> None:
        """An output message taken over from an earlier run, as CDR bytes."""
        self._writer.write(self._by_topic[topic], log_time_ns, raw)

    def set_custom_data(self, key: str, value: str) -> None:
        """A note in metadata.yaml's custom_data (what was run on what)."""
        self._writer.set_custom_data(key, value)

    def close(self) -> None:
        """Finish the bag (index, summary, metadata.yaml): only then is it readable."""
        self._writer.close()

    def abort(self) -> None:
        """Stop writing without finishing: the folder is left without metadata.yaml."""
        self._writer.abort()


def looks_like_bag(path: Path) -> bool:
    """Whether ``path`` is an empty folder or one that holds bag files (safe to replace)."""
    if not path.is_dir():
        return False
    return all(any(marker in entry.name for marker in _BAG_MARKERS) for entry in path.iterdir())


def resume_backup(output: Path) -> Path:
    """Where ``--resume`` keeps the interrupted bag while it writes the new one."""
    return output.with_name(f".{output.name}.resume")


def check_output(output: Path, resume: bool, overwrite: bool) -> None:
    """BagError unless :func:`claim_output` may go ahead; changes nothing."""
    if resume:
        if (output / "metadata.yaml").is_file() or not output.exists():
            return
        if resume_backup(output).is_dir():
            if not looks_like_bag(output):
                raise BagError(f"{output} exists and is not a bag: not replacing it")
            return
        raise BagError(f"{output} is not a finished bag (no metadata.yaml): its run did "
                       "not stop cleanly; use --overwrite to start again")
    if output.exists() or output.is_symlink():
        if not overwrite:
            raise BagError(f"{output} exists: use --resume to continue it or --overwrite to "
                           "replace it")
        if not looks_like_bag(output):
            raise BagError(f"{output} exists and is not a bag: not replacing it")


def claim_output(output: Path, resume: bool, overwrite: bool) -> Path | None:
    """Make ``output`` free for a new bag; return an earlier run's bag to resume from.

    Existing output: an error, unless ``overwrite`` (removed, if it looks like a bag) or
    ``resume`` (moved aside to :func:`resume_backup`). A backup left by a resume that did
    not finish is used when ``output`` itself was never closed.
    """
    check_output(output, resume, overwrite)
    backup = resume_backup(output)
    if resume:
        if (output / "metadata.yaml").is_file():
            if backup.exists():
                shutil.rmtree(backup)  # an older backup; output is the newer, closed bag
            output.rename(backup)
            return backup
        if backup.is_dir():
            if output.exists():
                shutil.rmtree(output)  # the unfinished copy of an interrupted resume
            return backup
        return None
    if output.exists() or output.is_symlink():
        shutil.rmtree(output)
    if backup.exists():
        shutil.rmtree(backup)
    return None


def resume_source(output: Path) -> Path | None:
    """The closed bag an earlier run left for ``output``: itself, or the backup of a
    resume that was cut off before it closed; None when there is none."""
    for candidate in (output, resume_backup(output)):
        if (candidate / "metadata.yaml").is_file():
            return candidate
    return None


def _frame_messages(bag: InputBag, topics: set[str]) -> Iterator[tuple[str, int, int, bytes]]:
    """(topic, left stamp, log time, CDR bytes) of the output messages in ``bag``."""
    for connection, log_time, raw in bag.messages(topics):
        message_class = OUTPUT_CLASSES.get(connection.msgtype)
        if message_class is None:
            continue  # not a type this tool writes: not one of its outputs
        data = bytes(raw)
        stamp = stamp_nanoseconds(deserialize_message(data, message_class))
        yield connection.topic, stamp, log_time, data


def finished_stamps(previous: Path, outputs: Mapping[str, tuple[str, str]]) -> set[int]:
    """Left stamps of the frames an earlier run finished: one message on every output.

    The earlier run must have written the same topics (else BagError: a resume cannot
    change them).
    """
    topics = {topic for topic, _ in outputs.values()}
    with InputBag(previous) as bag:
        recorded = bag.custom_data.get(CUSTOM_OUTPUTS)
        if recorded is not None and set(filter(None, recorded.split(","))) != topics:
            raise BagError(f"{previous} was written with outputs {recorded}; resume it with "
                           "the same --outputs and namespaces, or use --overwrite")
        seen: dict[int, list[str]] = {}
        for topic, stamp, _, _ in _frame_messages(bag, topics):
            seen.setdefault(stamp, []).append(topic)
    return {stamp for stamp, names in seen.items()
            if len(names) == len(topics) and set(names) == topics}


def copy_finished(previous: Path, out: OutputBag, stamps: set[int],
                  outputs: Mapping[str, tuple[str, str]]) -> int:
    """Copy the output messages of the ``stamps`` frames from ``previous``; frames copied."""
    topics = {topic for topic, _ in outputs.values()}
    with InputBag(previous) as bag:
        for topic, stamp, log_time, data in _frame_messages(bag, topics):
            if stamp in stamps:
                out.write_raw(topic, log_time, data)
    return len(stamps)
