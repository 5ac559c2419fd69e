# SPDX-License-Identifier: Apache-2.0
"""The stereo node's parameters on rclpy: declared with descriptors, checked, and
turned into what the node runs with (output settings, a backend).

The table itself (names, defaults, ranges) is `parameters.NODE_PARAMETERS`; the
bag tool uses `settings_from` and `build_backend` to run exactly as the node would.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterException
from rclpy.node import Node

from .backends import BackendError, StereoBackend, create_backend
from .geometry import ValidityThresholds
from .parameters import DEPRECATED_TORCH_ALIAS, NODE_PARAMETERS, ParameterSpec
from .pipeline import OUTPUTS, OutputSettings

# Parameters whose change would need a new backend or synchronizer: fixed after start.
RESTART_PARAMETERS = frozenset({
    "backend", "model", "weights", "weights_dir", "device", "precision", "compile",
    "approximate_sync", "approximate_sync_tolerance_seconds", "queue_size",
})


class StartupError(RuntimeError):
    """A configuration the node cannot start with (weights, device, parameters)."""


def parameter_descriptor(spec: ParameterSpec) -> ParameterDescriptor:
    """The descriptor ``spec`` is declared with: description with unit, choices and
    pattern as constraints, numeric range, read-only for restart parameters."""
    constraints = []
    if spec.choices:
        constraints.append("one of: " + ", ".join(spec.choices))
    if spec.pattern:
        constraints.append(f"matches: {spec.pattern}")
    descriptor = ParameterDescriptor(
        description=spec.description + (f" [{spec.unit}]" if spec.unit else ""),
        additional_constraints="; ".join(constraints),
        read_only=spec.name in RESTART_PARAMETERS,
    )
    if spec.type is float and spec.min_value is not None:
        upper = spec.max_value if spec.max_value is not None else sys.float_info.max
        descriptor.floating_point_range = [
            FloatingPointRange(from_value=float(spec.min_value), to_value=float(upper), step=0.0)]
    if spec.type is int and spec.min_value is not None:
        upper = spec.max_value if spec.max_value is not None else 2**31 - 1
        descriptor.integer_range = [
            IntegerRange(from_value=int(spec.min_value), to_value=int(upper), step=0)]
    return descriptor


def check_value(spec: ParameterSpec, value: Any) -> str | None:
    """Why ``value`` is not acceptable for ``spec`` (ranges are left to the descriptor)."""
    if spec.choices and value not in spec.choices:
        return f"{spec.name} must be one of {', '.join(spec.choices)}, got {value!r}"
    if spec.pattern and not re.fullmatch(spec.pattern, str(value)):
        return f"{spec.name} must match {spec.pattern}, got {value!r}"
    return None


def declare_parameters(node: Node) -> dict[str, Any]:
    """Declare every parameter of NODE_PARAMETERS on ``node``; their values by name.

    Raises StartupError for an override of the wrong type or range, or a value
    `check_value` refuses.
    """
    for spec in NODE_PARAMETERS:
        try:
            node.declare_parameter(spec.name, spec.default, parameter_descriptor(spec))
        except ParameterException as error:  # an override of the wrong type or range
            # rclpy's text ends in ": <name>" and may wrap the reason; keep the reason.
            reason = str(error).removesuffix(f": {spec.name}").split("Reason: ", 1)[-1]
            raise StartupError(f"parameter {spec.name}: {reason}") from None
    params = {spec.name: node.get_parameter(spec.name).value for spec in NODE_PARAMETERS}
    for spec in NODE_PARAMETERS:
        problem = check_value(spec, params[spec.name])
        if problem:
            raise StartupError(problem)
    return params


def settings_from(params: dict[str, Any]) -> OutputSettings:
    """The settings of ``params``; ValueError with the reason for a bad combination."""
    if 0.0 < params["max_depth"] < params["min_depth"]:
        raise ValueError(f"min_depth ({params['min_depth']:g} m) is greater than "
                         f"max_depth ({params['max_depth']:g} m): no pixel could be "
                         "valid (max_depth 0 means no limit)")
    thresholds = ValidityThresholds(
        confidence_threshold=params["confidence_threshold"],
        occlusion_threshold=params["occlusion_threshold"],
        min_depth=params["min_depth"], max_depth=params["max_depth"],
        allow_negative=params["allow_negative"])
    outputs = frozenset(name for name in OUTPUTS if params[f"publish_{name}"])
    return OutputSettings(thresholds=thresholds, depth_encoding=params["depth_encoding"],
                          use_color=params["use_color"], dense_cloud=params["dense_cloud"],
                          outputs=outputs, max_input_pixels=params["max_input_pixels"])


def build_backend(params: dict[str, Any]) -> StereoBackend:
    """The backend the parameters ask for; raises StartupError with a clear reason."""
    # "s2m2" is the old name of the torch backend, kept so existing configs still start.
    name = "torch" if params["backend"] == DEPRECATED_TORCH_ALIAS else params["backend"]
    try:
        return create_backend(
            name, model=params["model"], weights=params["weights"] or None,
            weights_dir=params["weights_dir"] or None,
            allow_negative=params["allow_negative"], refine_iters=params["refine_iters"],
            device=params["device"], precision=params["precision"],
            compile=params["compile"], input_scale=params["input_scale"])
    except BackendError as error:
        raise StartupError(str(error)) from None
