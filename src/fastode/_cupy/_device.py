"""Finding CuPy and a CUDA device, and reporting what was found.

CuPy is imported only inside these functions, so ``import fastode`` works on
machines without it.
"""

from __future__ import annotations

__all__ = [
    "INSTALL_HINT",
    "device_available",
    "gpu_info",
    "import_cupy",
    "require_device",
]

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


def device_available() -> bool:
    """Return True when CuPy imports and reports at least one CUDA device."""
    try:
        require_device(import_cupy())
    except (ImportError, RuntimeError):
        return False
    return True


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
