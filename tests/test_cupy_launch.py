"""The Python side of ``backend="cupy"``, run against a NumPy stand-in for CuPy.

No GPU is needed. The stand-in kernel first checks the launch arguments
against the parameter list of the generated CUDA source (count, order, and
each scalar and pointer type), then computes the kernel's outputs with the C++
core, which runs the same header code. So these tests check argument
marshalling, strides, output shapes and the host/device conversions. The
arithmetic on a real GPU is checked by tests/gpu.
"""

from __future__ import annotations

import re
import types

import numpy as np
import pytest

import fastode
from fastode import _core
from fastode._cupy import _launch
from fastode._cupy._source import LAYOUTS

STATS = ("n_steps", "n_accepted", "n_rejected", "n_rhs")

# C type in a kernel parameter list -> NumPy dtype of the launch argument.
C_TYPES = {
    "double": np.float64,
    "float": np.float32,
    "long long": np.int64,
    "int": np.int32,
    "signed char": np.int8,
}


class DeviceArray(np.ndarray):
    """A NumPy array that plays a CuPy array."""

    def get(self):
        return np.array(self).view(np.ndarray)


def _device(array, dtype=None):
    return np.array(array, dtype=dtype).view(DeviceArray)


def _parameter_types(code: str, name: str) -> list[tuple[str, bool]]:
    """(C type, is pointer) of each parameter of kernel ``name`` in ``code``."""
    match = re.search(
        rf'extern "C" __global__ void {name}\((.*?)\) {{', code, re.DOTALL
    )
    assert match, f"kernel {name} not found in the generated source"
    types_ = []
    for declaration in match.group(1).split(","):
        words = declaration.replace("__restrict__", "").replace("const", "").split()
        pointer = "*" in declaration
        c_type = " ".join(words[:-1]).replace("*", "").strip()
        types_.append((c_type, pointer))
    return types_


def _check_arguments(code, name, args):
    declared = _parameter_types(code, name)
    assert len(args) == len(declared)
    for (c_type, pointer), value in zip(declared, args, strict=True):
        assert isinstance(value, DeviceArray) == pointer, (c_type, type(value))
        assert value.dtype == np.dtype(C_TYPES[c_type]), (c_type, value.dtype)
        if pointer:
            assert value.flags.c_contiguous


def _run_on_core(name: str, args: tuple) -> None:
    """Compute the outputs of kernel ``name`` with the C++ core, in place."""
    _, method, system, _ = re.match(
        r"(fastode)_(\w+?)_(oscillator|lorenz|linear\d|"
        r"hamiltonian_\w+?)_(float\d\d)$",
        name,
    ).groups()
    (
        y0,
        t_eval,
        n_eval,
        _batch_size,
        t0,
        t1,
        dt,
        rtol,
        atol,
        max_steps,
        controller,
        y,
        t_final,
        status,
        n_steps,
        n_accepted,
        n_rejected,
        n_rhs,
        *params,
    ) = args
    layout = LAYOUTS[system]
    values = {}
    for index, param in enumerate(layout.params):
        array, stride = params[2 * index], params[2 * index + 1]
        assert stride == (0 if array.shape[0] == 1 else array.size // array.shape[0])
        values[param] = np.asarray(array)
    if system.startswith("linear"):
        values["has_b"] = bool(params[-1])
        kernel = _core.solve_linear
    elif system.startswith("hamiltonian_"):
        values["potential"] = system.removeprefix("hamiltonian_")
        kernel = _core.solve_hamiltonian
    else:
        kernel = getattr(_core, f"solve_{system}")
    out = kernel(
        np.asarray(y0),
        np.asarray(t_eval)[:n_eval],
        n_eval > 0,
        method=method,
        t0=t0,
        t1=t1,
        dt=dt,
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
        controller=controller,
        threads=1,
        **values,
    )
    for target, key in (
        (y, "y"),
        (t_final, "t_final"),
        (status, "status"),
        (n_steps, "n_steps"),
        (n_accepted, "n_accepted"),
        (n_rejected, "n_rejected"),
        (n_rhs, "n_rhs"),
    ):
        assert target.shape == out[key].shape, key
        target[...] = out[key]


class _Kernel:
    def __init__(self, code, name):
        self.code, self.name = code, name

    def __call__(self, grid, block, args):
        n = int(args[3])
        assert grid[0] * block[0] >= n > (grid[0] - 1) * block[0]
        _check_arguments(self.code, self.name, args)
        _run_on_core(self.name, args)


class _RawModule:
    def __init__(self, code, options):
        assert "-std=c++17" in options
        self.code = code

    def get_function(self, name):
        return _Kernel(self.code, name)


def _fake_cupy():
    runtime = types.SimpleNamespace(
        getDeviceCount=lambda: 1,
        CUDARuntimeError=type("CUDARuntimeError", (RuntimeError,), {}),
    )
    return types.SimpleNamespace(
        ndarray=DeviceArray,
        asarray=lambda a, dtype=None: _device(a, dtype),
        ascontiguousarray=lambda a, dtype=None: _device(a, dtype),
        asnumpy=lambda a: np.array(a).view(np.ndarray),
        from_dlpack=lambda a: np.from_dlpack(a).view(DeviceArray),
        # Outputs start as garbage, so a value the kernel never writes shows.
        empty=lambda shape, dtype: np.full(shape, 99, dtype=dtype).view(DeviceArray),
        zeros=lambda shape, dtype: np.zeros(shape, dtype=dtype).view(DeviceArray),
        RawModule=_RawModule,
        cuda=types.SimpleNamespace(runtime=runtime),
    )


@pytest.fixture(autouse=True)
def fake_cupy(monkeypatch):
    fake = _fake_cupy()
    monkeypatch.setattr(_launch, "import_cupy", lambda: fake)
    _launch._kernel.cache_clear()
    yield fake
    _launch._kernel.cache_clear()


def _assert_same(gpu, cpu):
    assert np.array_equal(np.asarray(gpu.y), cpu.y, equal_nan=True)
    assert np.array_equal(np.asarray(gpu.t), cpu.t)
    assert np.array_equal(np.asarray(gpu.status), cpu.status)
    assert np.array_equal(np.asarray(gpu.t_final), cpu.t_final)
    for stat in STATS:
        assert np.array_equal(np.asarray(gpu.stats[stat]), cpu.stats[stat]), stat


def _cases():
    rng = np.random.default_rng(3)
    n = 40
    k = rng.uniform(0.5, 3.0, n)
    return [
        (
            fastode.Oscillator(k=k, b=0.2, force=0.3, omega=1.1),
            rng.standard_normal((n, 2)),
            "dopri5",
        ),
        (
            fastode.Lorenz(rho=np.linspace(0.0, 21.0, n)),
            rng.standard_normal((n, 3)),
            "rk4",
        ),
        (
            fastode.Linear(-np.eye(4) + 0.1 * rng.standard_normal((n, 4, 4))),
            rng.standard_normal((n, 4)),
            "tsit5",
        ),
        (fastode.Linear(-np.eye(2), b=[1.0, 2.0]), rng.standard_normal((n, 2)), "bs3"),
        (
            fastode.Hamiltonian("kepler", k=1.0, mass=rng.uniform(1.0, 2.0, n)),
            np.tile([0.4, 0.0, 0.0, 2.0], (n, 1)),
            "yoshida6",
        ),
        (
            fastode.Hamiltonian("pendulum", k=k),
            rng.uniform(-1.0, 1.0, (n, 2)),
            "verlet",
        ),
    ]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("case", range(6))
def test_launch_matches_core(case, dense, dtype):
    system, y0, method = _cases()[case]
    kwargs = {"method": method, "dtype": dtype, "t_span": (0.0, 1.5)}
    if fastode.METHODS[method] == "adaptive":
        kwargs["rtol"] = 1e-4 if dtype == "float32" else 1e-8
    else:
        kwargs["dt"] = 0.01
    if dense:
        kwargs["t_eval"] = np.linspace(0.0, 1.5, 7)
    gpu = fastode.solve(system, y0, backend="cupy", **kwargs)
    cpu = fastode.solve(system, y0, backend="cpp", **kwargs)
    assert type(gpu.y) is np.ndarray
    assert gpu.y.dtype == np.dtype(dtype)
    _assert_same(gpu, cpu)


def test_device_y0_gives_device_results(fake_cupy):
    y0 = np.random.default_rng(0).standard_normal((10, 3))
    gpu = fastode.solve(
        fastode.Lorenz(),
        fake_cupy.asarray(y0),
        (0.0, 1.0),
        method="rk4",
        dt=0.01,
        t_eval=[0.0, 0.5, 1.0],
        backend="cupy",
    )
    cpu = fastode.solve(
        fastode.Lorenz(), y0, (0.0, 1.0), method="rk4", dt=0.01, t_eval=[0.0, 0.5, 1.0]
    )
    for array in (gpu.y, gpu.t, gpu.status, gpu.t_final, *gpu.stats.values()):
        assert isinstance(array, DeviceArray)
    _assert_same(gpu, cpu)


def test_device_y0_keeps_float32(fake_cupy):
    y0 = fake_cupy.asarray(np.ones((4, 2), dtype=np.float32))
    sol = fastode.solve(
        fastode.Oscillator(k=1.0), y0, (0.0, 1.0), method="rk4", dt=0.1, backend="cupy"
    )
    assert sol.y.dtype == np.float32


def test_device_y0_integers_become_float64(fake_cupy):
    y0 = fake_cupy.asarray(np.array([[1, 0], [2, 0]]))
    sol = fastode.solve(
        fastode.Oscillator(k=1.0), y0, (0.0, 1.0), method="rk4", dt=0.1, backend="cupy"
    )
    assert sol.y.dtype == np.float64


def test_single_state_drops_batch_axis():
    gpu = fastode.solve(
        fastode.Linear([[-0.5]]),
        [1.0],
        (2.0, 0.0),
        t_eval=[2.0, 1.0, 0.0],
        method="dopri5",
        backend="cupy",
    )
    cpu = fastode.solve(
        fastode.Linear([[-0.5]]),
        [1.0],
        (2.0, 0.0),
        t_eval=[2.0, 1.0, 0.0],
        method="dopri5",
    )
    assert gpu.y.shape == (3, 1)
    assert gpu.status.shape == ()
    _assert_same(gpu, cpu)


def test_device_parameter_matches_host(fake_cupy):
    rho = np.linspace(0.0, 21.0, 12)
    y0 = np.ones((12, 3))
    host = fastode.solve(
        fastode.Lorenz(rho=rho), y0, (0.0, 1.0), method="rk4", dt=0.01, backend="cupy"
    )
    device = fastode.solve(
        fastode.Lorenz(rho=fake_cupy.asarray(rho)),
        y0,
        (0.0, 1.0),
        method="rk4",
        dt=0.01,
        backend="cupy",
    )
    _assert_same(device, host)


def test_device_parameter_wrong_shape(fake_cupy):
    with pytest.raises(ValueError, match=r"rho has shape \(5,\)"):
        fastode.solve(
            fastode.Lorenz(rho=fake_cupy.asarray(np.ones(5))),
            np.ones((12, 3)),
            (0.0, 1.0),
            method="rk4",
            dt=0.01,
            backend="cupy",
        )


def test_device_y0_wrong_shape(fake_cupy):
    with pytest.raises(ValueError, match=r"must have shape \(3,\) or \(N, 3\)"):
        fastode.solve(
            fastode.Lorenz(),
            fake_cupy.asarray(np.ones((4, 2))),
            (0.0, 1.0),
            backend="cupy",
        )


def test_device_y0_complex(fake_cupy):
    with pytest.raises(TypeError, match="complex"):
        fastode.solve(
            fastode.Lorenz(),
            fake_cupy.asarray(np.ones((4, 3), complex)),
            (0.0, 1.0),
            backend="cupy",
        )


def test_device_t_eval(fake_cupy):
    t_eval = fake_cupy.asarray([0.0, 0.5, 1.0])
    sol = fastode.solve(
        fastode.Linear([[-1.0]]),
        [[1.0]],
        (0.0, 1.0),
        t_eval=t_eval,
        method="rk4",
        dt=0.01,
        backend="cupy",
    )
    np.testing.assert_allclose(sol.y[0, :, 0], np.exp([-0.0, -0.5, -1.0]), rtol=1e-8)


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


def test_grid_covers_batch_larger_than_block():
    n = _launch.THREADS_PER_BLOCK * 2 + 5
    y0 = np.random.default_rng(5).standard_normal((n, 2))
    gpu = fastode.solve(
        fastode.Oscillator(k=1.0),
        y0,
        (0.0, 1.0),
        method="heun",
        dt=0.05,
        backend="cupy",
    )
    cpu = fastode.solve(
        fastode.Oscillator(k=1.0), y0, (0.0, 1.0), method="heun", dt=0.05
    )
    _assert_same(gpu, cpu)


def test_host_dlpack_object_takes_host_path():
    # NumPy arrays export DLPack on the CPU device, so they must be uploaded.
    assert _launch._as_device_array(_fake_cupy(), np.ones(3)) is None
