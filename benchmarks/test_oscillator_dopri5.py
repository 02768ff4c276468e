"""dopri5, rtol 1e-6, atol 1e-9, 10 000 damped oscillators x'' + 0.5 x' + x = 0
on t in [0, 10], float64, final state only.

The peers: ``scipy.integrate.solve_ivp`` (RK45, the same Dormand-Prince
pair) called once per trajectory, as a user without a batched solver would,
timed on 32 trajectories and scaled to N. A NumPy dopri5 and torchdiffeq,
both with one step size for the batch. torchode, and diffrax under
``jax.vmap``, with a step size per trajectory. Every entry's final states
are checked against the closed form. The entries are those of
``fastode bench`` (``fastode._bench``).
"""

import pytest
from workload_case import build_workload, run_entry

from fastode import _bench

N = 10_000
PEERS = [
    "fastode cpp",
    "NumPy dopri5",
    "scipy solve_ivp RK45 loop",
    "torchdiffeq dopri5 (CPU)",
    "torchode dopri5 (CPU)",
    "diffrax dopri5 + vmap (CPU)",
]


@pytest.fixture(scope="module")
def workload(threads):
    return build_workload(_bench.oscillator_dopri5, N, threads)


@pytest.mark.parametrize("peer", PEERS)
def test_dopri5(benchmark, record, workload, peer):
    work, skipped = workload
    case = f"{work.name}, atol 1e-9, {N:,} trajectories"
    peer_rounds = 3 if peer.startswith("NumPy") else 1
    run_entry(benchmark, record, work, skipped, peer, case, peer_rounds)
