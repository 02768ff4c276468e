"""Embedded pairs stepped with a fixed dt (``adaptive=False``): order,
evaluation counts, agreement with the adaptive driver's step, and the checks
on the new keyword, on the C++ core and the Numba backend."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from test_numba import affine

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


def test_fixed_pair_non_finite_row():
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
    local = fastode.solve(system, y0, (0.0, 1.0), **kwargs)
    np.testing.assert_array_equal(spread.y, local.y)
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


# --- edge cases of EDGE_CASES.md with adaptive=False, on the core and Numba --------------
#
# E2, E8 and E9 are argument checks that do not depend on the method, and E5
# is about the initial step guess, which fixed steps do not make.

BACKENDS = ["cpp", "numba"]
#: Error bound with dt = 0.3 on the backward decay: O(dt^order) at the step
#: ends and the O(dt^4) cubic Hermite interpolant between them.
BACKWARD_ATOL = {"bs3": 1e-3, "dopri5": 1e-5, "tsit5": 1e-5}
BACKWARD_T = [2.0, 1.5, 1.0, 0.5, 0.0]
BACKWARD_Y = [1.0, 1.28402542, 1.64872127, 2.11700002, 2.71828183]


def decay(backend, rates):
    """y' = rate y, one rate per trajectory (or one shared), on `backend`."""
    rates = np.asarray(rates, dtype=float)
    if backend == "cpp":
        return fastode.Linear(rates.reshape(-1, 1, 1) if rates.ndim else [[float(rates)]])
    record = np.broadcast_to([np.inf, -np.inf], rates.shape + (2,))
    zeros = np.zeros(rates.shape + (3,))
    return affine(np.concatenate([rates[..., None], zeros, record], axis=-1))


def fixed(method, dt, backend, **options):
    return {"method": method, "adaptive": False, "dt": dt, "backend": backend, **options}


@pytest.mark.parametrize("method", PAIRS)
def test_fixed_pair_step_beyond_short_span_stays_inside(method):
    """E1: dt = 1 over the span (0, 1e-4) is cut to one step that ends at t1,
    and f is never called outside the span."""
    system = decay("numba", 2.0)
    sol = fastode.solve(system, [1.0], (0.0, 1e-4), **fixed(method, 1.0, "numba"))
    assert sol.stats["n_steps"] == 1
    assert abs(sol.y[0] / 1.0002000200013335 - 1.0) < 1e-10
    t_min, t_max = system.params[4], system.params[5]
    assert t_min >= 0.0
    assert t_max <= 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", PAIRS)
def test_fixed_pair_backward_span(method, backend):
    """E3: dt = 0.3 does not divide the span 2, so the last step is shortened."""
    sol = fastode.solve(decay(backend, -0.5), [1.0], (2.0, 0.0), t_eval=BACKWARD_T,
                        **fixed(method, 0.3, backend))
    assert sol.status == fastode.Status.SUCCESS
    assert sol.t_final == 0.0
    assert sol.stats["n_steps"] == 7
    np.testing.assert_array_equal(sol.t, BACKWARD_T)
    np.testing.assert_allclose(sol.y[:, 0], BACKWARD_Y, rtol=0, atol=BACKWARD_ATOL[method])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", PAIRS)
def test_fixed_pair_zero_length_span(method, backend):
    """E4: exactly y0, no step and no evaluation of f."""
    y0 = np.array([[1.0], [-2.0]])
    final = fastode.solve(decay(backend, -1.0), y0, (0.0, 0.0), **fixed(method, 0.1, backend))
    dense = fastode.solve(decay(backend, -1.0), y0, (3.0, 3.0), t_eval=[3.0],
                          **fixed(method, 0.1, backend))
    np.testing.assert_array_equal(final.y, y0)
    np.testing.assert_array_equal(dense.y[:, 0, :], y0)
    for sol in (final, dense):
        assert np.all(sol.status == fastode.Status.SUCCESS)
        np.testing.assert_array_equal(sol.stats["n_steps"], [0, 0])
        np.testing.assert_array_equal(sol.stats["n_rhs"], [0, 0])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", PAIRS)
def test_fixed_pair_non_finite_rows(method, backend):
    """E6: rows with a NaN rate, a NaN start and an infinite start fail.
    Rows 0 and 2 match their closed forms, and their runs alone bit for bit."""
    rates = np.array([-1.0, np.nan, -2.0, -1.0, -1.0])
    y0 = np.array([[1.0], [1.0], [1.0], [np.nan], [np.inf]])
    options = fixed(method, 0.01, backend)
    sol = fastode.solve(decay(backend, rates), y0, (0.0, 1.0), **options)
    assert list(sol.status) == [fastode.Status.SUCCESS, fastode.Status.NON_FINITE,
                                fastode.Status.SUCCESS, fastode.Status.NON_FINITE,
                                fastode.Status.NON_FINITE]
    np.testing.assert_allclose(sol.y[0, 0], 0.36787944117144233, rtol=1e-6)
    np.testing.assert_allclose(sol.y[2, 0], 0.1353352832366127, rtol=1e-6)
    for row in (3, 4):
        assert sol.stats["n_steps"][row] == 0
    for row in (0, 2):
        alone = fastode.solve(decay(backend, rates[row]), y0[row], (0.0, 1.0), **options)
        assert sol.y[row, 0] == alone.y[0]
        for name in ("n_steps", "n_accepted", "n_rhs"):
            assert sol.stats[name][row] == alone.stats[name], name


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", PAIRS)
def test_fixed_pair_max_steps_counts_whole_run(method, backend):
    """E7 for fixed steps: 1000 steps of dt = 1e-3 reach t = 1 of the span
    (0, 10), outputs up to there follow e^-t and later ones are NaN."""
    t_eval = np.linspace(0.0, 10.0, 101)
    with pytest.warns(RuntimeWarning, match="stopped with MAX_STEPS"):
        sol = fastode.solve(decay(backend, -1.0), [1.0], (0.0, 10.0), t_eval=t_eval,
                            max_steps=1000, **fixed(method, 1e-3, backend))
    assert sol.status == fastode.Status.MAX_STEPS
    assert sol.stats["n_steps"] == 1000
    assert sol.t_final == pytest.approx(1.0, rel=1e-12)
    reached = t_eval <= 1.0 + 1e-12
    np.testing.assert_allclose(sol.y[reached, 0], np.exp(-t_eval[reached]), rtol=1e-8)
    assert np.all(np.isnan(sol.y[~reached]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", PAIRS)
def test_fixed_pair_batch_shapes(method, backend):
    """E10: a batch of one, one 1-D state and an empty batch."""
    t_eval = [0.0, 0.5, 1.0]
    options = fixed(method, 0.01, backend, t_eval=t_eval)
    batch = fastode.solve(decay(backend, -2.0), [[3.0]], (0.0, 1.0), **options)
    single = fastode.solve(decay(backend, -2.0), [3.0], (0.0, 1.0), **options)
    empty = fastode.solve(decay(backend, -2.0), np.zeros((0, 1)), (0.0, 1.0), **options)
    np.testing.assert_allclose(batch.y[0, :, 0], [3.0, 1.103638323514327, 0.4060058497098381],
                               rtol=1e-5)
    np.testing.assert_array_equal(single.y, batch.y[0])
    assert np.ndim(single.status) == 0
    assert empty.y.shape == (0, 3, 1)
    assert empty.status.shape == (0,)
    assert empty.success


@pytest.mark.parametrize("method", PAIRS)
def test_fixed_step_evaluations_match_adaptive(method):
    """An accepted adaptive step evaluates f as often as a fixed step,
    because an FSAL pair reuses its last stage as the next step's first. The
    adaptive run adds one evaluation at t0."""
    system = fastode.Linear([[-1.0]])
    free = fastode.solve(system, [1.0], (0.0, 1.0), method=method, dt=0.1, rtol=1e-1, atol=1e-1)
    steps = int(free.stats["n_steps"])
    assert free.stats["n_rejected"] == 0
    fixed_run = fastode.solve(system, [1.0], (0.0, 1.0), method=method, adaptive=False,
                              dt=1.0 / steps)
    assert fixed_run.stats["n_steps"] == steps
    assert fixed_run.stats["n_rhs"] == free.stats["n_rhs"] - 1


def test_fixed_step_pi_controller_warns():
    with pytest.warns(UserWarning, match="controller='pi' has no effect with method='tsit5'"):
        fastode.solve(fastode.Lorenz(), [1.0, 0.0, 0.0], (0.0, 1.0), method="tsit5",
                      adaptive=False, dt=0.1, controller="pi")
