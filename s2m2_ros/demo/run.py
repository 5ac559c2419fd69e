# SPDX-License-Identifier: Apache-2.0
"""`s2m2-demo`: run the stereo node on a demo source and write a report.

Starts three processes on one private ROS graph (a per-run ``ROS_DOMAIN_ID``):
the stereo node (``s2m2_ros.node``), the source (`source_node`) and the
recorder (`recorder_node`); waits for the recorder to write its frames,
``report.md`` and ``summary.json``; stops the others; prints the key numbers.

Without S²M² weights, ``--backend auto`` runs the classical SGBM baseline and
says so loudly; it never runs an untrained network. This script does not
isolate the network itself: ``scripts/demo.sh`` runs it inside ``unshare -n``
where it can, and without that DDS discovery is kept to this machine
(``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s2m2_ros.demo.report import WEIGHTS_HINT, parse_report_numbers
from s2m2_ros.launch_config import INPUT_TOPICS

MODEL_NAMES = ("S", "M", "L", "XL")
LOG_TAIL_LINES = 25
# Seconds the runner waits beyond --timeout before it kills everything.
TIMEOUT_MARGIN_S = 30.0
# After a finite source ends, time for its last outputs to reach the recorder.
SOURCE_END_GRACE_S = 3.0
# Largest DDS socket buffer asked for. Fast DDS's default buffers overflow on a
# burst of large messages (the 1.5 MB cloud with the images behind it), and
# reliable repair then delivers them seconds late.
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024


class DemoError(RuntimeError):
    """The demo cannot start or did not finish; the message says why and what to do."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="s2m2-demo",
        description="Run the S²M² stereo node on a stereo source over ROS 2 and write a "
        "report (accuracy against ground truth where there is one, latency, pictures, "
        "point clouds).",
    )
    parser.add_argument("--model", default="M", choices=MODEL_NAMES, help="S²M² size (M)")
    parser.add_argument("--weights", default=None, help="checkpoint file (default: searched)")
    parser.add_argument("--weights-dir", default=None, help="folder searched for checkpoints")
    parser.add_argument("--backend", default="auto",
                        choices=("auto", "torch", "openvino", "onnxruntime", "sgbm", "s2m2"),
                        help="auto: S²M² when weights are found (in the node's auto "
                        "backend: torch with CUDA, else openvino when installed, else torch), "
                        "else the SGBM baseline; torch, openvino, onnxruntime: S²M² in that "
                        "runtime; sgbm: the baseline; s2m2: old name of torch")
    parser.add_argument("--source", default="motorcycle",
                        help="'motorcycle' (bundled Middlebury pair), a Middlebury or "
                        "left/right image folder, or a ROS 2 bag")
    parser.add_argument("--scale", type=float, default=1.0, help="resize the frames (1.0)")
    parser.add_argument("--frames", type=int, default=3, help="frames to record (3)")
    parser.add_argument("--out", default="output/demo", help="output folder (output/demo)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="give up after this many seconds (600)")
    parser.add_argument("--rate", type=float, default=10.0,
                        help="most frames per second the source sends (10); it also waits "
                        "for each frame's result")
    parser.add_argument("--focal-px", type=float, default=0.0,
                        help="focal length of a plain image folder, pixels")
    parser.add_argument("--baseline-m", type=float, default=0.0,
                        help="baseline of a plain image folder, metres")
    parser.add_argument("--bag-topics", nargs=4, default=None,
                        metavar=("LEFT", "RIGHT", "LEFT_INFO", "RIGHT_INFO"),
                        help="image and camera_info topics in the bag")
    args = parser.parse_args(argv)
    if args.frames < 1:
        parser.error("--frames must be at least 1")
    if not args.scale > 0:
        parser.error("--scale must be positive")
    if not args.timeout > 0:
        parser.error("--timeout must be positive")
    return args


# --- decisions (no processes) ---------------------------------------------------------


@dataclass
class BackendChoice:
    backend: str  # the node's backend: "sgbm" or a network runtime (torch, openvino, …)
    weights: Path | None
    fallback: bool
    notice: str = ""


def choose_backend(backend: str, model: str, weights: str | None,
                   weights_dir: str | None, device: str = "auto") -> BackendChoice:
    """Which backend runs; raises `DemoError` where S²M² was asked for without weights.

    ``auto`` falls back to SGBM only when no weights were found by searching;
    a ``--weights`` path that does not exist is an error, never a fallback. With weights,
    ``auto`` is resolved here as the node would resolve it (same function, same machine),
    so the report names the runtime that ran.
    """
    if backend == "s2m2":
        backend = "torch"  # the deprecated name
    if backend == "sgbm":
        return BackendChoice("sgbm", None, fallback=False)
    from s2m2_ros.zoo import WeightsNotFoundError, find_weights

    try:
        path = find_weights(model, weights=weights, weights_dir=weights_dir)
    except WeightsNotFoundError as error:
        if backend != "auto" or weights is not None:
            raise DemoError(f"{error}") from None
        notice = (
            f"No S²M² weights were found for model {model}, so this demo runs the classical "
            "SGBM baseline (OpenCV semi-global matching), NOT the S²M² network; its numbers "
            f"say nothing about S²M². {WEIGHTS_HINT}\n(Searched: {error})"
        )
        return BackendChoice("sgbm", None, fallback=True, notice=notice)
    if backend == "auto":
        from s2m2_ros.backends import choose_auto

        backend, _reason = choose_auto(device)
    return BackendChoice(backend, path, fallback=False)


def loopback_only() -> bool | None:
    """Whether this network namespace has no interface but ``lo``; None if unknown.

    Reads ``/proc/self/net/dev``, which follows the namespace (``/sys/class/net``
    shows the namespace sysfs was mounted in).
    """
    try:
        lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    except OSError:
        return None
    names = sorted(line.split(":", 1)[0].strip() for line in lines if ":" in line)
    return names == ["lo"] if names else None


def _sysctl_bytes(name: str) -> int | None:
    try:
        return int(Path("/proc/sys/net/core", name).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def ros_environment(base: dict[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    """Environment for the demo's processes, and notes on what was chosen.

    One ``ROS_DOMAIN_ID`` for the run (kept if set), Fast DDS, discovery kept
    to this machine unless this is a loopback-only namespace, larger DDS
    socket buffers (unless Fast DDS is configured already), unbuffered output.
    """
    env = dict(os.environ if base is None else base)
    notes = []
    if not env.get("ROS_DOMAIN_ID"):
        env["ROS_DOMAIN_ID"] = str(random.randint(1, 100))
    notes.append(f"ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}")
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if not loopback_only() and "ROS_AUTOMATIC_DISCOVERY_RANGE" not in env:
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        notes.append("discovery limited to localhost (not in a private network namespace)")
    configured = any(env.get(name) for name in (
        "FASTDDS_BUILTIN_TRANSPORTS", "FASTDDS_DEFAULT_PROFILES_FILE",
        "FASTRTPS_DEFAULT_PROFILES_FILE"))
    limits = [_sysctl_bytes("rmem_max"), _sysctl_bytes("wmem_max")]
    if not configured and env["RMW_IMPLEMENTATION"] == "rmw_fastrtps_cpp" and all(limits):
        # The kernel caps buffers at *mem_max; ask for no more than it grants.
        size = min(SOCKET_BUFFER_BYTES, *limits)
        if size >= 1024 * 1024:
            env["FASTDDS_BUILTIN_TRANSPORTS"] = f"DEFAULT?sockets_size={size}"
    env["PYTHONUNBUFFERED"] = "1"
    # The children import s2m2_ros from wherever this process did.
    package_root = str(Path(__file__).resolve().parents[2])
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if package_root not in paths:
        env["PYTHONPATH"] = os.pathsep.join([package_root, *paths])
    return env, notes


def _ros_value(value: Any) -> str:
    """A parameter value for ``-p name:=value``: strings JSON-quoted so YAML keeps them
    strings whatever they contain; booleans and numbers as YAML reads them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def ros_args(parameters: dict[str, Any], extra: list[str] | None = None) -> list[str]:
    args = ["--ros-args"]
    for name, value in parameters.items():
        args += ["-p", f"{name}:={_ros_value(value)}"]
    return args + (extra or [])


def source_description(source: str, scale: float) -> tuple[str, dict[str, Any]]:
    """(report label, source node parameters) for ``--source`` (raises `DemoError`)."""
    from s2m2_ros.demo.source_node import SourceError, source_kind

    try:
        kind = source_kind(source)
    except SourceError as error:
        raise DemoError(str(error)) from None
    params: dict[str, Any] = {"scale": float(scale)}
    if kind == "motorcycle":
        label = "Middlebury 2014 Motorcycle (scikit-image, 741x500)"
        params["loop"] = True
    elif kind == "bag":
        label = f"ROS 2 bag {source}"
        params.update(bag=str(Path(source).expanduser().resolve()), loop=False)
    else:
        label = f"{'Middlebury' if kind == 'middlebury' else 'image'} folder {source}"
        params.update(folder=str(Path(source).expanduser().resolve()), loop=False)
    if scale != 1.0:
        label += f" at scale {scale:g}"
    return label, params


@dataclass
class DemoPlan:
    """The three commands and what the report should say about the run."""

    commands: dict[str, list[str]]
    choice: BackendChoice
    dataset: str
    out: Path
    notes: list[str] = field(default_factory=list)


def plan_demo(args: argparse.Namespace, python: str = sys.executable) -> DemoPlan:
    choice = choose_backend(args.backend, args.model, args.weights, args.weights_dir,
                            args.device)
    dataset, source_params = source_description(args.source, args.scale)
    out = Path(args.out).expanduser().resolve()
    paced = "bag" not in source_params
    kind = "bag" if "bag" in source_params else "folder" if "folder" in source_params else ""
    if kind == "folder" and args.focal_px > 0:
        source_params.update(focal_px=args.focal_px, baseline_m=args.baseline_m)
    if kind == "bag" and args.bag_topics:
        for name, topic in zip(("bag_left_topic", "bag_right_topic", "bag_left_info_topic",
                                "bag_right_info_topic"), args.bag_topics, strict=True):
            source_params[name] = topic
    # SGBM answers in well under a second; the network on a CPU may take minutes.
    output_timeout_s = 10.0 if choice.backend == "sgbm" else max(60.0, args.timeout / 2)
    source_params.update(
        rate_hz=float(args.rate), wait_for_subscribers=True, wait_for_recorder=True,
        wait_for_output="disparity" if paced else "", output_timeout_s=output_timeout_s)

    node_params: dict[str, Any] = {"backend": choice.backend}
    if choice.backend != "sgbm":
        node_params.update(model=args.model, weights=str(choice.weights), device=args.device)
    # Reliable inputs: the demo scores every frame, so none may be lost in transit
    # (the node's default, best effort, is what a live camera wants).
    qos = [arg for topic in INPUT_TOPICS
           for arg in ("-p", f"qos_overrides./{topic}.subscription.reliability:=reliable")]

    device = "cpu" if choice.backend == "sgbm" else args.device
    recorder_params = {
        "output_dir": str(out), "num_frames": int(args.frames), "timeout_s": float(args.timeout),
        "backend": choice.backend, "model": args.model if choice.backend != "sgbm" else "SGBM",
        "weights": str(choice.weights or ""), "device": device, "dataset": dataset,
        "fallback": choice.fallback,
    }
    commands = {
        "stereo_node": [python, "-m", "s2m2_ros.node", *ros_args(node_params, qos)],
        "stereo_recorder": [python, "-m", "s2m2_ros.demo.recorder_node",
                            *ros_args(recorder_params)],
        "stereo_source": [python, "-m", "s2m2_ros.demo.source_node", *ros_args(source_params)],
    }
    return DemoPlan(commands, choice, dataset, out)


# --- running ------------------------------------------------------------------------------


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text[-lines:]) or "    (empty)"


def _stop(process: subprocess.Popen, wait_s: float = 10.0) -> None:
    """SIGINT (ROS shuts down cleanly), then SIGKILL if it does not exit."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class DemoRun:
    """The three processes of one demo run and their logs."""

    def __init__(self, plan: DemoPlan, env: dict[str, str]) -> None:
        self.plan = plan
        self.env = env
        self.log_dir = plan.out / "logs"
        self.processes: dict[str, subprocess.Popen] = {}

    def log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.env.setdefault("ROS_LOG_DIR", str(self.log_dir / "ros"))
        # The recorder before the source, so the source's wait for it is short.
        for name in ("stereo_node", "stereo_recorder", "stereo_source"):
            with self.log(name).open("wb") as log:
                self.processes[name] = subprocess.Popen(
                    self.plan.commands[name], stdout=log, stderr=subprocess.STDOUT,
                    env=self.env, stdin=subprocess.DEVNULL)

    def wait(self, timeout_s: float) -> int:
        """Wait for the recorder; returns its exit code. Raises `DemoError` on failures."""
        deadline = time.monotonic() + timeout_s + TIMEOUT_MARGIN_S
        recorder = self.processes["stereo_recorder"]
        source_ended_at: float | None = None
        while True:
            code = recorder.poll()
            if code is not None:
                return code
            node_code = self.processes["stereo_node"].poll()
            if node_code is not None:
                raise DemoError(self._failure(
                    "stereo_node", f"the stereo node exited (code {node_code}) before the "
                    "recorder finished"))
            source_code = self.processes["stereo_source"].poll()
            if source_code not in (None, 0):
                raise DemoError(self._failure(
                    "stereo_source", f"the source failed (code {source_code})"))
            if source_code == 0:
                # A finite source (folder, bag) ran out: record what came.
                source_ended_at = source_ended_at or time.monotonic()
                if time.monotonic() - source_ended_at > SOURCE_END_GRACE_S:
                    _stop(recorder, wait_s=60.0)
                    continue
            if time.monotonic() > deadline:
                raise DemoError(self._failure(
                    "stereo_recorder", f"the recorder did not finish within {timeout_s:g} s "
                    f"(+{TIMEOUT_MARGIN_S:g} s)"))
            time.sleep(0.2)

    def _failure(self, name: str, message: str) -> str:
        return f"{message}. Last lines of {self.log(name)}:\n{_tail(self.log(name))}"

    def stop(self) -> None:
        for name in ("stereo_source", "stereo_recorder", "stereo_node"):
            if name in self.processes:
                _stop(self.processes[name])


def _format(value: Any, unit: str = "") -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if number != number else f"{number:.2f}{unit}"


def summarize(out: Path) -> str:
    """The key numbers of a finished run, from its report and summary."""
    report = (out / "report.md").read_text(encoding="utf-8")
    numbers = parse_report_numbers(report)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    info = summary.get("info", {})
    lines = [
        f"Backend: {info.get('backend', '?')}, model {info.get('model', '?')}, "
        f"device {info.get('device', '?')}, {info.get('resolution', '?')}, "
        f"{info.get('frames', '?')} frame(s)",
    ]
    latency = numbers["latency"]
    if "end_to_end" in latency:
        lines.append(f"Node latency (end to end): median {_format(latency['end_to_end']['median'])}"
                     f" ms; network {_format(latency.get('network', {}).get('median'))} ms; "
                     f"{_format(numbers['fps'])} frames/s")
    else:
        lines.append(f"Frames per second: {_format(numbers['fps'])}")
    metrics = numbers["metrics"]
    if metrics:
        for row, label in (("nonocc", "non-occluded"), ("all", "all pixels")):
            if row in metrics:
                m = metrics[row]
                lines.append(f"{label}: bad-3 {_format(m.get('bad3'), ' %')}, "
                             f"bad-1 {_format(m.get('bad1'), ' %')}, "
                             f"EPE {_format(m.get('epe'), ' px')}, "
                             f"density {_format(m.get('density'), ' %')}")
        if "valid_nonocc" in metrics:
            m = metrics["valid_nonocc"]
            lines.append(f"valid only, non-occluded: bad-3 {_format(m.get('bad3'), ' %')} "
                         f"at coverage {_format(m.get('coverage'), ' %')}")
    else:
        lines.append("No ground truth: accuracy not measured.")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        plan = plan_demo(args)
    except DemoError as error:
        print(f"s2m2-demo: {error}", file=sys.stderr)
        return 1
    env, notes = ros_environment()
    if plan.choice.fallback:
        print("=" * 78 + f"\n{plan.choice.notice}\n" + "=" * 78, flush=True)
    what = (f"S²M² {args.model} ({plan.choice.weights}) in {plan.choice.backend}"
            if plan.choice.backend != "sgbm" else "SGBM baseline")
    print(f"s2m2-demo: {what} on {plan.dataset}, {args.frames} frame(s) -> {plan.out}"
          f" [{', '.join(notes)}]", flush=True)

    demo = DemoRun(plan, env)
    started = time.monotonic()
    try:
        demo.start()
        code = demo.wait(args.timeout)
    except DemoError as error:
        print(f"s2m2-demo: FAILED: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"s2m2-demo: interrupted; partial outputs (if any) in {plan.out}",
              file=sys.stderr)
        return 130
    finally:
        demo.stop()
    elapsed = time.monotonic() - started

    if code != 0 or not (plan.out / "report.md").is_file():
        reason = {2: "timed out", 3: "recorded nothing"}.get(code, f"exited with code {code}")
        print(f"s2m2-demo: FAILED: the recorder {reason}. Last lines of its log:\n"
              f"{_tail(demo.log('stereo_recorder'))}\nLast lines of the stereo node's log:\n"
              f"{_tail(demo.log('stereo_node'))}", file=sys.stderr)
        return 1
    print(f"s2m2-demo: done in {elapsed:.0f} s. Outputs in {plan.out}: report.md, "
          "summary.json, frame_*_mosaic.png, frame_*_cloud.ply, frame_*_disparity.pfm; "
          "logs in logs/")
    print(summarize(plan.out))
    recorded = json.loads((plan.out / "summary.json").read_text())["info"].get("frames", 0)
    if recorded < args.frames:
        print(f"Note: {recorded} of {args.frames} frame(s): the source ran out of frames.")
    if plan.choice.fallback:
        print("Reminder: these are SGBM baseline numbers, not S²M². " + WEIGHTS_HINT)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console script ``s2m2-demo``."""
    return run(parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
