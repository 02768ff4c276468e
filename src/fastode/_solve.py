"""`fastode.solve`: one call that integrates a batch of trajectories."""

from __future__ import annotations

import numpy as np

from . import _chunks
from . import _validation as check
from ._solution import Solution
from ._systems import System
from ._user import UserSystem

__all__ = ["solve"]

DEFAULT_MAX_STEPS = 100_000


def solve(
    system,
    y0,
    t_span,
    t_eval=None,
    method="dopri5",
    dt=None,
    rtol=None,
    atol=None,
    max_steps=DEFAULT_MAX_STEPS,
    backend="auto",
    dtype=None,
    controller="i",
    threads=None,
    max_memory=None,
    out=None,
    progress=None,
    chunk_size=None,
    adaptive=None,
):
    """Integrate dy/dt = f(t, y) for a batch of initial states.

    Parameters
    ----------
    system : fastode.System
        A built-in system such as `Linear`, `Oscillator`, `Lorenz` or
        `Hamiltonian`, or a Python right-hand side wrapped by `fastode.ode`.
    y0 : array_like, shape (N, d) or (d,)
        Initial states, one row per trajectory. Integers are converted to
        float; complex states raise `TypeError`.
    t_span : pair of float
        (t0, t1). t1 < t0 integrates backwards; t1 == t0 returns y0.
    t_eval : array_like, shape (T,), optional
        Times at which to store the state, sorted in the direction of
        integration and inside `t_span`. When None, only the final state is
        kept, so memory stays O(N d).
    method : str
        Fixed step: ``euler``, ``midpoint``, ``heun``, ``rk4``. Adaptive:
        ``bs3``, ``dopri5`` (default), ``tsit5``. Symplectic, for
        `Hamiltonian` systems: ``symplectic_euler``, ``verlet``, ``yoshida4``,
        ``yoshida6``.
    dt : float, optional
        Step size of fixed-step and symplectic methods (required there; the
        last step is shortened to end at t1). For adaptive methods, the first
        step, which is otherwise estimated.
    rtol, atol : float, optional
        Relative and absolute tolerance of adaptive methods: a step is
        accepted when the RMS over components of
        err / (atol + rtol max(|y|, |y_new|)) is at most 1. rtol defaults to
        1e-6, or to 100 machine epsilon (1.2e-5) in float32; an rtol given
        below that floor is raised to it with a warning. atol defaults to
        1e-9. Fixed-step and symplectic runs warn when either is given,
        because they have no effect there.
    max_steps : int
        Maximum number of attempted steps per trajectory over the whole span.
    backend : {"auto", "cpp", "numba", "numba-cuda", "cupy"}
        Where to run. ``auto`` selects ``numba`` for systems made by
        `fastode.ode`. For built-in systems it selects ``cupy`` when CuPy
        finds a CUDA device and y0 is already on the GPU or has at least
        ``fastode._cupy.AUTO_GPU_MIN_TRAJECTORIES`` (65 536) rows, and the
        C++ core otherwise. `fastode.MLP` fields stay on the core under
        ``auto``. GPU results agree with the core to rounding, not
        bit for bit. ``numba-cuda`` runs `fastode.ode` systems on an NVIDIA
        GPU, one thread per trajectory.
    dtype : {None, "float32", "float64"}
        Precision of the run; None keeps float32 inputs and uses float64
        otherwise.
    controller : {"i", "pi"}
        Step-size controller of adaptive methods.
    threads : int, optional
        OpenMP threads; defaults to ``OMP_NUM_THREADS`` or all cores. The
        result does not depend on it.
    max_memory : int, optional
        Bytes the output buffers may occupy in memory: the result (unless
        `out` is a path) plus the chunk being computed. Defaults to half of
        MemAvailable in /proc/meminfo (2 GiB where that is missing). A result
        that does not fit raises `MemoryError` before any work.
    out : str or os.PathLike or ndarray, optional
        Where ``y`` is written, as shape (N, T, d) with T = 1 when `t_eval`
        is None. A path creates a memory-mapped ``.npy`` file
        (`numpy.lib.format.open_memmap`), so the run may exceed memory; an
        array of that shape and dtype is filled in place.
    progress : bool, optional
        Show a tqdm progress bar of trajectories on stderr. None (default)
        shows it when stderr is a terminal and the first chunk predicts a run
        longer than about 2 s.
    chunk_size : int, optional
        Trajectories per chunk. The default is 1/32 of the batch, at least
        4096 and at most what `max_memory` allows. Results do not depend on it.
    adaptive : bool, optional
        ``False`` steps an embedded pair (bs3, dopri5, tsit5) with the fixed
        step `dt` and no error estimate, at the method's full order. A step
        evaluates f as often as an accepted adaptive step (3 times for bs3,
        6 for dopri5 and tsit5): the last stage of these pairs only feeds
        the error estimate, and an adaptive run reuses it as the next
        step's first. There are no rejected steps and no controller. None
        (default) keeps each method's own kind; ``True`` with a fixed-step
        or symplectic method is an error.

    Returns
    -------
    Solution
        ``t``, ``y``, per-trajectory ``status``, ``t_final`` and ``stats``.

    Notes
    -----
    Each trajectory is integrated independently. One that fails (non-finite
    state, ``max_steps`` exhausted, step size underflow) gets its own status
    and NaN at the output times it did not reach, and every other
    trajectory's result is unchanged bit for bit. When trajectories of an
    adaptive method stop with MAX_STEPS or STEP_TOO_SMALL, one
    `fastode.StiffnessWarning` per call reports how many. Every method here
    is explicit, so on a stiff system its step count grows with the fastest
    decay rate times the span, whatever the tolerance.

    A batch runs in chunks of trajectories. Ctrl-C (KeyboardInterrupt) takes
    effect when the chunk in progress finishes, because the compiled kernels
    do not poll for signals; the call then returns the finished chunks,
    gives the others status ``INTERRUPTED`` (NaN states, zero step counts,
    ``t_final`` = t0) and warns with a `RuntimeWarning`. A batch that fits in
    one chunk (by default up to 4096 trajectories) raises KeyboardInterrupt
    when it ends; pass a smaller `chunk_size` to stop long runs sooner.

    Dense output at ``t_eval``: adaptive dopri5 and tsit5 use their own
    fourth-order continuous extensions. bs3, the pairs with
    ``adaptive=False`` (whose interpolants need the skipped last stage), the
    fixed-step and the symplectic methods use the cubic Hermite interpolant
    between the two step ends, which costs two more evaluations of f in each
    step that has an output time. Output times do not change the steps
    taken.

    Examples
    --------
    >>> import fastode
    >>> sol = fastode.solve(fastode.Oscillator(k=1.0), [[1.0, 0.0]], (0.0, 3.14159))
    >>> round(float(sol.y[0, 0]), 5)
    -1.0
    """
    if not isinstance(system, System):
        msg = (
            f"system must be a fastode system (Linear, Oscillator, Lorenz, "
            f"Hamiltonian, MLP, or one made by fastode.ode), got {type(system).__name__}"
        )
        raise TypeError(msg)
    method = check.check_method(method, system)
    kind = check.check_adaptive(adaptive, method)
    backend = _check_backend(backend, system, y0)
    if backend == "numba-cuda":
        from ._numba import _cuda

        return _cuda.solve(system, y0, t_span, t_eval, method, kind, dt, rtol, atol,
                           max_steps, dtype, controller, max_memory, out, progress,
                           chunk_size)
    if backend == "cupy":
        from ._cupy import solve_cupy

        return solve_cupy(system, y0, t_span, t_eval, method, dt, rtol, atol, max_steps,
                          dtype, controller, threads, max_memory, out, progress, chunk_size,
                          adaptive)
    checked = check.check_call(system, method, kind, y0, t_span, t_eval, dt, rtol, atol,
                               max_steps, dtype, controller, threads)
    if backend == "numba":
        job = _numba_job(system, checked.y0, checked.t_core, kind, checked.call)
    else:
        core_arguments = system._core_arguments(checked.y0.shape[0], checked.dtype)
        job = _chunks.CoreJob(system._kernel, checked.y0, checked.t_core, checked.dense,
                              checked.call, core_arguments)
    # The core keeps one output column when t_eval is empty, as without t_eval.
    result = _chunks.run(job, max(checked.t_core.shape[0], 1), system.dim,
                         max_memory=max_memory, out=out, progress=progress,
                         chunk_size=chunk_size)
    solution = _make_solution(result, checked.t_solution, checked.dense, checked.single,
                              method)
    _chunks.warn_if_stiff(solution.status, kind, method)
    return solution


def _check_backend(backend, system, y0) -> str:
    """Return the backend that runs `system`: user systems (`fastode.ode`) run
    on Numba, built-in ones on the C++ core, or on the GPU (CuPy) when
    `fastode._cupy.prefers_gpu` finds one and the batch is large enough."""
    if backend not in check.BACKENDS:
        msg = f"backend must be one of {list(check.BACKENDS)}, got {backend!r}"
        raise ValueError(msg)
    user = isinstance(system, UserSystem)
    if user:
        if backend == "auto":
            return "numba"
        if backend in ("numba", "numba-cuda"):
            return backend
        msg = (
            f"backend={backend!r} cannot run {system.name}, a Python right-hand side "
            "from fastode.ode; use backend='numba' (CPU) or 'numba-cuda' (GPU)"
        )
        raise ValueError(msg)
    if backend in ("numba", "numba-cuda"):
        msg = (
            f"backend={backend!r} runs systems made by fastode.ode; built-in systems "
            f"such as {type(system).__name__} run on backend='cpp' (the default)"
        )
        raise ValueError(msg)
    if backend == "cupy":
        return backend
    if backend == "auto":
        from ._cupy import prefers_gpu

        return "cupy" if prefers_gpu(system, y0) else "cpp"
    if backend != "cpp":
        msg = f"backend={backend!r} is not built yet; use backend='cpp' (the default)"
        raise NotImplementedError(msg)
    return "cpp"


def _numba_job(system, y0, t_eval, kind, call) -> _chunks.NumbaJob:
    # Numba types a read-only array apart from a writeable one, so such an
    # input would build every kernel a second time, and the kernels write the
    # parameter rows back (fn may write to p). Read-only inputs are copied.
    y0 = _writeable(y0)
    params = _writeable(system._params_for(y0.shape[0], y0.dtype))
    system._probe(y0, params, call["t0"])
    return _chunks.NumbaJob(system, y0, params, t_eval, {**call, "kind": kind})


def _writeable(array: np.ndarray) -> np.ndarray:
    return array if array.flags.writeable else array.copy()


def _make_solution(out, t, dense, single, method) -> Solution:
    y = out["y"][:, : len(t), :] if dense else out["y"][:, 0, :]
    stats = {name: out[name] for name in ("n_steps", "n_accepted", "n_rejected", "n_rhs")}
    status, t_final = out["status"], out["t_final"]
    if single:
        y = y[0]
        status, t_final = status[0], t_final[0]
        stats = {name: value[0] for name, value in stats.items()}
    return Solution(t=t, y=y, status=status, t_final=t_final, stats=stats, method=method)
