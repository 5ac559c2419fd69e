# SPDX-License-Identifier: Apache-2.0
"""Launch logic without `launch`: the node's parameter table, camera presets, launch
arguments, and the functions that turn launch strings into node parameters and remaps.

`launch/stereo.launch.py` is a thin shell around `build_launch_plan`; everything that can
go wrong with a launch argument is decided (and tested) here.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PACKAGE = "s2m2_ros"
EXECUTABLE = "stereo_node"
NODE_NAME = "s2m2_stereo"
DEFAULT_PARAMS_FILE = "s2m2_stereo.yaml"
RVIZ_CONFIG_FILE = "s2m2_stereo.rviz"

MODEL_NAMES = ("S", "M", "L", "XL")
# The old name of the torch backend, still accepted (with a warning) so that existing
# configs and launch commands keep starting.
DEPRECATED_TORCH_ALIAS = "s2m2"
# s2m2_ros.backends.BACKEND_NAMES plus the alias (not imported: this module stays light).
BACKEND_CHOICES = ("auto", "torch", "openvino", "onnxruntime", "sgbm", DEPRECATED_TORCH_ALIAS)
DEVICE_PATTERN = r"auto|cpu|cuda|cuda:\d+"

# The node's relative input topic names: what `topic_remappings` maps onto the cameras.
INPUT_TOPICS = ("left/image_rect", "right/image_rect", "left/camera_info", "right/camera_info")

# QoS policies rclpy's QoSOverridingOptions.with_default_policies() declares for a
# subscription (REP 2003); the node is expected to use those defaults.
QOS_OVERRIDE_POLICIES = ("reliability", "history", "depth")

# Parameters every rclpy node has; launch arguments and `node_parameters` may set them.
STANDARD_PARAMETERS = {"use_sim_time": bool}

_BOOL_WORDS = {
    "true": True, "1": True, "yes": True, "on": True,
    "false": False, "0": False, "no": False, "off": False,
}


@dataclass(frozen=True)
class ParameterSpec:
    """One node parameter: its type, default, meaning, unit and allowed values."""

    name: str
    type: type
    default: Any
    description: str
    unit: str = ""
    choices: tuple[str, ...] = ()
    pattern: str = ""
    min_value: float | None = None
    max_value: float | None = None


def _spec(name: str, default: Any, description: str, **kwargs: Any) -> ParameterSpec:
    return ParameterSpec(name, type(default), default, description, **kwargs)


# THE parameter list of the stereo node. The default config documents each of these and
# the tests hold config/*.yaml to the names, types and ranges below; the node can
# build its ParameterDescriptors from the same table.
NODE_PARAMETERS: tuple[ParameterSpec, ...] = (
    _spec("backend", "auto", "stereo backend: auto (torch with CUDA, else openvino when "
          "installed, else torch), torch, openvino or onnxruntime (the S2M2 network), or "
          f"sgbm (classical OpenCV SGBM); {DEPRECATED_TORCH_ALIAS} is a deprecated name of torch",
          choices=BACKEND_CHOICES),
    _spec("model", "M", "S2M2 model size; larger is more accurate and slower",
          choices=MODEL_NAMES),
    _spec("weights", "", "checkpoint file; empty: the model's published file from "
          "weights_dir or the download cache"),
    _spec("weights_dir", "", "folder searched for checkpoints; empty: the default cache"),
    _spec("device", "auto", "compute device: auto (CUDA when available), cpu, cuda or cuda:N",
          pattern=DEVICE_PATTERN),
    _spec("precision", "auto", "numeric precision of the network; auto: bf16/fp16 on CUDA "
          "where supported, fp32 on CPU", choices=("auto", "fp32", "fp16", "bf16")),
    _spec("compile", False, "torch.compile the network (slow first frame, faster after)"),
    _spec("refine_iters", 3, "iterations of the refinement stage", min_value=1, max_value=16),
    _spec("allow_negative", False, "allow negative disparities (cameras converging or "
          "calibrated with a shifted principal point)"),
    _spec("input_scale", 1.0, "scale images by this factor before the network; outputs are "
          "returned at input resolution", unit="factor", min_value=0.1, max_value=1.0),
    _spec("confidence_threshold", 0.1, "pixels with confidence below this are invalid in "
          "depth and the point cloud", unit="0..1", min_value=0.0, max_value=1.0),
    _spec("occlusion_threshold", 0.5, "pixels with visibility below this are occluded and "
          "invalid in depth and the point cloud", unit="0..1", min_value=0.0, max_value=1.0),
    _spec("min_depth", 0.0, "points nearer than this are invalid", unit="m", min_value=0.0),
    _spec("max_depth", 0.0, "points farther than this are invalid; 0: no limit", unit="m",
          min_value=0.0),
    _spec("depth_encoding", "32FC1", "depth image encoding: 32FC1 in metres (NaN invalid) or "
          "16UC1 in millimetres (0 invalid), as depth_image_proc", choices=("32FC1", "16UC1")),
    _spec("use_color", True, "colour the point cloud from the left image (rgb field)"),
    _spec("dense_cloud", False, "publish only valid points (unorganized) instead of an "
          "organized H x W cloud with NaN for invalid pixels"),
    _spec("approximate_sync", False, "pair images with approximately equal stamps instead "
          "of identical stamps"),
    _spec("approximate_sync_tolerance_seconds", 0.0, "with approximate_sync, the largest "
          "stamp difference in a pair; 0: no bound (as stereo_image_proc)", unit="s",
          min_value=0.0),
    _spec("queue_size", 5, "synchronizer and subscription queue length", unit="messages",
          min_value=1, max_value=100),
    _spec("publish_disparity", True, "publish stereo_msgs/DisparityImage on disparity"),
    _spec("publish_depth", True, "publish depth and depth/camera_info"),
    _spec("publish_confidence", True, "publish the confidence image (32FC1, 0..1)"),
    _spec("publish_occlusion", True, "publish the occlusion image (32FC1, 1 = occluded)"),
    _spec("publish_points", True, "publish the point cloud on points2"),
    _spec("status_period_s", 5.0, "period of the throughput/latency log line; 0: never",
          unit="s", min_value=0.0),
    _spec("max_latency_s", 1.0, "diagnostics WARN when the end-to-end latency exceeds this",
          unit="s", min_value=0.001),
    _spec("input_timeout_s", 3.0, "diagnostics ERROR when an input has been silent this long",
          unit="s", min_value=0.1),
)

PARAMETERS_BY_NAME: dict[str, ParameterSpec] = {spec.name: spec for spec in NODE_PARAMETERS}


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


def parse_bool(text: str | bool, name: str = "value") -> bool:
    """Read a launch-style boolean ('true', 'False', '1', 'no', ...)."""
    if isinstance(text, bool):
        return text
    word = str(text).strip().lower()
    if word not in _BOOL_WORDS:
        raise ValueError(f"{name}: expected true or false, got {text!r}")
    return _BOOL_WORDS[word]


def _unknown_name_error(name: str) -> ValueError:
    known = [*PARAMETERS_BY_NAME, *STANDARD_PARAMETERS]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ValueError(
        f"unknown node parameter {name!r}{hint}; known: {', '.join(sorted(known))}, "
        "and qos_overrides.<topic>.subscription.<policy>")


def _validate_qos_override(name: str, value: Any) -> Any:
    match = re.fullmatch(r"qos_overrides\.(/[^.]+)\.(subscription|publisher)(_\w+)?\.(\w+)",
                         name)
    if match is None:
        raise ValueError(
            f"{name!r}: QoS overrides are qos_overrides.<fully qualified topic>."
            "subscription.<policy>, e.g. qos_overrides./left/image_rect.subscription."
            "reliability")
    policy = match.group(4)
    if policy not in QOS_OVERRIDE_POLICIES:
        raise ValueError(f"{name!r}: policy {policy!r} is not overridable; use one of "
                         f"{', '.join(QOS_OVERRIDE_POLICIES)}")
    allowed = {"reliability": ("reliable", "best_effort", "system_default"),
               "history": ("keep_last", "keep_all", "system_default")}.get(policy)
    if allowed is not None:
        if not isinstance(value, str) or value.lower() not in allowed:
            raise ValueError(f"{name}: expected one of {', '.join(allowed)}, got {value!r}")
        return value.lower()
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}: expected a non-negative integer, got {value!r}")
    return value


def validate_parameter(name: str, value: Any) -> Any:
    """Check `value` against the node's table and return it with the declared type.

    Launch strings are converted ('0.5' -> 0.5, 'true' -> True, 'xl' -> 'XL'); a value of
    the wrong kind or out of range raises ValueError naming the parameter and the rule.
    """
    if name.startswith("qos_overrides."):
        return _validate_qos_override(name, value)
    if name in STANDARD_PARAMETERS:
        return parse_bool(value, name)
    spec = PARAMETERS_BY_NAME.get(name)
    if spec is None:
        raise _unknown_name_error(name)

    if spec.type is bool:
        coerced: Any = parse_bool(value, name)
    elif spec.type is int:
        if isinstance(value, bool):
            raise ValueError(f"{name}: expected an integer, got {value!r}")
        try:
            coerced = int(value) if isinstance(value, int) else int(str(value).strip())
        except ValueError:
            raise ValueError(f"{name}: expected an integer, got {value!r}") from None
    elif spec.type is float:
        if isinstance(value, bool):
            raise ValueError(f"{name}: expected a number, got {value!r}")
        try:
            coerced = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected a number, got {value!r}") from None
    else:
        if isinstance(value, bool) or value is None or isinstance(value, dict | list):
            raise ValueError(f"{name}: expected a string, got {value!r}")
        coerced = str(value)

    if spec.choices:
        canonical = {choice.lower(): choice for choice in spec.choices}
        if str(coerced).lower() not in canonical:
            raise ValueError(f"{name}: {value!r} is not one of {', '.join(spec.choices)}")
        coerced = canonical[str(coerced).lower()]
    if spec.pattern and not re.fullmatch(spec.pattern, coerced):
        raise ValueError(f"{name}: {value!r} does not match {spec.pattern.replace('|', ', ')}"
                         " (N a CUDA device index)")
    if spec.min_value is not None and coerced < spec.min_value:
        raise ValueError(f"{name}: {coerced} is below the minimum {spec.min_value}")
    if spec.max_value is not None and coerced > spec.max_value:
        raise ValueError(f"{name}: {coerced} is above the maximum {spec.max_value}")
    return coerced


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    # Nested YAML (qos_overrides: {/topic: {subscription: ...}}) joins with '.', as rcl does.
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _yaml_scalar(text: str) -> Any:
    import yaml  # python3-yaml: a dependency of launch itself

    return yaml.safe_load(text) if text.strip() else ""


def parse_parameter_string(text: str) -> dict[str, Any]:
    """Parse 'name:=value name:=value' or a YAML mapping into typed, validated parameters."""
    text = text.strip()
    if not text:
        return {}
    raw: dict[str, Any]
    if text.startswith("{"):
        import yaml

        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ValueError(f"node_parameters: not valid YAML: {error}") from None
        if not isinstance(loaded, Mapping):
            raise ValueError("node_parameters: the YAML must be a mapping {name: value}")
        raw = _flatten(loaded)
    else:
        raw = {}
        for token in shlex.split(text):
            name, separator, value_text = token.partition(":=")
            if not separator or not name:
                raise ValueError(
                    f"node_parameters: {token!r} is not name:=value (write e.g. "
                    "'refine_iters:=4 input_scale:=0.5')")
            raw[name] = _yaml_scalar(value_text)
    return {name: validate_parameter(name, value) for name, value in raw.items()}


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


def build_launch_plan(arguments: Mapping[str, str], share_dir: str) -> LaunchPlan:
    """Turn resolved launch argument strings into the node (and rviz2) configuration.

    Parameter layering, later wins: packaged config/s2m2_stereo.yaml < the camera
    preset's file < params_file < the named launch arguments < node_parameters.
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
        rviz_config = os.path.expanduser(values["rviz_config"].strip()) or os.path.join(
            share_dir, "rviz", RVIZ_CONFIG_FILE)
        fixed_frame = values["fixed_frame"].strip() or preset.fixed_frame
        rviz_arguments = ["-d", rviz_config, "-f", fixed_frame]

    return LaunchPlan(
        namespace=values["namespace"].strip(),
        parameters=[*files, *overrides],
        remappings=remappings,
        ros_arguments=["--log-level", log_level],
        rviz_arguments=rviz_arguments,
    )
