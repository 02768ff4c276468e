"""RK4, dt = 0.01, 1000 steps, 100 000 damped oscillators: fastode against
a NumPy RK4 vectorized over the batch and a Numba loop over trajectories."""

import numpy as np
import pytest
from oscillator_problem import T1, B, K, initial_states, max_error

import fastode

numba = pytest.importorskip("numba")

N = 100_000
DT = 0.01
N_STEPS = 1000
CASE = f"rk4, dt {DT}, {N_STEPS} steps, {N:,} trajectories"
#: RK4 at dt = 0.01 reaches about 1e-10 on this problem; a wrong step count
#: or stage formula gives an error many orders of magnitude larger.
ERROR_BOUND = 1e-8


def fastode_rk4(y0, threads):
    system = fastode.Oscillator(k=K, b=B)
    sol = fastode.solve(system, y0, (0.0, T1), method="rk4", dt=DT, threads=threads)
    return sol.y


def numpy_rk4(y0, threads):
    """Advance all trajectories together, one NumPy expression per stage.

    ``threads`` is unused, because NumPy runs elementwise operations on one
    thread.
    """
    x, v = y0[:, 0].copy(), y0[:, 1].copy()
    half = 0.5 * DT
    for _ in range(N_STEPS):
        ax1 = -K * x - B * v
        x2, v2 = x + half * v, v + half * ax1
        ax2 = -K * x2 - B * v2
        x3, v3 = x + half * v2, v + half * ax2
        ax3 = -K * x3 - B * v3
        x4, v4 = x + DT * v3, v + DT * ax3
        ax4 = -K * x4 - B * v4
        x = x + DT / 6 * (v + 2 * v2 + 2 * v3 + v4)
        v = v + DT / 6 * (ax1 + 2 * ax2 + 2 * ax3 + ax4)
    return np.stack([x, v], axis=1)


@numba.njit(parallel=True, fastmath=True)
def _numba_rk4_kernel(y0, k, b, dt, n_steps, y):
    # One trajectory per prange iteration, its state in local scalars so
    # that the compiler can keep it in registers for all n_steps steps.
    half = 0.5 * dt
    for i in numba.prange(y0.shape[0]):
        x, v = y0[i, 0], y0[i, 1]
        for _ in range(n_steps):
            ax1 = -k * x - b * v
            x2 = x + half * v
            v2 = v + half * ax1
            ax2 = -k * x2 - b * v2
            x3 = x + half * v2
            v3 = v + half * ax2
            ax3 = -k * x3 - b * v3
            x4 = x + dt * v3
            v4 = v + dt * ax3
            ax4 = -k * x4 - b * v4
            x += dt / 6.0 * (v + 2.0 * v2 + 2.0 * v3 + v4)
            v += dt / 6.0 * (ax1 + 2.0 * ax2 + 2.0 * ax3 + ax4)
        y[i, 0] = x
        y[i, 1] = v


def numba_rk4(y0, threads):
    numba.set_num_threads(threads or numba.config.NUMBA_NUM_THREADS)
    y = np.empty_like(y0)
    _numba_rk4_kernel(y0, K, B, DT, N_STEPS, y)
    return y


PEERS = {
    "fastode": (fastode_rk4, 5),
    "NumPy vectorized": (numpy_rk4, 3),
    "Numba prange loop": (numba_rk4, 5),
}


@pytest.fixture(scope="module")
def y0():
    return initial_states(N)


@pytest.mark.parametrize("peer", list(PEERS))
def test_rk4(benchmark, record, y0, threads, peer):
    run, rounds = PEERS[peer]
    benchmark.group = CASE
    # The warm-up round compiles the Numba kernel and is not timed.
    y = benchmark.pedantic(
        run, args=(y0, threads), rounds=rounds, iterations=1, warmup_rounds=1
    )
    error = max_error(y, y0)
    record(CASE, peer, error)
    assert error < ERROR_BOUND
