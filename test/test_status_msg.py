# SPDX-License-Identifier: Apache-2.0
"""The generated StereoStatus message: matches msg/StereoStatus.msg and crosses real DDS."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

MSG_FILE = Path(__file__).resolve().parent.parent / "msg" / "StereoStatus.msg"

# Values exactly representable as float32, and integers past 32 bits for the
# uint64 counters, so a truncating or mis-typed field shows up as a mismatch.
EXPECTED = {
    "model": "S2M2-L",
    "backend": "s2m2",
    "device": "cuda:0",
    "precision": "fp16",
    "input_width": 1280,
    "input_height": 720,
    "inference_width": 640,
    "inference_height": 352,
    "receive_ms": 1.5,
    "network_ms": 42.25,
    "postprocess_ms": 3.125,
    "publish_ms": 0.75,
    "end_to_end_ms": 48.5,
    "valid_fraction": 0.875,
    "occluded_fraction": 0.0625,
    "low_confidence_fraction": 0.125,
    "mean_confidence": 0.8125,
    "baseline_m": 0.125,
    "focal_length_px": 721.5,
    "frames_processed": 2**40 + 3,
    "frames_dropped": 2**33 + 1,
}
STAMP = (1_700_000_123, 456_000_000)
FRAME_ID = "left_camera_optical_frame"

# The msg file's primitive types as rosidl's Python code names them.
MSG_TO_IDL = {"float32": "float", "float64": "double"}


def _msg_fields() -> list[tuple[str, str, str]]:
    """(type, name, comment above it) for each field of the .msg file."""
    fields = []
    comment = ""
    for line in MSG_FILE.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment = stripped
        elif stripped:
            field_type, name = stripped.split()[:2]
            fields.append((field_type, name, comment))
            comment = ""  # one comment line per field
    return fields


def _status_type():
    msg = pytest.importorskip(
        "s2m2_ros.msg",
        # scripts/build_interfaces.sh keeps one build folder per venv.
        reason="generated s2m2_ros.msg is not importable: run scripts/setup_env.sh "
        f"(see build/interfaces/{Path(sys.prefix).name}/build.log)",
    )
    return msg.StereoStatus


def test_msg_file_documents_every_field():
    fields = _msg_fields()
    assert [name for _, name, _ in fields][:2] == ["header", "model"]
    for field_type, name, comment in fields:
        assert comment, f"{name} has no comment line above it"
        if field_type.startswith(("float", "uint")):
            assert re.search(r"\[[^\]]+\]", comment), f"{name}: no [unit] in {comment!r}"


def test_generated_type_matches_msg_file():
    status_type = _status_type()
    generated = status_type.get_fields_and_field_types()
    expected = {name: MSG_TO_IDL.get(t, t) for t, name, _ in _msg_fields()}
    # Same names, same order, same types: a stale build fails here.
    assert list(generated.items()) == list(expected.items())


def test_serialization_round_trip_keeps_values():
    from rclpy.serialization import deserialize_message, serialize_message

    status_type = _status_type()
    status = status_type(**EXPECTED)
    status.header.frame_id = FRAME_ID
    status.header.stamp.sec, status.header.stamp.nanosec = STAMP
    copy = deserialize_message(serialize_message(status), status_type)
    assert copy == status
    assert copy.frames_processed == 2**40 + 3


PUBLISHER = """
import json, sys, time
import rclpy
from s2m2_ros.msg import StereoStatus

topic, fields, stamp, frame_id = json.loads(sys.argv[1])
rclpy.init()
node = rclpy.create_node("status_publisher")
publisher = node.create_publisher(StereoStatus, topic, 10)
status = StereoStatus(**fields)
status.header.frame_id = frame_id
status.header.stamp.sec, status.header.stamp.nanosec = stamp
deadline = time.monotonic() + 60.0
while time.monotonic() < deadline:
    publisher.publish(status)
    time.sleep(0.1)
"""


def test_status_crosses_dds_between_processes(ros_env):
    status_type = _status_type()
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    topic = f"/s2m2_test/status_{time.monotonic_ns()}"
    publisher = subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, json.dumps([topic, EXPECTED, STAMP, FRAME_ID])],
        env=ros_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("status_subscriber", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        received = []
        node.create_subscription(status_type, topic, received.append, 10)
        deadline = time.monotonic() + 30.0
        while not received and time.monotonic() < deadline and publisher.poll() is None:
            executor.spin_once(timeout_sec=0.1)
        types = dict(node.get_topic_names_and_types())
    finally:
        rclpy.shutdown(context=context)
        publisher.kill()
        output = publisher.communicate()[0]

    assert received, f"no StereoStatus within 30 s; publisher said:\n{output}"
    assert types.get(topic) == ["s2m2_ros/msg/StereoStatus"]
    status = received[0]
    assert status.header.frame_id == FRAME_ID
    assert (status.header.stamp.sec, status.header.stamp.nanosec) == STAMP
    assert {name: getattr(status, name) for name in EXPECTED} == EXPECTED
