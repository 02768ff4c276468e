"""CPU kernels for user right-hand sides: `numba.njit(nogil=True)` loops over
tasks of lane blocks (see `_blocks`), called from a thread pool."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

from .. import _core
from . import _blocks, _steps
from ._compile import cpu_jit

#: Trajectories per lane block. Eight float64 fill one 512-bit register.
LANES = 64

#: Lane blocks per parallel task, so each task allocates its scratch arrays
#: once for several blocks.
BLOCKS_PER_TASK = 16

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
    """A Numba kernel over a range of tasks, and the seconds its first call
    took.

    The first call runs one task on the calling thread, so
    ``first_call_seconds`` is dominated by Numba's compilation, or by loading
    the build from the on-disk cache.
    """

    def __init__(self, function, kind):
        self.function = function
        self.kind = kind
        self.first_call_seconds = None

    def __call__(self, *args, n, threads):
        """Run the kernel on trajectories 0 .. n - 1 with `threads` threads.

        The kernel is compiled with ``nogil=True`` and called on contiguous
        ranges of tasks from a thread pool, not with ``prange``. Numba 0.68
        does not reliably propagate an exception raised inside a ``prange``
        loop: with ``boundscheck`` it raised SystemError, and it reported an
        IndexError for an index that was in range.
        """
        n_tasks = -(-n // (LANES * BLOCKS_PER_TASK))
        done = 0
        if self.first_call_seconds is None and n_tasks > 0:
            start = time.perf_counter()
            self.function(*args, 0, 1)
            self.first_call_seconds = time.perf_counter() - start
            done = 1
        # Several ranges per thread, taken in turn, balance adaptive runs
        # whose trajectories differ in cost.
        n_ranges = min(n_tasks - done, 4 * threads)
        if n_ranges <= 0:
            return
        bounds = np.linspace(done, n_tasks, n_ranges + 1).astype(np.int64)
        ranges = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
        if threads == 1:
            for first, stop in ranges:
                self.function(*args, first, stop)
            return
        with ThreadPoolExecutor(max_workers=threads) as pool:
            futures = [pool.submit(self.function, *args, first, stop)
                       for first, stop in ranges]
            # Every range finishes before an error is raised, so no thread
            # still writes to the outputs after this call returns.
            wait(futures)
        for future in futures:
            future.result()


def _build(system, method, kind, dtype):
    cache = system._cacheable
    # Numba inlines the user function into the kernel before lowering, so
    # the kernel's boundscheck option decides whether its indexing is checked.
    checks = system._compiled.boundscheck
    jit = cpu_jit(cache, inline="always", boundscheck=checks)
    rhs = system._cpu_function("rhs")
    common = _steps.build_common(jit, dtype)
    dim, n_params = system.dim, system.n_params
    if kind == "adaptive":
        block, stages = _blocks.build_adaptive_block(
            jit, rhs, _steps.method_tableau(method), common, dtype, LANES, dim, n_params,
            cold_jit=cpu_jit(cache, boundscheck=checks))
        scratch = _build_block_scratch(jit, stages, dim, n_params)
        return _adaptive_kernel(block, scratch, cache, checks)
    if kind == "symplectic":
        step, evals = _blocks.build_symplectic_step(
            jit, system._cpu_function("dV_dq"), system._cpu_function("dT_dp"), system.dof,
            method, _core.symplectic_weights(), dtype, LANES)
        stages = 1
    else:
        step, stages = _blocks.build_rk_step(jit, rhs, _steps.method_tableau(method), dtype,
                                              LANES, dim)
        evals = stages
    block = _blocks.build_fixed_block(jit, step, evals, rhs, common, dtype, LANES, dim,
                                      n_params)
    scratch = _build_block_scratch(jit, stages, dim, n_params)
    return _fixed_kernel(block, scratch, dim, cache, checks)


def _build_block_scratch(jit, stages, dim, n_params):
    """Compile the allocator of the arrays every block driver works in: the
    state, the new state, the stages, the parameter columns, and each lane's
    status and count of outputs written."""
    lanes = LANES

    @jit
    def block_scratch(dtype):
        y = np.empty((dim, lanes), dtype)
        y1 = np.empty((dim, lanes), dtype)
        k = np.empty((stages, dim, lanes), dtype)
        p = np.empty((n_params, lanes), dtype)
        code = np.empty(lanes, np.int8)
        written = np.empty(lanes, np.int64)
        return y, y1, k, p, code, written

    return block_scratch


def _fixed_kernel(fixed_block, block_scratch, dim, cache, boundscheck):
    lanes, per_task = LANES, BLOCKS_PER_TASK

    @cpu_jit(cache, nogil=True, boundscheck=boundscheck)
    def fixed_kernel(y0, params, pstride, t_eval, t0, t1, dt, n_grid, max_steps, y_out,
                     t_final, status, n_steps, n_accepted, n_rhs, task_start, task_stop):
        n = y0.shape[0]
        dtype = y0.dtype
        n_blocks = (n + lanes - 1) // lanes
        for task in range(task_start, task_stop):
            y, y1, k, p, code, written = block_scratch(dtype)
            fa = np.empty((dim, lanes), dtype)
            fb = np.empty((dim, lanes), dtype)
            lane_t = np.empty(lanes, dtype)
            lane_steps = np.empty(lanes, np.int64)
            lane_rhs = np.empty(lanes, np.int64)
            probe = np.empty(lanes, dtype)
            for block in range(task * per_task, min(n_blocks, (task + 1) * per_task)):
                first = block * lanes
                fixed_block(first, min(lanes, n - first), y0, params, pstride, t_eval, t0,
                            t1, dt, n_grid, max_steps, y_out, t_final, status, n_steps,
                            n_rhs, y, y1, k, fa, fb, p, code, written, lane_t, lane_steps,
                            lane_rhs, probe, n_accepted)

    return fixed_kernel


def _adaptive_kernel(adaptive_block, block_scratch, cache, boundscheck):
    lanes, per_task = LANES, BLOCKS_PER_TASK

    @cpu_jit(cache, nogil=True, boundscheck=boundscheck)
    def adaptive_kernel(y0, params, pstride, t_eval, t0, t1, dt0, rtol, atol, max_steps,
                        controller, y_out, t_final, status, n_steps, n_accepted,
                        n_rejected, n_rhs, task_start, task_stop):
        n = y0.shape[0]
        dtype = y0.dtype
        n_blocks = (n + lanes - 1) // lanes
        for task in range(task_start, task_stop):
            y, y1, k, p, code, written = block_scratch(dtype)
            active = np.empty(lanes, np.bool_)
            t = np.empty(lanes, dtype)
            dt = np.empty(lanes, dtype)
            dt_try = np.empty(lanes, dtype)
            norm = np.empty(lanes, dtype)
            past = np.empty(lanes, np.bool_)
            err_prev = np.empty(lanes, dtype)
            rejected_last = np.empty(lanes, np.bool_)
            steps = np.empty(lanes, np.int64)
            accepted = np.empty(lanes, np.int64)
            rejected = np.empty(lanes, np.int64)
            evals = np.empty(lanes, np.int64)
            ok = np.empty(lanes, np.bool_)
            t_new = np.empty(lanes, dtype)
            dt_next = np.empty(lanes, dtype)
            event = np.empty(lanes, np.bool_)
            t_out = np.empty(lanes, dtype)
            results = (y_out, t_final, status, n_steps, n_accepted, n_rejected, n_rhs)
            decision = (ok, t_new, dt_next, event, t_out)
            lane_state = (code, written, active, t, dt, dt_try, norm, past, err_prev,
                          rejected_last, steps, accepted, rejected, evals)
            for block in range(task * per_task, min(n_blocks, (task + 1) * per_task)):
                first = block * lanes
                adaptive_block(first, min(lanes, n - first), y0, params, pstride, t_eval,
                               t0, t1, dt0, rtol, atol, max_steps, controller, results, y,
                               y1, k, p, lane_state, decision)

    return adaptive_kernel
