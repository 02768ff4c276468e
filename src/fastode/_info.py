"""`fastode.info()`: what this installation can run, for bug reports and for
``fastode info``."""

from __future__ import annotations

import importlib
import importlib.metadata
import struct
from pathlib import Path

__all__ = ["core_compiler", "info"]


def _elf_section(path: Path, section_name: str) -> bytes | None:
    """Return the bytes of section `section_name` of a 64-bit little-endian ELF file."""
    data = path.read_bytes()
    if data[:6] != b"\x7fELF\x02\x01":
        return None
    section_offset = struct.unpack_from("<Q", data, 0x28)[0]
    entry_size, count, names_index = struct.unpack_from("<HHH", data, 0x3A)

    def header(index):
        # sh_name, then sh_offset and sh_size of an Elf64_Shdr.
        base = section_offset + index * entry_size
        name = struct.unpack_from("<I", data, base)[0]
        offset, size = struct.unpack_from("<QQ", data, base + 24)
        return name, offset, size

    _, names_offset, _ = header(names_index)
    for index in range(count):
        name, offset, size = header(index)
        end = data.index(b"\0", names_offset + name)
        if data[names_offset + name : end].decode(errors="replace") == section_name:
            return data[offset : offset + size]
    return None


def core_compiler() -> str | None:
    """Name the compiler that built ``fastode._core``, from the ``.comment``
    section that GCC and Clang write into ELF objects.

    The section lists every compiler that built an object linked into the
    extension, so the C runtime's GCC may appear beside Clang. None on
    platforms without ELF (macOS, Windows) or when the section is missing.
    """
    from . import _core

    try:
        section = _elf_section(Path(_core.__file__), ".comment")
    except (OSError, struct.error, ValueError):
        return None
    if not section:
        return None
    names = [part.decode(errors="replace") for part in section.split(b"\0") if part]
    return "; ".join(dict.fromkeys(names))


def _package_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _module_backend(module: str, distribution: str) -> dict:
    row = {"available": False, "version": _package_version(distribution), "problem": None}
    try:
        importlib.import_module(module)
    # Any failure while importing (missing package, missing CUDA library)
    # means the backend is unusable; report it instead of failing.
    except Exception as error:  # noqa: BLE001
        row["problem"] = f"{type(error).__name__}: {error}"
        return row
    row["available"] = True
    return row


def _numba_cuda_backend() -> dict:
    row = _module_backend("numba.cuda", "numba-cuda")
    if row["available"]:
        from numba import cuda

        # True also under NUMBA_ENABLE_CUDASIM=1, where kernels run simulated.
        row["available"] = bool(cuda.is_available())
        if not row["available"]:
            row["problem"] = "numba.cuda found no CUDA device"
    return row


def info() -> dict:
    """Report the fastode version, OpenMP, compiler, backends and GPU.

    Returns
    -------
    dict
        ``version``. ``openmp``: whether the core was built with OpenMP.
        ``openmp_threads``: threads a call uses by default. ``compiler``:
        see `core_compiler`. ``backends``: for ``cpp``, ``numba``,
        ``numba-cuda`` and ``cupy``, a dict with ``available`` (can run
        here), ``version`` and ``problem`` (why not, or None). ``gpu``: the
        dict of `fastode._cupy.gpu_info` (CuPy, CUDA runtime, devices,
        NVRTC). A missing optional package or GPU is reported, not raised.
    """
    from . import __version__, _core
    from ._cupy import gpu_info

    gpu = gpu_info()
    backends = {
        "cpp": {"available": True, "version": __version__, "problem": None},
        "numba": _module_backend("numba", "numba"),
        "numba-cuda": _numba_cuda_backend(),
        "cupy": {
            "available": gpu["available"],
            "version": gpu["cupy"],
            "problem": gpu["problem"],
        },
    }
    return {
        "version": __version__,
        "openmp": bool(_core.openmp),
        "openmp_threads": int(_core.max_threads()),
        "compiler": core_compiler(),
        "backends": backends,
        "gpu": gpu,
    }
