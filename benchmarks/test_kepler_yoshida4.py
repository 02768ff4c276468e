"""Kepler orbits with yoshida4: 100 000 orbits of eccentricity 0 to 0.5 and
period 2 pi, 1000 steps per orbit, float64, final state only.

After one period the exact state equals the initial state, so every entry is
checked against that closed form. The peer is Yoshida's composition of
leapfrog vectorized over the batch in NumPy (from ``fastode._bench``, the
code behind ``fastode bench``); scipy and torchdiffeq have no symplectic
method, so they are not compared here.
"""

import pytest
from workload_case import run_entry

from fastode import _bench

N = 100_000
PEERS = ["fastode cpp", "NumPy yoshida4"]


@pytest.fixture(scope="module")
def workload(threads):
    return _bench.kepler_yoshida4(N, threads, [])


@pytest.mark.parametrize("peer", PEERS)
def test_kepler_yoshida4(benchmark, record, workload, peer):
    case = f"{workload.name}, {N:,} orbits"
    run_entry(benchmark, record, workload, {}, peer, case, peer_rounds=2)
