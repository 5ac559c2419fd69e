# SPDX-License-Identifier: Apache-2.0
"""`DiagnosticsPublisher`: a HealthMonitor's verdicts on /diagnostics, through
diagnostic_updater when it is installed, else from its own timer."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .monitor import HealthMonitor
from .status import STATUS_NAMES, HealthStatus


class DiagnosticsPublisher:
    """Publishes a HealthMonitor's verdicts on /diagnostics once per `period_s`.

    With diagnostic_updater installed it registers one task per status on an Updater
    (names "<node name>: <status>", parameter diagnostic_updater.period); without it,
    it publishes the same DiagnosticArray from its own timer.
    """

    def __init__(
        self,
        node: Any,
        monitor: HealthMonitor,
        *,
        hardware_id: str | None = None,
        period_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        use_diagnostic_updater: bool | None = None,
    ) -> None:
        self.node = node
        self.monitor = monitor
        self._hardware_id = hardware_id
        self._clock = clock
        self._updater: Any = None
        self._publisher: Any = None
        self._timer: Any = None

        updater_module = None
        if use_diagnostic_updater is not False:
            try:
                import diagnostic_updater as updater_module
            except ImportError:
                if use_diagnostic_updater:
                    raise
        if updater_module is not None:
            try:
                self._updater = updater_module.Updater(node, period=period_s)
            except TypeError:  # releases before Humble take no period
                self._updater = updater_module.Updater(node)
            self._updater.setHardwareID(self.hardware_id)
            for name in STATUS_NAMES:
                self._updater.add(name, self._task(name))
        else:
            from diagnostic_msgs.msg import DiagnosticArray

            self._publisher = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
            self._timer = node.create_timer(period_s, self.publish_now)

    @property
    def hardware_id(self) -> str:
        """The given hardware id, else the monitor's device, else the node name."""
        return self._hardware_id or self.monitor.device or self.node.get_name()

    @property
    def uses_diagnostic_updater(self) -> bool:
        return self._updater is not None

    def _status_named(self, name: str) -> HealthStatus:
        for status in self.monitor.evaluate(self._clock()):
            if status.name == name:
                return status
        raise KeyError(name)

    def _task(self, name: str) -> Callable[[Any], Any]:
        def fill(stat: Any) -> Any:
            status = self._status_named(name)
            stat.summary(bytes([status.level]), status.message)
            stat.hardware_id = self.hardware_id
            for key, value in status.values.items():
                stat.add(key, value)
            return stat

        return fill

    def to_message(self) -> Any:
        """The current verdicts as a diagnostic_msgs/DiagnosticArray."""
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

        array = DiagnosticArray()
        array.header.stamp = self.node.get_clock().now().to_msg()
        prefix = self.node.get_name()
        for status in self.monitor.evaluate(self._clock()):
            array.status.append(DiagnosticStatus(
                level=bytes([status.level]),
                name=f"{prefix}: {status.name}",  # as diagnostic_updater names tasks
                message=status.message,
                hardware_id=self.hardware_id,
                values=[KeyValue(key=key, value=value) for key, value in status.values.items()],
            ))
        return array

    def publish_now(self) -> None:
        """Publish the verdicts immediately (the timer calls this every period)."""
        if self._updater is not None:
            self._updater.force_update()
        else:
            self._publisher.publish(self.to_message())

    def destroy(self) -> None:
        """Stop publishing; the node stays usable."""
        timer = self._timer or getattr(self._updater, "timer", None)
        publisher = self._publisher or getattr(self._updater, "publisher", None)
        if timer is not None:
            self.node.destroy_timer(timer)
        if publisher is not None:
            self.node.destroy_publisher(publisher)
        self._timer = self._publisher = self._updater = None
