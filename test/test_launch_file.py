# SPDX-License-Identifier: Apache-2.0
"""launch/stereo.launch.py with ROS 2's `launch`: its arguments, the actions it builds
and, where launch_pytest and an installed s2m2_ros exist, the node it brings up."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest

# launch.actions, not launch: without ROS, the repository's own launch/ folder imports as
# an empty namespace package called `launch`.
pytest.importorskip(
    "launch.actions", reason="ROS 2 `launch` is not installed (it is not on PyPI); run in a ROS 2 "
    "Jazzy environment")
pytest.importorskip(
    "launch_ros.actions", reason="ROS 2 `launch_ros` is not installed (it is not on PyPI)")

# Submodules, not `from launch import ...`: ruff would file the bare name under the
# repository's own launch/ folder.
from launch.actions import DeclareLaunchArgument, OpaqueFunction  # noqa: E402
from launch.launch_context import LaunchContext  # noqa: E402
from launch.launch_description import LaunchDescription  # noqa: E402
from launch.utilities import perform_substitutions  # noqa: E402

from s2m2_ros.launch_config import LAUNCH_ARGUMENTS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / "launch" / "stereo.launch.py"


def load_launch_module():
    spec = importlib.util.spec_from_file_location("s2m2_stereo_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def declarations(description: LaunchDescription) -> list[DeclareLaunchArgument]:
    return [e for e in description.entities if isinstance(e, DeclareLaunchArgument)]


def test_every_argument_is_declared_with_its_description():
    description = load_launch_module().generate_launch_description()
    declared = {arg.name: arg for arg in declarations(description)}
    assert list(declared) == [name for name, *_rest in LAUNCH_ARGUMENTS]
    context = LaunchContext()
    for name, default, text, choices in LAUNCH_ARGUMENTS:
        arg = declared[name]
        # launch appends " Valid choices are: [...]" to the description of a choice.
        assert arg.description.startswith(text.rstrip("."))
        assert perform_substitutions(context, arg.default_value) == default
        assert (arg.choices or None) == choices
    assert sum(isinstance(e, OpaqueFunction) for e in description.entities) == 1


def expand(arguments: dict[str, str]) -> list:
    """Run the declarations and the OpaqueFunction as `ros2 launch` would, without processes."""
    description = load_launch_module().generate_launch_description()
    context = LaunchContext()
    context.launch_configurations.update(arguments)
    for arg in declarations(description):
        arg.execute(context)  # fills in the defaults of the arguments not given
    [opaque] = [e for e in description.entities if isinstance(e, OpaqueFunction)]
    return opaque.execute(context) or []


def test_opaque_function_builds_the_stereo_node():
    from launch_ros.actions import Node

    actions = expand({"camera": "realsense_d4xx", "model": "S"})
    assert len(actions) == 1
    [node] = actions
    assert isinstance(node, Node)
    assert node.node_package == "s2m2_ros"
    assert node.node_executable == "stereo_node"


def test_use_rviz_adds_rviz2():
    actions = expand({"use_rviz": "true"})
    assert [(a.node_package, a.node_executable) for a in actions] == [
        ("s2m2_ros", "stereo_node"), ("rviz2", "rviz2")]


def test_bad_argument_fails_the_launch_with_the_reason():
    with pytest.raises(ValueError, match="S, M, L, XL"):
        expand({"model": "XXL"})


# ---- bring-up: launch_pytest with an installed package ------------------------------------

try:
    import launch_pytest
except ImportError:
    launch_pytest = None


def _installed_executable() -> str | None:
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    except ImportError:
        return None
    try:
        prefix = get_package_prefix("s2m2_ros")
    except PackageNotFoundError:
        return None
    path = os.path.join(prefix, "lib", "s2m2_ros", "stereo_node")
    return path if os.access(path, os.X_OK) else None


NAMESPACE = "launch_test"
INPUTS = {f"/{NAMESPACE}/cam_l/image_rect", f"/{NAMESPACE}/cam_l/camera_info",
          f"/{NAMESPACE}/cam_r/image_rect", f"/{NAMESPACE}/cam_r/camera_info"}
OUTPUTS = {f"/{NAMESPACE}/disparity", f"/{NAMESPACE}/depth", f"/{NAMESPACE}/points2",
           "/diagnostics"}

if launch_pytest is None:

    def test_launch_brings_up_the_node():
        pytest.skip("launch_pytest is not installed (ROS 2 package, not on PyPI)")

else:
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    @launch_pytest.fixture
    def stereo_launch():
        return LaunchDescription([
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
                launch_arguments={
                    "namespace": NAMESPACE, "left_namespace": "cam_l",
                    "right_namespace": "cam_r", "backend": "sgbm", "device": "cpu",
                    "approximate_sync": "true",
                    "node_parameters": "refine_iters:=2 status_period_s:=0.0",
                }.items(),
            ),
            launch_pytest.actions.ReadyToTest(),
        ])

    @pytest.mark.skipif(_installed_executable() is None,
                        reason="s2m2_ros is not installed in an ament prefix (colcon build "
                        "and source install/setup.bash first)")
    @pytest.mark.launch(fixture=stereo_launch)
    def test_launch_brings_up_the_node():
        import rclpy
        from rcl_interfaces.srv import GetParameters
        from rclpy.executors import SingleThreadedExecutor

        context = rclpy.Context()
        rclpy.init(context=context)
        probe = rclpy.create_node("launch_probe", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(probe)
        try:
            subscribed: set[str] = set()
            published: set[str] = set()
            deadline = time.monotonic() + 60.0  # the node imports torch: allow a slow start
            while time.monotonic() < deadline:
                if ("s2m2_stereo", f"/{NAMESPACE}") in probe.get_node_names_and_namespaces():
                    subscribed = {name for name, _types in
                                  probe.get_subscriber_names_and_types_by_node(
                                      "s2m2_stereo", f"/{NAMESPACE}")}
                    published = {name for name, _types in
                                 probe.get_publisher_names_and_types_by_node(
                                     "s2m2_stereo", f"/{NAMESPACE}")}
                    if subscribed >= INPUTS and published >= OUTPUTS:
                        break
                executor.spin_once(timeout_sec=0.2)
            assert subscribed >= INPUTS, f"subscriptions: {sorted(subscribed)}"
            assert published >= OUTPUTS, f"publishers: {sorted(published)}"

            client = probe.create_client(GetParameters,
                                         f"/{NAMESPACE}/s2m2_stereo/get_parameters")
            assert client.wait_for_service(timeout_sec=10.0)
            request = GetParameters.Request(
                names=["backend", "model", "refine_iters", "approximate_sync", "device"])
            future = client.call_async(request)
            executor.spin_until_future_complete(future, timeout_sec=10.0)
            assert future.done()
            backend, model, refine_iters, approximate_sync, device = future.result().values
            assert backend.string_value == "sgbm"  # launch argument
            assert model.string_value == "M"  # packaged config/s2m2_stereo.yaml
            assert refine_iters.integer_value == 2  # node_parameters pass-through
            assert approximate_sync.bool_value is True
            assert device.string_value == "cpu"
        finally:
            executor.shutdown()
            probe.destroy_node()
            rclpy.shutdown(context=context)
