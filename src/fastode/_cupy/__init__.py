"""The CuPy GPU backend: the shipped C++ headers compiled with NVRTC.

Nothing here imports CuPy at module import time, so ``import fastode`` works
without it; `solve_cupy` raises ImportError with install instructions when it
is missing.
"""

from ._device import (
    AUTO_GPU_MIN_TRAJECTORIES,
    INSTALL_HINT,
    device_available,
    gpu_info,
    prefers_gpu,
)
from ._launch import solve_cupy

__all__ = [
    "AUTO_GPU_MIN_TRAJECTORIES",
    "INSTALL_HINT",
    "device_available",
    "gpu_info",
    "prefers_gpu",
    "solve_cupy",
]
