#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Run a command so that no DDS packet can leave this machine.
#
# Usage: scripts/in_private_net.sh COMMAND [ARGS...]
#
# As root with a working `unshare -n`, the command runs in a private network
# namespace whose only interface is loopback; otherwise DDS discovery is limited
# with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (set in both cases). Keeps the
# caller's ROS_DOMAIN_ID, else picks one. The exit status is the command's.
set -euo pipefail

export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
unset ROS_LOCALHOST_ONLY ROS_STATIC_PEERS || true
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM + $$) % 100 + 1 ))}"

if [[ "$(id -u)" == 0 ]] && command -v ip >/dev/null && unshare -n true 2>/dev/null; then
  exec unshare -n sh -c 'ip link set lo up && exec "$@"' sh "$@"
fi
echo "[in_private_net] no private network namespace here: DDS limited to localhost," \
  "ROS_DOMAIN_ID=$ROS_DOMAIN_ID" >&2
exec "$@"
