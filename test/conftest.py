# SPDX-License-Identifier: Apache-2.0
"""Shared fixtures: the repository, ../shared, and a ROS environment for subprocesses."""

from __future__ import annotations

import os
import random
import re
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# A test module that names any of these starts rclpy or a ROS process, or reads
# the ament index: all its tests get the `ros` marker (run on every ROS distro).
_USES_ROS = re.compile(r"\b(rclpy|node_harness|ros_env|ament_index_python)\b")


def _apply_ros_defaults() -> None:
    """Keep DDS on this machine and off other runs' domains, however pytest was started.

    scripts/run_tests.sh sets these (and runs inside a private network
    namespace); a bare `pytest` gets the same safety net here, before any
    test imports rclpy.
    """
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
    os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    # The pip route installs share files and the ament index into the venv.
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    if sys.prefix not in prefixes:
        os.environ["AMENT_PREFIX_PATH"] = os.pathsep.join([sys.prefix, *prefixes])


_apply_ros_defaults()


def _keep_caches_out_of_home() -> None:
    """Exported graphs and compiled kernels go to a folder of this run, not the user's
    ~/.cache (node processes inherit it); tests that check caching set their own."""
    import atexit
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="s2m2_ros_test_cache_")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ.setdefault("S2M2_ENGINE_CACHE", os.path.join(folder, "engines"))
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(folder, "inductor"))


_keep_caches_out_of_home()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "ros: the module starts rclpy or a ROS process (set automatically)")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    uses_ros: dict[Path, bool] = {}
    for item in items:
        if item.path not in uses_ros:
            uses_ros[item.path] = bool(_USES_ROS.search(item.path.read_text()))
        if uses_ros[item.path]:
            item.add_marker(pytest.mark.ros)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository checkout the tests belong to."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only ../shared folder beside the repository; skips when absent."""
    path = REPO_ROOT.parent / "shared"
    if not path.is_dir():
        pytest.skip(f"{path} is absent (shared material lies beside the repository)")
    return path


@pytest.fixture
def ros_env() -> dict[str, str]:
    """Environment for a subprocess that joins this test's ROS graph.

    Same domain, RMW and discovery range as the test process; unbuffered
    output so a failing child's last words reach the test.
    """
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def make_ament_prefix(prefix: Path, package: str, executables: dict[str, str]) -> Path:
    """An ament prefix holding `package` with shell-script `executables` (name -> body) in
    lib/<package>, as a colcon or apt install lays it out."""
    marker = prefix / "share" / "ament_index" / "resource_index" / "packages" / package
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("")
    (prefix / "share" / package).mkdir(parents=True, exist_ok=True)
    for name, body in executables.items():
        path = prefix / "lib" / package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    return prefix


@pytest.fixture
def rviz2_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An rviz2 package (an executable that only sleeps) on AMENT_PREFIX_PATH."""
    prefix = make_ament_prefix(tmp_path / "rviz2_prefix", "rviz2", {"rviz2": "exec sleep 600"})
    paths = [str(prefix), *[p for p in os.environ["AMENT_PREFIX_PATH"].split(os.pathsep) if p]]
    monkeypatch.setenv("AMENT_PREFIX_PATH", os.pathsep.join(paths))
    return prefix


@pytest.fixture
def rviz2_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """AMENT_PREFIX_PATH without any prefix that holds rviz2 (a full install may have it)."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    paths = [p for p in os.environ["AMENT_PREFIX_PATH"].split(os.pathsep) if p]
    while True:
        try:
            holder = get_package_prefix("rviz2")
        except PackageNotFoundError:
            return
        remaining = [p for p in paths if os.path.realpath(p) != os.path.realpath(holder)]
        if remaining == paths:
            pytest.skip(f"rviz2 is installed in {holder}, which cannot be hidden")
        paths = remaining
        monkeypatch.setenv("AMENT_PREFIX_PATH", os.pathsep.join(paths))
