# SPDX-License-Identifier: Apache-2.0
"""The network against the published layout, the golden vectors and the spec's
formulas (each formula re-derived here the slow, obvious way)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from s2m2_ros.model import S2M2
from s2m2_ros.model.matching import CostLookup, DispInit, sinkhorn_with_dustbin
from s2m2_ros.model.position import relative_position_term
from s2m2_ros.model.upsampling import convex_upsample, edge_guided_filter

GOLDEN_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "golden"


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not present (the shared/ folder beside the repository)")
    return path


@pytest.fixture(scope="module")
def golden() -> dict:
    return torch.load(_require(GOLDEN_DIR / "s2m2_c32_n1_golden.pt"), weights_only=True)


@pytest.fixture(scope="module")
def golden_model(golden: dict) -> S2M2:
    config = golden["config"]
    model = S2M2(config["feature_channels"], config["num_transformer"],
                 allow_negative=not config["use_positivity"],
                 refine_iters=config["refine_iter"])
    model.load_state_dict(golden["checkpoint"]["state_dict"], strict=True)
    return model.eval()


def _run(model: S2M2, left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, ...]:
    with torch.inference_mode():
        return model(left, right)


@pytest.mark.parametrize("size", ["S", "M", "L", "XL"])
def test_state_dict_matches_manifest(size: str) -> None:
    manifest = json.loads(_require(GOLDEN_DIR / "checkpoint_manifest.json").read_text())[size]
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = S2M2(manifest["feature_channels"], manifest["num_transformer"])
    shapes = {key: list(t.shape) for key, t in model.state_dict().items()}
    assert list(shapes) == list(manifest["state_dict"])
    assert shapes == manifest["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == manifest["parameters"]


def test_golden_outputs_reproduced(golden: dict, golden_model: S2M2) -> None:
    disparity, visibility, confidence = _run(golden_model, golden["left"], golden["right"])
    assert disparity.shape == golden["disparity"].shape
    assert (disparity - golden["disparity"]).abs().max() < 1e-3
    assert (visibility - golden["occlusion"]).abs().max() < 2e-2
    assert (confidence - golden["confidence"]).abs().max() < 2e-2


def test_refine_iters_change_the_result(golden: dict, golden_model: S2M2) -> None:
    reference = golden["disparity"]
    try:
        outputs = {}
        for iters in (1, 3, 5):
            golden_model.refine_iters = iters
            outputs[iters] = _run(golden_model, golden["left"], golden["right"])[0]
    finally:
        golden_model.refine_iters = 3
    assert (outputs[3] - reference).abs().max() < 1e-3
    for iters in (1, 5):
        assert torch.isfinite(outputs[iters]).all()
        assert (outputs[iters] - reference).abs().max() > 1e-2


def test_positivity_and_negative_disparities(golden: dict, golden_model: S2M2) -> None:
    # Swapping and mirroring the views turns the scene's disparities negative.
    left = golden["right"].flip(-1)
    right = golden["left"].flip(-1)
    positive = _run(golden_model, left, right)[0]
    try:
        golden_model.allow_negative = True
        free = _run(golden_model, left, right)[0]
        unswapped = _run(golden_model, golden["left"], golden["right"])[0]
    finally:
        golden_model.allow_negative = False
    assert positive.min() >= 0.0
    assert (free - positive).abs().max() > 1e-2
    assert (unswapped - golden["disparity"]).abs().max() > 1e-3


def test_input_size_must_be_multiple_of_32(golden_model: S2M2) -> None:
    image = torch.zeros(1, 3, 64, 100)
    with pytest.raises(ValueError, match="multiples of 32"):
        golden_model(image, image)


# Measured on the golden pair: bf16 max 0.22 px (median 0.002), fp16 max 0.019 px;
# visibility and confidence within 0.002. Matching stays in float32 under autocast.
@pytest.mark.parametrize("dtype,tolerance_px", [(torch.bfloat16, 0.5), (torch.float16, 0.05)])
def test_cpu_autocast_stays_close(golden: dict, golden_model: S2M2, dtype: torch.dtype,
                                  tolerance_px: float) -> None:
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype):
        disparity, visibility, confidence = golden_model(golden["left"], golden["right"])
    error = (disparity.float() - golden["disparity"]).abs()
    assert error.median() < tolerance_px / 10
    assert error.max() < tolerance_px
    assert (visibility.float() - golden["occlusion"]).abs().max() < 0.01
    assert (confidence.float() - golden["confidence"]).abs().max() < 0.01


def _sinc_table(size: int) -> torch.Tensor:
    samples = [math.tanh(-3.0 + 6.0 * k / (2 * size)) for k in range(2 * size + 1)]
    centres = [-1.0 + 2.0 * m / 15 for m in range(16)]
    rows = []
    for s in samples:
        row = []
        for c in centres:
            t = (c - s) / (5.0 / 32.0)
            row.append(1.0 if abs(t) < 1e-6 else math.sin(3.1415 * t) / (3.1415 * t))
        norm = math.sqrt(sum(v * v for v in row))
        rows.append([v / norm for v in row])
    return torch.tensor(rows, dtype=torch.float64)


def test_relative_position_term_matches_full_encoding() -> None:
    height, width = 3, 5
    length = height * width
    table_x, table_y = _sinc_table(width), _sinc_table(height)
    full = torch.zeros(length, length, 32, dtype=torch.float64)
    for i in range(length):
        for j in range(length):
            yi, xi, yj, xj = i // width, i % width, j // width, j % width
            full[i, j, :16] = 0.5 * table_x[xi - xj + width - 1]
            full[i, j, 16:] = 0.5 * table_y[yi - yj + height - 1]
    attention = torch.softmax(torch.randn(2, 4, length, length, dtype=torch.float64), dim=-1)
    expected = torch.einsum("bhij,ijc->bhic", attention, full)
    got = relative_position_term(attention.float(), height, width).double()
    assert torch.allclose(got, expected, atol=1e-5)


def test_relative_position_term_in_query_chunks() -> None:
    height, width = 4, 6
    attention = torch.softmax(torch.randn(2, 3, height * width, height * width), dim=-1)
    whole = relative_position_term(attention, height, width)
    pieces = [relative_position_term(attention[..., start:start + 5, :], height, width,
                                     query_start=start)
              for start in range(0, height * width, 5)]
    assert torch.allclose(torch.cat(pieces, dim=-2), whole, atol=1e-6)


def test_sinkhorn_plan_respects_marginals() -> None:
    width = 7
    scores = torch.randn(3, width, width, dtype=torch.float64)
    plan = sinkhorn_with_dustbin(scores)
    # The last update is over rows: every real row carries mass 1 once the dustbin is included.
    padded = F.pad(scores, (0, 1, 0, 1))
    assert plan.shape == (3, width, width)
    assert (plan >= 0).all()
    assert (plan.sum(-1) <= 1.0 + 1e-9).all()
    assert padded.shape[-1] == width + 1


def test_disp_init_finds_a_known_shift() -> None:
    # Features whose only match is 3 columns to the left: disparity 3 where it exists.
    torch.manual_seed(0)
    batch, channels, height, width, shift = 1, 16, 2, 12, 3
    codes = torch.randn(width + shift, channels) * 4
    left = codes[:width].T.reshape(1, channels, 1, width).expand(batch, channels, height, width)
    right = codes[shift:].T.reshape(1, channels, 1, width).expand(batch, channels, height, width)
    matcher = DispInit(channels).eval()
    with torch.inference_mode():
        disparity, confidence, visibility, cv = matcher(torch.cat((left, right)), True)
    assert cv.shape == (batch, height, width, width)
    # Columns x >= shift see their match; the first `shift` columns have none in the right view.
    # (Three Sinkhorn iterations leave some mass in the dustbin near the far edge.)
    matched = slice(shift, width - shift)
    assert torch.allclose(disparity[..., matched], torch.full_like(disparity[..., matched], shift),
                          atol=0.1)
    assert (visibility[..., matched] > 0.5).all()
    assert (confidence[..., matched] > 0.5).all()
    assert (visibility[..., :shift] < 0.01).all()
    assert (confidence[..., :shift] < 0.01).all()


def test_disp_init_negative_shift_needs_allow_negative() -> None:
    # The match lies 3 columns to the right: a negative disparity.
    torch.manual_seed(0)
    batch, channels, height, width, shift = 1, 16, 2, 12, 3
    codes = torch.randn(width + shift, channels) * 4
    left = codes[shift:].T.reshape(1, channels, 1, width).expand(batch, channels, height, width)
    right = codes[:width].T.reshape(1, channels, 1, width).expand(batch, channels, height, width)
    features = torch.cat((left, right))
    matcher = DispInit(channels).eval()
    with torch.inference_mode():
        free = matcher(features, False)[0]
        positive = matcher(features, True)[0]
    inside = slice(shift, width - shift)  # away from the edges where mass leaks to the dustbin
    assert torch.allclose(free[..., inside], torch.full_like(free[..., inside], -shift), atol=0.1)
    # With positivity no mass lies right of the pixel; the estimate's 1e-4 regulariser
    # can only pull an empty window towards one column to the right (-1 px).
    assert (positive >= -1.0 - 1e-3).all()


def test_matching_in_row_chunks_equals_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    import s2m2_ros.model.matching as matching

    features = torch.randn(2, 16, 6, 12)
    matcher = DispInit(16).eval()
    with torch.inference_mode():
        whole = matcher(features, True)
        monkeypatch.setattr(matching, "_MAX_PLAN_ELEMENTS", 13 * 13 * 4)  # 4 rows a chunk
        chunked = matcher(features, True)
    for a, b in zip(whole, chunked, strict=True):
        assert torch.equal(a, b)


def test_cost_lookup_interpolates_rows() -> None:
    batch, height, width = 1, 2, 8
    cv = torch.randn(batch, height, width, width)
    disparity = torch.rand(batch, 1, height, width) * 5
    level0, level1 = CostLookup(cv)(disparity)
    pooled = (cv[..., 0::2] + cv[..., 1::2]) / 2

    def sample(row: torch.Tensor, position: float) -> float:
        lower = math.floor(position)
        frac = position - lower
        value = 0.0
        for index, weight in ((lower, 1 - frac), (lower + 1, frac)):
            if 0 <= index < row.numel():
                value += weight * row[index].item()
        return value

    for y in range(height):
        for x in range(width):
            d = disparity[0, 0, y, x].item()
            for t in range(-4, 5):
                assert level0[0, t + 4, y, x].item() == pytest.approx(
                    sample(cv[0, y, x], x - d + t), abs=1e-5)
                assert level1[0, t + 4, y, x].item() == pytest.approx(
                    sample(pooled[0, y, x], x / 2 - d / 2 + t), abs=1e-5)


def test_convex_upsampling_and_edge_filter() -> None:
    x = torch.randn(1, 2, 3, 4)
    weights = torch.randn(1, 9, 12, 16)
    up = convex_upsample(x, weights, 4)
    soft = torch.softmax(weights, dim=1)
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    for oy, ox in ((0, 0), (5, 7), (11, 15)):
        y, xx = oy // 4, ox // 4
        expected = sum(soft[0, k, oy, ox] * padded[0, :, y + k // 3, xx + k % 3] for k in range(9))
        assert torch.allclose(up[0, :, oy, ox], expected, atol=1e-6)
    constant = torch.full((1, 1, 12, 16), 2.5)
    assert torch.allclose(edge_guided_filter(constant, weights), constant)
