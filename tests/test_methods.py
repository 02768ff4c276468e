"""Properties of each integration method: tableaus, observed orders of
convergence, error against tolerance, and energy behaviour of symplectic
methods."""

from __future__ import annotations

import numpy as np
import pytest

import fastode
from fastode import _core

FIXED_ORDERS = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}
SYMPLECTIC_ORDERS = {"symplectic_euler": 1, "verlet": 2, "yoshida4": 4, "yoshida6": 6}
ADAPTIVE_METHODS = ("bs3", "dopri5", "tsit5")

# Step sizes per method: coarse enough that round-off stays far below the
# truncation error at the finest step, fine enough to be in the asymptotic range.
FIXED_DT = {"euler": 0.01, "midpoint": 0.02, "heun": 0.02, "rk4": 0.1}
SYMPLECTIC_DT = {"symplectic_euler": 0.01, "verlet": 0.05, "yoshida4": 0.1, "yoshida6": 0.4}
HALVINGS = 4

# Damped oscillator x'' + 0.5 x' + 4 x = 0, x(0) = 1, v(0) = 0.
K, B = 4.0, 0.5


def halved(dt0):
    return np.array([dt0 / 2**i for i in range(HALVINGS)])


# --- tableaus -----------------------------------------------------------------


@pytest.fixture(scope="module")
def tableaus():
    return _core.tableaus()


def test_tableaus_cover_every_rk_method(tableaus):
    expected = {m for m, kind in fastode.METHODS.items() if kind != "symplectic"}
    fixed_pairs = {f"{m}_fixed" for m in ADAPTIVE_METHODS}
    assert set(tableaus) == expected | fixed_pairs


@pytest.mark.parametrize("method", [*FIXED_ORDERS, *ADAPTIVE_METHODS])
def test_tableau_row_sums_equal_c(tableaus, method):
    a = np.array(tableaus[method]["a"])
    c = np.array(tableaus[method]["c"])
    np.testing.assert_allclose(a.sum(axis=1), c, rtol=0, atol=1e-15)


@pytest.mark.parametrize("method", [*FIXED_ORDERS, *ADAPTIVE_METHODS])
def test_tableau_a_strictly_lower(tableaus, method):
    a = np.array(tableaus[method]["a"])
    assert a.shape[0] == a.shape[1]
    assert np.all(np.triu(a) == 0)


@pytest.mark.parametrize("method", [*FIXED_ORDERS, *ADAPTIVE_METHODS])
def test_tableau_weights_sum_to_one(tableaus, method):
    b = np.array(tableaus[method]["b"])
    assert abs(b.sum() - 1.0) < 1e-15


@pytest.mark.parametrize("method", [*FIXED_ORDERS, *ADAPTIVE_METHODS])
def test_tableau_declared_order(tableaus, method):
    expected = FIXED_ORDERS.get(method, {"bs3": 3, "dopri5": 5, "tsit5": 5}.get(method))
    assert tableaus[method]["order"] == expected


@pytest.mark.parametrize("method", ADAPTIVE_METHODS)
def test_tableau_error_weights_sum_to_zero(tableaus, method):
    table = tableaus[method]
    assert table["adaptive"]
    b_err = np.array(table["b_err"])
    assert b_err.shape == np.array(table["b"]).shape
    assert abs(b_err.sum()) < 1e-15


@pytest.mark.parametrize("method", ADAPTIVE_METHODS)
def test_tableau_fsal(tableaus, method):
    """The last stage is evaluated at y1, so it can serve as f(t1, y1)."""
    table = tableaus[method]
    np.testing.assert_allclose(table["a"][-1], table["b"], rtol=0, atol=1e-15)
    assert table["c"][-1] == 1.0


@pytest.mark.parametrize("method", ["verlet", "yoshida4", "yoshida6"])
def test_symplectic_weights_sum_to_one(method):
    weights, order = _core.symplectic_weights()[method]
    assert abs(sum(weights) - 1.0) < 1e-14
    assert order == SYMPLECTIC_ORDERS[method]


@pytest.mark.parametrize("method", ["verlet", "yoshida4", "yoshida6"])
def test_symplectic_weights_palindromic(method):
    """Symmetric compositions are time-reversible, which gives even order."""
    weights, _ = _core.symplectic_weights()[method]
    assert weights == weights[::-1]


# --- convergence of fixed-step methods ----------------------------------------


def fixed_error_oscillator(method, dt, oscillator_exact):
    t1 = 2.0
    sol = fastode.solve(fastode.Oscillator(k=K, b=B), [1.0, 0.0], (0.0, t1), method=method, dt=dt)
    assert sol.status == fastode.Status.SUCCESS
    return np.max(np.abs(sol.y - oscillator_exact(K, B, t1)))


@pytest.mark.parametrize("method", FIXED_ORDERS)
def test_fixed_order_linear(method, oscillator_exact, order_of):
    dts = halved(FIXED_DT[method])
    errors = [fixed_error_oscillator(method, dt, oscillator_exact) for dt in dts]
    assert order_of(dts, errors) == pytest.approx(FIXED_ORDERS[method], abs=0.2)


@pytest.mark.parametrize("method", FIXED_ORDERS)
def test_fixed_order_nonlinear(method, reference, order_of):
    """Lorenz and a driven (time-dependent) oscillator, against scipy.

    A linear autonomous problem cannot tell midpoint from heun, nor check
    the nodes c, so these problems are nonlinear or depend on t.
    """
    cases = [
        (fastode.Lorenz(), np.array([1.0, 1.0, 20.0]), 0.5),
        (fastode.Oscillator(k=1.0, b=0.1, force=2.0, omega=3.0), np.array([0.5, 0.0]), 2.0),
    ]
    dts = halved(FIXED_DT[method] / 4)
    for system, y0, t1 in cases:
        y_true = reference(system, y0, (0.0, t1))
        errors = []
        for dt in dts:
            sol = fastode.solve(system, y0, (0.0, t1), method=method, dt=dt)
            errors.append(np.max(np.abs(sol.y - y_true)))
        assert order_of(dts, errors) == pytest.approx(FIXED_ORDERS[method], abs=0.2), system


@pytest.mark.parametrize("method", SYMPLECTIC_ORDERS)
def test_symplectic_order_harmonic(method, order_of):
    t1 = 10.0
    dts = halved(SYMPLECTIC_DT[method])
    exact = np.array([np.cos(t1), -np.sin(t1)])
    errors = []
    for dt in dts:
        sol = fastode.solve(fastode.Hamiltonian("harmonic"), [1.0, 0.0], (0.0, t1), method=method, dt=dt)
        errors.append(np.max(np.abs(sol.y - exact)))
    assert order_of(dts, errors) == pytest.approx(SYMPLECTIC_ORDERS[method], abs=0.2)


@pytest.mark.parametrize("method", SYMPLECTIC_ORDERS)
def test_symplectic_order_kepler(method, kepler_orbit, reference, order_of):
    """Half an eccentric orbit, through perihelion's fast swing at the start."""
    system, y0 = kepler_orbit
    t1 = np.pi
    y_true = reference(system, y0, (0.0, t1))
    dts = halved(SYMPLECTIC_DT[method] / 8)
    errors = []
    for dt in dts:
        sol = fastode.solve(system, y0, (0.0, t1), method=method, dt=dt)
        errors.append(np.max(np.abs(sol.y - y_true)))
    assert order_of(dts, errors) == pytest.approx(SYMPLECTIC_ORDERS[method], abs=0.2)


def test_fixed_step_counts():
    """A span of 1 with dt = 0.01 takes exactly 100 steps of 4 evaluations."""
    sol = fastode.solve(fastode.Linear([[-1.0]]), [1.0], (0.0, 1.0), method="rk4", dt=0.01)
    assert sol.stats["n_steps"] == 100
    assert sol.stats["n_accepted"] == 100
    assert sol.stats["n_rejected"] == 0
    assert sol.stats["n_rhs"] == 400


# --- adaptive methods -----------------------------------------------------------

# bs3 steers a third-order solution by a second-order error estimate. Its global
# error on this problem is about 15 tolerance units, as is that of scipy's RK23,
# the same pair. The fifth-order pairs stay near 2.
ADAPTIVE_BOUND = {"bs3": 20.0, "dopri5": 5.0, "tsit5": 5.0}
TOLERANCES = (1e-4, 1e-6, 1e-8, 1e-10)


@pytest.mark.parametrize("method", ADAPTIVE_METHODS)
def test_adaptive_error_within_tolerance(method, oscillator_exact, in_tolerance_units):
    t1 = 10.0
    y_true = oscillator_exact(K, B, t1)
    for rtol in TOLERANCES:
        sol = fastode.solve(
            fastode.Oscillator(k=K, b=B), [1.0, 0.0], (0.0, t1), method=method, rtol=rtol, atol=rtol
        )
        assert sol.status == fastode.Status.SUCCESS
        units = in_tolerance_units(sol.y, y_true, rtol, rtol)
        assert units < ADAPTIVE_BOUND[method], (rtol, units)


@pytest.mark.parametrize("method", ADAPTIVE_METHODS)
def test_adaptive_dense_output_within_tolerance(method, oscillator_exact, in_tolerance_units):
    """The states at t_eval are as accurate as the steps themselves."""
    t1 = 10.0
    t_eval = np.linspace(0.0, t1, 41)
    y_true = oscillator_exact(K, B, t_eval)
    for rtol in TOLERANCES:
        sol = fastode.solve(
            fastode.Oscillator(k=K, b=B), [1.0, 0.0], (0.0, t1), t_eval=t_eval,
            method=method, rtol=rtol, atol=rtol,
        )
        units = in_tolerance_units(sol.y, y_true, rtol, rtol)
        assert units < ADAPTIVE_BOUND[method], (rtol, units)


@pytest.mark.parametrize("method", ADAPTIVE_METHODS)
def test_adaptive_fewer_steps_at_looser_tolerance(method):
    steps = []
    for rtol in TOLERANCES:
        sol = fastode.solve(
            fastode.Oscillator(k=K, b=B), [1.0, 0.0], (0.0, 10.0), method=method, rtol=rtol, atol=rtol
        )
        steps.append(int(sol.stats["n_steps"]))
    assert steps == sorted(steps)
    assert steps[0] < steps[-1] / 4


@pytest.mark.parametrize("method", ADAPTIVE_METHODS)
def test_adaptive_stats_consistent(method):
    sol = fastode.solve(fastode.Lorenz(), [1.0, 1.0, 20.0], (0.0, 2.0), method=method, rtol=1e-8, atol=1e-8)
    stats = sol.stats
    assert stats["n_steps"] == stats["n_accepted"] + stats["n_rejected"]
    stages = len(_core.tableaus()[method]["b"])
    # FSAL: one evaluation to start, one for the initial step guess, then
    # stages - 1 per attempted step.
    assert stats["n_rhs"] == 2 + (stages - 1) * stats["n_steps"]


@pytest.mark.parametrize("method", ADAPTIVE_METHODS)
def test_adaptive_kepler(method, kepler_orbit, reference):
    """One full eccentric orbit at rtol 1e-10, against scipy DOP853."""
    system, y0 = kepler_orbit
    t_eval = np.linspace(0.0, 2 * np.pi, 9)
    y_true = reference(system, y0, (0.0, 2 * np.pi), t_eval=t_eval)
    sol = fastode.solve(system, y0, (0.0, 2 * np.pi), method=method, rtol=1e-10, atol=1e-12)
    assert sol.status == fastode.Status.SUCCESS
    np.testing.assert_allclose(sol.y, y_true[-1], rtol=0, atol=1e-7)
    # The orbit closes: the state after one period is the initial state.
    np.testing.assert_allclose(sol.y, y0, rtol=0, atol=1e-7)
    dense = fastode.solve(
        system, y0, (0.0, 2 * np.pi), t_eval=t_eval, method=method, rtol=1e-10, atol=1e-12
    )
    np.testing.assert_allclose(dense.y, y_true, rtol=0, atol=1e-7)


@pytest.mark.parametrize("controller", ["i", "pi"])
def test_controllers_reach_tolerance(controller, oscillator_exact, in_tolerance_units):
    sol = fastode.solve(
        fastode.Oscillator(k=K, b=B), [1.0, 0.0], (0.0, 10.0), rtol=1e-8, atol=1e-8,
        controller=controller,
    )
    units = in_tolerance_units(sol.y, oscillator_exact(K, B, 10.0), 1e-8, 1e-8)
    assert units < 5.0


# --- energy over long runs ----------------------------------------------------

N_LONG = 100_000


def energy_error(system, y0, method, dt, n_samples=101):
    """Absolute energy error at n_samples evenly spaced times of N_LONG steps."""
    t1 = N_LONG * dt
    t_eval = np.linspace(0.0, t1, n_samples)
    sol = fastode.solve(system, y0, (0.0, t1), t_eval=t_eval, method=method, dt=dt)
    assert sol.status == fastode.Status.SUCCESS
    assert sol.stats["n_accepted"] == N_LONG
    return np.abs(system.energy(sol.y) - system.energy(np.asarray(y0)))


@pytest.mark.parametrize("method", ["verlet", "yoshida4"])
def test_symplectic_energy_bounded_harmonic(method):
    system = fastode.Hamiltonian("harmonic")
    errors = energy_error(system, [1.0, 0.0], method, dt=0.1)
    bound = {"verlet": 0.1**2 / 4, "yoshida4": 1e-4}[method]
    assert errors.max() < bound
    # No drift: the error in the last tenth is no larger than in the first.
    assert errors[-10:].max() < 2 * errors[:11].max()


@pytest.mark.parametrize("method", ["verlet", "yoshida4"])
def test_symplectic_energy_bounded_kepler(method, kepler_orbit):
    system, y0 = kepler_orbit
    errors = energy_error(system, y0, method, dt=0.005)
    assert errors.max() < 0.05
    assert errors[-10:].max() < 2 * errors[:11].max()


def test_rk4_energy_drifts_harmonic():
    system = fastode.Hamiltonian("harmonic")
    dt = 0.1
    errors = energy_error(system, [1.0, 0.0], "rk4", dt=dt)
    # One rk4 step multiplies (q, p) rotated into q + i p by the stability
    # polynomial R(-i dt), so the energy after n steps is E0 |R|^(2 n),
    # a loss of about n dt^6 / 72: it grows linearly instead of staying bounded.
    z = -1j * dt
    gain = abs(1 + z + z**2 / 2 + z**3 / 6 + z**4 / 24) ** 2
    expected = 0.5 * (1.0 - gain**N_LONG)
    assert errors[-1] == pytest.approx(expected, rel=1e-6)
    assert errors[-1] > 5 * errors[10]


def test_rk4_energy_drifts_kepler(kepler_orbit):
    system, y0 = kepler_orbit
    errors = energy_error(system, y0, "rk4", dt=0.005)
    assert errors[-1] > 5 * errors[10]
