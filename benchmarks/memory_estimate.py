# SPDX-License-Identifier: Apache-2.0
"""Computed peak tensor memory of the engine's tensor path, on fake tensors (shapes only).

Used by ``model_benchmark.py --memory-estimate`` and to skip CPU configurations that
would not fit; see that script's docstring for what is and is not counted.
"""

from __future__ import annotations

import contextlib
import sys
import weakref
from dataclasses import dataclass, field
from typing import Any

from benchmark_common import build_network


@dataclass
class MemoryEstimate:
    """Computed tensor memory of one configuration, in bytes."""

    weights: int
    activations: int  # peak of live non-weight tensor bytes (inputs and outputs included)
    largest: list[tuple[int, str, tuple[int, ...]]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.weights + self.activations


def _live_bytes_tracker(external: list[Any], keep_largest: int) -> Any:
    """A TorchDispatchMode adding up the bytes of live tensor storages (see docstring)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_map_only
    from torch.utils.weak import WeakIdKeyDictionary

    class LiveBytesTracker(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.live = 0
            self.peak = 0
            self.largest_at_peak: list[tuple[int, str, tuple[int, ...]]] = []
            self._storages = WeakIdKeyDictionary()
            self._described: dict[int, tuple[int, str, tuple[int, ...]]] = {}
            self._next_key = 0
            # Weights and buffers are not activations; their views (nn.Linear's
            # weight.t(), say) must not count as new memory.
            for tensor in external:
                self._storages[tensor.untyped_storage()] = -1

        def _free(self, key: int, nbytes: int) -> None:
            self.live -= nbytes
            self._described.pop(key, None)

        def _track(self, operator: str, tensor: torch.Tensor) -> None:
            storage = tensor.untyped_storage()
            if storage in self._storages:
                return
            nbytes = storage.nbytes()
            key = self._next_key
            self._next_key += 1
            self._storages[storage] = key
            weakref.finalize(storage, self._free, key, nbytes)
            self.live += nbytes
            if keep_largest:
                self._described[key] = (nbytes, operator, tuple(tensor.shape))
            if self.live > self.peak:
                self.peak = self.live
                if keep_largest:
                    self.largest_at_peak = sorted(self._described.values(),
                                                  reverse=True)[:keep_largest]

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                               kwargs: Any = None) -> Any:
            out = func(*args, **(kwargs or {}))
            tree_map_only(torch.Tensor, lambda tensor: self._track(str(func), tensor), out)
            return out

    return LiveBytesTracker()


def _clear_model_caches() -> None:
    """Empty every ``functools`` cache of the network's modules (e.g. position tables)."""
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith("s2m2_ros.model"):
            continue
        for value in vars(module).values():
            if callable(getattr(value, "cache_clear", None)):
                value.cache_clear()


def estimate_memory(size: str, width: int, height: int, precision: str = "fp32",
                    keep_largest: int = 0) -> MemoryEstimate:
    """Peak tensor memory of ``StereoEngine.infer``'s tensor path, computed on fake tensors.

    Mirrors the engine (CPU, no ``input_scale``): the 2×H×W×3 uint8 pair, its float RGB
    copy, the padded batch, the network under the precision's autocast, the cropped
    float32 maps. Raises ``EngineConfigError`` for a precision the CPU cannot autocast.
    """
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from s2m2_ros.engine import PRECISIONS, SIZE_MULTIPLE, StereoEngine, resolve_precision
    from s2m2_ros.padding import pad_to_multiple

    resolve_precision(precision, torch.device("cpu"))
    autocast: contextlib.AbstractContextManager = (
        contextlib.nullcontext() if precision == "fp32"
        else torch.autocast("cpu", dtype=PRECISIONS[precision]))
    _clear_model_caches()  # a fake tensor must not stay in a cache, nor meet a real one
    try:
        with FakeTensorMode():
            network = build_network(size)
            external = [*network.parameters(), *network.buffers()]
            weights = sum(t.numel() * t.element_size() for t in external)
            tracker = _live_bytes_tracker(external, keep_largest)
            with torch.no_grad(), tracker:
                pair = torch.empty((2, height, width, 3), dtype=torch.uint8)
                images = StereoEngine._to_network_input(pair, "rgb")
                del pair  # a temporary in the engine
                padded, info = pad_to_multiple(images, SIZE_MULTIPLE)
                with autocast:
                    disparity, visibility, confidence = network(padded[:1], padded[1:])
                outputs = torch.cat((disparity, visibility, confidence), dim=1).float()
                outputs = outputs[..., info.top:info.top + info.height,
                                  info.left:info.left + info.width]
                maps = outputs[0].contiguous()
                del maps, outputs, disparity, visibility, confidence, padded, images
    finally:
        _clear_model_caches()
    return MemoryEstimate(weights, tracker.peak, tracker.largest_at_peak)
