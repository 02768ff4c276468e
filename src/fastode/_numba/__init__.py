"""Numba backends for user-written right-hand sides (`fastode.ode`).

`run` integrates on the CPU with `numba.njit(parallel=True)` kernels and
returns the same dict of arrays as the C++ bindings, so `fastode.solve`
builds its `Solution` the same way as for the core. `_cuda.solve` runs one
CUDA thread per trajectory.
"""

from __future__ import annotations

import os

import numpy as np
from numba.core.errors import NumbaError

from .._grid import fixed_step_count
from . import _cpu


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
    if kind == "adaptive":
        args = (y0, params, pstride, t_eval, real(t0), real(t1), real(dt), real(rtol),
                real(atol), max_steps, controller, out["y"], out["t_final"], out["status"],
                out["n_steps"], out["n_accepted"], out["n_rejected"], out["n_rhs"])
    else:
        n_grid = fixed_step_count(t0, t1, dt, dtype)
        args = (y0, params, pstride, t_eval, real(t0), real(t1), real(dt), n_grid, max_steps,
                out["y"], out["t_final"], out["status"], out["n_steps"], out["n_accepted"],
                out["n_rhs"])
    try:
        compiled(*args, n=n, threads=max(1, min(int(threads), os.cpu_count() or 1)))
    except NumbaError:
        raise
    except Exception as error:
        raise run_error(system, error) from error
    return out


def run_error(system, error):
    """Return the exception that reports `error`, raised inside the compiled
    user function `system.name` during a run, with the function's name."""
    name = system.name
    if isinstance(error, IndexError):
        sizes = f"dim={system.dim}, n_params={system.n_params}"
        msg = (
            f"{name} indexed an array out of range during the run ({sizes}); the "
            "results of this call are discarded"
        )
        return IndexError(msg)
    msg = (
        f"{name} raised {type(error).__name__} during the run: {error}; the results "
        "of this call are discarded"
    )
    try:
        return type(error)(msg)
    except Exception:  # an exception type that needs other arguments
        return RuntimeError(msg)


def compile_report(system, method: str, dtype=np.float64):
    """Return ``(seconds, cached)`` for the CPU kernel of a `fastode.ode`
    system and method: the seconds of its first call in this process, and
    whether Numba loaded it from the on-disk cache instead of compiling it.

    ``seconds`` is None until a `fastode.solve` call has run the kernel.
    """
    from .._validation import METHODS

    compiled = _cpu.kernel(system, method, METHODS[method], np.dtype(dtype))
    cached = sum(compiled.function.stats.cache_hits.values()) > 0
    return compiled.first_call_seconds, cached
