"""Neural-ODE forward pass: a tanh MLP field (d = 4, one hidden layer of 64),
10 000 inputs, rk4 with dt = 0.01 over [0, 1], float64.

fastode against a NumPy RK4 vectorized over the batch, torchdiffeq's rk4
(the 3/8 rule) on a ``torch.nn.Sequential`` of the same weights, and classic
RK4 tableaus in torchode and in diffrax under ``jax.vmap``. Every entry's
final states are compared with a float64 RK4 reference at a tenth of the
step on 32 inputs. The entries are those of ``fastode bench``
(``fastode._bench``).
"""

import pytest
from workload_case import build_workload, run_entry

from fastode import _bench

N = 10_000
PEERS = [
    "fastode cpp",
    "NumPy RK4",
    "torchdiffeq rk4 (CPU)",
    "torchode rk4 (CPU)",
    "diffrax rk4 + vmap (CPU)",
]


@pytest.fixture(scope="module")
def workload(threads):
    return build_workload(_bench.mlp_rk4, N, threads)


@pytest.mark.parametrize("peer", PEERS)
def test_mlp_rk4(benchmark, record, workload, peer):
    work, skipped = workload
    case = f"{work.name}, [0, 1], {N:,} inputs"
    run_entry(benchmark, record, work, skipped, peer, case)
