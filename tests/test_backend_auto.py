"""backend="auto": when built-in systems go to the GPU, decided with a mocked
device query (no GPU here), and CuPy stays unimported unless needed."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from cupy_standin import DLPackOnly, InterfaceOnly, StandIn

import fastode
from fastode import _solve
from fastode._cupy import _device

LARGE = _device.AUTO_GPU_MIN_TRAJECTORIES
SMALL = LARGE - 1


@pytest.fixture
def device_query(monkeypatch):
    """Replace the device query; ``calls`` counts how often it was asked."""
    state = {"available": True, "calls": 0}

    def available():
        state["calls"] += 1
        return state["available"]

    monkeypatch.setattr(_device, "device_available", available)
    return state


def _shape_only(n, dim):
    # np.shape reads only the shape, so no batch of 65 536 rows is built.
    return np.broadcast_to(np.zeros(dim), (n, dim))


def test_large_batch_picks_gpu(device_query):
    backend = _solve._check_backend("auto", fastode.Lorenz(), _shape_only(LARGE, 3))
    assert backend == "cupy"
    assert device_query["calls"] == 1


def test_small_batch_skips_device_query(device_query):
    backend = _solve._check_backend("auto", fastode.Lorenz(), _shape_only(SMALL, 3))
    assert backend == "cpp"
    assert device_query["calls"] == 0


def test_single_state_stays_on_cpu(device_query):
    assert _solve._check_backend("auto", fastode.Lorenz(), [1.0, 0.0, 0.0]) == "cpp"
    assert device_query["calls"] == 0


def test_no_device_picks_cpu(device_query):
    device_query["available"] = False
    backend = _solve._check_backend("auto", fastode.Lorenz(), _shape_only(LARGE, 3))
    assert backend == "cpp"
    assert device_query["calls"] == 1


@pytest.mark.parametrize("wrapper", [InterfaceOnly, DLPackOnly])
def test_device_input_picks_gpu_at_any_size(device_query, wrapper):
    y0 = wrapper(StandIn().asarray(np.ones((2, 3))))
    assert _solve._check_backend("auto", fastode.Lorenz(), y0) == "cupy"


def test_system_without_gpu_kernel_stays_on_cpu(device_query):
    class _FlowSystem:
        """Named like the system of fastode.cnf, which has no GPU kernel."""

    assert not _device.prefers_gpu(_FlowSystem(), _shape_only(LARGE, 2))
    assert device_query["calls"] == 0


def test_mlp_stays_on_cpu(device_query):
    # backend="cupy" runs fastode.MLP, but auto does not pick it.
    mlp = fastode.MLP([-np.eye(2)], activation="identity")
    assert _solve._check_backend("auto", mlp, _shape_only(LARGE, 2)) == "cpp"
    assert device_query["calls"] == 0


def test_linear_above_gpu_limit_stays_on_cpu(device_query):
    system = fastode.Linear(-np.eye(9))
    assert _solve._check_backend("auto", system, _shape_only(LARGE, 9)) == "cpp"


def test_explicit_cpp_never_asks(device_query):
    assert _solve._check_backend("cpp", fastode.Lorenz(), _shape_only(LARGE, 3)) == "cpp"
    assert device_query["calls"] == 0


def test_auto_runs_large_batch_on_gpu(device_query, monkeypatch):
    from fastode._cupy import _launch

    standin = StandIn()
    monkeypatch.setattr(_launch, "import_cupy", lambda: standin)
    _launch._kernel.cache_clear()
    y0 = np.tile([1.0, 0.0], (LARGE, 1))
    sol = fastode.solve(fastode.Oscillator(k=1.0), y0, (0.0, 0.1), method="euler", dt=0.05)
    _launch._kernel.cache_clear()
    assert standin.launch_sizes
    assert type(sol.y) is np.ndarray
    np.testing.assert_allclose(sol.y[:, 0], 1.0 - 0.05**2, rtol=1e-14)


def _run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_import_does_not_import_cupy():
    out = _run_python("import sys, fastode; print('cupy' in sys.modules)")
    assert out.strip() == "False"


def test_small_auto_solve_does_not_import_cupy():
    code = (
        "import sys, fastode\n"
        "fastode.solve(fastode.Lorenz(), [[1.0, 0.0, 0.0]] * 10, (0.0, 0.1))\n"
        "print('cupy' in sys.modules)"
    )
    assert _run_python(code).strip() == "False"
