"""`fastode.solve(..., backend="cupy")`: the built-in systems and MLP fields
on a CUDA GPU.

Each (method, system, dtype) kernel is compiled from the shipped C++ headers
by CuPy's NVRTC on first use and cached for the process; CuPy also keeps the
compiled binary in its on-disk kernel cache (``~/.cupy/kernel_cache``).
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np

from .. import _chunks
from .. import _validation as check
from .._solution import Solution
from .._systems import System, _per_trajectory
from . import _batched, _pipeline
from ._device import import_cupy, is_device_array, require_device
from ._source import (
    LAYOUTS,
    KernelSpec,
    compile_options,
    include_dir,
    kernel_source,
    system_key,
)

__all__ = ["solve_cupy"]

@functools.cache
def _headers_digest() -> str:
    """Hash the shipped headers, which CuPy's disk cache key does not cover."""
    digest = hashlib.sha256()
    for path in sorted((include_dir() / "fastode").rglob("*.hpp")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@functools.cache
def _kernel(spec: KernelSpec):
    cupy = import_cupy()
    # CuPy keys its on-disk kernel cache on the source text and options only,
    # so the header hash in a comment makes a header change recompile.
    code = f"// fastode headers sha256 {_headers_digest()}\n" + kernel_source([spec])
    module = cupy.RawModule(code=code, options=compile_options())
    return module.get_function(spec.name)


def compile_kernel(spec: KernelSpec) -> None:
    """Compile the kernel of `spec` into CuPy's caches (memory and disk).

    tools/gpu-check.sh calls it from parallel processes, so that the tests
    later load every variant from the disk cache.
    """
    _kernel(spec)


def _as_device_array(cupy, value):
    """Return a CuPy view of ``value`` if it lives on the GPU, else None.

    A CUDA DLPack device is read with ``cupy.from_dlpack`` and an object with
    ``__cuda_array_interface__`` with ``cupy.asarray``; neither copies.
    DLPack comes first because a PyTorch tensor that requires grad raises
    from its ``__cuda_array_interface__``.
    """
    if isinstance(value, cupy.ndarray):
        return value
    if not is_device_array(value):
        return None
    try:
        if hasattr(value, "__dlpack_device__"):
            return cupy.from_dlpack(value)
        return cupy.asarray(value)
    except (BufferError, RuntimeError, TypeError) as exc:
        msg = (
            f"could not read the {type(value).__name__} in GPU memory without a copy: "
            f"{exc}. For a PyTorch tensor, pass tensor.detach()"
        )
        raise TypeError(msg) from exc


def _check_device_y0(cupy, y0, dim: int, dtype):
    """Check a device y0 as `check.check_y0` does on the host, without a copy."""
    y0, single = check.check_state_batch(y0, dim)
    return cupy.ascontiguousarray(y0, dtype=dtype), single


def _device_param(cupy, name: str, value, n: int, tail: tuple, dtype):
    """Convert a parameter to an array of shape (1, *tail) or (n, *tail).

    Device values stay on the device. Host values stay NumPy arrays, which
    the chunk pipeline uploads a chunk at a time when they have n rows.
    """
    array = _as_device_array(cupy, value)
    if array is None:
        return _per_trajectory(name, value, n, tail, dtype)
    if array.dtype.kind not in "biuf":
        msg = f"{name} must be real numbers, got dtype {array.dtype}"
        raise TypeError(msg)
    if array.shape == tail:
        array = array.reshape((1, *tail))
    elif array.shape != (n, *tail):
        shared = tail if tail else "a scalar"
        msg = (
            f"{name} has shape {array.shape}; expected {shared} (shared by all "
            f"trajectories) or {(n, *tail)} (one per trajectory of this batch of {n})"
        )
        raise ValueError(msg)
    return cupy.ascontiguousarray(array, dtype=dtype)


def _system_parameters(cupy, system, n: int, dtype) -> tuple[list, list]:
    """Return the system's parameters as (array, stride) pairs in kernel order,
    and the kernel arguments that follow them.

    A shared parameter (one row) is uploaded here, because every chunk reads
    it whole. A per-trajectory one keeps n rows, for the chunks to slice.
    """
    layout = LAYOUTS[system_key(system)]
    if layout.network:
        return [], _network_arguments(cupy, system, dtype)
    linear = type(system).__name__ == "Linear"
    if linear:
        d = system.dim
        values = {"A": system.A, "b": system.b if system.b is not None else np.zeros(d)}
        tails = {"A": (d, d), "b": (d,)}
    else:
        values = system.params
        tails = dict.fromkeys(layout.params, ())
    params = []
    for name in layout.params:
        array = _device_param(cupy, name, values[name], n, tails[name], dtype)
        # Stride 0 shares one row among all trajectories, as in the C++ core.
        per_row = array.shape[0] == n and n > 1
        stride = array.size // array.shape[0] if per_row else 0
        if not per_row and _pipeline.on_host(cupy, array):
            array = cupy.asarray(array)
        params.append((array, stride))
    tail = [np.int32(system.b is not None)] if linear else []
    return params, tail


def _network_arguments(cupy, mlp, dtype) -> list:
    """Return the kernel arguments of an MLP field: its weights and widths,
    uploaded once per call and read by every chunk and thread, then the
    network shape."""
    net = mlp._core_arguments(0, dtype)
    return [
        cupy.asarray(net["params"]),
        cupy.asarray(net["widths"]),
        np.int32(len(net["widths"]) - 1),
        np.int32(net["activation"]),
        np.int32(net["time_input"]),
    ]


def _solution(out: dict, t, dense: bool, single: bool, method: str):
    y = out["y"] if dense else out["y"][:, 0, :]
    stats = {
        name: out[name] for name in ("n_steps", "n_accepted", "n_rejected", "n_rhs")
    }
    status, t_final = out["status"], out["t_final"]
    if single:
        y = y[0]
        status, t_final = status[0], t_final[0]
        stats = {name: value[0] for name, value in stats.items()}
    return Solution(
        t=t, y=y, status=status, t_final=t_final, stats=stats, method=method
    )


def _resolve_dtype(dtype, y0_device, y0):
    if y0_device is None:
        return check.check_dtype(dtype, y0)
    # check_dtype reads only the dtype of y0, so an empty host array of that
    # dtype replaces the device array.
    return check.check_dtype(dtype, np.empty(0, dtype=y0_device.dtype))


def solve_cupy(
    system,
    y0,
    t_span,
    t_eval=None,
    method="dopri5",
    dt=None,
    rtol=None,
    atol=None,
    max_steps=100_000,
    dtype=None,
    controller="i",
    threads=None,
    max_memory=None,
    out=None,
    progress=None,
    chunk_size=None,
    adaptive=None,
):
    """Integrate a batch of trajectories on the GPU; see `fastode.solve`.

    Arrays come back as CuPy arrays when ``y0`` is on the GPU (a CuPy array,
    or any object with ``__cuda_array_interface__`` or a CUDA DLPack device,
    read without a host copy) and `out` is None, and as NumPy arrays
    otherwise. ``threads`` is accepted for signature compatibility and has
    no effect.

    A NumPy batch runs in chunks sized to the GPU's free memory and to
    `max_memory` (host bytes for the result and the pinned chunk buffers);
    by default in at least four chunks of at least 2**18 trajectories, whose
    copies overlap the kernels on two CUDA streams. A device batch runs in
    one launch unless `chunk_size` is given, and its whole result must fit
    on the GPU. `out`, `progress`, Ctrl-C and the `StiffnessWarning` behave
    as on the CPU.

    Notes
    -----
    NOTE: no part of this backend has run on a real GPU yet. The kernels
    compile to PTX with NVRTC in CI, and the launch and chunk logic is tested
    against a NumPy stand-in for CuPy. tests/gpu is the check on a device.

    A device ``t_eval`` is copied to the host once for validation. System
    parameters may also be device arrays, except `Linear`'s ``A`` and ``b``,
    which `fastode.Linear` converts to NumPy when it is constructed.
    An `MLP` field runs with one thread per trajectory for d <= 8 and layers
    up to 256 wide; its weights, packed in the solve dtype, are uploaded once
    per call and shared by every thread. A larger network runs as one matrix
    product per layer for the whole batch (`fastode._cupy._batched`), as do
    CNF systems (`fastode.cnf`). Each thread keeps two layer
    buffers sized for 256 units in local memory, whatever the network's
    widths: about 4.7 KB per thread in float64 and 2.4 KB in float32 (PTX
    of the d = 8 dopri5 and tsit5 kernels, NVRTC from cuda-bindings).
    Results agree with ``backend="cpp"`` to rounding, not bit for bit: the
    GPU contracts a * b + c into fused multiply-adds where the host compiler
    may not, and its cos, sin and pow differ in the last bits. They do not
    depend on the chunk size.

    Raises
    ------
    ImportError
        When CuPy is not installed.
    RuntimeError
        When no CUDA device is usable.
    MemoryError
        When the result exceeds `max_memory`, or a device result the GPU.
    ValueError
        For a `Linear` system too large for the GPU kernels.
    """
    if not isinstance(system, System):
        msg = (
            f"system must be a fastode system (Linear, Oscillator, Lorenz, "
            f"Hamiltonian, MLP), got {type(system).__name__}"
        )
        raise TypeError(msg)
    method = check.check_method(method, system)
    kind = check.check_adaptive(adaptive, method)
    batched = _batched.needs_batching(system)
    if not batched:
        key = system_key(system)
    cupy = import_cupy()
    require_device(cupy)

    y0_device = _as_device_array(cupy, y0)
    dtype = _resolve_dtype(dtype, y0_device, y0)
    if y0_device is None:
        y0_rows, single = check.check_y0(y0, system.dim, dtype)
    else:
        y0_rows, single = _check_device_y0(cupy, y0_device, system.dim, dtype)
    t0, t1 = check.check_t_span(t_span)
    if _as_device_array(cupy, t_eval) is not None:
        t_eval = cupy.asnumpy(_as_device_array(cupy, t_eval))
    t_eval = check.check_t_eval(t_eval, t0, t1, dtype)
    rtol, atol = check.check_tolerances(rtol, atol, dtype, kind, method)
    dt = check.check_dt(dt, kind, method)
    max_steps = check.check_max_steps(max_steps)
    controller_code = check.check_controller(controller, kind, method)
    if threads is not None:
        check.check_threads(threads)
    if batched:
        call = {"kind": kind, "method": check.kernel_method(method, kind), "t0": t0, "t1": t1,
                "dt": dt, "rtol": rtol, "atol": atol, "max_steps": max_steps,
                "controller": controller_code}
        job = _batched.BatchedJob(cupy, system, y0_rows, t_eval, call)
        return _solve_batched(cupy, job, y0_device is not None, single, method,
                              max_memory=max_memory, out=out, progress=progress,
                              chunk_size=chunk_size)

    n = y0_rows.shape[0]
    dense = t_eval is not None
    t_host = t_eval if dense else np.array([t1], dtype=dtype)
    params, tail = _system_parameters(cupy, system, n, dtype)
    # The kernel never reads t_eval when n_eval is 0, but needs a valid pointer.
    t_eval_dev = cupy.asarray(t_host) if dense else cupy.zeros(1, dtype=dtype)
    scalar = np.dtype(dtype).type
    settings = [
        scalar(t0),
        scalar(t1),
        scalar(dt),
        scalar(rtol),
        scalar(atol),
        np.int64(max_steps),
        np.int32(controller_code),
    ]
    strides = [np.int64(stride) for _, stride in params]
    n_eval = np.int64(len(t_host) if dense else 0)

    def arguments(inputs, outputs, count):
        y0_chunk, *param_chunks = inputs
        pairs = [value for pair in zip(param_chunks, strides) for value in pair]
        return (y0_chunk, t_eval_dev, n_eval, np.int64(count), *settings, *outputs,
                *pairs, *tail)

    row_inputs = [y0_rows]
    for array, stride in params:
        # A shared parameter is passed whole: slicing its single row by chunk
        # would be wrong, and its stride 0 makes every thread read row 0.
        row_inputs.append(array if stride else _Whole(array))
    job = _pipeline.GpuJob(
        kernel=_kernel(KernelSpec(check.kernel_method(method, kind), key, np.dtype(dtype).name))
        if n
        else None,
        n=n,
        n_out=len(t_host) if dense else 1,
        dim=system.dim,
        dtype=np.dtype(dtype),
        t0=t0,
        row_inputs=row_inputs,
        arguments=arguments,
    )
    device_result = y0_device is not None and out is None
    result = _pipeline.run(cupy, job, device_result=device_result, max_memory=max_memory,
                           out=out, progress=progress, chunk_size=chunk_size)
    status = cupy.asnumpy(result["status"]) if device_result else result["status"]
    _chunks.warn_if_stiff(status, kind, method)
    t = cupy.asarray(t_host) if device_result else t_host
    return _solution(result, t, dense, single, method)


def _solve_batched(cupy, job, on_device, single, method, **chunking) -> Solution:
    """Run a wide MLP or a CNF with `fastode._cupy._batched`: a device batch in
    parts that fit on the GPU (and at most `chunk_size` rows), with device
    results, and a host batch in chunks through `fastode._chunks`."""
    dense = job.t_eval is not None
    dtype = job.y0.dtype
    t_host = job.t_eval if dense else np.array([job.call["t1"]], dtype=dtype)
    device_result = on_device and chunking["out"] is None
    free_bytes, _ = cupy.cuda.runtime.memGetInfo()
    rows = _batched.device_rows(free_bytes, job)
    if device_result:
        # The same checks as the kernels' pipeline. NOTE: a device batch shows
        # no progress bar, and max_memory bounds nothing because no result is on the host.
        _chunks.check_max_memory(chunking["max_memory"])
        _chunks.check_progress(chunking["progress"])
        chunk_size = _chunks.check_chunk_size(chunking["chunk_size"])
        result = _launch_in_parts(cupy, job, min(rows, chunk_size or rows))
        status, t = cupy.asnumpy(result["status"]), cupy.asarray(t_host)
    else:
        # Chunks of at most `rows`, so that the working arrays fit on the GPU.
        result = _chunks.run(job, len(t_host), job.system.dim,
                             min_rows=min(_pipeline.GPU_MIN_CHUNK_ROWS, rows),
                             target_chunks=max(_pipeline.GPU_TARGET_CHUNKS, -(-job.n // rows)),
                             **chunking)
        status, t = result["status"], t_host
    _chunks.warn_if_stiff(status, job.call["kind"], method)
    return _solution(result, t, dense, single, method)


def _launch_in_parts(cupy, job, rows: int) -> dict:
    """Run a device batch `rows` rows at a time, keeping the results on the device."""
    if job.n <= rows:
        return job.launch(job.y0)
    parts = [job.rows(start, start + rows) for start in range(0, job.n, rows)]
    results = [part.launch(part.y0) for part in parts]
    return {name: cupy.concatenate([r[name] for r in results]) for name in results[0]}


class _Whole:
    """A device array that every chunk receives whole (a shared parameter)."""

    def __init__(self, array):
        self.array = array

    def __getitem__(self, rows):
        return self.array
