# SPDX-License-Identifier: Apache-2.0
"""The installed package: ament index, share files and console scripts, on both routes."""

from __future__ import annotations

import ast
import importlib
import re
import shutil
import subprocess
import sys
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
    text = (REPO / "CMakeLists.txt").read_text()
    block = re.search(r"set\(_console_scripts(.*?)\)", text, re.S)
    assert block, "CMakeLists.txt has no _console_scripts list"
    pairs = (entry.split("=") for entry in re.findall(r'"([^"]+)"', block.group(1)))
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


def test_non_editable_pip_install_puts_scripts_in_bin_and_share_files_in_share(tmp_path):
    """`pip install .` (a wheel) ignores setup.cfg's colcon-only script folder."""
    # setuptools builds in the source folder: use a copy, so that concurrent runs
    # and the checkout's build/ folder stay out of each other's way.
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns(".*", "__pycache__", "build", "*.egg-info", "test")
    shutil.copytree(REPO, source, ignore=ignore)
    prefix = tmp_path / "prefix"
    # --ignore-installed: without it pip uninstalls the venv's editable s2m2_ros first.
    pip_install = [sys.executable, "-m", "pip", "install", "--quiet", "--ignore-installed"]
    result = subprocess.run(
        [*pip_install, "--no-deps", "--no-build-isolation", "--prefix", str(prefix), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    scripts = {path.name for path in (prefix / "bin").iterdir()}
    assert set(_setup_py_console_scripts()) <= scripts
    assert not (prefix / "lib" / "s2m2_ros").exists()
    share = prefix / "share" / "s2m2_ros"
    assert (share / "package.xml").is_file()
    assert (prefix / "share/ament_index/resource_index/packages/s2m2_ros").is_file()
    for folder in SHARE_DIRS:
        installed = {path.name for path in (share / folder).glob("*")}
        assert {path.name for path in _repo_files(folder)} <= installed
