"""FASTODE_CUPY_STANDIN=1 runs tests/gpu against the NumPy stand-in for CuPy
(tests/cupy_standin.py), so the real-GPU tests can be checked without a GPU.
Nothing changes without that variable."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

if os.environ.get("FASTODE_CUPY_STANDIN") == "1":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from cupy_standin import StandIn

    standin = StandIn()
    standin.is_standin = True
    standin.array_equal = np.array_equal
    sys.modules["cupy"] = standin
