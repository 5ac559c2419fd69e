# SPDX-License-Identifier: Apache-2.0
"""Stereo backends behind one interface, built by name with :func:`create_backend`.

Each backend module registers its factory with :func:`register_backend`; nothing outside
this package branches on a backend's name::

    backend = create_backend("torch", weights="CH128NTR1.pth", device="cpu")
    result = backend.infer(left, right)  # H×W×3 uint8 RGB arrays
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import Any

from s2m2_ros.backends.base import BackendError, StereoBackend, StereoResult

__all__ = ["BACKEND_NAMES", "BackendError", "StereoBackend", "StereoResult",
           "available_backends", "choose_auto", "create_backend", "register_backend",
           "runtime_installed"]

BackendFactory = Callable[..., StereoBackend]
_FACTORIES: dict[str, BackendFactory] = {}
# Backend name → the module that registers it. Modules are imported on first use, so a
# process that runs torch never imports openvino (and the other way round).
_MODULES: dict[str, str] = {
    "torch": "s2m2_ros.backends.torch",
    "openvino": "s2m2_ros.backends.openvino",
    "onnxruntime": "s2m2_ros.backends.onnxruntime",
    "sgbm": "s2m2_ros.backends.sgbm",
}
#: Every backend name the node's ``backend`` parameter accepts, ``auto`` first.
BACKEND_NAMES: tuple[str, ...] = ("auto", *_MODULES)


def register_backend(name: str) -> Callable[[BackendFactory], BackendFactory]:
    """Decorator: make ``factory(**options)`` the way to build backend ``name``."""
    def register(factory: BackendFactory) -> BackendFactory:
        _FACTORIES[name] = factory
        return factory
    return register


def available_backends() -> tuple[str, ...]:
    """Known backend names (``auto`` chooses among them); a runtime may be missing."""
    return tuple(dict.fromkeys([*_MODULES, *_FACTORIES]))


def runtime_installed(module: str) -> bool:
    """Whether the Python package ``module`` (``openvino``, ``onnxruntime``) imports here.

    Looks for it without importing it; a package set to ``None`` in ``sys.modules``
    (blocked) counts as missing.
    """
    import sys

    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def choose_auto(device: str = "auto") -> tuple[str, str]:
    """The backend ``auto`` means here for ``device``, and why.

    torch where CUDA is present (it runs fp16 on the GPU without an export) or asked
    for, else openvino where installed (faster than torch on x86 CPUs), else torch on
    the CPU.
    """
    import torch

    text = str(device).strip().lower()
    if text.startswith("cuda"):
        return "torch", f"device {text} requested"
    if text != "cpu" and torch.cuda.is_available():
        return "torch", "CUDA device present"
    where = "device cpu requested" if text == "cpu" else "no CUDA device"
    if runtime_installed("openvino"):
        return "openvino", f"{where}, openvino installed"
    return "torch", f"{where}, openvino not installed"


def _factory(name: str) -> BackendFactory | None:
    if name not in _FACTORIES and name in _MODULES:
        importlib.import_module(_MODULES[name])
    return _FACTORIES.get(name)


def create_backend(name: str, **options: Any) -> StereoBackend:
    """Build backend ``name`` (or ``auto``) with ``options``; BackendError if it cannot.

    Network options, understood by every network backend: ``model`` (S/M/L/XL) or
    ``weights`` (a checkpoint path), ``weights_dir``, ``device``, ``precision``,
    ``allow_negative``, ``refine_iters``, ``input_scale``; backend-specific ones are
    listed in each module. ``sgbm`` ignores the network options.
    """
    selection = "requested"
    if name == "auto":
        name, reason = choose_auto(str(options.get("device", "auto")))
        selection = f"auto: {reason}"
    factory = _factory(name)
    if factory is None:
        raise BackendError(f"unknown backend {name!r}: use one of "
                           + ", ".join(BACKEND_NAMES))
    backend = factory(**options)
    backend.selection = selection
    return backend
