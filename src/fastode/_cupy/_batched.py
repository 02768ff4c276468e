"""MLP fields too large for the one-thread-per-trajectory kernels (d > 8, or a
layer wider than 256 units) on the GPU.

Every stage evaluates the network for the whole batch at once, one matrix
product per layer (cuBLAS through CuPy), so each weight is read once per
stage for all trajectories instead of once per thread. Fixed steps share one
time grid. Adaptive steps give each row its own t and dt, and masks keep the
rows that are rejected, finished or failed, as the core's lanes do.

The code is written against an array namespace ``xp`` (CuPy on the GPU), so
the tests run it with NumPy and compare it with the core. It keeps the core's
semantics: the time grid, the controller, evaluation counts, dense output,
and a row that turns non-finite stops at its last finite state with status
NON_FINITE while the other rows go on.

NOTE: this path has not run on a GPU yet; its speed there is unmeasured.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .. import _controller, _core
from .._grid import fixed_step_count, fixed_step_time
from .._solution import Status
from . import _source

#: Look for rows that are all stopped once per this many steps: the check
#: waits for the GPU, so doing it every step would stall the launch queue.
ALL_STOPPED_CHECK_INTERVAL = 8


def needs_batching(system) -> bool:
    """True for a CNF (`fastode.cnf`), which has no per-thread kernel, and for
    an MLP field that the per-thread kernels cannot hold."""
    kind = type(system).__name__
    if kind == "_FlowSystem":
        return True
    if kind != "MLP":
        return False
    widest = max(system.widths[1:])
    return system.dim > _source.MAX_MLP_DIM or widest > _core.MLP_MAX_WIDTH


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
        """f at time t (a scalar, or one time per row) for every row of y."""
        x = y
        if self.time_input:
            x = self.xp.concatenate([y, self._time_column(t, y)], axis=1)
        for w, b in self.layers[:-1]:
            x = self._activate(x @ w + b)
        w, b = self.layers[-1]
        return x @ w + b

    def _time_column(self, t, y):
        """Return t as a column for each row of y. A scalar t fills it on the
        device, because CuPy's copy of a host value would wait for the GPU."""
        if isinstance(t, (int, float, np.number)):
            return self.xp.full((y.shape[0], 1), t, dtype=y.dtype)
        return self.xp.reshape(t.astype(y.dtype), (-1, 1))

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

    def _slope(self, z, a):
        """Return the activation's derivative at z, given a = activation(z)."""
        xp = self.xp
        if self.activation == "tanh":
            return 1 - a * a
        if self.activation == "relu":
            return (z > 0).astype(z.dtype)
        if self.activation == "softplus":
            return xp.exp(-xp.logaddexp(0, -z))
        if self.activation == "sigmoid":
            return a * (1 - a)
        return xp.ones_like(z)


class FlowField(NetworkField):
    """(f, -tr ∂f/∂z) of a continuous normalizing flow for a batch of
    augmented states (z, log-density change), shape (N, d + 1).

    With one hidden layer the exact trace is sum_i s_i c_i, the activation
    slopes s times `fastode.MLP.unit_trace`. Otherwise it is (scale) sum_p
    v_p^T (∂f/∂z) v_p over the probes v_p: the unit vectors for the exact
    trace, or Hutchinson's Rademacher vectors. Each product (∂f/∂z) v_p is
    carried forward through the layers with the network (forward mode), as a
    (N, P, width) tangent, so memory grows with N P times the widest layer.
    """

    def __init__(self, xp, flow, dtype):
        super().__init__(xp, flow.mlp, dtype)
        self.d = flow.mlp.dim
        self.unit_trace = None
        if flow.use_unit_trace:
            self.unit_trace = xp.asarray(flow.mlp.unit_trace().astype(dtype))
        else:
            self.probes = xp.asarray(np.asarray(flow.probes, dtype=dtype))
        self.scale = dtype.type(flow.probe_scale)

    def __call__(self, t, y):
        xp = self.xp
        z = y[:, : self.d]
        x = z
        if self.time_input:
            x = xp.concatenate([z, self._time_column(t, y)], axis=1)
        if self.unit_trace is not None:
            (w1, b1), (w2, b2) = self.layers
            pre = x @ w1 + b1
            hidden = self._activate(pre)
            trace = self._slope(pre, hidden) @ self.unit_trace
            return xp.concatenate([hidden @ w2 + b2, -trace[:, None]], axis=1)
        return self._with_probes(x, z)

    def _with_probes(self, x, z):
        xp = self.xp
        probes = xp.broadcast_to(self.probes, (z.shape[0], *self.probes.shape[-2:]))
        # Time is not a state, so only the state rows of W_1^T act on the tangent.
        tangent = probes @ self.layers[0][0][: self.d]
        for index, (w, b) in enumerate(self.layers[:-1]):
            if index > 0:
                tangent = tangent @ w
            pre = x @ w + b
            x = self._activate(pre)
            tangent = self._slope(pre, x)[:, None, :] * tangent
        w, b = self.layers[-1]
        dz = x @ w + b
        if len(self.layers) > 1:
            tangent = tangent @ w
        trace = self.scale * xp.sum(probes * tangent, axis=(1, 2))
        return xp.concatenate([dz, -trace[:, None]], axis=1)


@dataclass(frozen=True)
class Tableau:
    """The stages of an explicit Runge-Kutta method, from `fastode._core`.

    ``b_err`` and ``error_order`` are set for embedded pairs, and ``dense``
    for those with an interpolant of their own: ``dense[j, m]`` is the
    coefficient of theta^(m+1) in the weight b_j(theta) of stage j.
    """

    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    b_err: np.ndarray | None = None
    error_order: int = 0
    dense: np.ndarray | None = None

    @classmethod
    def of(cls, kernel_method: str, dtype) -> Tableau:
        table = _core.tableaus()[kernel_method]
        a, b, c = (np.asarray(table[key], dtype=dtype) for key in ("a", "b", "c"))
        if "b_err" not in table:
            return cls(a, b, c)
        dense = _dense_coefficients(kernel_method, dtype)
        return cls(a, b, c, np.asarray(table["b_err"], dtype=dtype), table["error_order"], dense)

    @property
    def stages(self) -> int:
        return len(self.b)


def _dense_coefficients(method: str, dtype) -> np.ndarray | None:
    """Polynomial coefficients of the core's dense-output weights: b_j(theta)
    has degree 4 and no constant term, so its values at four nodes fix them."""
    if method not in ("dopri5", "tsit5"):
        return None
    theta = np.array([0.25, 0.5, 0.75, 1.0])
    values = np.array(_core.dense_weights(method, theta.tolist()))
    powers = theta[:, None] ** np.arange(1, 5)
    return np.linalg.solve(powers, values).T.astype(dtype)


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
    """Evaluate the cubic Hermite interpolant at s in [0, 1] of a step of size h."""
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

    def stop(self, xp, failed, step: int, evals: int, ta, outputs_before: int) -> None:
        """Stop the rows in `failed`, which went non-finite in step `step`.

        Each update is an xp.where: a boolean-mask assignment would make CuPy
        copy the count of True elements to the host, which waits for the GPU.
        """
        self.status = xp.where(failed, np.int8(Status.NON_FINITE), self.status)
        self.n_steps = xp.where(failed, step + 1, self.n_steps)
        self.n_accepted = xp.where(failed, step, self.n_accepted)
        self.n_rhs = xp.where(failed, evals, self.n_rhs)
        self.t_final = xp.where(failed, ta, self.t_final)
        self.written = xp.where(failed, outputs_before, self.written)


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

        outputs_before = next_out
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
        rows.stop(xp, rows.active & ~finite, steps, evals, ta, outputs_before)
        rows.active &= finite
        rows.written = xp.where(rows.active, next_out, rows.written)
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
    return {
        "y": _close_outputs(xp, y, y_out, rows.written, len(times)),
        "t_final": rows.t_final,
        "status": rows.status,
        "n_steps": rows.n_steps,
        "n_accepted": rows.n_accepted,
        "n_rejected": xp.zeros_like(rows.n_steps),
        "n_rhs": rows.n_rhs,
    }


# --- adaptive steps ------------------------------------------------------------------


def embedded_step(field, tableau: Tableau, t, h, y, k0, rtol, atol):
    """Take one step of an embedded pair for every row, each with its own t and h,
    given k0 = f(t, y).

    Returns y1, every stage k (k[-1] = f(t + h, y1), as the pairs are FSAL)
    and the RMS error norm of each row, NaN for a row whose y1 is not finite.
    """
    xp = field.xp
    column = xp.reshape(h, (-1, 1))
    k = [None] * tableau.stages
    k[0] = k0
    for s in range(1, tableau.stages):
        ys = y + column * _weighted(tableau.a[s, :s], k[:s])
        k[s] = field(t + tableau.c[s] * h, ys)
    y1 = y + column * _weighted(tableau.b, k)
    scale = atol + rtol * xp.maximum(xp.abs(y), xp.abs(y1))
    ratio = column * _weighted(tableau.b_err, k) / scale
    # y1 - y1 is NaN where y1 is not finite, so such a step is never accepted.
    norm = xp.sqrt(xp.mean(ratio * ratio + (y1 - y1), axis=1))
    return y1, k, norm


def initial_step(field, tableau: Tableau, y, f0, problem):
    """Hairer, Norsett and Wanner's first step guess (Solving ODEs I, II.4)
    for every row, at most the span; costs one evaluation of f."""
    xp = field.xp
    t0, t1, rtol, atol = problem["t0"], problem["t1"], problem["rtol"], problem["atol"]
    direction, span = (1.0 if t1 >= t0 else -1.0), abs(t1 - t0)
    scale = atol + rtol * xp.abs(y)

    def rms(values):
        return xp.sqrt(xp.mean(values * values, axis=1))

    # The core's min and max return their second argument when either is
    # NaN, so a guess that overflows to NaN becomes the span there, and here.
    def core_min(a, b):
        return xp.where(a < b, a, b)

    d0, d1 = rms(y / scale), rms(f0 / scale)
    h0 = xp.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / d1).astype(y.dtype)
    h0 = core_min(h0, span)
    f1 = field(t0 + direction * h0, y + xp.reshape(direction * h0, (-1, 1)) * f0)
    d2 = rms((f1 - f0) / scale) / h0
    d12 = xp.where(d1 > d2, d1, d2)
    exponent = 1.0 / (tableau.error_order + 1)
    h1 = xp.where(d12 <= 1e-15, xp.maximum(1e-6, h0 * 1e-3), (0.01 / d12) ** exponent)
    return (direction * core_min(core_min(100 * h0, h1), span)).astype(y.dtype)


@dataclass
class _Lanes:
    """Per-row state of an adaptive run, as device arrays."""

    active: object
    status: object
    t: object
    dt: object
    err_prev: object
    rejected_last: object
    n_steps: object
    n_accepted: object
    n_rejected: object
    n_rhs: object
    written: object


def integrate_adaptive(xp, field, tableau: Tableau, y0, t_eval, problem) -> dict:
    """Integrate every row of y0 with its own step size; return the core's
    output dict. ``problem`` contains t0, t1, dt (0 picks the first step), rtol,
    atol, max_steps and controller."""
    dtype = y0.dtype
    real = dtype.type
    t0, t1 = real(problem["t0"]), real(problem["t1"])
    times = np.array([] if t_eval is None else t_eval, dtype=dtype)
    y = y0.copy()
    y_out = xp.full((y.shape[0], max(len(times), 1), y.shape[1]), np.nan, dtype=dtype)
    lanes = _start_lanes(xp, y, t0, t1)
    at_start = int(np.sum(times == t0))
    y_out[:, :at_start] = y[:, None, :]
    lanes.written[:] = at_start

    with np.errstate(all="ignore"):
        if bool(lanes.active.any()):
            k0 = _first_derivative(xp, field, lanes, y)
            lanes.dt = _first_dt(xp, field, tableau, y, k0, lanes, problem)
            outputs = (_output_times(xp, times, t0, t1), len(times), y_out)
            _run_steps(xp, field, tableau, y, k0, lanes, problem, outputs)
    return _finish_adaptive(xp, lanes, y, y_out, len(times))


def _start_lanes(xp, y, t0, t1) -> _Lanes:
    n_rows, dtype = y.shape[0], y.dtype
    finite = xp.all(xp.isfinite(y), axis=1)
    counters = [xp.zeros(n_rows, dtype=np.int64) for _ in range(5)]
    return _Lanes(
        active=finite & (t1 != t0),
        status=xp.where(finite, int(Status.SUCCESS), int(Status.NON_FINITE)).astype(np.int8),
        t=xp.full(n_rows, t0, dtype=dtype),
        dt=xp.zeros(n_rows, dtype=dtype),
        err_prev=xp.full(n_rows, _controller.ERR_PREV_MIN, dtype=dtype),
        rejected_last=xp.zeros(n_rows, dtype=bool),
        n_steps=counters[0], n_accepted=counters[1], n_rejected=counters[2],
        n_rhs=counters[3], written=counters[4],
    )


def _first_derivative(xp, field, lanes: _Lanes, y):
    """f(t0, y); a row whose derivative is not finite fails before its first
    step, because a smaller step cannot help it."""
    k0 = field(lanes.t, y)
    lanes.n_rhs += lanes.active
    bad = lanes.active & ~xp.all(xp.isfinite(k0), axis=1)
    lanes.status[bad] = int(Status.NON_FINITE)
    lanes.active &= ~bad
    return k0


def _first_dt(xp, field, tableau, y, k0, lanes: _Lanes, problem):
    t0, t1, dt = problem["t0"], problem["t1"], problem["dt"]
    direction, span = (1.0 if t1 >= t0 else -1.0), abs(t1 - t0)
    if dt > 0:
        return xp.full(y.shape[0], direction * min(dt, span), dtype=y.dtype)
    lanes.n_rhs += lanes.active
    return initial_step(field, tableau, y, k0, problem)


def _run_steps(xp, field, tableau, y, k0, lanes: _Lanes, problem, outputs) -> None:
    """Attempt steps until every row has finished or failed; y is updated in place."""
    t1, max_steps = y.dtype.type(problem["t1"]), problem["max_steps"]
    forward = t1 >= y.dtype.type(problem["t0"])
    direction = 1 if forward else -1
    while bool(lanes.active.any()):
        past = direction * (lanes.t + lanes.dt - t1) >= 0
        dt_try = xp.where(past, t1 - lanes.t, lanes.dt)
        y1, k, norm = embedded_step(field, tableau, lanes.t, dt_try, y, k0, problem["rtol"],
                                    problem["atol"])
        lanes.n_rhs += lanes.active * (tableau.stages - 1)

        ok = norm <= 1
        t_new = xp.where(past, t1, lanes.t + dt_try)
        factor = _controller.step_factor(xp, norm, tableau.error_order, problem["controller"],
                                         lanes.err_prev, lanes.rejected_last)
        factor = xp.where(ok, factor, xp.minimum(factor, 1))
        accepted, rejected = lanes.active & ok, lanes.active & ~ok
        finished = accepted & past

        _write_outputs(xp, tableau, lanes, accepted, t_new, (y, k0, y1, k), outputs, forward)
        y[...] = xp.where(accepted[:, None], y1, y)
        k0[...] = xp.where(accepted[:, None], k[-1], k0)

        lanes.n_steps += lanes.active
        lanes.n_accepted += accepted
        lanes.n_rejected += rejected
        lanes.t = xp.where(accepted, t_new, lanes.t)
        lanes.dt = xp.where(lanes.active & ~finished, dt_try * factor, lanes.dt)
        lanes.err_prev = xp.where(accepted, xp.maximum(norm, _controller.ERR_PREV_MIN),
                                  lanes.err_prev)
        lanes.rejected_last = xp.where(lanes.active, rejected, lanes.rejected_last)
        _stop_lanes(xp, lanes, finished, norm, max_steps)


def _stop_lanes(xp, lanes: _Lanes, finished, norm, max_steps) -> None:
    """End the rows that reached t1, whose step underflowed or that used up
    max_steps, in that order of precedence, as the core does."""
    lanes.active &= ~finished
    too_small = lanes.active & ~(xp.abs(lanes.dt) >= _controller.min_step(xp, lanes.t))
    # xp.where, because a boolean-mask assignment makes CuPy wait for the GPU.
    reason = xp.where(xp.isnan(norm), np.int8(Status.NON_FINITE), np.int8(Status.STEP_TOO_SMALL))
    lanes.status = xp.where(too_small, reason, lanes.status)
    lanes.active &= ~too_small
    out_of_steps = lanes.active & (lanes.n_steps >= max_steps)
    lanes.status = xp.where(out_of_steps, np.int8(Status.MAX_STEPS), lanes.status)
    lanes.active &= ~out_of_steps


def _write_outputs(xp, tableau, lanes: _Lanes, accepted, t_new, step, outputs, forward):
    """Store every output time that an accepted step passed, for each row:
    the pair's own interpolant (dopri5, tsit5) or the cubic Hermite one."""
    times_dev, n_times, y_out = outputs
    if not n_times:
        return
    y, k0, y1, k = step
    while True:
        t_out = times_dev[lanes.written]
        due = accepted & ((t_out <= t_new) if forward else (t_out >= t_new))
        if not bool(due.any()):
            return
        rows = xp.nonzero(due)[0]
        ta, tb, tj = lanes.t[rows], t_new[rows], t_out[rows]
        h = xp.reshape(tb - ta, (-1, 1))
        theta = xp.reshape((tj - ta) / (tb - ta), (-1, 1))
        if tableau.dense is not None:
            weights = [theta * _horner(theta, c) for c in tableau.dense]
            value = y[rows] + h * sum(w * kj[rows] for w, kj in zip(weights, k))
        else:
            value = _hermite(theta, h, y[rows], k0[rows], y1[rows], k[-1][rows])
        value = xp.where(xp.reshape(tj == tb, (-1, 1)), y1[rows], value)
        y_out[rows, lanes.written[rows]] = value
        lanes.written[rows] += 1


def _output_times(xp, times, t0, t1):
    """Return the output times on the device followed by one time past t1,
    which means "no output left" as in the core's next_output_time: indexing
    by the count written needs no branch, and no step reaches that time."""
    real = times.dtype.type
    beyond = t1 + (1 if t1 >= t0 else -1) * (1 + abs(t1 - t0))
    return xp.asarray(np.append(times, real(beyond)).astype(times.dtype))


def _horner(theta, coefficients):
    """c_0 + theta (c_1 + theta (c_2 + theta c_3))."""
    total = coefficients[-1]
    for c in coefficients[-2::-1]:
        total = c + theta * total
    return total


def _close_outputs(xp, y, y_out, written, n_times):
    """Put NaN at the output times each row did not reach, or the final state
    in the one column kept without output times."""
    if n_times:
        unreached = xp.arange(n_times)[None, :] >= written[:, None]
        y_out[unreached] = np.nan
    else:
        y_out[:, 0] = y
    return y_out


def _finish_adaptive(xp, lanes: _Lanes, y, y_out, n_times) -> dict:
    return {
        "y": _close_outputs(xp, y, y_out, lanes.written, n_times),
        "t_final": lanes.t,
        "status": lanes.status,
        "n_steps": lanes.n_steps,
        "n_accepted": lanes.n_accepted,
        "n_rejected": lanes.n_rejected,
        "n_rhs": lanes.n_rhs,
    }


@dataclass(frozen=True)
class BatchedJob:
    """A wide-MLP run, sliceable by rows for `fastode._chunks.run`."""

    xp: object
    system: object  # an MLP, or the flow system of fastode.cnf
    y0: object  # host or device rows
    t_eval: np.ndarray | None
    call: dict  # kind, kernel method, t0, t1, dt, rtol, atol, max_steps, controller

    @property
    def n(self) -> int:
        return self.y0.shape[0]

    @property
    def probes(self):
        """Hutchinson probes of a CNF, one (P, d) block per row; None otherwise."""
        return getattr(self.system, "probes", None)

    def rows(self, start: int, stop: int) -> BatchedJob:
        system = self.system
        probes = self.probes
        if probes is not None and probes.ndim == 3 and probes.shape[0] == self.n:
            system = _FlowRows(system, probes[start:stop])
        return replace(self, y0=self.y0[start:stop], system=system)

    def run(self) -> dict:
        """Integrate this chunk on the device and copy the results to the host."""
        out = self.launch(self.xp.asarray(self.y0))
        return {name: self.xp.asnumpy(value) for name, value in out.items()}

    def launch(self, y0_device) -> dict:
        call = self.call
        if type(self.system).__name__ in ("_FlowSystem", "_FlowRows"):
            field = FlowField(self.xp, self.system, y0_device.dtype)
        else:
            field = NetworkField(self.xp, self.system, y0_device.dtype)
        tableau = Tableau.of(call["method"], y0_device.dtype)
        if call["kind"] == "adaptive":
            return integrate_adaptive(self.xp, field, tableau, y0_device, self.t_eval, call)
        return integrate_fixed(self.xp, field, tableau, y0_device, self.t_eval, call["t0"],
                               call["t1"], call["dt"], call["max_steps"])


def device_rows(free_bytes: int, job: BatchedJob) -> int:
    """Rows of `job` whose working arrays fit in half of `free_bytes`.

    Per row: the stages and state copies of the step, the outputs, and a few
    activations of the widest layer, times the tangents a CNF carries. NOTE:
    an estimate from the arrays the code allocates, not measured on a GPU.
    """
    system = job.system
    mlp = getattr(system, "mlp", system)
    dim, widest = system.dim, max(mlp.widths)
    tangents = 0
    if hasattr(system, "probes") and not system.use_unit_trace:
        tangents = np.shape(system.probes)[-2]
    n_out = 1 if job.t_eval is None else len(job.t_eval)
    values = 16 * dim + n_out * dim + 4 * widest * (1 + tangents)
    return max(1, int(free_bytes // 2 // (values * job.y0.dtype.itemsize)))


@dataclass(frozen=True)
class _FlowRows:
    """A CNF system restricted to a chunk of rows: its per-row probes sliced."""

    flow: object
    probes: np.ndarray

    def __getattr__(self, name):
        return getattr(self.flow, name)
