"""Wide MLP fields (d > 8, or a layer wider than 256) on backend="cupy": the
batched fixed-step path, run here with NumPy as the array namespace and
compared with the C++ core, which steps the same grid one trajectory per lane.
"""

from __future__ import annotations

import numpy as np
import pytest
from cupy_standin import DeviceArray, StandIn

import fastode
from fastode import Status
from fastode._cupy import _batched, _launch

STATS = ("n_steps", "n_accepted", "n_rejected", "n_rhs")


def wide_mlp(d=16, hidden=32, activation="tanh", time_input=False, scale=0.3, seed=0):
    rng = np.random.default_rng(seed)
    n_in = d + int(time_input)
    weights = [scale * rng.standard_normal((hidden, n_in)), scale * rng.standard_normal((d, hidden))]
    biases = [0.1 * rng.standard_normal(hidden), 0.1 * rng.standard_normal(d)]
    return fastode.MLP(weights, biases, activation=activation, time_input=time_input)


def batched(mlp, y0, t_span, t_eval=None, method="rk4", dt=0.01, max_steps=100_000,
            adaptive=None, rtol=1e-6, atol=1e-9, controller="i"):
    """Run `_batched` with NumPy arrays, as `solve_cupy` runs it with CuPy's."""
    kind = fastode._validation.check_adaptive(adaptive, method)
    call = {"kind": kind, "method": fastode._validation.kernel_method(method, kind),
            "t0": t_span[0], "t1": t_span[1], "dt": dt or 0.0, "rtol": rtol, "atol": atol,
            "max_steps": max_steps, "controller": {"i": 0, "pi": 1}[controller]}
    t_eval = None if t_eval is None else np.asarray(t_eval, dtype=y0.dtype)
    return _batched.BatchedJob(np, mlp, y0, t_eval, call).launch(y0)


def assert_matches_core(out, core, rtol):
    np.testing.assert_allclose(out["y"], core.y if core.y.ndim == 3 else core.y[:, None],
                               rtol=rtol, atol=rtol)
    np.testing.assert_array_equal(out["status"], core.status)
    # Adaptive rows end on sums of step sizes, which the controller's power
    # moves in the last digits.
    np.testing.assert_allclose(out["t_final"], core.t_final, rtol=rtol, atol=0)
    for stat in STATS:
        np.testing.assert_array_equal(out[stat], core.stats[stat], err_msg=stat)


@pytest.mark.parametrize(
    ("method", "adaptive", "activation", "time_input"),
    [("rk4", None, "tanh", False), ("euler", None, "relu", True),
     ("heun", None, "softplus", False), ("tsit5", False, "sigmoid", True),
     ("dopri5", False, "identity", False)],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_core(method, adaptive, activation, time_input, dtype):
    mlp = wide_mlp(d=12, hidden=40, activation=activation, time_input=time_input)
    y0 = np.random.default_rng(1).standard_normal((37, 12)).astype(dtype)
    t_eval = [0.0, 0.013, 0.5, 0.77, 1.0]
    out = batched(mlp, y0, (0.0, 1.0), t_eval=t_eval, method=method, dt=0.03,
                  adaptive=adaptive)
    core = fastode.solve(mlp, y0, (0.0, 1.0), t_eval=t_eval, method=method, dt=0.03,
                         adaptive=adaptive)
    assert out["y"].dtype == dtype
    assert_matches_core(out, core, rtol=1e-12 if dtype == np.float64 else 2e-5)


def test_final_state_and_backward_span():
    mlp = wide_mlp(d=10)
    y0 = np.random.default_rng(2).standard_normal((20, 10))
    out = batched(mlp, y0, (1.0, -0.5), dt=0.07)
    core = fastode.solve(mlp, y0, (1.0, -0.5), method="rk4", dt=0.07)
    assert_matches_core(out, core, rtol=1e-12)


def test_linear_field_against_expm():
    """One identity layer pair W2 W1 = A: y(t) = expm(A t) y0."""
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(3)
    d = 20
    w1 = rng.standard_normal((d, d)) / np.sqrt(d)
    w2 = -np.eye(d) + 0.2 * rng.standard_normal((d, d)) / np.sqrt(d)
    mlp = fastode.MLP([w1, w2], [np.zeros(d), np.zeros(d)], activation="identity")
    y0 = rng.standard_normal((5, d))
    out = batched(mlp, y0, (0.0, 1.0), method="tsit5", adaptive=False, dt=0.01)
    exact = y0 @ scipy_linalg.expm(w2 @ w1).T
    np.testing.assert_allclose(out["y"][:, 0], exact, rtol=1e-10, atol=1e-10)


def growing_mlp(d):
    """The linear field f(y) = 40 y, which overflows rows that start large."""
    return fastode.MLP([np.eye(d), 40.0 * np.eye(d)], [np.zeros(d), np.zeros(d)],
                       activation="identity")


def test_non_finite_rows_stop_like_the_core():
    """Rows that overflow stop at their last finite state; a NaN row never
    starts; the other rows are untouched."""
    d = 10
    mlp = growing_mlp(d)
    y0 = np.full((6, d), 1e-3)
    y0[1] = 1e292
    y0[3, 4] = np.nan
    y0[4] = 1e300
    t_eval = np.linspace(0.0, 1.0, 6)
    # NumPy warns on the overflow that CuPy, like the core, lets through.
    with np.errstate(over="ignore", invalid="ignore"):
        out = batched(mlp, y0, (0.0, 1.0), t_eval=t_eval, dt=0.01)
    core = fastode.solve(mlp, y0, (0.0, 1.0), t_eval=t_eval, method="rk4", dt=0.01)
    assert_matches_core(out, core, rtol=1e-12)
    assert list(out["status"][[0, 1, 3]]) == [Status.SUCCESS, Status.NON_FINITE,
                                               Status.NON_FINITE]


def test_max_steps_like_the_core():
    mlp = wide_mlp(d=9)
    y0 = np.ones((3, 9))
    out = batched(mlp, y0, (0.0, 1.0), t_eval=[0.0, 0.2, 1.0], dt=0.01, max_steps=30)
    with pytest.warns(RuntimeWarning, match="max_steps"):
        core = fastode.solve(mlp, y0, (0.0, 1.0), t_eval=[0.0, 0.2, 1.0], method="rk4",
                             dt=0.01, max_steps=30)
    assert_matches_core(out, core, rtol=1e-12)
    assert np.all(out["status"] == Status.MAX_STEPS)


def test_zero_length_span():
    mlp = wide_mlp(d=9)
    y0 = np.ones((2, 9))
    out = batched(mlp, y0, (0.5, 0.5), dt=0.1)
    np.testing.assert_array_equal(out["y"][:, 0], y0)
    assert np.all(out["n_steps"] == 0)


@pytest.mark.parametrize(
    ("d", "hidden", "expected"), [(8, 256, False), (9, 16, True), (2, 257, True)]
)
def test_needs_batching(d, hidden, expected):
    assert _batched.needs_batching(wide_mlp(d=d, hidden=hidden)) is expected


# --- through fastode.solve(backend="cupy"), on the CuPy stand-in -------------------


@pytest.fixture
def fake_cupy(monkeypatch):
    fake = StandIn()
    monkeypatch.setattr(_launch, "import_cupy", lambda: fake)
    return fake


def test_solve_host_batch_in_chunks(fake_cupy):
    mlp = wide_mlp(d=16, hidden=300)
    y0 = np.random.default_rng(4).standard_normal((50, 16))
    kwargs = {"t_eval": [0.0, 0.5, 1.0], "method": "rk4", "dt": 0.05}
    gpu = fastode.solve(mlp, y0, (0.0, 1.0), backend="cupy", chunk_size=16, **kwargs)
    cpu = fastode.solve(mlp, y0, (0.0, 1.0), **kwargs)
    assert type(gpu.y) is np.ndarray
    np.testing.assert_allclose(gpu.y, cpu.y, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(gpu.stats["n_rhs"], cpu.stats["n_rhs"])


def test_solve_device_batch_stays_on_device(fake_cupy):
    mlp = wide_mlp(d=16)
    y0 = fake_cupy.asarray(np.random.default_rng(5).standard_normal((10, 16)))
    sol = fastode.solve(mlp, y0, (0.0, 1.0), method="tsit5", adaptive=False, dt=0.1,
                        backend="cupy")
    assert isinstance(sol.y, DeviceArray)
    cpu = fastode.solve(mlp, np.asarray(y0), (0.0, 1.0), method="tsit5", adaptive=False,
                        dt=0.1)
    np.testing.assert_allclose(sol.y, cpu.y, rtol=1e-12, atol=1e-12)


def test_solve_adaptive_wide_mlp(fake_cupy):
    mlp = wide_mlp(d=16)
    y0 = np.random.default_rng(6).standard_normal((30, 16))
    kwargs = {"method": "dopri5", "rtol": 1e-8, "atol": 1e-10, "t_eval": [0.0, 0.4, 1.0]}
    gpu = fastode.solve(mlp, y0, (0.0, 1.0), backend="cupy", chunk_size=8, **kwargs)
    cpu = fastode.solve(mlp, y0, (0.0, 1.0), **kwargs)
    np.testing.assert_allclose(gpu.y, cpu.y, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(gpu.stats["n_steps"], cpu.stats["n_steps"])


# --- adaptive steps -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "controller", "activation", "time_input"),
    [("dopri5", "i", "tanh", False), ("tsit5", "pi", "softplus", True),
     ("bs3", "i", "sigmoid", True)],
)
@pytest.mark.parametrize("dense", [False, True])
def test_adaptive_matches_core(method, controller, activation, time_input, dense):
    """Same steps as the core (the controller's power differs by ~1e-9, which
    moves no decision here), states to rounding, every output time."""
    mlp = wide_mlp(d=12, hidden=40, activation=activation, time_input=time_input)
    y0 = np.random.default_rng(7).standard_normal((25, 12))
    t_eval = np.linspace(0.0, 2.0, 9) if dense else None
    options = {"method": method, "rtol": 1e-7, "atol": 1e-9, "controller": controller,
               "t_eval": t_eval}
    out = batched(mlp, y0, (0.0, 2.0), dt=None, **options)
    core = fastode.solve(mlp, y0, (0.0, 2.0), **options)
    assert_matches_core(out, core, rtol=1e-9)


def test_adaptive_backward_float32_with_first_step():
    mlp = wide_mlp(d=10)
    y0 = np.random.default_rng(8).standard_normal((15, 10)).astype(np.float32)
    options = {"method": "tsit5", "rtol": 1e-4, "atol": 1e-6, "t_eval": [1.0, 0.3, -1.0]}
    out = batched(mlp, y0, (1.0, -1.0), dt=0.05, **options)
    core = fastode.solve(mlp, y0, (1.0, -1.0), dt=0.05, **options)
    assert out["y"].dtype == np.float32
    np.testing.assert_allclose(out["y"], core.y, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(out["status"], core.status)


def test_adaptive_failures_like_the_core():
    """Overflow (NON_FINITE), a NaN row, max_steps and a healthy row together."""
    d = 10
    mlp = growing_mlp(d)
    y0 = np.full((4, d), 1e-3)
    y0[1] = 1e292
    y0[2, 0] = np.nan
    options = {"method": "dopri5", "rtol": 1e-6, "atol": 1e-9, "t_eval": [0.0, 0.5, 1.0]}
    with np.errstate(over="ignore", invalid="ignore"):
        out = batched(mlp, y0, (0.0, 1.0), dt=None, **options)
    core = fastode.solve(mlp, y0, (0.0, 1.0), **options)
    healthy = [0, 2, 3]
    np.testing.assert_allclose(out["y"][healthy], core.y[healthy], rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(out["n_steps"][healthy], core.stats["n_steps"][healthy])
    np.testing.assert_array_equal(out["status"], core.status)
    assert list(out["status"][:3]) == [Status.SUCCESS, Status.NON_FINITE, Status.NON_FINITE]
    # Row 1 grows as 1e292 e^(40 t), so f = 40 y passes the float64 maximum
    # near t = ln(4.5e14) / 40 = 0.84. Where exactly depends on the order of
    # the overflowing products.
    for result in (out["t_final"][1], core.t_final[1]):
        assert 0.7 < result < 0.9
    assert np.isfinite(out["y"][1, 1]).all()
    assert np.isnan(out["y"][1, 2]).all()

    with pytest.warns(fastode.StiffnessWarning):
        core = fastode.solve(mlp, y0[:1], (0.0, 1.0), max_steps=5, **options)
    out = batched(mlp, y0[:1], (0.0, 1.0), dt=None, max_steps=5, **options)
    assert_matches_core(out, core, rtol=1e-9)
    assert out["status"][0] == Status.MAX_STEPS


# --- continuous normalizing flows ---------------------------------------------------


def deep_mlp(d, time_input=False, activation="softplus"):
    rng = np.random.default_rng(10)
    shapes = [(24, d + int(time_input)), (24, 24), (d, 24)]
    weights = [0.5 * rng.standard_normal(shape) / np.sqrt(shape[1]) for shape in shapes]
    biases = [0.1 * rng.standard_normal(shape[0]) for shape in shapes]
    return fastode.MLP(weights, biases, activation=activation, time_input=time_input)


@pytest.mark.parametrize(
    ("field", "trace", "options"),
    [("one hidden layer", "exact", {"method": "dopri5", "rtol": 1e-8}),
     ("two hidden layers", "exact", {"method": "tsit5", "rtol": 1e-8, "t_eval": [0.0, 0.5, 1.0]}),
     ("two hidden layers, time", "hutchinson", {"method": "rk4", "dt": 0.05})],
)
def test_cnf_matches_core(fake_cupy, field, trace, options):
    """z and the log-density change against the core's compiled CNF; the
    Hutchinson probes come from the same seed on both sides and are sliced
    with the chunks."""
    d = 10
    mlp = wide_mlp(d=d) if field == "one hidden layer" else deep_mlp(d, "time" in field)
    z0 = np.random.default_rng(11).standard_normal((21, d))
    kwargs = {"trace": trace, "n_probes": 3, "seed": 5, **options}
    gpu_z, gpu_delta = fastode.cnf(mlp, z0, (0.0, 1.0), backend="cupy", chunk_size=8, **kwargs)
    cpu_z, cpu_delta = fastode.cnf(mlp, z0, (0.0, 1.0), **kwargs)
    np.testing.assert_allclose(gpu_z, cpu_z, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(gpu_delta, cpu_delta, rtol=1e-9, atol=1e-9)


def test_cnf_exact_trace_against_jacobian(fake_cupy):
    """One rk4 step's log-density change is -dt tr(J) to O(dt^2), with J from
    `MLP.jacobian` (NumPy) at z0."""
    d, dt = 12, 1e-4
    mlp = deep_mlp(d)
    z0 = np.random.default_rng(12).standard_normal((4, d))
    _, delta = fastode.cnf(mlp, z0, (0.0, dt), backend="cupy", method="rk4", dt=dt)
    trace = np.trace(mlp.jacobian(0.0, z0), axis1=1, axis2=2)
    np.testing.assert_allclose(delta, -dt * trace, rtol=1e-3, atol=1e-10)


def test_device_rows_bound_the_chunks(fake_cupy, monkeypatch):
    """A small free GPU memory splits a device batch into parts whose results
    are the same as one launch."""
    mlp = wide_mlp(d=16, hidden=64)
    y0 = np.random.default_rng(13).standard_normal((40, 16))
    whole = fastode.solve(mlp, fake_cupy.asarray(y0), (0.0, 1.0), method="rk4", dt=0.1,
                          backend="cupy")
    job = _batched.BatchedJob(np, mlp, y0, None, {})
    per_row = 2 * 8 * (16 * 16 + 16 + 4 * 64)
    assert _batched.device_rows(7 * per_row, job) == 7
    fake_cupy.free_bytes = 7 * per_row
    parts = fastode.solve(mlp, fake_cupy.asarray(y0), (0.0, 1.0), method="rk4", dt=0.1,
                          backend="cupy")
    assert isinstance(parts.y, DeviceArray)
    np.testing.assert_array_equal(parts.y, whole.y)
    host = fastode.solve(mlp, y0, (0.0, 1.0), method="rk4", dt=0.1, backend="cupy")
    np.testing.assert_array_equal(host.y, whole.y)


def test_device_batch_options_like_kernels(fake_cupy):
    """A device batch keeps its results on the device with chunk_size, as the
    per-thread kernels do, and rejects an invalid max_memory or progress."""
    mlp = wide_mlp(d=16)
    y0 = np.random.default_rng(18).standard_normal((20, 16))
    options = {"method": "rk4", "dt": 0.1, "backend": "cupy"}
    sol = fastode.solve(mlp, fake_cupy.asarray(y0), (0.0, 1.0), chunk_size=8, **options)
    assert isinstance(sol.y, DeviceArray)
    cpu = fastode.solve(mlp, y0, (0.0, 1.0), method="rk4", dt=0.1)
    np.testing.assert_allclose(sol.y, cpu.y, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="max_memory"):
        fastode.solve(mlp, fake_cupy.asarray(y0), (0.0, 1.0), max_memory=-5, **options)
    with pytest.raises(TypeError, match="progress"):
        fastode.solve(mlp, fake_cupy.asarray(y0), (0.0, 1.0), progress="yes", **options)
    with pytest.raises(ValueError, match="chunk_size"):
        fastode.solve(mlp, fake_cupy.asarray(y0), (0.0, 1.0), chunk_size=0, **options)


def test_tiny_dt_ends_at_max_steps():
    """A grid of 1e30 steps is capped as the core caps it, so max_steps ends
    the run instead of an integer overflow."""
    mlp = wide_mlp(d=9)
    y0 = np.ones((2, 9))
    out = batched(mlp, y0, (0.0, 1.0), dt=1e-30, max_steps=5)
    with pytest.warns(RuntimeWarning, match="max_steps"):
        core = fastode.solve(mlp, y0, (0.0, 1.0), method="rk4", dt=1e-30, max_steps=5)
    assert_matches_core(out, core, rtol=1e-12)
    assert np.all(out["status"] == Status.MAX_STEPS)


@pytest.mark.parametrize("t_span", [(-200.0, 50.0), (200.0, -50.0)])
def test_adaptive_last_output_before_t1(t_span):
    """After the last output, the time that means "none left" lies past t1,
    as in the core, so the steps after it write nothing."""
    mlp = wide_mlp(d=10)
    y0 = np.random.default_rng(14).standard_normal((6, 10))
    t_eval = [t_span[0], t_span[0] / 2]
    options = {"method": "dopri5", "rtol": 1e-7, "atol": 1e-9, "t_eval": t_eval}
    out = batched(mlp, y0, t_span, dt=None, **options)
    core = fastode.solve(mlp, y0, t_span, **options)
    assert_matches_core(out, core, rtol=1e-9)



def test_first_step_overflow_constant_field():
    """f = 1e160, whose first-step norms overflow: the guess is NaN, which the
    core's min(h, span) turns into the span, and one exact step ends the run."""
    d = 10
    mlp = fastode.MLP([np.zeros((d, d)), np.zeros((d, d))], [np.zeros(d), np.full(d, 1e160)],
                      activation="identity")
    y0 = np.ones((2, d))
    options = {"method": "dopri5", "rtol": 1e-6, "atol": 1e-9, "t_eval": [0.0, 0.25, 1.0]}
    with np.errstate(over="ignore", invalid="ignore"):
        out = batched(mlp, y0, (0.0, 1.0), dt=None, **options)
    core = fastode.solve(mlp, y0, (0.0, 1.0), **options)
    assert_matches_core(out, core, rtol=1e-12)
    np.testing.assert_allclose(out["y"][:, -1], 1e160, rtol=1e-12)
    assert np.all(out["status"] == Status.SUCCESS)


# --- waits for the GPU ----------------------------------------------------------------


class _Counted(np.ndarray):
    """A NumPy array that counts the operations after which CuPy waits for
    the GPU: truth tests and boolean-mask indexing, which in CuPy reads the
    count of True elements back to the host."""

    waits = 0

    def __bool__(self):
        _Counted.waits += 1
        return super().__bool__()

    def __getitem__(self, key):
        _Counted._count_mask(key)
        return super().__getitem__(key)

    def __setitem__(self, key, value):
        _Counted._count_mask(key)
        super().__setitem__(key, value)

    @staticmethod
    def _count_mask(key):
        keys = key if isinstance(key, tuple) else (key,)
        if any(isinstance(k, np.ndarray) and k.dtype == bool for k in keys):
            _Counted.waits += 1


class _CountingNumpy:
    """NumPy as an array namespace whose arrays are `_Counted`. A copy from
    the host (asarray of anything else) counts as a wait too, because CuPy's
    copy from pageable memory waits for the GPU's queue."""

    def __getattr__(self, name):
        value = getattr(np, name)
        if not callable(value) or isinstance(value, type):
            return value

        def call(*args, **kwargs):
            if name == "asarray" and not isinstance(args[0], _Counted):
                _Counted.waits += 1
            result = value(*args, **kwargs)
            return result.view(_Counted) if isinstance(result, np.ndarray) else result

        return call


@pytest.mark.parametrize("time_input", [False, True])
@pytest.mark.parametrize("adaptive", [False, True])
def test_steps_rarely_wait_for_gpu(adaptive, time_input):
    """Fixed steps wait for the GPU once per ALL_STOPPED_CHECK_INTERVAL steps,
    and adaptive steps without outputs once per step, to test whether any
    row is still running."""
    xp = _CountingNumpy()
    mlp = wide_mlp(d=10, time_input=time_input)
    y0 = xp.asarray(np.random.default_rng(17).standard_normal((6, 10)))
    method = "dopri5" if adaptive else "rk4"
    kind = "adaptive" if adaptive else "fixed"
    call = {"kind": kind, "method": method, "t0": 0.0, "t1": 4.0, "dt": 0.05, "rtol": 1e-10,
            "atol": 1e-9, "max_steps": 100_000, "controller": 0}
    _Counted.waits = 0
    out = _batched.BatchedJob(xp, mlp, y0, None, call).launch(y0)
    steps = int(np.asarray(out["n_steps"]).max())
    assert steps >= 40
    # Beyond the steps: the weights' copies to the device and the final masks.
    expected = steps + 8 if adaptive else steps // _batched.ALL_STOPPED_CHECK_INTERVAL + 8
    assert _Counted.waits <= expected


@pytest.mark.parametrize(("method", "dt"), [("dopri5", None), ("bs3", 0.1), ("rk4", 0.1)])
def test_evaluations_match_n_rhs(monkeypatch, method, dt):
    """Each evaluation of the network is one counted in n_rhs: the adaptive
    pairs reuse f(t1, y1) as the next step's first stage."""
    calls = []
    evaluate = _batched.NetworkField.__call__

    def counted(self, t, y):
        calls.append(len(y))
        return evaluate(self, t, y)

    monkeypatch.setattr(_batched.NetworkField, "__call__", counted)
    mlp = wide_mlp(d=10)
    y0 = np.random.default_rng(19).standard_normal((1, 10))
    out = batched(mlp, y0, (0.0, 2.0), t_eval=[0.0, 0.7, 2.0], method=method, dt=dt)
    assert len(calls) == out["n_rhs"][0]


def test_solve_adaptive_backward_against_expm(fake_cupy):
    """A linear network W2 W1 = A integrated backward from t = 1 to -1 with
    outputs: y(t) = expm(A (t - 1)) y0."""
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(20)
    d = 12
    w1 = rng.standard_normal((d, d)) / np.sqrt(d)
    w2 = -np.eye(d)
    mlp = fastode.MLP([w1, w2], [np.zeros(d), np.zeros(d)], activation="identity")
    y0 = rng.standard_normal((5, d))
    t_eval = [1.0, 0.2, -1.0]
    sol = fastode.solve(mlp, fake_cupy.asarray(y0), (1.0, -1.0), t_eval=t_eval, rtol=1e-11,
                        atol=1e-13, backend="cupy")
    for j, t in enumerate(t_eval):
        exact = y0 @ scipy_linalg.expm((w2 @ w1) * (t - 1.0)).T
        np.testing.assert_allclose(np.asarray(sol.y)[:, j], exact, rtol=1e-8, atol=1e-9)
