# SPDX-License-Identifier: Apache-2.0
"""The stereo node's parameter table (`ParameterSpec`, `NODE_PARAMETERS`) and the checking
of parameter values given as text: launch arguments, 'name:=value' strings, YAML.

Pure Python, like `launch_config` that builds on it: no `launch`, no rclpy, and YAML only
imported when a value needs it. `node_config` declares the same table on the node.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MODEL_NAMES = ("S", "M", "L", "XL")
# The old name of the torch backend, still accepted (with a warning) so that existing
# configs and launch commands keep starting.
DEPRECATED_TORCH_ALIAS = "s2m2"
# s2m2_ros.backends.BACKEND_NAMES plus the alias (not imported: this module stays light).
BACKEND_CHOICES = ("auto", "torch", "openvino", "onnxruntime", "sgbm", DEPRECATED_TORCH_ALIAS)
DEVICE_PATTERN = r"auto|cpu|cuda|cuda:\d+"

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
    _spec("max_depth", 0.0, "points farther than this are invalid; 0: no limit; not below "
          "min_depth", unit="m", min_value=0.0),
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
    _spec("max_input_pixels", 4096 * 3072, "pairs with more pixels per image are rejected "
          "(the network's memory grows with the image)", unit="pixels", min_value=256),
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
        readable = spec.pattern.replace("|", ", ").replace(r"\d+", "N")  # no regex for users
        raise ValueError(f"{name}: {value!r} does not match {readable} (N a CUDA device index)")
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
