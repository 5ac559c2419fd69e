# SPDX-License-Identifier: Apache-2.0
"""Check a colcon install space of s2m2_ros from a shell that sourced it.

Usage: python scripts/check_colcon_install.py INSTALL_BASE PACKAGE_SOURCE

Checks that the package and its generated StereoStatus message import from the
install space (not from a checkout or an editable install) and round-trip
through rclpy's serialization, that the ament index finds the package and its
share files equal the sources, and that every console script of setup.py is a
launcher in lib/s2m2_ros that starts: argument-parsing tools answer ``--help``
with their usage; ROS nodes (which leave ``--help`` to rclpy, i.e. ignore it)
must bring up rclpy and log through it, and end on SIGINT without a traceback
(their exit codes say what they did: the node without weights exits 1, the
recorder that recorded nothing 3). Prints every problem found; exits 1 if any.
"""

from __future__ import annotations

import ast
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PACKAGE = "s2m2_ros"
SHARE_FOLDERS = ("launch", "config", "rviz", "msg")
# One rclpy log line, as the default console format writes it.
ROS_LOG_LINE = re.compile(r"^\[(DEBUG|INFO|WARN|ERROR|FATAL)\] \[\d+\.\d+\] \[", re.M)
LAUNCHER_TIMEOUT_S = 120  # importing torch on a loaded 2-core machine takes a while


def console_scripts(setup_py: Path) -> list[str]:
    """The console script names that setup.py declares (the launchers colcon installs)."""
    for node in ast.walk(ast.parse(setup_py.read_text())):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            entry_points = ast.literal_eval(node.value)
            return sorted(line.split("=")[0].strip() for line in entry_points["console_scripts"])
    raise SystemExit(f"{setup_py} declares no entry_points")


def check_imports(install: Path) -> list[str]:
    from rclpy.serialization import deserialize_message, serialize_message
    from s2m2_ros.msg import StereoStatus

    import s2m2_ros

    problems = []
    for module in (s2m2_ros, sys.modules[StereoStatus.__module__]):
        if install.resolve() not in Path(module.__file__).resolve().parents:
            problems.append(f"{module.__name__} imported from {module.__file__}, not {install}")
    status = StereoStatus(model="colcon", frames_processed=2**40 + 3, valid_fraction=0.5)
    status.header.frame_id = "left_camera_optical_frame"
    copy = deserialize_message(serialize_message(status), StereoStatus)
    if copy != status:
        problems.append(f"StereoStatus did not survive serialization: {copy}")
    return problems


def check_share(install: Path, source: Path) -> list[str]:
    from ament_index_python.packages import get_package_share_directory

    share = Path(get_package_share_directory(PACKAGE))
    expected = install / PACKAGE / "share" / PACKAGE
    if share.resolve() != expected.resolve():
        return [f"ament index finds {PACKAGE} in {share}, not in {expected}"]
    problems = []
    files = [source / "package.xml"]
    for folder in SHARE_FOLDERS:
        files += sorted(p for p in (source / folder).glob("*") if p.is_file())
    for source_file in files:
        installed = share / source_file.relative_to(source)
        if not installed.is_file():
            problems.append(f"{installed} is missing")
        elif installed.read_bytes() != source_file.read_bytes():
            problems.append(f"{installed} differs from {source_file}")
    print(f"  share: {len(files)} files in {share}")
    return problems


def run_launcher(path: Path, log_dir: str) -> str | None:
    """Start one launcher with --help; None when it started, else what went wrong."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", ROS_LOG_DIR=log_dir)
    with tempfile.NamedTemporaryFile("w+") as output:
        process = subprocess.Popen([str(path), "--help"], stdout=output,
                                   stderr=subprocess.STDOUT, env=env, cwd=log_dir)
        deadline = time.monotonic() + LAUNCHER_TIMEOUT_S
        interrupted = False
        # Until it exits, or a ROS node has logged (it then runs until stopped).
        while process.poll() is None and time.monotonic() < deadline:
            if ROS_LOG_LINE.search(Path(output.name).read_text()):
                # A node that gives up (no weights) exits by itself.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=3)
                break
            time.sleep(0.2)
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            interrupted = True
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return "still running 30 s after SIGINT"
        output.seek(0)
        text = output.read()
    last = text.strip().splitlines()[-1:] or ["(no output)"]
    if "Traceback (most recent call last)" in text:
        return f"raised: {last[0]}"
    if not interrupted and code == 0 and "usage:" in text.lower():
        print(f"  {path.name}: --help printed its usage")
        return None
    log_line = ROS_LOG_LINE.search(text)
    if log_line:  # a ROS node: rclpy came up and the node logged
        how = "stopped by SIGINT" if interrupted else "exited by itself"
        print(f"  {path.name}: ROS node started, {how} (exit {code}): {last[0][:100]}")
        return None
    after = " after SIGINT" if interrupted else ""
    return f"exit {code}{after}, no usage and no ROS log: {last[0]}"


def check_launchers(install: Path, source: Path) -> list[str]:
    lib = install / PACKAGE / "lib" / PACKAGE
    names = console_scripts(source / "setup.py")
    installed = sorted(p.name for p in lib.iterdir()) if lib.is_dir() else []
    problems = [f"{lib} lacks launcher {name}" for name in names if name not in installed]
    problems += [f"{lib} holds {name}, which setup.py does not declare"
                 for name in installed if name not in names]
    with tempfile.TemporaryDirectory() as log_dir:
        for name in names:
            if name in installed:
                problem = run_launcher(lib / name, log_dir)
                if problem:
                    problems.append(f"{name}: {problem}")
    print(f"  launchers: {len(names)} from setup.py ({', '.join(names)})")
    return problems


def main() -> int:
    install, source = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    problems = check_imports(install)
    problems += check_share(install, source)
    problems += check_launchers(install, source)
    for problem in problems:
        print(f"  FAILED: {problem}")
    print(f"install space {install}: {'FAILED' if problems else 'ok'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
