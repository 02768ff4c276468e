"""The Python side of ``backend="cupy"``, run against a NumPy stand-in for CuPy.

No GPU is needed. The stand-in (tests/cupy_standin.py) checks each launch's
arguments against the generated CUDA source, computes the kernel's outputs
with the C++ core, which runs the same header code, and runs queued stream
work only at synchronization, as a GPU does. So these tests check argument
marshalling, strides, output shapes, host/device conversions, and the chunk
pipeline's ordering of copies, launches and synchronization. The arithmetic
on a real GPU is checked by tests/gpu.
"""

from __future__ import annotations

import numpy as np
import pytest
from cupy_standin import DeviceArray, DLPackOnly, InterfaceOnly, StandIn

import fastode
from fastode._cupy import _launch, _pipeline

STATS = ("n_steps", "n_accepted", "n_rejected", "n_rhs")


@pytest.fixture(autouse=True)
def fake_cupy(monkeypatch):
    fake = StandIn()
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
    _check_launch(system, y0, method, dense, dtype, dt=0.01, t1=1.5)


def _check_launch(system, y0, method, dense, dtype, dt, t1):
    """Solve on the stand-in and on the core, and require identical results."""
    kwargs = {"method": method, "dtype": dtype, "t_span": (0.0, t1)}
    if fastode.METHODS[method] == "adaptive":
        kwargs["rtol"] = 1e-4 if dtype == "float32" else 1e-8
    else:
        kwargs["dt"] = dt
    if dense:
        kwargs["t_eval"] = np.linspace(0.0, t1, 7)
    gpu = fastode.solve(system, y0, backend="cupy", **kwargs)
    cpu = fastode.solve(system, y0, backend="cpp", **kwargs)
    assert type(gpu.y) is np.ndarray
    assert gpu.y.dtype == np.dtype(dtype)
    _assert_same(gpu, cpu)


@pytest.mark.parametrize("method", ["bs3", "dopri5", "tsit5"])
def test_fixed_step_pair_matches_core(method):
    """adaptive=False launches the ``<method>_fixed`` kernel; the published
    GPU ensemble workload (float32 Lorenz, dt = 0.001) on the stand-in."""
    system = fastode.Lorenz(rho=np.linspace(0.0, 21.0, 40))
    y0 = np.tile(np.float32([1.0, 0.0, 0.0]), (40, 1))
    kwargs = {"method": method, "adaptive": False, "dt": 1e-3, "t_span": (0.0, 1.0)}
    gpu = fastode.solve(system, y0, backend="cupy", **kwargs)
    cpu = fastode.solve(system, y0, backend="cpp", **kwargs)
    _assert_same(gpu, cpu)
    assert np.all(gpu.stats["n_steps"] == 1000)


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


def test_grid_covers_batch_larger_than_block():
    n = _pipeline.THREADS_PER_BLOCK * 2 + 5
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
    assert _launch._as_device_array(StandIn(), np.ones(3)) is None


# --- chunked runs ----------------------------------------------------------------


def _chunk_case(n=300):
    rng = np.random.default_rng(11)
    system = fastode.Linear(
        -np.eye(3) + 0.2 * rng.standard_normal((n, 3, 3)), b=rng.standard_normal(3)
    )
    y0 = rng.standard_normal((n, 3))
    kwargs = {"method": "dopri5", "rtol": 1e-8, "t_eval": np.linspace(0.0, 1.0, 5)}
    return system, y0, kwargs


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 299, 300, 1000])
def test_chunk_size_does_not_change_results(fake_cupy, chunk_size):
    system, y0, kwargs = _chunk_case()
    gpu = fastode.solve(
        system, y0, (0.0, 1.0), backend="cupy", chunk_size=chunk_size, **kwargs
    )
    cpu = fastode.solve(system, y0, (0.0, 1.0), backend="cpp", **kwargs)
    assert fake_cupy.launch_sizes == [
        min(chunk_size, 300 - start) for start in range(0, 300, chunk_size)
    ]
    _assert_same(gpu, cpu)


def test_device_memory_limits_chunk(fake_cupy):
    system, y0, kwargs = _chunk_case()
    # y row 5 x 3 float64 = 120 bytes, t_final, status and step counts 41,
    # y0 and A rows 96: 257 bytes per slot row, two slots.
    fake_cupy.free_bytes = int(257 * 2 * 100 / _pipeline.DEVICE_MEMORY_FRACTION) + 1
    gpu = fastode.solve(system, y0, (0.0, 1.0), backend="cupy", **kwargs)
    cpu = fastode.solve(system, y0, (0.0, 1.0), backend="cpp", **kwargs)
    # 100 rows fit; the computed chunk is rounded down to 64 rows.
    assert fake_cupy.launch_sizes == [64, 64, 64, 64, 44]
    _assert_same(gpu, cpu)


def test_chunks_overlap_on_two_streams(fake_cupy):
    system, y0, kwargs = _chunk_case()
    fastode.solve(system, y0, (0.0, 1.0), backend="cupy", chunk_size=64, **kwargs)
    launches = [stream for what, stream in fake_cupy.log if what == "launch"]
    assert launches == [0, 1, 0, 1, 0]
    # The second chunk is queued before the host waits for the first.
    first_sync = fake_cupy.log.index(("sync", 0))
    assert fake_cupy.log[:first_sync].count(("launch", 1)) == 1
    # Pinned buffers are allocated once per stream, not per chunk: y0 and A
    # in, seven outputs back.
    assert fake_cupy.pinned_allocations == 2 * (2 + 7)
    assert len(fake_cupy.streams) == 2


def test_single_chunk_uses_no_pinned_buffers(fake_cupy):
    system, y0, kwargs = _chunk_case()
    fastode.solve(system, y0, (0.0, 1.0), backend="cupy", **kwargs)
    assert fake_cupy.launch_sizes == [300]
    assert fake_cupy.pinned_allocations == 0


def test_missing_synchronize_is_detected(fake_cupy, monkeypatch):
    # The stand-in must catch a pipeline that reads results before its stream
    # has run; otherwise the chunk tests above could not fail.
    system, y0, kwargs = _chunk_case()
    cpu = fastode.solve(system, y0, (0.0, 1.0), backend="cpp", **kwargs)
    monkeypatch.setattr(
        fake_cupy.cuda, "Stream", lambda non_blocking=False: _NoWait(fake_cupy)
    )
    gpu = fastode.solve(system, y0, (0.0, 1.0), backend="cupy", chunk_size=64, **kwargs)
    assert not np.array_equal(gpu.y, cpu.y)


class _NoWait:
    """A stream whose synchronize returns before its queued work has run."""

    def __init__(self, standin):
        from cupy_standin import Stream

        self.stream = Stream(standin)

    def enqueue(self, what, work):
        self.stream.enqueue(what, work)

    def synchronize(self):
        pending = list(self.stream.queue)
        self.stream.queue.clear()
        self.late = pending

    def __enter__(self):
        return self.stream.__enter__()

    def __exit__(self, *exc):
        self.stream.__exit__(*exc)


def test_device_y0_in_chunks_stays_on_device(fake_cupy):
    system, y0, kwargs = _chunk_case()
    gpu = fastode.solve(
        system, fake_cupy.asarray(y0), (0.0, 1.0), backend="cupy", chunk_size=128,
        **kwargs,
    )
    cpu = fastode.solve(system, y0, (0.0, 1.0), backend="cpp", **kwargs)
    assert isinstance(gpu.y, DeviceArray)
    assert fake_cupy.launch_sizes == [128, 128, 44]
    # Only the per-trajectory A is staged from the host.
    assert fake_cupy.pinned_allocations == 2
    _assert_same(gpu, cpu)


def test_device_result_too_large(fake_cupy):
    fake_cupy.free_bytes = 10_000
    with pytest.raises(MemoryError, match="on the GPU, more than"):
        fastode.solve(
            fastode.Lorenz(),
            fake_cupy.asarray(np.ones((1000, 3))),
            (0.0, 1.0),
            t_eval=np.linspace(0.0, 1.0, 10),
            method="rk4",
            dt=0.1,
            backend="cupy",
        )


def test_max_memory_too_small(fake_cupy):
    with pytest.raises(MemoryError, match="max_memory"):
        fastode.solve(
            fastode.Lorenz(),
            np.ones((1000, 3)),
            (0.0, 1.0),
            method="rk4",
            dt=0.1,
            backend="cupy",
            max_memory=1000,
        )


def test_out_path_receives_result(fake_cupy, tmp_path):
    system, y0, kwargs = _chunk_case()
    path = tmp_path / "y.npy"
    gpu = fastode.solve(
        system, y0, (0.0, 1.0), backend="cupy", chunk_size=100, out=path, **kwargs
    )
    cpu = fastode.solve(system, y0, (0.0, 1.0), backend="cpp", **kwargs)
    assert np.array_equal(np.load(path), cpu.y)
    _assert_same(gpu, cpu)


def test_out_array_with_device_y0_is_host(fake_cupy):
    system, y0, kwargs = _chunk_case()
    out = np.empty((300, 5, 3))
    gpu = fastode.solve(
        system, fake_cupy.asarray(y0), (0.0, 1.0), backend="cupy", out=out, **kwargs
    )
    cpu = fastode.solve(system, y0, (0.0, 1.0), backend="cpp", **kwargs)
    assert type(gpu.status) is np.ndarray
    assert np.array_equal(out, cpu.y)


def test_progress_bar_counts_trajectories(fake_cupy, capsys):
    system, y0, kwargs = _chunk_case()
    fastode.solve(
        system, y0, (0.0, 1.0), backend="cupy", chunk_size=100, progress=True, **kwargs
    )
    assert "300/300" in capsys.readouterr().err


def test_interrupt_keeps_finished_chunks(fake_cupy, monkeypatch):
    system, y0, kwargs = _chunk_case()
    submit = _pipeline._Slot.submit

    def interrupt_third(slot, job, result, start, stop):
        if start == 128:
            raise KeyboardInterrupt
        submit(slot, job, result, start, stop)

    monkeypatch.setattr(_pipeline._Slot, "submit", interrupt_third)
    with pytest.warns(RuntimeWarning, match="interrupted after 128 of 300"):
        gpu = fastode.solve(
            system, y0, (0.0, 1.0), backend="cupy", chunk_size=64, **kwargs
        )
    cpu = fastode.solve(system, y0, (0.0, 1.0), backend="cpp", **kwargs)
    assert np.array_equal(gpu.y[:128], cpu.y[:128])
    assert np.all(gpu.status[128:] == fastode.Status.INTERRUPTED)
    assert np.all(np.isnan(gpu.y[128:]))


def test_stiffness_warning(fake_cupy):
    with pytest.warns(fastode.StiffnessWarning, match="1 of 2 trajectories"):
        sol = fastode.solve(
            fastode.Linear(np.array([[[-1.0]], [[-1e6]]])),
            np.ones((2, 1)),
            (0.0, 10.0),
            method="dopri5",
            max_steps=1000,
            backend="cupy",
        )
    assert sol.status[1] == fastode.Status.MAX_STEPS


def test_fixed_step_limit_is_not_stiffness(fake_cupy, recwarn):
    fastode.solve(
        fastode.Linear([[-1.0]]),
        np.ones((2, 1)),
        (0.0, 10.0),
        method="rk4",
        dt=0.1,
        max_steps=10,
        backend="cupy",
    )
    categories = [w.category for w in recwarn]
    assert fastode.StiffnessWarning not in categories
    assert RuntimeWarning in categories


# --- foreign device arrays ---------------------------------------------------------


@pytest.mark.parametrize("wrapper", [InterfaceOnly, DLPackOnly])
def test_foreign_device_array_read_without_copy(fake_cupy, wrapper):
    y0 = fake_cupy.asarray(np.random.default_rng(2).standard_normal((20, 3)))
    view = _launch._as_device_array(fake_cupy, wrapper(y0))
    assert isinstance(view, DeviceArray)
    assert np.shares_memory(view, y0)
    kwargs = {"method": "rk4", "dt": 0.01}
    gpu = fastode.solve(
        fastode.Lorenz(), wrapper(y0), (0.0, 1.0), backend="cupy", **kwargs
    )
    cpu = fastode.solve(fastode.Lorenz(), np.asarray(y0), (0.0, 1.0), **kwargs)
    assert isinstance(gpu.y, DeviceArray)
    _assert_same(gpu, cpu)


@pytest.mark.parametrize("wrapper", [InterfaceOnly, DLPackOnly])
def test_foreign_device_parameter(fake_cupy, wrapper):
    rho = fake_cupy.asarray(np.linspace(0.0, 21.0, 20))
    y0 = np.ones((20, 3))
    kwargs = {"method": "rk4", "dt": 0.01}
    gpu = fastode.solve(
        fastode.Lorenz(rho=wrapper(rho)), y0, (0.0, 1.0), backend="cupy", **kwargs
    )
    cpu = fastode.solve(fastode.Lorenz(rho=np.asarray(rho)), y0, (0.0, 1.0), **kwargs)
    assert type(gpu.y) is np.ndarray
    _assert_same(gpu, cpu)


def test_dlpack_export_failure_names_detach(fake_cupy):
    class RequiresGrad(DLPackOnly):
        def __dlpack__(self, **kwargs):
            raise RuntimeError("Can't export tensors that require gradient")

    y0 = RequiresGrad(fake_cupy.asarray(np.ones((4, 3))))
    with pytest.raises(TypeError, match=r"tensor\.detach\(\)"):
        fastode.solve(fastode.Lorenz(), y0, (0.0, 1.0), backend="cupy")


# --- MLP fields ----------------------------------------------------------------------


def _mlp(activation: str, time_input: bool, d: int = 3, hidden: int = 16):
    rng = np.random.default_rng(7)
    n_input = d + (1 if time_input else 0)
    weights = [0.4 * rng.standard_normal((hidden, n_input)),
               0.4 * rng.standard_normal((hidden, hidden)),
               0.4 * rng.standard_normal((d, hidden))]
    biases = [0.1 * rng.standard_normal(w.shape[0]) for w in weights]
    return fastode.MLP(weights, biases, activation=activation, time_input=time_input)


MLP_CASES = [
    ("euler", "tanh", False),
    ("heun", "relu", True),
    ("rk4", "identity", False),
    ("bs3", "sigmoid", True),
    ("dopri5", "softplus", False),
    ("tsit5", "tanh", True),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize(("method", "activation", "time_input"), MLP_CASES)
def test_mlp_launch_matches_core(method, activation, time_input, dense, dtype):
    mlp = _mlp(activation, time_input)
    y0 = np.random.default_rng(8).standard_normal((30, 3))
    _check_launch(mlp, y0, method, dense, dtype, dt=0.05, t1=1.0)


@pytest.fixture
def launched(monkeypatch):
    """The (kernel name, arguments) of every launch the stand-in runs."""
    import cupy_standin

    calls = []
    run_on_core = cupy_standin.run_on_core

    def record(name, args):
        calls.append((name, args))
        run_on_core(name, args)

    monkeypatch.setattr(cupy_standin, "run_on_core", record)
    return calls


def test_mlp_kernel_is_chosen_by_dimension(launched):
    for d in (1, 8):
        fastode.solve(_mlp("tanh", False, d=d), np.ones((4, d)), (0.0, 1.0),
                      method="rk4", dt=0.1, dtype="float32", backend="cupy")
    names = [name for name, _ in launched]
    assert names == ["fastode_rk4_mlp1_float32", "fastode_rk4_mlp8_float32"]


def test_mlp_weights_uploaded_once(fake_cupy, launched):
    mlp = _mlp("tanh", True)
    y0 = np.random.default_rng(9).standard_normal((30, 3))
    kwargs = {"method": "rk4", "dt": 0.05}
    gpu = fastode.solve(mlp, y0, (0.0, 1.0), backend="cupy", chunk_size=7, **kwargs)
    cpu = fastode.solve(mlp, y0, (0.0, 1.0), backend="cpp", **kwargs)
    assert fake_cupy.launch_sizes == [7, 7, 7, 7, 2]
    # Arguments 18 and 19 are the packed weights and the widths. Every chunk
    # gets the same device arrays.
    weights = {id(args[18]) for _, args in launched}
    widths = {id(args[19]) for _, args in launched}
    assert len(weights) == 1
    assert len(widths) == 1
    first = launched[0][1]
    assert isinstance(first[18], DeviceArray)
    np.testing.assert_array_equal(first[19], mlp.widths)
    _assert_same(gpu, cpu)


def test_mlp_device_y0_gives_device_results(fake_cupy):
    mlp = _mlp("softplus", False)
    y0 = np.random.default_rng(10).standard_normal((12, 3))
    kwargs = {"method": "dopri5", "rtol": 1e-8, "t_eval": [0.0, 0.5, 1.0]}
    gpu = fastode.solve(mlp, fake_cupy.asarray(y0), (0.0, 1.0), backend="cupy", **kwargs)
    cpu = fastode.solve(mlp, y0, (0.0, 1.0), **kwargs)
    assert isinstance(gpu.y, DeviceArray)
    _assert_same(gpu, cpu)


def test_mlp_linear_field_matches_expm():
    """One identity-activated layer is dh/dt = A h, so h(1) = expm(A) h0."""
    from scipy.linalg import expm

    a = np.array([[-0.5, 1.0], [-1.0, -0.5]])
    y0 = np.array([[1.0, 0.0], [0.3, -2.0]])
    sol = fastode.solve(fastode.MLP([a], activation="identity"), y0, (0.0, 1.0),
                        method="dopri5", rtol=1e-12, atol=1e-12, backend="cupy")
    np.testing.assert_allclose(sol.y, y0 @ expm(a).T, rtol=1e-9, atol=1e-12)


def test_mlp_auto_backend_stays_on_cpu(monkeypatch):
    from fastode._cupy import _device

    monkeypatch.setattr(_device, "device_available", lambda: True)
    n = _device.AUTO_GPU_MIN_TRAJECTORIES
    assert not _device.prefers_gpu(_mlp("tanh", False), np.zeros((n, 3)))
    # The same batch of a built-in system would go to the GPU.
    assert _device.prefers_gpu(fastode.Lorenz(), np.zeros((n, 3)))


def test_cnf_runs_batched_on_gpu():
    """A CNF has no per-thread kernel; it runs on the batched path."""
    z0 = np.random.default_rng(9).standard_normal((5, 3))
    gpu = fastode.cnf(_mlp("tanh", False), z0, (0.0, 1.0), backend="cupy")
    cpu = fastode.cnf(_mlp("tanh", False), z0, (0.0, 1.0))
    np.testing.assert_allclose(gpu[0], cpu[0], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(gpu[1], cpu[1], rtol=1e-9, atol=1e-9)
