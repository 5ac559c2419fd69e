# SPDX-License-Identifier: Apache-2.0
"""launch/stereo.launch.py with ROS 2's `launch`: its arguments, the actions it builds,
how a bad argument fails, and, where launch_pytest, the `ros2` command line and an
installed s2m2_ros exist, what `ros2 launch` does with it and the node it brings up."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

# launch.actions, not launch: without ROS, the repository's own launch/ folder imports as
# an empty namespace package called `launch`.
pytest.importorskip(
    "launch.actions", reason="ROS 2 `launch` is not installed (it is not on PyPI); these tests "
    "run in a full ROS 2 install (a sourced colcon workspace, or the wheels plus launch sources)")
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


def test_use_rviz_adds_rviz2(rviz2_installed):
    actions = expand({"use_rviz": "true"})
    assert [(a.node_package, a.node_executable) for a in actions] == [
        ("s2m2_ros", "stereo_node"), ("rviz2", "rviz2")]


def test_use_rviz_without_rviz2_builds_no_action(rviz2_missing):
    with pytest.raises(ValueError, match="rviz2 is not installed"):
        expand({"use_rviz": "true"})


def test_a_value_outside_the_choices_is_refused_by_launch_itself():
    # DeclareLaunchArgument checks `choices` before the OpaqueFunction runs: launch's
    # own message, as `ros2 launch` prints it.
    with pytest.raises(RuntimeError, match=r'Argument "model" provided value "XXL" is not '
                       r"valid\. Valid options are: \['', 'S', 'M', 'L', 'XL'\]"):
        expand({"model": "XXL"})


@pytest.mark.parametrize(("arguments", "reason"), [
    ({"device": "gpu"}, "device: 'gpu' does not match auto, cpu, cuda, cuda:N (N a CUDA"),
    ({"node_parameters": "refine_iters:=99"}, "refine_iters: 99 is above the maximum 16"),
    ({"camera": "generic", "left_namespace": "/x", "right_namespace": "/x"},
     "left and right camera namespaces are both '/x'"),
])
def test_a_bad_value_fails_in_the_opaque_function_with_the_reason(arguments, reason):
    with pytest.raises(ValueError) as error:
        expand(arguments)
    assert reason in str(error.value)


# ---- `ros2 launch`: the command line with the installed package ------------------------------

def _ros2_command() -> str | None:
    """The `ros2` command of this environment, where ros2cli and ros2launch are installed."""
    if importlib.util.find_spec("ros2launch") is None:
        return None
    beside_python = Path(sys.executable).parent / "ros2"
    return str(beside_python) if beside_python.is_file() else shutil.which("ros2")


def _installed_launcher() -> str | None:
    from s2m2_ros.launch_config import package_executable

    return package_executable("s2m2_ros", "stereo_node")


def _processes_mentioning(marker: str) -> list[str]:
    """Command lines of this machine's live processes that contain ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # exited meanwhile
            continue
        if marker in command:
            found.append(f"{entry.name}: {command.strip()}")
    return found


needs_ros2_launch = pytest.mark.skipif(
    _ros2_command() is None or _installed_launcher() is None,
    reason="needs the `ros2` command with ros2launch (ROS 2 source, not on PyPI) and s2m2_ros "
    "installed in an ament prefix (lib/s2m2_ros/stereo_node)")


def ros2_launch(arguments: dict[str, str], timeout_s: float = 120.0) -> tuple[int, str]:
    """`ros2 launch s2m2_ros stereo.launch.py name:=value ...`: exit status and output."""
    command = [_ros2_command(), "launch", "s2m2_ros", "stereo.launch.py",
               *[f"{name}:={value}" for name, value in arguments.items()]]
    env = dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, text=True, env=env,
                               start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # whatever the launch started too
        output, _ = process.communicate()
        raise AssertionError(
            f"ros2 launch did not exit within {timeout_s} s:\n{output}") from None
    return process.returncode, output


@needs_ros2_launch
def test_ros2_launch_refuses_a_value_outside_the_choices():
    status, output = ros2_launch({"model": "XXL"})
    assert status != 0, output
    assert ('Argument "model" provided value "XXL" is not valid. Valid options are: '
            "['', 'S', 'M', 'L', 'XL']") in output
    assert "process started" not in output, output


@needs_ros2_launch
def test_ros2_launch_use_rviz_without_rviz2_fails_and_starts_nothing():
    from s2m2_ros.launch_config import package_executable

    if package_executable("rviz2", "rviz2") is not None:
        # Hiding its prefix from AMENT_PREFIX_PATH would hide the RMW and rclpy with it.
        pytest.skip("rviz2 is installed here")
    namespace = f"rviz_check_{uuid.uuid4().hex[:8]}"  # names this launch's processes
    status, output = ros2_launch({"use_rviz": "true", "namespace": namespace,
                                  "backend": "sgbm", "device": "cpu"})
    assert status != 0, output
    [line] = [line for line in output.splitlines() if "rviz2 is not installed" in line]
    assert "use_rviz:=false" in line
    assert "process started" not in output, output
    assert _processes_mentioning(namespace) == []


# ---- bring-up: launch_pytest with an installed package ------------------------------------

try:
    import launch_pytest
except ImportError:
    launch_pytest = None

NAMESPACE = "launch_test"
# The cameras in their own namespaces, remapped by the launch arguments.
CAMERA_NAMESPACES = {"left_namespace": "cam_l", "right_namespace": "cam_r"}
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

    @pytest.fixture(scope="module")
    def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
        from node_harness import write_tiny_checkpoint

        return write_tiny_checkpoint(tmp_path_factory.mktemp("weights") / "tiny.pth")

    @launch_pytest.fixture
    def stereo_launch(tiny_checkpoint):
        return LaunchDescription([
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
                launch_arguments={
                    "namespace": NAMESPACE, **CAMERA_NAMESPACES,
                    "weights": str(tiny_checkpoint), "device": "cpu",
                    "approximate_sync": "true",
                    "node_parameters": "refine_iters:=2 status_period_s:=0.0",
                }.items(),
            ),
            launch_pytest.actions.ReadyToTest(),
        ])

    def _wait_for_graph(probe, executor) -> tuple[set[str], set[str]]:
        subscribed: set[str] = set()
        published: set[str] = set()
        deadline = time.monotonic() + 90.0  # the node imports torch: allow a slow start
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
        return subscribed, published

    @pytest.mark.skipif(_installed_launcher() is None,
                        reason="s2m2_ros is not installed in an ament prefix (no "
                        "lib/s2m2_ros/stereo_node; colcon build, or pip install .)")
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
            subscribed, published = _wait_for_graph(probe, executor)
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
            assert backend.string_value == "auto"  # packaged config/s2m2_stereo.yaml
            assert model.string_value == "M"  # idem; the weights file decides the network
            assert refine_iters.integer_value == 2  # node_parameters pass-through
            assert approximate_sync.bool_value is True  # named launch argument
            assert device.string_value == "cpu"
        finally:
            executor.shutdown()
            probe.destroy_node()
            rclpy.shutdown(context=context)

    @pytest.mark.skipif(_installed_launcher() is None,
                        reason="s2m2_ros is not installed in an ament prefix (no "
                        "lib/s2m2_ros/stereo_node; colcon build, or pip install .)")
    @pytest.mark.launch(fixture=stereo_launch)
    def test_launched_node_answers_a_stereo_pair():
        from node_harness import (
            HEIGHT,
            WIDTH,
            StereoRig,
            image_array,
            pair_messages,
            textured_pair,
        )

        # The launch remapped the node's inputs to cam_l/cam_r: the rig's cameras go there.
        rig = StereoRig(NAMESPACE, output_topics=("disparity",),
                        camera_namespaces=(CAMERA_NAMESPACES["left_namespace"],
                                           CAMERA_NAMESPACES["right_namespace"]))
        try:
            left, right = textured_pair()
            deadline = time.monotonic() + 120.0
            while not rig.inputs_matched() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert rig.inputs_matched(), "the launched node never subscribed to the cameras"
            outputs = rig.round_trip(pair_messages(left, right, rig.new_stamp()),
                                     topics=("disparity",), timeout_s=90.0)
            disparity = image_array(outputs["disparity"].image)
            assert disparity.shape == (HEIGHT, WIDTH)
            assert outputs["disparity"].header.frame_id == "left_camera_optical_frame"
        finally:
            rig.close()
