"""The GPU ensemble workload on the CPU: Lorenz with sigma = 10, beta = 8/3 and
rho = linspace(0, 21, N), one value per trajectory, y0 = (1, 0, 0), t in
[0, 1], final state only.

Two cases: rk4 with dt = 0.001 in float32, and tsit5 with rtol = atol = 1e-8
in float64 (in float32 fastode floors rtol at 100 machine epsilons, about
1.2e-5, so the adaptive case runs in float64). Entries and error checks come
from ``fastode._bench``, the code behind ``fastode bench``: every entry's
final states are compared with a float64 RK4 reference at dt = 1e-4 on 32
trajectories spread over the rho range.
"""

import pytest
from workload_case import run_entry, skip_reasons

from fastode import _bench

N = 100_000
CASES = {
    "rk4": ["fastode cpp", "NumPy RK4", "torchdiffeq rk4 (CPU)"],
    "tsit5": [
        "fastode cpp",
        "fastode numba",
        "NumPy tsit5",
        "scipy solve_ivp RK45 loop",
        "torchdiffeq dopri5 (CPU)",
        "torchode tsit5 (CPU)",
        "diffrax tsit5 + vmap (CPU)",
    ],
}
BUILDERS = {"rk4": _bench.lorenz_rk4, "tsit5": _bench.lorenz_tsit5}


@pytest.fixture(scope="module")
def problem():
    return _bench._lorenz_problem(N)


@pytest.fixture(scope="module")
def workloads(problem, threads):
    skips = []
    built = {method: BUILDERS[method](N, threads, skips, problem) for method in CASES}
    return built, skip_reasons(skips)


@pytest.mark.parametrize(
    ("method", "peer"),
    [(method, peer) for method, peers in CASES.items() for peer in peers],
)
def test_lorenz_ensemble(benchmark, record, workloads, method, peer):
    built, skipped = workloads
    work = built[method]
    case = f"{work.name}, {N:,} trajectories"
    run_entry(benchmark, record, work, skipped, peer, case)
