"""One failing trajectory must not change any other trajectory's result.

Every comparison here is exact (np.array_equal): a trajectory's arithmetic
must not depend on its neighbours in a SIMD block, on the batch size, or on
the number of threads.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastode
from fastode import Status

N = 1000
BAD = 517  # inside a SIMD block, not at a block edge
SAMPLES = (0, 1, BAD - 1, BAD + 1, 998, 999)
STATS = ("n_steps", "n_accepted", "n_rejected", "n_rhs")
RUNS = {
    "dopri5": {"method": "dopri5", "rtol": 1e-8, "atol": 1e-10},
    "rk4": {"method": "rk4", "dt": 0.01},
}


def oscillator_batch():
    rng = np.random.default_rng(42)
    k = rng.uniform(0.5, 5.0, N)
    b = rng.uniform(0.0, 1.0, N)
    y0 = rng.standard_normal((N, 2))
    return k, b, y0


def solve_batch(k, b, y0, t_eval=None, threads=2, **run):
    return fastode.solve(fastode.Oscillator(k=k, b=b), y0, (0.0, 5.0), t_eval=t_eval, threads=threads, **run)


def assert_rows_equal(sol, other, rows, other_rows=None):
    other_rows = rows if other_rows is None else other_rows
    assert np.array_equal(sol.y[rows], other.y[other_rows], equal_nan=True)
    assert np.array_equal(sol.status[rows], other.status[other_rows])
    assert np.array_equal(sol.t_final[rows], other.t_final[other_rows])
    for name in STATS:
        assert np.array_equal(sol.stats[name][rows], other.stats[name][other_rows]), name


def poisoned(k, y0, kind):
    k, y0 = k.copy(), y0.copy()
    if kind == "huge_k":
        k[BAD] = -1e300
    elif kind == "nan_y0":
        y0[BAD, 0] = np.nan
    else:
        y0[BAD, 1] = np.inf
    return k, y0


@pytest.mark.parametrize("kind", ["huge_k", "nan_y0", "inf_y0"])
@pytest.mark.parametrize("run", RUNS)
def test_one_divergent_row_leaves_others_unchanged(run, kind):
    k, b, y0 = oscillator_batch()
    t_eval = np.linspace(0.0, 5.0, 11)
    clean = solve_batch(k, b, y0, t_eval, **RUNS[run])
    bad_k, bad_y0 = poisoned(k, y0, kind)
    sol = solve_batch(bad_k, b, bad_y0, t_eval, **RUNS[run])

    assert sol.status[BAD] == Status.NON_FINITE
    assert clean.success
    others = np.delete(np.arange(N), BAD)
    assert np.all(sol.status[others] == Status.SUCCESS)
    assert_rows_equal(sol, clean, others)
    # The failed row is NaN after the last output time it reached.
    assert np.isnan(sol.y[BAD, -1]).all()


@pytest.mark.parametrize("run", RUNS)
def test_batch_rows_equal_solo_runs(run):
    k, b, y0 = oscillator_batch()
    k, y0 = poisoned(k, y0, "huge_k")
    t_eval = np.linspace(0.0, 5.0, 11)
    batch = solve_batch(k, b, y0, t_eval, **RUNS[run])
    for i in (*SAMPLES, BAD):
        alone = solve_batch(k[i], b[i], y0[i : i + 1], t_eval, **RUNS[run])
        assert_rows_equal(batch, alone, [i], [0])


@pytest.mark.parametrize("run", RUNS)
def test_final_state_equal_with_and_without_t_eval(run):
    """Output times do not change the steps the integrator takes."""
    k, b, y0 = oscillator_batch()
    dense = solve_batch(k, b, y0, np.linspace(0.0, 5.0, 11), **RUNS[run])
    final = solve_batch(k, b, y0, **RUNS[run])
    assert np.array_equal(dense.y[:, -1], final.y)
    assert np.array_equal(dense.stats["n_steps"], final.stats["n_steps"])


@pytest.mark.parametrize("run", RUNS)
def test_threads_do_not_change_results(run):
    k, b, y0 = oscillator_batch()
    k, y0 = poisoned(k, y0, "huge_k")
    t_eval = np.linspace(0.0, 5.0, 11)
    serial = solve_batch(k, b, y0, t_eval, threads=1, **RUNS[run])
    parallel = solve_batch(k, b, y0, t_eval, threads=2, **RUNS[run])
    assert_rows_equal(serial, parallel, np.arange(N))


def test_max_steps_row_leaves_others_unchanged():
    """A stiff row exhausts max_steps; the others finish as if alone."""
    rng = np.random.default_rng(3)
    n = 40
    k = rng.uniform(0.5, 2.0, n)
    k[13] = 1e8
    y0 = rng.standard_normal((n, 2))
    run = {"method": "tsit5", "rtol": 1e-6, "atol": 1e-9, "max_steps": 2000}
    with pytest.warns(fastode.StiffnessWarning, match="1 of 40 trajectories"):
        sol = solve_batch(k, 0.1, y0, **run)
    assert sol.status[13] == Status.MAX_STEPS
    assert sol.stats["n_steps"][13] == 2000
    assert np.isfinite(sol.y[13]).all()
    assert 0.0 < sol.t_final[13] < 5.0
    for i in (0, 12, 14, 39):
        alone = solve_batch(k[i], 0.1, y0[i : i + 1], **run)
        assert_rows_equal(sol, alone, [i], [0])


def test_shuffled_batch_gives_same_rows():
    """Moving trajectories to other blocks leaves their results unchanged."""
    k, b, y0 = oscillator_batch()
    order = np.random.default_rng(1).permutation(N)
    sol = solve_batch(k, b, y0, **RUNS["dopri5"])
    shuffled = solve_batch(k[order], b[order], y0[order], **RUNS["dopri5"])
    assert_rows_equal(sol, shuffled, order, np.arange(N))


def test_per_trajectory_linear_matrices():
    """Linear with one A per row: each row matches its solo run exactly."""
    rng = np.random.default_rng(5)
    n, d = 37, 3
    A = rng.standard_normal((n, d, d)) - 2 * np.eye(d)
    y0 = rng.standard_normal((n, d))
    run = {"method": "dopri5", "rtol": 1e-9, "atol": 1e-12}
    sol = fastode.solve(fastode.Linear(A), y0, (0.0, 2.0), **run)
    for i in (0, 16, 36):
        alone = fastode.solve(fastode.Linear(A[i]), y0[i : i + 1], (0.0, 2.0), **run)
        assert_rows_equal(sol, alone, [i], [0])
