# SPDX-License-Identifier: Apache-2.0
"""``stereo_node`` with the openvino backend, as its own process over real DDS.

The node exports the tiny network for the camera's padded size on its first frame
(into a temporary engine cache) and must publish what the torch engine computes for
the same pair, within the export's accuracy; status and the start-up line name the
backend.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("stereo_msgs.msg")

from node_harness import (  # noqa: E402  (after the skips)
    HEIGHT,
    STATUS_TOPIC,
    WIDTH,
    NodeProcess,
    StereoRig,
    connected_rig,
    image_array,
    pair_messages,
    textured_pair,
    write_tiny_checkpoint,
)

from s2m2_ros.backends import runtime_installed  # noqa: E402

pytestmark = pytest.mark.skipif(not runtime_installed("openvino"),
                                reason="openvino is not installed")

NAMESPACE = "/openvino"
# Generous: the first frame exports and compiles the graph on a loaded 2-core machine.
FIRST_FRAME_TIMEOUT_S = 600.0


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("weights") / "tiny.pth")


@pytest.fixture(scope="module")
def node(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    cache = tmp_path_factory.mktemp("engines")
    previous = os.environ.get("S2M2_ENGINE_CACHE")
    os.environ["S2M2_ENGINE_CACHE"] = str(cache)  # the node process inherits it
    try:
        process = NodeProcess({"backend": "openvino", "weights": str(checkpoint),
                               "device": "cpu", "status_period_s": 0.0},
                              NAMESPACE, tmp_path_factory.mktemp("openvino_node"))
    finally:
        if previous is None:
            os.environ.pop("S2M2_ENGINE_CACHE")
        else:
            os.environ["S2M2_ENGINE_CACHE"] = previous
    process.cache = cache  # type: ignore[attr-defined]
    yield process
    process.stop()


@pytest.fixture(scope="module")
def rig(node: NodeProcess) -> Iterator[StereoRig]:
    with connected_rig(node, NAMESPACE) as rig:
        yield rig


def test_openvino_node_publishes_what_torch_computes(node: NodeProcess, rig: StereoRig,
                                                     checkpoint: Path) -> None:
    from s2m2_ros.engine import StereoEngine

    assert "started: backend openvino (requested)" in node.output()
    left, right = textured_pair(seed=5)
    pair = pair_messages(left, right, rig.new_stamp())
    outputs = rig.round_trip(pair, timeout_s=FIRST_FRAME_TIMEOUT_S)

    expected = StereoEngine.from_model_name(weights=checkpoint, device="cpu",
                                            precision="fp32").infer(left, right)
    disparity = image_array(outputs["disparity"].image)
    assert disparity.shape == (HEIGHT, WIDTH)
    # Every pixel of a random network's output is "valid" or not by its confidence;
    # compare where the node published a disparity.
    valid = disparity >= outputs["disparity"].min_disparity
    assert valid.any()
    np.testing.assert_allclose(disparity[valid], expected.disparity[valid], atol=1e-3)
    np.testing.assert_allclose(image_array(outputs["confidence"]), expected.confidence,
                               atol=1e-3)
    if rig.status_type is not None:
        status = outputs[STATUS_TOPIC]
        assert (status.backend, status.device, status.precision) == ("openvino", "cpu", "fp32")
    # The graph went into the engine cache the environment named, not ~/.cache.
    assert list(Path(node.cache).rglob("model.onnx"))  # type: ignore[attr-defined]
