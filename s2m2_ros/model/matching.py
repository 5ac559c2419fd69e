# SPDX-License-Identifier: Apache-2.0
"""Global matching by optimal transport along epipolar rows, and the cost lookup
the local refiner reads from the same correlation volume."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_INFEASIBLE = -1e4
_SINKHORN_ITERATIONS = 3
_WINDOW_RADIUS = 2  # columns each side of the best match used for the sub-pixel estimate
_MAX_PLAN_ELEMENTS = 1 << 24  # per chunk of rows: 64 MiB of float32 transport plan


def _log_sum_exp(x: torch.Tensor, dim: int) -> torch.Tensor:
    peak = x.amax(dim=dim, keepdim=True)
    return peak + torch.log((x - peak).exp().sum(dim=dim, keepdim=True).clamp_min(1e-30))


def sinkhorn_with_dustbin(scores: torch.Tensor) -> torch.Tensor:
    """Transport plan for ``…×w×w`` scores with a zero-score dustbin row and column.

    Both marginals are ``[1, …, 1, w] / 2w``; the returned plan is rescaled by
    ``2w`` (a matched pixel has mass ~1) and has the dustbin dropped.
    """
    width = scores.shape[-1]
    scores = F.pad(scores, (0, 1, 0, 1))  # dustbin: one more row and column of zeros
    log_mass = torch.full((width + 1,), -math.log(2 * width), dtype=scores.dtype,
                          device=scores.device)
    log_mass[-1] = math.log(width) - math.log(2 * width)
    log_mu = log_mass[:, None]   # over left columns i (rows of the plan)
    log_nu = log_mass[None, :]   # over right columns j
    v = log_nu - _log_sum_exp(scores, dim=-2)
    u = log_mu - _log_sum_exp(scores + v, dim=-1)
    for _ in range(_SINKHORN_ITERATIONS - 1):
        v = log_nu - _log_sum_exp(scores + u, dim=-2)
        u = log_mu - _log_sum_exp(scores + v, dim=-1)
    plan = (scores + u + v + math.log(2 * width)).exp()
    return plan[..., :-1, :-1]


def infeasible_mask(width: int, device: torch.device) -> torch.Tensor:
    """True where the right column lies right of the left one (negative disparity)."""
    index = torch.arange(width, device=device)
    return index[None, :] > index[:, None]


class DispInit(nn.Module):
    """Initial ¼-resolution disparity, confidence and visibility from optimal transport."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(channels)

    def forward(self, features: torch.Tensor, positivity: bool = True) -> tuple[torch.Tensor, ...]:
        """``features``: 2B×C×h×w. Returns disparity, confidence, visibility
        (B×1×h×w each) and the raw correlation volume ``cv`` (B×h×w×w).

        With ``positivity`` a left pixel may only match right columns at or left
        of its own (disparity ≥ 0)."""
        # Matching runs in float32 even under autocast: the transport's argmax and
        # exponentials are where reduced precision would flip matches.
        with torch.autocast(features.device.type, enabled=False):
            normed = self.layer_norm(features.float().permute(0, 2, 3, 1))
            left, right = normed.chunk(2, dim=0)            # B×h×w×C
            cv = left @ right.transpose(-2, -1)              # B×h×w(left i)×w(right j)
            # Rows are independent: transport a few at a time so the plan and its
            # temporaries stay small next to the volume itself at any image size.
            batch, height, width, _ = cv.shape
            rows = cv.reshape(batch * height, width, width)
            chunk = max(1, _MAX_PLAN_ELEMENTS // (width + 1) ** 2)
            results = [self._match(rows[start:start + chunk], positivity)
                       for start in range(0, rows.shape[0], chunk)]
            disparity, confidence, visibility = (
                torch.cat(maps).reshape(batch, 1, height, width)
                for maps in zip(*results, strict=True))
            return disparity, confidence, visibility, cv

    @staticmethod
    def _match(cv: torch.Tensor, positivity: bool) -> tuple[torch.Tensor, ...]:
        """Disparity, confidence and visibility (R×w each) for R rows of scores (R×w×w)."""
        width = cv.shape[-1]
        scores = cv
        if positivity:
            blocked = infeasible_mask(width, cv.device)
            scores = cv.masked_fill(blocked, _INFEASIBLE)
        plan = sinkhorn_with_dustbin(scores)
        if positivity:
            plan = plan.masked_fill(blocked, 0.0)

        best = plan.argmax(dim=-1, keepdim=True)         # B×h×w×1
        offsets = torch.arange(-_WINDOW_RADIUS, _WINDOW_RADIUS + 1, device=cv.device)
        columns = best + offsets                          # B×h×w×5
        # Columns outside the row count as zero mass.
        padded = F.pad(plan, (_WINDOW_RADIUS, _WINDOW_RADIUS))
        window = padded.gather(-1, columns + _WINDOW_RADIUS)
        confidence = window.sum(dim=-1)
        match = ((window * columns.to(window.dtype)).sum(dim=-1) + 1e-4) / (confidence + 1e-4)
        left_column = torch.arange(width, device=cv.device, dtype=match.dtype)
        disparity = left_column - match
        visibility = plan.sum(dim=-1)
        return disparity, confidence, visibility


class CostLookup:
    """Reads the correlation volume around a current disparity, at two scales.

    Level 0 is the volume itself, level 1 is it average-pooled by two along the
    right-image axis. For each pixel, 9 samples (offsets −4…4) per level with
    linear interpolation and zeros outside the row.
    """

    radius = 4

    def __init__(self, cv: torch.Tensor) -> None:
        batch, height, width, _ = cv.shape
        self.levels = (cv, F.avg_pool1d(cv.reshape(-1, 1, width), 2).reshape(
            batch, height, width, width // 2))
        self.column = torch.arange(width, device=cv.device, dtype=cv.dtype).view(1, 1, width, 1)
        self.offsets = torch.arange(-self.radius, self.radius + 1, device=cv.device,
                                    dtype=cv.dtype)

    @staticmethod
    def _sample(row: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        length = row.shape[-1]
        lower = position.floor()
        frac = position - lower
        lower = lower.long()
        upper = lower + 1
        def take(index: torch.Tensor) -> torch.Tensor:
            inside = (index >= 0) & (index < length)
            values = row.gather(-1, index.clamp(0, length - 1))
            return values * inside.to(values.dtype)
        return take(lower) * (1 - frac) + take(upper) * frac

    def __call__(self, disparity: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``disparity``: B×1×h×w at ¼ resolution → two B×9×h×w cost maps."""
        d = disparity.squeeze(1).unsqueeze(-1).to(self.levels[0].dtype)  # B×h×w×1
        outputs = []
        for level, cost in enumerate(self.levels):
            scale = 2 ** level
            position = (self.column - d) / scale + self.offsets
            outputs.append(self._sample(cost, position).permute(0, 3, 1, 2))
        return outputs[0], outputs[1]
