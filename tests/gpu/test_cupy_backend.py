"""``backend="cupy"`` on a real GPU: closed forms and agreement with the C++ core.

These tests need CuPy and a CUDA device and skip without them. Run them with
``tools/gpu-check.sh`` on a machine with an NVIDIA GPU. With
FASTODE_CUPY_STANDIN=1 (``tools/gpu-check.sh --dry-run``) they run against
the NumPy stand-in for CuPy instead, which checks the tests themselves but
not the GPU's arithmetic.

The GPU and the CPU run the same header code, but not the same instructions.
The GPU contracts a * b + c into fused multiply-adds where the host compiler
may not, and its cos, sin and pow differ from glibc in the last bits. So
fixed-step results agree to a few ulps per step, and adaptive ones to well
inside the requested tolerance, while step counts of fixed-step runs agree
exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastode
from fastode import Status
from fastode._cupy import device_available
from fastode._cupy._launch import _as_device_array

cupy = pytest.importorskip(
    "cupy", reason='CuPy is not installed (pip install "fastode[gpu]")'
)

#: True when conftest.py put the NumPy stand-in in place of CuPy
#: (FASTODE_CUPY_STANDIN=1), which checks these tests' logic without a GPU.
STANDIN = getattr(cupy, "is_standin", False)
needs_real_cupy = pytest.mark.skipif(
    STANDIN, reason="the stand-in's arrays are NumPy arrays without CUDA pointers"
)

pytestmark = [
    pytest.mark.skipif(not device_available(), reason="no CUDA device is visible"),
    # CuPy warns when CUDA_PATH is unset, which is normal with toolkit wheels.
    pytest.mark.filterwarnings("ignore:CUDA path could not be detected:UserWarning"),
]

FIXED = ("euler", "midpoint", "heun", "rk4")
ADAPTIVE = ("bs3", "dopri5", "tsit5")
SYMPLECTIC = ("symplectic_euler", "verlet", "yoshida4", "yoshida6")
STATS = ("n_steps", "n_accepted", "n_rejected", "n_rhs")
N = 300


def _run(system, y0, backend, method, **kwargs):
    if fastode.METHODS[method] == "adaptive":
        # float32 raises rtol below 100 eps (1.19e-5) with a warning.
        single = kwargs.get("dtype") == "float32"
        kwargs.setdefault("rtol", 2e-5 if single else 1e-8)
        kwargs.setdefault("atol", 1e-7 if single else 1e-10)
    else:
        kwargs.setdefault("dt", 0.01)
    return fastode.solve(system, y0, backend=backend, method=method, **kwargs)


def _systems(rng):
    """Systems with per-trajectory parameters, each with a batch of y0."""
    k = rng.uniform(0.5, 4.0, N)
    A = -np.eye(3) + 0.3 * rng.standard_normal((N, 3, 3))
    return {
        "oscillator": (
            fastode.Oscillator(k=k, b=0.3, force=0.5, omega=1.3),
            rng.standard_normal((N, 2)),
        ),
        "lorenz": (
            fastode.Lorenz(rho=np.linspace(0.0, 21.0, N)),
            rng.uniform(-5.0, 5.0, (N, 3)),
        ),
        "linear3": (
            fastode.Linear(A, b=rng.standard_normal((N, 3))),
            rng.standard_normal((N, 3)),
        ),
        "pendulum": (
            fastode.Hamiltonian("pendulum", k=k),
            rng.uniform(-1.0, 1.0, (N, 2)),
        ),
        "henon_heiles": (
            fastode.Hamiltonian("henon_heiles"),
            rng.uniform(-0.3, 0.3, (N, 4)),
        ),
    }


SYSTEMS = _systems(np.random.default_rng(7))
RK_CASES = [(name, m) for name in SYSTEMS for m in FIXED + ADAPTIVE]
SYMPLECTIC_CASES = [
    (name, m) for name in ("pendulum", "henon_heiles") for m in SYMPLECTIC
]


def _ulp_scale(y, dtype):
    return np.finfo(dtype).eps * np.maximum(np.abs(y), 1.0)


# --- agreement with the C++ core ----------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("name", "method"), RK_CASES + SYMPLECTIC_CASES)
def test_gpu_matches_cpu(name, method, dtype):
    system, y0 = SYSTEMS[name]
    t_eval = np.linspace(0.0, 2.0, 9)
    cpu = _run(system, y0, "cpp", method, t_span=(0.0, 2.0), t_eval=t_eval, dtype=dtype)
    gpu = _run(
        system, y0, "cupy", method, t_span=(0.0, 2.0), t_eval=t_eval, dtype=dtype
    )
    assert isinstance(gpu.y, np.ndarray)
    assert gpu.y.dtype == np.dtype(dtype)
    assert np.array_equal(gpu.status, cpu.status)
    assert np.array_equal(gpu.t, cpu.t)
    if fastode.METHODS[method] == "adaptive":
        # Both runs meet rtol (1e-8, or 2e-5 in float32). A flipped accept
        # decision moves the result by about the local error, far below
        # this bound.
        tol = 1e-6 if dtype == "float64" else 1e-3
        np.testing.assert_allclose(gpu.y, cpu.y, rtol=tol, atol=tol)
    else:
        # NOTE: 8 ulps per step is an estimate, not yet calibrated on a GPU.
        steps = 200  # span 2.0 at dt 0.01
        bound = 8 * steps * _ulp_scale(cpu.y, dtype)
        assert np.all(np.abs(gpu.y - cpu.y) <= bound)
        for stat in STATS:
            assert np.array_equal(gpu.stats[stat], cpu.stats[stat]), stat


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", ["oscillator", "lorenz", "linear3"])
@pytest.mark.parametrize("method", ADAPTIVE)
def test_gpu_fixed_pair_matches_cpu(method, name, dtype):
    """Embedded pairs with adaptive=False agree as the fixed-step methods do."""
    system, y0 = SYSTEMS[name]
    kwargs = {"method": method, "adaptive": False, "dt": 0.01, "t_span": (0.0, 2.0),
              "dtype": dtype}
    cpu = fastode.solve(system, y0, backend="cpp", **kwargs)
    gpu = fastode.solve(system, y0, backend="cupy", **kwargs)
    assert np.array_equal(gpu.status, cpu.status)
    bound = 8 * 200 * _ulp_scale(cpu.y, dtype)
    assert np.all(np.abs(gpu.y - cpu.y) <= bound)
    for stat in STATS:
        assert np.array_equal(gpu.stats[stat], cpu.stats[stat]), stat


# --- closed forms ----------------------------------------------------------------


@pytest.mark.parametrize("method", ADAPTIVE)
def test_exponential_decay(method):
    k = np.linspace(0.1, 3.0, 1000)
    sol = fastode.solve(
        fastode.Linear(-k[:, None, None]),
        np.ones((1000, 1)),
        (0.0, 2.0),
        method=method,
        rtol=1e-10,
        atol=1e-12,
        backend="cupy",
    )
    assert sol.success
    np.testing.assert_allclose(sol.y[:, 0], np.exp(-2.0 * k), rtol=1e-8)


def test_damped_oscillator_rk4(oscillator_exact):
    t_eval = np.linspace(0.0, 5.0, 11)
    sol = fastode.solve(
        fastode.Oscillator(k=4.0, b=0.5),
        [1.0, 0.0],
        (0.0, 5.0),
        t_eval=t_eval,
        method="rk4",
        dt=1e-3,
        backend="cupy",
    )
    np.testing.assert_allclose(sol.y, oscillator_exact(4.0, 0.5, t_eval), atol=1e-10)


@pytest.mark.parametrize("method", SYMPLECTIC)
def test_harmonic_hamiltonian(method):
    k = np.linspace(0.5, 2.0, 64)
    y0 = np.tile([1.0, 0.0], (64, 1))
    sol = fastode.solve(
        fastode.Hamiltonian("harmonic", k=k),
        y0,
        (0.0, 1.0),
        method=method,
        dt=1e-3,
        backend="cupy",
    )
    w = np.sqrt(k)
    tol = 1e-3 if method == "symplectic_euler" else 1e-6
    np.testing.assert_allclose(sol.y[:, 0], np.cos(w), atol=tol)
    np.testing.assert_allclose(sol.y[:, 1], -w * np.sin(w), atol=tol)


# --- device arrays in and out -----------------------------------------------------


def test_cupy_in_gives_cupy_out():
    y0 = cupy.asarray(np.random.default_rng(1).standard_normal((N, 3)))
    gpu = fastode.solve(
        fastode.Lorenz(), y0, (0.0, 0.5), method="rk4", dt=1e-3, backend="cupy"
    )
    cpu = fastode.solve(
        fastode.Lorenz(), cupy.asnumpy(y0), (0.0, 0.5), method="rk4", dt=1e-3
    )
    for array in (gpu.y, gpu.t, gpu.status, gpu.t_final, *gpu.stats.values()):
        assert isinstance(array, cupy.ndarray)
    bound = 8 * 500 * _ulp_scale(cpu.y, np.float64)
    assert np.all(np.abs(cupy.asnumpy(gpu.y) - cpu.y) <= bound)


class _InterfaceOnly:
    """Exposes a CuPy array through ``__cuda_array_interface__`` alone."""

    def __init__(self, array):
        self.__cuda_array_interface__ = array.__cuda_array_interface__
        self._array = array


class _DLPackOnly:
    """Exposes a CuPy array through the DLPack protocol alone."""

    def __init__(self, array):
        self._array = array

    def __dlpack__(self, **kwargs):
        return self._array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._array.__dlpack_device__()


@needs_real_cupy
@pytest.mark.parametrize("wrapper", [_InterfaceOnly, _DLPackOnly])
def test_foreign_device_arrays_are_not_copied(wrapper):
    y0 = cupy.ones((16, 2))
    view = _as_device_array(cupy, wrapper(y0))
    assert view.data.ptr == y0.data.ptr
    sol = fastode.solve(
        fastode.Oscillator(k=1.0),
        wrapper(y0),
        (0.0, np.pi),
        method="rk4",
        dt=1e-3,
        backend="cupy",
    )
    assert isinstance(sol.y, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(sol.y[:, 0]), -1.0, atol=1e-10)


def test_device_parameters():
    rho = np.linspace(0.0, 21.0, N)
    y0 = np.ones((N, 3))
    host = fastode.solve(
        fastode.Lorenz(rho=rho), y0, (0.0, 1.0), method="rk4", dt=1e-3, backend="cupy"
    )
    device = fastode.solve(
        fastode.Lorenz(rho=cupy.asarray(rho)),
        y0,
        (0.0, 1.0),
        method="rk4",
        dt=1e-3,
        backend="cupy",
    )
    assert np.array_equal(host.y, device.y)


# --- failures, shapes and edge cases ------------------------------------------------


@pytest.mark.parametrize(
    "run",
    [{"method": "dopri5", "rtol": 1e-8, "atol": 1e-10}, {"method": "rk4", "dt": 0.01}],
)
def test_non_finite_rows_do_not_poison_batch(run):
    k = np.array([1.0, np.nan, 2.0, 1.0, 1.0])
    y0 = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [np.nan, 0.0], [np.inf, 0.0]])
    sol = fastode.solve(
        fastode.Linear(-k[:, None, None] * np.eye(2)),
        y0,
        (0.0, 1.0),
        backend="cupy",
        **run,
    )
    assert sol.status[0] == Status.SUCCESS
    assert sol.status[2] == Status.SUCCESS
    assert np.all(sol.status[[1, 3, 4]] == Status.NON_FINITE)
    tol = 1e-8 if run["method"] == "dopri5" else 1e-6
    np.testing.assert_allclose(sol.y[[0, 2], 0], np.exp([-1.0, -2.0]), rtol=tol)
    alone = fastode.solve(
        fastode.Linear(-np.eye(2)), y0[0], (0.0, 1.0), backend="cupy", **run
    )
    assert np.array_equal(sol.y[0], alone.y)
    for stat in STATS:
        assert sol.stats[stat][0] == alone.stats[stat], stat


def test_max_steps_status():
    with pytest.warns(fastode.StiffnessWarning):
        sol = fastode.solve(
            fastode.Linear([[-1e6]]),
            [1.0],
            (0.0, 10.0),
            method="dopri5",
            max_steps=1000,
            backend="cupy",
        )
    assert sol.status == Status.MAX_STEPS
    assert sol.stats["n_steps"] == 1000


def test_empty_batch():
    sol = fastode.solve(
        fastode.Lorenz(),
        np.zeros((0, 3)),
        (0.0, 1.0),
        t_eval=[0.0, 1.0],
        backend="cupy",
    )
    assert sol.y.shape == (0, 2, 3)
    assert sol.status.shape == (0,)


def test_backward_span_with_t_eval():
    t_eval = [2.0, 1.5, 1.0, 0.5, 0.0]
    sol = fastode.solve(
        fastode.Linear([[-0.5]]),
        [1.0],
        (2.0, 0.0),
        t_eval=t_eval,
        method="tsit5",
        rtol=1e-10,
        atol=1e-12,
        backend="cupy",
    )
    expected = np.exp(0.5 * (2.0 - np.array(t_eval)))
    np.testing.assert_allclose(sol.y[:, 0], expected, rtol=1e-8)
    assert np.array_equal(sol.t, t_eval)


def test_zero_length_span():
    sol = fastode.solve(
        fastode.Linear(-np.eye(2)),
        [1.0, -2.0],
        (3.0, 3.0),
        t_eval=[3.0],
        method="dopri5",
        backend="cupy",
    )
    assert sol.status == Status.SUCCESS
    assert np.array_equal(sol.y, [[1.0, -2.0]])


# --- chunks, streams and backend selection ------------------------------------------


def _chunk_problem(n=10_000):
    rng = np.random.default_rng(4)
    system = fastode.Lorenz(rho=np.linspace(0.0, 21.0, n))
    y0 = rng.uniform(-5.0, 5.0, (n, 3))
    kwargs = {"method": "dopri5", "rtol": 1e-8, "atol": 1e-10}
    return system, y0, {**kwargs, "t_eval": np.linspace(0.0, 1.0, 5)}


def _assert_identical(a, b):
    assert np.array_equal(a.y, b.y, equal_nan=True)
    assert np.array_equal(a.status, b.status)
    assert np.array_equal(a.t_final, b.t_final)
    for stat in STATS:
        assert np.array_equal(a.stats[stat], b.stats[stat]), stat


@pytest.mark.parametrize("chunk_size", [1, 999, 4096])
def test_chunk_size_is_bit_identical(chunk_size):
    system, y0, kwargs = _chunk_problem(2000 if chunk_size == 1 else 10_000)
    whole = fastode.solve(system, y0, (0.0, 1.0), backend="cupy", **kwargs)
    chunked = fastode.solve(
        system, y0, (0.0, 1.0), backend="cupy", chunk_size=chunk_size, **kwargs
    )
    _assert_identical(chunked, whole)


def test_small_device_memory_runs_in_chunks(monkeypatch):
    from fastode._cupy import _pipeline

    system, y0, kwargs = _chunk_problem()
    whole = fastode.solve(system, y0, (0.0, 1.0), backend="cupy", **kwargs)
    # Room for about 1200 rows per chunk buffer: 9 chunks on two streams.
    monkeypatch.setattr(_pipeline, "free_device_memory", lambda cupy: 600_000)
    chunked = fastode.solve(system, y0, (0.0, 1.0), backend="cupy", **kwargs)
    _assert_identical(chunked, whole)


def test_device_batch_in_chunks_stays_on_device():
    system, y0, kwargs = _chunk_problem()
    whole = fastode.solve(system, cupy.asarray(y0), (0.0, 1.0), backend="cupy", **kwargs)
    chunked = fastode.solve(
        system, cupy.asarray(y0), (0.0, 1.0), backend="cupy", chunk_size=3000, **kwargs
    )
    assert isinstance(chunked.y, cupy.ndarray)
    assert bool(cupy.array_equal(chunked.y, whole.y))


def test_out_file_matches_memory(tmp_path):
    system, y0, kwargs = _chunk_problem()
    path = tmp_path / "y.npy"
    in_memory = fastode.solve(system, y0, (0.0, 1.0), backend="cupy", **kwargs)
    fastode.solve(
        system, y0, (0.0, 1.0), backend="cupy", out=path, chunk_size=2048, **kwargs
    )
    assert np.array_equal(np.load(path), in_memory.y)


def test_stiffness_warning_on_gpu():
    with pytest.warns(fastode.StiffnessWarning, match="MAX_STEPS: 1"):
        fastode.solve(
            fastode.Linear(np.array([[[-1.0]], [[-1e6]]])),
            np.ones((2, 1)),
            (0.0, 10.0),
            method="dopri5",
            max_steps=1000,
            backend="cupy",
        )


def test_auto_picks_gpu_for_large_batch():
    from fastode import _solve
    from fastode._cupy import AUTO_GPU_MIN_TRAJECTORIES

    y0 = np.zeros((AUTO_GPU_MIN_TRAJECTORIES, 3))
    assert _solve._check_backend("auto", fastode.Lorenz(), y0) == "cupy"
    assert _solve._check_backend("auto", fastode.Lorenz(), y0[:100]) == "cpp"
    if not STANDIN:
        device_y0 = cupy.asarray(y0[:2])
        assert _solve._check_backend("auto", fastode.Lorenz(), device_y0) == "cupy"
