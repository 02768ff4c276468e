"""Chunked GPU runs: batches larger than the GPU's free memory, ``out=``, the
progress bar and Ctrl-C at chunk boundaries, with copies overlapped.

Chunks alternate between two CUDA streams. Chunk i's host-to-device copies,
kernel and device-to-host copies are queued on stream i % 2 from page-locked
(pinned) host buffers, so they return at once. The host waits for a stream
only before it reuses that stream's buffers for chunk i + 2. So the copies
of one chunk run while the kernel of the other runs, and the host stores
chunk i - 2 into the result meanwhile. Pinned buffers are allocated only
when there are two chunks or more. A single chunk copies straight between
the caller's arrays and the device.

Every trajectory is independent and a chunk is a contiguous slice of rows,
so the results do not depend on the chunk size.

NOTE: this module has never run on a real GPU. tests/test_cupy_launch.py
checks the sequencing with a stand-in for CuPy whose streams run queued
work only when synchronized. tests/gpu, run by tools/gpu-check.sh, is the
check on a device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _chunks
from .._warnings import warn_user
from ._device import free_device_memory

__all__ = ["GpuJob", "OUTPUT_KEYS", "chunk_rows", "on_host", "run"]

#: Share of the free device memory that the chunk buffers may take. The rest
#: is headroom for CuPy's own allocations and pool fragmentation.
DEVICE_MEMORY_FRACTION = 0.8
#: Streams, and so chunks in flight at once.
N_STREAMS = 2
#: A host batch is cut into at least this many chunks by default, so that
#: copies can overlap kernels and the progress bar moves.
GPU_TARGET_CHUNKS = 4
#: Smallest default chunk: about one full wave of a large data-centre GPU
#: (an H100 keeps 270 336 threads resident), so no launch leaves SMs idle.
GPU_MIN_CHUNK_ROWS = 2**18
#: Threads per CUDA block. Each thread holds one trajectory's state and
#: stages in registers, so a modest block keeps register pressure per SM low.
THREADS_PER_BLOCK = 128
#: Kernel outputs, in launch order.
OUTPUT_KEYS = ("y", "t_final", "status", "n_steps", "n_accepted", "n_rejected", "n_rhs")


@dataclass
class GpuJob:
    """One kernel launch over a batch, sliceable by rows.

    ``row_inputs`` are the arguments with one row per trajectory (y0 first,
    then per-trajectory parameters), each a NumPy array (staged through the
    host buffers) or a CuPy array (sliced in place). ``arguments`` builds the
    argument tuple of a chunk from its row inputs, outputs and length.
    """

    kernel: object
    n: int
    n_out: int
    dim: int
    dtype: np.dtype
    t0: float
    row_inputs: list
    arguments: object


class _Slot:
    """The buffers and the stream of one chunk in flight."""

    def __init__(self, cupy, job: GpuJob, rows: int, device_result: bool, pinned: bool):
        self.stream = cupy.cuda.Stream()
        self.device_result, self.pinned = device_result, pinned
        self.pending = None
        self.cupy = cupy
        host_inputs = [a for a in job.row_inputs if on_host(cupy, a)]
        self.device_in = {id(a): cupy.empty((rows, *a.shape[1:]), a.dtype) for a in host_inputs}
        self.host_in = {}
        if pinned:
            self.host_in = {id(a): _pinned(cupy, (rows, *a.shape[1:]), a.dtype) for a in host_inputs}
        shapes = _output_shapes(rows, job)
        self.device_out = {}
        self.host_out = {}
        if not device_result:
            self.device_out = {key: cupy.empty(*spec) for key, spec in shapes.items()}
        if pinned and not device_result:
            self.host_out = {key: _pinned(cupy, *spec) for key, spec in shapes.items()}

    def submit(self, job: GpuJob, result: dict, start: int, stop: int):
        """Queue the copies and the kernel of rows ``start:stop`` on this stream."""
        count = stop - start
        with self.stream:
            inputs = [self._upload(array, start, stop) for array in job.row_inputs]
            if self.device_result:
                outputs = [result[key][start:stop] for key in OUTPUT_KEYS]
            else:
                outputs = [self.device_out[key][:count] for key in OUTPUT_KEYS]
            blocks = (count + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK
            job.kernel((blocks,), (THREADS_PER_BLOCK,), job.arguments(inputs, outputs, count))
            if not self.device_result:
                for key in OUTPUT_KEYS:
                    target = self.host_out[key][:count] if self.pinned else result[key][start:stop]
                    self.device_out[key][:count].get(stream=self.stream, out=target, blocking=False)
        self.pending = (start, stop)

    def _upload(self, array, start: int, stop: int):
        if not on_host(self.cupy, array):
            return array[start:stop]
        count = stop - start
        host = array[start:stop]
        if self.pinned:
            # The stream was synchronized before this slot was reused, so no
            # queued copy still reads this buffer.
            staged = self.host_in[id(array)][:count]
            np.copyto(staged, host)
            host = staged
        device = self.device_in[id(array)][:count]
        device.set(host, stream=self.stream)
        return device

    def finish(self, result: dict) -> int | None:
        """Wait for the chunk in flight, store it, and return its stop row."""
        if self.pending is None:
            return None
        self.stream.synchronize()
        start, stop = self.pending
        if self.pinned and not self.device_result:
            for key in OUTPUT_KEYS:
                result[key][start:stop] = self.host_out[key][: stop - start]
        self.pending = None
        return stop


def on_host(cupy, array) -> bool:
    """Return True for a NumPy array, which must be copied to the device."""
    return isinstance(array, np.ndarray) and not isinstance(array, cupy.ndarray)


def _pinned(cupy, shape: tuple, dtype) -> np.ndarray:
    """Allocate a NumPy array in page-locked host memory, which asynchronous
    copies need."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape))
    memory = cupy.cuda.alloc_pinned_memory(max(count * dtype.itemsize, 1))
    return np.frombuffer(memory, dtype, count).reshape(shape)


def _output_shapes(rows: int, job: GpuJob) -> dict:
    shapes = {
        "y": ((rows, job.n_out, job.dim), job.dtype),
        "t_final": ((rows,), job.dtype),
        "status": ((rows,), np.int8),
    }
    for key in OUTPUT_KEYS[3:]:
        shapes[key] = ((rows,), np.int64)
    return shapes


def _input_row_bytes(cupy, job: GpuJob) -> int:
    """Bytes per trajectory of the row inputs that are staged from the host."""
    return sum(
        array.nbytes // max(array.shape[0], 1)
        for array in job.row_inputs
        if on_host(cupy, array)
    )


def chunk_rows(cupy, job, layout, device_result, max_memory, in_memory, chunk_size) -> int:
    """Trajectories per chunk: `chunk_size` when given, else a quarter of a
    host batch (at least `GPU_MIN_CHUNK_ROWS`) or a whole device batch, in
    both cases cut down to what the device and `max_memory` hold.

    Raises
    ------
    MemoryError
        When a device result, or one trajectory's buffers, does not fit.
    """
    output_row = layout.y_row_bytes + layout.small_row_bytes
    input_row = _input_row_bytes(cupy, job)
    budget = int(free_device_memory(cupy) * DEVICE_MEMORY_FRACTION)
    if device_result:
        needed = layout.n * output_row
        if needed > budget:
            msg = (
                f"the result of {layout.n} trajectories needs {_chunks._gib(needed)} on "
                f"the GPU, more than the {_chunks._gib(budget)} free; pass y0 as a NumPy "
                "array (results then come back chunk by chunk) or pass out='file.npy'"
            )
            raise MemoryError(msg)
        budget -= needed
    slot_row = input_row + (0 if device_result else output_row)
    by_device = budget // (N_STREAMS * slot_row) if slot_row else layout.n
    if chunk_size is not None:
        rows = min(chunk_size, by_device)
    else:
        rows = min(layout.n, by_device)
        if not device_result:
            target = max(GPU_MIN_CHUNK_ROWS, -(-layout.n // GPU_TARGET_CHUNKS))
            room = max(max_memory - layout.result_bytes(in_memory), 0)
            by_host = room // (N_STREAMS * (input_row + output_row))
            rows = min(rows, target, by_host)
        if rows < layout.n:
            rows = rows // _chunks.ROW_GRANULE * _chunks.ROW_GRANULE or rows
    rows = min(rows, max(layout.n, 1))
    if rows < 1:
        msg = (
            f"one trajectory needs {slot_row * N_STREAMS} bytes of chunk buffers, more "
            "than the GPU or max_memory leaves; store fewer output times (t_eval)"
        )
        raise MemoryError(msg)
    return int(rows)


def _device_outputs(cupy, job: GpuJob) -> dict:
    return {key: cupy.empty(*spec) for key, spec in _output_shapes(job.n, job).items()}


def run(cupy, job: GpuJob, *, device_result, max_memory, out, progress, chunk_size) -> dict:
    """Run `job` in chunks and return the outputs keyed as the core's bindings.

    With `device_result` the outputs are CuPy arrays of the whole batch (for
    device input). Otherwise they are host arrays, in memory or in `out`.
    """
    max_memory = _chunks.check_max_memory(max_memory)
    chunk_size = _chunks.check_chunk_size(chunk_size)
    progress = _chunks.check_progress(progress)
    layout = _chunks._Layout(job.n, job.n_out, job.dim, job.dtype)
    if device_result:
        result = _device_outputs(cupy, job)
    else:
        _chunks.check_result_fits(layout, max_memory, out is None)
        result = _chunks._allocate(layout, out)
    if job.n == 0:
        return result
    rows = chunk_rows(cupy, job, layout, device_result, max_memory, out is None, chunk_size)
    # Inputs written on the caller's stream must be complete before the
    # chunk streams read them.
    cupy.cuda.get_current_stream().synchronize()
    return _run_chunks(cupy, job, result, rows, device_result, progress)


def _run_chunks(cupy, job, result, rows, device_result, progress) -> dict:
    starts = list(range(0, job.n, rows))
    pinned = len(starts) > 1
    slots = [
        _Slot(cupy, job, rows, device_result, pinned)
        for _ in range(min(N_STREAMS, len(starts)))
    ]
    bar = _chunks._Progress(progress, job.n)
    done = 0
    try:
        for index, start in enumerate(starts):
            slot = slots[index % len(slots)]
            done = _finish(slot, result, bar, done)
            slot.submit(job, result, start, min(start + rows, job.n))
        for slot in _in_flight(slots):
            done = _finish(slot, result, bar, done)
    except KeyboardInterrupt:
        if len(starts) == 1:
            raise
        for slot in _in_flight(slots):
            done = _finish(slot, result, bar, done)
        _interrupt(result, done, job)
    finally:
        bar.close()
        if isinstance(result["y"], np.memmap):
            result["y"].flush()
    return result


def _in_flight(slots):
    """Slots with a pending chunk, in row order, so stores stay contiguous."""
    busy = [slot for slot in slots if slot.pending is not None]
    return sorted(busy, key=lambda slot: slot.pending[0])


def _finish(slot: _Slot, result: dict, bar, done: int) -> int:
    stop = slot.finish(result)
    if stop is None:
        return done
    if isinstance(result["y"], np.memmap):
        _chunks._release_rows(result["y"], stop)
    bar.update(stop, stop - done)
    return stop


def _interrupt(result: dict, done: int, job: GpuJob):
    _chunks._mark_interrupted_range(result, done, job.n, job.t0)
    warn_user(
        f"fastode.solve was interrupted after {done} of {job.n} trajectories; "
        f"the other {job.n - done} have status INTERRUPTED and NaN states",
        RuntimeWarning,
    )
