"""A NumPy stand-in for CuPy, for testing ``backend="cupy"`` without a GPU.

Device arrays are NumPy arrays of a subclass. Streams are asynchronous as on
a GPU: copies and kernels queued on a stream run only when the stream is
synchronized, and a queued copy reads its source when it runs, not when it
is queued. So code that reads a result before synchronizing, or refills a
host buffer that a queued copy still reads, gets wrong numbers here too.

The kernel first checks its launch arguments against the parameter list of
the generated CUDA source (count, order, and each scalar and pointer type),
then computes the outputs with the C++ core, which runs the same header
code. Every queued operation is logged in ``StandIn.log``.
"""

from __future__ import annotations

import ctypes
import re
import types

import numpy as np

from fastode import _core
from fastode._cupy._source import LAYOUTS

# C type in a kernel parameter list -> NumPy dtype of the launch argument.
C_TYPES = {
    "double": np.float64,
    "float": np.float32,
    "long long": np.int64,
    "int": np.int32,
    "signed char": np.int8,
}

CORE_KEYS = ("y", "t_final", "status", "n_steps", "n_accepted", "n_rejected", "n_rhs")


class DeviceArray(np.ndarray):
    """A NumPy array that plays a CuPy array."""

    def get(self, stream=None, out=None, blocking=True):
        if out is None:
            return np.array(self).view(np.ndarray)
        assert isinstance(out, np.ndarray)
        assert not isinstance(out, DeviceArray)
        assert out.shape == self.shape
        if stream is not None and not blocking:
            stream.enqueue("get", lambda: np.copyto(out, self))
        else:
            np.copyto(out, self)
        return out

    def set(self, array, stream=None):
        assert not isinstance(array, DeviceArray)
        assert array.shape == self.shape
        if stream is not None:
            stream.enqueue("set", lambda: np.copyto(self, array))
        else:
            np.copyto(self, array)


def device(array, dtype=None) -> DeviceArray:
    return np.array(array, dtype=dtype).view(DeviceArray)


def _from_interface(interface: dict) -> DeviceArray:
    """View the memory that a ``__cuda_array_interface__`` describes."""
    assert interface.get("strides") is None
    dtype = np.dtype(interface["typestr"])
    shape = tuple(interface["shape"])
    pointer, _ = interface["data"]
    size = int(np.prod(shape)) * dtype.itemsize
    buffer = (ctypes.c_char * max(size, 1)).from_address(pointer)
    return np.frombuffer(buffer, dtype, int(np.prod(shape))).reshape(shape).view(DeviceArray)


class _HostCapsule:
    """Re-exports a DLPack capsule as CPU memory, which NumPy can import."""

    def __init__(self, source):
        self.source = source

    def __dlpack__(self, **kwargs):
        return self.source.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return (1, 0)


class Stream:
    """A stream whose queued work runs at `synchronize`."""

    def __init__(self, standin, non_blocking=False):
        self.standin = standin
        self.index = len(standin.streams)
        standin.streams.append(self)
        self.queue = []

    def enqueue(self, what: str, work):
        self.standin.log.append((what, self.index))
        self.queue.append(work)

    def synchronize(self):
        self.standin.log.append(("sync", self.index))
        for work in self.queue:
            work()
        self.queue.clear()

    def __enter__(self):
        self.standin.current.append(self)
        return self

    def __exit__(self, *exc):
        self.standin.current.pop()


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


def check_arguments(code, name, args):
    declared = _parameter_types(code, name)
    assert len(args) == len(declared)
    for (c_type, pointer), value in zip(declared, args, strict=True):
        assert isinstance(value, DeviceArray) == pointer, (c_type, type(value))
        assert value.dtype == np.dtype(C_TYPES[c_type]), (c_type, value.dtype)
        if pointer:
            assert value.flags.c_contiguous


def run_on_core(name: str, args: tuple) -> None:
    """Compute the outputs of kernel ``name`` with the C++ core, in place."""
    method, system = re.match(
        r"fastode_(\w+?)_(oscillator|lorenz|linear\d|mlp\d|hamiltonian_\w+?)_float\d\d$",
        name,
    ).groups()
    y0, t_eval, n_eval, count, t0, t1, dt, rtol, atol, max_steps, controller = args[:11]
    outputs, params = args[11:18], args[18:]
    assert y0.shape[0] == count
    values = {}
    if system.startswith("mlp"):
        weights, widths, n_layers, activation, time_input = params
        assert len(widths) == n_layers + 1
        values = {"params": np.asarray(weights), "widths": np.asarray(widths),
                  "activation": int(activation), "time_input": bool(time_input)}
    for index, param in enumerate(LAYOUTS[system].params):
        array, stride = params[2 * index], params[2 * index + 1]
        if stride:
            assert array.shape[0] == count
            assert stride == array.size // array.shape[0]
        values[param] = np.asarray(array)[:1] if stride == 0 else np.asarray(array)
    if system.startswith("linear"):
        values["has_b"] = bool(params[-1])
        kernel = _core.solve_linear
    elif system.startswith("mlp"):
        kernel = _core.solve_mlp
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
    for target, key in zip(outputs, CORE_KEYS, strict=True):
        assert target.shape == out[key].shape, key
        target[...] = out[key]


class _Kernel:
    def __init__(self, standin, code, name):
        self.standin, self.code, self.name = standin, code, name

    def __call__(self, grid, block, args):
        n = int(args[3])
        assert grid[0] * block[0] >= n > (grid[0] - 1) * block[0]
        check_arguments(self.code, self.name, args)
        stream = self.standin.current[-1] if self.standin.current else None
        if stream is None:
            self.standin.log.append(("launch", None))
            run_on_core(self.name, args)
        else:
            stream.enqueue("launch", lambda: run_on_core(self.name, args))
        self.standin.launch_sizes.append(n)


class StandIn(types.SimpleNamespace):
    """The parts of the ``cupy`` module that fastode uses."""

    def __init__(self, free_bytes=2**34):
        super().__init__()
        self.free_bytes = free_bytes
        self.log, self.streams, self.current = [], [], []
        self.launch_sizes, self.pinned_allocations = [], 0
        self.ndarray = DeviceArray
        self.empty = lambda shape, dtype: np.full(shape, 99, dtype=dtype).view(DeviceArray)
        self.zeros = lambda shape, dtype: np.zeros(shape, dtype=dtype).view(DeviceArray)
        self.ascontiguousarray = lambda a, dtype=None: device(a, dtype)
        self.asnumpy = lambda a: np.array(a).view(np.ndarray)
        standin = self

        class RawModule:
            def __init__(self, code, options):
                assert "-std=c++17" in options
                self.code = code

            def get_function(self, name):
                return _Kernel(standin, self.code, name)

        null_stream = types.SimpleNamespace(synchronize=lambda: None)
        self.__version__ = "14.0.0 (stand-in)"
        runtime = types.SimpleNamespace(
            getDeviceCount=lambda: 1,
            runtimeGetVersion=lambda: 13000,
            getDeviceProperties=lambda index: {
                "name": b"Stand-in H200",
                "major": 9,
                "minor": 0,
                "totalGlobalMem": 141 * 2**30,
            },
            memGetInfo=lambda: (self.free_bytes, 2**36),
            CUDARuntimeError=type("CUDARuntimeError", (RuntimeError,), {}),
        )
        self.RawModule = RawModule
        self.cuda = types.SimpleNamespace(
            runtime=runtime,
            Stream=lambda non_blocking=False: Stream(self, non_blocking),
            get_current_stream=lambda: null_stream,
            Device=lambda index=0: null_stream,
            alloc_pinned_memory=self._alloc_pinned,
        )
        self.get_default_memory_pool = lambda: types.SimpleNamespace(free_bytes=lambda: 0)

    def __getattr__(self, name):
        # Array functions (tanh, where, full, ...) fall back to NumPy, with
        # results as device arrays, for code written against the array API.
        function = getattr(np, name)

        def on_device(*args, **kwargs):
            result = function(*args, **kwargs)
            return result.view(DeviceArray) if isinstance(result, np.ndarray) else result

        return on_device

    def _alloc_pinned(self, n_bytes):
        self.pinned_allocations += 1
        # Garbage, so a value never copied in shows.
        return bytearray(b"\x63" * n_bytes)

    def asarray(self, a, dtype=None):
        if isinstance(a, DeviceArray) and (dtype is None or a.dtype == dtype):
            return a
        if not isinstance(a, np.ndarray) and hasattr(a, "__cuda_array_interface__"):
            return _from_interface(a.__cuda_array_interface__)
        return device(a, dtype)

    def from_dlpack(self, a):
        device_type, _ = a.__dlpack_device__()
        assert device_type in (2, 13)
        return np.from_dlpack(_HostCapsule(a)).view(DeviceArray)

    def launches(self):
        return [entry for entry in self.log if entry[0] == "launch"]


class InterfaceOnly:
    """A device array seen only through ``__cuda_array_interface__`` (as a
    Numba device array is). Converting it on the host fails the test."""

    def __init__(self, array: DeviceArray):
        self.array = array
        self.__cuda_array_interface__ = {
            "shape": array.shape,
            "typestr": array.dtype.str,
            "data": (array.ctypes.data, False),
            "strides": None,
            "version": 3,
        }

    def __array__(self, *args, **kwargs):
        raise AssertionError("the device array was copied to the host")


class DLPackOnly:
    """A device array seen only through DLPack on a CUDA device (as a PyTorch
    CUDA tensor is). Converting it on the host fails the test."""

    def __init__(self, array: DeviceArray):
        self.array = array

    def __dlpack__(self, **kwargs):
        return self.array.view(np.ndarray).__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return (2, 0)

    def __array__(self, *args, **kwargs):
        raise AssertionError("the device array was copied to the host")
