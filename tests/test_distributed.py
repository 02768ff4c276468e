"""fastode.distributed on local Dask clusters: the same Solution as one machine,
bit for bit, also when a worker process dies mid-run."""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time

import numpy as np
import pytest

import fastode
from fastode import Status

distributed = pytest.importorskip("distributed")
import fastode.distributed  # noqa: E402
from fastode._validation import check_call

T_EVAL = np.linspace(0.0, 5.0, 11)


@pytest.fixture(scope="module")
def client():
    """Two in-process workers with one thread each, quick to start. The
    scheduler's HTTP server binds a free port on the loopback interface."""
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        dashboard_address="127.0.0.1:0",
    )
    with cluster, distributed.Client(cluster) as client:
        yield client


def oscillator_batch(n, seed=0):
    rng = np.random.default_rng(seed)
    system = fastode.Oscillator(k=rng.uniform(0.5, 2.0, n), b=rng.uniform(0.0, 0.3, n))
    return system, rng.standard_normal((n, 2))


def assert_same_solution(actual, expected):
    np.testing.assert_array_equal(actual.t, expected.t)
    np.testing.assert_array_equal(actual.y, expected.y)
    np.testing.assert_array_equal(actual.status, expected.status)
    np.testing.assert_array_equal(actual.t_final, expected.t_final)
    for name, counts in expected.stats.items():
        np.testing.assert_array_equal(actual.stats[name], counts)


@pytest.mark.parametrize("method,dt", [("dopri5", None), ("rk4", 0.05)])
def test_matches_local_solve(client, method, dt):
    system, y0 = oscillator_batch(1000)
    local = fastode.solve(system, y0, (0.0, 5.0), t_eval=T_EVAL, method=method, dt=dt)
    spread = fastode.distributed.solve(
        system,
        y0,
        (0.0, 5.0),
        t_eval=T_EVAL,
        method=method,
        dt=dt,
        client=client,
        chunk_size=130,
    )
    assert_same_solution(spread, local)


def test_final_state_and_single_row(client):
    system, y0 = oscillator_batch(1)
    local = fastode.solve(fastode.Oscillator(1.0), y0[0], (0.0, 5.0))
    spread = fastode.distributed.solve(
        fastode.Oscillator(1.0), y0[0], (0.0, 5.0), client=client
    )
    assert spread.y.shape == (2,)
    assert_same_solution(spread, local)


def test_current_client_is_default(client):
    system, y0 = oscillator_batch(50)
    local = fastode.solve(system, y0, (0.0, 1.0))
    assert_same_solution(fastode.distributed.solve(system, y0, (0.0, 1.0)), local)


def test_out_file(client, tmp_path):
    system, y0 = oscillator_batch(300)
    path = tmp_path / "y.npy"
    local = fastode.solve(system, y0, (0.0, 5.0), t_eval=T_EVAL)
    fastode.distributed.solve(
        system, y0, (0.0, 5.0), t_eval=T_EVAL, client=client, chunk_size=64, out=path
    )
    np.testing.assert_array_equal(np.load(path), local.y)


def test_failures_and_stiffness_warning(client):
    a = np.array([[[-1.0]], [[-1e7]], [[np.nan]], [[-2.0]]])
    y0 = np.ones((4, 1))
    with pytest.warns(fastode.StiffnessWarning, match="1 of 4 trajectories"):
        local = fastode.solve(fastode.Linear(a), y0, (0.0, 1.0), max_steps=1000)
    with pytest.warns(fastode.StiffnessWarning, match="1 of 4 trajectories") as record:
        spread = fastode.distributed.solve(
            fastode.Linear(a),
            y0,
            (0.0, 1.0),
            max_steps=1000,
            client=client,
            chunk_size=1,
        )
    assert len(record) == 1
    assert spread.status.tolist() == [
        Status.SUCCESS,
        Status.MAX_STEPS,
        Status.NON_FINITE,
        Status.SUCCESS,
    ]
    assert_same_solution(spread, local)


def test_user_system_rejected(client):
    pytest.importorskip("numba")

    @fastode.ode(dim=1)
    def decay(t, y, dy, p):
        dy[0] = -y[0]

    with pytest.raises(TypeError, match="from fastode.ode runs on Numba"):
        fastode.distributed.solve(decay, [1.0], (0.0, 1.0), client=client)


def test_client_must_be_client():
    system, y0 = oscillator_batch(5)
    with pytest.raises(
        TypeError, match="client must be a dask.distributed.Client, got str"
    ):
        fastode.distributed.solve(system, y0, (0.0, 1.0), client="tcp://127.0.0.1:8786")


def test_bad_arguments_raise_before_submitting(client):
    system, y0 = oscillator_batch(5)
    with pytest.raises(ValueError, match="t_span"):
        fastode.distributed.solve(system, y0, (0.0, 1.0, 2.0), client=client)
    with pytest.raises(
        ValueError, match="chunk_size must be a positive integer, got 0"
    ):
        fastode.distributed.solve(system, y0, (0.0, 1.0), client=client, chunk_size=0)


def test_job_survives_pickle():
    """Chunks travel to workers pickled; the core must accept what arrives."""
    system, y0 = oscillator_batch(40)
    local = fastode.solve(system, y0, (0.0, 1.0))
    checked = check_call(
        system, "dopri5", "adaptive", y0, (0.0, 1.0), None, None, 1e-6, 1e-9, 1000, None,
        "i", 1
    )
    job, _ = fastode.distributed._prepare(system, checked)
    out = pickle.loads(pickle.dumps(job.rows(10, 30))).run()
    np.testing.assert_array_equal(out["y"][:, 0, :], local.y[10:30])


def lorenz_batch(n):
    rng = np.random.default_rng(4)
    return fastode.Lorenz(rho=rng.uniform(24.0, 30.0, n)), rng.uniform(
        -10.0, 10.0, (n, 3)
    )


def kill_busy_worker(client, victims):
    """SIGKILL the first worker process seen running a task; record its pid."""
    pids = client.run(os.getpid)
    deadline = time.monotonic() + 20.0
    while time.monotonic() < deadline:
        busy = [address for address, keys in client.processing().items() if keys]
        if busy:
            time.sleep(0.1)
            victims.append(pids[busy[0]])
            os.kill(pids[busy[0]], signal.SIGKILL)
            return
        time.sleep(0.02)


@pytest.mark.slow
def test_worker_killed_mid_run():
    """Kill one of two worker processes while it integrates a chunk; the
    scheduler runs the lost chunks again and the result is unchanged."""
    # Each chunk of 128 takes about 0.3 s on one core, so the kill lands
    # inside a running task.
    system, y0 = lorenz_batch(1024)
    run = {"t_eval": np.linspace(0.0, 200.0, 5), "rtol": 1e-10, "atol": 1e-10}
    local = fastode.solve(system, y0, (0.0, 200.0), **run)
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address="127.0.0.1:0",
        host="127.0.0.1",
    )
    with cluster, distributed.Client(cluster) as client:
        victims = []
        killer = threading.Thread(target=kill_busy_worker, args=(client, victims))
        killer.start()
        spread = fastode.distributed.solve(
            system, y0, (0.0, 200.0), client=client, chunk_size=128, **run
        )
        killer.join()
        assert len(victims) == 1
        assert victims[0] not in client.run(os.getpid).values()
    assert_same_solution(spread, local)


class MissingKernel(fastode.Oscillator):
    """An oscillator whose kernel name the core lacks, as on a worker that
    runs an older build of fastode."""

    _kernel = "solve_missing_kernel"


def test_worker_error_cancels_other_chunks(client):
    system, y0 = oscillator_batch(40)
    with pytest.raises(AttributeError, match="solve_missing_kernel") as error:
        fastode.distributed.solve(
            MissingKernel(k=system.params["k"]), y0, (0.0, 1.0), client=client, chunk_size=4
        )
    # The traceback keeps the futures alive, so only an explicit cancel
    # releases the chunks still queued on the cluster.
    assert error.value is not None
    left = [key for key in client.futures if str(key).startswith("fastode-")]
    assert left == []


def test_y0_read_from_the_out_file(client, tmp_path):
    """y0 memory-mapped from the file that out= rewrites is read before the
    file is replaced, as in fastode.solve."""
    system, y0 = oscillator_batch(200)
    path = tmp_path / "y.npy"
    first = fastode.solve(system, y0, (0.0, 1.0), out=path)
    expected = fastode.solve(system, first.y, (0.0, 1.0))
    mapped = np.load(path, mmap_mode="r").reshape(200, 2)
    again = fastode.distributed.solve(system, mapped, (0.0, 1.0), client=client, chunk_size=16,
                                      out=path)
    np.testing.assert_array_equal(np.asarray(again.y).reshape(200, 2), expected.y)
