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

from fastode import _bench

N = 100_000
CASES = {
    "rk4": ["fastode cpp", "NumPy RK4", "torchdiffeq rk4 (CPU)"],
    "tsit5": [
        "fastode cpp",
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
    return built, {skip.peer: skip.reason for skip in skips}


@pytest.mark.parametrize(
    ("method", "peer"),
    [(method, peer) for method, peers in CASES.items() for peer in peers],
)
def test_lorenz_ensemble(benchmark, record, workloads, method, peer):
    built, skipped = workloads
    work = built[method]
    entry = next((e for e in work.entries if e.peer == peer), None)
    if entry is None:
        pytest.skip(skipped.get(peer.split(" ")[0], f"{peer} is not available"))
    case = f"{work.name}, {N:,} trajectories"
    benchmark.group = case
    # The warm-up round (compilation, first-touch allocation) is not timed;
    # slow peers get one round.
    rounds = 5 if peer.startswith("fastode") else 1
    y = benchmark.pedantic(entry.run, rounds=rounds, iterations=1, warmup_rounds=1)
    error = work.check(y, entry.rows)
    record(
        case,
        "fastode" if peer == "fastode cpp" else peer,
        error,
        scale=entry.scale,
        note=entry.note,
    )
    assert error < work.error_bound
