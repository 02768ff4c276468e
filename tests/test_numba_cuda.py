"""backend="numba-cuda" without a GPU: the kernels run under Numba's CUDA
simulator in a subprocess (so NUMBA_ENABLE_CUDASIM does not leak into the
rest of the suite) and compile to PTX for compute capability 9.0."""

import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from numba import cuda
from test_numba import harmonic, oscillator

import fastode
from fastode import Status
from fastode._numba import _cuda

SIMULATED_RUNS = textwrap.dedent(
    """
    import json
    import numpy as np
    from numba import cuda
    import fastode

    @fastode.ode(dim=2, n_params=2)
    def oscillator(t, y, dy, p):
        dy[0] = y[1]
        dy[1] = -p[0] * y[0] - p[1] * y[1]

    @fastode.ode(dim=1)
    def doubling(t, y, dy, p):
        dy[0] = 1000.0 * y[0]

    @fastode.ode(dim=1)
    def clock(t, y, dy, p):
        dy[0] = t

    @fastode.ode(dim=2)
    def decay_by_state(t, y, dy, p):
        dy[0] = -y[1] * y[0]
        dy[1] = 0.0

    def kinetic_gradient(p, out, params):
        out[0] = p[0]

    def harmonic_gradient(q, out, params):
        out[0] = params[0] * q[0]

    harmonic = fastode.ode_hamiltonian(kinetic_gradient, harmonic_gradient, dof=1,
                                       n_params=1)
    inputs = json.loads(input())
    results = {}

    def record(name, sol):
        y = sol.y.copy_to_host() if hasattr(sol.y, "copy_to_host") else sol.y
        stats = {key: np.asarray(value).tolist() for key, value in sol.stats.items()}
        status = sol.status.copy_to_host() if hasattr(sol.status, "copy_to_host") else sol.status
        results[name] = {"y": np.asarray(y).tolist(), "shape": list(np.shape(y)),
                         "status": np.asarray(status).tolist(),
                         "t_final": np.asarray(sol.t_final).tolist(), "stats": stats,
                         "device": hasattr(sol.y, "copy_to_host")}

    y0 = np.array(inputs["oscillator_y0"])
    t_eval = [0.0, 0.5, 1.0]
    system = oscillator([1.0, 0.1])
    record("rk4", fastode.solve(system, y0, (0.0, 1.0), method="rk4", dt=0.1,
                                t_eval=t_eval, backend="numba-cuda"))
    record("dopri5", fastode.solve(system, y0, (0.0, 1.0), t_eval=t_eval,
                                   backend="numba-cuda"))
    record("tsit5_fixed", fastode.solve(system, y0, (0.0, 1.0), method="tsit5",
                                        adaptive=False, dt=0.1, t_eval=t_eval,
                                        backend="numba-cuda"))
    record("device_input", fastode.solve(system, cuda.to_device(y0), (0.0, 1.0),
                                         backend="numba-cuda"))
    record("verlet", fastode.solve(harmonic([4.0]), y0, (0.0, 1.0), method="verlet",
                                   dt=0.05, backend="numba-cuda"))
    record("chunked", fastode.solve(system, y0, (0.0, 1.0), t_eval=t_eval, chunk_size=1,
                                    backend="numba-cuda"))
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record("few_steps", fastode.solve(system, y0, (0.0, 1.0), max_steps=3,
                                          backend="numba-cuda"))
    results["few_steps"]["warnings"] = [w.category.__name__ for w in caught]
    rows = np.array(inputs["mixed_rows"])
    record("mixed", fastode.solve(decay_by_state, rows, (0.0, 1.0), rtol=1e-8, atol=1e-10,
                                  backend="numba-cuda"))
    record("overflow", fastode.solve(doubling, [1.0], (0.0, 2.0), method="euler", dt=1e-3,
                                     backend="numba-cuda"))
    record("nan_parameter", fastode.solve(oscillator([np.nan, 0.0]), y0[:1], (0.0, 1.0),
                                          method="rk4", dt=0.1, backend="numba-cuda"))
    fixed = {"method": "tsit5", "adaptive": False, "backend": "numba-cuda"}
    record("fixed_backward", fastode.solve(oscillator([1.0, 0.0]), y0, (1.0, 0.0),
                                           t_eval=[1.0, 0.5, 0.0], dt=0.3, **fixed))
    record("fixed_zero_span", fastode.solve(oscillator([1.0, 0.0]), y0, (3.0, 3.0),
                                            t_eval=[3.0], dt=0.1, **fixed))
    record("fixed_mixed", fastode.solve(decay_by_state, rows, (0.0, 1.0), dt=0.01, **fixed))
    record("fixed_tiny_dt", fastode.solve(oscillator([1.0, 0.0]), y0[:1], (0.0, 1.0),
                                          dt=1e-30, max_steps=5, **fixed))
    adaptive = {"rtol": 1e-10, "atol": 1e-12, "backend": "numba-cuda"}
    record("backward", fastode.solve(oscillator([1.0, 0.0]), y0, (1.0, 0.0),
                                     t_eval=[1.0, 0.5, 0.0], **adaptive))
    record("zero_span", fastode.solve(oscillator([1.0, 0.0]), y0, (3.0, 3.0),
                                      t_eval=[3.0], **adaptive))
    record("clock", fastode.solve(clock, [1.0], (0.0, 2.0), **adaptive))
    record("single", fastode.solve(oscillator([1.0, 0.0]), y0[0], (0.0, 1.0),
                                   t_eval=[0.0, 1.0], **adaptive))
    record("empty", fastode.solve(oscillator([1.0, 0.0]), np.zeros((0, 2)), (0.0, 1.0),
                                  t_eval=[0.0, 1.0], **adaptive))
    print(json.dumps(results))
    """
)

OSCILLATOR_Y0 = np.array([[1.0, 0.0], [0.5, -0.2], [0.0, 1.0]])
MIXED_ROWS = np.array([[1.0, 1.0], [1.0, np.nan], [1.0, 2.0], [np.nan, 1.0], [np.inf, 1.0]])


@fastode.ode(dim=2)
def decay_by_state(t, y, dy, p):
    """State (y, k) with dy/dt = -k y and dk/dt = 0."""
    dy[0] = -y[1] * y[0]
    dy[1] = 0.0


@pytest.fixture(scope="module")
def simulated():
    """Results of the numba-cuda backend under the CUDA simulator."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=os.pathsep.join(sys.path))
    # json cannot carry NaN in strict mode, but Python's json reads it back.
    inputs = json.dumps({"oscillator_y0": OSCILLATOR_Y0.tolist(),
                         "mixed_rows": MIXED_ROWS.tolist()})
    run = subprocess.run([sys.executable, "-c", SIMULATED_RUNS], input=inputs, env=env,
                         capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def cpu(system, y0, method, **options):
    return fastode.solve(system, y0, (0.0, 1.0), method=method, backend="numba", **options)


@pytest.mark.parametrize(
    ("name", "method", "options"),
    [("rk4", "rk4", {"dt": 0.1, "t_eval": [0.0, 0.5, 1.0]}),
     ("dopri5", "dopri5", {"t_eval": [0.0, 0.5, 1.0]}),
     ("tsit5_fixed", "tsit5", {"adaptive": False, "dt": 0.1, "t_eval": [0.0, 0.5, 1.0]}),
     ("device_input", "dopri5", {}),
     ("chunked", "dopri5", {"t_eval": [0.0, 0.5, 1.0]})],
)
def test_simulator_matches_cpu(simulated, name, method, options):
    result = simulated[name]
    ours = cpu(oscillator([1.0, 0.1]), OSCILLATOR_Y0, method, **options)
    np.testing.assert_allclose(result["y"], ours.y, rtol=1e-13, atol=1e-15)
    for key in ("n_steps", "n_accepted", "n_rejected", "n_rhs"):
        np.testing.assert_array_equal(result["stats"][key], ours.stats[key])


def test_simulator_stiffness_warning(simulated):
    result = simulated["few_steps"]
    assert result["status"] == [Status.MAX_STEPS] * 3
    assert result["warnings"] == ["StiffnessWarning"]


def test_simulator_device_input_stays_on_device(simulated):
    assert simulated["device_input"]["device"]
    assert not simulated["dopri5"]["device"]


def test_simulator_symplectic(simulated):
    ours = cpu(harmonic([4.0]), OSCILLATOR_Y0, "verlet", dt=0.05)
    np.testing.assert_allclose(simulated["verlet"]["y"], ours.y, rtol=1e-13, atol=1e-15)


def test_simulator_non_finite_rows_isolated(simulated):
    result = simulated["mixed"]
    assert result["status"][0] == Status.SUCCESS
    assert result["status"][2] == Status.SUCCESS
    assert all(result["status"][row] != Status.SUCCESS for row in (1, 3, 4))
    assert abs(result["y"][0][0] - 0.36787944117144233) < 1e-7
    assert abs(result["y"][2][0] - 0.1353352832366127) < 1e-7


def test_simulator_overflow_reports_last_finite_state(simulated):
    """Euler on y' = 1000 y with dt = 1e-3: y_k = 2^k, and f first overflows
    from y_1015 = 2^1015, so the run stops there at t = 1.015."""
    result = simulated["overflow"]
    assert result["status"] == Status.NON_FINITE
    assert result["stats"]["n_steps"] == 1016
    assert result["stats"]["n_accepted"] == 1015
    assert result["stats"]["n_rhs"] == 1016
    assert result["t_final"] == pytest.approx(1.015, rel=1e-12)
    assert result["y"][0] == pytest.approx(2.0**1015, rel=1e-12)


def test_simulator_nan_parameter_keeps_y0(simulated):
    result = simulated["nan_parameter"]
    assert result["status"] == [Status.NON_FINITE]
    assert result["stats"]["n_steps"] == [1]
    assert result["stats"]["n_accepted"] == [0]
    assert result["t_final"] == [0.0]
    assert result["y"] == [OSCILLATOR_Y0[0].tolist()]


def test_simulator_fixed_pair_backward(simulated):
    """x'' = -x from (x, v)(1) = y0, stepped back to t = 0 with dt = 0.3,
    which does not divide the span, against the closed form. t = 0.5 lies
    inside a step, where the cubic Hermite interpolant is O(dt^4) off."""
    result = simulated["fixed_backward"]
    for row, (x1, v1) in zip(result["y"], OSCILLATOR_Y0, strict=True):
        for values, t in zip(row, [1.0, 0.5, 0.0], strict=True):
            x = x1 * math.cos(t - 1.0) + v1 * math.sin(t - 1.0)
            v = -x1 * math.sin(t - 1.0) + v1 * math.cos(t - 1.0)
            np.testing.assert_allclose(values, [x, v], atol=5e-5)
    assert result["stats"]["n_steps"] == [4, 4, 4]


def oscillator_exact(y0, t0, t):
    """(x, v) of x'' = -x at t from (x, v)(t0) = y0."""
    x0, v0 = y0
    c, s = math.cos(t - t0), math.sin(t - t0)
    return [x0 * c + v0 * s, -x0 * s + v0 * c]


def test_simulator_backward_adaptive(simulated):
    """E3 on the GPU kernels: dopri5 from t = 1 back to 0."""
    result = simulated["backward"]
    assert result["status"] == [Status.SUCCESS] * 3
    for row, start in zip(result["y"], OSCILLATOR_Y0, strict=True):
        for values, t in zip(row, [1.0, 0.5, 0.0], strict=True):
            np.testing.assert_allclose(values, oscillator_exact(start, 1.0, t), atol=1e-8)


def test_simulator_zero_span_adaptive(simulated):
    """E4: exactly y0 and no step."""
    result = simulated["zero_span"]
    assert result["status"] == [Status.SUCCESS] * 3
    np.testing.assert_array_equal(np.array(result["y"])[:, 0, :], OSCILLATOR_Y0)
    assert result["stats"]["n_steps"] == [0, 0, 0]


def test_simulator_zero_derivative_start(simulated):
    """E5: f = t from y0 = 1 over (0, 2) gives 3, with f(t0) = 0."""
    result = simulated["clock"]
    assert result["status"] == Status.SUCCESS
    assert abs(result["y"][0] - 3.0) < 1e-8


def test_simulator_batch_shapes(simulated):
    """E10: one 1-D state and an empty batch."""
    single = simulated["single"]
    assert np.shape(single["y"]) == (2, 2)
    assert np.ndim(single["status"]) == 0
    np.testing.assert_allclose(single["y"][1], oscillator_exact(OSCILLATOR_Y0[0], 0.0, 1.0),
                               atol=1e-8)
    empty = simulated["empty"]
    assert empty["shape"] == [0, 2, 2]
    assert np.shape(empty["status"]) == (0,)


def test_simulator_fixed_pair_zero_span(simulated):
    result = simulated["fixed_zero_span"]
    assert result["status"] == [Status.SUCCESS] * 3
    np.testing.assert_array_equal(np.array(result["y"])[:, 0, :], OSCILLATOR_Y0)
    assert result["stats"]["n_steps"] == [0, 0, 0]


def test_simulator_fixed_pair_non_finite_rows(simulated):
    result = simulated["fixed_mixed"]
    assert result["status"] == [Status.SUCCESS, Status.NON_FINITE, Status.SUCCESS,
                                Status.NON_FINITE, Status.NON_FINITE]
    assert abs(result["y"][0][0] - 0.36787944117144233) < 1e-10
    assert abs(result["y"][2][0] - 0.1353352832366127) < 1e-10
    assert result["stats"]["n_steps"][0] == 100
    assert result["stats"]["n_steps"][2] == 100


def test_simulator_fixed_pair_tiny_dt(simulated):
    """1e30 steps of dt = 1e-30 do not fit in an int64; max_steps ends the run."""
    result = simulated["fixed_tiny_dt"]
    assert result["status"] == [Status.MAX_STEPS]
    assert result["stats"]["n_steps"] == [5]


@pytest.mark.skipif(cuda.is_available(), reason="a CUDA device is present")
def test_missing_gpu_error():
    with pytest.raises(RuntimeError, match="needs an NVIDIA GPU"):
        fastode.solve(oscillator([1.0, 0.0]), [1.0, 0.0], (0.0, 1.0), backend="numba-cuda")


@pytest.mark.parametrize(
    ("system", "method", "dtype"),
    [(oscillator, "rk4", np.float64), (oscillator, "dopri5", np.float32),
     (decay_by_state, "tsit5", np.float64), (harmonic, "yoshida4", np.float64)],
    ids=["rk4-f64", "dopri5-f32", "tsit5-f64", "yoshida4-f64"],
)
def test_kernels_compile_to_ptx(system, method, dtype):
    ptx = _cuda.compile_ptx(system, method, dtype, cc=(9, 0))
    assert ".target sm_90" in ptx
    assert ".entry" in ptx


def test_fixed_step_pair_compiles_to_ptx():
    ptx = _cuda.compile_ptx(oscillator, "tsit5", np.float32, cc=(9, 0), adaptive=False)
    assert ".target sm_90" in ptx
    assert ".entry" in ptx
