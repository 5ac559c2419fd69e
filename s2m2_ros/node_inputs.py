# SPDX-License-Identifier: Apache-2.0
"""The stereo node's input side: four subscriptions feeding a synchronizer stage, and
what the graph says about their publishers (counts, QoS compatibility) for the
diagnostics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rclpy.node import Node
from rclpy.qos import (
    QoSCompatibility,
    QoSProfile,
    qos_check_compatible,
    qos_profile_sensor_data,
)
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, Image

from .launch_config import INPUT_TOPICS
from .sync_stage import SynchronizerStage, TimeJump, synchronizer_factory

try:  # message_filters is part of a full ROS install, not of the PyPI wheels
    import message_filters
except ImportError:
    message_filters = None

INPUT_TYPES = (Image, Image, CameraInfo, CameraInfo)  # in INPUT_TOPICS order
_NO_BOUND_S = 1e9  # approximate sync with tolerance 0 means "no bound", as stereo_image_proc


def create_inputs(node: Node, params: dict[str, Any], *, on_pair: Callable[..., None],
                  on_message: Callable[[int, Any], bool],
                  on_jump: Callable[[TimeJump], None],
                  on_drop: Callable[[int], None]) -> tuple[SynchronizerStage, list[Any]]:
    """The synchronizer stage (message_filters' synchronizer where installed, else
    ours) and the subscriptions feeding it, sensor-data QoS with REP 2003 overrides.

    ``on_message(index, msg)`` sees every message first; it returns whether the
    message goes on to the synchronizer (False while the node shuts down).
    """
    queue_size = params["queue_size"]
    qos = QoSProfile(history=qos_profile_sensor_data.history, depth=queue_size,
                     reliability=qos_profile_sensor_data.reliability,
                     durability=qos_profile_sensor_data.durability)
    overrides = QoSOverridingOptions.with_default_policies()
    factory = synchronizer_factory(
        approximate=params["approximate_sync"], queue_size=queue_size,
        tolerance_s=params["approximate_sync_tolerance_seconds"] or _NO_BOUND_S,
        message_filters=message_filters)
    stage = SynchronizerStage(len(INPUT_TOPICS), queue_size, factory, on_pair,
                              on_jump=on_jump, on_drop=on_drop)
    subscriptions = []
    for index, (msg_type, topic) in enumerate(zip(INPUT_TYPES, INPUT_TOPICS, strict=True)):

        def deliver(msg: Any, index: int = index) -> None:
            if on_message(index, msg):
                stage.add(index, msg)

        subscriptions.append(node.create_subscription(
            msg_type, topic, deliver, qos, qos_overriding_options=overrides))
    return stage, subscriptions


def qos_problem(publishers: list[Any], subscription_qos: QoSProfile) -> str | None:
    """Why one of ``publishers`` cannot reach a subscription with ``subscription_qos``
    (e.g. a best-effort publisher and a reliable subscription); None if all can."""
    for info in publishers:
        compatibility, reason = qos_check_compatible(info.qos_profile, subscription_qos)
        if compatibility == QoSCompatibility.ERROR:
            return f"publisher of {info.node_name}: {reason}"
    return None


def publisher_report(node: Node, subscriptions: list[Any]) -> tuple[list[int],
                                                                    list[str | None]]:
    """Per input topic: how many publishers it has, and why one cannot match (or None)."""
    counts, problems = [], []
    for topic, subscription in zip(INPUT_TOPICS, subscriptions, strict=True):
        publishers = node.get_publishers_info_by_topic(node.resolve_topic_name(topic))
        counts.append(len(publishers))
        problems.append(qos_problem(publishers, subscription.qos_profile))
    return counts, problems
