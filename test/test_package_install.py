# SPDX-License-Identifier: Apache-2.0
"""The installed package: ament index, share files and console scripts, on both routes."""

from __future__ import annotations

import ast
import importlib
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from ament_index_python.packages import get_package_share_directory
from ament_index_python.resources import get_resource

REPO = Path(__file__).resolve().parent.parent
SHARE_DIRS = ("launch", "config", "rviz", "msg")


def _repo_files(folder: str) -> list[Path]:
    """Every file the repository keeps in a share folder (hidden files aside)."""
    path = REPO / folder
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))


def _setup_py_console_scripts() -> dict[str, str]:
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            entry_points = ast.literal_eval(node.value)
            pairs = (line.split("=") for line in entry_points["console_scripts"])
            return {name.strip(): target.strip() for name, target in pairs}
    raise AssertionError("setup.py has no entry_points")


def _cmake_console_scripts() -> dict[str, str]:
    """What CMakeLists.txt (the colcon route) installs launchers for: it reads setup.py
    through cmake/console_scripts.py."""
    assert "cmake/console_scripts.py" in (REPO / "CMakeLists.txt").read_text()
    result = subprocess.run(
        [sys.executable, str(REPO / "cmake" / "console_scripts.py"), str(REPO / "setup.py")],
        capture_output=True, text=True, check=True, timeout=60)
    pairs = (line.split("=") for line in result.stdout.splitlines())
    return {name: target for name, target in pairs}


def test_ament_index_finds_package_and_its_manifest():
    share = Path(get_package_share_directory("s2m2_ros"))
    _, prefix = get_resource("packages", "s2m2_ros")
    assert share == Path(prefix) / "share" / "s2m2_ros"
    assert (share / "package.xml").read_text() == (REPO / "package.xml").read_text()


@pytest.mark.parametrize("folder", SHARE_DIRS)
def test_repo_share_files_are_installed(folder):
    share = Path(get_package_share_directory("s2m2_ros")) / folder
    for source in _repo_files(folder):
        installed = share / source.name
        assert installed.is_file(), f"{source.relative_to(REPO)} is not installed in {share}"
        assert installed.read_bytes() == source.read_bytes(), f"{installed} is stale"


def test_colcon_launchers_match_setup_py_console_scripts():
    assert _cmake_console_scripts() == _setup_py_console_scripts()


@pytest.mark.parametrize("name", sorted(_setup_py_console_scripts()))
def test_console_script_is_on_path_and_resolves(name):
    if sys.prefix != sys.base_prefix:  # the pip/venv route
        assert (Path(sys.prefix) / "bin" / name).is_file(), f"{name} missing from the venv's bin/"
    module_name, function_name = _setup_py_console_scripts()[name].split(":")
    module_file = REPO / (module_name.replace(".", "/") + ".py")
    if not module_file.exists():
        pytest.skip(f"{module_name} is not written yet")
    assert callable(getattr(importlib.import_module(module_name), function_name))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel `pip install .` builds and installs, built from a copy of the checkout."""
    # setuptools builds in the source folder: use a copy, so that concurrent runs
    # and the checkout's build/ folder stay out of each other's way.
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    ignore = shutil.ignore_patterns(".*", "__pycache__", "build", "*.egg-info", "test")
    shutil.copytree(REPO, source, ignore=ignore)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(work / "dist"), str(source)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    [built] = (work / "dist").glob("s2m2_ros-*.whl")
    return built


def _pip_install_wheel(wheel: Path, *options: str, python: Path | None = None) -> None:
    """`pip install` the wheel, into `python`'s environment when given."""
    target = ["--python", str(python)] if python is not None else []
    # --ignore-installed: without it pip uninstalls the venv's editable s2m2_ros first.
    result = subprocess.run(
        [sys.executable, "-m", "pip", *target, "install", "--quiet", "--no-deps",
         "--ignore-installed", *options, str(wheel)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def _site_packages(prefix: Path) -> Path:
    return Path(sysconfig.get_path("purelib", vars={"base": str(prefix)}))


def test_pip_install_puts_scripts_in_bin_and_in_lib_s2m2_ros_and_share_files_in_share(
        wheel, tmp_path):
    prefix = tmp_path / "prefix"
    _pip_install_wheel(wheel, "--prefix", str(prefix))
    console_scripts = set(_setup_py_console_scripts())
    assert console_scripts <= {path.name for path in (prefix / "bin").iterdir()}
    # Where `ros2 run` and `ros2 launch` look, as after a colcon build.
    launchers = prefix / "lib" / "s2m2_ros"
    assert {path.name for path in launchers.iterdir()} == console_scripts
    for name in console_scripts:
        assert os.access(launchers / name, os.X_OK), f"lib/s2m2_ros/{name} is not executable"
    share = prefix / "share" / "s2m2_ros"
    assert (share / "package.xml").is_file()
    assert (prefix / "share/ament_index/resource_index/packages/s2m2_ros").is_file()
    for folder in SHARE_DIRS:
        installed = {path.name for path in (share / folder).glob("*")}
        assert {path.name for path in _repo_files(folder)} <= installed


def test_ros2_run_finds_the_pip_installed_launchers(wheel, tmp_path, monkeypatch):
    from s2m2_ros.launch_config import package_executable

    prefix = tmp_path / "prefix"
    _pip_install_wheel(wheel, "--prefix", str(prefix))
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    # The lookup of `ros2 run s2m2_ros <name>` and of launch_ros' Node(package, executable).
    for name in _setup_py_console_scripts():
        assert package_executable("s2m2_ros", name) == str(prefix / "lib" / "s2m2_ros" / name)


def test_launcher_in_a_fresh_venv_runs_that_venvs_console_script(wheel, tmp_path):
    venv = tmp_path / "venv"
    created = subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)],
                             capture_output=True, text=True, timeout=120)
    assert created.returncode == 0, created.stderr
    _pip_install_wheel(wheel, python=venv / "bin" / "python")
    for name in _setup_py_console_scripts():
        assert os.access(venv / "bin" / name, os.X_OK), f"bin/{name}"
        assert os.access(venv / "lib" / "s2m2_ros" / name, os.X_OK), f"lib/s2m2_ros/{name}"
    # The bare venv has s2m2_ros but not its dependencies (torch, numpy): lend it this
    # environment's on PYTHONPATH. Its own s2m2_ros is the only regular package of that
    # name on its path, so the one imported.
    launcher = venv / "lib" / "s2m2_ros" / "s2m2-download"
    result = subprocess.run(
        [str(launcher), "--help"], capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PYTHONPATH=sysconfig.get_path("purelib")))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("usage: s2m2-download"), result.stdout
