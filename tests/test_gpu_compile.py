"""The GPU kernels compile, and the cupy backend fails clearly without CuPy.

Every (method, system, dtype) kernel that ``backend="cupy"`` can launch is
compiled to PTX for compute_90 with NVRTC from ``cuda-bindings``, from the
same generated source the runtime path hands to CuPy. NVRTC needs no GPU, so
a header change that breaks the device build fails here, on any machine.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import numpy as np
import pytest

import fastode
from fastode._cupy import _source
from fastode._cupy._source import (
    KernelSpec,
    all_kernel_specs,
    compile_options,
    kernel_source,
    mlp_kernel_specs,
)

# One NVRTC program per system family and dtype: the headers are parsed once
# per program, which keeps the whole test to a few NVRTC runs.
FAMILIES = ("oscillator", "lorenz", "linear", "hamiltonian")

#: Embedded pairs stepped with a fixed dt (``adaptive=False``) have kernels
#: of their own.
FIXED_PAIRS = {f"{m}_fixed" for m, kind in fastode.METHODS.items() if kind == "adaptive"}
RUNGE_KUTTA = {m for m, kind in fastode.METHODS.items() if kind != "symplectic"} | FIXED_PAIRS


def _family(system_key: str) -> str:
    """``linear3`` -> ``linear``, ``hamiltonian_kepler`` -> ``hamiltonian``."""
    return system_key.rstrip("0123456789").split("_")[0]


def _family_specs(family: str, dtype: str) -> list[KernelSpec]:
    return [
        spec for spec in all_kernel_specs((dtype,)) if _family(spec.system) == family
    ]


def _entry_names(ptx: str) -> set[str]:
    return set(re.findall(r"\.entry\s+(\w+)\s*\(", ptx))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", _source.DTYPES)
@pytest.mark.parametrize("family", FAMILIES)
def test_kernels_compile_to_ptx(family, dtype):
    pytest.importorskip(
        "cuda.bindings.nvrtc",
        reason="cuda-bindings (NVRTC) is not installed; "
        'install the test extra: pip install "fastode[test]"',
    )
    from fastode._cupy._nvrtc import compile_ptx

    specs = _family_specs(family, dtype)
    ptx = compile_ptx(
        kernel_source(specs),
        compile_options(),
        arch="compute_90",
        name=f"{family}_{dtype}.cu",
    )
    assert _entry_names(ptx) == {spec.name for spec in specs}


# The MLP kernels take the activation as a run-time value, so one kernel per
# method and dtype covers all five. The two dtypes use the smallest and the
# largest compiled dimension, which keeps this to 14 kernels of the 112.
MLP_COMPILE_DIMS = {"float32": 1, "float64": _source.MAX_MLP_DIM}


@pytest.mark.slow
@pytest.mark.parametrize("dtype", _source.DTYPES)
def test_mlp_kernels_compile_to_ptx(dtype):
    pytest.importorskip(
        "cuda.bindings.nvrtc",
        reason="cuda-bindings (NVRTC) is not installed; "
        'install the test extra: pip install "fastode[test]"',
    )
    from fastode._cupy._nvrtc import compile_ptx

    specs = mlp_kernel_specs(dims=(MLP_COMPILE_DIMS[dtype],), dtypes=(dtype,))
    ptx = compile_ptx(
        kernel_source(specs), compile_options(), arch="compute_90", name=f"mlp_{dtype}.cu"
    )
    assert len(specs) == 10
    assert _entry_names(ptx) == {spec.name for spec in specs}


def test_mlp_specs_cover_runge_kutta_methods():
    specs = mlp_kernel_specs()
    assert {spec.method for spec in specs} == RUNGE_KUTTA
    assert {spec.system for spec in specs} == {f"mlp{d}" for d in range(1, 9)}
    assert len(specs) == 2 * 10 * 8
    assert not {spec.name for spec in specs} & {spec.name for spec in all_kernel_specs()}


def _mlp(d: int, hidden: int, time_input: bool = False):
    n_input = d + (1 if time_input else 0)
    return fastode.MLP([np.ones((hidden, n_input)), np.ones((d, hidden))],
                       time_input=time_input)


def test_system_key_of_mlp():
    assert _source.system_key(_mlp(4, 256, time_input=True)) == "mlp4"


def test_system_key_rejects_large_mlp():
    with pytest.raises(ValueError, match="d = 9.*d <= 8.*backend='cpp'"):
        _source.system_key(_mlp(9, 16))


def test_system_key_rejects_wide_mlp_layer():
    with pytest.raises(ValueError, match="width 257.*width <= 256"):
        _source.system_key(_mlp(2, 257))


def test_specs_cover_every_method_and_system():
    specs = all_kernel_specs()
    methods = {spec.method for spec in specs}
    systems = {spec.system for spec in specs}
    assert methods == set(fastode.METHODS) | FIXED_PAIRS
    assert systems == {
        "oscillator",
        "lorenz",
        *(f"linear{d}" for d in range(1, _source.MAX_LINEAR_DIM + 1)),
        "hamiltonian_harmonic",
        "hamiltonian_pendulum",
        "hamiltonian_kepler",
        "hamiltonian_henon_heiles",
    }
    # 10 Runge-Kutta drivers (7 methods and 3 fixed-step pairs) on 10
    # non-Hamiltonian systems, 14 drivers on 4 Hamiltonians, each in two dtypes.
    assert len(specs) == 2 * (10 * 10 + 14 * 4)


def test_families_partition_specs():
    grouped = [
        spec
        for dtype in _source.DTYPES
        for family in FAMILIES
        for spec in _family_specs(family, dtype)
    ]
    assert sorted(grouped, key=str) == sorted(all_kernel_specs(), key=str)


def test_symplectic_kernels_only_for_hamiltonians():
    for spec in all_kernel_specs():
        if fastode.METHODS.get(spec.method) == "symplectic":
            assert spec.system.startswith("hamiltonian_"), spec


@pytest.mark.parametrize(
    ("system", "key"),
    [
        (fastode.Oscillator(k=1.0), "oscillator"),
        (fastode.Lorenz(), "lorenz"),
        (fastode.Linear(np.eye(3)), "linear3"),
        (fastode.Hamiltonian("henon_heiles"), "hamiltonian_henon_heiles"),
    ],
)
def test_system_key_of_builtin_systems(system, key):
    assert _source.system_key(system) == key


def test_system_key_rejects_large_linear():
    with pytest.raises(ValueError, match="1 <= d <= 8"):
        _source.system_key(fastode.Linear(np.eye(9)))


def test_headers_found_from_source_tree():
    assert (_source.include_dir() / "fastode" / "integrate.hpp").is_file()


def test_kernel_names_are_distinct():
    names = [spec.name for spec in all_kernel_specs()]
    assert len(names) == len(set(names))


# --- the backend without CuPy ---------------------------------------------------

CUPY_MISSING = importlib.util.find_spec("cupy") is None


@pytest.mark.skipif(not CUPY_MISSING, reason="CuPy is installed here")
def test_cupy_backend_without_cupy_names_the_extra():
    from fastode._cupy import solve_cupy

    with pytest.raises(ImportError, match=r'pip install "fastode\[gpu\]"'):
        solve_cupy(fastode.Lorenz(), [1.0, 1.0, 1.0], (0.0, 1.0), method="rk4", dt=0.1)


@pytest.mark.skipif(not CUPY_MISSING, reason="CuPy is installed here")
def test_solve_backend_cupy_without_cupy():
    with pytest.raises(ImportError, match=r'pip install "fastode\[gpu\]"'):
        fastode.solve(fastode.Oscillator(k=1.0), [1.0, 0.0], (0.0, 1.0), backend="cupy")


@pytest.mark.skipif(not CUPY_MISSING, reason="CuPy is installed here")
def test_gpu_info_without_cupy():
    from fastode._cupy import device_available, gpu_info

    info = gpu_info()
    assert info["cupy"] is None
    assert info["available"] is False
    assert info["devices"] == []
    assert "fastode[gpu]" in info["problem"]
    assert device_available() is False


def test_cupy_backend_checks_method_before_cupy():
    from fastode._cupy import solve_cupy

    with pytest.raises(ValueError, match="method"):
        solve_cupy(
            fastode.Lorenz(), [1.0, 1.0, 1.0], (0.0, 1.0), method="verlet", dt=0.1
        )


def test_import_fastode_does_not_import_cupy():
    code = "import sys, fastode, fastode._cupy; print('cupy' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
