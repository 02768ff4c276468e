"""The CuPy GPU backend: the shipped C++ headers compiled with NVRTC.

Nothing here imports CuPy at module import time, so ``import fastode`` works
without it; `solve_cupy` raises ImportError with install instructions when it
is missing.
"""

from ._device import INSTALL_HINT, device_available, gpu_info
from ._launch import solve_cupy

__all__ = ["INSTALL_HINT", "device_available", "gpu_info", "solve_cupy"]
