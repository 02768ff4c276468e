"""Integration loops for user right-hand sides, written once for Numba's CPU
and CUDA targets.

The `build_*` functions turn a compiled right-hand side and a method's
coefficients into device-agnostic functions. These use only scalar
arithmetic, the `math` module and indexing of arrays passed in, so the same
source compiles under `numba.njit` and under `numba.cuda.jit(device=True)`.
The callers allocate the scratch arrays (NumPy on the CPU,
`cuda.local.array` on the GPU).

The semantics follow the C++ drivers in ``cpp/include/fastode/integrate.hpp``
line for line: the same step grid, error norm, controller, initial step
guess, cubic Hermite dense output, statuses and statistics. The CUDA kernels
use the drivers here with one trajectory per thread. The CPU kernels use the
lane-block drivers of `_blocks`, which share the helpers built here.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .. import _core

# The controller constants of cpp/include/fastode/controller.hpp.
from .._controller import CONTROLLER_PI, ERR_PREV_MIN, FACTOR_MAX, FACTOR_MIN, SAFETY

# Status codes, as in `fastode.Status`.
SUCCESS = 0
MAX_STEPS = 1
STEP_TOO_SMALL = 2
NON_FINITE = 3



def numba_real(dtype):
    """Return the Numba scalar type of a NumPy float dtype."""
    return numba.float32 if np.dtype(dtype) == np.float32 else numba.float64


def method_tableau(method):
    """Return the coefficients of a Runge-Kutta method from `fastode._core`,
    with ``dense`` added where the core has an interpolant of its own.

    ``dense[j, m]`` is the coefficient of theta^(m+1) in the weight b_j(theta)
    of stage j. The core evaluates b_j(theta), a polynomial of degree 4 with
    no constant term, so its coefficients follow exactly (up to round-off)
    from the values at four nodes.
    """
    tableau = dict(_core.tableaus()[method])
    if method in ("dopri5", "tsit5") and hasattr(_core, "dense_weights"):
        theta = np.array([0.25, 0.5, 0.75, 1.0])
        values = np.array(_core.dense_weights(method, theta.tolist()))
        powers = theta[:, None] ** np.arange(1, 5)
        tableau["dense"] = np.linalg.solve(powers, values).T
    return tableau


def build_common(jit, dtype):
    """Compile the helpers every method uses: min/max with C++ NaN semantics,
    finiteness checks and dense output."""
    real = numba_real(dtype)
    zero, one, two, three = real(0), real(1), real(2), real(3)

    # C++ `a < b ? a : b`, which differs from Python's min when a is NaN.
    @jit
    def cmin(a, b):
        return a if a < b else b

    @jit
    def cmax(a, b):
        return a if a > b else b

    @jit
    def row_is_finite(y):
        for i in range(y.shape[0]):
            if not math.isfinite(y[i]):
                return False
        return True

    @jit
    def reached(t_out, t, direction):
        return direction * (t_out - t) <= zero

    @jit
    def write_outputs(t_eval, y_out, n, j, ta, tb, ya, fa, yb, fb, direction):
        """Store the cubic Hermite interpolant on [ta, tb] at every pending
        output time up to tb; return the index of the next output time."""
        h = tb - ta
        dim = ya.shape[0]
        while j < t_eval.shape[0] and reached(t_eval[j], tb, direction):
            if t_eval[j] == tb:
                for i in range(dim):
                    y_out[n, j, i] = yb[i]
            else:
                s = (t_eval[j] - ta) / h
                s1 = one - s
                h00 = (one + two * s) * s1 * s1
                h10 = s * s1 * s1 * h
                h01 = s * s * (three - two * s)
                h11 = -s * s * s1 * h
                for i in range(dim):
                    y_out[n, j, i] = h00 * ya[i] + h10 * fa[i] + h01 * yb[i] + h11 * fb[i]
            j += 1
        return j

    @jit
    def write_initial_outputs(t_eval, y_out, n, t0, y):
        j = 0
        while j < t_eval.shape[0] and t_eval[j] == t0:
            for i in range(y.shape[0]):
                y_out[n, j, i] = y[i]
            j += 1
        return j

    @jit
    def finish(t_eval, y_out, n, y, written):
        """Store the final state when only it is kept, else NaN at the output
        times this trajectory never reached."""
        if t_eval.shape[0] == 0:
            for i in range(y.shape[0]):
                y_out[n, 0, i] = y[i]
            return
        for j in range(written, t_eval.shape[0]):
            for i in range(y.shape[0]):
                y_out[n, j, i] = math.nan

    return cmin, cmax, row_is_finite, reached, write_outputs, write_initial_outputs, finish


def build_rk_step(jit, rhs, tableau, dtype, n_lanes, dim):
    """Compile one explicit Runge-Kutta step of a block of `n_lanes` lanes
    that share t and dt; k[0] ends as f(t, y) and y1 as the new state.

    The lane count and dimension are compile-time constants, so LLVM can
    unroll the loops over components.
    """
    a = np.asarray(tableau["a"], dtype=dtype)
    b = np.asarray(tableau["b"], dtype=dtype)
    c = np.asarray(tableau["c"], dtype=dtype)
    stages = len(b)
    zero = numba_real(dtype)(0)

    @jit
    def rk_step(t, dt, y, y1, k, params, rows):
        for lane in range(n_lanes):
            rhs(t, y[lane], k[0, lane], params[rows[lane]])
        for s in range(1, stages):
            for lane in range(n_lanes):
                for i in range(dim):
                    acc = zero
                    for j in range(s):
                        acc += a[s, j] * k[j, lane, i]
                    y1[lane, i] = y[lane, i] + dt * acc
            ts = t + c[s] * dt
            for lane in range(n_lanes):
                rhs(ts, y1[lane], k[s, lane], params[rows[lane]])
        for lane in range(n_lanes):
            for i in range(dim):
                acc = zero
                for j in range(stages):
                    acc += b[j] * k[j, lane, i]
                y1[lane, i] = y[lane, i] + dt * acc

    return rk_step, stages


def symplectic_coefficients(method, weights):
    """Return the kick and drift fractions of dt, in the order kick, drift,
    kick, ..., kick, and the number of gradient evaluations per step.

    Adjacent half kicks of the leapfrog composition act at the same q, so
    they merge: kick w0/2, then for each weight w_i a drift w_i followed by a
    kick (w_i + w_{i+1}) / 2, with w_M = 0. Symplectic Euler is one full kick
    and one full drift.
    """
    if method == "symplectic_euler":
        return [1.0], [1.0], 1
    w = list(weights[method][0])
    kicks = [0.5 * w[0]]
    for i, wi in enumerate(w):
        following = w[i + 1] if i + 1 < len(w) else 0.0
        kicks.append(0.5 * (wi + following))
    return kicks, w, len(w) + 1


def build_symplectic_step(jit, dV_dq, dT_dp, dof, method, weights, dtype):
    """Compile one step of a symplectic method for H = T(p) + V(q) on a block
    of lanes: y1 = y advanced by dt. Scratch k[0] receives the gradients."""
    kicks_list, drifts_list, evals = symplectic_coefficients(method, weights)
    kicks = np.asarray(kicks_list, dtype=dtype)
    drifts = np.asarray(drifts_list, dtype=dtype)
    n_drifts = len(drifts_list)

    @jit
    def kick(y1, g, params, rows, h):
        # p -= h dV/dq(q)
        for lane in range(y1.shape[0]):
            dV_dq(y1[lane, :dof], g[lane, :dof], params[rows[lane]])
            for i in range(dof):
                y1[lane, dof + i] -= h * g[lane, i]

    @jit
    def drift(y1, g, params, rows, h):
        # q += h dT/dp(p)
        for lane in range(y1.shape[0]):
            dT_dp(y1[lane, dof:], g[lane, :dof], params[rows[lane]])
            for i in range(dof):
                y1[lane, i] += h * g[lane, i]

    @jit
    def symplectic_step(t, dt, y, y1, k, params, rows):
        for lane in range(y.shape[0]):
            for i in range(y.shape[1]):
                y1[lane, i] = y[lane, i]
        kick(y1, k[0], params, rows, kicks[0] * dt)
        for m in range(n_drifts):
            drift(y1, k[0], params, rows, drifts[m] * dt)
            if m + 1 < kicks.shape[0]:
                kick(y1, k[0], params, rows, kicks[m + 1] * dt)

    return symplectic_step, evals


def build_grid_time(jit, dtype):
    """Compile ``grid_time``: the time of grid point `step_index` of a
    fixed-step run, t0 + k |dt| in the run's dtype, and exactly t1 at the
    last point, as the core's ``fixed_step_time``."""
    real = numba_real(dtype)

    @jit
    def grid_time(t0, t1, dt, direction, step_index, n_grid):
        if step_index >= n_grid:
            return t1
        return t0 + direction * real(step_index) * abs(dt)

    return grid_time


def build_store_fixed_result(jit):
    """Compile ``store_fixed_result``, which stores the status, end time and
    counts of trajectory n after a fixed-step run."""

    @jit
    def store_fixed_result(n, code, t, steps, evals, status, t_final, n_steps, n_accepted,
                           n_rhs):
        status[n] = code
        t_final[n] = t
        n_steps[n] = steps
        # The failing step of a NON_FINITE lane was attempted, not accepted;
        # a lane that starts non-finite takes no step.
        failed_step = code == NON_FINITE and steps > 0
        n_accepted[n] = steps - 1 if failed_step else steps
        n_rhs[n] = evals

    return store_fixed_result


def build_fixed_block(jit, step, evals, rhs, common, dtype):
    """Compile the driver that advances lanes first .. first + count - 1 with
    a fixed step on the grid t0 + k dt, the last step ending at t1.

    Padding lanes (count < W) repeat the last real trajectory, so they never
    change a real lane's result. Lanes share the grid and stay in lock step.
    A lane whose new state is not finite stops at its last finite state, as
    in the core: its t, state and statistics freeze at the start of the
    failing step, which counts as attempted but not accepted, and its
    outputs from that step on are NaN.
    """
    row_is_finite, reached, write_outputs, write_initial_outputs, finish = common[2:]
    one = numba_real(dtype)(1)
    grid_time = build_grid_time(jit, dtype)
    store_fixed_result = build_store_fixed_result(jit)

    @jit
    def fixed_block(first, count, y0, params, pstride, t_eval, t0, t1, dt, n_grid,
                    max_steps, y_out, t_final, status, n_steps, n_accepted, n_rhs,
                    y, y1, k, fa, fb, rows, lane_t, lane_status, lane_steps,
                    lane_rhs, lane_written):
        n_lanes, dim = y.shape
        n_eval = t_eval.shape[0]
        direction = one if t1 >= t0 else -one
        for lane in range(n_lanes):
            source = first + (lane if lane < count else count - 1)
            rows[lane] = source * pstride
            for i in range(dim):
                y[lane, i] = y0[source, i]
            lane_t[lane] = t0
            lane_steps[lane] = 0
            lane_rhs[lane] = 0
            lane_status[lane] = SUCCESS if row_is_finite(y[lane]) else NON_FINITE
            lane_written[lane] = write_initial_outputs(t_eval, y_out, first + lane, t0,
                                                       y[lane]) if lane < count else 0

        # Every lane shares the grid, so one index tracks the next output time.
        next_out = lane_written[0]
        for step_index in range(n_grid):
            any_active = False
            for lane in range(n_lanes):
                any_active = any_active or lane_status[lane] == SUCCESS
            if not any_active:
                break
            if step_index >= max_steps:
                for lane in range(n_lanes):
                    if lane_status[lane] == SUCCESS:
                        lane_status[lane] = MAX_STEPS
                break

            ta = grid_time(t0, t1, dt, direction, step_index, n_grid)
            tb = grid_time(t0, t1, dt, direction, step_index + 1, n_grid)
            step(ta, tb - ta, y, y1, k, params, rows)
            for lane in range(n_lanes):
                if lane_status[lane] == SUCCESS:
                    lane_rhs[lane] += evals

            # Dense output needs f at both ends of the step.
            out_before = next_out
            if next_out < n_eval and reached(t_eval[next_out], tb, direction):
                for lane in range(n_lanes):
                    rhs(ta, y[lane], fa[lane], params[rows[lane]])
                    rhs(tb, y1[lane], fb[lane], params[rows[lane]])
                    if lane_status[lane] == SUCCESS:
                        lane_rhs[lane] += 2
                        if lane < count:
                            lane_written[lane] = write_outputs(
                                t_eval, y_out, first + lane, lane_written[lane], ta, tb,
                                y[lane], fa[lane], y1[lane], fb[lane], direction)
                while next_out < n_eval and reached(t_eval[next_out], tb, direction):
                    next_out += 1

            for lane in range(n_lanes):
                if lane_status[lane] != SUCCESS:
                    continue
                lane_steps[lane] += 1
                if row_is_finite(y1[lane]):
                    lane_t[lane] = tb
                    for i in range(dim):
                        y[lane, i] = y1[lane, i]
                else:
                    lane_status[lane] = NON_FINITE
                    lane_written[lane] = min(lane_written[lane], out_before)

        for lane in range(count):
            n = first + lane
            store_fixed_result(n, lane_status[lane], lane_t[lane], lane_steps[lane],
                               lane_rhs[lane], status, t_final, n_steps, n_accepted, n_rhs)
            finish(t_eval, y_out, n, y[lane], lane_written[lane])

    return fixed_block


class AdaptiveParts:
    """The compiled pieces of an embedded pair that the one-trajectory driver
    here and the CPU lane-block driver in `_blocks` share."""

    def __init__(self, **parts):
        self.__dict__.update(parts)


def build_adaptive_parts(jit, rhs, tableau, common, dtype):
    """Compile the step-size controller, the initial step guess and the dense
    output of an embedded pair."""
    cmin, cmax, _, reached = common[:4]
    a = np.asarray(tableau["a"], dtype=dtype)
    b = np.asarray(tableau["b"], dtype=dtype)
    b_err = np.asarray(tableau["b_err"], dtype=dtype)
    c = np.asarray(tableau["c"], dtype=dtype)
    stages = len(b)
    error_order = int(tableau["error_order"])
    real = numba_real(dtype)
    zero, one, hundred = real(0), real(1), real(100)
    exponent = one / real(error_order + 1)
    safety, factor_min, factor_max = real(SAFETY), real(FACTOR_MIN), real(FACTOR_MAX)
    pi_err, pi_prev = real(-0.7) / real(error_order + 1), real(0.4) / real(error_order + 1)
    i_err = real(-1) / real(error_order + 1)
    tiny_d, tiny_d12, tiny_h0 = real(1e-5), real(1e-15), real(1e-6)
    eps = real(np.finfo(dtype).eps)
    smallest_normal = real(np.finfo(dtype).tiny)

    # The method's own interpolant, b_j(theta) = sum_m dense[j, m] theta^(m+1),
    # when the core exports one; the cubic Hermite interpolant otherwise.
    has_dense = "dense" in tableau
    dense = np.asarray(tableau["dense"] if has_dense else np.zeros((stages, 1)), dtype=dtype)
    n_dense = dense.shape[1]

    @jit
    def write_dense_outputs(t_eval, y_out, n, j, ta, tb, ya, k, yb, direction):
        h = tb - ta
        dim = ya.shape[0]
        while j < t_eval.shape[0] and reached(t_eval[j], tb, direction):
            if t_eval[j] == tb:
                for i in range(dim):
                    y_out[n, j, i] = yb[i]
            else:
                theta = (t_eval[j] - ta) / h
                for i in range(dim):
                    acc = zero
                    for s in range(stages):
                        weight = dense[s, n_dense - 1]
                        for m in range(n_dense - 2, -1, -1):
                            weight = dense[s, m] + theta * weight
                        acc += theta * weight * k[s, i]
                    y_out[n, j, i] = ya[i] + h * acc
            j += 1
        return j

    # NOTE: this pow-based factor serves the one-trajectory CUDA driver. The
    # core and the CPU lane blocks use approx_pow, about 1e-9 relative away,
    # so in rare runs a step near norm = 1 is decided differently here.
    @jit
    def step_factor(err_norm, controller, err_prev, rejected_last):
        if not (err_norm > zero):
            return factor_max
        if controller == CONTROLLER_PI:
            factor = safety * err_norm**pi_err * err_prev**pi_prev
        else:
            factor = safety * err_norm**i_err
        factor = cmin(factor_max, cmax(factor_min, factor))
        # No growth right after a rejection: the rejected step showed the
        # error model is optimistic here.
        if rejected_last:
            factor = cmin(one, factor)
        return factor

    @jit
    def min_step(t):
        # 10 eps |t|, five to ten units in the last place of t, as in the core;
        # 10 times the smallest normal number at t = 0.
        return real(10) * cmax(eps * abs(t), smallest_normal)

    @jit
    def initial_step(t0, t1, rtol, atol, y, f0, work_y, work_f, p):
        """Hairer, Norsett and Wanner, Solving ODEs I (1993), Sec. II.4,
        capped at the span so the probing evaluation of f stays inside it."""
        dim = y.shape[0]
        direction = one if t1 >= t0 else -one
        span = abs(t1 - t0)
        s0 = zero
        s1 = zero
        for i in range(dim):
            scale = atol + rtol * abs(y[i])
            s0 += (y[i] / scale) * (y[i] / scale)
            s1 += (f0[i] / scale) * (f0[i] / scale)
        d0 = math.sqrt(s0 / real(dim))
        d1 = math.sqrt(s1 / real(dim))
        # Guard the ratio against a zero state or a zero derivative.
        h0 = tiny_h0 if (d0 < tiny_d or d1 < tiny_d) else real(0.01) * d0 / d1
        h0 = cmin(h0, span)
        for i in range(dim):
            work_y[i] = y[i] + direction * h0 * f0[i]
        rhs(t0 + direction * h0, work_y, work_f, p)
        s2 = zero
        for i in range(dim):
            scale = atol + rtol * abs(y[i])
            diff = (work_f[i] - f0[i]) / scale
            s2 += diff * diff
        d2 = math.sqrt(s2 / real(dim)) / h0
        d12 = cmax(d1, d2)
        if d12 <= tiny_d12:
            h1 = cmax(tiny_h0, h0 * real(1e-3))
        else:
            h1 = (real(0.01) / d12) ** exponent
        h = cmin(hundred * h0, h1)
        h = cmin(h, span)
        # A non-finite probe leaves h NaN, and the first step then fails.
        return direction * h

    return AdaptiveParts(
        stages=stages, a=a, b=b, b_err=b_err, c=c, has_dense=has_dense,
        write_dense_outputs=write_dense_outputs, step_factor=step_factor,
        min_step=min_step, initial_step=initial_step,
    )


def build_adaptive(jit, rhs, tableau, common, dtype):
    """Compile the driver that integrates trajectory n with an embedded pair,
    its own step size and the error-norm controller."""
    cmin, cmax, row_is_finite, _, write_outputs, write_initial_outputs, finish = common
    parts = build_adaptive_parts(jit, rhs, tableau, common, dtype)
    a, b, b_err, c, stages = parts.a, parts.b, parts.b_err, parts.c, parts.stages
    has_dense = parts.has_dense
    write_dense_outputs, step_factor = parts.write_dense_outputs, parts.step_factor
    min_step, initial_step = parts.min_step, parts.initial_step
    real = numba_real(dtype)
    zero, one = real(0), real(1)
    err_prev_min, factor_min = real(ERR_PREV_MIN), real(FACTOR_MIN)

    @jit
    def rk_stages(t, dt, y, k, y1, p):
        dim = y.shape[0]
        for s in range(1, stages):
            for i in range(dim):
                acc = zero
                for j in range(s):
                    acc += a[s, j] * k[j, i]
                y1[i] = y[i] + dt * acc
            rhs(t + c[s] * dt, y1, k[s], p)
        for i in range(dim):
            acc = zero
            for j in range(stages):
                acc += b[j] * k[j, i]
            y1[i] = y[i] + dt * acc

    @jit
    def error_norm(rtol, atol, dt, y, k, y1):
        dim = y.shape[0]
        norm = zero
        for i in range(dim):
            err = zero
            for j in range(stages):
                err += b_err[j] * k[j, i]
            scale = atol + rtol * cmax(abs(y[i]), abs(y1[i]))
            ratio = dt * err / scale
            norm += ratio * ratio
        return math.sqrt(norm / real(dim))

    @jit
    def adaptive_one(n, y0, params, pstride, t_eval, t0, t1, dt0, rtol, atol, max_steps,
                     controller, y_out, t_final, status, n_steps, n_accepted, n_rejected,
                     n_rhs, y, y1, k):
        dim = y.shape[0]
        p = params[n * pstride]
        for i in range(dim):
            y[i] = y0[n, i]
        code = SUCCESS if row_is_finite(y) else NON_FINITE
        t = t0
        steps = 0
        accepted = 0
        rejected = 0
        evals = 0
        written = write_initial_outputs(t_eval, y_out, n, t0, y)
        direction = one if t1 >= t0 else -one
        if code == SUCCESS and t1 != t0:
            rhs(t, y, k[0], p)
            evals += 1
            # A derivative that is not finite at t0 cannot improve by
            # shrinking the step, so the trajectory fails before its first step.
            if not row_is_finite(k[0]):
                code = NON_FINITE
        if code == SUCCESS and t1 != t0:
            if dt0 > zero:
                dt = direction * cmin(dt0, abs(t1 - t0))
            else:
                dt = initial_step(t0, t1, rtol, atol, y, k[0], y1, k[1], p)
                evals += 1
            err_prev = err_prev_min
            rejected_last = False
            while True:
                # Clip the step so that no stage is evaluated past t1.
                past = direction * (t + dt - t1) >= zero
                dt_try = t1 - t if past else dt
                rk_stages(t, dt_try, y, k, y1, p)
                evals += stages - 1
                norm = error_norm(rtol, atol, dt_try, y, k, y1)
                steps += 1
                finite = math.isfinite(norm) and row_is_finite(y1)
                if finite and norm <= one:
                    t_new = t1 if past else t + dt_try
                    if has_dense:
                        written = write_dense_outputs(t_eval, y_out, n, written, t, t_new, y,
                                                      k, y1, direction)
                    else:
                        written = write_outputs(t_eval, y_out, n, written, t, t_new, y,
                                                k[0], y1, k[stages - 1], direction)
                    for i in range(dim):
                        y[i] = y1[i]
                        k[0, i] = k[stages - 1, i]
                    t = t_new
                    accepted += 1
                    factor = step_factor(norm, controller, err_prev, rejected_last)
                    rejected_last = False
                    err_prev = cmax(norm, err_prev_min)
                    if past:
                        break
                else:
                    rejected += 1
                    if finite:
                        factor = step_factor(norm, controller, err_prev, rejected_last)
                    else:
                        factor = factor_min
                    factor = cmin(factor, one)
                    rejected_last = True
                dt = dt_try * factor
                if not (abs(dt) >= min_step(t)):
                    code = STEP_TOO_SMALL if finite else NON_FINITE
                    break
                if steps >= max_steps:
                    code = MAX_STEPS
                    break
        status[n] = code
        t_final[n] = t
        n_steps[n] = steps
        n_accepted[n] = accepted
        n_rejected[n] = rejected
        n_rhs[n] = evals
        finish(t_eval, y_out, n, y, written)

    return adaptive_one, stages
