# SPDX-License-Identifier: Apache-2.0
"""Our implementation of the S²M² stereo network (Min et al., ICCV 2025).

Parameter names and shapes follow the authors' published checkpoints so they
load with ``load_state_dict(strict=True)``.
"""

from .s2m2 import S2M2, SIZE_MULTIPLE

__all__ = ["S2M2", "SIZE_MULTIPLE"]
