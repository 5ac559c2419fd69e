# SPDX-License-Identifier: Apache-2.0
"""What the benchmark scripts share: the machine description, resolution parsing,
statistics and table printing.

The scripts import this module by name, from their own folder (Python puts a
script's folder first on ``sys.path``), so run them as files:
``python benchmarks/model_benchmark.py``.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
from collections.abc import Sequence
from typing import Any

MIB = 1 << 20


def parse_resolution(text: str) -> tuple[int, int]:
    """``"640x480"`` (also ``640×480``, ``640X480``) → ``(width, height)``."""
    match = re.fullmatch(r"\s*(\d+)\s*[x×X]\s*(\d+)\s*", text)
    if match is None:
        raise ValueError(f"resolution {text!r} is not WIDTHxHEIGHT, e.g. 640x480")
    width, height = int(match.group(1)), int(match.group(2))
    if width < 16 or height < 16:
        raise ValueError(f"resolution {text!r} is too small (each side needs at least 16 px)")
    return width, height


def resolution_name(width: int, height: int) -> str:
    return f"{width}×{height}"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_kib(field: str) -> int | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            for line in meminfo:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def available_memory_bytes() -> int | None:
    """``MemAvailable`` from /proc/meminfo, or None where there is none."""
    kib = _memory_kib("MemAvailable")
    return None if kib is None else kib * 1024


def machine_lines(threads: int | None = None, device: str = "cpu") -> list[str]:
    """One line each: CPU, cores, memory, load, Python/torch/numpy versions, threads, GPU."""
    import numpy as np
    import torch

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    total = _memory_kib("MemTotal")
    available = _memory_kib("MemAvailable")
    memory = (
        f"{total / 1024**2:.1f} GiB total, {available / 1024**2:.1f} GiB available"
        if total and available else "unknown"
    )
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg()) if hasattr(
        os, "getloadavg") else "unknown"
    lines = [
        f"CPU: {_cpu_model()}; {os.cpu_count()} logical cores"
        + (f", {usable} usable by this process" if usable is not None else ""),
        f"memory: {memory}; load average (1, 5, 15 min): {load}",
        f"python {platform.python_version()}, torch {torch.__version__}, numpy "
        f"{np.__version__}; torch threads: {threads or torch.get_num_threads()}",
    ]
    if device.startswith("cuda") and torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        lines.append(
            f"GPU: {properties.name}, {properties.total_memory / 1024**3:.1f} GiB, CUDA "
            f"{torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
        )
    return lines


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]],
                 markdown: bool = True) -> str:
    """A Markdown pipe table, or a plain one with aligned columns (``markdown=False``).

    Cells are printed with ``str``; format numbers before passing them.
    """
    cells = [[str(cell) for cell in row] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |",
                 "| " + " | ".join("---" for _ in headers) + " |"]
        lines += ["| " + " | ".join(row) + " |" for row in cells]
        return "\n".join(lines)
    widths = [max(len(str(header)), *(len(row[i]) for row in cells)) if cells
              else len(str(header)) for i, header in enumerate(headers)]
    lines = ["  ".join(str(header).ljust(width) for header, width in zip(headers, widths,
                                                                          strict=True))]
    lines.append("  ".join("-" * width for width in widths))
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
              for row in cells]
    return "\n".join(lines)


def print_header(title: str, lines: Sequence[str], markdown: bool = True) -> None:
    """A title and a bullet list (Markdown) or indented lines."""
    print(f"## {title}" if markdown else title)
    print()
    for line in lines:
        print(f"- {line}" if markdown else f"  {line}")
    print()


# -- the network and its inputs -----------------------------------------------------------

SEED = 0


def build_network(size: str) -> Any:
    """S2M2 of a published size with random weights (seeded), in eval mode."""
    import torch

    from s2m2_ros.model import S2M2
    from s2m2_ros.zoo import MODELS

    spec = MODELS[size]
    torch.manual_seed(SEED)
    return S2M2(spec.feature_channels, spec.num_transformer).eval()


def textured_pair(width: int, height: int) -> tuple[Any, Any]:
    """A smooth random texture and the same seen 8 px further left by the right camera
    (disparity +8): an H×W×3 uint8 stereo pair."""
    import cv2
    import numpy as np

    generator = np.random.default_rng(SEED)
    noise = generator.integers(0, 256, size=(height, width + 8, 3), dtype=np.uint8)
    texture = cv2.GaussianBlur(noise, (0, 0), 1.5)
    texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX)
    return np.ascontiguousarray(texture[:, :width]), np.ascontiguousarray(texture[:, 8:])
