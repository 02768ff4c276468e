"""backend="numba": user right-hand sides against closed forms, convergence
orders and the C++ core on the same systems.

Compilation dominates the run time, so a few module-level systems serve
every test and each (system, method) kernel compiles once.
"""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastode
from fastode._numba import _cpu

SOURCE = Path(fastode.__file__).resolve().parent.parent

FIXED = ["euler", "midpoint", "heun", "rk4"]
ADAPTIVE = ["bs3", "dopri5", "tsit5"]
SYMPLECTIC = ["symplectic_euler", "verlet", "yoshida4", "yoshida6"]
ORDERS = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4, "symplectic_euler": 1,
          "verlet": 2, "yoshida4": 4, "yoshida6": 6}


@fastode.ode(dim=1, n_params=6)
def affine(t, y, dy, p):
    """dy/dt = a y + b t + c + d cos t, with p = (a, b, c, d, t_min, t_max).

    It also records the smallest and largest t it is called with in p[4] and
    p[5], which the edge-case tests read back from the parameter array.
    """
    dy[0] = p[0] * y[0] + p[1] * t + p[2] + p[3] * math.cos(t)
    p[4] = min(p[4], t)
    p[5] = max(p[5], t)


def linear(a, b=0.0, c=0.0, d=0.0):
    """The affine system with one shared parameter row and an empty t record."""
    return affine(np.array([a, b, c, d, np.inf, -np.inf]))


@fastode.ode(dim=2, n_params=2)
def oscillator(t, y, dy, p):
    dy[0] = y[1]
    dy[1] = -p[0] * y[0] - p[1] * y[1]


@fastode.ode(dim=3, n_params=3)
def lorenz(t, y, dy, p):
    dy[0] = p[0] * (y[1] - y[0])
    dy[1] = y[0] * (p[1] - y[2]) - y[1]
    dy[2] = y[0] * y[1] - p[2] * y[2]


def kinetic_gradient(p, out, params):
    out[0] = p[0]


def harmonic_gradient(q, out, params):
    out[0] = params[0] * q[0]


harmonic = fastode.ode_hamiltonian(kinetic_gradient, harmonic_gradient, dof=1, n_params=1)


def solve(system, y0, t_span, method, **options):
    return fastode.solve(system, y0, t_span, method=method, backend="numba", **options)


# --- closed forms and orders ----------------------------------------------------


@pytest.mark.parametrize("method", ADAPTIVE)
def test_adaptive_decay_closed_form(method):
    sol = solve(linear(-1.0), [[1.0], [2.0]], (0.0, 1.0), method, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sol.y[:, 0], [math.exp(-1), 2 * math.exp(-1)], rtol=1e-8)
    assert np.all(sol.status == fastode.Status.SUCCESS)
    assert np.all(sol.stats["n_accepted"] + sol.stats["n_rejected"] == sol.stats["n_steps"])


@pytest.mark.parametrize("method", FIXED)
def test_fixed_step_convergence_order(method):
    errors = []
    for dt in (0.1, 0.05):
        sol = solve(linear(-1.0), [1.0], (0.0, 1.0), method, dt=dt)
        errors.append(abs(sol.y[0] - math.exp(-1.0)))
    observed = math.log2(errors[0] / errors[1])
    assert abs(observed - ORDERS[method]) < 0.3


@pytest.mark.parametrize("method", FIXED)
def test_fixed_step_dense_output(method):
    t_eval = np.linspace(0.0, 1.0, 11)
    sol = solve(linear(-1.0), [1.0], (0.0, 1.0), method, dt=0.01, t_eval=t_eval)
    tolerance = {1: 5e-3, 2: 5e-5, 4: 1e-8}[ORDERS[method]]
    np.testing.assert_allclose(sol.y[:, 0], np.exp(-t_eval), atol=tolerance)
    np.testing.assert_array_equal(sol.t, t_eval)


@pytest.mark.parametrize("method", ADAPTIVE)
def test_adaptive_dense_output_forced(method):
    # y' = -y + cos t, y(0) = 0: y = (cos t + sin t - e^-t) / 2.
    t_eval = np.linspace(0.0, 3.0, 7)
    sol = solve(linear(-1.0, d=1.0), [0.0], (0.0, 3.0), method, t_eval=t_eval,
                rtol=1e-10, atol=1e-12)
    exact = (np.cos(t_eval) + np.sin(t_eval) - np.exp(-t_eval)) / 2
    np.testing.assert_allclose(sol.y[:, 0], exact, atol=1e-7)


@pytest.mark.parametrize("method", SYMPLECTIC)
def test_symplectic_convergence_order(method):
    # H = p^2/2 + k q^2/2 with k = 4: q(t) = cos(2 t).
    steps = (0.2, 0.1) if method == "yoshida6" else (0.05, 0.025)
    errors = []
    for dt in steps:
        sol = solve(harmonic([4.0]), [1.0, 0.0], (0.0, 2.0), method, dt=dt)
        errors.append(abs(sol.y[0] - math.cos(4.0)))
    observed = math.log2(errors[0] / errors[1])
    assert abs(observed - ORDERS[method]) < 0.35


@pytest.mark.parametrize("method", SYMPLECTIC)
def test_symplectic_matches_cpp_core(method):
    y0 = np.array([[1.0, 0.0], [0.3, -0.5]])
    ours = solve(harmonic([[1.0], [2.0]]), y0, (0.0, 5.0), method, dt=0.05)
    core = fastode.solve(fastode.Hamiltonian("harmonic", k=np.array([1.0, 2.0])), y0,
                         (0.0, 5.0), method=method, dt=0.05)
    np.testing.assert_allclose(ours.y, core.y, rtol=1e-12, atol=1e-13)
    np.testing.assert_array_equal(ours.stats["n_rhs"], core.stats["n_rhs"])


def test_symplectic_rejected_without_gradients():
    with pytest.raises(ValueError, match="separable"):
        solve(linear(-1.0), [1.0], (0.0, 1.0), "verlet", dt=0.1)


def test_float32_run_stays_float32():
    sol = solve(linear(-1.0), np.array([1.0], np.float32), (0.0, 1.0), "rk4", dt=0.01)
    assert sol.y.dtype == np.float32
    assert abs(float(sol.y[0]) - math.exp(-1.0)) < 1e-6


# --- agreement with the C++ core ---------------------------------------------------


@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_oscillator_matches_cpp_core(method):
    rng = np.random.default_rng(1)
    y0 = rng.normal(size=(37, 2))
    k = rng.uniform(0.5, 2.0, 37)
    b = rng.uniform(0.0, 0.3, 37)
    options = {"dt": 0.01} if method == "rk4" else {"rtol": 1e-9, "atol": 1e-11}
    t_eval = np.linspace(0.0, 5.0, 11) if method == "rk4" else None
    ours = solve(oscillator(np.stack([k, b], axis=1)), y0, (0.0, 5.0), method,
                 t_eval=t_eval, **options)
    core = fastode.solve(fastode.Oscillator(k=k, b=b), y0, (0.0, 5.0), method=method,
                         t_eval=t_eval, **options)
    np.testing.assert_allclose(ours.y, core.y, rtol=1e-12, atol=1e-13)
    for name in ("n_steps", "n_accepted", "n_rejected", "n_rhs"):
        np.testing.assert_array_equal(ours.stats[name], core.stats[name])


@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_lorenz_matches_cpp_core(method):
    rng = np.random.default_rng(2)
    y0 = rng.normal(size=(19, 3)) + [1.0, 1.0, 20.0]
    rho = rng.uniform(20.0, 30.0, 19)
    options = {"dt": 0.001} if method == "rk4" else {"rtol": 1e-10, "atol": 1e-12}
    params = np.stack([np.full(19, 10.0), rho, np.full(19, 8.0 / 3.0)], axis=1)
    ours = solve(lorenz(params), y0, (0.0, 0.5), method, **options)
    core = fastode.solve(fastode.Lorenz(rho=rho), y0, (0.0, 0.5), method=method, **options)
    np.testing.assert_allclose(ours.y, core.y, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(ours.stats["n_steps"], core.stats["n_steps"])


@pytest.mark.skipif(
    not hasattr(fastode._core, "dense_weights"),
    reason="this build of fastode._core does not export the dopri5 and tsit5 "
    "interpolants, so the Numba backend uses the cubic Hermite one there",
)
@pytest.mark.parametrize("method", ["dopri5", "tsit5"])
def test_dense_output_matches_cpp_core(method):
    # The affine system with a = -1 is the core's Linear([[-1]]); it shares
    # its kernels with the closed-form tests, so this adds no compilation.
    y0 = np.array([[1.0], [-0.5]])
    t_eval = np.linspace(0.0, 5.0, 23)
    ours = solve(linear(-1.0), y0, (0.0, 5.0), method, t_eval=t_eval)
    core = fastode.solve(fastode.Linear([[-1.0]]), y0, (0.0, 5.0), method=method,
                         t_eval=t_eval)
    np.testing.assert_allclose(ours.y, core.y, rtol=1e-12, atol=1e-14)
    for name in ("n_steps", "n_accepted", "n_rejected", "n_rhs"):
        np.testing.assert_array_equal(ours.stats[name], core.stats[name])


def test_pi_controller_matches_cpp_core():
    y0 = np.array([[1.0, 0.0], [0.0, 2.0]])
    ours = solve(oscillator([1.0, 0.1]), y0, (0.0, 5.0), "dopri5", controller="pi")
    core = fastode.solve(fastode.Oscillator(k=1.0, b=0.1), y0, (0.0, 5.0),
                         method="dopri5", controller="pi")
    # Round-off in the step sizes (the core contracts to FMA) moves the
    # solution by a fraction of the local error, far below rtol.
    np.testing.assert_allclose(ours.y, core.y, rtol=1e-9)
    np.testing.assert_array_equal(ours.stats["n_steps"], core.stats["n_steps"])


# --- API --------------------------------------------------------------------------


def test_parameters_per_trajectory():
    k = np.array([1.0, 4.0, 9.0])
    sol = solve(oscillator(np.stack([k, np.zeros(3)], axis=1)), np.tile([1.0, 0.0], (3, 1)),
                (0.0, 1.0), "dopri5", rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sol.y[:, 0], np.cos(np.sqrt(k)), atol=1e-8)


def test_missing_parameters_rejected():
    with pytest.raises(ValueError, match="takes 2 parameters"):
        solve(oscillator, [1.0, 0.0], (0.0, 1.0), "rk4", dt=0.1)


def test_parameter_rows_must_match_batch():
    with pytest.raises(ValueError, match="3 rows"):
        solve(oscillator(np.ones((3, 2))), np.ones((2, 2)), (0.0, 1.0), "rk4", dt=0.1)


def test_parameter_shape_rejected():
    with pytest.raises(ValueError, match=r"shape \(2,\) or \(N, 2\)"):
        oscillator([1.0, 2.0, 3.0])


def test_cpp_backend_rejects_user_system():
    with pytest.raises(ValueError, match="numba"):
        fastode.solve(linear(-1.0), [1.0], (0.0, 1.0), backend="cpp")


def test_numba_backend_rejects_builtin_system():
    with pytest.raises(ValueError, match="fastode.ode"):
        fastode.solve(fastode.Oscillator(k=1.0), [1.0, 0.0], (0.0, 1.0), backend="numba")


def test_auto_backend_runs_user_system_on_numba():
    sol = fastode.solve(linear(-1.0), [1.0], (0.0, 1.0), rtol=1e-10, atol=1e-12)
    assert abs(sol.y[0] - math.exp(-1.0)) < 1e-8


def test_kernel_records_first_call_time():
    solve(linear(-1.0), [1.0], (0.0, 1.0), "rk4", dt=0.1)
    compiled = _cpu.kernel(linear(-1.0), "rk4", "fixed", np.dtype(np.float64))
    assert compiled.first_call_seconds is not None
    assert compiled.first_call_seconds > 0


def test_reference_rhs_matches_function():
    y = np.array([[1.0, 2.0], [3.0, -1.0]])
    dy = oscillator([2.0, 0.5]).rhs(0.0, y)
    np.testing.assert_allclose(dy, [[2.0, -3.0], [-1.0, -5.5]])


# --- on-disk cache ---------------------------------------------------------------------

CACHE_SCRIPT = """
import sys
import numpy as np
import fastode
from fastode._numba import compile_report
sys.path.insert(0, sys.argv[1])
from decay_module import decay
sol = fastode.solve(decay, [1.0], (0.0, 1.0), method="rk4", dt=0.1, backend="numba")
seconds, cached = compile_report(decay, "rk4")
print(int(cached), abs(float(sol.y[0]) - float(np.exp(-1.0))) < 1e-5)
"""

DECAY_MODULE = """
import fastode

@fastode.ode(dim=1)
def decay(t, y, dy, p):
    dy[0] = -y[0]
"""


def test_second_process_loads_cached_kernel(tmp_path):
    (tmp_path / "decay_module.py").write_text(DECAY_MODULE)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    env["PYTHONPATH"] = os.pathsep.join([str(SOURCE), env.get("PYTHONPATH", "")])
    outputs = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", CACHE_SCRIPT, str(tmp_path)], env=env,
                              capture_output=True, text=True, timeout=600, check=True)
        outputs.append(done.stdout.split())
    assert outputs[0] == ["0", "True"]
    assert outputs[1] == ["1", "True"]
