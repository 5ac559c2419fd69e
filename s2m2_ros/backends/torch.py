# SPDX-License-Identifier: Apache-2.0
"""``torch``: the S²M² network in PyTorch (eager or torch.compile; CPU or CUDA)."""

from __future__ import annotations

import os
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

    def __init__(self, engine: StereoEngine) -> None:
        self.engine = engine

    @property
    def needs_warmup(self) -> bool:
        return self.engine.compiled

    def infer(self, left: np.ndarray, right: np.ndarray, color_order: str = "rgb") -> StereoResult:
        return self.engine.infer(left, right, color_order)

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
                         input_scale: float = 1.0) -> TorchBackend:
    """The network from ``weights`` (a path) or ``model`` (S/M/L/XL, looked up)."""
    from s2m2_ros.zoo import CheckpointError

    try:
        engine = StereoEngine.from_model_name(
            model, weights=weights or None, weights_dir=weights_dir or None,
            allow_negative=allow_negative, refine_iters=refine_iters, device=device,
            precision=precision, compile=compile, input_scale=input_scale)
    except (CheckpointError, EngineConfigError) as error:
        raise BackendError(str(error)) from None
    return TorchBackend(engine)
