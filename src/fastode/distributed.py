"""Spread one batch of trajectories over the workers of a Dask cluster.

Each chunk of trajectories runs on a worker in the compiled C++ core, and the
client writes the chunks into one `Solution`. Trajectories are integrated
independently of each other, so the result equals `fastode.solve` on one
machine bit for bit, provided every machine runs the same build of fastode.

Connect to an existing cluster by its scheduler address::

    from dask.distributed import Client
    import fastode.distributed

    client = Client("tcp://scheduler:8786")
    sol = fastode.distributed.solve(system, y0, (0.0, 10.0), client=client)

or start one on this machine with ``Client(LocalCluster(n_workers=4))``.
Needs the ``dask`` extra: ``pip install fastode[dask]``.
"""

from __future__ import annotations

import uuid

import numpy as np

from . import _chunks
from . import _validation as check
from ._solution import Solution
from ._solve import DEFAULT_MAX_STEPS, _make_solution
from ._systems import System
from ._user import UserSystem
from ._warnings import warn_user

__all__ = ["solve"]

#: Trajectories per task when `chunk_size` is not given.
DEFAULT_CHUNK_SIZE = 65_536


def solve(
    system,
    y0,
    t_span,
    t_eval=None,
    method="dopri5",
    dt=None,
    rtol=None,
    atol=None,
    max_steps=DEFAULT_MAX_STEPS,
    dtype=None,
    controller="i",
    *,
    adaptive=None,
    client=None,
    chunk_size=DEFAULT_CHUNK_SIZE,
    threads=1,
    out=None,
    progress=False,
) -> Solution:
    """Integrate a batch like `fastode.solve`, one chunk per Dask task.

    Parameters
    ----------
    system, y0, t_span, t_eval, method, dt, rtol, atol, max_steps, dtype, controller, adaptive
        As in `fastode.solve`. Only built-in systems run here; systems made
        by `fastode.ode` raise `TypeError`.
    client : dask.distributed.Client, optional
        The cluster to run on; defaults to the current client
        (`distributed.get_client`).
    chunk_size : int
        Trajectories per task. Each task carries its rows of y0 and of the
        per-trajectory parameters through the scheduler.
    threads : int
        OpenMP threads of each task. Dask already runs one task per worker
        thread, so the default of 1 fills a worker started with one thread
        per core.
    out : str or os.PathLike or ndarray, optional
        Where the client writes ``y``, as in `fastode.solve`.
    progress : bool
        Show a tqdm bar of finished trajectories on stderr.

    Returns
    -------
    Solution
        The same arrays as `fastode.solve` on one machine.

    Notes
    -----
    Tasks have unique keys and embed their inputs, so when a worker dies the
    scheduler runs its unfinished or unfetched chunks again on another
    worker. A task whose workers die more often than the scheduler's
    ``distributed.scheduler.allowed-failures`` (3 by default) fails with
    ``KilledWorker``, which this function raises. Ctrl-C cancels the
    remaining tasks and returns the finished chunks, as `fastode.solve` does.
    """
    _check_system(system)
    method = check.check_method(method, system)
    kind = check.check_adaptive(adaptive, method)
    checked = check.check_call(system, method, kind, y0, t_span, t_eval, dt, rtol, atol,
                               max_steps, dtype, controller, threads)
    job, layout = _prepare(system, checked)
    chunk_size = _chunks.check_chunk_size(chunk_size)
    progress = _chunks.check_progress(progress)
    client = _get_client(client)
    # Chunks are written while later ones still read y0, which may be a view
    # of the out file itself.
    job = _chunks._detach_from_out(job, out)
    result = _chunks._allocate(layout, out)
    bounds = [
        (start, min(start + chunk_size, layout.n))
        for start in range(0, layout.n, chunk_size)
    ]
    _gather(client, job, bounds, result, progress, layout.n)
    solution = _make_solution(result, checked.t_solution, job.dense, checked.single, method)
    _chunks.warn_if_stiff(solution.status, kind, method)
    return solution


def _check_system(system):
    """Raise TypeError unless `system` is a built-in system the C++ core runs."""
    if not isinstance(system, System):
        msg = f"system must be a built-in fastode system, got {type(system).__name__}"
        raise TypeError(msg)
    if isinstance(system, UserSystem):
        msg = (
            "fastode.distributed runs built-in systems on the C++ core; "
            f"{system.name} from "
            "fastode.ode runs on Numba, so call fastode.solve for it"
        )
        raise TypeError(msg)


def _prepare(system, checked: check.CheckedCall):
    """Build the C++ job and the output layout from checked arguments."""
    n = checked.y0.shape[0]
    job = _chunks.CoreJob(
        system._kernel,
        checked.y0,
        checked.t_core,
        checked.dense,
        checked.call,
        system._core_arguments(n, checked.dtype),
    )
    layout = _chunks._Layout(n, max(checked.t_core.shape[0], 1), system.dim, checked.dtype)
    return job, layout


def _get_client(client):
    try:
        from distributed import Client, get_client
    except ImportError as error:
        msg = "fastode.distributed needs Dask: pip install 'fastode[dask]'"
        raise ImportError(msg) from error
    if client is None:
        try:
            return get_client()
        except ValueError as error:
            msg = (
                "client is missing and no Dask client is running; pass "
                "client=Client('tcp://scheduler:8786') or client=Client(LocalCluster())"
            )
            raise ValueError(msg) from error
    if not isinstance(client, Client):
        msg = f"client must be a dask.distributed.Client, got {type(client).__name__}"
        raise TypeError(msg)
    return client


def _run_job(job: _chunks.CoreJob) -> dict:
    """Integrate one chunk on a worker."""
    return job.run()


def _gather(client, job, bounds, result, progress, n):
    """Submit one task per chunk and store each chunk as it finishes."""
    from distributed import as_completed

    token = uuid.uuid4().hex
    futures = {}
    for index, (start, stop) in enumerate(bounds):
        future = client.submit(
            _run_job, job.rows(start, stop), key=f"fastode-{token}-{index}"
        )
        futures[future] = (start, stop)
    done = np.zeros(n, dtype=bool)
    bar = _chunks._Progress(progress, n)
    finished = 0
    try:
        for future in as_completed(futures):
            start, stop = futures[future]
            _chunks._store(result, future.result(), start, stop)
            done[start:stop] = True
            finished += stop - start
            bar.update(finished, stop - start)
            future.release()
    except KeyboardInterrupt:
        client.cancel(list(futures))
        _mark_interrupted_rows(result, ~done, job.call["t0"])
        warn_user(
            f"fastode.distributed.solve was interrupted after {finished} of {n} "
            f"trajectories; the other {n - finished} have status INTERRUPTED and NaN "
            "states",
            RuntimeWarning,
        )
    except Exception:
        # A chunk failed on its worker. The traceback keeps these futures
        # alive, so without a cancel the other chunks would still run.
        client.cancel(list(futures))
        raise
    finally:
        bar.close()


def _mark_interrupted_rows(result, rows, t0):
    for start, stop in _runs(rows):
        _chunks._mark_interrupted_range(result, start, stop, t0)


def _runs(mask):
    """(start, stop) of each run of True in a boolean array."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return zip(edges[::2], edges[1::2], strict=True)
