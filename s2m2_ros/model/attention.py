# SPDX-License-Identifier: Apache-2.0
"""Multi-head attention and the pre-norm transformer blocks built from it.

Blocks take and return channel-last tokens; the composite blocks at the end
take and return ``2B×d×H×W`` maps (left views first, then right views).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .position import relative_position_term

_MAX_ATTENTION_ELEMENTS = 1 << 25  # 128 MiB of float32 weights per chunk


def _layer_norm(dim: int) -> nn.LayerNorm:
    # Attention-side norms carry no affine parameters in the published weights.
    return nn.LayerNorm(dim, elementwise_affine=False)


class SelfAttn(nn.Module):
    """Multi-head attention; with ``use_pe`` it adds the relative position term per head."""

    def __init__(self, dim: int, heads: int, expansion: int = 1, use_pe: bool = False) -> None:
        super().__init__()
        inner = expansion * dim
        self.heads = heads
        self.head_dim = inner // heads
        self.q = nn.Linear(dim, inner, bias=False)
        self.k = nn.Linear(dim, inner, bias=False)
        self.v = nn.Linear(dim, inner, bias=True)
        self.proj = nn.Linear(inner, dim, bias=False)
        if use_pe:
            self.pe_proj = nn.Linear(32, self.head_dim, bias=True)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        # …×L×(heads·hd) → …×heads×L×hd
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(-3, -2)

    def attend(self, x: torch.Tensor, y: torch.Tensor,
               grid: tuple[int, int] | None = None) -> torch.Tensor:
        """Queries from ``x`` (…×L×d), keys and values from ``y``."""
        q = self._split_heads(self.q(x))
        k = self._split_heads(self.k(y))
        v = self._split_heads(self.v(y))
        if grid is None or not hasattr(self, "pe_proj"):
            # The fused (flash) kernels take 4-D inputs only; with more leading
            # dimensions (rows of images) SDPA would build the weight matrix.
            lead = q.shape[:-3]
            out = F.scaled_dot_product_attention(
                q.reshape(-1, *q.shape[-3:]), k.reshape(-1, *k.shape[-3:]),
                v.reshape(-1, *v.shape[-3:])).reshape(*lead, *q.shape[-3:-1], v.shape[-1])
        else:
            out = self._attend_with_position(q, k, v, grid)
        return self.proj(out.transpose(-3, -2).flatten(-2))

    def _attend_with_position(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                              grid: tuple[int, int]) -> torch.Tensor:
        """Explicit attention (the position term needs the weights), in query chunks
        so the weight matrix stays under ``_MAX_ATTENTION_ELEMENTS`` at any image size."""
        length = k.shape[-2]
        per_query = length * q[..., 0, 0].numel()
        chunk = max(1, _MAX_ATTENTION_ELEMENTS // per_query)
        keys_t = k.transpose(-2, -1)
        outputs = []
        for start in range(0, q.shape[-2], chunk):
            queries = q[..., start:start + chunk, :] * self.head_dim ** -0.5
            weights = torch.softmax(queries @ keys_t, dim=-1)
            position = relative_position_term(weights, *grid, query_start=start)
            outputs.append(weights @ v + self.pe_proj(position))
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-2)

    def forward(self, x: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        return self.attend(x, x, grid)


class SelfAttnBlock(nn.Module):
    """``z + attn(norm(z))`` over sequences along the second-to-last axis."""

    def __init__(self, dim: int, heads: int, expansion: int = 1, use_pe: bool = False) -> None:
        super().__init__()
        self.norm_pre = _layer_norm(dim)
        self.attn = SelfAttn(dim, heads, expansion, use_pe)

    def forward(self, z: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        return z + self.attn(self.norm_pre(z), grid)


class CrossAttnBlock(nn.Module):
    """Left attends to right and right to left, with shared projections, plus the residual."""

    def __init__(self, dim: int, heads: int, expansion: int = 1) -> None:
        super().__init__()
        self.norm_pre = _layer_norm(dim)
        self.attn = SelfAttn(dim, heads, expansion)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        left, right = self.norm_pre(z).chunk(2, dim=0)
        out = torch.cat((self.attn.attend(left, right), self.attn.attend(right, left)), dim=0)
        return z + out


class FFN(nn.Module):
    """Pre-norm two-layer MLP with residual."""

    def __init__(self, dim: int, expansion: int = 1) -> None:
        super().__init__()
        self.norm_pre = _layer_norm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, expansion * dim), nn.GELU(), nn.Linear(expansion * dim, dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.ffn(self.norm_pre(z))


class GlobalAttnBlock(nn.Module):
    """Attention over the whole image: optional cross attention, then self attention."""

    def __init__(self, dim: int, heads: int, expansion: int = 1, use_cross_attn: bool = False,
                 use_pe: bool = False) -> None:
        super().__init__()
        # Registration order follows the checkpoint's key order.
        self.self_attn = SelfAttnBlock(dim, heads, expansion, use_pe)
        if use_cross_attn:
            self.cross_attn = CrossAttnBlock(dim, heads, expansion)
            self.ffn_c = FFN(dim, expansion)
        self.ffn = FFN(dim, expansion)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = z.shape
        tokens = z.permute(0, 2, 3, 1).reshape(batch, height * width, channels)
        if hasattr(self, "cross_attn"):
            tokens = self.ffn_c(self.cross_attn(tokens))
        tokens = self.ffn(self.self_attn(tokens, (height, width)))
        return tokens.reshape(batch, height, width, channels).permute(0, 3, 1, 2)


class BasicAttnBlock(nn.Module):
    """Row-wise (epipolar) cross attention then row-wise self attention."""

    def __init__(self, dim: int, heads: int, expansion: int = 1) -> None:
        super().__init__()
        self.cross_attn = CrossAttnBlock(dim, heads, expansion)
        self.self_attn = SelfAttnBlock(dim, heads, expansion)
        self.ffn_c = FFN(dim, expansion)
        self.ffn = FFN(dim, expansion)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        rows = z.permute(0, 2, 3, 1)  # 2B×H×W×d: every image row is one sequence
        rows = self.ffn_c(self.cross_attn(rows))
        rows = self.ffn(self.self_attn(rows))
        return rows.permute(0, 3, 1, 2)
