"""RK4, dt = 0.01, 1000 steps, 100 000 damped oscillators x'' + 0.5 x' + x = 0
on t in [0, 10], float64, final state only.

fastode (C++ core and numba backend) against a NumPy RK4 vectorized over the
batch, a hand-written Numba ``prange`` loop, torchdiffeq's rk4 (the 3/8
rule), and classic RK4 tableaus in torchode and in diffrax under
``jax.vmap``. Every entry's final states are checked against the closed
form. The entries are those of ``fastode bench`` (``fastode._bench``).
"""

import pytest
from workload_case import build_workload, run_entry

from fastode import _bench

N = 100_000
PEERS = [
    "fastode cpp",
    "fastode numba",
    "NumPy RK4",
    "Numba prange loop",
    "torchdiffeq rk4 (CPU)",
    "torchode rk4 (CPU)",
    "diffrax rk4 + vmap (CPU)",
]


@pytest.fixture(scope="module")
def workload(threads):
    return build_workload(_bench.oscillator_rk4, N, threads)


@pytest.mark.parametrize("peer", PEERS)
def test_rk4(benchmark, record, workload, peer):
    work, skipped = workload
    case = f"{work.name}, 1000 steps, {N:,} trajectories"
    peer_rounds = 5 if peer.startswith(("NumPy", "Numba")) else 1
    run_entry(benchmark, record, work, skipped, peer, case, peer_rounds)
