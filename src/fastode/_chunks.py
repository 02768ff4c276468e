"""Runs a batch of trajectories in chunks: bounded memory, memory-mapped
output, a progress bar, Ctrl-C at chunk boundaries and the stiffness warning.

Every trajectory is integrated independently of the others in its batch, so
splitting a batch into chunks (or over the machines of a Dask cluster) gives
results that are bit-identical to one call on the whole batch.
"""

from __future__ import annotations

import errno
import math
import mmap
import os
import shutil
import sys
import time
from dataclasses import dataclass, replace

import numpy as np

from ._solution import Status, StiffnessWarning
from ._warnings import warn_user

__all__ = ["CoreJob", "NumbaJob", "available_memory", "run", "warn_if_stiff"]

#: Fraction of MemAvailable that the output buffers of one call may use by default.
DEFAULT_MEMORY_FRACTION = 0.5
#: Used when the platform does not report available memory.
FALLBACK_MEMORY = 2 * 2**30
#: Chunks are whole numbers of 64 trajectories, a multiple of the SIMD block
#: of both dtypes (32 float64 or 64 float32 lanes), so no block is split.
ROW_GRANULE = 64
#: Smallest default chunk; smaller chunks leave threads idle at each boundary.
MIN_CHUNK_ROWS = 4096
#: Default number of chunks a large batch is cut into, for the progress bar.
TARGET_CHUNKS = 32
#: progress=None shows a bar when the run is estimated to take longer than this.
PROGRESS_AFTER_S = 2.0
#: Output keys with one entry per trajectory, besides ``y``.
PER_ROW_KEYS = ("t_final", "status", "n_steps", "n_accepted", "n_rejected", "n_rhs")
#: Core arguments that are buffers shared by every trajectory even when their
#: length happens to equal N (the MLP weights and layer widths).
SHARED_BUFFERS = frozenset({"params", "widths", "unit_trace"})


@dataclass(frozen=True)
class CoreJob:
    """One call of a `fastode._core.solve_*` binding, sliceable by rows.

    Every field is a NumPy array or a plain value, so a job pickles cheaply
    to a Dask worker.
    """

    kernel: str
    y0: np.ndarray
    t_eval: np.ndarray
    dense: bool
    call: dict
    args: dict

    @property
    def n(self) -> int:
        return self.y0.shape[0]

    def rows(self, start: int, stop: int) -> CoreJob:
        """Return the same job restricted to trajectories ``start:stop``."""
        args = {
            name: _slice_rows(value, self.n, start, stop, name)
            for name, value in self.args.items()
        }
        return replace(self, y0=self.y0[start:stop], args=args)

    def run(self) -> dict:
        from . import _core

        kernel = getattr(_core, self.kernel)
        return kernel(self.y0, self.t_eval, self.dense, **self.call, **self.args)


@dataclass(frozen=True)
class NumbaJob:
    """One call of the Numba CPU backend, sliceable by rows."""

    system: object
    y0: np.ndarray
    params: np.ndarray
    t_eval: np.ndarray
    call: dict

    @property
    def n(self) -> int:
        return self.y0.shape[0]

    def rows(self, start: int, stop: int) -> NumbaJob:
        params = _slice_rows(self.params, self.n, start, stop)
        return replace(self, y0=self.y0[start:stop], params=params)

    def run(self) -> dict:
        from . import _numba

        return _numba.run(self.system, self.y0, self.params, self.t_eval, **self.call)


def _slice_rows(value, n: int, start: int, stop: int, name: str = ""):
    """Rows ``start:stop`` of a per-trajectory array; shared values unchanged.

    An array is per-trajectory when its first axis has length N > 1 (shared
    ones have length 1), except the shared buffers in `SHARED_BUFFERS`.
    """
    if not isinstance(value, np.ndarray) or value.ndim == 0 or n <= 1:
        return value
    if value.shape[0] != n or name in SHARED_BUFFERS:
        return value
    return value[start:stop]


def available_memory() -> int:
    """Bytes of memory available to new allocations, from MemAvailable in
    /proc/meminfo; `FALLBACK_MEMORY` where that file does not exist."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return FALLBACK_MEMORY


def check_max_memory(max_memory) -> int:
    if max_memory is None:
        return int(available_memory() * DEFAULT_MEMORY_FRACTION)
    if isinstance(max_memory, (bool, np.bool_)) or not isinstance(
        max_memory, (int, float, np.integer, np.floating)
    ):
        msg = f"max_memory must be a number of bytes, got {max_memory!r}"
        raise TypeError(msg)
    if not math.isfinite(max_memory) or max_memory <= 0:
        msg = f"max_memory must be a positive number of bytes, got {max_memory!r}"
        raise ValueError(msg)
    return int(max_memory)


def check_chunk_size(chunk_size) -> int | None:
    if chunk_size is None:
        return None
    is_integer = isinstance(chunk_size, (int, np.integer))
    if isinstance(chunk_size, (bool, np.bool_)) or not is_integer:
        msg = f"chunk_size must be a positive integer, got {chunk_size!r}"
        raise TypeError(msg)
    if chunk_size < 1:
        msg = f"chunk_size must be a positive integer, got {chunk_size}"
        raise ValueError(msg)
    return int(chunk_size)


def check_progress(progress):
    if progress is None or isinstance(progress, (bool, np.bool_)):
        return None if progress is None else bool(progress)
    msg = f"progress must be None, True or False, got {progress!r}"
    raise TypeError(msg)


class _Layout:
    """Sizes of the output of one batch: rows, bytes per row, chunk length."""

    def __init__(self, n: int, n_out: int, dim: int, dtype):
        self.n, self.n_out, self.dim = n, n_out, dim
        self.dtype = np.dtype(dtype)
        self.y_row_bytes = n_out * dim * self.dtype.itemsize
        # t_final, the int8 status and four int64 step counters.
        self.small_row_bytes = self.dtype.itemsize + 1 + 4 * 8

    def result_bytes(self, in_memory: bool) -> int:
        y_bytes = self.y_row_bytes if in_memory else 0
        return self.n * (y_bytes + self.small_row_bytes)

    def chunk_rows(
        self,
        max_memory: int,
        in_memory: bool,
        chunk_size: int | None,
        min_rows: int = MIN_CHUNK_ROWS,
        target_chunks: int = TARGET_CHUNKS,
    ) -> int:
        """Trajectories per chunk: `chunk_size` when given, else a share of
        the batch that keeps the result plus one chunk within `max_memory`."""
        if chunk_size is not None:
            return min(chunk_size, max(self.n, 1))
        resident = self.result_bytes(in_memory)
        room = max(max_memory - resident, 0)
        by_memory = room // (self.y_row_bytes + self.small_row_bytes)
        by_memory = max(by_memory // ROW_GRANULE * ROW_GRANULE, ROW_GRANULE)
        target = max(min_rows, -(-self.n // target_chunks))
        target = -(-target // ROW_GRANULE) * ROW_GRANULE
        return min(target, by_memory, max(self.n, 1))


def _gib(n_bytes: int) -> str:
    """Format a byte count in the largest binary unit that keeps it >= 1."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n_bytes >= size:
            return f"{n_bytes / size:.2f} {unit}"
    return f"{n_bytes} bytes"


def _allocate(layout: _Layout, out) -> dict:
    """Allocate the whole-batch result, with ``y`` in memory, in the array
    `out`, or in a new memory-mapped .npy file at the path `out`."""
    shape = (layout.n, layout.n_out, layout.dim)
    if out is None:
        y = np.empty(shape, layout.dtype)
    elif isinstance(out, np.ndarray):
        y = _check_out_array(out, shape, layout.dtype)
    elif isinstance(out, (str, os.PathLike)):
        path = os.fspath(out)
        _check_disk_space(path, math.prod(shape) * np.dtype(layout.dtype).itemsize)
        y = np.lib.format.open_memmap(path, mode="w+", dtype=layout.dtype, shape=shape)
    else:
        msg = f"out must be a file path or a NumPy array, got {type(out).__name__}"
        raise TypeError(msg)
    result = {
        "y": y,
        "t_final": np.empty(layout.n, layout.dtype),
        "status": np.empty(layout.n, np.int8),
    }
    for name in PER_ROW_KEYS[2:]:
        result[name] = np.zeros(layout.n, np.int64)
    return result


def _check_disk_space(path: str, y_bytes: int):
    """Raise OSError when the file system of `path` cannot hold the result.

    The .npy file is created sparse, so without this check a run larger than
    the disk would fill it chunk by chunk and fail late.
    """
    folder = os.path.dirname(os.path.abspath(path))
    free = shutil.disk_usage(folder).free
    if os.path.isfile(path):
        # The old file is truncated first, so its blocks count as free.
        free += os.path.getsize(path)
    if y_bytes > free:
        msg = (
            f"out={path!r} needs {_gib(y_bytes)} but only {_gib(free)} is free on its "
            "file system; choose a path on a larger disk, or store fewer output times"
        )
        raise OSError(errno.ENOSPC, msg)


def _detach_from_out(job, out):
    """Copy the job's input arrays that share storage with `out`.

    The result is written chunk by chunk while later chunks still read y0, so
    a y0 read from the same file (or a view of the same array) would be
    overwritten, and truncating a mapped file crashes the process.
    """
    if out is None:
        return job
    changes = {}
    if _shares_storage(job.y0, out):
        changes["y0"] = job.y0.copy()
    params = getattr(job, "params", None)
    if isinstance(params, np.ndarray) and _shares_storage(params, out):
        changes["params"] = params.copy()
    args = getattr(job, "args", None)
    if isinstance(args, dict):
        copied = {
            name: value.copy()
            for name, value in args.items()
            if isinstance(value, np.ndarray) and _shares_storage(value, out)
        }
        if copied:
            changes["args"] = {**args, **copied}
    return replace(job, **changes) if changes else job


def _shares_storage(array, out) -> bool:
    if not isinstance(array, np.ndarray):
        return False
    if isinstance(out, np.ndarray):
        return np.shares_memory(array, out)
    if not isinstance(out, (str, os.PathLike)):
        return False
    path = os.fspath(out)
    if not os.path.exists(path):
        return False
    base = array
    while base is not None:
        filename = getattr(base, "filename", None)
        if isinstance(base, np.memmap) and filename and os.path.exists(filename):
            if os.path.samefile(filename, path):
                return True
        base = getattr(base, "base", None)
    return False


def _check_out_array(out: np.ndarray, shape: tuple, dtype: np.dtype) -> np.ndarray:
    if out.shape != shape or out.dtype != dtype:
        msg = (
            f"out has shape {out.shape} and dtype {out.dtype}; this run writes y of "
            f"shape {shape} and dtype {dtype} (N, T, d with T = 1 when t_eval is None)"
        )
        raise ValueError(msg)
    if not out.flags.writeable:
        msg = "out is read-only; pass a writeable array or a file path"
        raise ValueError(msg)
    return out


def _run_chunk(job) -> dict:
    """Run one chunk; a separate function so tests can interrupt a run here."""
    return job.run()


class _Progress:
    """A tqdm bar over trajectories, opened when `progress` requests one."""

    def __init__(self, progress: bool | None, n: int):
        self.progress, self.n, self.bar = progress, n, None
        self.start = time.perf_counter()
        if progress:
            self._open(0)

    def _open(self, done: int):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.n, initial=done, unit="traj", file=sys.stderr)

    def update(self, done: int, count: int):
        if self.bar is None and self.progress is None and done < self.n:
            elapsed = time.perf_counter() - self.start
            expected = elapsed * self.n / done
            if expected > PROGRESS_AFTER_S and sys.stderr.isatty():
                self._open(done)
                return
        if self.bar is not None:
            self.bar.update(count)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def run(
    job,
    n_out: int,
    dim: int,
    *,
    max_memory=None,
    out=None,
    progress=None,
    chunk_size=None,
    min_rows=MIN_CHUNK_ROWS,
    target_chunks=TARGET_CHUNKS,
) -> dict:
    """Run `job` in chunks of trajectories and return its outputs as one dict
    in the layout of the `fastode._core` bindings.

    By default a batch is cut into `target_chunks` chunks of at least
    `min_rows` trajectories; a GPU backend asks for fewer, larger ones.

    The dict has an extra key ``n_interrupted``: the number of trajectories
    never started because a KeyboardInterrupt stopped the run. Those get
    status INTERRUPTED, NaN states and zero step counts.
    """
    max_memory = check_max_memory(max_memory)
    chunk_size = check_chunk_size(chunk_size)
    progress = check_progress(progress)
    layout = _Layout(job.n, n_out, dim, job.y0.dtype)
    in_memory = out is None
    check_result_fits(layout, max_memory, in_memory)
    rows = layout.chunk_rows(max_memory, in_memory, chunk_size, min_rows, target_chunks)
    if in_memory and rows >= layout.n and not progress:
        return {**_run_chunk(job), "n_interrupted": 0}
    job = _detach_from_out(job, out)
    return _run_chunks(job, layout, _allocate(layout, out), rows, progress)


def check_result_fits(layout: _Layout, max_memory: int, in_memory: bool):
    """Raise MemoryError when the host result alone exceeds `max_memory`."""
    needed = layout.result_bytes(in_memory)
    if needed > max_memory:
        where = "in memory" if in_memory else "for status and step counts"
        hint = (
            "pass out='file.npy' to write y to a memory-mapped file, or "
            if in_memory
            else ""
        )
        msg = (
            f"the result of {layout.n} trajectories needs {_gib(needed)} {where}, "
            f"more than max_memory={_gib(max_memory)}; {hint}raise max_memory or "
            "solve fewer trajectories per call"
        )
        raise MemoryError(msg)


def _run_chunks(job, layout: _Layout, result: dict, rows: int, progress) -> dict:
    bar = _Progress(progress, layout.n)
    done = 0
    try:
        while done < layout.n:
            stop = min(done + rows, layout.n)
            _store(result, _run_chunk(job.rows(done, stop)), done, stop)
            bar.update(stop, stop - done)
            done = stop
    except KeyboardInterrupt:
        _mark_interrupted(result, done, job.call["t0"])
        n_left = layout.n - done
        warn_user(
            f"fastode.solve was interrupted after {done} of {layout.n} trajectories; "
            f"the other {n_left} have status INTERRUPTED and NaN states",
            RuntimeWarning,
        )
    finally:
        bar.close()
        if isinstance(result["y"], np.memmap):
            result["y"].flush()
    return {**result, "n_interrupted": layout.n - done}


def _store(result: dict, chunk: dict, start: int, stop: int):
    result["y"][start:stop] = chunk["y"]
    for name in PER_ROW_KEYS:
        result[name][start:stop] = chunk[name]
    if isinstance(result["y"], np.memmap):
        _release_rows(result["y"], stop)


def _release_rows(y: np.memmap, stop: int):
    """Write rows ``:stop`` of a memory-mapped result to disk and unmap their
    pages, so the resident memory of a run larger than RAM stays bounded."""
    y.flush()
    mapping = getattr(y, "_mmap", None)
    # Only a whole, shared mapping: a copy-on-write one (mode "c") would lose
    # the rows, and a view does not start at the offset computed below.
    whole = isinstance(y.base, mmap.mmap) and y.mode in ("r+", "w+")
    if not whole or not hasattr(mapping, "madvise"):
        return
    row_bytes = y.strides[0]
    # np.memmap maps from the allocation boundary below the .npy header.
    end = y.offset % mmap.ALLOCATIONGRANULARITY + stop * row_bytes
    end -= end % mmap.PAGESIZE
    if end > 0:
        try:
            mapping.madvise(mmap.MADV_DONTNEED, 0, end)
        except (OSError, ValueError):
            pass


def _mark_interrupted(result: dict, start: int, t0: float):
    _mark_interrupted_range(result, start, len(result["status"]), t0)


def _mark_interrupted_range(result: dict, start: int, stop: int, t0: float):
    result["y"][start:stop] = np.nan
    result["t_final"][start:stop] = t0
    result["status"][start:stop] = Status.INTERRUPTED
    for name in PER_ROW_KEYS[2:]:
        result[name][start:stop] = 0


def warn_if_stiff(status, kind: str, method: str):
    """Warn once when trajectories stopped before t1 for lack of steps.

    For an adaptive method, MAX_STEPS or STEP_TOO_SMALL is the usual outcome
    on a stiff system, so the warning is a `StiffnessWarning`. For a fixed
    step it only means the span needs more than max_steps steps of dt.
    """
    status = np.atleast_1d(status)
    n_max_steps = int(np.count_nonzero(status == Status.MAX_STEPS))
    if kind != "adaptive":
        if n_max_steps:
            _warn_fixed_step_limit(n_max_steps, status.size, method)
        return
    n_too_small = int(np.count_nonzero(status == Status.STEP_TOO_SMALL))
    if n_max_steps + n_too_small == 0:
        return
    msg = (
        f"{n_max_steps + n_too_small} of {status.size} trajectories stopped early "
        "with the "
        f"explicit method {method!r} (MAX_STEPS: {n_max_steps}, STEP_TOO_SMALL: "
        f"{n_too_small}). If the system is stiff, an explicit method needs a number of "
        "steps proportional to its fastest decay rate times the span, whatever the "
        "tolerance; fastode has no implicit method yet, so use one such as "
        "scipy.integrate.solve_ivp(method='Radau' or 'BDF') or diffrax's Kvaerno5. "
        "Otherwise raise max_steps. Solution.failed() lists the trajectories."
    )
    warn_user(msg, StiffnessWarning)


def _warn_fixed_step_limit(n_stopped: int, n: int, method: str):
    msg = (
        f"{n_stopped} of {n} trajectories of the fixed-step method {method!r} stopped "
        "with MAX_STEPS before t1: the span needs more than max_steps steps of size "
        "dt. Raise max_steps or dt; Solution.t_final shows where they stopped."
    )
    warn_user(msg, RuntimeWarning)
