# SPDX-License-Identifier: Apache-2.0
"""Relative positional encoding of the bottleneck self-attention.

The encoding of a token pair is ``P[i, j] = ½·[X(x_i − x_j), Y(y_i − y_j)]``: it
only depends on the column offset and the row offset. We never build the
``L×L×32`` tensor: attention weights are first summed over key rows (for X) or
key columns (for Y), which leaves ``L×w`` and ``L×h`` maps to combine with each
query's row of the small ``w×w×16`` / ``h×h×16`` offset tables.
"""

from __future__ import annotations

import functools

import torch

_NUM_CENTRES = 16
_SIGMA = 5.0 / 32.0
_PI_APPROX = 3.1415  # the constant the published weights were trained with, not math.pi


def _sinc(t: torch.Tensor) -> torch.Tensor:
    scaled = _PI_APPROX * t
    safe = torch.where(t.abs() < 1e-6, torch.ones_like(t), scaled)
    return torch.where(t.abs() < 1e-6, torch.ones_like(t), torch.sin(safe) / safe)


def _build_offset_table(size: int) -> torch.Tensor:
    """``R[a, b] = T[a − b + size − 1]``: the 16-channel code of every offset, ``size×size×16``."""
    samples = torch.tanh(torch.linspace(-3.0, 3.0, 2 * size + 1, dtype=torch.float64))
    centres = torch.linspace(-1.0, 1.0, _NUM_CENTRES, dtype=torch.float64)
    table = _sinc((centres[None, :] - samples[:, None]) / _SIGMA)
    table = table / table.norm(dim=1, keepdim=True)
    index = torch.arange(size)
    offsets = index[:, None] - index[None, :] + size - 1
    return table[offsets].float()


_cached_offset_table = functools.lru_cache(maxsize=32)(_build_offset_table)


def offset_table(size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The offset code table for a grid side of ``size`` tokens, cached per size.

    Under torch.compile the table is traced (it becomes a constant of the graph),
    since the compiler does not honour Python caches.
    """
    if torch.compiler.is_compiling():
        table = _build_offset_table(size)
    else:
        table = _cached_offset_table(size)
    return table.to(device=device, dtype=dtype)


def relative_position_term(attention: torch.Tensor, height: int, width: int,
                           query_start: int = 0) -> torch.Tensor:
    """``Σ_j A[i, j]·P[i, j, :]`` for attention weights ``A`` of shape ``…×Lq×L``.

    Keys are all ``L = height·width`` tokens in row-major order; the ``Lq`` query
    rows are tokens ``query_start … query_start + Lq − 1`` (a chunk of queries
    keeps the attention matrix small). Returns ``…×Lq×32`` (X code, then Y code).
    """
    *batch, num_queries, _ = attention.shape
    keys = attention.reshape(*batch, num_queries, height, width)  # …, query, yj, xj
    dtype, device = attention.dtype, attention.device
    query = torch.arange(query_start, query_start + num_queries, device=device)
    # Each query's row of the offset tables: num_queries×width×16 and num_queries×height×16.
    codes_x = offset_table(width, device, dtype)[query % width]
    codes_y = offset_table(height, device, dtype)[query // width]
    along_x = torch.einsum("...qm,qmc->...qc", keys.sum(dim=-2), codes_x)
    along_y = torch.einsum("...qn,qnc->...qc", keys.sum(dim=-1), codes_y)
    return torch.cat((along_x, along_y), dim=-1) * 0.5
