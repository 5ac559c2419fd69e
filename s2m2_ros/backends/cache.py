# SPDX-License-Identifier: Apache-2.0
"""The engine cache: exported ONNX graphs and the runtimes' compiled forms, on disk.

Layout under the cache root (``$S2M2_ENGINE_CACHE``, else ``~/.cache/s2m2_ros/engines``)::

    <checkpoint sha256[:16]>/<H>x<W>-it<N>-<pos|neg>-opset<O>-torch<version>/
        model.onnx        the exported graph (shared by every runtime)
        meta.json         what it was made from, and the graph's own sha256
        <runtime tag>/    e.g. openvino-2026.4.1-cpu-fp32: the runtime's compiled cache

So the key covers the checkpoint's content, the padded size, the graph options, the
exporter's version and (one level down) the runtime, its version, device and precision.
An entry whose graph does not match its meta (truncated, edited, half written) is
removed and rebuilt, with one warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from torch import nn

_LOG = logging.getLogger("s2m2_ros.backends")

#: Environment variable naming the cache root (tests point it at a temporary folder).
CACHE_ENV = "S2M2_ENGINE_CACHE"
#: Bumped when the export itself changes in a way the other key parts do not show.
EXPORT_FORMAT = 2  # 2: node names carry their module path
_CHUNK = 1 << 20
_digests: dict[tuple[str, int, int], str] = {}


def default_cache_dir() -> Path:
    """``$S2M2_ENGINE_CACHE``, or ``engines`` in the package's user cache folder."""
    configured = os.environ.get(CACHE_ENV, "")
    if configured:
        return Path(configured).expanduser()
    from s2m2_ros.zoo import user_cache_dir

    return user_cache_dir() / "engines"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def checkpoint_digest(path: Path) -> str:
    """sha256 of the checkpoint's bytes (remembered per path, size and mtime)."""
    status = path.stat()
    key = (str(path.resolve()), status.st_size, status.st_mtime_ns)
    if key not in _digests:
        _digests[key] = file_sha256(path)
    return _digests[key]


@dataclass(frozen=True)
class GraphKey:
    """What one exported graph depends on."""

    checkpoint: str  # sha256 of the checkpoint file
    height: int  # padded network input size
    width: int
    refine_iters: int
    allow_negative: bool
    opset: int
    torch_version: str

    @property
    def folder(self) -> str:
        sign = "neg" if self.allow_negative else "pos"
        return (f"{self.checkpoint[:16]}/{self.height}x{self.width}-it{self.refine_iters}-"
                f"{sign}-opset{self.opset}-torch{self.torch_version}")


@dataclass
class CacheStats:
    """What the cache did in this process (for logs, describe() and tests)."""

    exports: int = 0  # graphs exported
    reused: int = 0  # graphs found in the cache and used as they were
    rebuilt: int = 0  # entries found corrupt or stale and rebuilt


class EngineCache:
    """Exported graphs under ``root``, made on first use by ``export`` callbacks."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root).expanduser() if root else default_cache_dir()
        self.stats = CacheStats()

    def entry(self, key: GraphKey) -> Path:
        return self.root / key.folder

    def graph(self, key: GraphKey, export: Callable[[Path], None]) -> Path:
        """The ONNX file for ``key``; ``export(path)`` writes it when it is missing."""
        folder = self.entry(key)
        onnx_path = folder / "model.onnx"
        meta_path = folder / "meta.json"
        if folder.exists():
            problem = self._problem(key, onnx_path, meta_path)
            if problem is None:
                self.stats.reused += 1
                return onnx_path
            _LOG.warning("engine cache entry %s is unusable (%s); rebuilding it",
                         folder, problem)
            self.stats.rebuilt += 1
            shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        export(onnx_path)
        self.stats.exports += 1
        meta = {"key": asdict(key), "export_format": EXPORT_FORMAT,
                "onnx_sha256": file_sha256(onnx_path), "onnx_bytes": onnx_path.stat().st_size}
        _write_atomically(meta_path, json.dumps(meta, indent=1))
        return onnx_path

    def discard_compiled(self, folder: Path, reason: str) -> None:
        """Remove a runtime's compiled cache that it could not use, with one warning."""
        _LOG.warning("engine cache entry %s is unusable (%s); rebuilding it", folder, reason)
        self.stats.rebuilt += 1
        shutil.rmtree(folder, ignore_errors=True)

    @staticmethod
    def _problem(key: GraphKey, onnx_path: Path, meta_path: Path) -> str | None:
        """Why the entry cannot be used as it is, or None."""
        try:
            meta = json.loads(meta_path.read_text())
        except FileNotFoundError:
            return "no meta.json: an export did not finish"
        except (OSError, ValueError) as error:
            return f"meta.json unreadable: {error}"
        if not isinstance(meta, dict) or meta.get("key") != asdict(key) \
                or meta.get("export_format") != EXPORT_FORMAT:
            return "meta.json describes another graph"
        if not onnx_path.is_file():
            return "model.onnx missing"
        if onnx_path.stat().st_size != meta.get("onnx_bytes") \
                or file_sha256(onnx_path) != meta.get("onnx_sha256"):
            return "model.onnx differs from the file that was exported"
        return None


def runtime_folder(graph: Path, tag: str) -> Path:
    """The folder beside ``graph`` for one runtime's compiled cache (made if missing)."""
    folder = graph.parent / tag
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def export_network(network: nn.Module, height: int, width: int, opset: int
                   ) -> Callable[[Path], None]:
    """An ``export`` callback for :meth:`EngineCache.graph`."""
    def export(path: Path) -> None:
        from s2m2_ros.export import export_onnx

        export_onnx(network, height, width, path, opset)
    return export


def _write_atomically(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as stream:
        stream.write(text)
    os.replace(temporary, path)
