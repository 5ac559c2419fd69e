# SPDX-License-Identifier: Apache-2.0
"""``torch``: the S²M² network in PyTorch (eager or torch.compile; CPU or CUDA)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from s2m2_ros.backends import register_backend
from s2m2_ros.backends.base import BackendError, StereoBackend, StereoResult
from s2m2_ros.engine import EngineConfigError, StereoEngine


class TorchBackend(StereoBackend):
    """:class:`StereoEngine` behind the backend interface."""

    name: ClassVar[str] = "torch"
    runtime_options: ClassVar[frozenset[str]] = frozenset(
        {"refine_iters", "allow_negative", "input_scale"})

    def __init__(self, engine: StereoEngine, max_batch: int = 8) -> None:
        self.engine = engine
        if int(max_batch) < 1:
            raise BackendError(f"max_batch must be at least 1, got {max_batch!r}")
        self.max_batch = int(max_batch)

    @property
    def needs_warmup(self) -> bool:
        return self.engine.compiled

    def infer(self, left: np.ndarray, right: np.ndarray, color_order: str = "rgb") -> StereoResult:
        return self.engine.infer(left, right, color_order)

    def infer_batch(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]],
                    color_order: str = "rgb") -> list[StereoResult]:
        """Pairs of one size through the network ``max_batch`` at a time."""
        results: list[StereoResult] = []
        for start in range(0, len(pairs), self.max_batch):
            results += self.engine.infer_batch(pairs[start:start + self.max_batch], color_order)
        return results

    def warmup(self, height: int, width: int, channels: int = 3) -> float:
        return self.engine.warmup(height, width, channels)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, **self.engine.describe()}

    def set_option(self, name: str, value: Any) -> None:
        if name not in self.runtime_options:
            raise BackendError(f"backend {self.name!r} has no run-time option {name!r}")
        setattr(self.engine, name, value)


@register_backend("torch")
def create_torch_backend(*, model: str = "M", weights: str | os.PathLike[str] | None = None,
                         weights_dir: str | os.PathLike[str] | None = None,
                         device: str = "auto", precision: str = "auto", compile: bool = False,
                         allow_negative: bool = False, refine_iters: int = 3,
                         input_scale: float = 1.0, max_batch: int = 8) -> TorchBackend:
    """The network from ``weights`` (a path) or ``model`` (S/M/L/XL, looked up).

    ``compile``: torch.compile, with inductor's on-disk cache in the package's user
    cache (``$TORCHINDUCTOR_CACHE_DIR`` wins), so a restart reuses the compiled kernels
    instead of paying the cold compile again. ``max_batch``: pairs per network call in
    :meth:`TorchBackend.infer_batch`.
    """
    from s2m2_ros.zoo import CheckpointError, user_cache_dir

    if compile:
        # Inductor's default lives in /tmp, which a reboot empties.
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(user_cache_dir() / "inductor"))

    try:
        engine = StereoEngine.from_model_name(
            model, weights=weights or None, weights_dir=weights_dir or None,
            allow_negative=allow_negative, refine_iters=refine_iters, device=device,
            precision=precision, compile=compile, input_scale=input_scale)
    except (CheckpointError, EngineConfigError) as error:
        raise BackendError(str(error)) from None
    return TorchBackend(engine, max_batch)
