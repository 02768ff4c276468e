"""CUDA kernels for user right-hand sides: one thread per trajectory, built
with `numba.cuda` from the same loops as the CPU kernels (`_steps`).

Inputs that expose ``__cuda_array_interface__`` (CuPy arrays, Numba device
arrays) stay on the device and the results come back as arrays of the same
library; NumPy inputs are copied over and the results copied back.

NOTE: these kernels have run only under Numba's CUDA simulator and been
compiled to PTX, never on a real GPU.
"""

from __future__ import annotations

import contextlib
import types
from dataclasses import dataclass, replace

import numba
import numpy as np
from numba import cuda
from numba.core.errors import NumbaError

from .. import _chunks, _core
from .. import _validation as check
from .._solution import Solution
from . import _steps, allocate_outputs, fixed_step_count
from ._compile import cuda_jit
from ._probe import compile_error

THREADS_PER_BLOCK = 128

_kernels: dict = {}


def check_available():
    """Raise RuntimeError unless a CUDA device or Numba's simulator is present."""
    if cuda.is_available():
        return
    msg = (
        "backend='numba-cuda' needs an NVIDIA GPU with a working CUDA driver, and "
        "numba.cuda found none. Use backend='numba' to run on the CPU, or set "
        "NUMBA_ENABLE_CUDASIM=1 before importing numba to run the kernels in "
        "Numba's CUDA simulator (slow, meant for tests)"
    )
    raise RuntimeError(msg)


def kernel_source(system, method: str, kind: str, dtype):
    """Return the Python kernel function of (system, method, dtype) and its
    argument types, ready for `cuda.jit` or `cuda.compile_ptx`."""
    dtype = np.dtype(dtype)
    real = _steps.numba_real(dtype)
    dim = system.dim
    rhs = system._cuda_function("rhs")
    common = _steps.build_common(cuda_jit, dtype)
    vector = real[::1]
    matrix = real[:, ::1]
    counts = numba.int64[::1]
    if kind == "adaptive":
        adaptive_one, stages = _steps.build_adaptive(cuda_jit, rhs, _steps.method_tableau(method),
                                                     common, dtype)

        def adaptive_kernel(y0, params, pstride, t_eval, t0, t1, dt0, rtol, atol,
                            max_steps, controller, y_out, t_final, status, n_steps,
                            n_accepted, n_rejected, n_rhs):
            n = cuda.grid(1)
            if n >= y0.shape[0]:
                return
            y = cuda.local.array(dim, real)
            y1 = cuda.local.array(dim, real)
            k = cuda.local.array((stages, dim), real)
            adaptive_one(n, y0, params, pstride, t_eval, t0, t1, dt0, rtol, atol,
                         max_steps, controller, y_out, t_final, status, n_steps,
                         n_accepted, n_rejected, n_rhs, y, y1, k)

        signature = (matrix, matrix, numba.int64, vector, real, real, real, real, real,
                     numba.int64, numba.int64, real[:, :, ::1], vector, numba.int8[::1],
                     counts, counts, counts, counts)
        return adaptive_kernel, signature

    if kind == "symplectic":
        step, evals = _steps.build_symplectic_step(
            cuda_jit, system._cuda_function("dV_dq"), system._cuda_function("dT_dp"),
            system.dof, method, _core.symplectic_weights(), dtype)
        stages = 1
    else:
        step, stages = _steps.build_rk_step(cuda_jit, rhs, _steps.method_tableau(method), dtype,
                                             1, system.dim)
        evals = stages
    fixed_block = _steps.build_fixed_block(cuda_jit, step, evals, rhs, common, dtype)

    def fixed_kernel(y0, params, pstride, t_eval, t0, t1, dt, n_grid, max_steps, y_out,
                     t_final, status, n_steps, n_accepted, n_rhs):
        n = cuda.grid(1)
        if n >= y0.shape[0]:
            return
        # One lane per thread: the block driver with W = 1.
        y = cuda.local.array((1, dim), real)
        y1 = cuda.local.array((1, dim), real)
        k = cuda.local.array((stages, 1, dim), real)
        fa = cuda.local.array((1, dim), real)
        fb = cuda.local.array((1, dim), real)
        rows = cuda.local.array(1, numba.int64)
        lane_t = cuda.local.array(1, real)
        lane_status = cuda.local.array(1, numba.int8)
        lane_steps = cuda.local.array(1, numba.int64)
        lane_rhs = cuda.local.array(1, numba.int64)
        lane_written = cuda.local.array(1, numba.int64)
        fixed_block(n, 1, y0, params, pstride, t_eval, t0, t1, dt, n_grid, max_steps,
                    y_out, t_final, status, n_steps, n_accepted, n_rhs, y, y1, k, fa, fb,
                    rows, lane_t, lane_status, lane_steps, lane_rhs, lane_written)

    signature = (matrix, matrix, numba.int64, vector, real, real, real, numba.int64,
                 numba.int64, real[:, :, ::1], vector, numba.int8[::1], counts, counts,
                 counts)
    return fixed_kernel, signature


def compile_ptx(system, method: str, dtype=np.float64, cc=(9, 0), adaptive=None) -> str:
    """Compile the CUDA kernel of `system` and `method` to PTX for compute
    capability `cc`. Needs NVVM (from ``cuda-bindings``) but no GPU."""
    method = check.check_method(method, system)
    kind = check.check_adaptive(adaptive, method)
    function, signature = kernel_source(system, check.kernel_method(method, kind), kind,
                                        np.dtype(dtype))
    try:
        with _device_functions_target(cc):
            ptx, _ = cuda.compile_ptx(function, signature, cc=cc)
    except NumbaError as error:
        raise compile_error(system.name, error) from None
    return ptx


@contextlib.contextmanager
def _device_functions_target(cc):
    """Let device functions compile for `cc` when no GPU is present.

    NOTE: numba-cuda 0.30 compiles a `cuda.jit(device=True)` function called
    from a kernel for the compute capability of the current device, even
    inside `compile_ptx`, so without a GPU it fails at driver init. This
    substitutes a stand-in device for that lookup only; with a GPU present
    nothing is changed.
    """
    if cuda.is_available():
        yield
        return
    from numba.cuda import dispatcher

    original = dispatcher.get_current_device
    dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=cc)
    try:
        yield
    finally:
        dispatcher.get_current_device = original


def _kernel(system, method, kind, dtype):
    key = (system._compiled_key, method, np.dtype(dtype).str, system.dim)
    found = _kernels.get(key)
    if found is None:
        function, _ = kernel_source(system, method, kind, dtype)
        found = cuda.jit(function)
        _kernels[key] = found
    return found


def _on_device(array) -> bool:
    # Numba device arrays qualify by `copy_to_host`, because the simulator's
    # stand-in for them has no __cuda_array_interface__.
    if isinstance(array, np.ndarray):
        return False
    return hasattr(array, "__cuda_array_interface__") or hasattr(array, "copy_to_host")


def solve(system, y0, t_span, t_eval, method, kind, dt, rtol, atol, max_steps, dtype,
          controller, max_memory=None, out=None, progress=None, chunk_size=None) -> Solution:
    """`fastode.solve` for ``backend="numba-cuda"``.

    A NumPy y0 runs through `fastode._chunks.run`: chunks of at least 2**18
    trajectories (a quarter of the batch by default), bounded by
    `max_memory`, with `out`, `progress` and Ctrl-C as on the CPU. A device
    y0 runs in one launch and its results stay on the device, so `out` must
    be None and `max_memory`, `progress` and `chunk_size` do not apply.
    Copies and kernels do not overlap here (one stream, synchronous copies).
    """
    check_available()
    device_input = _on_device(y0)
    if device_input and out is not None:
        msg = (
            "out= writes to host memory, but y0 is a device array whose results stay "
            "on the device; pass y0 as a NumPy array to use out="
        )
        raise ValueError(msg)
    if device_input:
        y0_rows, single, dtype = _device_y0(y0, system.dim, dtype)
    else:
        dtype = check.check_dtype(dtype, y0)
        y0_rows, single = check.check_y0(y0, system.dim, dtype)
    t0, t1 = check.check_t_span(t_span)
    t_eval = check.check_t_eval(t_eval, t0, t1, dtype)
    rtol, atol = check.check_tolerances(rtol, atol, dtype, kind, method)
    dt = check.check_dt(dt, kind, method)
    max_steps = check.check_max_steps(max_steps)
    controller_code = check.check_controller(controller, kind, method)

    n = y0_rows.shape[0]
    dense = t_eval is not None
    t_out = t_eval if dense else np.array([t1], dtype=dtype)
    params = system._params_for(n, dtype)
    if n > 0:
        first = y0_rows[:1].copy_to_host() if device_input else y0_rows[:1]
        system._probe(first, params, t0)
    call = {"kind": kind, "method": check.kernel_method(method, kind), "t0": t0, "t1": t1, "dt": dt, "rtol": rtol,
            "atol": atol, "max_steps": max_steps, "controller": controller_code}
    job = CudaJob(system, y0_rows, params, t_eval, call)
    if device_input:
        result = job.launch(y0_rows)
        arrays = {name: _like_input(y0)(value) for name, value in result.items()}
    else:
        n_out = max(len(t_eval) if dense else 0, 1)
        arrays = _chunks.run(job, n_out, system.dim, max_memory=max_memory, out=out,
                             progress=progress, chunk_size=chunk_size,
                             min_rows=GPU_MIN_CHUNK_ROWS, target_chunks=GPU_TARGET_CHUNKS)
    _chunks.warn_if_stiff(_status_on_host(arrays), kind, method)
    return _make_solution(arrays, t_out, dense, single, method)


def _status_on_host(arrays) -> np.ndarray:
    status = arrays["status"]
    if hasattr(status, "copy_to_host"):
        return status.copy_to_host()
    if hasattr(status, "get"):
        return status.get()
    return np.asarray(status)


#: Default chunking of a host batch: at least this many trajectories per
#: launch, about one full wave of a large data-centre GPU.
GPU_MIN_CHUNK_ROWS = 2**18
#: Default number of chunks of a large host batch.
GPU_TARGET_CHUNKS = 4


@dataclass(frozen=True)
class CudaJob:
    """One numba-cuda launch, sliceable by rows for `fastode._chunks.run`."""

    system: object
    y0: object
    params: np.ndarray
    t_eval: np.ndarray | None
    call: dict

    @property
    def n(self) -> int:
        return self.y0.shape[0]

    def rows(self, start: int, stop: int) -> CudaJob:
        per_row = self.params.shape[0] == self.n and self.n > 1
        params = self.params[start:stop] if per_row else self.params
        return replace(self, y0=self.y0[start:stop], params=params)

    def run(self) -> dict:
        """Copy this chunk's host y0 over, launch, and copy the results back."""
        out = self.launch(cuda.to_device(self.y0))
        return {name: value.copy_to_host() for name, value in out.items()}

    def launch(self, y0_device) -> dict:
        """Launch over device y0 and return the device output arrays."""
        system, call = self.system, self.call
        kind, dtype = call["kind"], np.dtype(y0_device.dtype)
        n = y0_device.shape[0]
        dense = self.t_eval is not None
        out = allocate_outputs(n, max(len(self.t_eval) if dense else 0, 1), system.dim,
                               dtype, zeros=_device_zeros, empty=_device_empty)
        if n == 0:
            return out
        real = dtype.type
        pstride = 1 if self.params.shape[0] == n and n > 1 else 0
        t_eval_device = cuda.to_device(self.t_eval if dense else np.zeros(0, dtype))
        args = [y0_device, cuda.to_device(self.params), pstride, t_eval_device,
                real(call["t0"]), real(call["t1"]), real(call["dt"])]
        if kind == "adaptive":
            args += [real(call["rtol"]), real(call["atol"]), call["max_steps"],
                     call["controller"], out["y"], out["t_final"], out["status"],
                     out["n_steps"], out["n_accepted"], out["n_rejected"], out["n_rhs"]]
        else:
            steps = fixed_step_count(call["t0"], call["t1"], call["dt"], dtype)
            args += [steps, call["max_steps"], out["y"], out["t_final"], out["status"],
                     out["n_steps"], out["n_accepted"], out["n_rhs"]]
        kernel = _kernel(system, call["method"], kind, dtype)
        blocks = (n + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK
        try:
            kernel[blocks, THREADS_PER_BLOCK](*args)
        except NumbaError as error:
            raise compile_error(system.name, error) from None
        return out


def _device_zeros(shape, dtype):
    return cuda.to_device(np.zeros(shape, dtype))


def _device_empty(shape, dtype):
    return cuda.device_array(shape, dtype)


def _device_y0(y0, dim, dtype):
    """Return y0 as a C-contiguous (N, dim) device array, whether it was 1-D,
    and the dtype of the run."""
    if not _on_device(y0):
        dtype = check.check_dtype(dtype, y0)
        host, single = check.check_y0(y0, dim, dtype)
        return cuda.to_device(host), single, dtype
    array = y0 if hasattr(y0, "copy_to_host") else cuda.as_cuda_array(y0)
    dtype = check.check_dtype(dtype, np.zeros(0, array.dtype))
    if array.dtype != dtype:
        msg = (
            f"y0 is a device array of dtype {array.dtype} but dtype={dtype} was requested; "
            "convert it on the device first"
        )
        raise TypeError(msg)
    single = array.ndim == 1
    if single:
        array = array.reshape(1, array.shape[0])
    if array.ndim != 2 or array.shape[1] != dim:
        msg = (
            f"y0 has shape {tuple(array.shape)}; this system has {dim} state components, "
            f"so y0 must have shape ({dim},) or (N, {dim})"
        )
        raise ValueError(msg)
    if not array.flags["C_CONTIGUOUS"]:
        msg = "y0 on the device must be C-contiguous; pass a contiguous copy"
        raise ValueError(msg)
    return array, single, dtype


def _make_solution(arrays, t, dense, single, method) -> Solution:
    y = arrays["y"] if dense else arrays["y"][:, 0, :]
    stats = {name: arrays[name] for name in ("n_steps", "n_accepted", "n_rejected", "n_rhs")}
    status, t_final = arrays["status"], arrays["t_final"]
    if single:
        y = y[0]
        status, t_final = status[0], t_final[0]
        stats = {name: value[0] for name, value in stats.items()}
    return Solution(t=t, y=y, status=status, t_final=t_final, stats=stats, method=method)


def _like_input(y0):
    """Return a function that wraps device arrays in the library of `y0`:
    CuPy arrays for CuPy input (no copy), Numba device arrays otherwise."""
    if type(y0).__module__.split(".")[0] == "cupy":
        import cupy

        return cupy.asarray
    return lambda device_array: device_array
