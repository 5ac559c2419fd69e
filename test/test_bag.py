# SPDX-License-Identifier: Apache-2.0
"""``s2m2-bag`` run in-process on bags written with ``rosbags``.

Every output message is held against what the node's pipeline (``process_frame``)
gives for the same pair, depth against f·B/d from the bag's own calibration, and the
copied input messages against the input bag byte for byte.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags")

import rclpy  # noqa: E402
from bag_helpers import (  # noqa: E402
    BASELINE_M,
    FX,
    UNRELATED_TOPIC,
    FrameSpec,
    by_topic,
    read_bag,
    write_stereo_bag,
)
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from s2m2_ros.backends import create_backend  # noqa: E402
from s2m2_ros.bag.cli import main  # noqa: E402
from s2m2_ros.bag.topics import OUTPUT_CLASSES, BagError, find_stereo_topics  # noqa: E402
from s2m2_ros.pipeline import OutputSettings, process_frame  # noqa: E402

OUTPUT_NAMES = {"disparity": "disparity", "depth": "depth", "depth_info": "depth/camera_info",
                "confidence": "confidence", "occlusion": "occlusion", "points": "points2"}
SIX_FRAMES = [FrameSpec(64, 48, "rgb8"), FrameSpec(45, 33, "mono8"), FrameSpec(64, 48, "bgr8"),
              FrameSpec(45, 33, "rgb8", shift_px=6), FrameSpec(64, 48, "mono8"),
              FrameSpec(45, 33, "mono8", shift_px=2)]


def _input_sets(bag_path: Path, namespace: str) -> dict[int, tuple]:
    """Left stamp → (left, right, left_info, right_info) as rclpy messages."""
    messages, _ = read_bag(bag_path)
    topics = by_topic(messages)
    roles = [(f"{namespace}/left/image_rect", Image), (f"{namespace}/right/image_rect", Image),
             (f"{namespace}/left/camera_info", CameraInfo),
             (f"{namespace}/right/camera_info", CameraInfo)]
    columns = [[deserialize_message(m.raw, kind) for m in topics[topic]] for topic, kind in roles]
    sets = {}
    for row in zip(*columns, strict=True):
        stamp = row[0].header.stamp.sec * 10**9 + row[0].header.stamp.nanosec
        sets[stamp] = row
    return sets


def _stamp(message) -> int:
    return message.header.stamp.sec * 10**9 + message.header.stamp.nanosec


def _outputs_by_stamp(messages, namespace: str) -> dict[str, dict[int, list]]:
    """Output name → left stamp → [(log time, raw, message)] (a list, to see duplicates)."""
    found: dict[str, dict[int, list]] = {}
    for name, topic in OUTPUT_NAMES.items():
        for message in (m for m in messages if m.topic == f"{namespace}/{topic}"):
            decoded = deserialize_message(message.raw, OUTPUT_CLASSES[message.msgtype])
            found.setdefault(name, {}).setdefault(_stamp(decoded), []).append(
                (message.log_time, message.raw, decoded))
    return found


def _assert_depth_is_fb_over_d(disparity_msg, depth_msg) -> None:
    disparity = np.frombuffer(bytes(disparity_msg.image.data), np.float32).reshape(
        disparity_msg.image.height, disparity_msg.image.width)
    depth = np.frombuffer(bytes(depth_msg.data), np.float32).reshape(depth_msg.height,
                                                                       depth_msg.width)
    valid = np.isfinite(depth)
    assert valid.any()
    np.testing.assert_allclose(depth[valid], FX * BASELINE_M / disparity[valid], rtol=1e-5)


def _as_published(message):
    """The message as a subscriber gets it (float32 fields rounded). Compared as messages,
    not bytes: CDR padding bytes are not defined, the values are."""
    return deserialize_message(serialize_message(message), type(message))


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--quiet"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def sgbm():
    return create_backend("sgbm")


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_sgbm_outputs_are_the_node_pipelines(tmp_path, capsys, sgbm, storage):
    bag = write_stereo_bag(tmp_path / "in", SIX_FRAMES, storage=storage)
    code, out, err = _run(capsys, str(bag.path), str(tmp_path / "out"), "--backend", "sgbm",
                          "--namespace", "/stereo")
    assert code == 0, err
    assert "6 frames" in out
    assert not rclpy.ok()  # no ROS context (and so no DDS participant) was started
    assert any(p.suffix == (".mcap" if storage == "mcap" else ".db3")
               for p in (tmp_path / "out").iterdir())

    messages, custom = read_bag(tmp_path / "out")
    outputs = _outputs_by_stamp(messages, "/stereo")
    sets = _input_sets(bag.path, "/stereo")
    assert set(outputs) == set(OUTPUT_NAMES)
    for name, stamps in outputs.items():
        assert sorted(stamps) == bag.stamps, name
        assert all(len(found) == 1 for found in stamps.values()), f"duplicates in {name}"
    log_time_of = dict(zip(bag.stamps, bag.left_log_times, strict=True))
    for stamp, (left, right, left_info, right_info) in sets.items():
        expected = process_frame(sgbm, left, right, left_info, right_info, OutputSettings())
        for name, message in expected.messages.items():
            ((log_time, _, decoded),) = outputs[name][stamp]
            assert log_time == log_time_of[stamp]
            assert decoded.header.frame_id == "left_optical"
            assert decoded == _as_published(message), f"{name} at {stamp}"
        _assert_depth_is_fb_over_d(outputs["disparity"][stamp][0][2],
                                   outputs["depth"][stamp][0][2])
    # The input, unrelated topic included, is copied unchanged.
    copied = Counter((m.topic, m.log_time, m.raw) for m in messages
                     if not m.topic.startswith("/stereo/") or "image_rect" in m.topic
                     or m.topic.endswith("/left/camera_info")
                     or m.topic.endswith("/right/camera_info"))
    original = Counter((m.topic, m.log_time, m.raw) for m in read_bag(bag.path)[0])
    assert copied == original
    assert UNRELATED_TOPIC in {topic for topic, _, _ in copied}
    assert custom["s2m2_bag.input"] == str(bag.path)


def test_tiny_network_batched_matches_one_at_a_time(tmp_path, capsys, tiny_checkpoint):
    frames = [FrameSpec(64, 48, "rgb8"), FrameSpec(64, 48, "mono8"), FrameSpec(64, 48, "rgb8")]
    bag = write_stereo_bag(tmp_path / "in", frames, storage="mcap", namespace="/cam")
    code, out, err = _run(capsys, str(bag.path), str(tmp_path / "out"), "--weights",
                          str(tiny_checkpoint), "--device", "cpu", "--batch", "2")
    assert code == 0, err
    backend = create_backend("torch", weights=str(tiny_checkpoint), device="cpu")
    outputs = _outputs_by_stamp(read_bag(tmp_path / "out")[0], "/cam")
    for stamp, pair in _input_sets(bag.path, "/cam").items():
        expected = process_frame(backend, *pair, OutputSettings())
        for name, message in expected.messages.items():
            ((_, _, decoded),) = outputs[name][stamp]
            _assert_same_message(decoded, _as_published(message))
        _assert_depth_is_fb_over_d(outputs["disparity"][stamp][0][2],
                                   outputs["depth"][stamp][0][2])


def test_openvino_backend(tmp_path, capsys, tiny_checkpoint, monkeypatch):
    pytest.importorskip("openvino")
    monkeypatch.setenv("S2M2_ENGINE_CACHE", str(tmp_path / "engines"))
    bag = write_stereo_bag(tmp_path / "in", [FrameSpec(64, 48, "rgb8"), FrameSpec(64, 48, "mono8")],
                           namespace="/cam")
    code, _, err = _run(capsys, str(bag.path), str(tmp_path / "out"), "--backend", "openvino",
                        "--weights", str(tiny_checkpoint))
    assert code == 0, err
    backend = create_backend("openvino", weights=str(tiny_checkpoint))  # the cached export
    outputs = _outputs_by_stamp(read_bag(tmp_path / "out")[0], "/cam")
    for stamp, pair in _input_sets(bag.path, "/cam").items():
        expected = process_frame(backend, *pair, OutputSettings())
        assert set(outputs) == set(OUTPUT_NAMES)
        for name, message in expected.messages.items():
            ((_, _, decoded),) = outputs[name][stamp]
            _assert_same_message(decoded, _as_published(message))
        _assert_depth_is_fb_over_d(outputs["disparity"][stamp][0][2],
                                   outputs["depth"][stamp][0][2])


def _assert_same_message(actual, expected) -> None:
    """Equal headers and layout; pixel and point values equal to float32 rounding (a
    batched network may sum in another order)."""
    assert actual.header == expected.header
    if isinstance(expected, CameraInfo):
        assert actual == expected
        return
    image_a = getattr(actual, "image", actual)
    image_e = getattr(expected, "image", expected)
    for field in ("height", "width"):
        assert getattr(image_a, field) == getattr(image_e, field)
    values_a = np.frombuffer(bytes(image_a.data), np.float32)
    values_e = np.frombuffer(bytes(image_e.data), np.float32)
    np.testing.assert_allclose(values_a, values_e, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    import torch

    from s2m2_ros.model import S2M2

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    torch.save({"state_dict": S2M2(32, 1).state_dict()}, path)
    return path


def test_finds_the_only_set_and_writes_chosen_outputs(tmp_path, capsys):
    bag = write_stereo_bag(tmp_path / "in", SIX_FRAMES[:2], storage="mcap",
                           namespace="/robot/front")
    code, out, err = _run(capsys, str(bag.path), str(tmp_path / "out"), "--backend", "sgbm",
                          "--outputs", "depth,points2", "--outputs-only", "--storage",
                          "sqlite3", "--output-namespace", "depth_sgbm")
    assert code == 0, err
    assert "/robot/front/left/image_rect" in out
    messages, _ = read_bag(tmp_path / "out")
    counts = Counter(m.topic for m in messages)
    assert counts == {"/depth_sgbm/depth": 2, "/depth_sgbm/depth/camera_info": 2,
                      "/depth_sgbm/points2": 2}
    assert any(p.suffix == ".db3" for p in (tmp_path / "out").iterdir())


def test_topic_overrides(tmp_path, capsys):
    bag = write_stereo_bag(tmp_path / "in", SIX_FRAMES[:2], namespace="/a")
    code, _, err = _run(capsys, str(bag.path), str(tmp_path / "out"), "--backend", "sgbm",
                        "--namespace", "/a", "--left", "left/image_rect", "--right",
                        "/a/right/image_rect", "--outputs", "occlusion")
    assert code == 0, err
    assert Counter(m.topic for m in read_bag(tmp_path / "out")[0])["/a/occlusion"] == 2


def test_bad_frames_are_skipped_and_counted(tmp_path, capsys):
    frames = [FrameSpec(64, 48), FrameSpec(64, 48, right_width=60), FrameSpec(64, 48),
              FrameSpec(12, 10)]
    bag = write_stereo_bag(tmp_path / "in", frames)
    code, out, err = _run(capsys, str(bag.path), str(tmp_path / "out"), "--backend", "sgbm")
    assert code == 0, err
    assert "2 frames" in out
    assert "skipped 2 bad frames (image_size 1, size_mismatch 1)" in out
    assert "size_mismatch" in err  # the first of each kind is reported when it happens
    outputs = _outputs_by_stamp(read_bag(tmp_path / "out")[0], "/stereo")
    assert sorted(outputs["depth"]) == [bag.stamps[0], bag.stamps[2]]


def test_approximate_sync_pairs_what_exact_cannot(tmp_path, capsys):
    bag = write_stereo_bag(tmp_path / "in", SIX_FRAMES[:3], right_stamp_offset_ns=2_000_000)
    code, out, err = _run(capsys, str(bag.path), str(tmp_path / "exact"), "--backend", "sgbm")
    assert code == 1
    assert "3 frames could not be paired" in out
    assert err.strip().endswith("error: no frame was written")
    code, out, err = _run(capsys, str(bag.path), str(tmp_path / "approx"), "--backend", "sgbm",
                          "--approximate-sync", "--sync-tolerance", "0.01")
    assert code == 0, err
    outputs = _outputs_by_stamp(read_bag(tmp_path / "approx")[0], "/stereo")
    assert sorted(outputs["disparity"]) == bag.stamps  # stamped like the left image


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_unreadable_bags(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "text").write_text("not a bag")
    for path in (tmp_path / "empty", tmp_path / "text", tmp_path / "absent"):
        code, _, err = _run(capsys, str(path), str(tmp_path / "out"))
        assert code == 1
        assert f"cannot read bag {path}" in _one_error_line(err)
    assert not (tmp_path / "out").exists()


def test_missing_topics_list_the_image_topics(tmp_path, capsys):
    bag = write_stereo_bag(tmp_path / "in", SIX_FRAMES[:1], namespace="/cam")
    code, _, err = _run(capsys, str(bag.path), str(tmp_path / "out"), "--namespace", "/other")
    assert code == 1
    line = _one_error_line(err)
    assert "/other/left/image_rect is not in the bag" in line
    assert "/cam/left/image_rect, /cam/right/image_rect" in line


def test_existing_output_needs_overwrite(tmp_path, capsys):
    bag = write_stereo_bag(tmp_path / "in", SIX_FRAMES[:1])
    out = tmp_path / "out"
    out.mkdir()
    (out / "metadata.yaml").write_text("old")
    code, _, err = _run(capsys, str(bag.path), str(out), "--backend", "sgbm")
    assert code == 1
    assert "exists: use --resume" in _one_error_line(err)
    assert (out / "metadata.yaml").read_text() == "old"
    code, _, err = _run(capsys, str(bag.path), str(out), "--backend", "sgbm", "--overwrite")
    assert code == 0, err
    assert Counter(m.topic for m in read_bag(out)[0])["/stereo/depth"] == 1


def test_overwrite_refuses_a_folder_that_is_not_a_bag(tmp_path, capsys):
    bag = write_stereo_bag(tmp_path / "in", SIX_FRAMES[:1])
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = _run(capsys, str(bag.path), str(out), "--backend", "sgbm", "--overwrite")
    assert code == 1
    assert "is not a bag" in _one_error_line(err)
    assert (out / "notes.txt").exists()


def test_stereo_sets_are_found_or_listed():
    image, info = "sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo"

    def stereo_set(namespace: str) -> dict[str, str]:
        return {f"{namespace}/left/image_rect": image, f"{namespace}/right/image_rect": image,
                f"{namespace}/left/camera_info": info, f"{namespace}/right/camera_info": info}

    one = {**stereo_set("/front"), "/rgb/image_raw": image}
    assert find_stereo_topics(one).left == "/front/left/image_rect"
    assert find_stereo_topics(stereo_set("")).namespace == ""
    with pytest.raises(BagError, match="several stereo topic sets, under /a, /b"):
        find_stereo_topics({**stereo_set("/a"), **stereo_set("/b")})
    with pytest.raises(BagError, match="image topics in the bag: /rgb/image_raw"):
        find_stereo_topics({"/rgb/image_raw": image, "/imu": "sensor_msgs/msg/Imu"})
    wrong = {**stereo_set("/a"), "/a/right/camera_info": image}
    with pytest.raises(BagError, match="/a/right/camera_info is sensor_msgs/msg/Image"):
        find_stereo_topics(wrong, namespace="/a")
    chosen = find_stereo_topics({**stereo_set("/a"), **stereo_set("/b")}, namespace="b/")
    assert chosen.inputs == tuple(stereo_set("/b"))


def test_process_frames_batches_by_size_and_keeps_order(tmp_path, sgbm):
    from s2m2_ros.pipeline import InputError, process_frames

    frames = [FrameSpec(64, 48), FrameSpec(45, 33), FrameSpec(64, 48, right_width=60),
              FrameSpec(64, 48, "mono8"), FrameSpec(45, 33), FrameSpec(64, 48)]
    bag = write_stereo_bag(tmp_path / "in", frames, unrelated=False)
    sets = [pair for _, pair in sorted(_input_sets(bag.path, "/stereo").items())]
    calls: list[list[tuple]] = []

    class Recording(type(sgbm)):
        def infer_batch(self, pairs, color_order="rgb"):
            calls.append([left.shape for left, _ in pairs])
            return super().infer_batch(pairs, color_order)

    outcomes = process_frames(Recording(), sets, OutputSettings(), batch_size=2)
    assert len(outcomes) == len(sets)
    assert isinstance(outcomes[2], InputError) and outcomes[2].kind == "size_mismatch"
    for pair, outcome in zip(sets, outcomes, strict=True):
        if isinstance(outcome, InputError):
            continue
        expected = process_frame(sgbm, *pair, OutputSettings())
        assert set(outcome.messages) == set(expected.messages)
        for name, message in expected.messages.items():
            assert outcome.messages[name] == message, name
    # Pairs of one size share a call, never more than the batch size.
    assert all(len(set(shapes)) == 1 and len(shapes) <= 2 for shapes in calls)
    assert sum(len(shapes) for shapes in calls) == 5 and len(calls) == 3
