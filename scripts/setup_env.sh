#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Create or update the development environment of one ROS 2 distribution: the
# pinned dependencies (requirements.txt, shared, plus requirements-ros-<distro>.txt),
# the package itself (editable), its share files (setup.py's data_files) and the
# generated messages. Idempotent, and quick when nothing changed: each step
# keeps a stamp in the venv.
#
# Usage: scripts/setup_env.sh
#   S2M2_ROS_DISTRO  kilted (default) or jazzy: which ROS 2 wheels to install
#   S2M2_VENV        virtual environment to create or update (default: <repo>/.venv
#                    for kilted, <repo>/.venv-<distro> for the others)
#   S2M2_PYTHON      interpreter for a new venv (default: python3.11, else python3);
#                    the ROS 2 wheels on PyPI are built for CPython 3.11 only.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
distro="${S2M2_ROS_DISTRO:-kilted}"
ros_lock="$repo/requirements-ros-$distro.txt"
if [[ ! -f "$ros_lock" ]]; then
  echo "[setup_env] unknown S2M2_ROS_DISTRO '$distro': no ${ros_lock#"$repo"/}" >&2
  exit 1
fi
if [[ "$distro" == kilted ]]; then default_venv="$repo/.venv"; else default_venv="$repo/.venv-$distro"; fi
venv="${S2M2_VENV:-$default_venv}"

say() { echo "[setup_env] $*"; }

# A caller inside another bootstrapped ROS wheel environment must not hand its
# LD_LIBRARY_PATH to this venv's python (see ros_wheels_bootstrapper).
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE

if [[ ! -x "$venv/bin/python" ]]; then
  base_python="${S2M2_PYTHON:-}"
  if [[ -z "$base_python" ]]; then
    if command -v python3.11 >/dev/null; then base_python=python3.11; else base_python=python3; fi
  fi
  version="$("$base_python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  if [[ "$version" != "3.11" ]]; then
    echo "[setup_env] $base_python is Python $version; the ROS 2 wheels need 3.11 (set S2M2_PYTHON)" >&2
    exit 1
  fi
  say "creating $venv with $base_python"
  "$base_python" -m venv "$venv"
fi
venv="$(cd "$venv" && pwd)"
python="$venv/bin/python"

# Several shells (developers, CI, test runs) may set up the same venv at once.
exec 9>"$venv/.s2m2_ros_setup.lock"
flock 9

fingerprint() { cat "$@" | sha256sum | cut -d' ' -f1; }
# pip, without the warnings about this machine's missing file:// indexes.
pip_install() {
  "$python" -m pip install --quiet "$@" 2> >(grep -v "^WARNING: Location 'file:" >&2)
}
stamp_matches() { [[ -f "$1" && "$(cat "$1")" == "$2" ]]; }

# 1. Pinned dependencies: the shared non-ROS lock and the distribution's ROS lock.
req_stamp="$venv/.s2m2_ros_requirements.stamp"
req_hash="$(fingerprint "$repo/requirements.txt" "$ros_lock" "$venv/pyvenv.cfg")"
if ! stamp_matches "$req_stamp" "$req_hash"; then
  say "installing pinned dependencies (requirements.txt, ${ros_lock#"$repo"/})"
  pip_install -r "$repo/requirements.txt" -r "$ros_lock"
  echo "$req_hash" > "$req_stamp"
fi

# 2. The package, editable. setup.cfg selects setuptools' "compat" editable
# mode (a .pth with the repo path): the default mode's import hook runs after
# the normal path search, which would find the generated s2m2_ros folder in
# site-packages first. No build isolation: use the pinned setuptools.
pkg_stamp="$venv/.s2m2_ros_package.stamp"
pkg_hash="$(fingerprint "$repo/setup.py" "$repo/setup.cfg" <(echo "$repo"))"
if ! stamp_matches "$pkg_stamp" "$pkg_hash" || [[ ! -x "$venv/bin/stereo_node" ]]; then
  say "installing s2m2_ros (editable)"
  pip_install --no-build-isolation --no-deps -e "$repo"
  echo "$pkg_hash" > "$pkg_stamp"
fi

# 3. Generated messages; the node runs without its status topic if this fails.
if ! S2M2_VENV="$venv" bash "$repo/scripts/build_interfaces.sh"; then
  echo "[setup_env] WARNING: generating s2m2_ros/msg/StereoStatus failed (log:" \
    "build/interfaces/$(basename "$venv")/build.log); everything else works, but the node will not" \
    "publish its status topic." >&2
fi

# 4. Share files. Editable installs skip setup.py's data_files, so copy them
# here, from setup.py itself, every time (cheap): edits to launch or config
# files show up at once. Files removed from the repo are removed here too, in the
# folders that hold only setup.py's files: launch, config, rviz, and lib/<package>
# (one launcher per console script). lib/<package> is matched as a whole path:
# share/<package>, whose last component is the same, holds generated files.
(cd "$repo" && "$python" - "$venv" <<'EOF')
import shutil
import sys
from pathlib import Path

import setuptools

captured = {}
setuptools.setup = lambda **kwargs: captured.update(kwargs)
exec(compile(Path("setup.py").read_text(), "setup.py", "exec"))

prefix = Path(sys.argv[1])
launchers = f"lib/{captured['name']}"
for destination, files in captured["data_files"]:
    target = prefix / destination
    target.mkdir(parents=True, exist_ok=True)
    wanted = {Path(name).name for name in files}
    if Path(destination).name in {"launch", "config", "rviz"} or destination == launchers:
        for stale in target.iterdir():
            if stale.is_file() and stale.name not in wanted:
                stale.unlink()
    for name in files:
        shutil.copy2(name, target / Path(name).name)
EOF

say "ready: $venv, ROS 2 $distro (activate with 'source ${venv}/bin/activate')"
