"""MLP fields too large for the one-thread-per-trajectory kernels (d > 8, or a
layer wider than 256 units) on the GPU, with fixed steps.

Every stage evaluates the network for the whole batch at once, one matrix
product per layer (cuBLAS through CuPy), so each weight is read once per
stage for all trajectories instead of once per thread. All trajectories share
the time grid of a fixed-step run, which is what makes this batching exact;
adaptive steps would need a step size per row and are left to the C++ core.

The code is written against an array namespace ``xp`` (CuPy on the GPU), so
the tests run it with NumPy and compare it with the core. It keeps the core's
fixed-step semantics: the same time grid, evaluation counts, cubic Hermite
dense output, and a row that turns non-finite stops at its last finite state
with status NON_FINITE while the other rows go on.

NOTE: this path has not run on a GPU yet; its speed there is unmeasured.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .. import _core
from .._grid import fixed_step_count, fixed_step_time
from .._solution import Status
from . import _source

#: Look for rows that are all stopped once per this many steps: the check
#: waits for the GPU, so doing it every step would stall the launch queue.
ALL_STOPPED_CHECK_INTERVAL = 8


def needs_batching(system) -> bool:
    """True for an MLP field that the per-thread kernels cannot hold."""
    if type(system).__name__ != "MLP":
        return False
    widest = max(system.widths[1:])
    return system.dim > _source.MAX_MLP_DIM or widest > _core.MLP_MAX_WIDTH


def check_method(kind: str, method: str, system) -> None:
    """Refuse adaptive steps, which this path does not take."""
    if kind == "fixed":
        return
    msg = (
        f"backend='cupy' runs an MLP with d = {system.dim} and widths {system.widths} "
        f"with fixed steps only, got method={method!r} with adaptive steps; pass "
        "adaptive=False and dt, a fixed-step method such as rk4, or backend='cpp'"
    )
    raise ValueError(msg)


class NetworkField:
    """f(t, Y) of an MLP for a batch Y of shape (N, d), in the dtype of Y."""

    def __init__(self, xp, mlp, dtype):
        weights, biases = mlp._current_layers()
        # W^T is stored contiguous, so each layer is one (N, n_in) @ (n_in, n_out).
        self.layers = [
            (xp.asarray(np.ascontiguousarray(w.T, dtype=dtype)), xp.asarray(b.astype(dtype)))
            for w, b in zip(weights, biases, strict=True)
        ]
        self.xp = xp
        self.activation = mlp.activation
        self.time_input = mlp.time_input

    def __call__(self, t, y):
        x = y
        if self.time_input:
            column = self.xp.full((y.shape[0], 1), t, dtype=y.dtype)
            x = self.xp.concatenate([y, column], axis=1)
        for w, b in self.layers[:-1]:
            x = self._activate(x @ w + b)
        w, b = self.layers[-1]
        return x @ w + b

    def _activate(self, z):
        xp = self.xp
        if self.activation == "tanh":
            return xp.tanh(z)
        if self.activation == "relu":
            return xp.maximum(z, 0)
        if self.activation == "softplus":
            return xp.logaddexp(0, z)
        if self.activation == "sigmoid":
            return xp.exp(-xp.logaddexp(0, -z))
        return z


@dataclass(frozen=True)
class Tableau:
    """The stages of an explicit Runge-Kutta method, from `fastode._core`."""

    a: np.ndarray
    b: np.ndarray
    c: np.ndarray

    @classmethod
    def of(cls, kernel_method: str, dtype) -> Tableau:
        table = _core.tableaus()[kernel_method]
        return cls(*(np.asarray(table[key], dtype=dtype) for key in ("a", "b", "c")))

    @property
    def stages(self) -> int:
        return len(self.b)


def rk_step(field, tableau: Tableau, t, h, y):
    """One explicit Runge-Kutta step of every row: return y + h sum_j b_j k_j
    and k_0 = f(t, y), which the dense output reuses."""
    k = [field(t, y)]
    for s in range(1, tableau.stages):
        ys = y + h * _weighted(tableau.a[s, :s], k)
        k.append(field(t + tableau.c[s] * h, ys))
    return y + h * _weighted(tableau.b, k), k[0]


def _weighted(weights, k):
    """sum_j w_j k_j over the nonzero weights, in the core's order."""
    total = None
    for w, kj in zip(weights, k):
        if w != 0:
            total = w * kj if total is None else total + w * kj
    return total


def _hermite(s, h, ya, fa, yb, fb):
    """The cubic Hermite interpolant at s in [0, 1] of a step of size h."""
    s1 = 1 - s
    weights = ((1 + 2 * s) * s1 * s1, s * s1 * s1 * h, s * s * (3 - 2 * s), -s * s * s1 * h)
    return weights[0] * ya + weights[1] * fa + weights[2] * yb + weights[3] * fb


@dataclass
class _Rows:
    """Per-row bookkeeping of a fixed-step run, as device arrays."""

    active: object
    status: object
    n_steps: object
    n_accepted: object
    n_rhs: object
    t_final: object
    written: object  # outputs each row keeps; later ones become NaN

    def stop(self, failed, step: int, evals: int, ta, kept: int) -> None:
        """Stop the rows in `failed`, which went non-finite in step `step`."""
        self.status[failed] = int(Status.NON_FINITE)
        self.n_steps[failed] = step + 1
        self.n_accepted[failed] = step
        self.n_rhs[failed] = evals
        self.t_final[failed] = ta
        self.written[failed] = kept


def integrate_fixed(xp, field, tableau: Tableau, y0, t_eval, t0, t1, dt, max_steps) -> dict:
    """Integrate every row of y0 with fixed steps; return the core's output dict.

    ``t_eval`` is a host array of output times, or None for the final state.
    """
    dtype = y0.dtype
    n_rows, dim = y0.shape
    n = fixed_step_count(t0, t1, dt, dtype)
    forward = t1 >= t0
    times = [] if t_eval is None else [dtype.type(t) for t in t_eval]
    y_out = xp.full((n_rows, max(len(times), 1), dim), np.nan, dtype=dtype)

    y = y0.copy()
    active = xp.all(xp.isfinite(y), axis=1)
    rows = _Rows(
        active=active,
        status=xp.where(active, int(Status.SUCCESS), int(Status.NON_FINITE)).astype(np.int8),
        n_steps=xp.zeros(n_rows, dtype=np.int64),
        n_accepted=xp.zeros(n_rows, dtype=np.int64),
        n_rhs=xp.zeros(n_rows, dtype=np.int64),
        t_final=xp.full(n_rows, t0, dtype=dtype),
        written=xp.zeros(n_rows, dtype=np.int64),
    )
    next_out = 0
    while next_out < len(times) and times[next_out] == dtype.type(t0):
        y_out[:, next_out] = y
        next_out += 1
    rows.written[:] = next_out

    def reached(j, tb):
        return j < len(times) and (times[j] <= tb if forward else times[j] >= tb)

    steps, evals = 0, 0
    while steps < min(n, max_steps):
        ta = fixed_step_time(t0, t1, dt, steps, n, dtype)
        tb = fixed_step_time(t0, t1, dt, steps + 1, n, dtype)
        y1, fa = rk_step(field, tableau, ta, tb - ta, y)
        evals += tableau.stages

        kept = next_out
        if reached(next_out, tb):
            # f(ta, y) is the first stage, so as in the core's run-time
            # dimension driver only f(tb, y1) costs an evaluation.
            fb = field(tb, y1)
            evals += 1
            while reached(next_out, tb):
                s = (times[next_out] - ta) / (tb - ta)
                at_end = times[next_out] == tb
                y_out[:, next_out] = y1 if at_end else _hermite(s, tb - ta, y, fa, y1, fb)
                next_out += 1

        finite = xp.all(xp.isfinite(y1), axis=1)
        rows.stop(rows.active & ~finite, steps, evals, ta, kept)
        rows.active &= finite
        rows.written[rows.active] = next_out
        y = xp.where(rows.active[:, None], y1, y)
        steps += 1
        if steps % ALL_STOPPED_CHECK_INTERVAL == 0 and not bool(rows.active.any()):
            break

    return _finish(xp, rows, y, y_out, times, steps, evals, n, (t0, t1, dt))


def _finish(xp, rows: _Rows, y, y_out, times, steps, evals, n, grid) -> dict:
    """Counters of the rows still running, and NaN at the outputs not reached."""
    t0, t1, dt = grid
    running = rows.active
    rows.n_steps[running] = steps
    rows.n_accepted[running] = steps
    rows.n_rhs[running] = evals
    rows.t_final[running] = fixed_step_time(t0, t1, dt, steps, n, y.dtype)
    if steps < n:
        rows.status[running] = int(Status.MAX_STEPS)
    if times:
        unreached = xp.arange(len(times))[None, :] >= rows.written[:, None]
        y_out[unreached] = np.nan
    else:
        y_out[:, 0] = y
    return {
        "y": y_out,
        "t_final": rows.t_final,
        "status": rows.status,
        "n_steps": rows.n_steps,
        "n_accepted": rows.n_accepted,
        "n_rejected": xp.zeros_like(rows.n_steps),
        "n_rhs": rows.n_rhs,
    }


@dataclass(frozen=True)
class BatchedJob:
    """A wide-MLP run, sliceable by rows for `fastode._chunks.run`."""

    xp: object
    mlp: object
    y0: object  # host or device rows
    t_eval: np.ndarray | None
    call: dict  # kernel method, t0, t1, dt, max_steps

    @property
    def n(self) -> int:
        return self.y0.shape[0]

    def rows(self, start: int, stop: int) -> BatchedJob:
        return replace(self, y0=self.y0[start:stop])

    def run(self) -> dict:
        """Integrate this chunk on the device and copy the results to the host."""
        out = self.launch(self.xp.asarray(self.y0))
        return {name: self.xp.asnumpy(value) for name, value in out.items()}

    def launch(self, y0_device) -> dict:
        call = self.call
        field = NetworkField(self.xp, self.mlp, y0_device.dtype)
        tableau = Tableau.of(call["method"], y0_device.dtype)
        return integrate_fixed(self.xp, field, tableau, y0_device, self.t_eval, call["t0"],
                               call["t1"], call["dt"], call["max_steps"])
