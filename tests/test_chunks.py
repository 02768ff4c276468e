"""Chunked runs: results independent of chunk size and threads, memory-mapped
output, the memory budget, the progress bar, Ctrl-C and the stiffness warning."""

from __future__ import annotations

import errno
import shutil

import numpy as np
import pytest

import fastode
from fastode import Status, _chunks

N = 300
T_EVAL = np.linspace(0.0, 4.0, 9)


def oscillator_batch(n=N, seed=0):
    rng = np.random.default_rng(seed)
    system = fastode.Oscillator(k=rng.uniform(0.5, 2.0, n), b=rng.uniform(0.0, 0.3, n))
    return system, rng.standard_normal((n, 2))


def assert_same_solution(actual, expected):
    np.testing.assert_array_equal(actual.y, expected.y)
    np.testing.assert_array_equal(actual.status, expected.status)
    np.testing.assert_array_equal(actual.t_final, expected.t_final)
    for name, counts in expected.stats.items():
        np.testing.assert_array_equal(actual.stats[name], counts)


# --- chunk size and threads change nothing --------------------------------------


@pytest.mark.parametrize("method,dt", [("dopri5", None), ("rk4", 0.05), ("bs3", None)])
@pytest.mark.parametrize("chunk_size", [1, 7, 64, 100, 1000])
def test_chunk_size_is_bit_identical(method, dt, chunk_size):
    system, y0 = oscillator_batch()
    whole = fastode.solve(system, y0, (0.0, 4.0), t_eval=T_EVAL, method=method, dt=dt)
    chunked = fastode.solve(
        system,
        y0,
        (0.0, 4.0),
        t_eval=T_EVAL,
        method=method,
        dt=dt,
        chunk_size=chunk_size,
    )
    assert_same_solution(chunked, whole)


@pytest.mark.parametrize("chunk_size", [None, 33])
def test_threads_are_bit_identical(chunk_size):
    system, y0 = oscillator_batch()
    one = fastode.solve(system, y0, (0.0, 4.0), threads=1, chunk_size=chunk_size)
    two = fastode.solve(system, y0, (0.0, 4.0), threads=2, chunk_size=chunk_size)
    assert_same_solution(two, one)


def test_chunked_run_matches_closed_form():
    k = np.linspace(0.5, 2.0, 200)
    y0 = np.tile([1.0, 0.0], (200, 1))
    sol = fastode.solve(
        fastode.Oscillator(k),
        y0,
        (0.0, 4.0),
        t_eval=T_EVAL,
        rtol=1e-10,
        atol=1e-12,
        chunk_size=31,
    )
    exact = np.cos(np.sqrt(k)[:, None] * T_EVAL[None, :])
    np.testing.assert_allclose(sol.y[:, :, 0], exact, rtol=0, atol=1e-8)


def per_trajectory_systems(n, rng):
    """Built-in systems whose parameters differ per trajectory, with y0."""
    a = -rng.uniform(0.1, 1.0, (n, 2, 2)) * np.eye(2) + 0.1 * rng.standard_normal(
        (n, 2, 2)
    )
    return {
        "linear": (
            fastode.Linear(a, rng.standard_normal((n, 2))),
            rng.standard_normal((n, 2)),
        ),
        "lorenz": (
            fastode.Lorenz(rho=rng.uniform(20.0, 30.0, n)),
            rng.standard_normal((n, 3)),
        ),
        "pendulum": (
            fastode.Hamiltonian("pendulum", k=rng.uniform(0.5, 2.0, n)),
            rng.uniform(-1.0, 1.0, (n, 2)),
        ),
    }


@pytest.mark.parametrize("name", ["linear", "lorenz", "pendulum"])
def test_per_trajectory_parameters_follow_chunks(name):
    rng = np.random.default_rng(1)
    system, y0 = per_trajectory_systems(150, rng)[name]
    whole = fastode.solve(system, y0, (0.0, 1.0), t_eval=[0.5, 1.0])
    chunked = fastode.solve(system, y0, (0.0, 1.0), t_eval=[0.5, 1.0], chunk_size=40)
    assert_same_solution(chunked, whole)
    alone = fastode.solve(system, y0, (0.0, 1.0), t_eval=[0.5, 1.0], chunk_size=1)
    assert_same_solution(alone, whole)


def test_mlp_weights_are_not_sliced():
    """The packed MLP weights are shared even when their length equals N."""
    rng = np.random.default_rng(2)
    weights = [rng.standard_normal((3, 2)), rng.standard_normal((2, 3))]
    biases = [rng.standard_normal(3), rng.standard_normal(2)]
    mlp = fastode.MLP(weights, biases)
    n = mlp._params(np.float64).size
    y0 = rng.standard_normal((n, 2))
    whole = fastode.solve(mlp, y0, (0.0, 1.0))
    chunked = fastode.solve(mlp, y0, (0.0, 1.0), chunk_size=5)
    assert_same_solution(chunked, whole)


def test_hutchinson_probes_follow_chunks():
    rng = np.random.default_rng(3)
    weights = [rng.standard_normal((4, 2)), rng.standard_normal((2, 4))]
    mlp = fastode.MLP(weights, [np.zeros(4), np.zeros(2)])
    z0 = rng.standard_normal((70, 2))
    whole = fastode.cnf(mlp, z0, (0.0, 0.5), trace="hutchinson", n_probes=2, seed=5)
    chunked = fastode.cnf(
        mlp, z0, (0.0, 0.5), trace="hutchinson", n_probes=2, seed=5, chunk_size=16
    )
    for actual, expected in zip(chunked, whole, strict=True):
        np.testing.assert_array_equal(actual, expected)


def test_user_system_parameters_follow_chunks():
    pytest.importorskip("numba")

    @fastode.ode(dim=2, n_params=1)
    def spring(t, y, dy, p):
        dy[0] = y[1]
        dy[1] = -p[0] * y[0]

    k = np.linspace(0.5, 2.0, 90)
    system = spring(k[:, None])
    y0 = np.tile([1.0, 0.0], (90, 1))
    whole = fastode.solve(system, y0, (0.0, 2.0), rtol=1e-10, atol=1e-12)
    chunked = fastode.solve(
        system, y0, (0.0, 2.0), rtol=1e-10, atol=1e-12, chunk_size=32
    )
    assert_same_solution(chunked, whole)
    np.testing.assert_allclose(chunked.y[:, 0], np.cos(2.0 * np.sqrt(k)), atol=1e-8)


def test_single_state_with_chunks():
    sol = fastode.solve(
        fastode.Oscillator(1.0),
        [1.0, 0.0],
        (0.0, np.pi),
        rtol=1e-10,
        atol=1e-12,
        chunk_size=1,
        progress=False,
    )
    assert sol.y.shape == (2,)
    assert sol.status == Status.SUCCESS
    assert sol.y[0] == pytest.approx(-1.0, abs=1e-8)


def test_empty_batch_with_out_file(tmp_path):
    path = tmp_path / "empty.npy"
    sol = fastode.solve(
        fastode.Oscillator(1.0), np.zeros((0, 2)), (0.0, 4.0), t_eval=T_EVAL, out=path
    )
    assert sol.y.shape == (0, 9, 2)
    assert np.load(path).shape == (0, 9, 2)


# --- output to a file or an array ----------------------------------------------


def test_out_path_writes_npy(tmp_path):
    system, y0 = oscillator_batch()
    path = tmp_path / "y.npy"
    whole = fastode.solve(system, y0, (0.0, 4.0), t_eval=T_EVAL)
    mapped = fastode.solve(
        system, y0, (0.0, 4.0), t_eval=T_EVAL, out=str(path), chunk_size=64
    )
    assert isinstance(mapped.y, np.memmap)
    assert_same_solution(mapped, whole)
    np.testing.assert_array_equal(np.load(path), whole.y)


def test_out_path_without_t_eval(tmp_path):
    system, y0 = oscillator_batch()
    path = tmp_path / "final.npy"
    whole = fastode.solve(system, y0, (0.0, 4.0))
    mapped = fastode.solve(system, y0, (0.0, 4.0), out=path)
    np.testing.assert_array_equal(mapped.y, whole.y)
    stored = np.load(path)
    assert stored.shape == (N, 1, 2)
    np.testing.assert_array_equal(stored[:, 0, :], whole.y)


def test_out_array_is_filled(tmp_path):
    system, y0 = oscillator_batch()
    buffer = np.full((N, 9, 2), -7.0)
    sol = fastode.solve(
        system, y0, (0.0, 4.0), t_eval=T_EVAL, out=buffer, chunk_size=50
    )
    assert np.shares_memory(sol.y, buffer)
    whole = fastode.solve(system, y0, (0.0, 4.0), t_eval=T_EVAL)
    np.testing.assert_array_equal(buffer, whole.y)


@pytest.mark.parametrize(
    "out,error,match",
    [
        (np.zeros((N, 8, 2)), ValueError, r"out has shape \(300, 8, 2\)"),
        (np.zeros((N, 9, 2), np.float32), ValueError, "dtype float32"),
        (3, TypeError, "out must be a file path or a NumPy array, got int"),
    ],
)
def test_out_rejects_mismatch(out, error, match):
    system, y0 = oscillator_batch()
    with pytest.raises(error, match=match):
        fastode.solve(system, y0, (0.0, 4.0), t_eval=T_EVAL, out=out, chunk_size=10)


def test_out_rejects_read_only_array():
    system, y0 = oscillator_batch()
    buffer = np.zeros((N, 9, 2))
    buffer.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        fastode.solve(system, y0, (0.0, 4.0), t_eval=T_EVAL, out=buffer)


# --- the memory budget -------------------------------------------------------------


def count_chunks(monkeypatch) -> list:
    sizes = []
    run_chunk = _chunks._run_chunk

    def counting(job):
        sizes.append(job.n)
        return run_chunk(job)

    monkeypatch.setattr(_chunks, "_run_chunk", counting)
    return sizes


def test_result_over_budget_raises():
    system, y0 = oscillator_batch()
    # y alone is 300 * 9 * 2 * 8 = 43200 bytes.
    with pytest.raises(MemoryError, match="pass out='file.npy'") as raised:
        fastode.solve(system, y0, (0.0, 4.0), t_eval=T_EVAL, max_memory=40_000)
    # Small budgets are printed in a unit that shows them, not as 0.00 GiB.
    assert "39.06 KiB" in str(raised.value)


def test_budget_sets_chunk_size(tmp_path, monkeypatch):
    system, y0 = oscillator_batch()
    sizes = count_chunks(monkeypatch)
    # Each row needs 144 bytes of y and 49 of t_final, status and step counts;
    # 300 rows of those 49 stay in memory, so 30_000 bytes leave room for
    # 77 rows, rounded down to 64.
    fastode.solve(
        system, y0, (0.0, 4.0), t_eval=T_EVAL, out=tmp_path / "y.npy", max_memory=30_000
    )
    assert sizes == [64, 64, 64, 64, 44]


def test_default_budget_is_half_of_available():
    assert _chunks.available_memory() > 0
    expected = int(_chunks.available_memory() * 0.5)
    assert abs(_chunks.check_max_memory(None) - expected) < 0.05 * expected


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (
            {"max_memory": 0},
            ValueError,
            "max_memory must be a positive number of bytes, got 0",
        ),
        ({"max_memory": float("inf")}, ValueError, "max_memory must be a positive"),
        (
            {"max_memory": "1GB"},
            TypeError,
            "max_memory must be a number of bytes, got '1GB'",
        ),
        ({"chunk_size": 0}, ValueError, "chunk_size must be a positive integer, got 0"),
        (
            {"chunk_size": 2.5},
            TypeError,
            "chunk_size must be a positive integer, got 2.5",
        ),
        (
            {"chunk_size": True},
            TypeError,
            "chunk_size must be a positive integer, got True",
        ),
        (
            {"progress": "yes"},
            TypeError,
            "progress must be None, True or False, got 'yes'",
        ),
    ],
)
def test_chunk_arguments_rejected(kwargs, error, match):
    system, y0 = oscillator_batch()
    with pytest.raises(error, match=match):
        fastode.solve(system, y0, (0.0, 1.0), **kwargs)


# --- progress bar --------------------------------------------------------------------


def test_progress_true_draws_bar(capsys):
    system, y0 = oscillator_batch()
    fastode.solve(system, y0, (0.0, 1.0), progress=True, chunk_size=100)
    captured = capsys.readouterr()
    assert "300/300" in captured.err
    assert "traj" in captured.err
    assert captured.out == ""


def test_progress_false_is_silent(capsys):
    system, y0 = oscillator_batch()
    fastode.solve(system, y0, (0.0, 1.0), progress=False, chunk_size=100)
    assert capsys.readouterr().err == ""


def test_progress_default_needs_terminal(capsys, monkeypatch):
    monkeypatch.setattr(_chunks, "PROGRESS_AFTER_S", 0.0)
    system, y0 = oscillator_batch()
    fastode.solve(system, y0, (0.0, 1.0), chunk_size=100)
    assert capsys.readouterr().err == ""


def test_progress_default_on_long_run(capsys, monkeypatch):
    """With a terminal and a run predicted longer than the threshold, the
    bar opens after the first chunk and counts it."""
    monkeypatch.setattr(_chunks, "PROGRESS_AFTER_S", 0.0)
    monkeypatch.setattr(_chunks.sys.stderr, "isatty", lambda: True, raising=False)
    system, y0 = oscillator_batch()
    fastode.solve(system, y0, (0.0, 1.0), chunk_size=100)
    assert "300/300" in capsys.readouterr().err


# --- Ctrl-C --------------------------------------------------------------------------


def interrupt_on_call(monkeypatch, call_number):
    run_chunk = _chunks._run_chunk
    calls = []

    def interrupting(job):
        calls.append(job.n)
        if len(calls) == call_number:
            raise KeyboardInterrupt
        return run_chunk(job)

    monkeypatch.setattr(_chunks, "_run_chunk", interrupting)


def test_interrupt_keeps_finished_chunks(monkeypatch):
    system, y0 = oscillator_batch()
    whole = fastode.solve(system, y0, (1.0, 4.0), t_eval=T_EVAL[2:])
    interrupt_on_call(monkeypatch, 3)
    with pytest.warns(
        RuntimeWarning, match="interrupted after 200 of 300 trajectories"
    ):
        sol = fastode.solve(system, y0, (1.0, 4.0), t_eval=T_EVAL[2:], chunk_size=100)
    np.testing.assert_array_equal(sol.y[:200], whole.y[:200])
    assert np.all(sol.status[:200] == Status.SUCCESS)
    assert np.all(sol.status[200:] == Status.INTERRUPTED)
    assert np.all(np.isnan(sol.y[200:]))
    assert np.all(sol.t_final[200:] == 1.0)
    assert np.all(sol.stats["n_steps"][200:] == 0)
    assert sol.failed().tolist() == list(range(200, 300))


def test_interrupt_flushes_out_file(tmp_path, monkeypatch):
    system, y0 = oscillator_batch()
    whole = fastode.solve(system, y0, (0.0, 4.0), t_eval=T_EVAL)
    interrupt_on_call(monkeypatch, 2)
    path = tmp_path / "partial.npy"
    with pytest.warns(RuntimeWarning, match="interrupted after 128 of 300"):
        fastode.solve(system, y0, (0.0, 4.0), t_eval=T_EVAL, out=path, chunk_size=128)
    stored = np.load(path)
    np.testing.assert_array_equal(stored[:128], whole.y[:128])
    assert np.all(np.isnan(stored[128:]))


def test_interrupt_in_first_chunk(monkeypatch):
    system, y0 = oscillator_batch()
    interrupt_on_call(monkeypatch, 1)
    with pytest.warns(RuntimeWarning, match="interrupted after 0 of 300"):
        sol = fastode.solve(system, y0, (0.0, 4.0), chunk_size=100)
    assert np.all(sol.status == Status.INTERRUPTED)
    assert "KeyboardInterrupt" in Status.INTERRUPTED.message


# --- the stiffness warning ----------------------------------------------------------


def stiff_batch():
    """Four decays, two of them too stiff for 500 explicit steps."""
    a = np.array([[[-1.0]], [[-1e6]], [[-2.0]], [[-1e7]]])
    return fastode.Linear(a), np.ones((4, 1))


def test_stiffness_warning_counts_rows():
    system, y0 = stiff_batch()
    with pytest.warns(fastode.StiffnessWarning) as record:
        sol = fastode.solve(
            system, y0, (0.0, 10.0), rtol=1e-10, atol=1e-14, max_steps=500
        )
    assert len(record) == 1
    message = str(record[0].message)
    assert "2 of 4 trajectories stopped early" in message
    assert "MAX_STEPS: 2" in message
    assert "Radau" in message
    assert "Kvaerno" in message
    assert record[0].filename == __file__
    assert sol.status.tolist() == [0, 1, 0, 1]
    np.testing.assert_allclose(sol.y[[0, 2], 0], np.exp([-10.0, -20.0]), rtol=1e-5)


def test_stiffness_warning_once_per_chunked_call():
    system, y0 = stiff_batch()
    with pytest.warns(fastode.StiffnessWarning) as record:
        fastode.solve(system, y0, (0.0, 10.0), max_steps=500, chunk_size=1)
    assert len(record) == 1
    assert "2 of 4" in str(record[0].message)


def test_fixed_step_max_steps_warns_not_stiff():
    """MAX_STEPS of a fixed-step method only means dt is too small for the span."""
    with pytest.warns(RuntimeWarning, match="fixed-step method 'rk4' stopped with MAX_STEPS") as caught:
        sol = fastode.solve(
            fastode.Linear([[-1.0]]), [1.0], (0.0, 10.0), method="rk4", dt=0.1, max_steps=5
        )
    assert sol.status == Status.MAX_STEPS
    assert not any(issubclass(w.category, fastode.StiffnessWarning) for w in caught)
    assert all(w.filename == __file__ for w in caught)


def test_tolerance_floor_warning_points_at_caller():
    with pytest.warns(UserWarning, match="below 100 \\* machine epsilon") as caught:
        fastode.solve(fastode.Linear([[-1.0]]), [1.0], (0.0, 1.0), rtol=0.0)
    assert [w.filename for w in caught] == [__file__]


def test_stiffness_warning_is_runtime_warning():
    assert issubclass(fastode.StiffnessWarning, RuntimeWarning)


# --- out= sharing storage with the inputs ------------------------------------------


def test_out_path_larger_than_disk_raises(tmp_path, monkeypatch):
    system, y0 = oscillator_batch()
    free = shutil.disk_usage(tmp_path)._replace(free=1000)
    monkeypatch.setattr(_chunks.shutil, "disk_usage", lambda folder: free)
    path = tmp_path / "big.npy"
    with pytest.raises(OSError, match=r"needs 42\.19 KiB but only 1000 bytes is free") as raised:
        fastode.solve(system, y0, (0.0, 4.0), t_eval=T_EVAL, out=path)
    assert raised.value.errno == errno.ENOSPC
    assert not path.exists()


def test_y0_mapped_from_out_file(tmp_path):
    """Continuing a run from its own output file must read y0 before the file
    is truncated and rewritten."""
    path = tmp_path / "chain.npy"
    decay = fastode.Linear([[-1.0]])
    fastode.solve(decay, np.ones((1000, 1)), (0.0, 1.0), out=path, chunk_size=100)
    previous = np.load(path, mmap_mode="r")
    sol = fastode.solve(decay, previous[:, 0, :], (1.0, 2.0), out=path, chunk_size=100)
    np.testing.assert_allclose(sol.y, np.exp(-2.0), rtol=1e-5)
    np.testing.assert_allclose(np.load(path)[:, 0, 0], np.exp(-2.0), rtol=1e-5)


def test_y0_overlapping_out_array():
    """y0 rows that the result overwrites before they are read: out starts one
    row after y0 in the same buffer."""
    decay = fastode.Linear([[-1.0]])
    buffer = np.ones((1001, 1, 1))
    sol = fastode.solve(decay, buffer[:1000, 0, :], (0.0, 1.0), out=buffer[1:], chunk_size=100)
    np.testing.assert_allclose(sol.y, np.exp(-1.0), rtol=1e-5)
