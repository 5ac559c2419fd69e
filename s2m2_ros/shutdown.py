# SPDX-License-Identifier: Apache-2.0
"""How the stereo node stops on SIGINT/SIGTERM (Ctrl-C, ``ros2 launch``, systemd).

The first signal asks for a stop: the node takes no more pairs and publishes nothing
more, lets the frame in flight run to its end (torch's native code cannot be
interrupted) and exits 0. A second signal (Ctrl-C again, or ``ros2 launch``
escalating SIGINT to SIGTERM) exits at once.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any


class StopSignals:
    """SIGINT/SIGTERM: the first asks the node to stop after its frame in flight (the
    main loop sees ``requested``); the second exits at once, without unwinding.

    rclpy's own handler is off (it would shut the context down under the worker, whose
    publish then fails, and turn a second Ctrl-C into a KeyboardInterrupt inside the
    join, with an abort at exit while torch threads still run).
    """

    def __init__(self, logger: Any) -> None:
        self._logger = logger
        self.requested = False

    def install(self) -> None:
        """Handle SIGINT and SIGTERM from now on (call from the main thread)."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if not self.requested:
            self.requested = True
            return
        self._logger.warning(f"{name} again: exiting without waiting for the frame in flight")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # a clean exit would wait for the torch thread; nothing is lost
