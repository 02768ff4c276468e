"""MLP fields with ``backend="cupy"`` on a real GPU: closed forms and agreement
with the C++ core.

These tests need CuPy and a CUDA device and skip without them; run them with
``tools/gpu-check.sh``. With FASTODE_CUPY_STANDIN=1 they run against the
NumPy stand-in for CuPy, which checks the tests but not the GPU's arithmetic.
The network's activations use the branch-free functions of mlp.hpp on both
sides, so CPU and GPU differ only by the contraction of a * b + c into fused
multiply-adds.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import expm

import fastode
from fastode import Status
from fastode._cupy import device_available

cupy = pytest.importorskip(
    "cupy", reason='CuPy is not installed (pip install "fastode[gpu]")'
)

pytestmark = [
    pytest.mark.skipif(not device_available(), reason="no CUDA device is visible"),
    pytest.mark.filterwarnings("ignore:CUDA path could not be detected:UserWarning"),
]

STATS = ("n_steps", "n_accepted", "n_rejected", "n_rhs")
ACTIVATIONS = ("tanh", "relu", "softplus", "sigmoid", "identity")
METHOD_CASES = [
    ("euler", "tanh"),
    ("midpoint", "relu"),
    ("heun", "softplus"),
    ("rk4", "sigmoid"),
    ("bs3", "identity"),
    ("dopri5", "tanh"),
    ("tsit5", "softplus"),
]
N = 300


def _mlp(activation: str, d: int = 4, hidden: int = 32, time_input: bool = True):
    rng = np.random.default_rng(11)
    n_input = d + (1 if time_input else 0)
    weights = [
        0.5 * rng.standard_normal((hidden, n_input)),
        0.3 * rng.standard_normal((hidden, hidden)),
        0.5 * rng.standard_normal((d, hidden)),
    ]
    biases = [0.1 * rng.standard_normal(w.shape[0]) for w in weights]
    return fastode.MLP(weights, biases, activation=activation, time_input=time_input)


def _run(mlp, y0, backend, method, dtype):
    kwargs = {"method": method, "dtype": dtype, "t_eval": np.linspace(0.0, 1.0, 5)}
    if fastode.METHODS[method] == "adaptive":
        single = dtype == "float32"
        kwargs["rtol"] = 2e-5 if single else 1e-8
        kwargs["atol"] = 1e-7 if single else 1e-10
    else:
        kwargs["dt"] = 0.02
    return fastode.solve(mlp, y0, (0.0, 1.0), backend=backend, **kwargs)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("method", "activation"), METHOD_CASES)
def test_mlp_gpu_matches_cpu(method, activation, dtype):
    mlp = _mlp(activation)
    y0 = np.random.default_rng(12).standard_normal((N, 4))
    cpu = _run(mlp, y0, "cpp", method, dtype)
    gpu = _run(mlp, y0, "cupy", method, dtype)
    assert isinstance(gpu.y, np.ndarray)
    assert gpu.y.dtype == np.dtype(dtype)
    assert np.array_equal(gpu.status, cpu.status)
    if fastode.METHODS[method] == "adaptive":
        tol = 1e-6 if dtype == "float64" else 1e-3
    else:
        # NOTE: this bound is an estimate for 50 steps of a few ulps each
        # through 32-term dot products, not yet calibrated on a GPU.
        tol = 1e-11 if dtype == "float64" else 1e-4
        for stat in STATS:
            assert np.array_equal(gpu.stats[stat], cpu.stats[stat]), stat
    np.testing.assert_allclose(gpu.y, cpu.y, rtol=tol, atol=tol)


@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_mlp_linear_layer_matches_expm(method):
    """One identity-activated layer is dh/dt = A h, so h(1) = expm(A) h0."""
    rng = np.random.default_rng(13)
    a = 0.5 * rng.standard_normal((3, 3))
    y0 = rng.standard_normal((N, 3))
    kwargs = {"dt": 1e-3} if method == "rk4" else {"rtol": 1e-12, "atol": 1e-12}
    sol = fastode.solve(fastode.MLP([a], activation="identity"), y0, (0.0, 1.0),
                        method=method, backend="cupy", **kwargs)
    np.testing.assert_allclose(sol.y, y0 @ expm(a).T, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_mlp_time_input(activation):
    """The field takes t through the first layer: with W_1 = [0, 1] and an
    identity last layer after σ(W_1 [h, t]), dh/dt = σ(t), so rk4 with
    dt = 1e-3 integrates it to round-off against the CPU's quadrature."""
    mlp = fastode.MLP([[[0.0, 1.0]], [[1.0]]], activation=activation, time_input=True)
    y0 = np.linspace(-1.0, 1.0, N)[:, None]
    sol = fastode.solve(mlp, y0, (0.0, 1.0), method="rk4", dt=1e-3, backend="cupy")
    t = np.linspace(0.0, 1.0, 100_001)
    sigma = mlp.rhs(t, np.zeros((len(t), 1)))[:, 0]
    integral = np.sum((sigma[1:] + sigma[:-1]) / 2) * (t[1] - t[0])
    np.testing.assert_allclose(sol.y[:, 0], y0[:, 0] + integral, rtol=1e-8, atol=1e-8)


def test_mlp_overflow_reports_last_finite_state():
    """Euler on dh/dt = 1000 h with dt = 1e-3 doubles h each step, h_k = 2^k
    (to rounding). f = 1000 h first overflows at h = 2^1015, so step 1016
    fails and the row stops at t = 1.015 with h = 2^1015."""
    mlp = fastode.MLP([[[1000.0]]], activation="identity")
    y0 = np.array([[1.0], [0.0]])
    sol = fastode.solve(mlp, y0, (0.0, 2.0), method="euler", dt=1e-3, backend="cupy")
    assert sol.status[0] == Status.NON_FINITE
    assert sol.stats["n_steps"][0] == 1016
    assert sol.t_final[0] == pytest.approx(1.015, rel=1e-12)
    assert sol.y[0, 0] == pytest.approx(2.0**1015, rel=1e-12)
    assert sol.status[1] == Status.SUCCESS
    assert sol.y[1, 0] == 0.0


def test_mlp_device_y0_gives_device_results():
    mlp = _mlp("tanh", time_input=False)
    y0 = cupy.asarray(np.random.default_rng(14).standard_normal((N, 4)))
    sol = fastode.solve(mlp, y0, (0.0, 1.0), method="rk4", dt=0.02, backend="cupy")
    assert isinstance(sol.y, cupy.ndarray)
    cpu = fastode.solve(mlp, cupy.asnumpy(y0), (0.0, 1.0), method="rk4", dt=0.02)
    np.testing.assert_allclose(cupy.asnumpy(sol.y), cpu.y, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("method", "activation"), [("rk4", "tanh"), ("tsit5", "softplus")])
def test_wide_mlp_fixed_gpu_matches_cpu(method, activation, dtype):
    """d = 32 with a layer of 260 units runs batched (one matrix product per
    layer); cuBLAS sums the products in another order than the core, so the
    bound is a relative one per step, not a few ulps."""
    rng = np.random.default_rng(12)
    shapes = [(260, 33), (32, 260)]
    # Weights scaled by 1 / sqrt(fan-in), as networks are initialised.
    weights = [rng.standard_normal(shape) / np.sqrt(shape[1]) for shape in shapes]
    biases = [0.1 * rng.standard_normal(shape[0]) for shape in shapes]
    mlp = fastode.MLP(weights, biases, activation=activation, time_input=True)
    y0 = np.random.default_rng(13).standard_normal((N, 32))
    kwargs = {"method": method, "adaptive": False if method == "tsit5" else None,
              "dt": 0.02, "dtype": dtype, "t_eval": np.linspace(0.0, 1.0, 5)}
    cpu = fastode.solve(mlp, y0, (0.0, 1.0), backend="cpp", **kwargs)
    gpu = fastode.solve(mlp, y0, (0.0, 1.0), backend="cupy", **kwargs)
    assert np.array_equal(gpu.status, cpu.status)
    tol = 1e-10 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(gpu.y, cpu.y, rtol=tol, atol=tol)
    for stat in STATS:
        assert np.array_equal(gpu.stats[stat], cpu.stats[stat]), stat


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("method", ["dopri5", "tsit5"])
def test_wide_mlp_adaptive_gpu_within_tolerance(method, dtype):
    """Adaptive steps of a d = 32 network: a decision flipped by rounding
    moves the result by about the local error, so the bound is the tolerance."""
    rng = np.random.default_rng(14)
    shapes = [(128, 32), (32, 128)]
    weights = [rng.standard_normal(shape) / np.sqrt(shape[1]) for shape in shapes]
    mlp = fastode.MLP(weights, [np.zeros(128), np.zeros(32)], activation="tanh")
    y0 = rng.standard_normal((N, 32))
    single = dtype == "float32"
    kwargs = {"method": method, "dtype": dtype, "rtol": 2e-5 if single else 1e-8,
              "atol": 1e-7 if single else 1e-10, "t_eval": np.linspace(0.0, 1.0, 5)}
    cpu = fastode.solve(mlp, y0, (0.0, 1.0), backend="cpp", **kwargs)
    gpu = fastode.solve(mlp, y0, (0.0, 1.0), backend="cupy", **kwargs)
    assert np.array_equal(gpu.status, cpu.status)
    tol = 1e-3 if single else 1e-6
    np.testing.assert_allclose(gpu.y, cpu.y, rtol=tol, atol=tol)
