# SPDX-License-Identifier: Apache-2.0
"""What a health verdict is: levels, the input topic indices, the status names and
`HealthStatus`, shared by the monitor that judges and the publisher that reports."""

from __future__ import annotations

from dataclasses import dataclass, field

# Levels as diagnostic_msgs/DiagnosticStatus.
OK = 0
WARN = 1
ERROR = 2
STALE = 3

LEFT_IMAGE, RIGHT_IMAGE, LEFT_INFO, RIGHT_INFO = range(4)

STATUS_INPUTS = "inputs"
STATUS_SYNC = "synchronization"
STATUS_PROCESSING = "processing"
STATUS_DEVICE = "device"
STATUS_NAMES = (STATUS_INPUTS, STATUS_SYNC, STATUS_PROCESSING, STATUS_DEVICE)


@dataclass(frozen=True)
class HealthStatus:
    """One named verdict, as a DiagnosticStatus without ROS."""

    name: str
    level: int
    message: str
    values: dict[str, str] = field(default_factory=dict)
