#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The test command (CI runs exactly this: .ci/run).
#
#   scripts/run_tests.sh                   everything, stage by stage:
#       ruff       `ruff check .` (fails on any finding)
#       jazzy      the tests marked `ros` (modules that start rclpy or a ROS
#                  process, test/conftest.py) against ROS 2 Jazzy in .venv-jazzy
#       colcon     `colcon build` into build/colcon-kilted against .venv, and the
#                  install space checked (scripts/colcon_check.sh build)
#       colcon-test `colcon test` there: pytest (the install-related modules,
#                  S2M2_COLCON_PYTEST) and ruff through ament's test macros
#       kilted     the whole suite against ROS 2 Kilted in .venv (last, so that
#                  its pytest summary is near the end), then a table of the
#                  stages with their times and one combined line of counts.
#   scripts/run_tests.sh PYTEST_ARGS...    only pytest, on Kilted, with those arguments
#   S2M2_ROS_DISTRO=jazzy scripts/run_tests.sh [PYTEST_ARGS...]
#                                          only pytest, on that distro (the whole
#                                          suite without arguments)
#   S2M2_TEST_STAGES="ruff colcon"         run just those stages
#
# Each environment is created or reused by scripts/setup_env.sh (in the full run
# Jazzy's in the background, overlapping Kilted's setup and tests). Every process
# that may start a ROS participant runs through scripts/in_private_net.sh: a
# private network namespace with only loopback (as root with `unshare -n`),
# else DDS discovery limited to localhost; each stage gets its own ROS_DOMAIN_ID.
# The exit status is non-zero when any stage fails; pytest's 5 ("no tests
# collected") is a failure like any other non-zero status.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE ROS_LOCALHOST_ONLY ROS_STATIC_PEERS || true
export RMW_IMPLEMENTATION=rmw_fastrtps_cpp

# What colcon test runs in the full run: the modules about what gets installed
# and how it is found (the node tests already ran on both distros). A plain
# `colcon test` by a user runs everything.
colcon_pytest="${S2M2_COLCON_PYTEST:--k \"test_package_install or test_status_msg or test_launch_file\"}"

if [[ -n "${S2M2_TEST_STAGES:-}" ]]; then
  read -r -a stages <<< "$S2M2_TEST_STAGES"
elif [[ $# -gt 0 || -n "${S2M2_ROS_DISTRO:-}" ]]; then
  stages=(pytest)
else
  stages=(ruff jazzy colcon colcon-test kilted)
fi
distro="${S2M2_ROS_DISTRO:-kilted}"

results="$(mktemp -d)"
trap 'rm -rf "$results"' EXIT
declare -a summary=()
failed_stages=()
overall=0
last_status=0

# The environment of a distro: S2M2_VENV for the selected one, else .venv (kilted)
# or .venv-<distro>.
venv_of() {
  if [[ "$1" == "$distro" && -n "${S2M2_VENV:-}" ]]; then echo "$S2M2_VENV"
  elif [[ "$1" == kilted ]]; then echo "$repo/.venv"
  else echo "$repo/.venv-$1"; fi
}

declare -A ready=() background_setup=()
setup_command() { env S2M2_ROS_DISTRO="$1" S2M2_VENV="$(venv_of "$1")" bash scripts/setup_env.sh; }

# Start setting up DISTRO's environment in the background (its output goes to a
# log shown when the environment is first needed): the two environments'
# installs then overlap, which saves minutes on a fresh clone.
setup_in_background() {
  local name="$1"
  (
    start="$EPOCHREALTIME" status=0
    setup_command "$name" > "$results/setup-$name.log" 2>&1 || status=$?
    awk -v a="$start" -v b="$EPOCHREALTIME" -v s="$status" 'BEGIN { print s, b - a }' \
      > "$results/setup-$name.done"
  ) &
  background_setup[$name]=$!
}

# setup DISTRO: create or update its environment once per run (its own stage).
setup() {
  local name="$1" status=0
  [[ -n "${ready[$name]:-}" ]] && return "${ready[$name]}"
  if [[ -n "${background_setup[$name]:-}" ]]; then
    echo "[run_tests] ---- setup $name (started in the background)"
    wait "${background_setup[$name]}" || true
    cat "$results/setup-$name.log"
    local seconds
    read -r status seconds < "$results/setup-$name.done" || status=1
    record_stage "setup $name" "$status" "${seconds:-0}"
  else
    run_stage "setup $name" setup_command "$name" || status=$?
  fi
  ready[$name]=$status
  return "$status"
}

# record_stage NAME STATUS SECONDS
record_stage() {
  local name="$1" status="$2" seconds="$3"
  last_status="$status"
  summary+=("$(printf '%-12s %-10s %8.1f s' "$name" "$([[ $status == 0 ]] && echo ok || echo "FAILED($status)")" "$seconds")")
  if [[ "$status" != 0 ]]; then
    failed_stages+=("$name")
    overall=1
    [[ "$status" == 5 ]] && echo "[run_tests] $name: pytest collected no tests: failing" >&2
  fi
  return 0
}

# run_stage NAME COMMAND...: run, time, record.
run_stage() {
  local name="$1" start status=0
  shift
  echo "[run_tests] ---- $name"
  start="$EPOCHREALTIME"
  "$@" || status=$?
  record_stage "$name" "$status" "$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')"
  return "$status"
}

# pytest_on DISTRO RESULT_NAME PYTEST_ARGS...
pytest_on() {
  local name="$1" result="$2" venv log_dir status=0
  shift 2
  venv="$(venv_of "$name")"
  log_dir="$(mktemp -d)"
  ROS_DOMAIN_ID="$(( (RANDOM + $$) % 100 + 1 ))" AMENT_PREFIX_PATH="$venv" ROS_LOG_DIR="$log_dir" \
    scripts/in_private_net.sh "$venv/bin/python" -m pytest -o testpaths=test \
      --junitxml="$results/$result.xml" "$@" || status=$?
  rm -rf "$log_dir"
  return "$status"
}

if [[ " ${stages[*]} " == *" jazzy "* && " ${stages[*]} " == *" kilted "* ]]; then
  setup_in_background jazzy
fi

for stage in "${stages[@]}"; do
  case "$stage" in
    pytest)
      setup "$distro" || continue
      run_stage "$distro" pytest_on "$distro" "pytest-$distro" "$@" || true
      ;;
    ruff)
      setup kilted || continue
      run_stage ruff "$repo/.venv/bin/python" -m ruff check --no-cache . || true
      ;;
    jazzy)
      setup jazzy || continue
      run_stage "jazzy" pytest_on jazzy pytest-jazzy -m ros -q || true
      ;;
    kilted)
      setup kilted || continue
      run_stage "kilted" pytest_on kilted pytest-kilted || true
      ;;
    colcon)
      setup kilted || continue
      run_stage "colcon setup" bash scripts/colcon_check.sh setup || continue
      run_stage "colcon build" bash scripts/colcon_check.sh build || true
      ;;
    colcon-test)
      setup kilted || continue
      if [[ ! -d "$repo/build/colcon-kilted/install/s2m2_ros" ]]; then
        run_stage "colcon setup" bash scripts/colcon_check.sh setup || continue
        run_stage "colcon build" bash scripts/colcon_check.sh build || continue
      fi
      run_stage "colcon test" env PYTEST_ADDOPTS="$colcon_pytest" \
        bash scripts/colcon_check.sh test || true
      colcon_results="$repo/build/colcon-kilted/build/s2m2_ros/test_results/s2m2_ros"
      if [[ -d "$colcon_results" ]]; then
        mkdir -p "$results/colcon-test"
        cp "$colcon_results"/*.xml "$results/colcon-test/" 2>/dev/null || true
      fi
      ;;
    *)
      echo "[run_tests] unknown stage '$stage' (ruff jazzy colcon colcon-test kilted pytest)" >&2
      exit 2
      ;;
  esac
done

# Only pytest: it ends with pytest's own summary and status, as it always did.
if [[ "${stages[*]}" == pytest ]]; then exit "$last_status"; fi

echo
echo "[run_tests] stages:"
printf '  %s\n' "${summary[@]}"
# One line of counts over every junit file (pytest on each distro, colcon test),
# alone on the last line, in pytest's words.
(IFS="|"; python3 - "$results" "${failed_stages[*]:-}") <<'EOF'
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

results, stages = Path(sys.argv[1]), [s for s in sys.argv[2].split("|") if s]
counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
per_file = []
for path in sorted(results.rglob("*.xml")):
    root = ElementTree.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    file_counts = {key: sum(int(s.get(key, 0)) for s in suites) for key in counts}
    for key in counts:
        counts[key] += file_counts[key]
    per_file.append(f"{path.relative_to(results).with_suffix('')}: {file_counts['tests']}")
failed = counts["failures"] + counts["errors"]
passed = counts["tests"] - failed - counts["skipped"]
print(f"[run_tests] tests per run: {', '.join(per_file)}")
print(f"[run_tests] failed stages: {', '.join(stages) if stages else 'none'}")
print(f"{passed} passed, {failed} failed, {counts['skipped']} skipped"
      + (f", {len(stages)} stage(s) failed" if stages else ""))
EOF
exit "$overall"
