# SPDX-License-Identifier: Apache-2.0
"""The published S²M² models as data, finding and strictly loading their weights.

``MODELS`` describes the four released sizes (torchvision-style: one record per
set of weights); :func:`build_model` turns a size name or a checkpoint path into
a ready, eval-mode network; :func:`download_main` is the ``s2m2-download``
console script.

Weights are looked up, in order, at an explicit path, in a weights directory
(argument, then ``$S2M2_WEIGHTS_DIR``), in the user cache
(``$XDG_CACHE_HOME/s2m2_ros``, default ``~/.cache/s2m2_ros``) and in the
Hugging Face hub cache. Looking up never touches the network; only
:func:`download` does.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # the network imports only when a model is built
    from s2m2_ros.model import S2M2

MODEL_CARD_URL = "https://huggingface.co/minimok/s2m2"
WEIGHTS_DIR_ENV = "S2M2_WEIGHTS_DIR"
CACHE_SUBDIR = "s2m2_ros"
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")

# Keys that fix the architecture: C is the output width of the stem's last conv,
# N the number of stacked multi-resolution transformers.
CHANNELS_KEY = "cnn_backbone.conv1_down.2.weight"
_TRANSFORMER_KEY = re.compile(r"^transformer\.uformer_list\.(\d+)\.")


@dataclass(frozen=True)
class ModelSpec:
    """One published set of S²M² weights."""

    name: str
    checkpoint_file: str
    feature_channels: int
    num_transformer: int
    parameters: int
    hub_repo: str = "minimok/s2m2"

    @property
    def architecture(self) -> tuple[int, int]:
        return self.feature_channels, self.num_transformer


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("S", "CH128NTR1.pth", 128, 1, 26_501_043),
        ModelSpec("M", "CH192NTR2.pth", 192, 2, 80_470_259),
        ModelSpec("L", "CH256NTR3.pth", 256, 3, 180_724_083),
        ModelSpec("XL", "CH384NTR3.pth", 384, 3, 405_710_003),
    )
}


class CheckpointError(Exception):
    """Weights could not be found, read or matched to the network."""


class WeightsNotFoundError(CheckpointError):
    """No checkpoint file in any of the places searched."""


class UnknownModelError(CheckpointError, ValueError):
    """A model name that is not one of ``MODELS``."""


class DownloadError(CheckpointError):
    """Fetching weights from the Hugging Face hub failed."""


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` for a size name (case-insensitive: ``"m"`` works)."""
    spec = MODELS.get(str(name).strip().upper())
    if spec is None:
        raise UnknownModelError(
            f"unknown model {name!r}: choose one of {', '.join(MODELS)} or give a checkpoint path"
        )
    return spec


def spec_for_architecture(feature_channels: int, num_transformer: int) -> ModelSpec | None:
    """The published size with this (C, N), or None for a custom configuration."""
    for spec in MODELS.values():
        if spec.architecture == (feature_channels, num_transformer):
            return spec
    return None


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/s2m2_ros``, or ``~/.cache/s2m2_ros``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says relative values are invalid and must be ignored.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / CACHE_SUBDIR


def _hub_cached_file(spec: ModelSpec) -> tuple[Path | None, str]:
    """The file in the Hugging Face cache if present; never goes online."""
    try:
        from huggingface_hub import constants, try_to_load_from_cache
    except ImportError:
        return None, "Hugging Face hub cache (not searched: huggingface_hub is not installed)"
    where = (
        f"Hugging Face hub cache {constants.HF_HUB_CACHE} ({spec.hub_repo}/{spec.checkpoint_file})"
    )
    try:
        found = try_to_load_from_cache(spec.hub_repo, spec.checkpoint_file)
    except Exception:  # a broken cache is simply "not found" here
        return None, where
    # The function returns a path string, None, or a "known missing" sentinel.
    if isinstance(found, str) and Path(found).is_file():
        return Path(found), where
    return None, where


def find_weights(
    model: str = "M",
    weights: str | os.PathLike[str] | None = None,
    weights_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Locate the checkpoint for ``model`` (or check the explicit ``weights`` path).

    Search order: ``weights``; ``weights_dir``; ``$S2M2_WEIGHTS_DIR``; the user
    cache; the Hugging Face hub cache. Raises :class:`WeightsNotFoundError`
    listing every place looked at and how to get the weights.
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if path.is_file():
            return path
        if path.is_dir():
            raise WeightsNotFoundError(
                f"weights path {path} is a directory; give the checkpoint file itself, "
                f"or pass the directory as the weights directory (--weights-dir)"
            )
        raise WeightsNotFoundError(f"weights file {path} does not exist")

    spec = get_spec(model)
    looked: list[str] = []
    directories: list[tuple[str, Path]] = []
    if weights_dir is not None:
        directories.append(("weights directory", Path(weights_dir).expanduser()))
    env_dir = os.environ.get(WEIGHTS_DIR_ENV, "")
    if env_dir:
        directories.append((f"${WEIGHTS_DIR_ENV}", Path(env_dir).expanduser()))
    directories.append(("user cache", user_cache_dir()))
    for label, directory in directories:
        candidate = directory / spec.checkpoint_file
        if candidate.is_file():
            return candidate
        note = "" if directory.is_dir() else ", directory does not exist"
        looked.append(f"{label}: {candidate}{note}")

    cached, where = _hub_cached_file(spec)
    if cached is not None:
        return cached
    looked.append(where)

    # One line (the CLI prints errors as one line): places separated by " | ".
    raise WeightsNotFoundError(
        f"no weights for model {spec.name} ({spec.checkpoint_file}); looked in: "
        f"{' | '.join(looked)}. Get them with `s2m2-download {spec.name}` "
        f"(saves to {user_cache_dir()}), or download "
        f"{spec.checkpoint_file} from {MODEL_CARD_URL} and pass --weights PATH "
        "or --weights-dir DIR."
    )


def _describe_type(value: object) -> str:
    return type(value).__name__


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a checkpoint safely (``weights_only``) onto the CPU and return its state dict.

    Accepts the published layout ``{"state_dict": sd}`` and a bare ``sd``; strips a
    ``module.`` prefix left by DataParallel. Every failure is a :class:`CheckpointError`
    naming the file and what is wrong with it.
    """
    path = Path(path).expanduser()
    if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise CheckpointError(
            f"{path}: unsupported checkpoint extension {path.suffix or '(none)'!r}; "
            f"expected a PyTorch checkpoint ({', '.join(CHECKPOINT_SUFFIXES)})"
        )
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    if not path.is_file():
        raise CheckpointError(f"{path}: is not a regular file")
    try:
        size = path.stat().st_size
        with path.open("rb"):
            pass
    except OSError as error:
        raise CheckpointError(f"{path}: cannot be read ({error.strerror or error})") from error
    if size == 0:
        raise CheckpointError(f"{path}: file is empty (interrupted download?)")

    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        detail = _unpickling_detail(error)
        if "global" in detail.lower():
            raise CheckpointError(
                f"{path}: holds Python objects besides tensors, which safe loading refuses "
                f"({detail}); it is not a plain S2M2 state-dict checkpoint"
            ) from error
        raise CheckpointError(
            f"{path}: truncated or corrupt checkpoint ({detail}); download it again"
        ) from error
    except Exception as error:  # torch raises many types for damaged files
        raise CheckpointError(
            f"{path}: truncated or corrupt checkpoint ({type(error).__name__}: "
            f"{_first_line(error)}); download it again"
        ) from error

    if isinstance(content, Mapping) and isinstance(content.get("state_dict"), Mapping):
        state_dict = content["state_dict"]
    elif isinstance(content, Mapping):
        state_dict = content
    else:
        raise CheckpointError(
            f"{path}: not a checkpoint: expected a state dict (a mapping of names to tensors) "
            f"or {{'state_dict': ...}}, found a {_describe_type(content)}"
        )
    if not state_dict:
        raise CheckpointError(f"{path}: the state dict is empty")
    bad_keys = [key for key in state_dict if not isinstance(key, str)]
    if bad_keys:
        raise CheckpointError(
            f"{path}: not a state dict: keys must be parameter names, found {bad_keys[:3]!r}"
        )
    not_tensors = [(k, v) for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        shown = ", ".join(f"{k} ({_describe_type(v)})" for k, v in not_tensors[:5])
        raise CheckpointError(
            f"{path}: {len(not_tensors)} state-dict entries are not tensors: {shown}"
            f"{', ...' if len(not_tensors) > 5 else ''}"
        )
    result = dict(state_dict)
    if all(key.startswith("module.") for key in result):
        result = {key[len("module.") :]: value for key, value in result.items()}
    return result


def _unpickling_detail(error: BaseException) -> str:
    # torch's weights_only message is a page of advice; the cause is on the line
    # mentioning the refused global or opcode.
    refused = re.search(r"GLOBAL\s+(\S+)", str(error))
    if refused:
        return f"refused global {refused.group(1)}"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("Unsupported", "Unpickler")) or "allowed global" in line:
            return line[:200]
    return _first_line(error)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def infer_architecture(state_dict: Mapping[str, torch.Tensor]) -> tuple[int, int]:
    """``(feature_channels, num_transformer)`` of the network a state dict belongs to."""
    weight = state_dict.get(CHANNELS_KEY)
    if weight is None or getattr(weight, "dim", lambda: 0)() != 4:
        raise CheckpointError(
            f"not an S2M2 state dict: missing 4-D {CHANNELS_KEY!r} "
            f"(found {len(state_dict)} keys, e.g. {list(state_dict)[:3]})"
        )
    indices = {int(match.group(1)) for key in state_dict if (match := _TRANSFORMER_KEY.match(key))}
    if not indices:
        raise CheckpointError("not an S2M2 state dict: no 'transformer.uformer_list.<i>.' keys")
    if indices != set(range(len(indices))):
        raise CheckpointError(
            f"S2M2 state dict has non-contiguous transformer indices {sorted(indices)}"
        )
    return int(weight.shape[0]), len(indices)


def check_state_dict(
    model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint"
) -> None:
    """Raise one :class:`CheckpointError` listing missing, unexpected and mis-shaped keys."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    mismatched = [
        f"{key}: checkpoint {list(state_dict[key].shape)} vs network {list(value.shape)}"
        for key, value in expected.items()
        if key in state_dict and state_dict[key].shape != value.shape
    ]
    if not (missing or unexpected or mismatched):
        return

    def listing(title: str, items: list[str]) -> str:
        shown = "; ".join(items[:5]) + ("; ..." if len(items) > 5 else "")
        return f"{len(items)} {title} ({shown})"

    parts = [
        listing(title, items)
        for title, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mismatched),
        )
        if items
    ]
    raise CheckpointError(f"{source} does not fit {type(model).__name__}: " + ", ".join(parts))


def _looks_like_path(text: str) -> bool:
    return (
        os.sep in text
        or (os.altsep is not None and os.altsep in text)
        or Path(text).suffix.lower() in CHECKPOINT_SUFFIXES
    )


def build_model(
    model_or_path: str | os.PathLike[str] = "M",
    *,
    weights_dir: str | os.PathLike[str] | None = None,
    allow_negative: bool = False,
    refine_iters: int = 3,
) -> tuple[S2M2, Path]:
    """A loaded, eval-mode :class:`S2M2` from a size name (``"S"``…``"XL"``) or a checkpoint path.

    The architecture (C, N) is read from the checkpoint itself. With a size name the
    checkpoint must hold that size. Returns the network and the file it came from.
    """
    from s2m2_ros.model import S2M2

    spec: ModelSpec | None = None
    if isinstance(model_or_path, str) and not _looks_like_path(model_or_path):
        spec = get_spec(model_or_path)
        path = find_weights(spec.name, weights_dir=weights_dir)
    else:
        path = find_weights(weights=model_or_path)

    state_dict = load_state_dict(path)
    try:
        channels, transformers = infer_architecture(state_dict)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}") from error
    if spec is not None and spec.architecture != (channels, transformers):
        raise CheckpointError(
            f"{path}: holds a C={channels}, N={transformers} network, but model {spec.name} "
            f"is C={spec.feature_channels}, N={spec.num_transformer}; wrong file?"
        )
    network = S2M2(channels, transformers, allow_negative=allow_negative, refine_iters=refine_iters)
    check_state_dict(network, state_dict, source=str(path))
    network.load_state_dict(state_dict, strict=True)
    network.eval()
    return network, path


def _place_file(source: Path, destination: Path) -> None:
    """Hard-link (no extra disk) or copy ``source`` to ``destination`` atomically."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    if destination.exists() and destination.samefile(source):
        return
    handle, temporary_name = tempfile.mkstemp(
        dir=destination.parent, prefix=f".{destination.name}.", suffix=".part"
    )
    os.close(handle)
    temporary = Path(temporary_name)
    try:
        temporary.unlink()
        try:
            os.link(source, temporary)
        except OSError:  # other file system, or links not allowed
            shutil.copyfile(source, temporary)
        os.replace(temporary, destination)
    finally:
        if temporary.exists():
            temporary.unlink()


def download(
    model: str,
    dest_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> Path:
    """Fetch a published checkpoint from the Hugging Face hub into ``dest_dir``.

    ``dest_dir`` defaults to the user cache, where :func:`find_weights` looks. The file
    is verified (loads safely, right architecture and parameter count) before use.
    """
    spec = get_spec(model)
    try:
        import huggingface_hub
        from huggingface_hub.utils import (
            are_progress_bars_disabled,
            disable_progress_bars,
            enable_progress_bars,
        )
        from huggingface_hub.utils import logging as hub_logging
    except ImportError as error:
        raise DownloadError(
            "downloading needs the huggingface_hub package: pip install huggingface_hub "
            f"(or fetch {spec.checkpoint_file} by hand from {MODEL_CARD_URL})"
        ) from error

    destination = Path(dest_dir).expanduser() if dest_dir else user_cache_dir()
    destination = destination / spec.checkpoint_file
    bars_were_disabled = are_progress_bars_disabled()
    if not progress:
        disable_progress_bars()
    # The hub logs every retry as a warning; the failure is reported once, below.
    # (Its logging module configures the level on import, so go through it.)
    hub_level = hub_logging.get_verbosity()
    hub_logging.set_verbosity_error()
    try:
        cached = huggingface_hub.hf_hub_download(spec.hub_repo, spec.checkpoint_file)
    except Exception as error:  # offline, DNS, HTTP 404/401, disk full, ...
        reason = _first_line(error).split(". ")[0]
        raise DownloadError(
            f"could not download {spec.checkpoint_file} from {MODEL_CARD_URL} "
            f"({type(error).__name__}: {reason}). Check the network connection, "
            f"or download the file by hand and put it in {destination.parent}"
        ) from error
    finally:
        hub_logging.set_verbosity(hub_level)
        if not progress and not bars_were_disabled:
            enable_progress_bars()

    # The snapshot path keeps the file name; the blob it links to is a bare hash.
    state_dict = load_state_dict(cached)
    try:
        architecture = infer_architecture(state_dict)
    except CheckpointError as error:
        raise DownloadError(f"{cached}: {error}") from error
    parameters = sum(tensor.numel() for tensor in state_dict.values())
    if architecture != spec.architecture or parameters != spec.parameters:
        raise DownloadError(
            f"{cached}: downloaded file holds C={architecture[0]}, N={architecture[1]} with "
            f"{parameters} values; expected C={spec.feature_channels}, N={spec.num_transformer} "
            f"with {spec.parameters}"
        )
    try:
        _place_file(Path(cached).resolve(), destination)
    except OSError as error:
        raise DownloadError(f"could not write {destination}: {error}") from error
    return destination


def download_main(argv: list[str] | None = None) -> int:
    """``s2m2-download [S|M|L|XL|all] [--dest DIR]``."""
    parser = argparse.ArgumentParser(
        prog="s2m2-download",
        description=f"Download published S2M2 weights from {MODEL_CARD_URL}.",
    )
    parser.add_argument(
        "model",
        nargs="?",
        default="M",
        type=str.upper,
        choices=[*MODELS, "ALL"],
        help="model size (default M), or 'all'",
    )
    parser.add_argument(
        "--dest", metavar="DIR", help=f"target directory (default {user_cache_dir()})"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)

    names = list(MODELS) if args.model == "ALL" else [args.model]
    for name in names:
        spec = MODELS[name]
        print(
            f"downloading S2M2-{name} ({spec.checkpoint_file}, "
            f"{spec.parameters / 1e6:.1f} M parameters) from {MODEL_CARD_URL}",
            flush=True,
        )
        try:
            path = download(name, args.dest, progress=not args.quiet)
        except CheckpointError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"saved {path}", flush=True)
    return 0
