# SPDX-License-Identifier: Apache-2.0
"""Health of the stereo node: a pure `HealthMonitor` fed with events, and a
`DiagnosticsPublisher` that puts its verdicts on /diagnostics.

The monitor says what is wrong and, where it can tell, why: an input without a
publisher (remapping), a publisher whose messages never arrive (a QoS the node can see
is incompatible, else messages lost in transport, typically large images over UDP
with small socket buffers), a missing camera_info, left/right stamps that never pair
(synchronisation policy), or input time that jumped back.
All times are seconds; `now_s` is any monotonic clock, the same for every call.

`status.py` holds the vocabulary (levels, topic indices, `HealthStatus`), `measures.py`
the rates and GPU memory, `monitor.py` the verdicts and `publisher.py` the only ROS
part; diagnostic_msgs is imported only when a publisher is used.
"""

from __future__ import annotations

from .measures import cuda_memory_allocated_bytes
from .monitor import HealthMonitor
from .publisher import DiagnosticsPublisher
from .status import (
    ERROR,
    LEFT_IMAGE,
    LEFT_INFO,
    OK,
    RIGHT_IMAGE,
    RIGHT_INFO,
    STALE,
    STATUS_DEVICE,
    STATUS_INPUTS,
    STATUS_NAMES,
    STATUS_PROCESSING,
    STATUS_SYNC,
    WARN,
    HealthStatus,
)

__all__ = ["ERROR", "LEFT_IMAGE", "LEFT_INFO", "OK", "RIGHT_IMAGE", "RIGHT_INFO", "STALE",
           "STATUS_DEVICE", "STATUS_INPUTS", "STATUS_NAMES", "STATUS_PROCESSING",
           "STATUS_SYNC", "WARN", "DiagnosticsPublisher", "HealthMonitor", "HealthStatus",
           "cuda_memory_allocated_bytes"]
