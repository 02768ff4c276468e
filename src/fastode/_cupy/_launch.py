"""`fastode.solve(..., backend="cupy")`: the built-in systems on a CUDA GPU.

Each (method, system, dtype) kernel is compiled from the shipped C++ headers
by CuPy's NVRTC on first use and cached for the process; CuPy also keeps the
compiled binary in its on-disk kernel cache (``~/.cupy/kernel_cache``).
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np

from .. import _validation as check
from .._solution import Solution
from .._systems import System, _per_trajectory
from ._device import import_cupy, require_device
from ._source import (
    LAYOUTS,
    KernelSpec,
    compile_options,
    include_dir,
    kernel_source,
    system_key,
)

__all__ = ["solve_cupy"]

#: Threads per CUDA block. Each thread holds one trajectory's state and
#: stages in registers, so a modest block keeps register pressure per SM low.
THREADS_PER_BLOCK = 128

# DLPack device types of memory a kernel can read directly: kDLCUDA and
# kDLCUDAManaged. Pinned host memory (kDLCUDAHost) takes the host path.
_DLPACK_CUDA = (2, 13)


@functools.cache
def _headers_digest() -> str:
    """Hash the shipped headers, which CuPy's disk cache key does not cover."""
    digest = hashlib.sha256()
    for path in sorted((include_dir() / "fastode").rglob("*.hpp")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@functools.cache
def _kernel(spec: KernelSpec):
    cupy = import_cupy()
    # CuPy keys its on-disk kernel cache on the source text and options only,
    # so the header hash in a comment makes a header change recompile.
    code = f"// fastode headers sha256 {_headers_digest()}\n" + kernel_source([spec])
    module = cupy.RawModule(code=code, options=compile_options())
    return module.get_function(spec.name)


def _as_device_array(cupy, value):
    """Return a CuPy view of ``value`` if it lives on the GPU, else None.

    Objects with ``__cuda_array_interface__`` or a CUDA DLPack device are
    wrapped without a copy.
    """
    if isinstance(value, cupy.ndarray):
        return value
    if hasattr(value, "__cuda_array_interface__"):
        return cupy.asarray(value)
    if hasattr(value, "__dlpack_device__"):
        device_type, _ = value.__dlpack_device__()
        if int(device_type) in _DLPACK_CUDA:
            return cupy.from_dlpack(value)
    return None


def _check_device_y0(cupy, y0, dim: int, dtype):
    """Check a device y0 as `check.check_y0` does on the host, without a copy."""
    y0, single = check.check_state_batch(y0, dim)
    return cupy.ascontiguousarray(y0, dtype=dtype), single


def _device_param(cupy, name: str, value, n: int, tail: tuple, dtype):
    """Convert a parameter to a device array of shape (1, *tail) or (n, *tail)."""
    array = _as_device_array(cupy, value)
    if array is None:
        return cupy.asarray(_per_trajectory(name, value, n, tail, dtype))
    if array.dtype.kind not in "biuf":
        msg = f"{name} must be real numbers, got dtype {array.dtype}"
        raise TypeError(msg)
    if array.shape == tail:
        array = array.reshape((1, *tail))
    elif array.shape != (n, *tail):
        shared = tail if tail else "a scalar"
        msg = (
            f"{name} has shape {array.shape}; expected {shared} (shared by all "
            f"trajectories) or {(n, *tail)} (one per trajectory of this batch of {n})"
        )
        raise ValueError(msg)
    return cupy.ascontiguousarray(array, dtype=dtype)


def _system_arguments(cupy, system, n: int, dtype) -> list:
    """Build the kernel arguments of the system: (array, stride) per parameter."""
    layout = LAYOUTS[system_key(system)]
    if type(system).__name__ == "Linear":
        d = system.dim
        has_b = system.b is not None
        values = {"A": system.A, "b": system.b if has_b else np.zeros(d)}
        tails = {"A": (d, d), "b": (d,)}
    else:
        values = system.params
        tails = dict.fromkeys(layout.params, ())
    args = []
    for name in layout.params:
        array = _device_param(cupy, name, values[name], n, tails[name], dtype)
        # Stride 0 shares one row among all trajectories, as in the C++ core.
        stride = 0 if array.shape[0] == 1 else array.size // array.shape[0]
        args += [array, np.int64(stride)]
    if type(system).__name__ == "Linear":
        args.append(np.int32(has_b))
    return args


def _outputs(cupy, n: int, n_out: int, dim: int, dtype) -> dict:
    out = {
        "y": cupy.empty((n, n_out, dim), dtype=dtype),
        "t_final": cupy.empty(n, dtype=dtype),
        "status": cupy.empty(n, dtype=np.int8),
    }
    for name in ("n_steps", "n_accepted", "n_rejected", "n_rhs"):
        out[name] = cupy.empty(n, dtype=np.int64)
    return out


def _solution(out: dict, t, dense: bool, single: bool, method: str, on_device: bool):
    if not on_device:
        out = {name: array.get() for name, array in out.items()}
    y = out["y"] if dense else out["y"][:, 0, :]
    stats = {
        name: out[name] for name in ("n_steps", "n_accepted", "n_rejected", "n_rhs")
    }
    status, t_final = out["status"], out["t_final"]
    if single:
        y = y[0]
        status, t_final = status[0], t_final[0]
        stats = {name: value[0] for name, value in stats.items()}
    return Solution(
        t=t, y=y, status=status, t_final=t_final, stats=stats, method=method
    )


def _resolve_dtype(dtype, y0_device, y0):
    if y0_device is None:
        return check.check_dtype(dtype, y0)
    # check_dtype reads only the dtype of y0, so an empty host array of that
    # dtype replaces the device array.
    return check.check_dtype(dtype, np.empty(0, dtype=y0_device.dtype))


def solve_cupy(
    system,
    y0,
    t_span,
    t_eval=None,
    method="dopri5",
    dt=None,
    rtol=None,
    atol=1e-9,
    max_steps=100_000,
    dtype=None,
    controller="i",
    threads=None,
):
    """Integrate a batch of trajectories on the GPU; see `fastode.solve`.

    Arrays come back as CuPy arrays when ``y0`` is on the GPU (a CuPy array,
    or any object with ``__cuda_array_interface__`` or a CUDA DLPack device,
    read without a host copy), and as NumPy arrays otherwise. ``threads`` is
    accepted for signature compatibility and has no effect.

    Notes
    -----
    A device ``t_eval`` is copied to the host once for validation. System
    parameters may also be device arrays, except `Linear`'s ``A`` and ``b``,
    which `fastode.Linear` converts to NumPy when it is constructed.
    Results agree with ``backend="cpp"`` to rounding, not bit for bit: the
    GPU contracts a * b + c into fused multiply-adds where the host compiler
    may not, and its cos, sin and pow differ in the last bits. CuPy also
    compiles with ``-ftz=true``, so float32 subnormal values flush to zero.

    Raises
    ------
    ImportError
        When CuPy is not installed.
    RuntimeError
        When no CUDA device is usable.
    """
    if not isinstance(system, System):
        msg = (
            f"system must be a fastode system (Linear, Oscillator, Lorenz, "
            f"Hamiltonian), got {type(system).__name__}"
        )
        raise TypeError(msg)
    method = check.check_method(method, system)
    kind = check.METHODS[method]
    key = system_key(system)
    cupy = import_cupy()
    require_device(cupy)

    y0_device = _as_device_array(cupy, y0)
    dtype = _resolve_dtype(dtype, y0_device, y0)
    if y0_device is None:
        y0_host, single = check.check_y0(y0, system.dim, dtype)
        y0_dev = cupy.asarray(y0_host)
    else:
        y0_dev, single = _check_device_y0(cupy, y0_device, system.dim, dtype)
    t0, t1 = check.check_t_span(t_span)
    if _as_device_array(cupy, t_eval) is not None:
        t_eval = cupy.asnumpy(_as_device_array(cupy, t_eval))
    t_eval = check.check_t_eval(t_eval, t0, t1, dtype)
    rtol, atol = check.check_tolerances(rtol, atol, dtype, kind)
    dt = check.check_dt(dt, kind, method)
    max_steps = check.check_max_steps(max_steps)
    controller_code = check.check_controller(controller)
    if threads is not None:
        check.check_threads(threads)

    n = y0_dev.shape[0]
    dense = t_eval is not None
    t_host = t_eval if dense else np.array([t1], dtype=dtype)
    # The kernel never reads t_eval when n_eval is 0, but needs a valid pointer.
    t_eval_dev = cupy.asarray(t_host) if dense else cupy.zeros(1, dtype=dtype)
    out = _outputs(cupy, n, len(t_host) if dense else 1, system.dim, dtype)
    scalar = np.dtype(dtype).type
    args = [
        y0_dev,
        t_eval_dev,
        np.int64(len(t_host) if dense else 0),
        np.int64(n),
        scalar(t0),
        scalar(t1),
        scalar(dt),
        scalar(rtol),
        scalar(atol),
        np.int64(max_steps),
        np.int32(controller_code),
        out["y"],
        out["t_final"],
        out["status"],
        out["n_steps"],
        out["n_accepted"],
        out["n_rejected"],
        out["n_rhs"],
        *_system_arguments(cupy, system, n, dtype),
    ]
    # NOTE: this launch has not yet run on a real device; tests/gpu, run by
    # tools/gpu-check.sh, is the check. tests/test_cupy_launch.py checks the
    # arguments against the kernel signature on the CPU.
    if n > 0:
        kernel = _kernel(KernelSpec(method, key, np.dtype(dtype).name))
        blocks = (n + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK
        kernel((blocks,), (THREADS_PER_BLOCK,), tuple(args))

    on_device = y0_device is not None
    t = cupy.asarray(t_host) if on_device else t_host
    return _solution(out, t, dense, single, method, on_device)
