"""fastode.ode user functions on backend="numba" against the C++ core on the
same built-in system, in the same run and with the same thread count.

Workloads: the damped oscillator (k = 4, b = 0.1) and the Lorenz ensemble
(sigma = 10, rho = linspace(0, 21, N), beta = 8/3, y0 = (1, 0, 0)), both in
float64, with rk4 over 1000 steps for N = 100 000 and with dopri5 (oscillator)
or tsit5 (Lorenz) at rtol = atol = 1e-8 for N = 10 000.

The ratio table prints the core as "fastode" and the numba backend as
"fastode numba" (and "fastode numba boundscheck" for `fastode.ode(...,
boundscheck=True)`), with the numba time divided by the core time. The note of
each numba entry gives the seconds of its first call, which is Numba's
compilation unless the on-disk cache served the kernel, and whether it
was compiled or loaded. The max error column of the numba entry is its largest difference
from the core's result.
"""

import numpy as np
import pytest

import fastode
from fastode._bench import _lorenz_rhs as lorenz
from fastode._bench import _oscillator_rhs as oscillator

numba = pytest.importorskip("numba")
from fastode._numba import compile_report

K, B = 4.0, 0.1


def oscillator_case(n):
    y0 = np.random.default_rng(0).uniform(-1.0, 1.0, (n, 2))
    core = fastode.Oscillator(k=K, b=B)
    params = np.array([K, B])
    users = {checks: fastode.ode(oscillator, dim=2, n_params=2, params=params,
                                 boundscheck=checks) for checks in (False, True)}
    return core, users, y0, 10.0


def lorenz_case(n):
    rho = np.linspace(0.0, 21.0, n)
    y0 = np.tile(np.array([1.0, 0.0, 0.0]), (n, 1))
    core = fastode.Lorenz(sigma=10.0, rho=rho, beta=8.0 / 3.0)
    users = {checks: fastode.ode(lorenz, dim=3, n_params=1, params=rho[:, None],
                                 boundscheck=checks) for checks in (False, True)}
    return core, users, y0, 1.0


CASES = {
    "oscillator rk4": (oscillator_case, 100_000, {"method": "rk4"}),
    "Lorenz rk4": (lorenz_case, 100_000, {"method": "rk4"}),
    "oscillator dopri5": (oscillator_case, 10_000, {"method": "dopri5"}),
    "Lorenz tsit5": (lorenz_case, 10_000, {"method": "tsit5"}),
}


def solve_options(case, t1):
    options = dict(CASES[case][2])
    if options["method"] == "rk4":
        options["dt"] = t1 / 1000
    else:
        options.update(rtol=1e-8, atol=1e-8)
    return options


@pytest.fixture(scope="module")
def problems():
    return {case: build(n) for case, (build, n, _) in CASES.items()}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("entry", ["cpp", "numba", "numba boundscheck"])
def test_numba_against_core(benchmark, record, threads, problems, case, entry):
    core, users, y0, t1 = problems[case]
    options = solve_options(case, t1)
    backend = entry.split()[0]
    user = users[entry.endswith("boundscheck")]
    system = core if backend == "cpp" else user
    n = y0.shape[0]
    label = f"{case}, {n:,} trajectories, float64"
    benchmark.group = label

    def run():
        return fastode.solve(system, y0, (0.0, t1), backend=backend, threads=threads,
                             **options)

    note = ""
    if backend == "numba":
        # The first call, untimed by pytest-benchmark, compiles the kernel.
        run()
        seconds, cached = compile_report(user, options["method"])
        source = "loaded from the disk cache" if cached else "compiled"
        note = f"first call {seconds:.1f} s, kernel {source}"
    sol = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    reference = fastode.solve(core, y0, (0.0, t1), backend="cpp", threads=threads, **options)
    error = float(np.max(np.abs(sol.y - reference.y)))
    record(label, "fastode" if backend == "cpp" else f"fastode {entry}", error, note=note)
    assert np.array_equal(sol.status, reference.status)
    assert error < 1e-9
