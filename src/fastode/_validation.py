"""Checks on the arguments of `fastode.solve`, each raising a message that
names the argument, the value received and what is accepted."""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass

import numpy as np

from ._warnings import warn_user

#: Every method and its kind. Coefficients live in the C++ headers.
METHODS = {
    "euler": "fixed",
    "midpoint": "fixed",
    "heun": "fixed",
    "rk4": "fixed",
    "bs3": "adaptive",
    "dopri5": "adaptive",
    "tsit5": "adaptive",
    "symplectic_euler": "symplectic",
    "verlet": "symplectic",
    "yoshida4": "symplectic",
    "yoshida6": "symplectic",
}

CONTROLLERS = {"i": 0, "pi": 1}

#: rtol and atol when the caller passes none.
DEFAULT_RTOL = 1e-6
DEFAULT_ATOL = 1e-9

#: Largest max_steps: step counters are 64-bit integers.
MAX_STEPS_LIMIT = 2**62

BACKENDS = ("auto", "cpp", "numba", "numba-cuda", "cupy")

DTYPES = {np.dtype(np.float32), np.dtype(np.float64)}


def check_method(method, system) -> str:
    if isinstance(method, str):
        method = method.lower()
    if method not in METHODS:
        msg = f"method must be one of {sorted(METHODS)}, got {method!r}"
        raise ValueError(msg)
    if METHODS[method] == "symplectic" and not system.separable:
        msg = (
            f"method={method!r} needs a separable Hamiltonian system "
            f"(fastode.Hamiltonian), got {type(system).__name__}; "
            "use rk4 or an adaptive method instead"
        )
        raise ValueError(msg)
    return method


def check_adaptive(adaptive, method: str) -> str:
    """Return the kind `method` runs as: "fixed", "adaptive" or "symplectic".

    ``adaptive=None`` keeps the method's own kind; ``adaptive=False`` steps an
    embedded pair (bs3, dopri5, tsit5) with a fixed dt.
    """
    kind = METHODS[method]
    if adaptive is None:
        return kind
    if not isinstance(adaptive, (bool, np.bool_)):
        msg = f"adaptive must be True, False or None, got {adaptive!r}"
        raise TypeError(msg)
    if adaptive and kind != "adaptive":
        msg = (
            f"adaptive=True needs a method with an error estimate (bs3, dopri5, "
            f"tsit5); method={method!r} only takes fixed steps of dt"
        )
        raise ValueError(msg)
    return "fixed" if kind == "adaptive" and not adaptive else kind


def kernel_method(method: str, kind: str) -> str:
    """Name of the compiled driver: an embedded pair stepped with a fixed dt
    runs as ``<method>_fixed``."""
    if kind == "fixed" and METHODS[method] == "adaptive":
        return f"{method}_fixed"
    return method


def as_array(name: str, value) -> np.ndarray:
    """Return np.asarray(value), naming `name` when the nested lists are ragged."""
    try:
        return np.asarray(value)
    except ValueError as error:
        msg = (
            f"{name} must be a rectangular array of numbers, got nested sequences "
            f"of different lengths ({error})"
        )
        raise ValueError(msg) from None


def check_dtype(dtype, y0) -> np.dtype:
    if dtype is None:
        kind = as_array("y0", y0).dtype
        return np.dtype(np.float32) if kind == np.float32 else np.dtype(np.float64)
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved not in DTYPES:
        msg = f"dtype must be float32 or float64, got {dtype!r}"
        raise ValueError(msg)
    return resolved


def check_y0(y0, dim: int, dtype: np.dtype) -> tuple[np.ndarray, bool]:
    """Return y0 as a C-contiguous (N, dim) array and whether it was 1-D."""
    array, single = check_state_batch(as_array("y0", y0), dim)
    return np.ascontiguousarray(array, dtype=dtype), single


def check_state_batch(array, dim: int):
    """Return `array` as a batch of states (N, dim) and whether it was 1-D.

    Works on NumPy and CuPy arrays alike, so host and device inputs get the
    same checks and messages.
    """
    if array.dtype.kind == "c":
        msg = (
            f"y0 is complex ({array.dtype}); fastode integrates real states only. "
            "Split z into real and imaginary parts, a state of twice the size"
        )
        raise TypeError(msg)
    if array.dtype.kind not in "iuf":
        msg = f"y0 must contain real numbers, got dtype {array.dtype}"
        raise TypeError(msg)
    shape = array.shape
    single = array.ndim == 1
    if single:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != dim:
        msg = (
            f"y0 has shape {shape}; this system has {dim} state components, "
            f"so y0 must have shape ({dim},) or (N, {dim})"
        )
        raise ValueError(msg)
    return array, single


def _real_scalar(name, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        msg = f"{name} must be a real number, got {value!r}"
        raise TypeError(msg)
    return float(value)


def _unwrap_scalar(value):
    """Return the number inside a 0-d or one-element array, else `value`."""
    if isinstance(value, np.ndarray) and value.size == 1:
        return value.reshape(()).item()
    return value


def check_t_span(t_span) -> tuple[float, float]:
    try:
        values = list(t_span)
    except TypeError:
        values = None
    if values is None or isinstance(t_span, str) or len(values) != 2:
        msg = f"t_span must be a pair (t0, t1), got {t_span!r}"
        raise ValueError(msg)
    t0, t1 = (_real_scalar(f"t_span[{i}]", _unwrap_scalar(v)) for i, v in enumerate(values))
    if not (np.isfinite(t0) and np.isfinite(t1)):
        msg = f"t_span must be finite, got {t_span!r}"
        raise ValueError(msg)
    return t0, t1


def check_t_eval(t_eval, t0: float, t1: float, dtype: np.dtype) -> np.ndarray | None:
    if t_eval is None:
        return None
    array = as_array("t_eval", t_eval)
    if array.dtype.kind not in "iuf":
        msg = f"t_eval must contain real numbers, got dtype {array.dtype}"
        raise TypeError(msg)
    array = array.astype(np.float64)
    if array.ndim != 1:
        msg = f"t_eval must be 1-D, got shape {array.shape}"
        raise ValueError(msg)
    if not np.all(np.isfinite(array)):
        msg = "t_eval must be finite; it contains NaN or infinity"
        raise ValueError(msg)
    low, high = min(t0, t1), max(t0, t1)
    outside = (array < low) | (array > high)
    if np.any(outside):
        msg = (
            f"t_eval must lie within t_span ({t0}, {t1}); "
            f"{float(array[outside][0])!r} is outside"
        )
        raise ValueError(msg)
    steps = np.diff(array)
    direction = "increasing" if t1 >= t0 else "decreasing"
    if (t1 >= t0 and np.any(steps < 0)) or (t1 < t0 and np.any(steps > 0)):
        msg = (
            f"t_eval must be sorted in the direction of integration ({direction} "
            f"for t_span ({t0}, {t1}))"
        )
        raise ValueError(msg)
    return np.ascontiguousarray(array, dtype=dtype)


def check_tolerances(rtol, atol, dtype: np.dtype, kind: str = "adaptive",
                     method: str = "") -> tuple[float, float]:
    """Return (rtol, atol) as floats, raising rtol to 100 machine epsilon.

    ``rtol=None`` and ``atol=None`` are the defaults, DEFAULT_RTOL (raised to
    the floor silently because the caller did not choose it) and DEFAULT_ATOL.

    Only adaptive methods use the tolerances, so only they reject a zero pair
    and warn about the floor; the other methods warn that a tolerance the
    caller passed has no effect.
    """
    if kind != "adaptive" and (rtol is not None or atol is not None):
        warn_user(
            f"rtol and atol have no effect with method={method!r}, which takes "
            "fixed steps of dt; choose dt for accuracy, or an adaptive method "
            "(bs3, dopri5, tsit5) to control the error",
            UserWarning,
        )
    floor = 100 * float(np.finfo(dtype).eps)
    if rtol is None:
        rtol = max(DEFAULT_RTOL, floor)
    if atol is None:
        atol = DEFAULT_ATOL
    rtol = _real_scalar("rtol", rtol)
    atol = _real_scalar("atol", atol)
    if not (np.isfinite(rtol) and rtol >= 0):
        msg = f"rtol must be a finite number >= 0, got {rtol!r}"
        raise ValueError(msg)
    if not (np.isfinite(atol) and atol >= 0):
        msg = f"atol must be a finite number >= 0, got {atol!r}"
        raise ValueError(msg)
    if kind != "adaptive":
        return rtol, atol
    if atol == 0 and rtol == 0:
        msg = "rtol and atol cannot both be 0; pass rtol > 0 or atol > 0"
        raise ValueError(msg)
    if rtol < floor:
        warn_user(
            f"rtol={rtol!r} is below 100 * machine epsilon of {dtype}; using {floor!r}",
            UserWarning,
        )
        rtol = floor
    return rtol, atol


def check_dt(dt, kind: str, method: str) -> float:
    """Return the step magnitude (0 when an adaptive method picks its own)."""
    if dt is None:
        if kind == "adaptive":
            return 0.0
        verb = "with adaptive=False takes" if METHODS[method] == "adaptive" else "uses"
        msg = f"method={method!r} {verb} a fixed step: pass dt > 0"
        raise ValueError(msg)
    dt = _real_scalar("dt", dt)
    if not (np.isfinite(dt) and dt > 0):
        msg = f"dt must be a finite number > 0, got {dt!r}"
        raise ValueError(msg)
    return dt


def check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        msg = f"{name} must be an integer >= 1, got {value!r}"
        raise ValueError(msg)
    return int(value)


def check_controller(controller, kind: str = "adaptive", method: str = "") -> int:
    """Return the controller's code; warn when ``"pi"`` is given to a method
    that takes fixed steps, where no controller runs."""
    key = controller.lower() if isinstance(controller, str) else controller
    if key not in CONTROLLERS:
        msg = f"controller must be 'i' or 'pi', got {controller!r}"
        raise ValueError(msg)
    if kind != "adaptive" and key == "pi":
        warn_user(
            f"controller='pi' has no effect with method={method!r}, which takes fixed "
            "steps of dt",
            UserWarning,
        )
    return CONTROLLERS[key]


def check_max_steps(max_steps) -> int:
    max_steps = check_positive_int("max_steps", max_steps)
    if max_steps > MAX_STEPS_LIMIT:
        msg = f"max_steps must be at most 2**62, got {max_steps!r}"
        raise ValueError(msg)
    return max_steps


def check_threads(threads) -> int:
    """Return threads, rejecting counts far beyond the machine's cores.

    OpenMP starts every requested thread, and tens of thousands of them
    exhaust the process's resources and can crash the interpreter.
    """
    threads = check_positive_int("threads", threads)
    limit = max(256, 8 * (os.cpu_count() or 1))
    if threads > limit:
        msg = (
            f"threads must be at most {limit} on this machine "
            f"({os.cpu_count()} cores), got {threads!r}; omit it to use every core"
        )
        raise ValueError(msg)
    return threads


@dataclass(frozen=True)
class CheckedCall:
    """The arguments of one solve call after checking, as the drivers take them."""

    y0: np.ndarray  # (N, d), C-contiguous, of `dtype`
    single: bool  # y0 was one 1-D state
    t_eval: np.ndarray | None
    t1: float
    dtype: np.dtype
    kind: str  # "fixed", "adaptive" or "symplectic"
    call: dict  # keyword arguments shared by the fastode._core.solve_* bindings

    @property
    def dense(self) -> bool:
        """Whether states are stored at t_eval rather than only at t1."""
        return self.t_eval is not None

    @property
    def t_core(self) -> np.ndarray:
        """Output times for the bindings: t_eval, or none for the final state."""
        return self.t_eval if self.dense else np.zeros(0, dtype=self.dtype)

    @property
    def t_solution(self) -> np.ndarray:
        """`Solution.t`: t_eval, or [t1] when only the final state is kept."""
        return self.t_eval if self.dense else np.array([self.t1], dtype=self.dtype)


def check_call(system, method, kind, y0, t_span, t_eval, dt, rtol, atol, max_steps, dtype,
               controller, threads) -> CheckedCall:
    """Check every argument of a CPU solve call; `method` and `kind` (from
    `check_adaptive`) are already checked.

    ``threads=None`` becomes the OpenMP default of the C++ core.
    """
    dtype = check_dtype(dtype, y0)
    y0, single = check_y0(y0, system.dim, dtype)
    t0, t1 = check_t_span(t_span)
    t_eval = check_t_eval(t_eval, t0, t1, dtype)
    rtol, atol = check_tolerances(rtol, atol, dtype, kind, method)
    if threads is None:
        from . import _core

        threads = _core.max_threads()
    call = {
        "method": kernel_method(method, kind),
        "t0": t0,
        "t1": t1,
        "dt": check_dt(dt, kind, method),
        "rtol": rtol,
        "atol": atol,
        "max_steps": check_max_steps(max_steps),
        "controller": check_controller(controller, kind, method),
        "threads": check_threads(threads),
    }
    return CheckedCall(y0, single, t_eval, t1, dtype, kind, call)
