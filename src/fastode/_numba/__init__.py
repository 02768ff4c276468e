"""Numba backends for user-written right-hand sides (`fastode.ode`).

`run` integrates on the CPU with `numba.njit(parallel=True)` kernels and
returns the same dict of arrays as the C++ bindings, so `fastode.solve`
builds its `Solution` the same way as for the core. `_cuda.solve` runs one
CUDA thread per trajectory.
"""

from __future__ import annotations

import numba
import numpy as np

from . import _cpu


def fixed_step_count(t0: float, t1: float, dt: float, dtype: np.dtype) -> int:
    """Number of steps of size |dt| that cover the span, as the C++ core counts
    them: a ratio within a few ulps of an integer is rounded to it."""
    span = abs(float(t1) - float(t0))
    if span == 0.0:
        return 0
    ratio = span / abs(float(dt))
    eps = 1e-6 if np.dtype(dtype) == np.float32 else 1e-12
    n = int(ratio)
    if n < ratio * (1.0 - eps):
        n += 1
    return max(n, 1)


def allocate_outputs(n: int, n_out: int, dim: int, dtype, zeros=np.zeros, empty=np.empty):
    """Allocate the output arrays of a run, in the layout of the C++ bindings."""
    return {
        "y": empty((n, n_out, dim), dtype),
        "t_final": empty(n, dtype),
        "status": zeros(n, np.int8),
        "n_steps": zeros(n, np.int64),
        "n_accepted": zeros(n, np.int64),
        "n_rejected": zeros(n, np.int64),
        "n_rhs": zeros(n, np.int64),
    }


def run(system, y0, params, t_eval, *, method, kind, t0, t1, dt, rtol, atol, max_steps,
        controller, threads):
    """Integrate on the CPU; `t_eval` is an empty array when only the final
    state is kept."""
    dtype = y0.dtype
    n = y0.shape[0]
    out = allocate_outputs(n, max(t_eval.shape[0], 1), system.dim, dtype)
    if n == 0:
        return out
    compiled = _cpu.kernel(system, method, kind, dtype)
    real = dtype.type
    pstride = 1 if params.shape[0] == n and n > 1 else 0
    previous_threads = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        if kind == "adaptive":
            compiled(y0, params, pstride, t_eval, real(t0), real(t1), real(dt), real(rtol),
                     real(atol), max_steps, controller, out["y"], out["t_final"],
                     out["status"], out["n_steps"], out["n_accepted"], out["n_rejected"],
                     out["n_rhs"])
        else:
            n_grid = fixed_step_count(t0, t1, dt, dtype)
            compiled(y0, params, pstride, t_eval, real(t0), real(t1), real(dt), n_grid,
                     max_steps, out["y"], out["t_final"], out["status"], out["n_steps"],
                     out["n_rhs"])
            out["n_accepted"][:] = out["n_steps"]
    finally:
        numba.set_num_threads(previous_threads)
    return out
