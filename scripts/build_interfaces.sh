#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Generate s2m2_ros's messages (msg/*.msg) with rosidl against the ROS 2 wheels
# in a virtual environment, and install them into that environment, so that
# `from s2m2_ros.msg import StereoStatus` works next to the editable install.
#
# Usage: scripts/build_interfaces.sh [--force]
#   S2M2_VENV   virtual environment to build against and install into (default: .venv)
#
# How: the repo's CMakeLists.txt is configured with -DS2M2_INTERFACES_ONLY=ON
# by plain cmake, installed into build/interfaces/<venv name>/install, then merged into the
# venv: libraries to <venv>/lib (on LD_LIBRARY_PATH through the wheels'
# ros_wheels_bootstrapper, which adds <venv>/lib; RPATH is set as well), Python
# code to <venv>/lib/python3.X/site-packages/s2m2_ros/ without an __init__.py
# (a namespace portion, so it never hides the source package; the source
# package's __init__.py adds it to its __path__), share files and the ament
# index to <venv>/share. Exits non-zero when generation fails.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${S2M2_VENV:-$repo/.venv}"
venv="$(cd "$venv" && pwd)"
python="$venv/bin/python"
# One build folder per venv: the Kilted and Jazzy environments build side by side.
work="$repo/build/interfaces/$(basename "$venv")"
stamp="$venv/.s2m2_ros_interfaces.stamp"
manifest="$venv/.s2m2_ros_interfaces.files"
log="$work/build.log"

say() { echo "[build_interfaces] $*"; }
fail() {
  echo "[build_interfaces] FAILED: $*" >&2
  [[ -f "$log" ]] && tail -n 25 "$log" >&2
  exit 1
}

# A process started from an already bootstrapped ROS wheel environment
# (another venv) must not hand its LD_LIBRARY_PATH to this venv's python.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE

site="$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
site_rel="${site#"$venv"/}"

inputs_hash() {
  {
    cat "$repo"/msg/*.msg "$repo/CMakeLists.txt" "$repo/package.xml" \
      "$repo/cmake/venv_wheel_paths.cmake" "${BASH_SOURCE[0]}"
    "$python" -c 'import sys; print(sys.version)'
    echo "$venv"
  } | sha256sum | cut -d' ' -f1
}
hash="$(inputs_hash)"

if [[ "${1:-}" != "--force" && -f "$stamp" && "$(cat "$stamp")" == "$hash" \
      && -f "$site/s2m2_ros/msg/__init__.py" ]] \
    && ls "$venv"/lib/libs2m2_ros__rosidl_typesupport_c.so >/dev/null 2>&1; then
  say "messages up to date"
  exit 0
fi
rm -f "$stamp"

# Tools: a C/C++ compiler must be there; cmake and a build tool may come from PyPI.
command -v cc >/dev/null || command -v gcc >/dev/null || fail "no C compiler (apt-get install build-essential)"
command -v c++ >/dev/null || command -v g++ >/dev/null || fail "no C++ compiler (apt-get install build-essential)"
export PATH="$venv/bin:$PATH"
if ! command -v cmake >/dev/null || ! command -v make >/dev/null; then
  say "cmake or make missing: installing cmake and ninja from PyPI into the venv"
  "$python" -m pip install --quiet "cmake>=3.22,<4" "ninja" || fail "could not install cmake/ninja"
fi
generator=()
command -v make >/dev/null || generator=(-G Ninja)

mkdir -p "$work"
: > "$log"

# CMake refuses to export include folders that lie inside the source folder,
# and the venv's NumPy headers do when .venv is inside the repo: configure a
# copy of the package's build files instead.
rm -rf "$work/src" "$work/install"
mkdir -p "$work/src"
cp -r "$repo/CMakeLists.txt" "$repo/package.xml" "$repo/msg" "$work/src/"

# Only the venv: a sourced system ROS must not mix with the wheels.
export AMENT_PREFIX_PATH="$venv"
export CMAKE_PREFIX_PATH="$venv"
unset COLCON_PREFIX_PATH || true

say "configuring (log: ${log#"$repo"/})"
cmake -S "$work/src" -B "$work/build" "${generator[@]}" \
  -DS2M2_INTERFACES_ONLY=ON \
  -DBUILD_TESTING=OFF \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$work/install" \
  -DCMAKE_INSTALL_RPATH="$venv/lib" \
  -DPython3_EXECUTABLE="$python" \
  -DPython3_FIND_VIRTUALENV=ONLY \
  -DCMAKE_PROJECT_INCLUDE="$repo/cmake/venv_wheel_paths.cmake" \
  >>"$log" 2>&1 || fail "cmake configure"

say "building"
cmake --build "$work/build" --parallel "$(nproc)" >>"$log" 2>&1 || fail "cmake build"
cmake --install "$work/build" >>"$log" 2>&1 || fail "cmake install"

# The generated package's empty __init__.py would hide the source package, and
# its egg-info would be a second s2m2_ros distribution beside pip's.
stage_site="$work/install/$site_rel"
[[ -d "$stage_site/s2m2_ros/msg" ]] || fail "no generated Python package in $stage_site"
rm -f "$stage_site/s2m2_ros/__init__.py"
rm -rf "$stage_site"/s2m2_ros-*.egg-info
find "$work/install" -name __pycache__ -type d -prune -exec rm -rf {} +

# Remove what an earlier build installed (a renamed message), then merge.
if [[ -f "$manifest" ]]; then
  while IFS= read -r old; do
    rm -f "$venv/$old"
  done < "$manifest"
fi
(cd "$work/install" && find . \( -type f -o -type l \) | sed 's|^\./||' | sort) > "$manifest"
cp -a "$work/install/." "$venv/"

say "checking the generated type"
(cd "$work" && "$python" - >>"$log" 2>&1 <<'EOF') || fail "generated message does not import or serialize"
from rclpy.serialization import deserialize_message, serialize_message
from s2m2_ros.msg import StereoStatus

status = StereoStatus(model="check", frames_processed=7, valid_fraction=0.5)
copy = deserialize_message(serialize_message(status), StereoStatus)
assert (copy.model, copy.frames_processed, copy.valid_fraction) == ("check", 7, 0.5), copy
print("serialized round trip ok")
EOF

echo "$hash" > "$stamp"
say "installed s2m2_ros messages into ${venv}"
