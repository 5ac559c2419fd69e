# SPDX-License-Identifier: Apache-2.0
"""Which topics of a bag are the stereo inputs, and where the outputs go."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from s2m2_ros.launch_config import INPUT_TOPICS
from s2m2_ros.node import OUTPUT_TOPICS as NODE_OUTPUT_TOPICS

IMAGE_TYPE = "sensor_msgs/msg/Image"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
INPUT_TYPES = (IMAGE_TYPE, IMAGE_TYPE, CAMERA_INFO_TYPE, CAMERA_INFO_TYPE)
INPUT_ROLES = ("left", "right", "left_info", "right_info")



def type_name(message_class: type) -> str:
    """``sensor_msgs.msg.Image`` → ``"sensor_msgs/msg/Image"``, as bags name types."""
    return f"{message_class.__module__.split('.')[0]}/msg/{message_class.__name__}"


# Output key (pipeline.OUTPUTS plus depth_info) → (topic under the output namespace, type
# name): the node's own table, so the bag holds what the node would have published.
OUTPUT_TOPICS = {key: (topic, type_name(message_class))
                 for key, (message_class, topic) in NODE_OUTPUT_TOPICS.items()}
OUTPUT_CLASSES = {type_name(message_class): message_class
                  for message_class, _ in NODE_OUTPUT_TOPICS.values()}
# --outputs names (the topic names) → pipeline output names.
OUTPUT_CHOICES = {"disparity": "disparity", "depth": "depth", "points2": "points",
                  "confidence": "confidence", "occlusion": "occlusion"}


class BagError(Exception):
    """Something about the bags or topics that stops the run; one clear line."""


def join_topic(namespace: str, name: str) -> str:
    """``name`` under ``namespace`` (``name`` starting with ``/`` is absolute)."""
    if name.startswith("/"):
        return name
    parts = [part for part in f"{namespace}/{name}".split("/") if part]
    return "/" + "/".join(parts)


def normalize_namespace(namespace: str) -> str:
    """``"stereo/"`` → ``"/stereo"``; the root is ``""``."""
    parts = [part for part in namespace.split("/") if part]
    return "/" + "/".join(parts) if parts else ""


@dataclass(frozen=True)
class StereoTopics:
    """The four input topics, in the node's order, and the namespace they share."""

    left: str
    right: str
    left_info: str
    right_info: str
    namespace: str  # "" for the root; where outputs go unless told otherwise

    @property
    def inputs(self) -> tuple[str, str, str, str]:
        return (self.left, self.right, self.left_info, self.right_info)


def _image_topics_line(topic_types: Mapping[str, str]) -> str:
    images = sorted(topic for topic, kind in topic_types.items() if kind == IMAGE_TYPE)
    return ("image topics in the bag: " + ", ".join(images)) if images else \
        "the bag has no sensor_msgs/msg/Image topic"


def stereo_namespaces(topic_types: Mapping[str, str]) -> list[str]:
    """Namespaces under which the bag holds all four stereo_image_proc topics, typed right."""
    suffix = "/" + INPUT_TOPICS[0]
    found = []
    for topic in sorted(topic_types):
        if not topic.endswith(suffix):
            continue
        namespace = normalize_namespace(topic[: -len(suffix)])
        names = [join_topic(namespace, name) for name in INPUT_TOPICS]
        if all(topic_types.get(name) == kind for name, kind in zip(names, INPUT_TYPES,
                                                                    strict=True)):
            found.append(namespace)
    return found


def find_stereo_topics(topic_types: Mapping[str, str], namespace: str | None = None,
                       overrides: Mapping[str, str | None] | None = None) -> StereoTopics:
    """The input topics: ``namespace`` + the stereo_image_proc names, with ``overrides``
    (role → topic, relative ones under the namespace) replacing single names.

    Without ``namespace`` the bag's only complete set is taken; none or several is a
    :class:`BagError` that lists the image topics present (unless every topic is given).
    """
    overrides = {role: topic for role, topic in (overrides or {}).items() if topic}
    unknown = set(overrides) - set(INPUT_ROLES)
    if unknown:
        raise ValueError(f"unknown topic roles {sorted(unknown)}; known: {INPUT_ROLES}")
    if namespace is None:
        candidates = stereo_namespaces(topic_types)
        if len(candidates) == 1:
            namespace = candidates[0]
        elif len(overrides) == len(INPUT_ROLES):
            namespace = ""
        elif candidates:
            raise BagError("the bag holds several stereo topic sets, under "
                           + ", ".join(name or "/" for name in candidates)
                           + ": choose one with --namespace")
        else:
            raise BagError("no left/image_rect, right/image_rect, left/camera_info, "
                           "right/camera_info set in the bag: give --namespace or the "
                           "topics (--left, --right, --left-info, --right-info); "
                           + _image_topics_line(topic_types))
    namespace = normalize_namespace(namespace)
    names = [join_topic(namespace, overrides.get(role, default))
             for role, default in zip(INPUT_ROLES, INPUT_TOPICS, strict=True)]
    for name, kind in zip(names, INPUT_TYPES, strict=True):
        present = topic_types.get(name)
        if present is None:
            raise BagError(f"topic {name} is not in the bag; " + _image_topics_line(topic_types))
        if present != kind:
            raise BagError(f"topic {name} is {present}, expected {kind}")
    return StereoTopics(*names, namespace=namespace)


def output_topics(namespace: str, outputs: frozenset[str]) -> dict[str, tuple[str, str]]:
    """Output key → (topic, type) for the pipeline ``outputs`` wanted, under ``namespace``."""
    wanted = set(outputs) | ({"depth_info"} if "depth" in outputs else set())
    return {key: (join_topic(namespace, topic), kind)
            for key, (topic, kind) in OUTPUT_TOPICS.items() if key in wanted}


def parse_outputs(text: str) -> frozenset[str]:
    """``"disparity,depth,points2"`` → pipeline output names; ValueError names a bad one."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError("no outputs given")
    bad = [name for name in names if name not in OUTPUT_CHOICES]
    if bad:
        raise ValueError(f"unknown output {bad[0]!r}; choose from {', '.join(OUTPUT_CHOICES)}")
    return frozenset(OUTPUT_CHOICES[name] for name in names)
