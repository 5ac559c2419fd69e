# SPDX-License-Identifier: Apache-2.0
"""One offline run: every pair of the input bag through the backend, into a new bag.

Nothing is dropped for speed: pairs wait in a list until a batch is full. Ctrl-C asks
the run to stop after the batch in flight; the output bag is then closed, so it is a
valid bag of the frames done, and ``--resume`` continues it.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from s2m2_ros.backends.base import StereoBackend
from s2m2_ros.bag.reader import FramePairer, InputBag, StereoFrame
from s2m2_ros.bag.topics import (
    BagError,
    StereoTopics,
    find_stereo_topics,
    normalize_namespace,
    output_topics,
)
from s2m2_ros.bag.writer import (
    OutputBag,
    check_output,
    claim_output,
    copy_finished,
    finished_stamps,
    resume_source,
)
from s2m2_ros.pipeline import InputError, OutputSettings, process_frames


@dataclass
class BagJob:
    """What to read, how to pair and process it, and where to write."""

    input: Path
    output: Path
    settings: OutputSettings = field(default_factory=OutputSettings)
    namespace: str | None = None  # None: find the only stereo set in the bag
    output_namespace: str | None = None  # None: the input namespace
    topic_overrides: dict[str, str | None] = field(default_factory=dict)
    approximate_sync: bool = False
    sync_tolerance_s: float = 0.0
    queue_size: int = 100
    batch_size: int = 1
    storage: str | None = None  # None: as the input bag
    outputs_only: bool = False
    resume: bool = False
    overwrite: bool = False
    progress: bool = True


@dataclass
class RunSummary:
    topics: StereoTopics
    output_namespace: str
    storage: str
    frames_written: int = 0  # by this run
    frames_resumed: int = 0  # taken over from the interrupted run
    skipped: dict[str, int] = field(default_factory=dict)  # bad-input kind → frames
    unpaired: int = 0  # left images without a complete set
    undecodable: int = 0  # input messages that were not valid CDR of their type
    approximate: bool = False
    interrupted: bool = False
    elapsed_s: float = 0.0  # reading, pairing, processing and writing (not model loading)
    not_copied: list[str] = field(default_factory=list)


class StopRequest:
    """Ctrl-C (SIGINT) sets :attr:`requested`; a second one raises KeyboardInterrupt."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _progress_bar(total: int, initial: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="frame", disable=not enabled,
                file=sys.stderr, dynamic_ncols=True, smoothing=0.1, desc="s2m2-bag")


class BagRun:
    """The state of one run; :meth:`run` does it."""

    def __init__(self, job: BagJob, make_backend: Callable[[], StereoBackend]) -> None:
        if job.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {job.batch_size}")
        self.job = job
        self._make_backend = make_backend
        self.backend: StereoBackend | None = None
        self._warned: set[str] = set()

    def run(self) -> RunSummary:
        job = self.job
        if job.output.resolve() == job.input.resolve():
            raise BagError("OUTPUT must differ from INPUT")
        with InputBag(job.input) as bag:
            topics, namespace, outputs = self._plan(bag)
            check_output(job.output, job.resume, job.overwrite)
            source = resume_source(job.output) if job.resume else None
            done = finished_stamps(source, outputs) if source is not None else set()
            # Loading a network takes a while: only once the bags are known to be fine.
            self.backend = self._make_backend()
            summary = RunSummary(topics, namespace, job.storage or bag.storage)
            with StopRequest() as stop:  # from here on, Ctrl-C ends with a closed bag
                previous = claim_output(job.output, job.resume, job.overwrite)
                out = OutputBag(job.output, summary.storage, outputs)
                out.set_custom_data("s2m2_bag.input", str(job.input))
                out.set_custom_data("s2m2_bag.backend", json.dumps(self.backend.describe(),
                                                                   default=str))
                taken_over = previous is None
                try:
                    if previous is not None:
                        summary.frames_resumed = copy_finished(previous, out, done, outputs)
                        taken_over = True
                    self._convert(bag, topics, out, done, summary, stop)
                finally:
                    summary.not_copied = list(out.skipped_topics)
                    if taken_over:
                        out.close()
                    else:  # cut off while copying: the earlier bag stays the one to resume
                        out.abort()
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
        return summary

    def _plan(self, bag: InputBag) -> tuple[StereoTopics, str, dict[str, tuple[str, str]]]:
        """The input topics, the output namespace and the output topics."""
        job = self.job
        topic_types = bag.topic_types()
        topics = find_stereo_topics(topic_types, job.namespace, job.topic_overrides)
        namespace = (topics.namespace if job.output_namespace is None
                     else normalize_namespace(job.output_namespace))
        outputs = output_topics(namespace, job.settings.outputs)
        clashes = sorted({topic for topic, _ in outputs.values()} & set(topic_types))
        if clashes and not job.outputs_only:
            raise BagError(f"the input bag already has {', '.join(clashes)}: write the "
                           "outputs elsewhere with --output-namespace, or --outputs-only")
        return topics, namespace, outputs

    def _convert(self, bag: InputBag, topics: StereoTopics, out: OutputBag, done: set[int],
                 summary: RunSummary, stop: StopRequest) -> None:
        job = self.job
        pairer = FramePairer(topics, job.approximate_sync, job.sync_tolerance_s,
                             job.queue_size)
        waiting: list[StereoFrame] = []
        total = bag.message_count(topics.left)
        progress = _progress_bar(total, summary.frames_resumed, job.progress)
        read = None if not job.outputs_only else pairer.topics
        started = time.monotonic()
        try:
            for connection, log_time, raw in bag.messages(read):
                if stop.requested:
                    break
                if not job.outputs_only:
                    out.write_copy(connection, log_time, raw)
                pairer.offer(connection.topic, raw, log_time)
                waiting += [frame for frame in pairer.take() if frame.stamp_ns not in done]
                if len(waiting) >= job.batch_size:
                    self._process(waiting[:job.batch_size], out, summary, progress)
                    del waiting[:job.batch_size]
            while waiting and not stop.requested:
                self._process(waiting[:job.batch_size], out, summary, progress)
                del waiting[:job.batch_size]
            summary.interrupted = stop.requested
        finally:
            progress.close()
            summary.elapsed_s = time.monotonic() - started
            summary.unpaired = pairer.unpaired
            summary.undecodable = pairer.undecodable
            summary.approximate = job.approximate_sync

    def _process(self, frames: list[StereoFrame], out: OutputBag, summary: RunSummary,
                 progress: Any) -> None:
        try:
            outcomes = process_frames(self.backend, [frame.messages for frame in frames],
                                      self.job.settings, self.job.batch_size)
        except Exception as error:  # a failing backend call loses its frames, not the run
            failure = InputError("processing", f"frame failed: {type(error).__name__}: {error}")
            outcomes = [failure] * len(frames)
        for frame, outcome in zip(frames, outcomes, strict=True):
            if isinstance(outcome, InputError):
                summary.skipped[outcome.kind] = summary.skipped.get(outcome.kind, 0) + 1
                if outcome.kind not in self._warned:  # the first of each kind, then a count
                    self._warned.add(outcome.kind)
                    progress.write(f"skipping frame at stamp {frame.stamp_ns} ns "
                                   f"({outcome.kind}): {outcome}", file=sys.stderr)
            else:
                out.write_frame(outcome.messages, frame.log_time_ns)
                summary.frames_written += 1
            progress.update(1)


def run_bag(job: BagJob, make_backend: Callable[[], StereoBackend]) -> RunSummary:
    """Process ``job.input`` into ``job.output`` with the backend ``make_backend`` builds
    (called once the bags and topics are checked); BagError on a bad setup."""
    return BagRun(job, make_backend).run()
