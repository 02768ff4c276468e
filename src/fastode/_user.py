"""`fastode.ode`: systems whose right-hand side the user writes in Python and
Numba compiles, for the CPU (``backend="numba"``) and CUDA
(``backend="numba-cuda"``)."""

from __future__ import annotations

import inspect
import os
import threading

import numpy as np

from ._systems import System

__all__ = ["UserSystem", "ode", "ode_hamiltonian"]


def ode(fn=None, *, dim, n_params=0, separable=None, params=None, boundscheck=False):
    """Wrap a Python right-hand side f(t, y, dy, p) as a fastode system.

    Use it as a decorator, ``@fastode.ode(dim=2, n_params=1)``, or as a call,
    ``fastode.ode(f, dim=2)``.

    Parameters
    ----------
    fn : callable
        ``fn(t, y, dy, p)`` writes dy/dt of one trajectory into ``dy`` and
        returns None. ``y`` and ``dy`` are 1-D float arrays of length ``dim``;
        ``p`` is this trajectory's row of parameters (length ``n_params``,
        possibly 0); ``t`` is a float scalar of the same dtype. A function
        already decorated with ``numba.njit`` is accepted too.
    dim : int
        Number of state components.
    n_params : int
        Number of parameters per trajectory.
    separable : pair of callables, optional
        ``(dT_dp, dV_dq)`` when dy/dt is the flow of a separable Hamiltonian
        H(q, p) = T(p) + V(q) with ``dim = 2 dof`` and state ``(q, p)``;
        this enables the symplectic methods. Each is
        ``g(x, out, p)``, writing the gradient of T at momenta x (or of V at
        positions x) into ``out``, both of length ``dof``. See
        `ode_hamiltonian` to give only these two.
    params : array_like, shape (n_params,) or (N, n_params), optional
        Parameter values: one row shared by every trajectory, or one row per
        trajectory. They can also be given later, ``system(params)``, which
        returns a new system that reuses the compiled kernels.
    boundscheck : bool
        Check every index during the run on ``backend="numba"``, so an index
        out of range in ``fn`` raises `IndexError` naming ``fn``. Off by
        default because it slows the adaptive kernels: by about 1.2x to 3x
        in ``benchmarks/test_numba_backend.py`` runs on a loaded 2-core
        machine, where rk4 showed no difference beyond the noise. With
        False, an index that goes out of range after the check at t0 (see
        Notes) reads or writes arbitrary memory and can crash the
        interpreter. Turn it on while developing ``fn``.

    Returns
    -------
    UserSystem
        A `fastode.System` to pass to `fastode.solve` with
        ``backend="numba"`` (the default for these systems) or
        ``backend="numba-cuda"``.

    Notes
    -----
    ``fn`` is compiled by Numba in nopython mode, so its body may use scalar
    arithmetic, ``math`` functions, loops, ``if``, indexing of ``y``, ``dy``
    and ``p``, and calls to other ``numba.njit`` functions. NumPy calls that
    allocate (``np.dot``, ``y * 2``) work on the CPU, but they cost an
    allocation per call and do not compile for CUDA, where only ``math``,
    scalar code and element-wise indexing are available. Python objects,
    dicts, exceptions with formatted messages and complex numbers do not
    compile: complex states are not supported, so split them into real and
    imaginary parts.

    Before a run, ``fn`` is compiled and called once at t0 on the first row
    of y0 with bounds checking on. A function that does not compile, indexes
    out of range, leaves a component of ``dy`` unwritten or returns a value
    raises `TypeError` or `ValueError` naming it, before any integration.
    During the run on the CPU, an index out of range raises `IndexError`
    only with ``boundscheck=True``, and an exception raised by ``fn`` is
    raised again with ``fn``'s name and message. Either stops the whole call:
    the threads finish their current ranges of trajectories, and no
    `Solution` is returned. ``backend="numba-cuda"`` has no bounds checks.
    Integer division by zero gives 0 (Numba's NumPy error model).

    The CPU kernels advance blocks of 64 trajectories in lock step and call
    ``fn`` on one column of each block after another, which LLVM vectorizes
    across the trajectories when ``fn`` is straight-line code. Kernels
    compile once per (function, method, dtype, dim), which takes tens of
    seconds for the adaptive methods, and are cached on disk when the
    function is defined in a source file (Numba's ``cache=True``). As with
    any Numba function, global variables read by ``fn`` are frozen at
    compile time, so assigning them later in the same process changes
    nothing: pass such values in ``params``. The disk cache keys on the
    bytecode of ``fn`` and of the functions, numbers and arrays it reads as
    globals, so an edited module compiles afresh in the next process. A
    global of another type (a dict, a class instance) leaves the kernels
    uncached. ``fn`` may write to ``p``, for example to
    record the times it was called at. On the CPU each block works on a copy
    of its rows and writes it back when the block ends, so a row shared by
    all trajectories ends with the writes of one of them. A read-only
    parameter array is copied before the run and keeps its values.

    Examples
    --------
    >>> import fastode
    >>> @fastode.ode(dim=2, n_params=1)
    ... def oscillator(t, y, dy, p):
    ...     dy[0] = y[1]
    ...     dy[1] = -p[0] * y[0]
    >>> sol = fastode.solve(oscillator([1.0]), [1.0, 0.0], (0.0, 3.14159265))
    >>> round(float(sol.y[0]), 6)
    -1.0
    """
    if fn is None:
        return lambda function: ode(function, dim=dim, n_params=n_params,
                                    separable=separable, params=params,
                                    boundscheck=boundscheck)
    dim = _check_count("dim", dim, minimum=1)
    n_params = _check_count("n_params", n_params, minimum=0)
    _check_callable("fn", fn)
    functions = {"rhs": fn}
    dof = None
    if separable is not None:
        if not (isinstance(separable, (tuple, list)) and len(separable) == 2):
            msg = f"separable must be a pair (dT_dp, dV_dq) of functions, got {separable!r}"
            raise TypeError(msg)
        if dim % 2:
            msg = f"separable systems have state (q, p), so dim must be even, got {dim}"
            raise ValueError(msg)
        _check_callable("dT_dp", separable[0])
        _check_callable("dV_dq", separable[1])
        functions.update(dT_dp=separable[0], dV_dq=separable[1])
        dof = dim // 2
    compiled = _Compiled(functions, dim, n_params, dof, boundscheck)
    return UserSystem(compiled, params)


def ode_hamiltonian(dT_dp, dV_dq, *, dof, n_params=0, params=None, boundscheck=False):
    """Build a separable Hamiltonian system H(q, p) = T(p) + V(q) from its gradients.

    The state is ``(q, p)``, of length ``2 dof``, and dy/dt = (dT/dp, -dV/dq).
    The symplectic methods (``symplectic_euler``, ``verlet``, ``yoshida4``,
    ``yoshida6``) and every Runge-Kutta method apply.

    Parameters
    ----------
    dT_dp : callable
        ``dT_dp(p_momenta, out, p)`` writes the gradient of T at the momenta
        into ``out`` (both of length ``dof``); ``p`` is the parameter row.
    dV_dq : callable
        ``dV_dq(q, out, p)`` writes the gradient of V at the positions.
    dof : int
        Degrees of freedom.
    n_params, params, boundscheck
        As in `ode`.

    Notes
    -----
    Both functions compile with Numba under the rules of `ode`. The
    symplectic methods count one evaluation of dV/dq per kick in
    ``stats["n_rhs"]``, as the C++ core does.
    """
    dof = _check_count("dof", dof, minimum=1)
    n_params = _check_count("n_params", n_params, minimum=0)
    _check_callable("dT_dp", dT_dp)
    _check_callable("dV_dq", dV_dq)
    functions = {"dT_dp": dT_dp, "dV_dq": dV_dq}
    return UserSystem(_Compiled(functions, 2 * dof, n_params, dof, boundscheck), params)


class UserSystem(System):
    """A system whose right-hand side is user Python code compiled by Numba.

    Created by `fastode.ode` or `fastode.ode_hamiltonian`; calling it with a
    parameter array returns a copy with those parameters that shares the
    compiled kernels.
    """

    def __init__(self, compiled, params=None):
        self._compiled = compiled
        self.params = None if params is None else self._check_params(params)

    def __call__(self, params):
        return UserSystem(self._compiled, params)

    @property
    def dim(self) -> int:
        return self._compiled.dim

    @property
    def n_params(self) -> int:
        """Number of parameters per trajectory."""
        return self._compiled.n_params

    @property
    def dof(self):
        """Degrees of freedom of a separable system, else None."""
        return self._compiled.dof

    @property
    def separable(self) -> bool:
        return self._compiled.dof is not None

    @property
    def name(self) -> str:
        """Name of the user function, for messages."""
        return self._compiled.name

    def _check_params(self, params) -> np.ndarray:
        array = np.asarray(params)
        if array.dtype.kind == "c":
            msg = f"params is complex ({array.dtype}); only real parameters are supported"
            raise TypeError(msg)
        if array.dtype.kind not in "biuf":
            msg = f"params must contain real numbers, got dtype {array.dtype}"
            raise TypeError(msg)
        n_params = self.n_params
        if array.ndim == 1 and array.shape[0] == n_params:
            return array
        if array.ndim == 2 and array.shape[1] == n_params:
            return array
        msg = (
            f"params has shape {array.shape}; {self.name} takes {n_params} parameters, "
            f"so params must have shape ({n_params},) or (N, {n_params})"
        )
        raise ValueError(msg)

    def _params_for(self, n: int, dtype) -> np.ndarray:
        """Parameters as a C-contiguous (1, n_params) or (n, n_params) array."""
        if self.params is None:
            if self.n_params:
                msg = (
                    f"{self.name} takes {self.n_params} parameters but none were given; "
                    "pass them with system(params) or fastode.ode(..., params=...)"
                )
                raise ValueError(msg)
            return np.zeros((1, 0), dtype=dtype)
        array = self.params
        if array.ndim == 1:
            return np.ascontiguousarray(array.reshape(1, -1), dtype=dtype)
        if array.shape[0] in (1, n):
            return np.ascontiguousarray(array, dtype=dtype)
        msg = (
            f"params has {array.shape[0]} rows but y0 has {n} trajectories; "
            f"give one row per trajectory or a single row of shape ({self.n_params},)"
        )
        raise ValueError(msg)

    # --- used by the Numba backends ---------------------------------------

    @property
    def _compiled_key(self):
        return self._compiled

    @property
    def _cacheable(self) -> bool:
        return self._compiled.cacheable

    def _cpu_function(self, role):
        return self._compiled.cpu(role)

    def _cuda_function(self, role):
        return self._compiled.cuda(role)

    def _probe(self, y0, params, t0):
        """Call the user functions once on the first trajectory with bounds
        checks on, so bad code fails here with a clear message."""
        from ._numba import _probe

        _probe.probe(self._compiled, y0, params, t0)

    def rhs(self, t, y):
        y = np.asarray(y, dtype=np.float64)
        params = self._params_for(len(y), np.float64)
        rhs = self._cpu_function("rhs")
        dy = np.empty_like(y)
        for n in range(len(y)):
            rhs(float(t), y[n], dy[n], params[n if params.shape[0] > 1 else 0])
        return dy

    def __repr__(self):
        if self.params is None:
            shown = "none"
        elif self.params.ndim == 1:
            shown = "shared"
        else:
            shown = f"{self.params.shape[0]} rows"
        return f"UserSystem({self.name}, dim={self.dim}, params={shown})"


class _Compiled:
    """The user functions of one `fastode.ode` call and their Numba builds,
    shared by every `UserSystem` made from it."""

    def __init__(self, functions, dim, n_params, dof, boundscheck=False):
        if not isinstance(boundscheck, bool):
            msg = f"boundscheck must be True or False, got {boundscheck!r}"
            raise TypeError(msg)
        self.python = {role: getattr(fn, "py_func", fn) for role, fn in functions.items()}
        self.boundscheck = boundscheck
        self.dim = dim
        self.n_params = n_params
        self.dof = dof
        main = self.python.get("rhs", self.python.get("dV_dq"))
        self.name = getattr(main, "__qualname__", repr(main))
        self.cacheable = all(_has_source_file(fn) for fn in self.python.values())
        self._builds = {}
        self._lock = threading.RLock()

    def cpu(self, role):
        return self._get(("cpu", role))

    def cuda(self, role):
        return self._get(("cuda", role))

    def _get(self, key):
        with self._lock:
            found = self._builds.get(key)
            if found is None:
                from ._numba import _compile

                found = _compile.build(self, *key)
                self._builds[key] = found
            return found


def _has_source_file(fn) -> bool:
    try:
        path = inspect.getsourcefile(fn)
    except TypeError:
        return False
    return bool(path) and os.path.isfile(path)


def _check_count(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        msg = f"{name} must be an integer >= {minimum}, got {value!r}"
        raise ValueError(msg)
    return int(value)


def _check_callable(name, fn):
    if not callable(fn):
        msg = f"{name} must be a function, got {type(fn).__name__}"
        raise TypeError(msg)
