# SPDX-License-Identifier: Apache-2.0
"""Launch logic without `launch`: camera presets, launch arguments, and the functions
that turn launch strings into node parameters and remaps (the parameter table and its
checks are `parameters`).

`launch/stereo.launch.py` is a thin shell around `build_launch_plan`; everything that can
go wrong with a launch argument is decided (and tested) here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .parameters import (
    BACKEND_CHOICES,
    MODEL_NAMES,
    parse_bool,
    parse_parameter_string,
    validate_parameter,
)

PACKAGE = "s2m2_ros"
EXECUTABLE = "stereo_node"
NODE_NAME = "s2m2_stereo"
DEFAULT_PARAMS_FILE = "s2m2_stereo.yaml"
RVIZ_CONFIG_FILE = "s2m2_stereo.rviz"
RVIZ_PACKAGE = "rviz2"  # package and executable

# The node's relative input topic names: what `topic_remappings` maps onto the cameras.
INPUT_TOPICS = ("left/image_rect", "right/image_rect", "left/camera_info", "right/camera_info")


@dataclass(frozen=True)
class CameraPreset:
    """Where a camera driver publishes its rectified pair, and which config file fits it."""

    params_file: str  # under config/, loaded after the defaults; empty: none
    left_namespace: str
    right_namespace: str
    image_topic: str
    fixed_frame: str
    summary: str


# Absolute namespaces for drivers with fixed topic names, so that `namespace` only moves
# the outputs. The QoS overrides in each preset's file are keyed by these resolved names.
CAMERA_PRESETS: dict[str, CameraPreset] = {
    "generic": CameraPreset(
        "", "left", "right", "image_rect", "left_camera_optical_frame",
        "rectified pair on <namespace>/left and <namespace>/right, as stereo_image_proc"),
    "realsense_d4xx": CameraPreset(
        "realsense_d4xx.yaml", "/camera/camera/infra1", "/camera/camera/infra2",
        "image_rect_raw", "camera_infra1_optical_frame",
        "Intel RealSense D4xx infra1/infra2 (realsense2_camera 4.x, enable_infra1/2:=true)"),
    "zed": CameraPreset(
        "zed.yaml", "/zed/zed_node/left", "/zed/zed_node/right", "image_rect_color",
        "zed_left_camera_frame_optical", "Stereolabs ZED (zed_wrapper 4.x, camera_name zed)"),
    "usb_stereo_pair": CameraPreset(
        "usb_stereo_pair.yaml", "/stereo/left", "/stereo/right", "image_rect",
        "left_camera_optical_frame",
        "two free-running USB cameras rectified by image_proc under /stereo/left|right"),
}

LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")

# (name, default, description, choices or None) -> DeclareLaunchArgument. An empty default
# means "not set here": the value then comes from the config files, so that a user's
# params_file is not silently overridden by a launch default.
LAUNCH_ARGUMENTS: tuple[tuple[str, str, str, list[str] | None], ...] = (
    ("camera", "generic",
     "Camera preset: sets the input topics, the rviz fixed frame and adds the preset's "
     "config file. " + "; ".join(f"{k}: {v.summary}" for k, v in CAMERA_PRESETS.items()),
     list(CAMERA_PRESETS)),
    ("params_file", "",
     "Extra parameter file loaded after the packaged config/s2m2_stereo.yaml and the "
     "camera preset's file (later files win); empty: none", None),
    ("namespace", "", "Namespace of the stereo node and its outputs", None),
    ("left_namespace", "",
     "Namespace of the left camera's image and camera_info (relative to `namespace` "
     "unless it starts with /); empty: the camera preset's (left for generic)", None),
    ("right_namespace", "",
     "Namespace of the right camera's image and camera_info; empty: the camera "
     "preset's (right for generic)", None),
    ("image_topic", "",
     "Image topic name inside the camera namespaces, e.g. image_rect_color for "
     "image_proc's colour output; empty: the camera preset's (image_rect for generic)", None),
    ("backend", "", "Stereo backend auto, torch, openvino, onnxruntime or sgbm; empty: "
     "from the config (auto)", ["", *BACKEND_CHOICES]),
    ("model", "", "S2M2 model size S, M, L or XL; empty: from the config (M)",
     ["", *MODEL_NAMES]),
    ("weights", "", "Checkpoint file; empty: from the config (the model's published file)",
     None),
    ("device", "", "auto, cpu, cuda or cuda:N; empty: from the config (auto)", None),
    ("precision", "", "auto, fp32, fp16 or bf16; empty: from the config (auto)",
     ["", "auto", "fp32", "fp16", "bf16"]),
    ("compile", "", "true to torch.compile the network; empty: from the config (false)", None),
    ("approximate_sync", "",
     "true to pair images by approximate stamps (unsynchronised cameras); empty: from the "
     "config (false, or the camera preset's)", None),
    ("node_parameters", "",
     "Any other node parameters, as 'name:=value name:=value' or a YAML mapping "
     "'{name: value}'; applied last", None),
    ("use_sim_time", "", "true to use /clock (bag playback); empty: false", None),
    ("log_level", "info", "Log level of the stereo node: debug, info, warn, error or fatal",
     None),
    ("use_rviz", "false", "Start rviz2 with the packaged display config", None),
    ("rviz_config", "", "rviz2 config file; empty: the packaged rviz/s2m2_stereo.rviz", None),
    ("fixed_frame", "",
     "rviz2 fixed frame, the left camera's optical frame (the frame_id of its images); "
     "empty: the camera preset's (left_camera_optical_frame for generic)", None),
)


@dataclass(frozen=True)
class LaunchPlan:
    """Everything the launch file needs to start the stereo node and, optionally, rviz2."""

    namespace: str
    parameters: list[Any]  # parameter file paths (str), then one dict of overrides
    remappings: list[tuple[str, str]]
    ros_arguments: list[str]
    rviz_arguments: list[str] | None = None  # None: do not start rviz2
    node_name: str = NODE_NAME


def default_params_file(share_dir: str) -> str:
    """Path of the packaged default configuration inside the package's share folder."""
    return os.path.join(share_dir, "config", DEFAULT_PARAMS_FILE)


def node_parameters(model: str = "", weights: str = "", device: str = "", precision: str = "",
                    compile: str = "", approximate_sync: str = "", extra: str = "",
                    backend: str = "") -> list[dict[str, Any]]:
    """Typed parameter overrides from launch argument strings; empty strings set nothing.

    Returns a list holding one dict (or no dict when nothing is set), ready to follow the
    parameter files in launch_ros' `parameters=`. `extra` is the pass-through string of
    `parse_parameter_string`; it may not contradict a named argument.
    """
    named = {"backend": backend, "model": model, "weights": weights, "device": device,
             "precision": precision, "compile": compile, "approximate_sync": approximate_sync}
    overrides: dict[str, Any] = {}
    for name, text in named.items():
        if text is None or str(text).strip() == "":
            continue
        if name == "weights":
            overrides[name] = os.path.expanduser(str(text).strip())
        else:
            overrides[name] = validate_parameter(name, str(text).strip())
    for name, value in parse_parameter_string(extra or "").items():
        if name in overrides and overrides[name] != value:
            raise ValueError(f"{name} is set to {overrides[name]!r} by its launch argument and "
                             f"to {value!r} in node_parameters; set it once")
        overrides[name] = value
    return [overrides] if overrides else []


def _namespace_prefix(namespace: str) -> str:
    # "left", "/stereo/left/" and "stereo//left" all become a clean prefix ending in "/".
    parts = [part for part in namespace.strip().split("/") if part]
    if not parts:
        raise ValueError("camera namespaces must not be empty (use e.g. left, /stereo/left)")
    return "/" * namespace.strip().startswith("/") + "/".join(parts) + "/"


def topic_remappings(left_namespace: str = "left", right_namespace: str = "right",
                     image_topic: str = "image_rect") -> list[tuple[str, str]]:
    """Remap the node's four relative inputs into the camera namespaces.

    As stereo_image_proc's launch: `left/image_rect` -> `<left>/<image_topic>`,
    `left/camera_info` -> `<left>/camera_info`, and the same for the right camera.
    """
    image_topic = image_topic.strip().strip("/")
    if not image_topic:
        raise ValueError("image_topic must not be empty (e.g. image_rect)")
    left = _namespace_prefix(left_namespace)
    right = _namespace_prefix(right_namespace)
    if left == right:
        raise ValueError(f"left and right camera namespaces are both {left_namespace!r}")
    return [
        ("left/image_rect", left + image_topic),
        ("left/camera_info", left + "camera_info"),
        ("right/image_rect", right + image_topic),
        ("right/camera_info", right + "camera_info"),
    ]


def launch_argument_defaults() -> dict[str, str]:
    """Launch argument name -> default string."""
    return {name: default for name, default, _description, _choices in LAUNCH_ARGUMENTS}


def package_executable(package: str, executable: str) -> str | None:
    """Where `ros2 run` and launch_ros find `executable` of `package`
    (<prefix>/lib/<package>/<executable> in the ament index); None when not installed."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    except ImportError:
        return None
    try:
        prefix = get_package_prefix(package)
    except (PackageNotFoundError, OSError):  # OSError: AMENT_PREFIX_PATH unset
        return None
    path = os.path.join(prefix, "lib", package, executable)
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


def _rviz_arguments(values: Mapping[str, str], preset: CameraPreset, share_dir: str) -> list[str]:
    # Checked here, before the launch starts anything: launch_ros would only find out when
    # it reaches the rviz2 action, with the stereo node already running.
    if package_executable(RVIZ_PACKAGE, RVIZ_PACKAGE) is None:
        raise ValueError(
            "use_rviz:=true, but rviz2 is not installed (no rviz2 executable in "
            "AMENT_PREFIX_PATH): install it (ros-<distro>-rviz2) or launch with "
            "use_rviz:=false; nothing was started")
    rviz_config = os.path.expanduser(values["rviz_config"].strip()) or os.path.join(
        share_dir, "rviz", RVIZ_CONFIG_FILE)
    if not os.path.isfile(rviz_config):
        raise ValueError(f"rviz_config: {rviz_config} does not exist")
    fixed_frame = values["fixed_frame"].strip() or preset.fixed_frame
    return ["-d", rviz_config, "-f", fixed_frame]


def build_launch_plan(arguments: Mapping[str, str], share_dir: str) -> LaunchPlan:
    """Turn resolved launch argument strings into the node (and rviz2) configuration.

    Parameter layering, later wins: packaged config/s2m2_stereo.yaml < the camera
    preset's file < params_file < the named launch arguments < node_parameters.
    Raises ValueError, one line, for anything that would fail once processes run
    (use_rviz without rviz2 installed included).
    """
    values = launch_argument_defaults()
    unknown = set(arguments) - set(values)
    if unknown:
        raise ValueError(f"unknown launch arguments: {', '.join(sorted(unknown))}")
    values.update({name: str(value) for name, value in arguments.items()})

    camera = values["camera"].strip()
    if camera not in CAMERA_PRESETS:
        raise ValueError(f"camera: {camera!r} is not one of {', '.join(CAMERA_PRESETS)}")
    preset = CAMERA_PRESETS[camera]

    files = [default_params_file(share_dir)]
    if preset.params_file:
        files.append(os.path.join(share_dir, "config", preset.params_file))
    params_file = values["params_file"].strip()
    if params_file:
        params_file = os.path.expanduser(params_file)
        if not os.path.isfile(params_file):
            raise ValueError(f"params_file: {params_file} does not exist")
        files.append(params_file)

    overrides = node_parameters(
        model=values["model"], weights=values["weights"], device=values["device"],
        precision=values["precision"], compile=values["compile"],
        approximate_sync=values["approximate_sync"], extra=values["node_parameters"],
        backend=values["backend"])
    if values["use_sim_time"].strip():
        use_sim_time = parse_bool(values["use_sim_time"], "use_sim_time")
        if overrides:
            overrides[0].setdefault("use_sim_time", use_sim_time)
        else:
            overrides = [{"use_sim_time": use_sim_time}]

    remappings = topic_remappings(
        values["left_namespace"].strip() or preset.left_namespace,
        values["right_namespace"].strip() or preset.right_namespace,
        values["image_topic"].strip() or preset.image_topic)

    log_level = values["log_level"].strip().lower()
    if log_level not in LOG_LEVELS:
        raise ValueError(f"log_level: {log_level!r} is not one of {', '.join(LOG_LEVELS)}")

    rviz_arguments = None
    if parse_bool(values["use_rviz"], "use_rviz"):
        rviz_arguments = _rviz_arguments(values, preset, share_dir)

    return LaunchPlan(
        namespace=values["namespace"].strip(),
        parameters=[*files, *overrides],
        remappings=remappings,
        ros_arguments=["--log-level", log_level],
        rviz_arguments=rviz_arguments,
    )
