"""Finding CuPy and a CUDA device, and reporting what was found.

CuPy is imported only inside these functions, so ``import fastode`` works on
machines without it.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = [
    "AUTO_GPU_MIN_TRAJECTORIES",
    "INSTALL_HINT",
    "device_available",
    "free_device_memory",
    "gpu_info",
    "import_cupy",
    "is_device_array",
    "prefers_gpu",
    "require_device",
]

#: backend="auto" runs a built-in system on the GPU from this many host
#: trajectories on. Below about 2**16 trajectories a data-centre GPU is not
#: full: an H100 keeps 132 SMs x 2048 = 270 336 threads resident, one
#: trajectory each. Then the kernel launch, the copies and the first call's
#: NVRTC compile (seconds, cached on disk afterwards) weigh against a CPU
#: core that does 1e4 trajectories x 1000 rk4 steps in about 7 ms on two
#: cores. NOTE: an estimate from those figures, not measured on a GPU yet;
#: tools/gpu_bench.py prints the GPU/CPU ratio over N to calibrate it.
AUTO_GPU_MIN_TRAJECTORIES = 2**16

# DLPack device types of memory a kernel can read directly: kDLCUDA and
# kDLCUDAManaged. Pinned host memory (kDLCUDAHost) takes the host path.
DLPACK_CUDA = (2, 13)

INSTALL_HINT = (
    'install the GPU extra with  pip install "fastode[gpu]"  (CuPy for CUDA 13, '
    'driver 580 or newer), or  pip install "fastode[gpu-cuda12]"  for a CUDA 12 driver'
)


def import_cupy():
    """Import and return the ``cupy`` module.

    Raises
    ------
    ImportError
        When CuPy is not installed; the message contains the install command.
    """
    try:
        import cupy
    except ImportError as exc:
        msg = f"backend='cupy' needs CuPy, which is not installed; {INSTALL_HINT}"
        raise ImportError(msg) from exc
    return cupy


def _device_errors(cupy) -> tuple:
    # CuPy raises CUDARuntimeError when a driver call returns an error, and
    # RuntimeError or OSError when libcuda itself cannot be loaded.
    return (cupy.cuda.runtime.CUDARuntimeError, RuntimeError, OSError)


def require_device(cupy) -> int:
    """Return the number of CUDA devices, raising when there is none.

    Raises
    ------
    RuntimeError
        When the CUDA driver reports no device or cannot be loaded.
    """
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except _device_errors(cupy) as exc:
        msg = (
            f"backend='cupy' found no usable CUDA device: {exc}. Check that an NVIDIA "
            f"driver is installed and a GPU is visible (nvidia-smi), or use backend='cpp'"
        )
        raise RuntimeError(msg) from exc
    if count == 0:
        msg = "backend='cupy' found no CUDA device; use backend='cpp'"
        raise RuntimeError(msg)
    return count


@functools.cache
def device_available() -> bool:
    """Return True when CuPy imports and reports at least one CUDA device.

    The result is cached for the process, because `prefers_gpu` queries it
    on every ``backend="auto"`` call of a large batch.
    """
    try:
        require_device(import_cupy())
    except (ImportError, RuntimeError):
        return False
    return True


def free_device_memory(cupy) -> int:
    """Bytes the current device can still allocate: the driver's free memory
    plus the blocks CuPy's memory pool has cached for reuse."""
    free, _ = cupy.cuda.runtime.memGetInfo()
    return int(free) + int(cupy.get_default_memory_pool().free_bytes())


def is_device_array(value) -> bool:
    """Return True for an array in GPU memory, judged by protocol alone.

    CuPy arrays, Numba device arrays and PyTorch CUDA tensors qualify through
    ``__cuda_array_interface__`` or a CUDA ``__dlpack_device__``. CuPy is not
    imported.
    """
    if isinstance(value, np.ndarray):
        return False
    dlpack_device = getattr(type(value), "__dlpack_device__", None)
    if dlpack_device is not None:
        device_type, _ = dlpack_device(value)
        return int(device_type) in DLPACK_CUDA
    return hasattr(value, "__cuda_array_interface__")


def _batch_size(y0) -> int | None:
    try:
        shape = np.shape(y0)
    except (TypeError, ValueError):
        return None
    if len(shape) == 1:
        return 1
    return shape[0] if len(shape) == 2 else None


def prefers_gpu(system, y0) -> bool:
    """Decide whether ``backend="auto"`` runs `system` on the GPU.

    True when CuPy finds a device, `system` has a GPU kernel, and either
    `y0` is already in GPU memory or the batch has at least
    `AUTO_GPU_MIN_TRAJECTORIES` rows. Small host batches are decided without
    importing CuPy. MLP fields stay on the CPU: backend="cupy" runs them, but
    no MLP kernel has run on a GPU yet, so nothing shows the GPU is faster.
    """
    from ._source import LAYOUTS, system_key

    if not is_device_array(y0):
        n = _batch_size(y0)
        if n is None or n < AUTO_GPU_MIN_TRAJECTORIES:
            return False
    try:
        key = system_key(system)
    except (TypeError, ValueError):
        return False
    if LAYOUTS[key].network:
        return False
    return device_available()


def _device_rows(cupy, count: int) -> list[dict]:
    rows = []
    for index in range(count):
        props = cupy.cuda.runtime.getDeviceProperties(index)
        name = props["name"]
        rows.append(
            {
                "index": index,
                "name": name.decode() if isinstance(name, bytes) else str(name),
                "compute_capability": f"{props['major']}.{props['minor']}",
                "memory_bytes": int(props["totalGlobalMem"]),
            }
        )
    return rows


def _nvrtc_version() -> str | None:
    try:
        from cuda.bindings import nvrtc
    except ImportError:
        return None
    _, major, minor = nvrtc.nvrtcVersion()
    return f"{major}.{minor}"


def gpu_info() -> dict:
    """Report the CuPy and device state; a missing CuPy or GPU is not an error.

    Returns
    -------
    dict
        ``cupy``: CuPy's version or None. ``cuda_runtime``: the CUDA runtime
        version CuPy uses, as an int such as 12080, or None. ``devices``: one
        dict per device with ``index``, ``name``, ``compute_capability`` and
        ``memory_bytes``. ``available``: whether ``backend="cupy"`` can run.
        ``problem``: why not, with the fix, or None. ``nvrtc``: the version
        of NVRTC from ``cuda-bindings`` (used by the compile test), or None.
    """
    info = {
        "cupy": None,
        "cuda_runtime": None,
        "devices": [],
        "available": False,
        "problem": None,
        "nvrtc": _nvrtc_version(),
    }
    try:
        cupy = import_cupy()
    except ImportError as exc:
        info["problem"] = str(exc)
        return info
    info["cupy"] = cupy.__version__
    try:
        info["cuda_runtime"] = int(cupy.cuda.runtime.runtimeGetVersion())
        count = require_device(cupy)
        info["devices"] = _device_rows(cupy, count)
    except RuntimeError as exc:
        info["problem"] = str(exc)
        return info
    except _device_errors(cupy) as exc:
        info["problem"] = f"the CUDA runtime failed: {exc}"
        return info
    info["available"] = True
    return info
