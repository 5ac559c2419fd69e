# SPDX-License-Identifier: Apache-2.0
"""The interface every stereo backend provides, and the error it raises.

A backend turns a rectified pair of numpy images into a :class:`StereoResult` at the
input resolution. The node, ``s2m2-infer``, ``s2m2-bag``, the demo and the benchmarks
use only what is declared here, so they never branch on which runtime runs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from s2m2_ros.backends.inputs import StereoResult, timed_warmup

__all__ = ["BackendError", "StereoBackend", "StereoResult"]


class BackendError(ValueError):
    """A backend that cannot be built or an option it cannot take; one clear line."""


class StereoBackend(ABC):
    """What a stereo backend must provide.

    ``runtime_options`` names the options :meth:`set_option` accepts while running (the
    node's on-set-parameters callback uses it); everything else is fixed at creation.
    """

    name: ClassVar[str]
    #: Smallest disparity step the backend resolves (DisparityImage.delta_d); 0: continuous.
    disparity_step_px: ClassVar[float] = 0.0
    #: Options that :meth:`set_option` can change at run time.
    runtime_options: ClassVar[frozenset[str]] = frozenset()
    #: How many pairs :meth:`infer_batch` runs through the network at once (1: no batching).
    max_batch: int = 1
    #: Why this backend runs: "requested", or "auto: <reason>" (set by create_backend).
    selection: str = "requested"

    @abstractmethod
    def infer(self, left: np.ndarray, right: np.ndarray, color_order: str = "rgb") -> StereoResult:
        """Disparity, visibility and confidence for one rectified pair.

        ``left``/``right``: H×W (mono) or H×W×3/4 uint8, uint16 or float (0–255) arrays of
        one size and type; ``color_order`` is ``"rgb"`` or ``"bgr"``.
        """

    def infer_batch(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]],
                    color_order: str = "rgb") -> list[StereoResult]:
        """:meth:`infer` for several pairs of one size; backends that batch override it."""
        return [self.infer(left, right, color_order) for left, right in pairs]

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What runs where, for logs, status and diagnostics.

        At least ``backend``, ``model``, ``device`` and ``precision``; ``weights`` where
        a checkpoint was loaded.
        """

    @property
    def needs_warmup(self) -> bool:
        """Whether a new image size costs a compile or export that :meth:`warmup` does."""
        return False

    def warmup(self, height: int, width: int, channels: int = 3) -> float:
        """Run one inference at this size (compiles or exports where needed); ms taken."""
        return timed_warmup(self.infer, height, width, channels)

    def set_option(self, name: str, value: Any) -> None:
        """Change a run-time option (one of :attr:`runtime_options`)."""
        if name not in self.runtime_options:
            raise BackendError(f"backend {self.name!r} has no run-time option {name!r}")
        setattr(self, name, value)
