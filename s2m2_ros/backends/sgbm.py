# SPDX-License-Identifier: Apache-2.0
"""``sgbm``: classical OpenCV semi-global matching (no weights, CPU)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from s2m2_ros.backends import register_backend
from s2m2_ros.backends.base import StereoBackend, StereoResult
from s2m2_ros.sgbm import SgbmBackend as SgbmMatcher


class SgbmBackend(StereoBackend):
    """:class:`s2m2_ros.sgbm.SgbmBackend` behind the backend interface."""

    name: ClassVar[str] = "sgbm"
    disparity_step_px: ClassVar[float] = SgbmMatcher.disparity_step_px

    def __init__(self, matcher: SgbmMatcher | None = None) -> None:
        self.matcher = matcher or SgbmMatcher()

    def infer(self, left: np.ndarray, right: np.ndarray, color_order: str = "rgb") -> StereoResult:
        return self.matcher.infer(left, right, color_order)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "weights": None, **self.matcher.describe()}


@register_backend("sgbm")
def create_sgbm_backend(**_network_options: Any) -> SgbmBackend:
    """SGBM ignores the network options (model, weights, device, precision, …)."""
    return SgbmBackend()
