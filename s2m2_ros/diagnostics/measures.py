# SPDX-License-Identifier: Apache-2.0
"""What the health monitor measures with: event rates over a sliding window and the
memory PyTorch holds on a CUDA device."""

from __future__ import annotations

import sys
from collections import deque


def cuda_memory_allocated_bytes(device: str) -> int | None:
    """Bytes held by PyTorch's CUDA allocator on `device`, or None when not on CUDA.

    Only looks at torch if something already imported it: the monitor must not pull in
    torch (seconds of import) just to report "n/a".
    """
    torch = sys.modules.get("torch")
    if torch is None or not device.startswith("cuda"):
        return None
    try:
        if not torch.cuda.is_available():
            return None
        return int(torch.cuda.memory_allocated(device))
    except Exception:  # a bad device string or a lost context must not kill diagnostics
        return None


class SlidingRate:
    """Event times inside a sliding window, for a rate in Hz."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.times: deque[float] = deque()
        self.first_s: float | None = None

    def add(self, now_s: float) -> None:
        if self.first_s is None:
            self.first_s = now_s
        self.times.append(now_s)
        self.prune(now_s)

    def prune(self, now_s: float) -> None:
        while self.times and self.times[0] < now_s - self.window_s:
            self.times.popleft()

    def hz(self, now_s: float) -> float:
        self.prune(now_s)
        if self.first_s is not None and now_s - self.first_s >= self.window_s:
            # Over a full window, so that a stream that stops fades out instead of
            # reporting its old rate until the window empties.
            return len(self.times) / self.window_s
        if len(self.times) < 2:
            return 0.0
        # Until the window has filled: events over the time since the oldest one, up
        # to now (not to the newest event), so a burst that stopped fades out too.
        span = now_s - self.times[0]
        return (len(self.times) - 1) / span if span > 0 else 0.0
