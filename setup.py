"""pip build script for s2m2_ros (colcon builds CMakeLists.txt instead)."""

import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "s2m2_ros"

LAUNCHER_TEMPLATE = """#!/bin/sh
# s2m2_ros: ros2 run and ros2 launch look for executables in <prefix>/lib/s2m2_ros,
# pip installs console scripts in <prefix>/bin: run the one pip wrote there.
exec "$(dirname -- "$0")/../../bin/{name}" "$@"
"""


def ros_launchers(console_scripts: list[str], folder: str = "build/ros_launchers") -> list[str]:
    """Write a launcher for each console script into `folder`; their paths, for data_files."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for entry in console_scripts:
        name = entry.split("=")[0].strip()
        path = os.path.join(folder, name)
        temporary = f"{path}.{os.getpid()}.tmp"  # parallel builds never read half a file
        with open(temporary, "w", encoding="utf-8") as launcher:
            launcher.write(LAUNCHER_TEMPLATE.format(name=name))
        os.chmod(temporary, 0o755)
        os.replace(temporary, path)
        paths.append(path)
    return paths


SETUP = dict(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/rviz", glob("rviz/*.rviz")),
        (f"share/{PACKAGE}/msg", glob("msg/*.msg")),
    ],
    python_requires=">=3.10",
    install_requires=["setuptools", "numpy", "opencv-python-headless", "torch"],
    extras_require={
        "hub": ["huggingface_hub"],
        "demo": ["scikit-image", "rosbags"],
        "test": ["pytest"],
    },
    zip_safe=True,
    maintainer="s2m2_ros maintainers",
    maintainer_email="maintainers@s2m2-ros.dev",
    description="Dense stereo depth, confidence and occlusion for ROS 2 with the S2M2 network.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "stereo_node = s2m2_ros.node:main",
            "s2m2-infer = s2m2_ros.cli:main",
            "s2m2-export = s2m2_ros.export:main",
            "s2m2-download = s2m2_ros.zoo:download_main",
            "s2m2-demo = s2m2_ros.demo.run:main",
            "s2m2-bag = s2m2_ros.bag.cli:main",
            "stereo_source = s2m2_ros.demo.source_node:main",
            "stereo_recorder = s2m2_ros.demo.recorder_node:main",
        ],
    },
)

# The venv route (pip install .): ros2 run and ros2 launch find every console script
# in <prefix>/lib/s2m2_ros as they do after a colcon build.
SETUP["data_files"].append(
    (f"lib/{PACKAGE}", ros_launchers(SETUP["entry_points"]["console_scripts"])))
setup(**SETUP)
