# SPDX-License-Identifier: Apache-2.0
"""``stereo_node`` start-up: a configuration it cannot run with ends the process with a
non-zero status and one clear error line (no traceback); a good one runs and stops
cleanly on Ctrl-C.

The processes are started together by a module fixture, so their imports overlap.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("rclpy")

from node_harness import NodeProcess, write_tiny_checkpoint  # noqa: E402  (after the skip)

EXIT_TIMEOUT_S = 120.0  # a hang guard, not a speed requirement
STARTED = "started: backend"


@dataclass(frozen=True)
class Failure:
    parameters: dict[str, object]
    words: tuple[str, ...]  # the error line must name the problem with these


def _failures(weights: Path, text_file: Path, missing: Path) -> dict[str, Failure]:
    return {
        "weights not found": Failure({"weights": str(missing), "device": "cpu"},
                                     (str(missing), "does not exist")),
        "weights not a checkpoint": Failure({"weights": str(text_file), "device": "cpu"},
                                            (str(text_file), "checkpoint")),
        "cuda without a GPU": Failure({"weights": str(weights), "device": "cuda"},
                                      ("cuda", "not available")),
        "unknown model": Failure({"model": "Z", "device": "cpu"}, ("model", "'Z'")),
        "refine_iters out of range": Failure({"weights": str(weights), "refine_iters": 0},
                                             ("parameter refine_iters", "out of range")),
        "min_depth above max_depth": Failure(
            {"backend": "sgbm", "min_depth": 3.0, "max_depth": 2.0},
            ("min_depth (3 m) is greater than max_depth (2 m)",)),
        "threshold of the wrong type": Failure(
            {"weights": str(weights), "confidence_threshold": "high"},
            ("parameter confidence_threshold", "DOUBLE")),
    }


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory,
            ) -> Iterator[dict[str, tuple[NodeProcess, Failure | None]]]:
    """Every failing configuration, plus a good SGBM one, launched at once."""
    folder = tmp_path_factory.mktemp("startup")
    weights = write_tiny_checkpoint(folder / "tiny.pth")
    text_file = folder / "notes.pth"
    text_file.write_text("these are not weights\n")
    missing = folder / "absent" / "S2M2-M.pth"
    processes: dict[str, tuple[NodeProcess, Failure | None]] = {}
    try:
        for index, (case, failure) in enumerate(
                _failures(weights, text_file, missing).items()):
            processes[case] = (NodeProcess(failure.parameters, f"/startup_{index}",
                                           folder / f"case_{index}"), failure)
        processes["good"] = (NodeProcess({"backend": "sgbm"}, "/startup_good",
                                         folder / "good"), None)
        yield processes
    finally:
        for process, _failure in processes.values():
            process.stop()


def _case_names() -> list[str]:
    return list(_failures(Path("w"), Path("t"), Path("m")))


@pytest.mark.parametrize("case", _case_names())
def test_bad_configuration_exits_with_one_clear_line(
        started: dict[str, tuple[NodeProcess, Failure | None]], case: str) -> None:
    process, failure = started[case]
    try:
        status = process.wait_exit(EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{case}: the node kept running:\n{process.output()}")
    output = process.output()
    assert status != 0, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if "cannot start" in line]
    assert len(errors) == 1, output
    assert "ERROR" in errors[0]
    for word in failure.words:
        assert word in errors[0], f"{word!r} not in {errors[0]!r}"
    assert STARTED not in output


def test_good_configuration_runs_and_stops_cleanly_on_ctrl_c(
        started: dict[str, tuple[NodeProcess, Failure | None]]) -> None:
    process, _ = started["good"]
    assert process.wait_for_output(STARTED, EXIT_TIMEOUT_S), process.output()
    assert process.alive()
    assert process.stop() == 0, process.output()
    output = process.output()
    assert "Traceback" not in output, output
    assert "ERROR" not in output, output
