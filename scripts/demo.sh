#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The demo in one command: set up .venv (scripts/setup_env.sh), then run
# s2m2-demo (s2m2_ros/demo/run.py) with ROS 2 kept on this machine. Arguments
# go to s2m2-demo (see `scripts/demo.sh --help`); by default it runs the
# bundled Middlebury Motorcycle pair and writes output/demo/report.md. Without
# S²M² weights it runs the SGBM baseline and says so (get weights with
# `s2m2-download M`).
#
# As root (or where user namespaces are allowed) the demo runs in a private
# network namespace whose only interface is loopback, so no DDS packet can
# leave; otherwise DDS discovery is limited with
# ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST. Each run gets its own ROS_DOMAIN_ID.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

if [[ ! -x scripts/setup_env.sh ]]; then
  echo "[demo] scripts/setup_env.sh is missing: cannot set up the environment" >&2
  exit 1
fi
scripts/setup_env.sh
venv="$(cd "${S2M2_VENV:-$repo/.venv}" && pwd)"

unset _ROS_WHEELS_BOOTSTRAP_COMPLETE
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( ($$ + RANDOM) % 100 + 1 ))}"
export RMW_IMPLEMENTATION=rmw_fastrtps_cpp
unset ROS_LOCALHOST_ONLY ROS_STATIC_PEERS || true
# Only the venv's ROS: a sourced system ROS must not mix with the wheels.
export AMENT_PREFIX_PATH="$venv"

demo_command=("$venv/bin/python" -m s2m2_ros.demo.run "$@")

isolate=()
if command -v ip >/dev/null && command -v unshare >/dev/null; then
  if [[ "$(id -u)" == 0 ]] && unshare -n true 2>/dev/null; then
    isolate=(unshare -n)
  elif unshare -rn true 2>/dev/null; then
    # An unprivileged user namespace maps us to root inside, for `ip link`.
    isolate=(unshare -rn)
  fi
fi

if (( ${#isolate[@]} )); then
  echo "[demo] private network namespace (loopback only), ROS_DOMAIN_ID=$ROS_DOMAIN_ID"
  exec "${isolate[@]}" sh -c 'ip link set lo up && exec "$@"' sh "${demo_command[@]}"
fi
echo "[demo] no private network namespace here: DDS limited to localhost," \
  "ROS_DOMAIN_ID=$ROS_DOMAIN_ID"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
exec "${demo_command[@]}"
