"""Lane-block integration loops for the CPU: W trajectories advance in lock
step, as in the C++ drivers of ``cpp/include/fastode/integrate.hpp``.

A block stores its states as (dim, W) arrays and its stages as
(stages, dim, W), so lane l's state is the column ``y[:, l]``. The user's
right-hand side, inlined, is called in a ``for lane in range(W)`` loop on
such columns. W and dim are compile-time constants, so every loop over lanes
has unit stride and a fixed trip count, and LLVM vectorizes it across lanes
(one SIMD lane per trajectory). Adaptive methods give each lane its own t,
dt and accept flag.

Per lane, the arithmetic is that of the one-trajectory drivers in `_steps`,
operation for operation, so a trajectory's result does not depend on the
other trajectories of its block.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

from ._steps import (
    CONTROLLER_PI,
    ERR_PREV_MIN,
    FACTOR_MAX,
    FACTOR_MIN,
    MAX_STEPS,
    NON_FINITE,
    SAFETY,
    STEP_TOO_SMALL,
    SUCCESS,
    build_adaptive_parts,
    build_grid_time,
    build_store_fixed_result,
    numba_real,
    symplectic_coefficients,
)


def stage_source(name, stages, lanes, dim, per_lane):
    """Return Python source of ``make(rhs, a, b, c, zero)``, which returns a
    function that computes the stages and the new state of a block.

    The stages are written out one after another, so every sum over earlier
    stages has a fixed length and the innermost loop is the lane loop, which
    LLVM vectorizes. A loop over stages would leave ``for j in range(s)``,
    whose trip count is not a constant, as the innermost loop. Accumulating
    the sums in y1 with the lane loop innermost ran about 4x slower in one
    oscillator rk4 measurement on a loaded 2-core machine. Each sum starts from zero and adds the stages in order, as
    the one-trajectory drivers do, so the rounding is the same.
    """
    h = "dt[lane]" if per_lane else "dt"
    t = "t[lane]" if per_lane else "t"
    lines = [
        "def make(rhs, a, b, c, zero):",
        f"    def {name}(t, dt, y, y1, k, p):",
    ]
    if not per_lane:
        lines += [
            f"        for lane in range({lanes}):",
            "            rhs(t, y[:, lane], k[0, :, lane], p[:, lane])",
        ]

    def combine(coefficient, count):
        terms = "".join(f" + {coefficient(j)} * k[{j}, i, lane]" for j in range(count))
        return [
            f"        for i in range({dim}):",
            f"            for lane in range({lanes}):",
            f"                y1[i, lane] = y[i, lane] + {h} * (zero{terms})",
        ]

    for s in range(1, stages):
        lines += combine(lambda j, s=s: f"a[{s}, {j}]", s)
        lines += [
            f"        for lane in range({lanes}):",
            f"            rhs({t} + c[{s}] * {h}, y1[:, lane], k[{s}, :, lane], p[:, lane])",
        ]
    lines += combine(lambda j: f"b[{j}]", stages)
    lines += [f"    return {name}", ""]
    return "\n".join(lines)


def compile_stages(jit, rhs, tableau, dtype, lanes, dim, per_lane):
    """Compile the stage function of `stage_source` for a tableau; return it
    and the number of stages."""
    a = np.asarray(tableau["a"], dtype=dtype)
    b = np.asarray(tableau["b"], dtype=dtype)
    c = np.asarray(tableau["c"], dtype=dtype)
    stages = len(b)
    name = "block_stages" if per_lane else "rk_step"
    source = stage_source(name, stages, lanes, dim, per_lane)
    # Compiled under this file's name, so Numba's on-disk cache can locate it.
    namespace = {"__name__": __name__}
    exec(compile(source, __file__, "exec"), namespace)  # noqa: S102
    function = namespace["make"](rhs, a, b, c, numba_real(dtype)(0))
    return jit(function), stages


def build_rk_step(jit, rhs, tableau, dtype, lanes, dim):
    """Compile one explicit Runge-Kutta step of a block whose lanes share t
    and dt; k[0] ends as f(t, y) and y1 as the new state."""
    return compile_stages(jit, rhs, tableau, dtype, lanes, dim, per_lane=False)


def build_symplectic_step(jit, dV_dq, dT_dp, dof, method, weights, dtype, lanes):
    """Compile one step of a symplectic method for H = T(p) + V(q) on a block:
    y1 = y advanced by dt. Scratch k[0] receives the gradients."""
    kicks_list, drifts_list, evals = symplectic_coefficients(method, weights)
    kicks = np.asarray(kicks_list, dtype=dtype)
    drifts = np.asarray(drifts_list, dtype=dtype)
    n_drifts = len(drifts_list)
    dim = 2 * dof

    @jit
    def kick(y1, g, p, h):
        # p -= h dV/dq(q)
        for lane in range(lanes):
            dV_dq(y1[:dof, lane], g[:dof, lane], p[:, lane])
        for i in range(dof):
            for lane in range(lanes):
                y1[dof + i, lane] -= h * g[i, lane]

    @jit
    def drift(y1, g, p, h):
        # q += h dT/dp(p)
        for lane in range(lanes):
            dT_dp(y1[dof:, lane], g[:dof, lane], p[:, lane])
        for i in range(dof):
            for lane in range(lanes):
                y1[i, lane] += h * g[i, lane]

    @jit
    def symplectic_step(t, dt, y, y1, k, p):
        for i in range(dim):
            for lane in range(lanes):
                y1[i, lane] = y[i, lane]
        kick(y1, k[0], p, kicks[0] * dt)
        for m in range(n_drifts):
            drift(y1, k[0], p, drifts[m] * dt)
            if m + 1 < kicks.shape[0]:
                kick(y1, k[0], p, kicks[m + 1] * dt)

    return symplectic_step, evals


def build_load_block(jit, common, lanes, dim, n_params):
    """Compile the loader of a block: states and parameter rows as columns,
    the lane bookkeeping reset, and the outputs at t0 stored.

    Padding lanes (count < W) repeat the last real trajectory, so they never
    change a real lane's result.
    """
    row_is_finite, write_initial_outputs = common[2], common[5]

    @jit
    def load_block(first, count, y0, params, pstride, t_eval, t0, y_out, y, p, code,
                   written):
        for lane in range(lanes):
            source = first + (lane if lane < count else count - 1)
            row = source * pstride
            for q in range(n_params):
                p[q, lane] = params[row, q]
            for i in range(dim):
                y[i, lane] = y0[source, i]
            code[lane] = SUCCESS if row_is_finite(y[:, lane]) else NON_FINITE
            written[lane] = 0
            if lane < count:
                written[lane] = write_initial_outputs(t_eval, y_out, first + lane, t0,
                                                      y[:, lane])

    @jit
    def store_params(first, count, params, pstride, p):
        # The user function may write to its parameter row; copy the columns
        # back so such writes reach the caller's array, as a row view would.
        for lane in range(count):
            row = (first + lane) * pstride
            for q in range(n_params):
                params[row, q] = p[q, lane]

    return load_block, store_params


def build_fixed_block(jit, step, evals, rhs, common, dtype, lanes, dim, n_params):
    """Compile the driver that advances lanes first .. first + count - 1 with
    a fixed step on the grid t0 + k dt, the last step ending at t1.

    All lanes share the grid, so one step counter serves the block. A lane
    whose new state is not finite stops at its last finite state, as in the
    core: its t, state and statistics freeze at the start of the failing
    step, which counts as attempted but not accepted, and its outputs from
    that step on are NaN. The block keeps stepping such a lane (its values
    cannot reach another lane) and discards the results.
    """
    reached, write_outputs, finish = common[3], common[4], common[6]
    load_block, store_params = build_load_block(jit, common, lanes, dim, n_params)
    real = numba_real(dtype)
    zero, one = real(0), real(1)
    grid_time = build_grid_time(jit, dtype)
    store_fixed_result = build_store_fixed_result(jit)

    @jit
    def keep_final_state(t_eval, y_out, n, y):
        # A NON_FINITE lane reports its last finite state. It is stored when
        # the lane fails, because the block goes on overwriting the lane's y.
        # With output times the final state is not reported.
        if t_eval.shape[0] == 0:
            for i in range(dim):
                y_out[n, 0, i] = y[i]

    @jit
    def fixed_block(first, count, y0, params, pstride, t_eval, t0, t1, dt, n_grid,
                    max_steps, y_out, t_final, status, n_steps, n_rhs, y, y1, k, fa, fb,
                    p, code, written, lane_t, lane_steps, lane_rhs, probe, n_accepted):
        n_eval = t_eval.shape[0]
        direction = one if t1 >= t0 else -one
        load_block(first, count, y0, params, pstride, t_eval, t0, y_out, y, p, code,
                   written)
        n_active = 0
        for lane in range(lanes):
            n_active += code[lane] == SUCCESS
            lane_t[lane] = t0
            lane_steps[lane] = 0
            lane_rhs[lane] = 0
            if lane < count and code[lane] != SUCCESS:
                keep_final_state(t_eval, y_out, first + lane, y[:, lane])

        # Every lane shares the grid, so one index tracks the next output time.
        next_out = written[0]
        steps = 0
        block_rhs = 0
        while steps < n_grid and n_active > 0:
            if steps >= max_steps:
                break
            ta = grid_time(t0, t1, dt, direction, steps, n_grid)
            tb = grid_time(t0, t1, dt, direction, steps + 1, n_grid)
            step(ta, tb - ta, y, y1, k, p)
            block_rhs += evals

            # Dense output needs f at both ends of the step.
            out_before = next_out
            if next_out < n_eval and reached(t_eval[next_out], tb, direction):
                for lane in range(lanes):
                    rhs(ta, y[:, lane], fa[:, lane], p[:, lane])
                    rhs(tb, y1[:, lane], fb[:, lane], p[:, lane])
                block_rhs += 2
                for lane in range(count):
                    if code[lane] == SUCCESS:
                        written[lane] = write_outputs(
                            t_eval, y_out, first + lane, written[lane], ta, tb,
                            y[:, lane], fa[:, lane], y1[:, lane], fb[:, lane], direction)
                while next_out < n_eval and reached(t_eval[next_out], tb, direction):
                    next_out += 1

            steps += 1
            # y - y is 0 for a finite y and NaN otherwise; a sum per lane, not
            # a branch per component, keeps the check vectorized.
            for lane in range(lanes):
                probe[lane] = zero
            for i in range(dim):
                for lane in range(lanes):
                    probe[lane] += y1[i, lane] - y1[i, lane]
            for lane in range(lanes):
                if probe[lane] != zero and code[lane] == SUCCESS:
                    code[lane] = NON_FINITE
                    n_active -= 1
                    lane_t[lane] = ta
                    lane_steps[lane] = steps
                    lane_rhs[lane] = block_rhs
                    written[lane] = min(written[lane], out_before)
                    if lane < count:
                        keep_final_state(t_eval, y_out, first + lane, y[:, lane])
            # Every lane takes y1, failed ones too: a copy with a select per
            # lane made rk4 runs 1.4x to 2x slower. Swapping the buffers
            # saves the copy.
            y, y1 = y1, y

        store_params(first, count, params, pstride, p)
        t_end = grid_time(t0, t1, dt, direction, steps, n_grid)
        for lane in range(count):
            if code[lane] == SUCCESS:
                lane_t[lane] = t_end
                lane_steps[lane] = steps
                lane_rhs[lane] = block_rhs
                if steps < n_grid:
                    code[lane] = MAX_STEPS
            n = first + lane
            store_fixed_result(n, code[lane], lane_t[lane], lane_steps[lane], lane_rhs[lane],
                               status, t_final, n_steps, n_accepted, n_rhs)
            if code[lane] != NON_FINITE or n_eval > 0:
                finish(t_eval, y_out, n, y[:, lane], written[lane])

    return fixed_block


@intrinsic
def float64_bits(typingctx, x):
    """Reinterpret the bits of float64 `x` as an int64, as C++ ``std::bit_cast``
    does."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def bits_float64(typingctx, bits):
    """Reinterpret the bits of int64 `bits` as a float64."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


# Constants of approx_pow, as the core writes them.
MANTISSA_BITS = 0x000FFFFFFFFFFFFF
EXPONENT_OF_ONE = 0x3FF0000000000000
SQRT_2 = 1.4142135623730951
LOG2_E = 1.4426950408889634
LN_2 = 0.6931471805599453
# 1.5 2^52: adding and subtracting it rounds a double to an integer.
ROUNDING_SHIFTER = 6755399441055744.0
# 1 / j! for j = 10, 9, ..., 2, the Taylor coefficients of e^r.
INVERSE_FACTORIALS = tuple(1.0 / math.factorial(j) for j in range(10, 1, -1))


def build_approx_pow(jit):
    """Compile ``approx_pow`` of ``cpp/include/fastode/controller.hpp``: x^e
    for a positive normal x, with |e log2 x| clamped to 60, to about 1e-9
    relative, from bit operations, a polynomial and selects, so a lane loop
    that calls it vectorizes. It repeats the core's operations in order, so
    both compute the same step factors."""
    c10, c9, c8, c7, c6, c5, c4, c3, c2 = INVERSE_FACTORIALS

    @jit
    def approx_pow(x, e):
        bits = float64_bits(x)
        # x = 2^k m with m in [sqrt(1/2), sqrt(2)), so ln(m) converges fast.
        m = bits_float64((bits & MANTISSA_BITS) | EXPONENT_OF_ONE)
        k = np.float64((bits >> 52) & 0x7FF) - 1023.0
        high = m > SQRT_2
        m = 0.5 * m if high else m
        k = k + 1.0 if high else k
        # ln(m) = 2 atanh(z), z = (m - 1) / (m + 1), |z| < 0.172: five terms.
        z = (m - 1.0) / (m + 1.0)
        z2 = z * z
        ln_m = 2.0 * z * (1.0 + z2 * (1.0 / 3 + z2 * (1.0 / 5 + z2 * (1.0 / 7
                                                                    + z2 * (1.0 / 9)))))
        y = e * (k + ln_m * LOG2_E)
        y = -60.0 if -60.0 > y else y
        y = 60.0 if 60.0 < y else y
        # 2^y = 2^n e^r with n = round(y) and |r| <= ln(2) / 2.
        n = (y + ROUNDING_SHIFTER) - ROUNDING_SHIFTER
        r = (y - n) * LN_2
        q = c10
        q = q * r + c9
        q = q * r + c8
        q = q * r + c7
        q = q * r + c6
        q = q * r + c5
        q = q * r + c4
        q = q * r + c3
        q = q * r + c2
        q = q * r + 1.0
        q = q * r + 1.0
        return bits_float64((np.int64(n) + 1023) << 52) * q

    return approx_pow


def build_step_factor(jit, error_order):
    """Compile `step_factor` of the core's controller, for one lane: the ratio
    of the next step to the one just tried, from its error norm, the previous
    accepted norm and whether the previous step was rejected.

    It mirrors ``step_factor`` in ``cpp/include/fastode/controller.hpp``
    operation for operation, in float64, with `approx_pow` in place of pow:
    both branches are computed and selected, so the lane loop that calls it
    has no call and no branch and vectorizes. NaN norms give FACTOR_MIN and
    zero norms FACTOR_MAX.
    """
    k = float(error_order + 1)
    memory_exponent, i_exponent, pi_exponent = 0.4 / k, -1.0 / k, -0.7 / k
    approx_pow = build_approx_pow(jit)

    @jit
    def step_factor(err_norm, controller, err_prev, rejected_last):
        norm = abs(np.float64(err_norm)) + 1e-300
        pi = controller == CONTROLLER_PI
        memory = approx_pow(np.float64(err_prev), memory_exponent)
        factor = SAFETY * approx_pow(norm, pi_exponent if pi else i_exponent)
        factor = factor * memory if pi else factor
        factor = factor if err_norm > 0.0 else FACTOR_MAX
        factor = FACTOR_MIN if FACTOR_MIN > factor else factor
        factor = FACTOR_MAX if FACTOR_MAX < factor else factor
        factor = (1.0 if 1.0 < factor else factor) if rejected_last else factor
        return factor if err_norm == err_norm else FACTOR_MIN

    return step_factor


def build_adaptive_block(jit, rhs, tableau, common, dtype, lanes, dim, n_params,
                         cold_jit=None):
    """Compile the driver that advances lanes first .. first + count - 1 with
    an embedded pair: each lane has its own t, dt and accept decision, and
    leaves the loop when it reaches t1 or fails.

    Stages are evaluated for every lane of the block, including lanes that
    have finished or failed, whose results are discarded. This keeps the
    lane loops free of branches. The accept/reject decision and the next
    step size of all lanes are one branch-free lane loop, as the core's
    ``decide_steps``; only lanes with an output due, at the end of the span
    or failing take a scalar pass.
    """
    cmin, cmax, row_is_finite, write_outputs, finish = (common[0], common[1], common[2],
                                                         common[4], common[6])
    parts = build_adaptive_parts(jit, rhs, tableau, common, dtype)
    b_err, stages = parts.b_err, parts.stages
    has_dense = parts.has_dense
    write_dense_outputs, min_step, initial_step = (parts.write_dense_outputs, parts.min_step,
                                                   parts.initial_step)
    step_factor = build_step_factor(jit, int(tableau["error_order"]))
    # Helpers called once per block or per output compile as functions of
    # their own (cold_jit, without inline="always"): each inlined copy made
    # the kernel larger. In one measurement of oscillator dopri5 on a loaded
    # 2-core machine, this cut the first compile from 21 s to 13 s of CPU
    # time with no change in run time.
    cold = cold_jit or jit
    load_block, store_params = build_load_block(cold, common, lanes, dim, n_params)
    real = numba_real(dtype)
    zero, one = real(0), real(1)
    err_prev_min = real(ERR_PREV_MIN)

    block_stages, _ = compile_stages(jit, rhs, tableau, dtype, lanes, dim, per_lane=True)

    @jit
    def block_error_norm(rtol, atol, dt, y, k, y1, norm):
        for lane in range(lanes):
            norm[lane] = zero
        for i in range(dim):
            for lane in range(lanes):
                err = zero
                for j in range(stages):
                    err += b_err[j] * k[j, i, lane]
                scale = atol + rtol * cmax(abs(y[i, lane]), abs(y1[i, lane]))
                ratio = dt[lane] * err / scale
                norm[lane] += ratio * ratio
        for lane in range(lanes):
            norm[lane] = math.sqrt(norm[lane] / real(dim))

    @cold
    def start_steps(t0, t1, dt0, rtol, atol, y, y1, k, p, active, dt, evals, code):
        """Evaluate f(t0, y) and choose each active lane's first step."""
        direction = one if t1 >= t0 else -one
        for lane in range(lanes):
            rhs(t0, y[:, lane], k[0, :, lane], p[:, lane])
        for lane in range(lanes):
            dt[lane] = zero
            if not active[lane]:
                continue
            evals[lane] += 1
            # A derivative that is not finite at t0 cannot improve by
            # shrinking the step, so such a lane fails before its first step.
            if not row_is_finite(k[0, :, lane]):
                code[lane] = NON_FINITE
                active[lane] = False
                continue
            if dt0 > zero:
                dt[lane] = direction * cmin(dt0, abs(t1 - t0))
            else:
                dt[lane] = initial_step(t0, t1, rtol, atol, y[:, lane], k[0, :, lane],
                                        y1[:, lane], k[1, :, lane], p[:, lane])
                evals[lane] += 1

    @jit
    def decide_steps(t1, direction, controller, max_steps, active, t, dt, dt_try, norm,
                     err_prev, rejected_last, steps, t_out, ok, t_new, dt_next, event):
        """Accept or reject every lane's step and choose its next step size,
        without branches; return whether some active lane needs the scalar
        pass (an output due, the end of the span, or a failure)."""
        any_event = False
        for lane in range(lanes):
            accept = norm[lane] <= one  # false for NaN, which a non-finite y1 gives
            at_end = direction * (t[lane] + dt[lane] - t1) >= zero
            t_next = t1 if at_end else t[lane] + dt_try[lane]
            factor = real(step_factor(norm[lane], controller, err_prev[lane],
                                      rejected_last[lane]))
            factor = factor if accept else cmin(factor, one)
            t_after = t_next if accept else t[lane]
            dt_new = dt_try[lane] * factor
            too_small = not (abs(dt_new) >= min_step(t_after))
            out_of_steps = steps[lane] + 1 >= max_steps
            output_due = direction * (t_out[lane] - t_next) <= zero
            flagged = active[lane] & ((accept & (at_end | output_due)) | too_small
                                      | out_of_steps)
            ok[lane] = accept
            t_new[lane] = t_next
            dt_next[lane] = dt_new
            event[lane] = flagged
            any_event |= flagged
        return any_event

    @jit
    def update_lanes(stages_used, active, ok, t, t_new, dt, dt_next, norm, err_prev,
                     rejected_last, steps, accepted, rejected, evals, past, y, y1, k):
        # Accepted lanes take y1; rejected lanes retry with the smaller step.
        for i in range(dim):
            for lane in range(lanes):
                take = active[lane] & ok[lane]
                y[i, lane] = y1[i, lane] if take else y[i, lane]
                k[0, i, lane] = k[stages - 1, i, lane] if take else k[0, i, lane]
        for lane in range(lanes):
            on = active[lane]
            take = on & ok[lane]
            steps[lane] += 1 if on else 0
            evals[lane] += stages_used if on else 0
            accepted[lane] += 1 if take else 0
            rejected[lane] += 1 if on and not ok[lane] else 0
            t[lane] = t_new[lane] if take else t[lane]
            # A lane that reached t1 keeps its dt, as in the core.
            finished = take & past[lane]
            dt[lane] = dt_next[lane] if on and not finished else dt[lane]
            err_prev[lane] = cmax(norm[lane], err_prev_min) if take else err_prev[lane]
            rejected_last[lane] = (not ok[lane]) if on else rejected_last[lane]

    @jit
    def next_output_time(t_eval, written, t1, span_past):
        return t_eval[written] if written < t_eval.shape[0] else span_past

    @cold
    def write_lane_outputs(t_eval, y_out, n, j, ta, tb, y, y1, k, lane, direction):
        if has_dense:
            return write_dense_outputs(t_eval, y_out, n, j, ta, tb, y[:, lane], k[:, :, lane],
                                       y1[:, lane], direction)
        return write_outputs(t_eval, y_out, n, j, ta, tb, y[:, lane], k[0, :, lane],
                             y1[:, lane], k[stages - 1, :, lane], direction)

    @cold
    def settle_lane(lane, active, ok, past, t, dt, norm, steps, max_steps, code):
        """End a flagged lane that reached t1 or failed, after its update."""
        if ok[lane] and past[lane]:
            active[lane] = False
        elif not (abs(dt[lane]) >= min_step(t[lane])):
            code[lane] = STEP_TOO_SMALL if norm[lane] == norm[lane] else NON_FINITE
            active[lane] = False
        elif steps[lane] >= max_steps:
            code[lane] = MAX_STEPS
            active[lane] = False

    @jit
    def adaptive_block(first, count, y0, params, pstride, t_eval, t0, t1, dt0, rtol, atol,
                       max_steps, controller, results, y, y1, k, p, lane_state, decision):
        # Tuples keep the call under 30 arguments: CPython compiles longer
        # calls with *args, which Numba cannot inline.
        y_out, t_final, status, n_steps, n_accepted, n_rejected, n_rhs = results
        (code, written, active, t, dt, dt_try, norm, past, err_prev, rejected_last, steps,
         accepted, rejected, evals) = lane_state
        ok, t_new, dt_next, event, t_out = decision
        direction = one if t1 >= t0 else -one
        # Beyond t1, so that a lane with no output left never has one due.
        span_past = t1 + direction * (one + abs(t1 - t0))
        load_block(first, count, y0, params, pstride, t_eval, t0, y_out, y, p, code,
                   written)
        n_active = 0
        for lane in range(lanes):
            active[lane] = code[lane] == SUCCESS and t1 != t0
            n_active += active[lane]
            t[lane] = t0
            steps[lane] = 0
            accepted[lane] = 0
            rejected[lane] = 0
            evals[lane] = 0
            err_prev[lane] = err_prev_min
            rejected_last[lane] = False
            # Padding lanes write no outputs, so none is ever due for them.
            t_out[lane] = span_past
            if lane < count:
                t_out[lane] = next_output_time(t_eval, written[lane], t1, span_past)
        if n_active > 0:
            start_steps(t0, t1, dt0, rtol, atol, y, y1, k, p, active, dt, evals, code)
            # Lanes whose f is not finite at t0 stop in start_steps. The loop
            # below recounts the active lanes only when a lane is flagged,
            # and a stopped lane never is, so a block of such lanes would
            # loop forever without this count.
            n_active = 0
            for lane in range(lanes):
                n_active += active[lane]
        while n_active > 0:
            # Clip the step so that no stage is evaluated past t1.
            for lane in range(lanes):
                past[lane] = direction * (t[lane] + dt[lane] - t1) >= zero
                dt_try[lane] = t1 - t[lane] if past[lane] else dt[lane]
            block_stages(t, dt_try, y, y1, k, p)
            block_error_norm(rtol, atol, dt_try, y, k, y1, norm)
            any_event = decide_steps(t1, direction, controller, max_steps, active, t, dt,
                                     dt_try, norm, err_prev, rejected_last, steps, t_out, ok,
                                     t_new, dt_next, event)
            # Outputs interpolate within the step, so they come before the update.
            if any_event:
                for lane in range(count):
                    if event[lane] and ok[lane]:
                        written[lane] = write_lane_outputs(
                            t_eval, y_out, first + lane, written[lane], t[lane],
                            t_new[lane], y, y1, k, lane, direction)
                        t_out[lane] = next_output_time(t_eval, written[lane], t1, span_past)
            update_lanes(stages - 1, active, ok, t, t_new, dt, dt_next, norm, err_prev,
                         rejected_last, steps, accepted, rejected, evals, past, y, y1, k)
            if any_event:
                n_active = 0
                for lane in range(lanes):
                    if event[lane]:
                        settle_lane(lane, active, ok, past, t, dt, norm, steps, max_steps,
                                    code)
                    n_active += active[lane]

        store_params(first, count, params, pstride, p)
        for lane in range(count):
            n = first + lane
            status[n] = code[lane]
            t_final[n] = t[lane]
            n_steps[n] = steps[lane]
            n_accepted[n] = accepted[lane]
            n_rejected[n] = rejected[lane]
            n_rhs[n] = evals[lane]
            finish(t_eval, y_out, n, y[:, lane], written[lane])

    return adaptive_block, stages
