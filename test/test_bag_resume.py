# SPDX-License-Identifier: Apache-2.0
"""Ctrl-C on a running ``s2m2-bag`` leaves a valid bag, and ``--resume`` completes it.

The tool runs as a subprocess on a bag that takes several seconds; SIGINT goes out once
its progress bar shows frames done.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("rosbags")

from bag_helpers import FrameSpec, by_topic, read_bag, write_stereo_bag  # noqa: E402
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from s2m2_ros.backends import create_backend  # noqa: E402
from s2m2_ros.bag.topics import OUTPUT_CLASSES  # noqa: E402
from s2m2_ros.bag.writer import claim_output, resume_backup, resume_source  # noqa: E402
from s2m2_ros.pipeline import OutputSettings, process_frame  # noqa: E402

FRAMES = 40
OUTPUTS = "disparity,depth,confidence"
OUTPUT_TOPICS = ("/stereo/disparity", "/stereo/depth", "/stereo/depth/camera_info",
                 "/stereo/confidence")
PROGRESS = re.compile(r"(\d+)/(\d+) \[")


def _stamp(message) -> int:
    return message.header.stamp.sec * 10**9 + message.header.stamp.nanosec


def _output_stamps(path: Path) -> dict[str, list[int]]:
    """Output topic → stamps of its messages, in bag order (repeats kept)."""
    messages, _ = read_bag(path)
    return {topic: [_stamp(deserialize_message(m.raw, OUTPUT_CLASSES[m.msgtype]))
                    for m in found]
            for topic, found in by_topic(messages).items() if topic in OUTPUT_TOPICS}


def _interrupt_after_frames(command: list[str], env: dict[str, str], frames: int,
                            timeout_s: float = 240.0) -> tuple[int, str, str]:
    """Run ``command``; SIGINT once its progress shows ``frames`` done; its exit and output."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=env, text=True)
    chunks: list[str] = []

    def collect() -> None:
        while piece := process.stderr.read(1):
            chunks.append(piece)

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout_s
    interrupted = False
    while time.monotonic() < deadline and process.poll() is None:
        done = [int(m.group(1)) for m in PROGRESS.finditer("".join(chunks))]
        if done and max(done) >= frames:
            process.send_signal(signal.SIGINT)
            interrupted = True
            break
        time.sleep(0.05)
    try:
        stdout, _ = process.communicate(timeout=timeout_s)
    finally:
        if process.poll() is None:
            process.kill()
    reader.join(timeout=10)
    assert interrupted, "the run ended before it could be interrupted:\n" + "".join(chunks)
    return process.returncode, stdout, "".join(chunks)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_interrupted_run_is_a_valid_bag_and_resume_completes_it(tmp_path, ros_env, storage):
    bag = write_stereo_bag(tmp_path / "in", [FrameSpec(320, 240, "mono8")] * FRAMES,
                           storage=storage)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "s2m2_ros.bag.cli", str(bag.path), str(out),
               "--backend", "sgbm", "--outputs", OUTPUTS]
    code, stdout, stderr = _interrupt_after_frames(command, ros_env, frames=3)
    assert code == 130, stderr
    assert "interrupted" in stdout

    # A valid bag: it opens, and every output topic has the same frames, each once.
    partial = _output_stamps(out)
    assert set(partial) == set(OUTPUT_TOPICS)
    done = partial["/stereo/depth"]
    assert 3 <= len(done) < FRAMES
    for topic, stamps in partial.items():
        assert sorted(stamps) == sorted(set(done)), topic
    assert set(done) <= set(bag.stamps)
    messages, _ = read_bag(out)
    # The copy of the input is under way: up to the last frame done (its /imu_rate
    # message is logged after the frame's camera infos, so it may not be read yet).
    assert Counter(m.topic for m in messages)["/imu_rate"] >= len(done) - 1

    finished = subprocess.run([*command, "--resume", "--quiet"], env=ros_env,
                              capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr
    assert f"{len(done)} from the interrupted run" in finished.stdout
    complete = _output_stamps(out)
    for topic, stamps in complete.items():
        assert sorted(stamps) == bag.stamps, f"{topic}: missing or repeated frames"
    counts = Counter(m.topic for m in read_bag(out)[0])
    for topic, count in bag.topic_counts.items():
        assert counts[topic] == count, f"{topic} copied {counts[topic]} times, not {count}"
    assert not resume_backup(out).exists()

    # Frames taken over and frames made by the resumed run are both the pipeline's.
    backend = create_backend("sgbm")
    inputs = by_topic(read_bag(bag.path)[0])
    outputs = by_topic(read_bag(out)[0])
    for index in (0, len(done), FRAMES - 1):
        pair = [deserialize_message(inputs[f"/stereo/{name}"][index].raw, kind)
                for name, kind in (("left/image_rect", Image), ("right/image_rect", Image),
                                   ("left/camera_info", CameraInfo),
                                   ("right/camera_info", CameraInfo))]
        settings = OutputSettings(outputs=frozenset({"disparity", "depth", "confidence"}))
        expected = process_frame(backend, *pair, settings).messages["depth"]
        published = deserialize_message(serialize_message(expected), Image)
        actual = [deserialize_message(m.raw, Image) for m in outputs["/stereo/depth"]]
        assert published in actual


def test_resume_picks_the_bag_that_was_closed(tmp_path):
    out = tmp_path / "out"
    backup = resume_backup(out)
    assert resume_source(out) is None
    assert claim_output(out, resume=True, overwrite=False) is None  # nothing to resume: fine

    backup.mkdir()
    (backup / "metadata.yaml").write_text("closed")
    out.mkdir()
    (out / "out_0.mcap").write_text("cut off before it was closed")
    assert resume_source(out) == backup
    assert claim_output(out, resume=True, overwrite=False) == backup
    assert not out.exists() and (backup / "metadata.yaml").read_text() == "closed"

    out.mkdir()
    (out / "metadata.yaml").write_text("newer")
    assert resume_source(out) == out
    assert claim_output(out, resume=True, overwrite=False) == backup
    assert (backup / "metadata.yaml").read_text() == "newer" and not out.exists()


def test_resume_cut_off_while_copying_keeps_the_earlier_bag(tmp_path, monkeypatch, capsys):
    from s2m2_ros.bag import runner
    from s2m2_ros.bag.cli import main

    bag = write_stereo_bag(tmp_path / "in", [FrameSpec(64, 48)] * 3)
    out = tmp_path / "out"
    command = [str(bag.path), str(out), "--backend", "sgbm", "--outputs", "depth", "--quiet"]
    assert main(command) == 0
    before = _output_stamps(out)["/stereo/depth"]

    def cut_off(previous, output_bag, stamps, outputs):
        raise KeyboardInterrupt  # a second Ctrl-C while the finished frames are copied

    monkeypatch.setattr(runner, "copy_finished", cut_off)
    assert main([*command, "--resume"]) == 130
    assert not (out / "metadata.yaml").exists()  # the new bag was abandoned, not closed
    assert (resume_backup(out) / "metadata.yaml").is_file()
    monkeypatch.undo()
    capsys.readouterr()

    assert main([*command, "--resume"]) == 0
    assert "3 from the interrupted run" in capsys.readouterr().out
    assert sorted(_output_stamps(out)["/stereo/depth"]) == sorted(before) == bag.stamps
    assert not resume_backup(out).exists()
