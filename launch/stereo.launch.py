# SPDX-License-Identifier: Apache-2.0
"""Start the S2M2 stereo node (and optionally rviz2) on a rectified stereo pair.

    ros2 launch s2m2_ros stereo.launch.py
    ros2 launch s2m2_ros stereo.launch.py camera:=realsense_d4xx model:=S use_rviz:=true
    ros2 launch s2m2_ros stereo.launch.py namespace:=stereo left_namespace:=cam_l \
        right_namespace:=cam_r node_parameters:='refine_iters:=4 max_depth:=10.0'

`ros2 launch s2m2_ros stereo.launch.py --show-args` lists every argument. The logic lives
in s2m2_ros.launch_config (tested without `launch`); this file only wires it up.
"""

from __future__ import annotations

import os
from typing import Any


def _share_dir() -> str:
    from ament_index_python.packages import (
        PackageNotFoundError,
        get_package_share_directory,
    )

    try:
        return get_package_share_directory("s2m2_ros")
    except (PackageNotFoundError, OSError):  # OSError: AMENT_PREFIX_PATH unset
        # Run from a source checkout: launch/ sits beside config/ and rviz/ there too.
        return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def launch_setup(context: Any, *args: Any, **kwargs: Any) -> list[Any]:
    """OpaqueFunction body: resolve the arguments and build the node actions."""
    from launch_ros.actions import Node

    from s2m2_ros.launch_config import (
        EXECUTABLE,
        LAUNCH_ARGUMENTS,
        PACKAGE,
        build_launch_plan,
    )

    arguments = {name: context.launch_configurations.get(name, default)
                 for name, default, _description, _choices in LAUNCH_ARGUMENTS}
    plan = build_launch_plan(arguments, _share_dir())

    actions: list[Any] = [
        Node(
            package=PACKAGE,
            executable=EXECUTABLE,
            name=plan.node_name,
            namespace=plan.namespace,
            parameters=plan.parameters,
            remappings=plan.remappings,
            ros_arguments=plan.ros_arguments,
            output="screen",
            emulate_tty=True,
        )
    ]
    if plan.rviz_arguments is not None:
        # Same namespace as the node: the rviz config's relative topics (points2, depth,
        # confidence, occlusion) then resolve to this node's outputs.
        actions.append(
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                namespace=plan.namespace,
                arguments=plan.rviz_arguments,
                output="screen",
            )
        )
    return actions


def generate_launch_description() -> Any:
    """Declare every argument of s2m2_ros.launch_config.LAUNCH_ARGUMENTS, then set up."""
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.launch_description import LaunchDescription

    from s2m2_ros.launch_config import LAUNCH_ARGUMENTS

    declarations = [
        DeclareLaunchArgument(name, default_value=default, description=description,
                              **({"choices": choices} if choices else {}))
        for name, default, description, choices in LAUNCH_ARGUMENTS
    ]
    return LaunchDescription([*declarations, OpaqueFunction(function=launch_setup)])
