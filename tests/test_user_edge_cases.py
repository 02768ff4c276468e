"""Edge cases that trip ODE solvers, on user right-hand sides with
backend="numba", and the errors raised for user functions that cannot run."""

import decimal
import math

import numpy as np
import pytest
from test_numba import ADAPTIVE, FIXED, SYMPLECTIC, affine, harmonic, linear, oscillator

import fastode
from fastode import Status


def solve(system, y0, t_span, method="dopri5", **options):
    return fastode.solve(system, y0, t_span, method=method, backend="numba", **options)


def fixed_step_options(method):
    return {"dt": 0.1} if method in FIXED or method in SYMPLECTIC else {}


# --- E1: f is never evaluated outside the span ----------------------------------------


@pytest.mark.parametrize("method", ["dopri5", "tsit5"])
def test_short_span_stays_inside(method):
    system = linear(2.0)
    sol = solve(system, [1.0], (0.0, 1e-4), method, rtol=1e-10, atol=1e-12)
    assert abs(sol.y[0] / 1.0002000200013335 - 1.0) < 1e-10
    t_min, t_max = system.params[4], system.params[5]
    assert t_min >= 0.0
    assert t_max <= 1e-4


# --- E2: malformed spans and output times -------------------------------------------


def test_three_element_span_rejected():
    with pytest.raises(ValueError, match="t_span"):
        solve(linear(-0.5), [1.0], (0.0, 0.5, 1.0))


def test_output_time_outside_span_rejected():
    with pytest.raises(ValueError, match="t_eval"):
        solve(linear(-0.5), [1.0], (0.0, 1.0), t_eval=[0.0, 1.5])


def test_unsorted_output_times_rejected():
    with pytest.raises(ValueError, match="t_eval"):
        solve(linear(-0.5), [1.0], (0.0, 1.0), t_eval=[0.0, 0.5, 0.25, 1.0])


def test_increasing_output_times_on_backward_span_rejected():
    with pytest.raises(ValueError, match="t_eval"):
        solve(linear(-0.5), [1.0], (1.0, 0.0), t_eval=[0.25, 0.5, 0.75])


def test_backward_span_control():
    sol = solve(linear(-0.5), [1.0], (1.0, 0.0), t_eval=[0.75, 0.5, 0.25],
                rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sol.y[:, 0], [1.13314845, 1.28402542, 1.45499141], atol=1e-8)


# --- E3: backward integration ---------------------------------------------------------

BACKWARD_T = [2.0, 1.5, 1.0, 0.5, 0.0]
BACKWARD_Y = [1.0, 1.28402542, 1.64872127, 2.11700002, 2.71828183]


@pytest.mark.parametrize("method", ADAPTIVE)
def test_backward_adaptive(method):
    sol = solve(linear(-0.5), [1.0], (2.0, 0.0), method, t_eval=BACKWARD_T,
                rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sol.y[:, 0], BACKWARD_Y, atol=1e-8)
    np.testing.assert_array_equal(sol.t, BACKWARD_T)


def test_backward_rk4_step_not_dividing_span():
    sol = solve(linear(-0.5), [1.0], (2.0, 0.0), "rk4", t_eval=BACKWARD_T, dt=0.3)
    np.testing.assert_allclose(sol.y[:, 0], BACKWARD_Y, atol=1e-4)
    np.testing.assert_array_equal(sol.t, BACKWARD_T)
    assert sol.status == Status.SUCCESS


# --- E4: zero-length span -------------------------------------------------------------


@pytest.mark.parametrize("method", FIXED + ADAPTIVE + SYMPLECTIC)
def test_zero_length_span(method):
    if method in SYMPLECTIC:
        system, y0 = harmonic([1.0]), np.array([[1.0, -2.0]])
    else:
        system, y0 = linear(-1.0), np.array([[1.0], [-2.0]])
    options = fixed_step_options(method)
    final = solve(system, y0, (0.0, 0.0), method, **options)
    np.testing.assert_array_equal(final.y, y0)
    assert np.all(final.status == Status.SUCCESS)
    dense = solve(system, y0, (3.0, 3.0), method, t_eval=[3.0], **options)
    np.testing.assert_array_equal(dense.y[:, 0, :], y0)
    assert np.all(dense.status == Status.SUCCESS)


# --- E5: zero derivative or zero state at the start ------------------------------------


@pytest.mark.parametrize("method", ["dopri5", "tsit5"])
@pytest.mark.parametrize(
    ("coefficients", "y0", "t1", "expected"),
    [((0.0, 1.0), 1.0, 2.0, 3.0), ((-1.0, 0.0), 0.0, 1.0, 0.0), ((0.0, 0.0), 5.0, 1.0, 5.0)],
    ids=["f=t", "f=-y,y0=0", "f=0"],
)
def test_zero_start(method, coefficients, y0, t1, expected):
    a, b = coefficients
    sol = solve(linear(a, b), [y0], (0.0, t1), method, rtol=1e-8, atol=1e-10)
    assert sol.status == Status.SUCCESS
    assert np.isfinite(sol.y[0])
    assert abs(sol.y[0] - expected) < 1e-8


# --- E6: non-finite rows do not poison a batch ----------------------------------------

# Row 0 decays at rate 1 and row 2 at rate 2; row 1 has a NaN rate, so f
# becomes NaN during the run, and rows 3 and 4 start at NaN and infinity.
MIXED_Y0 = np.array([[1.0], [1.0], [1.0], [np.nan], [np.inf]])
MIXED_PARAMS = np.array([[rate, 0.0, 0.0, 0.0, np.inf, -np.inf]
                         for rate in (-1.0, np.nan, -2.0, -1.0, -1.0)])


@pytest.mark.parametrize(
    ("method", "options"),
    [("dopri5", {"rtol": 1e-8, "atol": 1e-10}), ("rk4", {"dt": 0.01})],
)
def test_non_finite_rows_isolated(method, options):
    batch = solve(affine(MIXED_PARAMS.copy()), MIXED_Y0, (0.0, 1.0), method, **options)
    assert abs(batch.y[0, 0] - 0.36787944117144233) < 1e-7
    assert abs(batch.y[2, 0] - 0.1353352832366127) < 1e-7
    np.testing.assert_array_equal(batch.status[[0, 2]], Status.SUCCESS)
    assert np.all(batch.status[[1, 3, 4]] == Status.NON_FINITE)
    for row in (0, 2):
        alone = solve(affine(MIXED_PARAMS[row].copy()), MIXED_Y0[row], (0.0, 1.0), method,
                      **options)
        assert alone.y[0] == batch.y[row, 0]
        for name in ("n_steps", "n_accepted", "n_rejected", "n_rhs"):
            assert alone.stats[name] == batch.stats[name][row]


@pytest.mark.parametrize(
    ("method", "system"),
    [("euler", linear(np.nan)), ("rk4", linear(np.nan)), ("verlet", harmonic([np.nan]))],
)
def test_fixed_step_nan_parameter_stops_at_first_step(method, system):
    """f is NaN from the start: the first step fails and y0 is kept."""
    sol = solve(system, [1.0] * system.dim, (0.0, 10.0), method, dt=1e-3)
    assert sol.status == Status.NON_FINITE
    assert sol.stats["n_steps"] == 1
    assert sol.stats["n_accepted"] == 0
    assert sol.t_final == 0.0
    np.testing.assert_array_equal(sol.y, 1.0)


def test_fixed_step_overflow_reports_last_finite_state():
    """Euler on y' = 1000 y with dt = 1e-3 doubles y each step: y_k = 2^k. f =
    1000 y first overflows from y_1015 = 2^1015, so step 1016 fails and the
    run stops at t = 1.015 with y = 2^1015."""
    t_eval = np.linspace(0.0, 2.0, 201)
    # Two rows: the other trajectories of a lane block must not change the
    # failing one's result, and the second row fails one step earlier.
    sol = solve(linear(1000.0), [[1.0], [2.0]], (0.0, 2.0), "euler", dt=1e-3,
                t_eval=t_eval)
    final = solve(linear(1000.0), [[1.0], [2.0]], (0.0, 2.0), "euler", dt=1e-3)
    np.testing.assert_array_equal(final.status, Status.NON_FINITE)
    np.testing.assert_array_equal(final.stats["n_steps"], [1016, 1015])
    np.testing.assert_array_equal(final.stats["n_accepted"], [1015, 1014])
    np.testing.assert_array_equal(final.stats["n_rhs"], [1016, 1015])
    np.testing.assert_allclose(final.t_final, [1.015, 1.014], rtol=1e-12)
    np.testing.assert_allclose(final.y[:, 0], [2.0**1015, 2.0**1015], rtol=1e-12)
    np.testing.assert_array_equal(sol.t_final, final.t_final)
    # Outputs up to the last finite state are kept, later ones are NaN.
    kept = t_eval <= 1.015 + 1e-12
    assert np.all(np.isfinite(sol.y[0, kept]))
    assert np.all(np.isnan(sol.y[0, ~kept]))
    np.testing.assert_allclose(sol.y[0, t_eval == 1.0, 0], 2.0**1000, rtol=1e-12)
    # With outputs, every step that reaches an output time costs two more
    # evaluations of f; the failing step at t = 1.015 reaches none.
    outputs_reached = np.count_nonzero((t_eval > 0.0) & (t_eval <= 1.015 + 1e-12))
    assert sol.stats["n_rhs"][0] == 1016 + 2 * outputs_reached


# --- E7: stiff problem with an explicit method ----------------------------------------


@pytest.mark.parametrize("dense", [False, True], ids=["final", "t_eval"])
def test_stiff_problem_stops_at_max_steps(dense):
    t_eval = np.linspace(0.0, 10.0, 101) if dense else None
    with pytest.warns(fastode.StiffnessWarning, match="MAX_STEPS: 1"):
        sol = solve(linear(-1e6, d=1e6), [0.0], (0.0, 10.0), t_eval=t_eval, rtol=1e-6,
                    atol=1e-9, max_steps=1000)
    assert sol.status == Status.MAX_STEPS
    assert sol.stats["n_steps"] == 1000
    assert 0.0 < sol.t_final < 10.0
    if dense:
        # y0 = 0 at t = 0; after a transient of about 1e-5, y follows cos t.
        assert sol.y[0, 0] == 0.0
        reached = (sol.t > 0) & (sol.t <= sol.t_final)
        np.testing.assert_allclose(sol.y[reached, 0], np.cos(sol.t[reached]), atol=1e-3)
        assert np.all(np.isnan(sol.y[sol.t > sol.t_final, 0]))
    else:
        assert abs(sol.y[0] - math.cos(sol.t_final)) < 1e-3


# --- E8: complex states ---------------------------------------------------------------


@fastode.ode(dim=1)
def rotate(t, y, dy, p):
    dy[0] = -1j * y[0]


def test_complex_initial_state_rejected():
    with pytest.raises(TypeError, match="complex"):
        solve(rotate, [1.0 + 0j], (0.0, math.pi), t_eval=[math.pi / 2, math.pi])


def test_complex_right_hand_side_rejected():
    with pytest.raises(TypeError, match="rotate computes complex values"):
        solve(rotate, [1.0], (0.0, math.pi), t_eval=[math.pi / 2, math.pi])


# --- E9: integer initial conditions -----------------------------------------------------


def test_integer_initial_state():
    system = oscillator([math.pi, 0.5])
    ints = solve(system, (1, 0), (0.0, 5.0), rtol=1e-10, atol=1e-12)
    floats = solve(system, (1.0, 0.0), (0.0, 5.0), rtol=1e-10, atol=1e-12)
    assert ints.y.dtype == np.float64
    np.testing.assert_allclose(ints.y, [-0.20315095613792755, -0.31087856752121795],
                               atol=1e-8)
    np.testing.assert_array_equal(ints.y, floats.y)


# --- E10: batch shapes ------------------------------------------------------------------

E10_T = [0.0, 0.5, 1.0]
E10_Y = [3.0, 1.103638323514327, 0.4060058497098381]


def test_batch_of_one():
    sol = solve(linear(-2.0), [[3.0]], (0.0, 1.0), t_eval=E10_T, rtol=1e-10, atol=1e-12)
    assert sol.y.shape == (1, 3, 1)
    np.testing.assert_allclose(sol.y[0, :, 0], E10_Y, rtol=1e-8)


def test_single_state():
    sol = solve(linear(-2.0), [3.0], (0.0, 1.0), t_eval=E10_T, rtol=1e-10, atol=1e-12)
    assert sol.y.shape == (3, 1)
    np.testing.assert_allclose(sol.y[:, 0], E10_Y, rtol=1e-8)


@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_empty_batch(method):
    options = {"dt": 0.1} if method == "rk4" else {}
    sol = solve(linear(-2.0), np.zeros((0, 1)), (0.0, 1.0), method, t_eval=E10_T, **options)
    assert sol.y.shape == (0, 3, 1)
    assert sol.status.shape == (0,)
    assert sol.stats["n_steps"].shape == (0,)


# --- user functions that cannot run ---------------------------------------------------------


@fastode.ode(dim=1)
def uses_decimal(t, y, dy, p):
    dy[0] = decimal.Decimal(1)


@fastode.ode(dim=1)
def writes_past_end(t, y, dy, p):
    dy[0] = -y[0]
    dy[1] = 0.0


@fastode.ode(dim=2)
def forgets_component(t, y, dy, p):
    dy[0] = y[1]


@fastode.ode(dim=1)
def returns_derivative(t, y, dy, p):
    return -y


def test_uncompilable_function_named():
    with pytest.raises(TypeError, match="Numba cannot compile uses_decimal"):
        solve(uses_decimal, [1.0], (0.0, 1.0))


def test_write_past_end_rejected():
    with pytest.raises(ValueError, match="writes_past_end indexed an array out of range"):
        solve(writes_past_end, [1.0], (0.0, 1.0))


def test_unwritten_component_rejected():
    with pytest.raises(ValueError, match=r"forgets_component did not write dy\[1\]"):
        solve(forgets_component, [1.0, 0.0], (0.0, 1.0))


def test_returned_derivative_rejected():
    with pytest.raises(TypeError, match="returns_derivative returned a value"):
        solve(returns_derivative, [1.0], (0.0, 1.0))


def test_infinite_row_gives_non_finite_status():
    sol = solve(linear(1.0, c=1.0), [[1.0], [np.inf]], (0.0, 1.0), "rk4", dt=0.1)
    assert sol.status[0] == Status.SUCCESS
    assert sol.status[1] == Status.NON_FINITE


def test_bad_dimension_rejected():
    with pytest.raises(ValueError, match="dim"):
        fastode.ode(lambda t, y, dy, p: None, dim=0)


# --- user functions that fail during the run ------------------------------------------------


@fastode.ode(dim=1, n_params=1, boundscheck=True)
def fails_later(t, y, dy, p):
    """dy/dt = -y. With p[0] = 1 it raises once y falls below 0.5. With
    p[0] = 2 it writes dy[1] of a one-component state once t passes 0.5, long
    after the probe at t0. One function serves both cases, so the tests
    compile one kernel per method."""
    if p[0] == 1.0 and y[0] < 0.5:
        raise ValueError("state fell below one half")
    dy[0] = -y[0]
    if p[0] == 2.0 and t > 0.5:
        dy[1] = 0.0


RAISES_BELOW_HALF = [1.0]
INDEXES_PAST_END_LATER = [2.0]


@pytest.mark.parametrize(("method", "options"), [("rk4", {"dt": 0.1}), ("dopri5", {})])
def test_late_index_error_names_function(method, options):
    with pytest.raises(IndexError, match="fails_later indexed an array out of range"):
        solve(fails_later(INDEXES_PAST_END_LATER), np.ones((100, 1)), (0.0, 1.0), method,
              threads=2, **options)


def test_unchecked_function_integrates():
    # The affine system is compiled without boundscheck, the default.
    assert not affine._compiled.boundscheck
    sol = solve(linear(-1.0), [[1.0], [2.0]], (0.0, 1.0), "rk4", dt=0.01)
    np.testing.assert_allclose(sol.y[:, 0], [math.exp(-1.0), 2 * math.exp(-1.0)], rtol=1e-9)


def test_boundscheck_must_be_bool():
    with pytest.raises(TypeError, match="boundscheck must be True or False, got 'yes'"):
        fastode.ode(lambda t, y, dy, p: None, dim=1, boundscheck="yes")


@pytest.mark.parametrize(("method", "options"), [("rk4", {"dt": 0.01}), ("dopri5", {})])
def test_raising_function_named(method, options):
    # One row of 200 reaches y < 0.5 (at t = ln 2); the others stay above it.
    y0 = np.full((200, 1), 2.0)
    y0[150] = 1.0
    with pytest.raises(ValueError, match="fails_later raised ValueError during the run: "
                                         "state fell below one half"):
        solve(fails_later(RAISES_BELOW_HALF), y0, (0.0, 1.0), method, threads=3, **options)


@pytest.mark.parametrize(("method", "options"), [("rk4", {"dt": 0.01}), ("dopri5", {})])
def test_raising_function_leaves_kernel_usable(method, options):
    y0 = np.full((200, 1), 2.0)
    y0[7] = 1.0
    with pytest.raises(ValueError, match="fails_later"):
        solve(fails_later(RAISES_BELOW_HALF), y0, (0.0, 1.0), method, threads=2, **options)
    sol = solve(fails_later(RAISES_BELOW_HALF), np.full((200, 1), 2.0), (0.0, 0.5), method,
                threads=2, **options)
    np.testing.assert_array_equal(sol.status, Status.SUCCESS)
    np.testing.assert_allclose(sol.y[:, 0], 2 * math.exp(-0.5), rtol=1e-6)
