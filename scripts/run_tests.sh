#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The test command: set up .venv (scripts/setup_env.sh), then run pytest over
# test/ with ROS 2 kept on this machine. Extra arguments go to pytest; the exit
# status is pytest's (5, "no tests collected", is a failure like any non-zero).
#
# As root with a working `unshare -n`, pytest runs in a private network
# namespace whose only interface is loopback, so no DDS packet can leave;
# otherwise DDS discovery is limited with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
# (set in both cases). Each run gets its own ROS_DOMAIN_ID.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

bash scripts/setup_env.sh
venv="$(cd "${S2M2_VENV:-$repo/.venv}" && pwd)"

unset _ROS_WHEELS_BOOTSTRAP_COMPLETE
export ROS_DOMAIN_ID="$(( ($$ + RANDOM) % 100 + 1 ))"
export RMW_IMPLEMENTATION=rmw_fastrtps_cpp
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
unset ROS_LOCALHOST_ONLY ROS_STATIC_PEERS || true
# Only the venv's ROS: a sourced system ROS must not mix with the wheels.
export AMENT_PREFIX_PATH="$venv"
ros_log_dir="$(mktemp -d)"
export ROS_LOG_DIR="$ros_log_dir"
trap 'rm -rf "$ros_log_dir"' EXIT

pytest_command=("$venv/bin/python" -m pytest -o testpaths=test "$@")

if [[ "$(id -u)" == 0 ]] && command -v ip >/dev/null && unshare -n true 2>/dev/null; then
  echo "[run_tests] private network namespace (loopback only), ROS_DOMAIN_ID=$ROS_DOMAIN_ID"
  status=0
  unshare -n sh -c 'ip link set lo up && exec "$@"' sh "${pytest_command[@]}" || status=$?
else
  echo "[run_tests] no private network namespace here: DDS limited to localhost," \
    "ROS_DOMAIN_ID=$ROS_DOMAIN_ID"
  status=0
  "${pytest_command[@]}" || status=$?
fi

if [[ "$status" == 5 ]]; then
  echo "[run_tests] pytest collected no tests: failing" >&2
fi
exit "$status"
