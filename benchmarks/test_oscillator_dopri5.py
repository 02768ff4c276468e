"""dopri5, rtol 1e-6, atol 1e-9, 10 000 damped oscillators: fastode against
`scipy.integrate.solve_ivp` (RK45, the same Dormand-Prince pair) called once
per trajectory, as a user without a batched solver would."""

import numpy as np
import pytest
from oscillator_problem import T1, B, K, initial_states, max_error

import fastode

integrate = pytest.importorskip("scipy.integrate")

N = 10_000
#: solve_ivp is timed on this many trajectories and the time scaled to N.
SAMPLE = 20
RTOL, ATOL = 1e-6, 1e-9
CASE = f"dopri5, rtol {RTOL:g}, atol {ATOL:g}, {N:,} trajectories"
#: Both solvers reach a max error of about 2.5e-7 on this problem. The
#: bound leaves a margin of 40 and still catches a wrong step or tableau.
ERROR_BOUND = 1e-5


def fastode_dopri5(y0, threads):
    system = fastode.Oscillator(k=K, b=B)
    sol = fastode.solve(
        system, y0, (0.0, T1), method="dopri5", rtol=RTOL, atol=ATOL, threads=threads
    )
    return sol.y


def oscillator_rhs(t, y):
    return [y[1], -K * y[0] - B * y[1]]


def scipy_loop(y0):
    """Integrate each trajectory with its own solve_ivp call."""
    y = np.empty_like(y0)
    for i, row in enumerate(y0):
        result = integrate.solve_ivp(
            oscillator_rhs, (0.0, T1), row, method="RK45", rtol=RTOL, atol=ATOL
        )
        y[i] = result.y[:, -1]
    return y


@pytest.fixture(scope="module")
def y0():
    return initial_states(N)


def test_dopri5_fastode(benchmark, record, y0, threads):
    benchmark.group = CASE
    y = benchmark.pedantic(
        fastode_dopri5, args=(y0, threads), rounds=10, iterations=1, warmup_rounds=1
    )
    error = max_error(y, y0)
    record(CASE, "fastode", error)
    assert error < ERROR_BOUND


def test_dopri5_scipy_sample(benchmark, record, y0):
    benchmark.group = CASE
    sample = y0[:SAMPLE]
    y = benchmark.pedantic(scipy_loop, args=(sample,), rounds=3, iterations=1)
    error = max_error(y, sample)
    note = f"timed on {SAMPLE} trajectories, scaled by {N // SAMPLE}"
    record(CASE, "scipy solve_ivp loop", error, scale=N / SAMPLE, note=note)
    assert error < ERROR_BOUND
