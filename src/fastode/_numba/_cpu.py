"""CPU kernels for user right-hand sides: `numba.njit(parallel=True)` loops
with `prange` over blocks of trajectories."""

from __future__ import annotations

import time

import numba
import numpy as np
from numba import prange

from .. import _core
from . import _steps
from ._compile import cpu_jit

#: Lanes of a fixed-step block: one 512-bit register of float64, the width
#: the C++ core uses, so the stage sums run over contiguous memory.
FIXED_STEP_LANES = 8

_kernels: dict = {}


def kernel(system, method: str, kind: str, dtype: np.dtype):
    """Return the compiled kernel of (user function, method, dtype, dim),
    compiling it on first use.

    The returned `CompiledKernel` records how long its first call took, which
    is dominated by Numba's compilation unless the on-disk cache served it.
    """
    key = (system._compiled_key, method, np.dtype(dtype).str, system.dim)
    found = _kernels.get(key)
    if found is None:
        found = CompiledKernel(_build(system, method, kind, np.dtype(dtype)), kind)
        _kernels[key] = found
    return found


class CompiledKernel:
    """A Numba kernel and the seconds its first call took (compile included)."""

    def __init__(self, function, kind):
        self.function = function
        self.kind = kind
        self.first_call_seconds = None

    def __call__(self, *args):
        if self.first_call_seconds is not None:
            return self.function(*args)
        start = time.perf_counter()
        result = self.function(*args)
        self.first_call_seconds = time.perf_counter() - start
        return result


def _build(system, method, kind, dtype):
    cache = system._cacheable
    jit = cpu_jit(cache, inline="always")
    rhs = system._cpu_function("rhs")
    common = _steps.build_common(jit, dtype)
    if kind == "adaptive":
        adaptive_one, stages = _steps.build_adaptive(jit, rhs, _steps.method_tableau(method),
                                                     common, dtype)
        return _adaptive_kernel(adaptive_one, stages, cache)
    if kind == "symplectic":
        step, evals = _steps.build_symplectic_step(
            jit, system._cpu_function("dV_dq"), system._cpu_function("dT_dp"), system.dof,
            method, _core.symplectic_weights(), dtype)
        stages = 1
    else:
        step, stages = _steps.build_rk_step(jit, rhs, _steps.method_tableau(method), dtype,
                                             FIXED_STEP_LANES, system.dim)
        evals = stages
    fixed_block = _steps.build_fixed_block(jit, step, evals, rhs, common, dtype)
    return _fixed_kernel(fixed_block, stages, cache)


def _fixed_kernel(fixed_block, stages, cache):
    lanes = FIXED_STEP_LANES

    @cpu_jit(cache, parallel=True)
    def fixed_kernel(y0, params, pstride, t_eval, t0, t1, dt, n_grid, max_steps, y_out,
                     t_final, status, n_steps, n_rhs):
        n, dim = y0.shape
        dtype = y0.dtype
        for block in prange((n + lanes - 1) // lanes):
            first = block * lanes
            count = min(lanes, n - first)
            y = np.empty((lanes, dim), dtype)
            y1 = np.empty((lanes, dim), dtype)
            k = np.empty((stages, lanes, dim), dtype)
            fa = np.empty((lanes, dim), dtype)
            fb = np.empty((lanes, dim), dtype)
            rows = np.empty(lanes, np.int64)
            lane_t = np.empty(lanes, dtype)
            lane_status = np.empty(lanes, np.int8)
            lane_steps = np.empty(lanes, np.int64)
            lane_rhs = np.empty(lanes, np.int64)
            lane_written = np.empty(lanes, np.int64)
            fixed_block(first, count, y0, params, pstride, t_eval, t0, t1, dt, n_grid,
                        max_steps, y_out, t_final, status, n_steps, n_rhs, y, y1, k, fa,
                        fb, rows, lane_t, lane_status, lane_steps, lane_rhs, lane_written)

    return fixed_kernel


def _adaptive_kernel(adaptive_one, stages, cache):
    @cpu_jit(cache, parallel=True)
    def adaptive_kernel(y0, params, pstride, t_eval, t0, t1, dt0, rtol, atol, max_steps,
                        controller, y_out, t_final, status, n_steps, n_accepted,
                        n_rejected, n_rhs):
        n, dim = y0.shape
        dtype = y0.dtype
        for i in prange(n):
            y = np.empty(dim, dtype)
            y1 = np.empty(dim, dtype)
            k = np.empty((stages, dim), dtype)
            adaptive_one(i, y0, params, pstride, t_eval, t0, t1, dt0, rtol, atol,
                         max_steps, controller, y_out, t_final, status, n_steps,
                         n_accepted, n_rejected, n_rhs, y, y1, k)

    return adaptive_kernel
