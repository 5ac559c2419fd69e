# SPDX-License-Identifier: Apache-2.0
"""Stereo backends behind one interface, built by name with :func:`create_backend`.

Each backend module registers its factory with :func:`register_backend`; nothing outside
this package branches on a backend's name::

    backend = create_backend("torch", weights="CH128NTR1.pth", device="cpu")
    result = backend.infer(left, right)  # H×W×3 uint8 RGB arrays
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from s2m2_ros.backends.base import BackendError, StereoBackend, StereoResult

__all__ = ["BackendError", "StereoBackend", "StereoResult", "available_backends",
           "choose_auto", "create_backend", "register_backend"]

BackendFactory = Callable[..., StereoBackend]
_FACTORIES: dict[str, BackendFactory] = {}


def register_backend(name: str) -> Callable[[BackendFactory], BackendFactory]:
    """Decorator: make ``factory(**options)`` the way to build backend ``name``."""
    def register(factory: BackendFactory) -> BackendFactory:
        _FACTORIES[name] = factory
        return factory
    return register


def available_backends() -> tuple[str, ...]:
    """Registered backend names (``auto`` chooses among them)."""
    return tuple(_FACTORIES)


def choose_auto() -> tuple[str, str]:
    """The backend ``auto`` means here, and why."""
    import torch

    if torch.cuda.is_available():
        return "torch", "CUDA is available"
    return "torch", "no CUDA device"


def create_backend(name: str, **options: Any) -> StereoBackend:
    """Build backend ``name`` (or ``auto``) with ``options``; BackendError if it cannot."""
    if name == "auto":
        name, _reason = choose_auto()
    factory = _FACTORIES.get(name)
    if factory is None:
        raise BackendError(f"unknown backend {name!r}: use auto, "
                           + ", ".join(available_backends()))
    return factory(**options)


# Registration: importing a backend module registers it. Runtimes (openvino,
# onnxruntime) are imported inside their factories, so a missing one costs nothing here.
from s2m2_ros.backends import sgbm as _sgbm  # noqa: E402, F401
from s2m2_ros.backends import torch as _torch  # noqa: E402, F401
