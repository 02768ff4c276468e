"""Embedded pairs stepped with a fixed dt (``adaptive=False``): order,
evaluation counts, agreement with the adaptive driver's step, and the checks
on the new keyword, on the C++ core and the Numba backend."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import fastode
from fastode import _core

#: Order of each pair's solution and evaluations of f per fixed step: the
#: last stage of an FSAL pair has zero weight, so a fixed step skips it.
PAIRS = {"bs3": (3, 3), "dopri5": (5, 6), "tsit5": (5, 6)}

def halved(dt0, count=4):
    return np.array([dt0 / 2**i for i in range(count)])


@pytest.mark.parametrize("method", PAIRS)
def test_fixed_step_tableau_drops_the_unweighted_stage(method):
    pair, fixed = _core.tableaus()[method], _core.tableaus()[f"{method}_fixed"]
    stages = PAIRS[method][1]
    assert len(fixed["b"]) == stages
    assert not fixed["adaptive"]
    np.testing.assert_array_equal(fixed["b"], pair["b"][:stages])
    assert all(weight == 0.0 for weight in pair["b"][stages:])


@pytest.mark.parametrize("method", PAIRS)
def test_fixed_step_order(method, kepler_orbit, reference, order_of):
    """Half an eccentric Kepler orbit (nonlinear) and a driven oscillator (f
    depends on t, so the nodes c count), against scipy DOP853 at rtol 1e-13.
    The steps keep the finest error above the reference's own."""
    kepler, kepler_y0 = kepler_orbit
    cases = [
        (kepler, kepler_y0, np.pi, 0.02),
        (fastode.Oscillator(k=1.0, b=0.1, force=2.0, omega=3.0), np.array([0.5, 0.0]), 2.0, 0.2),
    ]
    for system, y0, t1, coarse_dt in cases:
        y_true = reference(system, y0, (0.0, t1), rtol=1e-13, atol=1e-13)
        dts = halved(coarse_dt)
        errors = []
        for dt in dts:
            sol = fastode.solve(system, y0, (0.0, t1), method=method, adaptive=False, dt=dt)
            assert sol.status == fastode.Status.SUCCESS
            errors.append(np.max(np.abs(sol.y - y_true)))
        assert order_of(dts, errors) == pytest.approx(PAIRS[method][0], abs=0.4), system


@pytest.mark.parametrize("method", PAIRS)
def test_fixed_step_counts(method):
    sol = fastode.solve(fastode.Linear([[-1.0]]), [1.0], (0.0, 1.0), method=method,
                        adaptive=False, dt=0.01)
    assert sol.stats["n_steps"] == 100
    assert sol.stats["n_accepted"] == 100
    assert sol.stats["n_rejected"] == 0
    assert sol.stats["n_rhs"] == 100 * PAIRS[method][1]
    assert sol.y[0] == pytest.approx(np.exp(-1.0), rel=1e-6)


@pytest.mark.parametrize("method", PAIRS)
def test_one_fixed_step_equals_an_accepted_adaptive_step(method):
    """A single step over the span: the adaptive driver accepts its first step
    dt at a loose tolerance, and both drivers form y1 from the same stages."""
    system = fastode.Oscillator(k=2.0, b=0.3, force=1.0, omega=2.0)
    y0 = np.array([[1.0, 0.5], [-0.3, 2.0]])
    fixed = fastode.solve(system, y0, (0.0, 0.05), method=method, adaptive=False, dt=0.05)
    free = fastode.solve(system, y0, (0.0, 0.05), method=method, dt=0.05, rtol=1e-2, atol=1e-2)
    assert np.all(free.stats["n_steps"] == 1)
    np.testing.assert_allclose(fixed.y, free.y, rtol=1e-15, atol=0)


def test_fixed_tsit5_dense_output_against_closed_form(oscillator_exact):
    """Fixed steps interpolate with the cubic Hermite polynomial, O(dt^4)."""
    t_eval = np.linspace(0.0, 2.0, 17)
    sol = fastode.solve(fastode.Oscillator(k=4.0, b=0.5), [1.0, 0.0], (0.0, 2.0),
                        t_eval=t_eval, method="tsit5", adaptive=False, dt=0.03)
    for row, t in zip(sol.y, t_eval, strict=True):
        np.testing.assert_allclose(row, oscillator_exact(4.0, 0.5, t), atol=2e-6)


def test_fixed_tsit5_backward_span():
    """E3 of EDGE_CASES.md with a fixed step that does not divide the span."""
    t_eval = [2.0, 1.5, 1.0, 0.5, 0.0]
    sol = fastode.solve(fastode.Linear([[-0.5]]), [1.0], (2.0, 0.0), t_eval=t_eval,
                        method="tsit5", adaptive=False, dt=0.3)
    np.testing.assert_array_equal(sol.t, t_eval)
    np.testing.assert_allclose(sol.y[:, 0], np.exp(0.5 * (2.0 - np.array(t_eval))), rtol=1e-5)


def test_fixed_tsit5_float32_lorenz_ensemble(reference):
    """The GPU ensemble workload on the CPU: float32, dt = 0.001, t in [0, 1],
    one rho per trajectory; each row against scipy in float64."""
    rho = np.linspace(0.0, 21.0, 8)
    system = fastode.Lorenz(rho=rho)
    y0 = np.tile(np.float32([1.0, 0.0, 0.0]), (8, 1))
    sol = fastode.solve(system, y0, (0.0, 1.0), method="tsit5", adaptive=False, dt=0.001)
    assert sol.y.dtype == np.float32
    assert np.all(sol.stats["n_steps"] == 1000)
    for i, r in enumerate(rho):
        y_true = reference(fastode.Lorenz(rho=r), [1.0, 0.0, 0.0], (0.0, 1.0))
        np.testing.assert_allclose(sol.y[i], y_true, rtol=2e-5, atol=2e-5)


def test_fixed_pair_non_finite_row_stops_at_last_finite_state():
    """y' = y^2 from y0 = 1 blows up at t = 1; a neighbour row is untouched."""
    def square(t, y, dy, p):
        dy[0] = y[0] * y[0]

    system = fastode.ode(square, dim=1)
    y0 = np.array([[1.0], [0.1]])
    sol = fastode.solve(system, y0, (0.0, 2.0), method="tsit5", adaptive=False, dt=0.01,
                        backend="numba")
    assert sol.status[0] == fastode.Status.NON_FINITE
    assert np.isfinite(sol.y[0]).all()
    assert sol.t_final[0] < 1.0 + 0.02
    assert sol.status[1] == fastode.Status.SUCCESS
    assert sol.y[1, 0] == pytest.approx(0.1 / (1.0 - 0.1 * 2.0), rel=1e-8)


@pytest.mark.parametrize("method", PAIRS)
def test_numba_fixed_pair_matches_core(method):
    def lorenz(t, y, dy, p):
        dy[0] = 10.0 * (y[1] - y[0])
        dy[1] = y[0] * (28.0 - y[2]) - y[1]
        dy[2] = y[0] * y[1] - 8.0 / 3.0 * y[2]

    y0 = np.random.default_rng(1).normal(size=(70, 3))
    kwargs = {"method": method, "adaptive": False, "dt": 0.01, "t_eval": [0.0, 0.33, 1.0]}
    core = fastode.solve(fastode.Lorenz(), y0, (0.0, 1.0), **kwargs)
    numba = fastode.solve(fastode.ode(lorenz, dim=3), y0, (0.0, 1.0), backend="numba",
                          **kwargs)
    np.testing.assert_allclose(numba.y, core.y, rtol=1e-11, atol=1e-11)
    for stat in ("n_steps", "n_rhs", "n_rejected"):
        np.testing.assert_array_equal(numba.stats[stat], core.stats[stat])


def test_distributed_fixed_pair_matches_solve():
    distributed = pytest.importorskip("distributed")
    import fastode.distributed as fd

    system = fastode.Lorenz(rho=np.linspace(0.0, 21.0, 50))
    y0 = np.tile([1.0, 0.0, 0.0], (50, 1))
    kwargs = {"method": "tsit5", "adaptive": False, "dt": 0.01}
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1,
                            dashboard_address="127.0.0.1:0") as client:
        spread = fd.solve(system, y0, (0.0, 1.0), client=client, chunk_size=16, **kwargs)
    one = fastode.solve(system, y0, (0.0, 1.0), **kwargs)
    np.testing.assert_array_equal(spread.y, one.y)
    assert spread.method == "tsit5"


# --- the adaptive keyword and the tolerances ---------------------------------------


def test_adaptive_true_is_the_default_for_pairs():
    kwargs = {"method": "dopri5", "rtol": 1e-8}
    default = fastode.solve(fastode.Lorenz(), [1.0, 1.0, 20.0], (0.0, 1.0), **kwargs)
    explicit = fastode.solve(fastode.Lorenz(), [1.0, 1.0, 20.0], (0.0, 1.0), adaptive=True,
                             **kwargs)
    np.testing.assert_array_equal(default.y, explicit.y)
    assert explicit.stats["n_rejected"] >= 0


def test_adaptive_must_be_a_bool():
    with pytest.raises(TypeError, match=r"adaptive must be True, False or None, got 'no'"):
        fastode.solve(fastode.Lorenz(), [1.0, 0.0, 0.0], (0.0, 1.0), adaptive="no")


@pytest.mark.parametrize("method", ["rk4", "euler"])
def test_adaptive_true_needs_an_error_estimate(method):
    with pytest.raises(ValueError, match=rf"method='{method}' only takes fixed steps"):
        fastode.solve(fastode.Lorenz(), [1.0, 0.0, 0.0], (0.0, 1.0), method=method, dt=0.1,
                      adaptive=True)


def test_adaptive_false_needs_dt():
    with pytest.raises(ValueError, match=r"method='tsit5' with adaptive=False takes a fixed step: pass dt"):
        fastode.solve(fastode.Lorenz(), [1.0, 0.0, 0.0], (0.0, 1.0), method="tsit5",
                      adaptive=False)


@pytest.mark.parametrize("extra", [{"rtol": 1e-3}, {"atol": 1e-3}])
@pytest.mark.parametrize("method", ["rk4", "tsit5"])
def test_fixed_step_tolerances_warn(method, extra):
    with pytest.warns(UserWarning, match=rf"rtol and atol have no effect with method='{method}'"):
        fastode.solve(fastode.Lorenz(), [1.0, 0.0, 0.0], (0.0, 1.0), method=method, dt=0.1,
                      adaptive=False if method == "tsit5" else None, **extra)


def test_fixed_step_default_tolerances_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fastode.solve(fastode.Lorenz(), [1.0, 0.0, 0.0], (0.0, 1.0), method="rk4", dt=0.1)
        fastode.solve(fastode.Hamiltonian("harmonic"), [1.0, 0.0], (0.0, 1.0),
                      method="verlet", dt=0.1)
