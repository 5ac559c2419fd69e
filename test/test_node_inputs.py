# SPDX-License-Identifier: Apache-2.0
"""The node's judgement of input publishers' QoS (rclpy's compatibility check)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("sensor_msgs.msg")

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402

from s2m2_ros.node_inputs import qos_problem  # noqa: E402

BEST_EFFORT = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
RELIABLE = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)


def publisher(qos: QoSProfile, node: str = "camera_driver") -> SimpleNamespace:
    """What get_publishers_info_by_topic() returns, as far as the check reads it."""
    return SimpleNamespace(qos_profile=qos, node_name=node)


def test_best_effort_subscription_takes_either_publisher():
    assert qos_problem([publisher(BEST_EFFORT), publisher(RELIABLE)], BEST_EFFORT) is None
    assert qos_problem([], BEST_EFFORT) is None


def test_reliable_subscription_and_best_effort_publisher_is_named():
    problem = qos_problem([publisher(RELIABLE, "a"), publisher(BEST_EFFORT, "b")], RELIABLE)
    assert problem is not None
    assert problem.startswith("publisher of b: ")
    assert "reliab" in problem.lower()


def test_transient_local_subscription_and_volatile_publisher_is_named():
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    problem = qos_problem([publisher(RELIABLE)], latched)
    assert problem is not None
    assert "transient local subscription" in problem.lower()
