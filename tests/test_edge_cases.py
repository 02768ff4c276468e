"""Small inputs that ODE solvers often get wrong, with their exact results.

Cases that need a user-written right-hand side (f evaluated outside the
span, f = t, a complex f) belong to the Numba tests. Here every f is a
built-in system.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import fastode
from fastode import Status

FIXED_METHODS = ("euler", "midpoint", "heun", "rk4")
ADAPTIVE_METHODS = ("bs3", "dopri5", "tsit5")
SYMPLECTIC_METHODS = ("symplectic_euler", "verlet", "yoshida4", "yoshida6")
STATS = ("n_steps", "n_accepted", "n_rejected", "n_rhs")


def half_decay():
    """f = -0.5 y."""
    return fastode.Linear([[-0.5]])


# --- malformed spans and output times ------------------------------------------


@pytest.mark.parametrize(
    ("t_span", "t_eval", "argument"),
    [
        ((0.0, 0.5, 1.0), None, "t_span"),
        ((0.0, 1.0), [0.0, 1.5], "t_eval"),
        ((0.0, 1.0), [0.0, 0.5, 0.25, 1.0], "t_eval"),
        ((1.0, 0.0), [0.25, 0.5, 0.75], "t_eval"),
    ],
    ids=["three_element_span", "t_eval_outside", "t_eval_unsorted", "t_eval_wrong_direction"],
)
def test_malformed_span_raises(t_span, t_eval, argument):
    with pytest.raises(ValueError, match=argument):
        fastode.solve(half_decay(), [1.0], t_span, t_eval=t_eval)


def test_backward_span_control():
    sol = fastode.solve(
        half_decay(), [1.0], (1.0, 0.0), t_eval=[0.75, 0.5, 0.25], rtol=1e-10, atol=1e-12
    )
    assert sol.status == Status.SUCCESS
    np.testing.assert_allclose(sol.y[:, 0], [1.13314845, 1.28402542, 1.45499141], rtol=1e-8)


# --- backward integration --------------------------------------------------------

BACKWARD_T_EVAL = np.array([2.0, 1.5, 1.0, 0.5, 0.0])
BACKWARD_Y = np.array([1.0, 1.28402542, 1.64872127, 2.11700002, 2.71828183])


@pytest.mark.parametrize("method", ADAPTIVE_METHODS)
def test_backward_adaptive(method):
    sol = fastode.solve(
        half_decay(), [1.0], (2.0, 0.0), t_eval=BACKWARD_T_EVAL, method=method,
        rtol=1e-10, atol=1e-12,
    )
    assert sol.status == Status.SUCCESS
    assert np.array_equal(sol.t, BACKWARD_T_EVAL)
    np.testing.assert_allclose(sol.y[:, 0], BACKWARD_Y, rtol=0, atol=1e-8)


def test_backward_rk4_step_not_dividing_span():
    """dt = 0.3 does not divide the span 2: the last step is shortened."""
    sol = fastode.solve(half_decay(), [1.0], (2.0, 0.0), t_eval=BACKWARD_T_EVAL, method="rk4", dt=0.3)
    assert sol.status == Status.SUCCESS
    assert sol.t_final == 0.0
    assert sol.stats["n_accepted"] == 7
    assert np.array_equal(sol.t, BACKWARD_T_EVAL)
    np.testing.assert_allclose(sol.y[:, 0], BACKWARD_Y, rtol=0, atol=1e-4)


# --- zero-length span ------------------------------------------------------------


def zero_span_case(method):
    """Return a two-component system that `method` applies to, and its dt option."""
    if method in SYMPLECTIC_METHODS:
        return fastode.Hamiltonian("harmonic"), {"dt": 0.1}
    dt = 0.1 if method in FIXED_METHODS else None
    return fastode.Linear(-np.eye(2)), {"dt": dt}


@pytest.mark.parametrize("method", fastode.METHODS)
def test_zero_length_span_without_t_eval(method):
    system, options = zero_span_case(method)
    y0 = np.array([1.0, -2.0])
    sol = fastode.solve(system, y0, (0.0, 0.0), method=method, **options)
    assert sol.status == Status.SUCCESS
    assert np.array_equal(sol.y, y0)
    assert np.array_equal(sol.t, [0.0])
    assert sol.t_final == 0.0


@pytest.mark.parametrize("method", fastode.METHODS)
def test_zero_length_span_with_t_eval(method):
    system, options = zero_span_case(method)
    y0 = np.array([1.0, -2.0])
    sol = fastode.solve(system, y0, (3.0, 3.0), t_eval=[3.0], method=method, **options)
    assert sol.status == Status.SUCCESS
    assert sol.y.shape == (1, 2)
    assert np.array_equal(sol.y[0], y0)
    assert sol.stats["n_steps"] == 0


# --- zero derivative or zero state at the start ------------------------------------


@pytest.mark.parametrize("method", ["dopri5", "tsit5"])
@pytest.mark.parametrize(
    ("system", "y0", "expected"),
    [
        (fastode.Linear([[-1.0]]), 0.0, 0.0),
        (fastode.Linear([[0.0]]), 5.0, 5.0),
        # f = -(y - 2) starts on its fixed point, so f(y0) = 0 but y0 != 0.
        (fastode.Linear([[-1.0]], b=[2.0]), 2.0, 2.0),
    ],
    ids=["zero_state", "zero_field", "fixed_point"],
)
def test_zero_start_has_no_nan(method, system, y0, expected):
    sol = fastode.solve(system, [y0], (0.0, 1.0), method=method, rtol=1e-8, atol=1e-10)
    assert sol.status == Status.SUCCESS
    assert np.all(np.isfinite(sol.y))
    np.testing.assert_allclose(sol.y, [expected], rtol=0, atol=1e-10)


def test_time_as_state_zero_start():
    """y1' = y2, y2' = 1 from (1, 0): y1 = 1 + t²/2, so y1(2) = 3."""
    system = fastode.Linear([[0.0, 1.0], [0.0, 0.0]], b=[0.0, 1.0])
    sol = fastode.solve(system, [1.0, 0.0], (0.0, 2.0), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(sol.y, [3.0, 2.0], rtol=1e-8)


# --- non-finite rows in a batch ---------------------------------------------------

# y' = -k y with k carried by a per-trajectory 1x1 matrix A = [[-k]].
E6_K = np.array([1.0, np.nan, 2.0, 1.0, 1.0])
E6_Y0 = np.array([[1.0], [1.0], [1.0], [np.nan], [np.inf]])
E6_RUNS = {
    "dopri5": {"method": "dopri5", "rtol": 1e-8, "atol": 1e-10},
    "rk4": {"method": "rk4", "dt": 0.01},
}


@pytest.mark.parametrize("run", E6_RUNS)
def test_non_finite_rows_do_not_poison_batch(run):
    A = -E6_K[:, None, None]
    sol = fastode.solve(fastode.Linear(A), E6_Y0, (0.0, 1.0), **E6_RUNS[run])
    assert list(sol.status) == [Status.SUCCESS, Status.NON_FINITE, Status.SUCCESS,
                                Status.NON_FINITE, Status.NON_FINITE]
    np.testing.assert_allclose(sol.y[0, 0], 0.36787944117144233, rtol=1e-7)
    np.testing.assert_allclose(sol.y[2, 0], 0.1353352832366127, rtol=1e-7)
    # A non-finite initial state fails before the first step.
    for row in (3, 4):
        assert sol.stats["n_steps"][row] == 0
        assert sol.t_final[row] == 0.0
    for row in (0, 2):
        alone = fastode.solve(fastode.Linear(A[row]), E6_Y0[row], (0.0, 1.0), **E6_RUNS[run])
        assert np.array_equal(sol.y[row], alone.y)
        for name in STATS:
            assert sol.stats[name][row] == alone.stats[name], name


@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_fixed_step_nan_parameter_stops_at_first_step(method):
    """f is NaN from the start: the first step fails and y0 is kept."""
    sol = fastode.solve(fastode.Linear([[np.nan]]), [1.0], (0.0, 10.0), method=method, dt=1e-3)
    assert sol.status == Status.NON_FINITE
    assert sol.stats["n_steps"] == 1
    assert sol.stats["n_accepted"] == 0
    assert sol.t_final == 0.0
    assert sol.y[0] == 1.0


def test_fixed_step_overflow_reports_last_finite_state():
    """Euler on y' = 1000 y with dt = 1e-3 doubles y each step: y_k = 2^k. f =
    1000 y first overflows from y_1015 = 2^1015, so step 1016 fails and the
    run stops at t = 1.015 with y = 2^1015."""
    t_eval = np.linspace(0.0, 2.0, 201)
    sol = fastode.solve(fastode.Linear([[1000.0]]), [1.0], (0.0, 2.0), method="euler",
                        dt=1e-3, t_eval=t_eval)
    final = fastode.solve(fastode.Linear([[1000.0]]), [1.0], (0.0, 2.0), method="euler",
                          dt=1e-3)
    assert final.status == Status.NON_FINITE
    assert final.stats["n_steps"] == 1016
    assert final.stats["n_accepted"] == 1015
    assert final.stats["n_rhs"] == 1016
    assert final.t_final == pytest.approx(1.015, rel=1e-12)
    assert final.y[0] == pytest.approx(2.0**1015, rel=1e-12)
    # Outputs up to the last finite state are kept, later ones are NaN.
    kept = t_eval <= 1.015 + 1e-12
    assert np.all(np.isfinite(sol.y[kept]))
    assert np.all(np.isnan(sol.y[~kept]))
    np.testing.assert_allclose(sol.y[t_eval == 1.0, 0], 2.0**1000, rtol=1e-12)


# --- stiff problem with an explicit method ------------------------------------------

# f = -1e6 (y - cos t) written as a linear system: (c, s) = (cos t, sin t)
# follow c' = -s, s' = c, and y' = -1e6 y + 1e6 c.
STIFF_A = [[-1e6, 1e6, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]
STIFF_Y0 = [0.0, 1.0, 0.0]


@pytest.mark.parametrize("with_t_eval", [False, True], ids=["final_only", "t_eval"])
def test_stiff_stops_at_max_steps(with_t_eval):
    t_eval = np.linspace(0.0, 10.0, 101) if with_t_eval else None
    with pytest.warns(fastode.StiffnessWarning, match="MAX_STEPS: 1"):
        sol = fastode.solve(
            fastode.Linear(STIFF_A), STIFF_Y0, (0.0, 10.0), t_eval=t_eval,
            rtol=1e-6, atol=1e-9, max_steps=1000,
        )
    assert sol.status == Status.MAX_STEPS
    # max_steps bounds the whole run, not each interval between outputs.
    assert sol.stats["n_steps"] == 1000
    assert 0.0 < sol.t_final < 10.0
    if not with_t_eval:
        assert np.all(np.isfinite(sol.y))
        assert sol.y[0] == pytest.approx(np.cos(sol.t_final), abs=1e-4)
        return
    reached = sol.t <= sol.t_final
    assert reached.sum() >= 1
    assert np.all(np.isfinite(sol.y[reached]))
    assert np.all(np.isnan(sol.y[~reached]))
    # After a transient of a few microseconds y follows cos t.
    late = reached & (sol.t > 1e-3)
    np.testing.assert_allclose(sol.y[late, 0], np.cos(sol.t[late]), rtol=0, atol=1e-4)


def test_stiff_end_value_with_enough_steps():
    """The same problem with enough steps reaches the known end value."""
    sol = fastode.solve(
        fastode.Linear(STIFF_A), STIFF_Y0, (0.0, 10.0), rtol=1e-6, atol=1e-9, max_steps=10_000_000,
    )
    assert sol.status == Status.SUCCESS
    assert sol.y[0] == pytest.approx(-0.8390720730967242, abs=1e-5)


# --- complex states ---------------------------------------------------------------


def test_complex_y0_raises_type_error():
    with pytest.raises(TypeError, match="y0"):
        fastode.solve(fastode.Linear([[-1.0]]), [1.0 + 0j], (0.0, np.pi), t_eval=[np.pi / 2, np.pi])


def test_complex_matrix_raises_type_error():
    """A real y0 with a complex right-hand side must not return a real result."""
    with pytest.raises(TypeError, match="A"):
        fastode.Linear([[-1j]])


# --- integer initial conditions ------------------------------------------------------


def test_integer_y0_matches_float_y0():
    system = fastode.Oscillator(k=np.pi, b=0.5)
    options = {"method": "dopri5", "rtol": 1e-10, "atol": 1e-12}
    from_int = fastode.solve(system, (1, 0), (0, 5), **options)
    from_float = fastode.solve(system, (1.0, 0.0), (0.0, 5.0), **options)
    assert from_int.y.dtype == np.float64
    assert np.array_equal(from_int.y, from_float.y)
    np.testing.assert_allclose(from_int.y, [-0.20315095613792755, -0.31087856752121795], rtol=1e-8)


# --- batch shapes ----------------------------------------------------------------------

E10_T_EVAL = [0.0, 0.5, 1.0]
E10_Y = [3.0, 1.103638323514327, 0.4060058497098381]


def test_batch_of_one_and_single_state():
    system = fastode.Linear([[-2.0]])
    batch = fastode.solve(system, [[3.0]], (0.0, 1.0), t_eval=E10_T_EVAL, rtol=1e-10)
    single = fastode.solve(system, [3.0], (0.0, 1.0), t_eval=E10_T_EVAL, rtol=1e-10)
    assert batch.y.shape == (1, 3, 1)
    assert batch.status.shape == (1,)
    assert single.y.shape == (3, 1)
    assert np.ndim(single.status) == 0
    assert np.array_equal(batch.y[0], single.y)


def test_batch_of_one_values():
    """At rtol 1e-10 the output at t = 0.5, between steps, is right to 1e-9."""
    sol = fastode.solve(fastode.Linear([[-2.0]]), [[3.0]], (0.0, 1.0), t_eval=E10_T_EVAL, rtol=1e-10)
    np.testing.assert_allclose(sol.y[0, :, 0], E10_Y, rtol=1e-9)


@pytest.mark.parametrize("t_eval", [None, E10_T_EVAL], ids=["final_only", "t_eval"])
@pytest.mark.parametrize("method", ["dopri5", "rk4"])
def test_empty_batch(t_eval, method):
    sol = fastode.solve(
        fastode.Linear([[-2.0]]), np.zeros((0, 1)), (0.0, 1.0), t_eval=t_eval, method=method,
        dt=0.1 if method == "rk4" else None,
    )
    expected_shape = (0, 1) if t_eval is None else (0, 3, 1)
    assert sol.y.shape == expected_shape
    assert sol.status.shape == (0,)
    assert sol.t_final.shape == (0,)
    for name in STATS:
        assert sol.stats[name].shape == (0,), name
    assert sol.success


@pytest.mark.parametrize("n", [1, 7, 9, 17, 33])
def test_partial_simd_block(n):
    """Batch sizes that leave a SIMD block part-filled give correct rows."""
    y0 = np.linspace(1.0, 2.0, n)[:, None]
    sol = fastode.solve(fastode.Linear([[-1.0]]), y0, (0.0, 1.0), rtol=1e-10, atol=1e-12)
    assert sol.success
    np.testing.assert_allclose(sol.y, y0 * np.exp(-1.0), rtol=1e-9)


# --- other small cases ------------------------------------------------------------


def test_first_step_larger_than_span():
    """A first step dt beyond the span is clipped to it, not taken as given."""
    sol = fastode.solve(fastode.Linear([[-1.0]]), [1.0], (0.0, 1.0), dt=5.0, rtol=1e-10, atol=1e-12)
    assert sol.status == Status.SUCCESS
    np.testing.assert_allclose(sol.y, [np.exp(-1.0)], rtol=1e-9)


def test_repeated_output_times():
    t_eval = [0.0, 0.5, 0.5, 1.0, 1.0]
    sol = fastode.solve(fastode.Linear([[-1.0]]), [1.0], (0.0, 1.0), t_eval=t_eval, rtol=1e-10, atol=1e-12)
    assert np.array_equal(sol.t, t_eval)
    assert sol.y[1, 0] == sol.y[2, 0]
    assert sol.y[3, 0] == sol.y[4, 0]
    np.testing.assert_allclose(sol.y[:, 0], np.exp(-np.array(t_eval)), rtol=1e-8)


def test_kepler_collision_stops_at_singularity():
    """Released at rest at r = 1 with G M = 1, a body reaches r = 0 at
    t = pi / (2 sqrt(2)); the step size collapses there and the run stops."""
    system = fastode.Hamiltonian("kepler")
    with warnings.catch_warnings():
        # STEP_TOO_SMALL here comes from the singularity, not from stiffness.
        warnings.simplefilter("ignore", fastode.StiffnessWarning)
        sol = fastode.solve(system, [1.0, 0.0, 0.0, 0.0], (0.0, 3.0), rtol=1e-10, atol=1e-12)
    assert sol.status in (Status.STEP_TOO_SMALL, Status.NON_FINITE)
    assert sol.t_final == pytest.approx(np.pi / (2 * np.sqrt(2)), abs=1e-5)
