#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Build s2m2_ros with colcon against a ROS 2 wheel environment, as a ROS user
# would in a workspace, and check the result.
#
# Usage: scripts/colcon_check.sh setup|build|test
#   setup  create or update the colcon tool venv .venv-colcon (requirements-colcon.txt)
#   build  copy the checkout into a scratch workspace, `colcon build` it, source
#          its install space and check it (scripts/check_colcon_install.py)
#   test   `colcon test` in that workspace (pytest and ruff through ament's test
#          macros, CMakeLists.txt), then `colcon test-result`
#   S2M2_ROS_DISTRO   kilted (default) or jazzy: the wheel environment (scripts/setup_env.sh)
#   S2M2_VENV         that environment (default: .venv, or .venv-<distro>)
#   S2M2_COLCON_WS    scratch workspace (default: <repo>/build/colcon-<distro>)
#   PYTEST_ADDOPTS    pytest's own: narrows what `colcon test` runs (e.g. "-m ros")
#
# What a wheel environment needs besides a normal ROS install: its prefix on
# AMENT_PREFIX_PATH and CMAKE_PREFIX_PATH, its python first on PATH, and
# -DCMAKE_PROJECT_INCLUDE=cmake/venv_wheel_paths.cmake (the wheels' CMake files
# name include folders of the machine they were built on). Everything that
# starts ROS runs through scripts/in_private_net.sh.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
distro="${S2M2_ROS_DISTRO:-kilted}"
if [[ "$distro" == kilted ]]; then default_venv="$repo/.venv"; else default_venv="$repo/.venv-$distro"; fi
venv="${S2M2_VENV:-$default_venv}"
colcon_venv="$repo/.venv-colcon"
ws="${S2M2_COLCON_WS:-$repo/build/colcon-$distro}"
say() { echo "[colcon_check] $*"; }

unset _ROS_WHEELS_BOOTSTRAP_COMPLETE

setup_tool() {
  if [[ ! -x "$colcon_venv/bin/python" ]]; then
    say "creating $colcon_venv"
    "${S2M2_PYTHON:-python3}" -m venv "$colcon_venv"
  fi
  local stamp="$colcon_venv/.s2m2_ros_colcon.stamp" hash
  hash="$(cat "$repo/requirements-colcon.txt" "$colcon_venv/pyvenv.cfg" | sha256sum | cut -d' ' -f1)"
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$hash" ]]; then
    say "installing colcon (requirements-colcon.txt)"
    "$colcon_venv/bin/python" -m pip install --quiet -r "$repo/requirements-colcon.txt" \
      2> >(grep -v "^WARNING: Location 'file:" >&2)
    echo "$hash" > "$stamp"
  fi
}

# The wheel environment as colcon's underlay, and nothing else.
use_wheel_env() {
  [[ -x "$venv/bin/python" ]] || { say "no environment at $venv (scripts/setup_env.sh)" >&2; exit 1; }
  venv="$(cd "$venv" && pwd)"
  [[ -x "$colcon_venv/bin/colcon" ]] || { say "no colcon: run '$0 setup'" >&2; exit 1; }
  export VIRTUAL_ENV="$venv"
  export PATH="$venv/bin:$PATH"
  export AMENT_PREFIX_PATH="$venv"
  export CMAKE_PREFIX_PATH="$venv"
  unset COLCON_PREFIX_PATH PYTHONPATH || true
  export RMW_IMPLEMENTATION=rmw_fastrtps_cpp
  export COLCON_HOME="$ws/.colcon"   # no user-wide colcon defaults
  mkdir -p "$COLCON_HOME"
}

# The checkout as a ROS user's src/ would hold it: tracked and new, not ignored
# files (no venvs, build outputs), so the copy builds like a fresh clone.
copy_sources() {
  local src="$ws/src/s2m2_ros"
  rm -rf "$ws/src"
  mkdir -p "$src"
  if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$repo" && git ls-files -z --cached --others --exclude-standard \
      | xargs -0 -I{} sh -c 'test -e "{}" && echo "{}"' \
      | tar -cf - -T - ) | tar -xf - -C "$src"
  else
    tar -C "$repo" --exclude='./.venv*' --exclude=./build --exclude=./output -cf - . \
      | tar -xf - -C "$src"
  fi
  # Tests look for ../shared beside the package (skipping when absent).
  if [[ -d "$repo/../shared" ]]; then ln -sfn "$(cd "$repo/../shared" && pwd)" "$ws/src/shared"; fi
}

colcon_cmd() {
  "$colcon_venv/bin/colcon" --log-base "$ws/log" "$@"
}

case "${1:-}" in
  setup)
    setup_tool
    ;;
  build)
    use_wheel_env
    rm -rf "$ws/build" "$ws/install" "$ws/log"
    copy_sources
    say "colcon build in $ws against $venv"
    (cd "$ws" && colcon_cmd build --base-paths src/s2m2_ros --packages-select s2m2_ros \
      --build-base build --install-base install --event-handlers console_cohesion+ \
      --cmake-args -DCMAKE_PROJECT_INCLUDE="$repo/cmake/venv_wheel_paths.cmake" \
        -DPython3_EXECUTABLE="$venv/bin/python" -DPython3_FIND_VIRTUALENV=ONLY)
    say "checking the install space"
    (
      set +u
      # shellcheck disable=SC1091
      source "$ws/install/setup.bash"
      set -u
      "$repo/scripts/in_private_net.sh" "$venv/bin/python" \
        "$repo/scripts/check_colcon_install.py" "$ws/install" "$ws/src/s2m2_ros"
    )
    ;;
  test)
    use_wheel_env
    [[ -d "$ws/install/s2m2_ros" ]] || { say "nothing built in $ws: run '$0 build'" >&2; exit 1; }
    say "colcon test in $ws${PYTEST_ADDOPTS:+ (PYTEST_ADDOPTS=$PYTEST_ADDOPTS)}"
    export ROS_LOG_DIR="$ws/log/ros"
    status=0
    (cd "$ws" && "$repo/scripts/in_private_net.sh" "$colcon_venv/bin/colcon" --log-base "$ws/log" \
      test --base-paths src/s2m2_ros --packages-select s2m2_ros --build-base build \
      --install-base install --event-handlers console_direct+ --return-code-on-test-failure) \
      || status=$?
    (cd "$ws" && colcon_cmd test-result --test-result-base build/s2m2_ros --all) || status=1
    exit "$status"
    ;;
  *)
    sed -n '3,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
