"""Compile kernel sources to PTX with NVRTC from ``cuda-bindings``.

NVRTC needs no GPU and no driver, so this checks on any machine that the
shared headers still build for the device. CuPy does the compiling at run
time; this path exists for tests and for ``fastode info``-style checks.
"""

from __future__ import annotations

__all__ = ["NVRTCError", "compile_ptx"]


class NVRTCError(RuntimeError):
    """NVRTC rejected a kernel source; the message carries its compile log."""


def _check(result, what: str) -> None:
    from cuda.bindings import nvrtc

    if result != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        msg = f"{what} failed: {result.name}"
        raise NVRTCError(msg)


def _log(nvrtc, program) -> str:
    err, size = nvrtc.nvrtcGetProgramLogSize(program)
    _check(err, "nvrtcGetProgramLogSize")
    log = b" " * size
    (err,) = nvrtc.nvrtcGetProgramLog(program, log)
    _check(err, "nvrtcGetProgramLog")
    return log.decode(errors="replace").rstrip("\x00").strip()


def compile_ptx(
    source: str, options=(), arch: str = "compute_90", name: str = "fastode.cu"
) -> str:
    """Compile CUDA C++ ``source`` to PTX for ``arch`` and return the PTX text.

    Raises
    ------
    ImportError
        When ``cuda.bindings`` is not installed.
    NVRTCError
        When the source does not compile; the message contains NVRTC's log.
    """
    from cuda.bindings import nvrtc

    err, program = nvrtc.nvrtcCreateProgram(source.encode(), name.encode(), 0, [], [])
    _check(err, "nvrtcCreateProgram")
    try:
        flags = [f"--gpu-architecture={arch}".encode(), *(o.encode() for o in options)]
        (err,) = nvrtc.nvrtcCompileProgram(program, len(flags), flags)
        if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            msg = f"NVRTC could not compile {name} for {arch}:\n{_log(nvrtc, program)}"
            raise NVRTCError(msg)
        err, size = nvrtc.nvrtcGetPTXSize(program)
        _check(err, "nvrtcGetPTXSize")
        ptx = b" " * size
        (err,) = nvrtc.nvrtcGetPTX(program, ptx)
        _check(err, "nvrtcGetPTX")
        return ptx.decode().rstrip("\x00")
    finally:
        nvrtc.nvrtcDestroyProgram(program)
