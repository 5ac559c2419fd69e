"""ament_python / pip build script for s2m2_ros."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "s2m2_ros"

setup(
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
            "stereo_source = s2m2_ros.demo.source_node:main",
            "stereo_recorder = s2m2_ros.demo.recorder_node:main",
        ],
    },
)
